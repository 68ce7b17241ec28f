//! The folder of the agent's socket, checked by the agent before it binds and by
//! `get --agent` before it connects.
//!
//! The default folder, `/tmp/freshtoken-<uid>`, is a name any local user can create first.
//! Whoever owns the folder can put their own socket in it — serving planted tokens to
//! `get --agent` — or keep the real agent out. So the folder must be the user's own, mode
//! 0700, and not a symlink; the agent makes it so when it is missing, and refuses to serve in
//! one that is not.

use std::path::Path;

use freshtoken::internal::owned::{self, Unfit};

use crate::AgentError;

/// The folder that holds `socket` (`.` for a bare file name).
pub fn of(socket: &Path) -> &Path {
    socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Why the socket folder `dir` cannot be trusted, in words that name it: `None` when it is
/// the user's own folder, mode 0700, not a symlink.
pub fn untrusted(dir: &Path) -> Option<String> {
    owned::check_dir(dir)
        .err()
        .map(|why| format!("socket folder {}: {why}", dir.display()))
}

/// For the agent: creates `dir` (and each missing folder above it) 0700 whatever the umask
/// when it is missing, then refuses it (exit 2) unless it is the user's own, mode 0700, and
/// not a symlink.
pub fn prepare(dir: &Path) -> Result<(), AgentError> {
    if let Err(Unfit::Missing) = owned::check_dir(dir) {
        owned::create_dirs(dir).map_err(|e| {
            AgentError::config(format!(
                "cannot create the socket folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let Err(why) = owned::check_dir(dir) else {
        return Ok(());
    };
    let fix = match why {
        Unfit::Open { .. } => "chmod 700 it, or set [agent] socket",
        Unfit::Owner { .. } | Unfit::Symlink | Unfit::NotAFolder => {
            "another user may have made it to serve tokens of their own: remove it (the agent then makes its own, 0700), or set [agent] socket"
        }
        Unfit::Missing | Unfit::Unreadable(_) => {
            "set [agent] socket to a path in a folder of your own"
        }
    };
    Err(AgentError::config(format!(
        "socket folder {}: {why}; not serving there ({fix})",
        dir.display()
    )))
}

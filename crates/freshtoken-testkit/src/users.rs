//! Acting as another local user, for the checks that files and sockets of another user are
//! neither trusted nor reachable. They need root (CI runs the tests as root); elsewhere they
//! are skipped, and say so.

use std::path::Path;

/// Another local user: `nobody`.
pub const NOBODY: u32 = 65534;

/// Whether the test runs as root; prints that the check is skipped when not.
pub fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("not root: cannot act as another user; skipped");
    }
    root
}

/// `path` and everything under it handed to [`NOBODY`], links not followed.
#[track_caller]
pub fn chown_nobody(path: &Path) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for entry in entries {
            chown_nobody(&entry.expect("a readable directory entry").path());
        }
    }
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

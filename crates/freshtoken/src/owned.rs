//! Folders and files that hold a user's tokens (the file cache, the agent's socket folder):
//! they must be the user's own, and not links to somewhere else.
//!
//! On a shared machine another user can create a folder first where freshtoken would create
//! it (`/tmp/freshtoken-<uid>`, a shared `$XDG_CACHE_HOME`), or plant files in one that was
//! open to them. What such a user made must be neither believed nor written into: a planted
//! token record, a discovery document naming another token endpoint, a socket that serves
//! planted tokens.

use std::fmt;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a folder cannot hold the user's tokens.
#[derive(Debug)]
pub enum Unfit {
    /// Nothing there.
    Missing,
    /// It cannot be looked at (the error says why).
    Unreadable(io::Error),
    /// A symlink: it may lead to any folder, someone else's included.
    Symlink,
    /// Something other than a folder.
    NotAFolder,
    /// Another user owns it: they may have planted what is in it, and may read or change it.
    Owner {
        /// The owner's uid.
        uid: u32,
    },
    /// The user's own, but group or others have access to it.
    Open {
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Missing => f.write_str("it does not exist"),
            Unfit::Unreadable(e) => write!(f, "it cannot be examined ({e})"),
            Unfit::Symlink => f.write_str("it is a symlink"),
            Unfit::NotAFolder => f.write_str("it is not a folder"),
            Unfit::Owner { uid } => {
                write!(f, "it belongs to uid {uid}, not to you (uid {})", user())
            }
            Unfit::Open { mode } => write!(
                f,
                "its mode is {mode:04o}: group or others have access (it must be 0700)"
            ),
        }
    }
}

/// The user freshtoken runs as: the effective uid, the one that owns what it creates.
pub fn user() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks that `dir` itself (not followed if a symlink) is a folder that the user owns and
/// that group and others have no access to. [`Unfit::Open`] is the only answer for a folder
/// that passes every other check.
pub fn check_dir(dir: &Path) -> Result<(), Unfit> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unfit::Missing),
        Err(e) => return Err(Unfit::Unreadable(e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Unfit::Symlink);
    }
    if !meta.is_dir() {
        return Err(Unfit::NotAFolder);
    }
    if meta.uid() != user() {
        return Err(Unfit::Owner { uid: meta.uid() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Unfit::Open { mode });
    }
    Ok(())
}

/// Checks a file freshtoken reads back from one of its folders, from the metadata of the
/// open descriptor: the user owns it, and group and others have no access to it. The error
/// says what is wrong in a few words.
pub fn check_file(meta: &Metadata) -> Result<(), String> {
    if meta.uid() != user() {
        return Err(format!(
            "it belongs to uid {}, not to you (uid {})",
            meta.uid(),
            user()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode {:o} lets others read or change it",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Creates `dir` and each missing folder above it with mode 0700 exactly, whatever the umask
/// (a umask of 000 would leave 0777 folders; one of 0277 folders nothing could be created
/// in). Folders that exist already are left as they are; the caller checks `dir` after.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = Some(dir);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty()) {
        match fs::symlink_metadata(p) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(p.to_owned()),
            Err(e) => return Err(e),
        }
        at = p.parent();
    }
    for p in missing.iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(p) {
            Ok(()) => restrict(p)?,
            // Made meanwhile, by another process of the user or not: the caller checks.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets folder `dir` to 0700 through a descriptor of it, so that a symlink swapped in
/// meanwhile is not followed: for folders freshtoken just made, and for the user's own
/// folders found open to others.
pub fn restrict(dir: &Path) -> io::Result<()> {
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    opened.set_permissions(fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_made_0700_from_the_first_missing_one_down() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let deep = tmp.path().join("a/b/c");
        create_dirs(&deep)?;
        for p in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(tmp.path().join(p))?.mode() & 0o7777;
            assert_eq!(mode, 0o700, "{p}");
        }
        check_dir(&deep).map_err(|e| io::Error::other(e.to_string()))?;
        // What exists is left alone.
        fs::set_permissions(tmp.path().join("a"), fs::Permissions::from_mode(0o755))?;
        create_dirs(&tmp.path().join("a/d"))?;
        assert_eq!(fs::metadata(tmp.path().join("a"))?.mode() & 0o777, 0o755);
        Ok(())
    }

    #[test]
    fn a_symlink_a_file_and_an_open_folder_are_unfit() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let real = tmp.path().join("real");
        create_dirs(&real)?;
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link)?;
        let file = tmp.path().join("file");
        fs::write(&file, b"")?;
        assert!(matches!(check_dir(&link), Err(Unfit::Symlink)));
        assert!(matches!(check_dir(&file), Err(Unfit::NotAFolder)));
        assert!(matches!(
            check_dir(&tmp.path().join("none")),
            Err(Unfit::Missing)
        ));
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777))?;
        let open = check_dir(&real).err().map(|e| e.to_string());
        assert_eq!(
            open.as_deref(),
            Some("its mode is 0777: group or others have access (it must be 0700)")
        );
        Ok(())
    }
}

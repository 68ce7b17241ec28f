//! Replacing a file so that a reader, or a process killed half way, sees the old contents or
//! the new, never a part: write a temporary file beside it, sync, rename over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` at once, the new file created with `mode`. A temporary file
/// left by a process killed mid-write is named by [`is_temporary_of`] and can be swept.
pub fn write_file_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temporary_for(path)?;
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        Ok(())
    };
    let result = write();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `candidate` is a temporary file that [`write_file_atomically`] made for `path`.
pub fn is_temporary_of(path: &Path, candidate: &Path) -> bool {
    let (Some(name), Some(c)) = (path.file_name(), candidate.file_name()) else {
        return false;
    };
    let (Some(name), Some(c)) = (name.to_str(), c.to_str()) else {
        return false;
    };
    candidate.parent() == path.parent()
        && c.strip_prefix('.')
            .and_then(|c| c.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".tmp"))
}

fn temporary_for(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(
        ".{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    Ok(path.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn replaces_whole_with_the_mode_asked() -> Outcome {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.token");
        write_file_atomically(&path, b"one", 0o600)?;
        write_file_atomically(&path, b"two", 0o640)?;
        assert_eq!(fs::read(&path)?, b"two");
        // The mode is the new file's: rename replaces the inode.
        let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let left: Vec<_> = fs::read_dir(dir.path())?.collect();
        assert_eq!(left.len(), 1, "no temporary file may be left behind");
        Ok(())
    }

    #[test]
    fn names_its_temporaries() -> Outcome {
        let path = Path::new("/run/x/prod.token");
        let tmp = temporary_for(path)?;
        assert!(is_temporary_of(path, &tmp), "{}", tmp.display());
        assert!(!is_temporary_of(path, path));
        assert!(!is_temporary_of(
            path,
            Path::new("/run/x/.prod.tokenx.1.tmp")
        ));
        assert!(!is_temporary_of(
            path,
            Path::new("/run/y/.prod.token.1.2.tmp")
        ));
        Ok(())
    }

    #[test]
    fn a_symlink_in_place_of_the_temporary_is_not_followed() -> Outcome {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.token");
        // create_new refuses an existing name, symlink or not; the rename target itself may
        // be a symlink, which rename replaces rather than follows.
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"keep")?;
        std::os::unix::fs::symlink(&elsewhere, &path)?;
        write_file_atomically(&path, b"new", 0o600)?;
        assert_eq!(fs::read(&elsewhere)?, b"keep");
        assert!(!fs::symlink_metadata(&path)?.file_type().is_symlink());
        Ok(())
    }
}

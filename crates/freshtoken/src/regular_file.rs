//! Opening the files freshtoken is pointed at — a secret, a CA bundle, a config file, a cached
//! document — so that only regular files are read.
//!
//! A FIFO where such a file is expected (planted, or named by mistake) would block a plain
//! `open` until some writer came, which may be never; a device or a socket could be read
//! without end. Opening with `O_NONBLOCK` cannot wait, and the type is then taken from the
//! open descriptor, so nothing can be swapped in between the check and the read.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Whether a symlink at the path itself is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Followed: a user's own files (secrets mounted by Kubernetes are symlinks).
    Follow,
    /// Refused (`O_NOFOLLOW`): files in freshtoken's own cache directory.
    Refuse,
}

/// Opens `path` for reading if it is a regular file, without ever blocking on the open, and
/// returns it with its metadata. Anything else is an [`io::ErrorKind::InvalidInput`] error
/// whose text says "not a regular file" and what it is instead.
pub fn open(path: &Path, symlinks: Symlinks) -> io::Result<(File, Metadata)> {
    let mut flags = libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok((file, meta))
}

/// Reads `path` whole if it is a regular file of at most `max` bytes. A larger file is an
/// [`io::ErrorKind::InvalidData`] error, never a part of it; the read stops at `max` + 1 even
/// if the file grows meanwhile.
pub fn read(path: &Path, max: u64, symlinks: Symlinks) -> io::Result<Vec<u8>> {
    let (file, meta) = open(path, symlinks)?;
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        )
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// "not a regular file (a FIFO)", and so on.
fn not_regular(meta: &Metadata) -> io::Error {
    let t = meta.file_type();
    let what = if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "something else"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) -> io::Result<()> {
        let status = std::process::Command::new("mkfifo").arg(path).status()?;
        assert!(status.success(), "mkfifo {}", path.display());
        Ok(())
    }

    #[test]
    fn a_fifo_a_directory_and_a_device_are_refused_at_once() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo)?;
        // Proves "did not block on the FIFO" in real time.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
            (Path::new("/dev/zero"), "a character device"),
        ] {
            for symlinks in [Symlinks::Follow, Symlinks::Refuse] {
                let e = read(path, 1024, symlinks).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{}", path.display());
                assert_eq!(e.to_string(), format!("not a regular file ({what})"));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing waited"
        );
        Ok(())
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap_and_symlinks_as_asked() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("file");
        std::fs::write(&file, b"12345")?;
        assert_eq!(read(&file, 5, Symlinks::Refuse)?, b"12345");
        let e = read(&file, 4, Symlinks::Refuse).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "larger than 4 bytes");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link)?;
        assert_eq!(read(&link, 5, Symlinks::Follow)?, b"12345");
        assert!(read(&link, 5, Symlinks::Refuse).is_err());
        Ok(())
    }
}

//! Tokens kept on disk for every process of one user on one machine: what `get` and `exec`
//! use by default, so a pipeline's many steps share one token.
//!
//! Layout: `<dir>/<key>.json` (the record, 0600) and `<dir>/<key>.lock` (the cross-process
//! refresh lock), in a directory of mode 0700. Writes go to a temporary file that is synced
//! and renamed over the old one, so readers see the old token or the new one, never half.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::record::Record;
use super::{FailureNote, StoreLock, TokenStore};
use crate::error::{Error, Result};
use crate::regular_file::Symlinks;
use crate::request::CacheKey;
use crate::token::Token;

/// Largest cache file read; a record is well under a kilobyte plus the token.
const MAX_RECORD: u64 = 256 * 1024;

/// Largest failure note read; a note is a few hundred bytes.
const MAX_NOTE: u64 = 4 * 1024;

/// A per-user, per-machine store in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir`, created (mode 0700) on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/freshtoken`, else `$HOME/.cache/freshtoken`.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
        std::env::var_os("XDG_CACHE_HOME")
            .and_then(nonempty)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(nonempty)
                    .map(|h| h.join(".cache"))
            })
            .map(|base| base.join("freshtoken"))
    }

    /// The directory this store uses.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn lock_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    fn ensure_dir(&self) -> Result<()> {
        let dir = &self.dir;
        let err = |what: &str, e: io::Error| {
            Error::Store(format!("cannot {what} {}: {e}", dir.display()))
        };
        match fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => {
                if meta.mode() & 0o077 != 0 {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                        .map_err(|e| err("restrict", e))?;
                    tracing::warn!(
                        "cache directory {} was open to others; set it to 0700",
                        dir.display()
                    );
                }
                Ok(())
            }
            Ok(_) => Err(Error::Store(format!(
                "{} exists and is not a directory",
                dir.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = dir.parent() {
                    fs::create_dir_all(parent).map_err(|e| err("create", e))?;
                }
                match fs::DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(err("create", e)),
                }?;
                // The umask may have narrowed 0700 further, never widened it; set it exactly.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| err("restrict", e))
            }
            Err(e) => Err(err("read", e)),
        }
    }

    fn note_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.note"))
    }

    fn load_blocking(&self, key: &CacheKey) -> Option<Token> {
        let path = self.record_path(key);
        let ignore = |why: String| {
            tracing::warn!(
                "ignoring cache file {}: {why}; it will be replaced",
                path.display()
            );
            None
        };
        match read_private(&path, MAX_RECORD) {
            Ok(None) => None,
            Ok(Some(bytes)) => match Record::parse(&bytes, key) {
                Ok(token) => Some(token),
                Err(why) => ignore(why),
            },
            Err(why) => ignore(why),
        }
    }

    fn note_blocking(&self, key: &CacheKey) -> Option<FailureNote> {
        let path = self.note_path(key);
        match read_private(&path, MAX_NOTE) {
            Ok(bytes) => bytes.and_then(|b| FailureNote::parse(&b)),
            Err(why) => {
                tracing::debug!("ignoring {}: {why}", path.display());
                None
            }
        }
    }

    fn set_note_blocking(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        let path = self.note_path(key);
        let Some(note) = note else {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Store(format!(
                    "cannot remove {}: {e}",
                    path.display()
                ))),
                _ => Ok(()),
            };
        };
        self.ensure_dir()?;
        super::atomic::write_file_atomically(&path, &note.to_bytes(), 0o600)
            .map_err(|e| Error::Store(format!("cannot replace {}: {e}", path.display())))
    }

    fn save_blocking(&self, key: &CacheKey, token: &Token) -> Result<()> {
        self.ensure_dir()?;
        let path = self.record_path(key);
        super::atomic::write_file_atomically(&path, &Record::new(key, token).to_bytes(), 0o600)
            .map_err(|e| Error::Store(format!("cannot replace {}: {e}", path.display())))
    }

    fn remove_blocking(&self, key: &CacheKey) -> Result<bool> {
        let path = self.record_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Store(format!(
                "cannot remove {}: {e}",
                path.display()
            ))),
        }
    }

    fn open_lock_file(&self, key: &CacheKey) -> Result<File> {
        self.ensure_dir()?;
        let path = self.lock_path(key);
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&path)
            .map_err(|e| Error::Store(format!("cannot open lock file {}: {e}", path.display())))
    }
}

/// Reads a file this store wrote: `Ok(None)` when there is none; `Err(why)` for anything it
/// must not trust or cannot read whole — a symlink, a FIFO or device (opened without
/// blocking, so a FIFO planted in its place cannot hang the caller), a file others may
/// write or read, one larger than `max`.
fn read_private(path: &Path, max: u64) -> std::result::Result<Option<Vec<u8>>, String> {
    let (mut file, meta) = match crate::regular_file::open(path, Symlinks::Refuse) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it ({e})")),
    };
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode {:o} lets others read or change it",
            meta.mode() & 0o777
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "it is {} bytes, larger than any token record",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it ({e})"))?;
    Ok(Some(bytes))
}

/// `O_NOFOLLOW`: a symlink planted at a cache path is refused rather than followed.
fn libc_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(format!("cache task failed: {e}")))
}

#[async_trait]
impl TokenStore for FileStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn location(&self, key: &CacheKey) -> String {
        self.record_path(key).display().to_string()
    }

    async fn load(&self, key: &CacheKey) -> Result<Option<Token>> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || this.load_blocking(&key)).await
    }

    async fn save(&self, key: &CacheKey, token: &Token) -> Result<()> {
        let (this, key, token) = (self.clone(), key.clone(), token.clone());
        blocking(move || this.save_blocking(&key, &token)).await?
    }

    async fn remove(&self, key: &CacheKey) -> Result<bool> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || this.remove_blocking(&key)).await?
    }

    async fn note(&self, key: &CacheKey) -> Result<Option<FailureNote>> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || this.note_blocking(&key)).await
    }

    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        let (this, key, note) = (self.clone(), key.clone(), note.cloned());
        blocking(move || this.set_note_blocking(&key, note.as_ref())).await?
    }

    async fn try_lock(&self, key: &CacheKey) -> Result<Option<StoreLock>> {
        let (this, key) = (self.clone(), key.clone());
        blocking(move || {
            let file = this.open_lock_file(&key)?;
            match file.try_lock() {
                Ok(()) => Ok(Some(StoreLock::new(file))),
                Err(TryLockError::WouldBlock) => Ok(None),
                Err(TryLockError::Error(e)) => Err(Error::Store(format!(
                    "cannot lock {}: {e}",
                    this.lock_path(&key).display()
                ))),
            }
        })
        .await?
    }
}

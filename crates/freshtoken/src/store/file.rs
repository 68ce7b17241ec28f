//! Tokens kept on disk for every process of one user on one machine: what `get` and `exec`
//! use by default, so a pipeline's many steps share one token.
//!
//! Layout: `<dir>/<key>.json` (the record, 0600), `<dir>/<key>.note` (the last failure) and
//! `<dir>/<key>.lock` (the cross-process refresh lock), in a directory of mode 0700. Writes go
//! to a temporary file that is synced and renamed over the old one, so readers see the old
//! token or the new one, never half.
//!
//! Nothing another user made is used: a folder that is not the user's own (or is a symlink)
//! leaves the store unused, with one warning, and nothing is written in it; a record, note or
//! lock file that another user owns, or that others may read or change, is ignored with a
//! warning and replaced — by a rename, never by writing into it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::record::Record;
use super::{FailureNote, StoreLock, TokenStore};
use crate::error::{Error, Result};
use crate::owned::{self, Unfit};
use crate::regular_file::Symlinks;
use crate::request::CacheKey;
use crate::sync::lock;
use crate::token::Token;

/// Largest cache file read; a record is well under a kilobyte plus the token.
const MAX_RECORD: u64 = 256 * 1024;

/// Largest failure note read; a note is a few hundred bytes.
const MAX_NOTE: u64 = 4 * 1024;

/// A per-user, per-machine store in a directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Whether the warning that `dir` is not used was given, so that it is given once (clones
    /// share it).
    refused: Arc<AtomicBool>,
    /// The files ignored, with why, until they are replaced: a caller reads a record up to
    /// three times, and hears about a bad one once.
    ignored: Arc<Mutex<HashMap<PathBuf, String>>>,
}

/// What the store may do with its folder, looked at again on every operation: a folder that
/// is swapped for another user's, or for a symlink, after a first look is still caught.
enum Folder {
    /// There is none yet; a write creates it.
    Missing,
    /// The user's own.
    Usable,
    /// Not used, for this reason.
    Refused(String),
}

impl FileStore {
    /// A store in `dir`, created (mode 0700, like each folder above it that it creates) on
    /// first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            refused: Arc::default(),
            ignored: Arc::default(),
        }
    }

    /// `$XDG_CACHE_HOME/freshtoken`, else `$HOME/.cache/freshtoken`.
    pub fn default_dir() -> Option<PathBuf> {
        Self::dir_from(
            std::env::var_os("XDG_CACHE_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
        )
    }

    /// [`FileStore::default_dir`] for the given `XDG_CACHE_HOME` and `HOME`, so that a
    /// caller that resolves its settings from a snapshot of the environment gets the same
    /// answer without reading the process's.
    pub fn dir_from(xdg_cache_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
        let nonempty = |v: &OsStr| (!v.is_empty()).then(|| PathBuf::from(v));
        xdg_cache_home
            .and_then(nonempty)
            .filter(|p| p.is_absolute())
            .or_else(|| home.and_then(nonempty).map(|h| h.join(".cache")))
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

    fn folder(&self) -> Folder {
        match owned::check_dir(&self.dir) {
            // Each file in a folder of the user's that is open to others is checked on its
            // own; a write closes the folder (see `ensure_dir`).
            Ok(()) | Err(Unfit::Open { .. }) => Folder::Usable,
            Err(Unfit::Missing) => Folder::Missing,
            Err(why) => {
                let why = why.to_string();
                if !self.refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "not using the file cache {}: {why}; going on without it (remove it, or choose a cache folder of your own)",
                        self.dir.display()
                    );
                }
                Folder::Refused(why)
            }
        }
    }

    /// Makes the folder ready for a write: `false` when it is not to be used (said once).
    fn ensure_dir(&self) -> Result<bool> {
        let dir = &self.dir;
        let err = |what: &str, e: io::Error| {
            Error::store(format!("cannot {what} {}: {e}", dir.display())).with_source(e)
        };
        match self.folder() {
            Folder::Refused(_) => return Ok(false),
            Folder::Missing => owned::create_dirs(dir).map_err(|e| err("create", e))?,
            Folder::Usable => {}
        }
        match owned::check_dir(dir) {
            Ok(()) => Ok(true),
            Err(Unfit::Open { mode }) => {
                owned::restrict(dir).map_err(|e| err("restrict", e))?;
                tracing::warn!(
                    "cache directory {} was open to others (mode {mode:04o}); set it to 0700",
                    dir.display()
                );
                Ok(true)
            }
            // Made meanwhile by someone else, or gone again.
            Err(_) => Ok(matches!(self.folder(), Folder::Usable)),
        }
    }

    fn note_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.note"))
    }

    fn load_blocking(&self, key: &CacheKey) -> Option<Token> {
        if !matches!(self.folder(), Folder::Usable) {
            return None;
        }
        let path = self.record_path(key);
        let ignore = |why: String| {
            self.ignoring("cache file", &path, why);
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
        if !matches!(self.folder(), Folder::Usable) {
            return None;
        }
        let path = self.note_path(key);
        match read_private(&path, MAX_NOTE) {
            Ok(bytes) => bytes.and_then(|b| FailureNote::parse(&b)),
            Err(why) => {
                self.ignoring("failure note", &path, why);
                None
            }
        }
    }

    /// Warns that `path` is ignored for `why`, once for as long as it stays so.
    fn ignoring(&self, what: &str, path: &Path, why: String) {
        let mut said = lock(&self.ignored);
        if said.get(path) != Some(&why) {
            tracing::warn!(
                "ignoring {what} {}: {why}; it will be replaced",
                path.display()
            );
            said.insert(path.to_owned(), why);
        }
    }

    /// Replaces `path` with `bytes`, by a rename: never through what was there.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        super::atomic::write_file_atomically(path, bytes, 0o600).map_err(|e| {
            Error::store(format!("cannot replace {}: {e}", path.display())).with_source(e)
        })?;
        lock(&self.ignored).remove(path);
        Ok(())
    }

    fn set_note_blocking(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        let path = self.note_path(key);
        let Some(note) = note else {
            if !matches!(self.folder(), Folder::Usable) {
                return Ok(());
            }
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::store(format!(
                    "cannot remove {}: {e}",
                    path.display()
                ))
                .with_source(e)),
                _ => Ok(()),
            };
        };
        if !self.ensure_dir()? {
            return Ok(());
        }
        self.replace(&path, &note.to_bytes())
    }

    fn save_blocking(&self, key: &CacheKey, token: &Token) -> Result<()> {
        if !self.ensure_dir()? {
            return Ok(());
        }
        let path = self.record_path(key);
        self.replace(&path, &Record::new(key, token).to_bytes())
    }

    fn remove_blocking(&self, key: &CacheKey) -> Result<bool> {
        match self.folder() {
            Folder::Missing => return Ok(false),
            Folder::Refused(why) => {
                return Err(Error::store(format!(
                    "not using the file cache {}: {why}",
                    self.dir.display()
                )));
            }
            Folder::Usable => {}
        }
        let path = self.record_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => {
                Err(Error::store(format!("cannot remove {}: {e}", path.display())).with_source(e))
            }
        }
    }

    /// The lock file of `key`, opened; `None` when the folder is not used (there is nothing
    /// to serialise). One that is not the user's own regular file (planted by another user,
    /// a symlink) is never locked: it is replaced once by a file of the user's.
    fn open_lock_file(&self, key: &CacheKey) -> Result<Option<File>> {
        if !self.ensure_dir()? {
            return Ok(None);
        }
        let path = self.lock_path(key);
        let cannot = |e: io::Error| {
            Error::store(format!("cannot open lock file {}: {e}", path.display())).with_source(e)
        };
        let mut replaced = false;
        loop {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path);
            let why = match opened {
                Ok(file) => {
                    let meta = file.metadata().map_err(cannot)?;
                    match lock_file_problem(&meta) {
                        None => return Ok(Some(file)),
                        Some(why) => why,
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "it is a symlink".to_owned(),
                Err(e) => return Err(cannot(e)),
            };
            if replaced {
                return Err(Error::store(format!(
                    "cannot use lock file {}: {why}",
                    path.display()
                )));
            }
            tracing::warn!("replacing lock file {}: {why}", path.display());
            fs::remove_file(&path).map_err(cannot)?;
            replaced = true;
        }
    }
}

/// Why a lock file must not be used: not a regular file, or not the user's own.
fn lock_file_problem(meta: &std::fs::Metadata) -> Option<String> {
    if !meta.is_file() {
        return Some("it is not a regular file".to_owned());
    }
    owned::check_file(meta).err()
}

/// Reads a file this store wrote: `Ok(None)` when there is none; `Err(why)` for anything it
/// must not trust or cannot read whole — a symlink, a FIFO or device (opened without
/// blocking, so a FIFO planted in its place cannot hang the caller), a file another user
/// owns, one others may write or read, one larger than `max`.
fn read_private(path: &Path, max: u64) -> std::result::Result<Option<Vec<u8>>, String> {
    let (mut file, meta) = match crate::regular_file::open(path, Symlinks::Refuse) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it ({e})")),
    };
    owned::check_file(&meta)?;
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::store(format!("cache task failed: {e}")).with_source(e))
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
            let Some(file) = this.open_lock_file(&key)? else {
                return Ok(Some(StoreLock::new(())));
            };
            match file.try_lock() {
                Ok(()) => Ok(Some(StoreLock::new(file))),
                Err(TryLockError::WouldBlock) => Ok(None),
                Err(TryLockError::Error(e)) => Err(Error::store(format!(
                    "cannot lock {}: {e}",
                    this.lock_path(&key).display()
                ))
                .with_source(e)),
            }
        })
        .await?
    }
}

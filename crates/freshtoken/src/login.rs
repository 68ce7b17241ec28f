//! Logins that last: a person logs in once (authorization code with PKCE), and the refresh
//! token the server gave is kept on disk so that every later process gets access tokens
//! from it, like a client credentials profile.
//!
//! The refresh token lives in a [`LoginStore`] (`$XDG_STATE_HOME/freshtoken`, else
//! `~/.local/state/freshtoken`; 0700/0600, the file cache's owner and type checks), never
//! in the access-token cache: [`LoginFetcher`] hands out access tokens without it.
//!
//! Rotation keeps the chain: a refresh happens under the login's cross-process lock, reads
//! the refresh token from disk (never from memory, which another process may have made
//! stale), and writes the rotated one atomically before the new access token is handed out.
//! So two processes never present the same refresh token, and a server that revokes the
//! whole grant on reuse never sees one.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{SharedClock, SystemClock, from_unix_millis, unix_millis};
use crate::error::{Error, Result};
use crate::fetch::{Budget, Fetch, Grant, HttpFetcher};
use crate::owned::{self, Unfit};
use crate::regular_file::Symlinks;
use crate::request::CacheKey;
use crate::store::{FileStore, StoreLock, TokenStore};
use crate::token::Token;

/// Format version of a stored login; another version is foreign and ignored.
const VERSION: u32 = 1;

/// Largest login file read: a refresh token and a few numbers.
const MAX_LOGIN: u64 = 64 * 1024;

/// How long ahead of the refresh token's known end a warning says to log in again.
pub const LOGIN_ENDS_WARNING: Duration = Duration::from_secs(24 * 3600);

/// How often a refresh waiting for another process's lock looks again.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// A refresh token kept for one login, with what is known of its expiry.
#[derive(Clone)]
pub struct StoredLogin {
    /// The refresh token to present next.
    pub refresh_token: SecretString,
    /// When the refresh token itself expires, where the server said (`refresh_expires_in`).
    pub refresh_expires_at: Option<SystemTime>,
    /// When it was stored.
    pub saved_at: SystemTime,
}

impl fmt::Debug for StoredLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredLogin")
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("saved_at", &self.saved_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRecord {
    v: u32,
    key: String,
    refresh_token: String,
    saved_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_expires_at_ms: Option<u64>,
}

/// Where logins are kept: one file per login key (`<key>.login`, 0600) and its lock
/// (`<key>.lock`) in a folder of mode 0700 that is the user's own.
#[derive(Debug, Clone)]
pub struct LoginStore {
    dir: PathBuf,
    /// The lock files, with the file cache's checks (owner, type, no symlinks).
    locks: FileStore,
}

impl LoginStore {
    /// A store in `dir`, created (0700) on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            locks: FileStore::new(dir.clone()),
            dir,
        }
    }

    /// `$XDG_STATE_HOME/freshtoken`, else `$HOME/.local/state/freshtoken`, for the given
    /// values (a caller resolves them from its snapshot of the environment).
    pub fn dir_from(xdg_state_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
        let nonempty = |v: &OsStr| (!v.is_empty()).then(|| PathBuf::from(v));
        xdg_state_home
            .and_then(nonempty)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                home.and_then(nonempty)
                    .map(|h| h.join(".local").join("state"))
            })
            .map(|base| base.join("freshtoken"))
    }

    /// The folder this store uses.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key`'s login.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.login"))
    }

    /// The stored login of `key`: `None` when there is none. A file that is not the user's
    /// own private regular file, or not a login of this key, is refused with an error (a
    /// login is never trusted blindly, and silently ignoring it would hide why `get` fails).
    pub async fn load(&self, key: &CacheKey) -> Result<Option<StoredLogin>> {
        let (path, key) = (self.path(key), key.clone());
        blocking(move || read_login(&path, &key)).await?
    }

    /// Stores `login` under `key`, replacing the old one in one step (write, sync, rename).
    pub async fn save(&self, key: &CacheKey, login: &StoredLogin) -> Result<()> {
        let record = LoginRecord {
            v: VERSION,
            key: key.as_str().to_owned(),
            refresh_token: login.refresh_token.expose_secret().to_owned(),
            saved_at_ms: unix_millis(login.saved_at),
            refresh_expires_at_ms: login.refresh_expires_at.map(unix_millis),
        };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| Error::store(format!("cannot encode the login: {e}")))?;
        let (dir, path) = (self.dir.clone(), self.path(key));
        blocking(move || {
            ensure_dir(&dir)?;
            crate::store::atomic::write_file_atomically(&path, &bytes, 0o600).map_err(|e| {
                Error::store(format!("cannot write {}: {e}", path.display())).with_source(e)
            })
        })
        .await?
    }

    /// Deletes `key`'s login; `true` if there was one.
    pub async fn remove(&self, key: &CacheKey) -> Result<bool> {
        let path = self.path(key);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => {
                Err(Error::store(format!("cannot remove {}: {e}", path.display())).with_source(e))
            }
        })
        .await?
    }

    /// Takes `key`'s cross-process lock, waiting for another holder until `deadline`.
    pub async fn lock(&self, key: &CacheKey, deadline: tokio::time::Instant) -> Result<StoreLock> {
        blocking({
            let dir = self.dir.clone();
            move || ensure_dir(&dir)
        })
        .await??;
        loop {
            if let Some(lock) = self.locks.try_lock(key).await? {
                return Ok(lock);
            }
            if tokio::time::Instant::now() + LOCK_POLL >= deadline {
                return Err(Error::timeout(format!(
                    "another process kept the login lock {} until the deadline",
                    self.dir.join(format!("{key}.lock")).display()
                )));
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }
}

/// Creates the folder (0700) or checks that it is the user's own and closed to others.
fn ensure_dir(dir: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::store(format!(
            "not using the login folder {}: {why}",
            dir.display()
        ))
    };
    match owned::check_dir(dir) {
        Ok(()) => Ok(()),
        Err(Unfit::Missing) => owned::create_dirs(dir).map_err(|e| {
            Error::store(format!("cannot create {}: {e}", dir.display())).with_source(e)
        }),
        Err(Unfit::Open { .. }) => owned::restrict(dir).map_err(|e| {
            Error::store(format!("cannot restrict {}: {e}", dir.display())).with_source(e)
        }),
        Err(why) => Err(refuse(why.to_string())),
    }
}

fn read_login(path: &Path, key: &CacheKey) -> Result<Option<StoredLogin>> {
    let refuse = |why: String| {
        Error::store(format!(
            "not using the login {}: {why}; remove it and log in again",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        match owned::check_dir(dir) {
            Ok(()) => {}
            Err(Unfit::Missing) => return Ok(None),
            Err(why) => return Err(refuse(format!("its folder is unfit: {why}"))),
        }
    }
    let (file, meta) = match crate::regular_file::open(path, Symlinks::Refuse) {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refuse(format!("cannot open it ({e})"))),
    };
    owned::check_file(&meta).map_err(refuse)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_LOGIN + 1), &mut bytes)
        .map_err(|e| refuse(format!("cannot read it ({e})")))?;
    if bytes.len() as u64 > MAX_LOGIN {
        return Err(refuse("it is larger than any login".into()));
    }
    let record: LoginRecord = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(format!("not a freshtoken login (line {})", e.line())))?;
    if record.v != VERSION || record.key != key.as_str() || record.refresh_token.is_empty() {
        return Err(refuse("it belongs to another login or version".into()));
    }
    Ok(Some(StoredLogin {
        refresh_token: SecretString::from(record.refresh_token),
        refresh_expires_at: record.refresh_expires_at_ms.map(from_unix_millis),
        saved_at: from_unix_millis(record.saved_at_ms),
    }))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::store(format!("login store task failed: {e}")).with_source(e))
}

/// The key a login is stored under: the request's own cache key (token endpoint, client,
/// scope, …), so that a profile finds the login made with the same settings.
pub fn login_key(fetcher: &HttpFetcher) -> CacheKey {
    fetcher.request().cache_key()
}

/// The key a login's access tokens are cached under: not the client credentials key of the
/// same client, since the tokens are a person's.
pub fn access_key(login_key: &CacheKey) -> CacheKey {
    let mut h = Sha256::new();
    h.update(b"login\0");
    h.update(login_key.as_str().as_bytes());
    let hex = hex::encode(h.finalize());
    CacheKey::from_hex(&hex).unwrap_or_else(|| login_key.clone())
}

/// Access tokens from a stored login's refresh token, rotated safely (see the module docs).
#[derive(Debug)]
pub struct LoginFetcher {
    http: HttpFetcher,
    logins: LoginStore,
    key: CacheKey,
    clock: SharedClock,
    /// Whether the warning that the login ends soon was given.
    warned: std::sync::atomic::AtomicBool,
}

impl LoginFetcher {
    /// Refreshes through `http` (its endpoint, client and client authentication) with the
    /// login kept in `logins`.
    pub fn new(http: HttpFetcher, logins: LoginStore) -> Self {
        Self {
            key: login_key(&http),
            http,
            logins,
            clock: std::sync::Arc::new(SystemClock),
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Uses `clock` to decide whether the refresh token has expired.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The store and key of this login.
    pub fn login(&self) -> (&LoginStore, &CacheKey) {
        (&self.logins, &self.key)
    }
}

#[async_trait]
impl Fetch for LoginFetcher {
    /// Not the client credentials key of the same client: the tokens are a person's.
    fn cache_key(&self) -> CacheKey {
        access_key(&self.key)
    }

    fn patience(&self) -> Duration {
        self.http.patience()
    }

    fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.http.dpop_key()
    }

    async fn fetch(&self, _previous: Option<&Token>, budget: Budget) -> Result<Token> {
        // Held until the rotated refresh token is on disk.
        let _lock = self.logins.lock(&self.key, budget.deadline).await?;
        let Some(stored) = self.logins.load(&self.key).await? else {
            return Err(Error::LoginNeeded(
                "no login is stored for this client".into(),
            ));
        };
        if stored
            .refresh_expires_at
            .is_some_and(|at| at <= self.clock.now())
        {
            return Err(Error::LoginNeeded(
                "the stored refresh token has expired".into(),
            ));
        }
        let token = self
            .http
            .fetch_with(Grant::RefreshToken(&stored.refresh_token), budget)
            .await
            .map_err(refused_means_login)?;
        // A rotated refresh token has the expiry its answer gave; a kept one keeps its own.
        let rotated = match token.refresh_token() {
            Some(rt) => StoredLogin {
                refresh_token: rt.clone(),
                refresh_expires_at: token.refresh_expires_at(),
                saved_at: self.clock.now(),
            },
            None => StoredLogin {
                refresh_expires_at: token.refresh_expires_at().or(stored.refresh_expires_at),
                saved_at: self.clock.now(),
                ..stored
            },
        };
        self.logins.save(&self.key, &rotated).await?;
        self.warn_if_ending(rotated.refresh_expires_at);
        Ok(token.with_refresh_token(None))
    }
}

impl LoginFetcher {
    /// Warns once when the refresh token ends within [`LOGIN_ENDS_WARNING`].
    fn warn_if_ending(&self, ends: Option<SystemTime>) {
        let Some(ends) = ends else { return };
        let left = ends
            .duration_since(self.clock.now())
            .unwrap_or(Duration::ZERO);
        if left < LOGIN_ENDS_WARNING
            && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "the login's refresh token ends in {}; log in again before then",
                crate::fetch::fmt_duration(Duration::from_secs(left.as_secs()))
            );
        }
    }
}

/// `invalid_grant` on a refresh: the login is gone (expired, revoked, reused).
fn refused_means_login(e: Error) -> Error {
    match e {
        Error::OAuth { error, .. } if error == "invalid_grant" => {
            Error::LoginNeeded("the stored refresh token was refused (invalid_grant)".into())
        }
        other => other,
    }
}

/// A PKCE pair (RFC 7636): the verifier stays here, the S256 challenge goes in the URL.
pub struct Pkce {
    /// 43 characters of base64url from 32 random bytes.
    pub verifier: SecretString,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
}

impl Pkce {
    /// A fresh random pair.
    pub fn new() -> Self {
        let verifier = random_b64(32);
        let challenge = s256(&verifier);
        Self {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

/// The S256 code challenge of `verifier`.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `bytes` random bytes as base64url, for `state`, `nonce` and verifiers.
pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Finishes a code-flow login: exchanges `code` (with the PKCE verifier and the exact
/// `redirect_uri` of the authorization request) and stores the refresh token under the
/// login's lock. The access token comes back without the refresh token.
pub async fn finish_code_login(
    http: &HttpFetcher,
    logins: &LoginStore,
    code: &SecretString,
    redirect_uri: &str,
    verifier: &SecretString,
    budget: Budget,
) -> Result<Token> {
    let grant = Grant::AuthorizationCode {
        code,
        redirect_uri,
        verifier,
    };
    let token = http.fetch_with(grant, budget.once()).await?;
    store_login(http, logins, token, budget).await
}

/// One poll of the device flow's token request (RFC 8628 §3.4), one attempt: the token, or
/// the server's answer as [`Error::OAuth`] (`authorization_pending`, `slow_down`,
/// `expired_token`, `access_denied`), which the caller's loop decides on.
pub async fn poll_device_code(
    http: &HttpFetcher,
    device_code: &SecretString,
    budget: Budget,
) -> Result<Token> {
    http.fetch_with(Grant::DeviceCode(device_code), budget.once())
        .await
}

/// Stores the refresh token of a freshly issued `token` as `http`'s login (under the
/// login's lock); the access token comes back without it.
pub async fn store_login(
    http: &HttpFetcher,
    logins: &LoginStore,
    token: Token,
    budget: Budget,
) -> Result<Token> {
    let Some(rt) = token.refresh_token().cloned() else {
        return Err(Error::InvalidResponse {
            status: 200,
            problem: "the server issued no refresh token, so the login cannot last (ask for the offline_access scope?)".into(),
        });
    };
    let key = login_key(http);
    let _lock = logins.lock(&key, budget.deadline).await?;
    let login = StoredLogin {
        refresh_token: rt,
        refresh_expires_at: token.refresh_expires_at(),
        saved_at: token.received_at(),
    };
    logins.save(&key, &login).await?;
    Ok(token.with_refresh_token(None))
}

//! What the dev-server remembers of logins and device authorizations, between the requests
//! of a flow: plain data, kept in `State`, worked on by `authorize` and `device`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A code handed out by `/oauth/authorize`, waiting for the token request.
#[derive(Debug, Clone)]
pub(crate) struct PendingCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: String,
    pub(crate) scope: Option<String>,
    pub(crate) expires_at: SystemTime,
}

/// What the dev-server knows of logins: pending codes and refresh-token families.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    pub(crate) inner: Mutex<Families>,
    pub(crate) reuses: AtomicU64,
}

#[derive(Debug, Default)]
pub(crate) struct Families {
    pub(crate) codes: HashMap<String, PendingCode>,
    /// Every refresh token issued: its family and when it was issued.
    pub(crate) issued: HashMap<String, (u64, SystemTime)>,
    /// Refresh tokens already redeemed, by family.
    pub(crate) used: HashMap<String, u64>,
    pub(crate) next_family: u64,
}

impl Logins {
    /// How many times a used refresh token was presented again.
    pub(crate) fn reuses(&self) -> u64 {
        self.reuses.load(Ordering::SeqCst)
    }
}

/// One device authorization, until its token is issued or it expires.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    pub(crate) user_code: String,
    pub(crate) scope: Option<String>,
    pub(crate) expires_at: SystemTime,
    pub(crate) interval: Duration,
    /// Real time, not the server's clock: polling speed is about the client's sleeps.
    pub(crate) last_poll: Option<tokio::time::Instant>,
    pub(crate) decision: Option<bool>,
}

/// The device authorizations, by device code.
#[derive(Debug, Default)]
pub(crate) struct Devices {
    pub(crate) pending: std::sync::Mutex<HashMap<String, Pending>>,
}

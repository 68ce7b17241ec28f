//! What a dev-server remembers: clients, issued tokens, fault switches, counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, header};
use freshtoken::SharedClock;
use serde::Serialize;

use crate::{Config, Faults};
use freshtoken::internal::lock;

/// Counters served at `/__stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    token_requests: AtomicU64,
    tokens_issued: AtomicU64,
    token_errors: AtomicU64,
    api_calls: AtomicU64,
    api_ok: AtomicU64,
    api_401: AtomicU64,
    refresh_grants: AtomicU64,
    revocations: AtomicU64,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Every request to the token endpoint, whatever its answer.
    pub token_requests: u64,
    /// Tokens handed out.
    pub tokens_issued: u64,
    /// Token requests answered with an error (faults included).
    pub token_errors: u64,
    /// Requests to `/api/...`.
    pub api_calls: u64,
    /// `/api/...` requests that were let through.
    pub api_ok: u64,
    /// `/api/...` requests answered 401.
    pub api_401: u64,
    /// Tokens issued through the refresh_token grant.
    #[serde(default)]
    pub refresh_grants: u64,
    /// Used refresh tokens presented again (each revoked its login's refresh tokens).
    #[serde(default)]
    pub refresh_reuses: u64,
    /// Requests to the RFC 7009 revocation endpoint.
    #[serde(default)]
    pub revocations: u64,
}

/// What one API path saw, counted per path (`/__stats/paths`), so that a test can tell
/// which of a client's calls were refused, not only how many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PathStats {
    /// Requests to the path.
    pub calls: u64,
    /// Requests let through.
    pub ok: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
}

/// A user of the Genesys-flavoured API (`GET|PATCH /api/v2/users/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevUser {
    pub(crate) version: u64,
    pub(crate) department: Option<String>,
    pub(crate) title: Option<String>,
}

impl Default for DevUser {
    fn default() -> Self {
        // Genesys versions start at 1.
        Self {
            version: 1,
            department: None,
            title: None,
        }
    }
}

/// An API request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: String,
    /// Path, from `/api`.
    pub path: String,
    /// The body (cut at 64 KiB).
    pub body: Vec<u8>,
}

/// A token this server issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Whom it was issued to.
    pub client_id: String,
    /// When it stops working, on the server's clock.
    pub expires_at: SystemTime,
    /// The scope granted.
    pub scope: Option<String>,
    /// The thumbprint of the DPoP key the token is bound to; `None`: a bearer token.
    pub jkt: Option<String>,
}

/// The shared state of one dev-server.
#[derive(Debug)]
pub struct State {
    pub(crate) ttl: Duration,
    pub(crate) clients: HashMap<String, String>,
    pub(crate) client_keys: HashMap<String, String>,
    pub(crate) refresh_tokens: bool,
    pub(crate) genesys: bool,
    users: Mutex<HashMap<String, DevUser>>,
    paths: Mutex<BTreeMap<String, PathStats>>,
    scopes: Option<Vec<String>>,
    refresh: Mutex<HashMap<String, (String, Option<String>)>>,
    seen_jti: Mutex<HashMap<(String, String), u64>>,
    api_log: Mutex<std::collections::VecDeque<ApiRequest>>,
    pub(crate) clock: SharedClock,
    tokens: Mutex<HashMap<String, Issued>>,
    faults: Mutex<Faults>,
    pub(crate) counters: Counters,
    pub(crate) logins: crate::grants::Logins,
    pub(crate) devices: crate::grants::Devices,
    pub(crate) ci: Option<crate::ci_issuer::CiIssuer>,
    pub(crate) mtls: crate::mtls::Mtls,
    pub(crate) dpop: crate::dpop_state::DpopState,
}

impl State {
    /// The server's clock in Unix seconds (what JWT claims are judged by).
    pub(crate) fn unix_now(&self) -> u64 {
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The grant of the request's bearer token, if it is valid (`None`: the API answers
    /// 401); counted in the totals and under `path`.
    pub(crate) fn authorize(&self, headers: &HeaderMap, path: &str) -> Option<Issued> {
        self.authorize_holder(headers, path, None)
    }

    /// Like [`State::authorize`], for a request over TLS with the client certificate `peer`:
    /// a token bound to a certificate (RFC 8705 §3) is valid only with that certificate.
    pub(crate) fn authorize_holder(
        &self,
        headers: &HeaderMap,
        path: &str,
        peer: Option<&crate::PeerCertificate>,
    ) -> Option<Issued> {
        self.count(|c| c.api_calls());
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let held = |t: &str| match self.mtls.binding(t) {
            None => true,
            Some(x5t) => peer.and_then(crate::PeerCertificate::thumbprint) == Some(x5t),
        };
        // A DPoP-bound token is no bearer token (RFC 9449 §7.1).
        match bearer
            .filter(|t| held(t.trim()))
            .and_then(|t| self.check(t.trim()))
            .filter(|i| i.jkt.is_none())
        {
            Some(issued) if !self.faults().reject_api => {
                self.count(|c| c.api_ok());
                self.count_path(path, true);
                Some(issued)
            }
            _ => {
                self.count(|c| c.api_401());
                self.count_path(path, false);
                None
            }
        }
    }

    /// State for `config`.
    pub fn new(config: Config) -> Self {
        Self {
            ttl: config.ttl,
            clients: config.clients.into_iter().collect(),
            client_keys: config.client_keys.into_iter().collect(),
            refresh_tokens: config.refresh_tokens,
            genesys: config.genesys,
            users: Mutex::new(HashMap::new()),
            paths: Mutex::new(BTreeMap::new()),
            scopes: config.scopes,
            refresh: Mutex::new(HashMap::new()),
            seen_jti: Mutex::new(HashMap::new()),
            api_log: Mutex::new(std::collections::VecDeque::new()),
            clock: config.clock,
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(config.faults),
            counters: Counters::default(),
            logins: crate::grants::Logins::default(),
            devices: crate::grants::Devices::default(),
            ci: config.ci.map(crate::ci_issuer::CiIssuer::new),
            mtls: crate::mtls::Mtls::new(config.certificate_clients, config.mtls_base_url),
            dpop: crate::dpop_state::DpopState::default(),
        }
    }

    /// What the DPoP checks counted.
    pub fn dpop_stats(&self) -> crate::DpopStats {
        self.dpop.stats()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Stats {
            token_requests: get(&c.token_requests),
            tokens_issued: get(&c.tokens_issued),
            token_errors: get(&c.token_errors),
            api_calls: get(&c.api_calls),
            api_ok: get(&c.api_ok),
            api_401: get(&c.api_401),
            refresh_grants: get(&c.refresh_grants),
            refresh_reuses: self.logins.reuses(),
            revocations: get(&c.revocations),
        }
    }

    /// What the CI identity issuer counted (zeros when it is off).
    pub fn ci_stats(&self) -> crate::CiStats {
        self.ci.as_ref().map(|c| c.stats()).unwrap_or_default()
    }

    /// The fault switches now.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Takes one from `outage_next`, if any is left; true when this request must fail.
    /// Whether this device-code poll gets a forced `slow_down` (the switch counts down).
    pub(crate) fn take_device_slow_down(&self) -> bool {
        let mut f = lock(&self.faults);
        if f.device_slow_down > 0 {
            f.device_slow_down -= 1;
            return true;
        }
        false
    }

    pub(crate) fn take_outage(&self) -> bool {
        let mut f = lock(&self.faults);
        if f.outage {
            return true;
        }
        if f.outage_next > 0 {
            f.outage_next -= 1;
            return true;
        }
        false
    }

    /// The last API requests (up to 256), oldest first, with their bodies (up to 64 KiB each).
    pub fn api_log(&self) -> Vec<ApiRequest> {
        lock(&self.api_log).iter().cloned().collect()
    }

    pub(crate) fn record(&self, method: &str, path: &str, body: &[u8]) {
        let mut log = lock(&self.api_log);
        if log.len() == 256 {
            log.pop_front();
        }
        log.push_back(ApiRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            body: body[..body.len().min(64 * 1024)].to_vec(),
        });
    }

    /// The API calls and their outcome per path (query strings left out), for tests that
    /// check which calls were refused.
    pub fn path_stats(&self) -> BTreeMap<String, PathStats> {
        lock(&self.paths).clone()
    }

    /// Counts one API call to `path` and whether it was let through.
    pub(crate) fn count_path(&self, path: &str, ok: bool) {
        let mut paths = lock(&self.paths);
        // A client that walks through endless distinct paths must not grow this without bound.
        if paths.len() >= 4096 && !paths.contains_key(path) {
            return;
        }
        let entry = paths.entry(path.to_owned()).or_default();
        entry.calls += 1;
        if ok {
            entry.ok += 1;
        } else {
            entry.unauthorized += 1;
        }
    }

    /// The user `id` (every id names one, created on first use).
    pub(crate) fn user(&self, id: &str) -> DevUser {
        lock(&self.users).entry(id.to_owned()).or_default().clone()
    }

    /// Applies an update made at `version`; the current version if that is stale.
    pub(crate) fn update_user(
        &self,
        id: &str,
        version: u64,
        department: Option<String>,
        title: Option<String>,
    ) -> Result<DevUser, u64> {
        let mut users = lock(&self.users);
        let user = users.entry(id.to_owned()).or_default();
        if user.version != version {
            return Err(user.version);
        }
        user.version += 1;
        if department.is_some() {
            user.department = department;
        }
        if title.is_some() {
            user.title = title;
        }
        Ok(user.clone())
    }

    /// Makes every refresh token invalid, leaving access tokens alone.
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.refresh).clear();
    }

    pub(crate) fn issue_refresh_token(&self, client_id: &str, scope: Option<String>) -> String {
        let rt = format!("rt-{:032x}", rand::random::<u128>());
        lock(&self.refresh).insert(rt.clone(), (client_id.to_owned(), scope));
        rt
    }

    /// Makes `rt` invalid (its login was revoked).
    pub(crate) fn forget_refresh_token(&self, rt: &str) {
        lock(&self.refresh).remove(rt);
    }

    /// Uses up `rt` (refresh tokens rotate); returns the scope it carried.
    pub(crate) fn redeem_refresh_token(&self, rt: &str, client_id: &str) -> Option<Option<String>> {
        let mut refresh = lock(&self.refresh);
        match refresh.get(rt) {
            Some((owner, _)) if owner == client_id => refresh.remove(rt).map(|(_, scope)| scope),
            _ => None,
        }
    }

    /// The part of `requested` this server grants.
    pub(crate) fn grantable_scope(&self, requested: &str) -> String {
        match &self.scopes {
            None => requested.to_owned(),
            Some(known) => requested
                .split_whitespace()
                .filter(|s| known.iter().any(|k| k == s))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Records a client assertion's `jti`; false if it was seen before.
    pub(crate) fn first_use_of_jti(&self, client_id: &str, jti: &str, exp: u64) -> bool {
        let now = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut seen = lock(&self.seen_jti);
        seen.retain(|_, e| *e + 60 > now);
        seen.insert((client_id.to_owned(), jti.to_owned()), exp)
            .is_none()
    }

    /// Makes every issued access and refresh token invalid at once (as a revocation would).
    pub fn revoke_all(&self) -> usize {
        lock(&self.refresh).clear();
        let mut tokens = lock(&self.tokens);
        let n = tokens.len();
        tokens.clear();
        n
    }

    /// Makes one token invalid; true if it was known.
    pub fn revoke(&self, token: &str) -> bool {
        lock(&self.tokens).remove(token).is_some()
    }

    #[cfg(test)]
    pub(crate) fn issue(&self, client_id: &str, scope: Option<String>) -> (String, Duration) {
        self.issue_bound(client_id, scope, None)
    }

    /// A token as [`State::issue`] makes one, bound to the DPoP key `jkt` when given.
    pub(crate) fn issue_bound(
        &self,
        client_id: &str,
        scope: Option<String>,
        jkt: Option<String>,
    ) -> (String, Duration) {
        let token = match &jkt {
            Some(jkt) => {
                let exp = self.unix_now() + self.ttl.as_secs();
                let wrong = self.faults().dpop_wrong_jkt;
                crate::dpop_state::bound_token(
                    &self.dpop,
                    client_id,
                    (self.unix_now(), exp),
                    jkt,
                    wrong,
                )
            }
            None => format!("dev-{:032x}", rand::random::<u128>()),
        };
        let now = self.clock.now();
        let mut tokens = lock(&self.tokens);
        // Forget long-expired tokens so a long run does not grow without bound.
        tokens.retain(|_, t| t.expires_at + Duration::from_secs(60) > now);
        tokens.insert(
            token.clone(),
            Issued {
                client_id: client_id.to_owned(),
                expires_at: now + self.ttl,
                scope,
                jkt,
            },
        );
        (token, self.ttl)
    }

    /// The certificate thumbprint (`cnf."x5t#S256"`) `token` is bound to, if it is bound.
    pub fn binding(&self, token: &str) -> Option<String> {
        self.mtls.binding(token)
    }

    /// The issued token, if it is known and not expired on the server's clock.
    pub fn check(&self, token: &str) -> Option<Issued> {
        let now = self.clock.now();
        lock(&self.tokens)
            .get(token)
            .filter(|t| t.expires_at > now)
            .cloned()
    }

    pub(crate) fn count(&self, which: impl Fn(&Counters) -> &AtomicU64) {
        which(&self.counters).fetch_add(1, Ordering::SeqCst);
    }
}

impl Counters {
    pub(crate) fn token_requests(&self) -> &AtomicU64 {
        &self.token_requests
    }
    pub(crate) fn tokens_issued(&self) -> &AtomicU64 {
        &self.tokens_issued
    }
    pub(crate) fn token_errors(&self) -> &AtomicU64 {
        &self.token_errors
    }
    pub(crate) fn api_calls(&self) -> &AtomicU64 {
        &self.api_calls
    }
    pub(crate) fn api_ok(&self) -> &AtomicU64 {
        &self.api_ok
    }
    pub(crate) fn api_401(&self) -> &AtomicU64 {
        &self.api_401
    }
    pub(crate) fn refresh_grants(&self) -> &AtomicU64 {
        &self.refresh_grants
    }
    pub(crate) fn revocations(&self) -> &AtomicU64 {
        &self.revocations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::ManualClock;
    use std::sync::Arc;

    #[test]
    fn tokens_expire_on_the_servers_clock_and_can_be_revoked() {
        let clock = ManualClock::starting_now();
        let state = State::new(Config {
            ttl: Duration::from_secs(3),
            clock: Arc::new(clock.clone()),
            ..Config::default()
        });
        let (a, _) = state.issue("c", None);
        let (b, _) = state.issue("c", Some("s".into()));
        assert_eq!(state.check(&a).unwrap().client_id, "c");
        clock.advance(Duration::from_millis(2999));
        assert!(state.check(&a).is_some());
        clock.advance(Duration::from_millis(1));
        assert!(state.check(&a).is_none(), "expired exactly at ttl");
        assert!(state.check("dev-unknown").is_none());
        let (c, _) = state.issue("c", None);
        assert!(state.revoke(&c));
        assert!(state.check(&c).is_none());
        assert!(!state.revoke(&b) || state.check(&b).is_none());
    }
}

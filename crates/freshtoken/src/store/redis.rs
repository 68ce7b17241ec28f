//! Tokens shared by a fleet through Redis (single node, TLS, Redis Cluster, or Sentinel).
//!
//! - Key `freshtoken:v1:{<hash>}`: the same identity hash as the file store, so no client id
//!   and no secret in it. Value: the record sealed with the client's own credentials
//!   ([`Sealer`]). TTL: the token's remaining life minus the refresh margin, in ms.
//! - Refresh lock `freshtoken:v1:{<hash>}:lock`: `SET NX PX` with a random owner and a lease;
//!   released by a compare-and-delete script, or by the lease running out if the holder dies.
//! - Failure note `freshtoken:v1:{<hash>}:note`: the fleet's shared backoff.
//! - The braces are a Redis Cluster hash tag: a profile's token, lock and note hash to one
//!   slot, so they live on one primary and move together in a failover or a resharding.
//! - The connection is made on first use and remade after failures (at most every 2 s), so
//!   a long-running process picks up a Redis that comes back, without a restart. Behind
//!   Sentinel, remaking it asks the sentinels for the primary again, so a store follows a
//!   promotion.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use secrecy::{ExposeSecret, SecretString};

use super::record::Record;
use super::seal::Sealer;
use super::{BoxFuture, FailureNote, Release, StoreLock, TokenStore, redact_url};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::request::CacheKey;
use crate::stats::BudgetUse;
use crate::sync::lock;
use crate::token::Token;

/// Default lease of the refresh lock: longer than a fetch normally takes; a dead holder
/// blocks the others at most this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

const TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
const MAX_VALUE: usize = 256 * 1024;
const MAX_NOTE: usize = 8 * 1024;

/// Takes the lock with a lease; when someone else holds it, makes sure their lock has a
/// lease too, so that a lock key left without one (by a crashed writer, an old version or a
/// hand-made SET) cannot block every refresh for good.
const LOCK: &str = "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
if redis.call('pttl', KEYS[1]) == -1 then redis.call('pexpire', KEYS[1], ARGV[2]) end return 0";

/// Deletes the lock only if it is still ours.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// One token request against a fixed-window budget: `KEYS[1]` is the window's counter,
/// `ARGV[1]` the requests a window allows, `ARGV[2]` how long Redis keeps the counter (ms),
/// `ARGV[3]` the ms left in the window. Returns 0 when the request may go, else the ms until
/// the next window. Counting and checking in one script: no two callers take the last one.
const SPEND: &str = "local n = redis.call('incr', KEYS[1]) \
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[2]) end \
if n <= tonumber(ARGV[1]) then return 0 end return tonumber(ARGV[3])";

// One per store, made once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Target {
    Node(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    /// Asks the sentinels for the current primary at each (re)connect.
    Sentinel(std::sync::Arc<tokio::sync::Mutex<redis::sentinel::SentinelClient>>),
}

#[derive(Clone)]
enum Conn {
    Node(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn run<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let value = match self {
            Conn::Node(c) => c.req_packed_command(cmd).await?,
            Conn::Cluster(c) => c.req_packed_command(cmd).await?,
        };
        Ok(redis::from_redis_value(value)?)
    }
}

/// A Redis-backed store.
pub struct RedisStore {
    target: Target,
    shown: String,
    conn: tokio::sync::Mutex<Option<Conn>>,
    last_failure: Mutex<Option<Instant>>,
    sealer: Sealer,
    lease: Duration,
    clock: SharedClock,
    /// Token requests allowed per period, fleet-wide, when there is a budget.
    rate: Option<(u32, Duration)>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shown)
            .field("lease", &self.lease)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (`redis://`, `rediss://`, or `redis+cluster://host:port,host:port`
    /// and `rediss+cluster://…`), sealing values with `credentials` (the client secret or
    /// private key). `password` overrides one in the URL. Nothing is connected yet.
    pub fn new(
        url: &str,
        password: Option<&SecretString>,
        credentials: &SecretString,
    ) -> Result<Self> {
        crate::fetch::install_crypto_provider();
        let bad =
            |e: redis::RedisError| Error::Config(format!("Redis URL {}: {e}", redact_url(url)));
        let with_password = |info: redis::ConnectionInfo| match password {
            Some(p) => {
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_password(p.expose_secret());
                info.set_redis_settings(settings)
            }
            None => info,
        };
        let cluster = url
            .strip_prefix("redis+cluster://")
            .map(|rest| ("redis", rest))
            .or_else(|| {
                url.strip_prefix("rediss+cluster://")
                    .map(|rest| ("rediss", rest))
            });
        let sentinel = url
            .strip_prefix("redis+sentinel://")
            .map(|rest| (false, rest))
            .or_else(|| {
                url.strip_prefix("rediss+sentinel://")
                    .map(|rest| (true, rest))
            });
        if let Some((tls, rest)) = sentinel {
            let client = sentinel_client(tls, rest, password)
                .map_err(|why| Error::Config(format!("Redis URL {}: {why}", redact_url(url))))?;
            return Ok(Self::with_target(
                Target::Sentinel(std::sync::Arc::new(tokio::sync::Mutex::new(client))),
                url,
                credentials,
            ));
        }
        let target = match cluster {
            Some((scheme, rest)) => {
                let (auth, hosts) = match rest.rsplit_once('@') {
                    Some((auth, hosts)) => (format!("{auth}@"), hosts),
                    None => (String::new(), rest),
                };
                let hosts = hosts.split('/').next().unwrap_or_default();
                let nodes = hosts
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(|h| {
                        redis::IntoConnectionInfo::into_connection_info(format!(
                            "{scheme}://{auth}{h}"
                        ))
                        .map(with_password)
                    })
                    .collect::<redis::RedisResult<Vec<_>>>()
                    .map_err(bad)?;
                if nodes.is_empty() {
                    return Err(Error::Config(format!(
                        "Redis URL {}: no cluster nodes",
                        redact_url(url)
                    )));
                }
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .build()
                    .map_err(bad)?;
                Target::Cluster(client)
            }
            None => {
                let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(bad)?;
                Target::Node(redis::Client::open(with_password(info)).map_err(bad)?)
            }
        };
        Ok(Self::with_target(target, url, credentials))
    }

    fn with_target(target: Target, url: &str, credentials: &SecretString) -> Self {
        Self {
            target,
            shown: redact_url(url),
            conn: tokio::sync::Mutex::new(None),
            last_failure: Mutex::new(None),
            sealer: Sealer::new(credentials.expose_secret().as_bytes()),
            lease: DEFAULT_LEASE,
            clock: std::sync::Arc::new(SystemClock),
            rate: None,
        }
    }

    /// Sets the refresh lock's lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Uses `clock` for TTLs.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// A fleet-wide budget: at most `requests` token requests per `period` for a profile,
    /// counted in Redis (fixed windows of `period` by the store's clock), so that the
    /// fleet stays within what the IdP allows (Genesys Cloud answers a client over its
    /// rate with HTTP 400). Zero requests or a zero period means no budget.
    pub fn with_token_rate(mut self, requests: u32, period: Duration) -> Self {
        self.rate = (requests > 0 && !period.is_zero()).then_some((requests, period));
        self
    }

    /// The key of `key`'s request counter for the window `window`, in the token's slot.
    pub fn budget_name(key: &CacheKey, window: u128) -> String {
        format!("{}:rate:{window}", Self::key_name(key))
    }

    /// The key under which `key`'s token lives; the hash in braces is the cluster hash tag
    /// that keeps the profile's token, lock and note in one slot.
    pub fn key_name(key: &CacheKey) -> String {
        format!("freshtoken:v1:{{{key}}}")
    }

    /// The key of `key`'s refresh lock, in the token's slot.
    pub fn lock_name(key: &CacheKey) -> String {
        format!("{}:lock", Self::key_name(key))
    }

    /// The key of `key`'s failure note (the fleet's backoff), in the token's slot.
    pub fn note_name(key: &CacheKey) -> String {
        format!("{}:note", Self::key_name(key))
    }

    /// The budget window `period` puts the store's clock in now: its number, the period in
    /// ms, and the ms left in it.
    fn window(&self, period: Duration) -> (u128, u128, u128) {
        let now = u128::from(crate::clock::unix_millis(self.clock.now()));
        let period_ms = period.as_millis().max(1);
        (now / period_ms, period_ms, period_ms - now % period_ms)
    }

    async fn connection(&self) -> Result<Conn> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let recent = lock(&self.last_failure).is_some_and(|at| at.elapsed() < RECONNECT_AFTER);
        if recent {
            return Err(Error::store(format!(
                "Redis at {} is unreachable (retrying shortly)",
                self.shown
            )));
        }
        let made = match &self.target {
            Target::Node(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1);
                tokio::time::timeout(
                    TIMEOUT * 2,
                    client.get_connection_manager_with_config(config),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "connect timed out",
                    )))
                })
                .map(Conn::Node)
            }
            Target::Sentinel(sentinel) => {
                tokio::time::timeout(TIMEOUT * 2, primary_behind(sentinel))
                    .await
                    .unwrap_or_else(|_| {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "connect timed out",
                        )))
                    })
                    .map(Conn::Node)
            }
            Target::Cluster(client) => {
                tokio::time::timeout(TIMEOUT * 2, client.get_async_connection())
                    .await
                    .unwrap_or_else(|_| {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "connect timed out",
                        )))
                    })
                    .map(Conn::Cluster)
            }
        };
        match made {
            Ok(c) => {
                *conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                *lock(&self.last_failure) = Some(Instant::now());
                Err(
                    Error::store(format!("cannot connect to Redis at {}: {e}", self.shown))
                        .with_source(e),
                )
            }
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(TIMEOUT * 2, conn.run(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                // READONLY: the node was demoted to a replica; connect again (behind
                // Sentinel: to the primary the sentinels name now).
                let demoted =
                    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || demoted {
                    *self.conn.lock().await = None;
                    *lock(&self.last_failure) = Some(Instant::now());
                }
                Err(Error::store(format!("Redis at {}: {e}", self.shown)).with_source(e))
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(Error::store(format!(
                    "Redis at {} did not answer within {} s",
                    self.shown,
                    (TIMEOUT * 2).as_secs()
                )))
            }
        }
    }
}

/// The sentinels of `redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT/PRIMARY-NAME[/DB]`
/// (`rest` is what follows the scheme); the password is the primary's, the sentinels are
/// asked without one.
fn sentinel_client(
    tls: bool,
    rest: &str,
    password: Option<&SecretString>,
) -> std::result::Result<redis::sentinel::SentinelClient, String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut path = path.split('/');
    let name = path
        .next()
        .filter(|n| !n.is_empty())
        .ok_or("a Sentinel URL names the primary: redis+sentinel://HOST:PORT,HOST:PORT/NAME/DB")?;
    let db = match path.next().filter(|d| !d.is_empty()) {
        Some(d) => d
            .parse::<i64>()
            .map_err(|_| format!("database {d:?} is not a number"))?,
        None => 0,
    };
    let sentinels = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            redis::IntoConnectionInfo::into_connection_info(format!("redis://{h}"))
                .map(|info| match info.addr() {
                    redis::ConnectionAddr::Tcp(host, port) if tls => {
                        redis::ConnectionAddr::TcpTls {
                            host: host.clone(),
                            port: *port,
                            insecure: false,
                            tls_params: None,
                        }
                    }
                    addr => addr.clone(),
                })
                .map_err(|e| e.to_string())
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err("no sentinels".to_owned());
    }
    let mut builder = redis::sentinel::SentinelClientBuilder::new(
        sentinels,
        name,
        redis::sentinel::SentinelServerType::Master,
    )
    .map_err(|e| e.to_string())?
    .set_client_to_redis_db(db);
    if tls {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
    }
    let from_url = auth
        .and_then(|a| a.rsplit_once(':').map(|(_, p)| p).or(Some(a)))
        .filter(|p| !p.is_empty());
    if let Some(p) = password.map(|p| p.expose_secret()).or(from_url) {
        builder = builder.set_client_to_redis_password(p);
    }
    builder.build().map_err(|e| e.to_string())
}

/// A connection to the primary the sentinels name now.
async fn primary_behind(
    sentinel: &tokio::sync::Mutex<redis::sentinel::SentinelClient>,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let client = sentinel.lock().await.async_get_client().await?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1);
    client.get_connection_manager_with_config(config).await
}

/// How long Redis keeps a token: its remaining life minus the refresh margin, so that a
/// token read from Redis is never one a caller must refresh at once.
fn ttl_for(token: &Token, now: std::time::SystemTime) -> Option<Duration> {
    let margin = crate::policy::RefreshPolicy::default()
        .must_refresh_margin(token.lifetime(), Duration::ZERO);
    token
        .remaining(now)
        .checked_sub(margin)
        .filter(|d| d.as_millis() > 0)
}

struct RedisLock {
    conn: Conn,
    name: String,
    owner: String,
}

impl Release for RedisLock {
    fn release(self: Box<Self>) -> BoxFuture {
        Box::pin(async move {
            let mut conn = self.conn;
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(RELEASE).arg(1).arg(&self.name).arg(&self.owner);
            if let Err(e) = tokio::time::timeout(TIMEOUT, conn.run::<i64>(&cmd))
                .await
                .unwrap_or(Ok(0))
            {
                tracing::debug!("could not release the Redis lock (its lease will end it): {e}");
            }
        })
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn location(&self, key: &CacheKey) -> String {
        format!("{} key {}", self.shown, Self::key_name(key))
    }

    async fn load(&self, key: &CacheKey) -> Result<Option<Token>> {
        let name = Self::key_name(key);
        let value: Option<String> = self.run(redis::cmd("GET").arg(&name)).await?;
        let Some(value) = value.filter(|v| v.len() <= MAX_VALUE) else {
            return Ok(None);
        };
        let Some(plain) = self.sealer.open(&name, &value) else {
            tracing::warn!(
                "ignoring the Redis value at {name}: it was not sealed with these credentials"
            );
            return Ok(None);
        };
        match Record::parse(&plain, key) {
            Ok(t) => Ok(Some(t)),
            Err(why) => {
                tracing::warn!("ignoring the Redis value at {name}: {why}");
                Ok(None)
            }
        }
    }

    async fn save(&self, key: &CacheKey, token: &Token) -> Result<()> {
        let name = Self::key_name(key);
        let Some(ttl) = ttl_for(token, self.clock.now()) else {
            return Ok(());
        };
        let sealed = self.sealer.seal(&name, &Record::new(key, token).to_bytes());
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.run::<()>(redis::cmd("SET").arg(&name).arg(sealed).arg("PX").arg(ms))
            .await
    }

    async fn remove(&self, key: &CacheKey) -> Result<bool> {
        let n: i64 = self.run(redis::cmd("DEL").arg(Self::key_name(key))).await?;
        Ok(n > 0)
    }

    async fn try_lock(&self, key: &CacheKey) -> Result<Option<StoreLock>> {
        let name = Self::lock_name(key);
        let owner = format!("{:032x}", rand::random::<u128>());
        let ms = u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let taken: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(LOCK)
                    .arg(1)
                    .arg(&name)
                    .arg(&owner)
                    .arg(ms),
            )
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        let conn = self.connection().await?;
        Ok(Some(StoreLock::with_release(RedisLock {
            conn,
            name,
            owner,
        })))
    }

    async fn note(&self, key: &CacheKey) -> Result<Option<FailureNote>> {
        let name = Self::note_name(key);
        let value: Option<String> = self.run(redis::cmd("GET").arg(&name)).await?;
        Ok(value
            .filter(|v| v.len() <= MAX_NOTE)
            .and_then(|v| self.sealer.open(&name, &v))
            .and_then(|plain| FailureNote::parse(&plain)))
    }

    async fn set_note(&self, key: &CacheKey, note: Option<&FailureNote>) -> Result<()> {
        let name = Self::note_name(key);
        let Some(note) = note else {
            return self.run::<()>(redis::cmd("DEL").arg(&name)).await;
        };
        let sealed = self.sealer.seal(&name, &note.to_bytes());
        let ms = u64::try_from(note.keep_for(self.clock.now()).as_millis()).unwrap_or(u64::MAX);
        self.run::<()>(redis::cmd("SET").arg(&name).arg(sealed).arg("PX").arg(ms))
            .await
    }

    async fn spend_budget(&self, key: &CacheKey) -> Result<Option<Duration>> {
        let Some((requests, period)) = self.rate else {
            return Ok(None);
        };
        let (window, period_ms, left) = self.window(period);
        let wait: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(SPEND)
                    .arg(1)
                    .arg(Self::budget_name(key, window))
                    .arg(requests)
                    .arg(u64::try_from(period_ms * 2).unwrap_or(u64::MAX))
                    .arg(u64::try_from(left).unwrap_or(u64::MAX)),
            )
            .await?;
        Ok(u64::try_from(wait)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    async fn budget_use(&self, key: &CacheKey) -> Result<Option<BudgetUse>> {
        let Some((requests, period)) = self.rate else {
            return Ok(None);
        };
        let (window, _, left) = self.window(period);
        let asked: Option<u64> = self
            .run(redis::cmd("GET").arg(Self::budget_name(key, window)))
            .await?;
        let left = Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
        Ok(Some(BudgetUse::new(
            asked.unwrap_or(0),
            requests,
            period,
            left,
        )))
    }

    async fn ttl(&self, key: &CacheKey) -> Result<Option<Duration>> {
        let ms: i64 = self
            .run(redis::cmd("PTTL").arg(Self::key_name(key)))
            .await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        let creds = SecretString::from("s".to_owned());
        let e = RedisStore::new("redis+cluster://:pw@", None, &creds)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no cluster nodes") && !e.contains("pw"), "{e}");
        assert!(RedisStore::new("redis://127.0.0.1:6379/0", None, &creds).is_ok());
        assert!(
            RedisStore::new(
                "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
                None,
                &creds
            )
            .is_ok()
        );
    }

    #[test]
    fn sentinel_urls_name_sentinels_and_a_primary() {
        let creds = SecretString::from("s".to_owned());
        let ok = |url: &str| {
            RedisStore::new(url, None, &creds)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            ok("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/primary/0"),
            Ok(())
        );
        assert_eq!(ok("rediss+sentinel://:pw@s1:26379/primary"), Ok(()));
        for (url, why) in [
            ("redis+sentinel://:pw@127.0.0.1:26379", "names the primary"),
            ("redis+sentinel://:pw@127.0.0.1:26379/", "names the primary"),
            ("redis+sentinel://:pw@/primary/0", "no sentinels"),
            (
                "redis+sentinel://:pw@127.0.0.1:26379/primary/x",
                "not a number",
            ),
        ] {
            let e = ok(url).unwrap_err();
            assert!(e.contains(why) && !e.contains("pw"), "{url}: {e}");
        }
    }

    #[test]
    fn ttl_stops_short_of_the_refresh_margin() {
        use crate::token::ExpirySource;
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = Token::new(
            SecretString::from("t".to_owned()),
            now,
            now + Duration::from_secs(3600),
            ExpirySource::ExpiresIn,
        );
        assert_eq!(ttl_for(&t, now), Some(Duration::from_secs(3570)));
        assert_eq!(ttl_for(&t, now + Duration::from_secs(3580)), None);
    }
}

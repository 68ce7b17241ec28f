//! What the in-process agent tests share: a dev-server on the test's manual clock, a
//! [`Load`] the test edits between reloads, a unix-socket HTTP client, a log capture, and a
//! bounded wait on the agent's change notifications. (To be folded into
//! crates/freshtoken-testkit.)

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use freshtoken::{
    CachedSource, HttpFetcher, HttpOptions, ManualClock, RetryPolicy, SharedClock, TokenRequest,
};
use freshtoken_agent::{
    AgentError, BuildSource, Endpoint, Fingerprint, Handle, Load, Plan, ProfilePlan, ProxySpec,
    Sink, WrapFetch,
};
use freshtoken_devserver::{Config, Running};
use secrecy::SecretString;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The secret of client `c` on the dev-server.
pub fn secret_of(client: &str) -> String {
    format!("secret-of-{client}-Vq8")
}

/// A dev-server for clients `a`, `b` and `c`, issuing `ttl` tokens and judging expiry on
/// `clock`.
pub async fn server(clock: &ManualClock, ttl: Duration) -> Running {
    let config = Config {
        ttl,
        clients: ["a", "b", "c"]
            .iter()
            .map(|c| ((*c).to_owned(), secret_of(c)))
            .collect(),
        clock: Arc::new(clock.clone()),
        ..Config::default()
    };
    match Running::start(([127, 0, 0, 1], 0).into(), config).await {
        Ok(server) => server,
        Err(e) => panic!("cannot start the dev-server: {e}"),
    }
}

/// One profile as the test writes it.
#[derive(Clone)]
pub struct ProfileSpec {
    pub client: String,
    pub secret: String,
    pub sinks: Vec<Sink>,
}

impl ProfileSpec {
    /// Client `c` with its right secret and `sinks`.
    pub fn new(client: &str, sinks: Vec<Sink>) -> Self {
        Self {
            client: client.to_owned(),
            secret: secret_of(client),
            sinks,
        }
    }
}

/// What [`TestLoader`] turns into a plan.
pub struct Spec {
    pub endpoint: Endpoint,
    pub profiles: BTreeMap<String, ProfileSpec>,
    pub proxies: Vec<ProxySpec>,
    /// When set, the next loads fail with this message.
    pub fail: Option<String>,
}

/// A [`Load`] over a [`Spec`] the test changes between reloads; counts the sources built.
pub struct TestLoader {
    spec: Mutex<Spec>,
    builder: Arc<Builder>,
}

/// What a source builder needs, shared with the builders handed out (they are `'static`).
struct Builder {
    token_url: String,
    clock: ManualClock,
    built: AtomicUsize,
}

impl TestLoader {
    pub fn new(server: &Running, clock: &ManualClock, spec: Spec) -> Arc<Self> {
        Arc::new(Self {
            spec: Mutex::new(spec),
            builder: Arc::new(Builder {
                token_url: server.token_url(),
                clock: clock.clone(),
                built: AtomicUsize::new(0),
            }),
        })
    }

    /// Changes the spec (for the next reload).
    pub fn edit(&self, f: impl FnOnce(&mut Spec)) {
        f(&mut self.spec.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Sources built so far.
    pub fn built(&self) -> usize {
        self.builder.built.load(Ordering::SeqCst)
    }
}

impl Builder {
    fn source(&self, p: &ProfileSpec, wrap: WrapFetch) -> Result<CachedSource, AgentError> {
        self.built.fetch_add(1, Ordering::SeqCst);
        let url = self
            .token_url
            .parse()
            .map_err(|e| AgentError::config(format!("{e}")))?;
        let secret = SecretString::from(p.secret.clone());
        let request = TokenRequest::new(url, p.client.clone(), Some(secret));
        let clock: SharedClock = Arc::new(self.clock.clone());
        // No retries inside a refresh: the keeper's own schedule is under test.
        let mut options = HttpOptions::default();
        options.retry = RetryPolicy::none();
        let fetcher = HttpFetcher::new(request, options)?.with_clock(clock.clone());
        Ok(CachedSource::builder_shared(wrap(Arc::new(fetcher)))
            .clock(clock)
            .build())
    }
}

#[async_trait::async_trait]
impl Load for TestLoader {
    async fn load(&self) -> Result<Plan, AgentError> {
        let spec = self.spec.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = &spec.fail {
            return Err(AgentError::Load(why.clone().into()));
        }
        let mut profiles = BTreeMap::new();
        for (name, p) in &spec.profiles {
            let builder = Arc::clone(&self.builder);
            let profile = p.clone();
            let source: BuildSource =
                Box::new(move |wrap| Box::pin(async move { builder.source(&profile, wrap) }));
            profiles.insert(
                name.clone(),
                ProfilePlan {
                    fingerprint: Fingerprint::new((p.client.clone(), p.secret.clone())),
                    sinks: p.sinks.clone(),
                    source,
                },
            );
        }
        Ok(Plan {
            endpoint: spec.endpoint.clone(),
            profiles,
            proxies: spec.proxies.clone(),
        })
    }
}

/// A sandbox folder: the socket goes in `run/` (made 0700 by the agent), sinks beside it.
pub fn endpoint(dir: &Path) -> Endpoint {
    Endpoint {
        socket: dir.join("run").join("agent.sock"),
        listen: None,
    }
}

/// One HTTP/1.1 GET over the agent's socket: `(status, head, body)`.
pub async fn get(socket: &Path, path: &str) -> (u16, String, String) {
    let socket = socket.to_owned();
    let path = path.to_owned();
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&socket)?;
        s.set_read_timeout(Some(Duration::from_secs(35)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: agent\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .await;
    let answer = match answer {
        Ok(Ok(a)) => a,
        other => panic!("no answer on the socket: {other:?}"),
    };
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Waits, at most 10 s, until `done` holds, re-checking at each change the agent notifies
/// (a keeper wrote or cleared sinks, a reload): no polling, no sleeps.
pub async fn until(handle: &Handle, what: &str, mut done: impl FnMut() -> bool) {
    let mut changes = handle.changes();
    let waited = tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|_| done())).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "{what}: not within 10 s\nlog:\n{}",
        log()
    );
}

/// Moves the clock and makes every keeper look at it.
pub fn advance(clock: &ManualClock, handle: &Handle, by: Duration) {
    clock.advance(by);
    handle.recheck();
}

/// The file's text, or `None` when it is missing.
pub fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Everything the agent logged in this test binary (all tests share one log).
pub fn log() -> String {
    String::from_utf8_lossy(&capture().lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// Installs the log capture (once per binary) at info level.
pub fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

//! `freshtoken demo`: the whole idea in one command. A dev-server issues 3-second tokens; a
//! bulk job makes hundreds of plain HTTP calls — no token, no auth code — through the
//! freshtoken proxy across several expiries; half way the dev-server revokes every token, as
//! an administrator might. Every rotation is printed; the run passes only if the job never
//! saw a 401. Beside it, against the same dev-server, the same job runs the naive way (a token
//! fetched once at start, sent by the job itself), so that the two counts of 401s stand side
//! by side; the demo ends with three commands to try next.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use freshtoken::{CachedSource, HttpFetcher, HttpOptions, TokenRequest};
use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Running};
use freshtoken_proxy::{DEFAULT_REPLAY_LIMIT, Proxy};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::DemoArgs;
use crate::exit::{CliError, CliResult, code};
use crate::units::parse_duration;

pub(crate) async fn run(args: &DemoArgs) -> CliResult {
    let ttl = parse_duration(&args.ttl).map_err(|e| CliError::usage(format!("--ttl: {e}")))?;
    let duration =
        parse_duration(&args.duration).map_err(|e| CliError::usage(format!("--duration: {e}")))?;
    if ttl.as_secs() < 1 || args.calls == 0 || args.workers == 0 {
        return Err(CliError::usage(
            "--ttl must be at least 1s, --calls and --workers above 0",
        ));
    }
    let outcome = bulk_job(ttl, duration, args.calls, args.workers).await?;
    println!();
    println!(
        "{} API calls in {:.1} s: {} answered 401 to the job, {} replayed by the proxy after a 401, {} token requests, {} tokens used",
        outcome.calls,
        outcome.elapsed.as_secs_f64(),
        outcome.unauthorized,
        outcome.replayed,
        outcome.token_requests,
        outcome.rotations
    );
    print_side_by_side(&outcome);
    if outcome.unauthorized > 0 || outcome.failed > 0 {
        return Err(CliError {
            code: code::UNAVAILABLE,
            message: format!(
                "the demo's job saw {} 401s and {} other failures",
                outcome.unauthorized, outcome.failed
            ),
        });
    }
    println!("the job never held a token and never saw a 401: that is the point of freshtoken.");
    print_next_steps();
    Ok(())
}

/// The two jobs' counts in two columns: the comparison is the demo's argument.
fn print_side_by_side(outcome: &Outcome) {
    println!();
    println!(
        "{:<16}{:>22}{:>38}",
        "", "through freshtoken", "the naive way (token fetched once)"
    );
    println!(
        "{:<16}{:>22}{:>38}",
        "API calls", outcome.calls, outcome.naive_calls
    );
    println!(
        "{:<16}{:>22}{:>38}",
        "answered 401", outcome.unauthorized, outcome.naive_unauthorized
    );
}

/// Where to go from here: real commands against a dev-server the user starts (the test runs
/// them against one, with its own port in place of 8080).
fn print_next_steps() {
    println!();
    println!(
        "try it on your own job; first, in another terminal: freshtoken dev-server --listen 127.0.0.1:8080 --ttl 30s"
    );
    println!(
        "  export FRESHTOKEN_TOKEN_URL=http://127.0.0.1:8080/oauth/token FRESHTOKEN_CLIENT_ID={DEFAULT_CLIENT_ID} FRESHTOKEN_CLIENT_SECRET={DEFAULT_CLIENT_SECRET}   # the dev-server's own client"
    );
    println!("  freshtoken get");
    println!(
        "  freshtoken exec --proxy --upstream http://127.0.0.1:8080 -- sh -c 'curl -s \"$FRESHTOKEN_PROXY_URL/api/items/1\"'"
    );
    println!(
        "  freshtoken exec -- sh -c 'curl -s -H \"Authorization: Bearer $FRESHTOKEN_ACCESS_TOKEN\" http://127.0.0.1:8080/api/items/2'"
    );
}

struct Outcome {
    calls: u64,
    unauthorized: u64,
    failed: u64,
    replayed: u64,
    token_requests: u64,
    rotations: u64,
    elapsed: Duration,
    naive_calls: u64,
    naive_unauthorized: u64,
}

/// The demo's parts: a dev-server, a source of its tokens, the proxy in front of it.
struct Stack {
    server: Running,
    source: CachedSource,
    proxy: Proxy,
    background: freshtoken_proxy::Background,
}

async fn start_stack(ttl: Duration) -> CliResult<Stack> {
    let server = Running::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Config {
            ttl,
            ..Config::default()
        },
    )
    .await
    .map_err(|e| CliError::internal(format!("cannot start the demo's dev-server: {e}")))?;
    let bad_url = |_| CliError::internal("bad dev-server URL");
    let token_url = server.token_url().parse().map_err(bad_url)?;
    let request = TokenRequest::new(
        token_url,
        DEFAULT_CLIENT_ID,
        Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
    );
    let source = CachedSource::builder(HttpFetcher::new(request, HttpOptions::default())?).build();
    let proxy = Proxy::new(
        source.clone(),
        freshtoken_proxy::Config {
            upstream: server.base_url().parse().map_err(bad_url)?,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            ca_file: None,
            gateway: None,
            client_identity: None,
        },
    )?;
    let background = freshtoken_proxy::Background::start(proxy.clone())
        .await
        .map_err(|e| CliError::internal(format!("cannot start the demo's proxy: {e}")))?;
    Ok(Stack {
        server,
        source,
        proxy,
        background,
    })
}

async fn bulk_job(
    ttl: Duration,
    duration: Duration,
    calls: u32,
    workers: u32,
) -> CliResult<Outcome> {
    let Stack {
        server,
        source,
        proxy,
        background,
    } = start_stack(ttl).await?;
    let proxy_url = background.url().to_owned();
    println!(
        "dev-server on {} issues tokens that live {}; the freshtoken proxy on {proxy_url} sits in front of it",
        server.base_url(),
        freshtoken::internal::fmt_duration(ttl)
    );
    println!(
        "a bulk job makes {calls} plain HTTP calls (no token of its own) over {} with {workers} workers",
        freshtoken::internal::fmt_duration(duration)
    );
    println!(
        "beside it, the same job the naive way: one token fetched at start, sent by the job straight to the dev-server"
    );

    // The demo shows real elapsed seconds: the monotonic clock is the point.
    #[allow(clippy::disallowed_methods)]
    let started = Instant::now();
    let rotations = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn(watch_rotations(source.clone(), started, rotations.clone()));
    let revoker = {
        let state = server.state().clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration / 2).await;
            let n = state.revoke_all();
            println!(
                "  {:>5.2} s  the dev-server revokes every token ({n}), as an administrator might",
                started.elapsed().as_secs_f64()
            );
        })
    };
    let naive = tokio::spawn(naive_job(
        server.base_url(),
        server.token_url(),
        duration,
        calls,
        workers,
    ));
    let counts = run_workers(&proxy_url, None, duration, calls, workers).await?;
    let (naive, naive_token_requests) = naive
        .await
        .map_err(|e| CliError::internal(format!("the naive job failed: {e}")))??;
    let elapsed = started.elapsed();
    revoker.abort();
    watcher.abort();
    background.stop().await;
    let stats = server.state().stats();
    let _ = server.stop().await;
    Ok(Outcome {
        calls: counts.done.load(Ordering::Relaxed),
        unauthorized: counts.unauthorized.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        replayed: proxy.stats().replayed,
        token_requests: stats.token_requests.saturating_sub(naive_token_requests),
        rotations: rotations.load(Ordering::Relaxed),
        elapsed,
        naive_calls: naive.done.load(Ordering::Relaxed),
        naive_unauthorized: naive.unauthorized.load(Ordering::Relaxed),
    })
}

/// The same job the naive way, as scripts do it without freshtoken: one token fetched at
/// start, sent straight to the API by the job on every call. Returns what its calls got back
/// and the token requests it made.
async fn naive_job(
    base_url: String,
    token_url: String,
    duration: Duration,
    calls: u32,
    workers: u32,
) -> CliResult<(Arc<Counts>, u64)> {
    let request = TokenRequest::new(
        token_url
            .parse()
            .map_err(|_| CliError::internal("bad dev-server URL"))?,
        DEFAULT_CLIENT_ID,
        Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
    );
    let source = CachedSource::builder(HttpFetcher::new(request, HttpOptions::default())?).build();
    let token = source.token().await?;
    let bearer = SecretString::from(token.expose_secret().to_owned());
    let counts = run_workers(&base_url, Some(bearer), duration, calls, workers).await?;
    Ok((counts, source.fetch_count()))
}

/// What the job's calls got back.
#[derive(Default)]
struct Counts {
    unauthorized: AtomicU64,
    failed: AtomicU64,
    done: AtomicU64,
}

/// The job: `workers` tasks making `calls` PUTs in all to `base` (the proxy, or with
/// `bearer` the API itself), spread over `duration`.
async fn run_workers(
    proxy_url: &str,
    bearer: Option<SecretString>,
    duration: Duration,
    calls: u32,
    workers: u32,
) -> CliResult<Arc<Counts>> {
    let http = freshtoken::http_client(&HttpOptions::default())?;
    let counts = Arc::new(Counts::default());
    let per_worker = calls.div_ceil(workers);
    let pause = duration / per_worker.max(1);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (http, base, counts) = (http.clone(), proxy_url.to_owned(), Arc::clone(&counts));
        let bearer = bearer.clone();
        let mine = per_worker.min(calls.saturating_sub(worker * per_worker));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pause);
            for i in 0..mine {
                tick.tick().await;
                let url = format!("{base}/api/items/{worker}-{i}");
                let mut put = http.put(&url).body("{\"enabled\":true}");
                if let Some(b) = &bearer {
                    put = put.bearer_auth(b.expose_secret());
                }
                match put.send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                        counts.unauthorized.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status().is_success() => {}
                    Ok(_) | Err(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                counts.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(counts)
}

/// Prints a line whenever the proxy's token changes (the source says when; nothing polls).
async fn watch_rotations(source: CachedSource, started: Instant, rotations: Arc<AtomicU64>) {
    let mut changes = source.subscribe();
    let mut last = None;
    loop {
        if let Some(token) = source.peek_valid() {
            let fp = token.fingerprint();
            if last != Some(fp) {
                let n = rotations.fetch_add(1, Ordering::Relaxed) + 1;
                println!(
                    "  {:>5.2} s  {} {fp} (#{n}), valid {} more",
                    started.elapsed().as_secs_f64(),
                    if last.is_none() {
                        "first token"
                    } else {
                        "rotated to"
                    },
                    freshtoken::internal::fmt_duration(
                        token.remaining(freshtoken::Clock::now(&freshtoken::SystemClock))
                    )
                );
                let _ = std::io::stdout().flush();
                last = Some(fp);
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

//! `freshtoken demo`: the whole idea in one command. A dev-server issues 3-second tokens; a
//! bulk job makes hundreds of API calls through the library's cached source across several
//! expiries; every rotation is printed; the run passes only if no call saw a 401.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freshtoken::{CachedSource, Fingerprint, HttpFetcher, HttpOptions, TokenRequest};
use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Running};
use secrecy::SecretString;

use crate::cli::DemoArgs;
use crate::exit::{CliError, CliResult};
use crate::settings::parse_duration;

pub fn run(args: &DemoArgs) -> CliResult {
    let ttl = parse_duration(&args.ttl).map_err(|e| CliError::usage(format!("--ttl: {e}")))?;
    let duration =
        parse_duration(&args.duration).map_err(|e| CliError::usage(format!("--duration: {e}")))?;
    if ttl.as_secs() < 1 || args.calls == 0 || args.workers == 0 {
        return Err(CliError::usage(
            "--ttl must be at least 1s, --calls and --workers above 0",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the async runtime: {e}")))?;
    let outcome = runtime.block_on(bulk_job(ttl, duration, args.calls, args.workers))?;
    println!();
    println!(
        "{} API calls in {:.1} s, {} answered 401, {} token requests for {} token rotations",
        outcome.calls,
        outcome.elapsed.as_secs_f64(),
        outcome.unauthorized,
        outcome.token_requests,
        outcome.rotations
    );
    if outcome.unauthorized > 0 || outcome.failed > 0 {
        return Err(CliError {
            code: crate::exit::code::UNAVAILABLE,
            message: format!(
                "the demo saw {} 401s and {} other failures",
                outcome.unauthorized, outcome.failed
            ),
        });
    }
    println!("no call ever used an expired token: that is the point of freshtoken.");
    Ok(())
}

struct Outcome {
    calls: u64,
    unauthorized: u64,
    failed: u64,
    token_requests: u64,
    rotations: u64,
    elapsed: Duration,
}

async fn bulk_job(
    ttl: Duration,
    duration: Duration,
    calls: u32,
    workers: u32,
) -> CliResult<Outcome> {
    let config = Config {
        ttl,
        ..Config::default()
    };
    let server = Running::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .map_err(|e| CliError::internal(format!("cannot start the demo's dev-server: {e}")))?;
    println!(
        "dev-server on {} issues tokens that live {}; running {calls} API calls over {} with {workers} workers",
        server.base_url(),
        freshtoken::fmt_duration(ttl),
        freshtoken::fmt_duration(duration)
    );

    let token_url = server
        .token_url()
        .parse()
        .map_err(|_| CliError::internal("bad dev-server URL"))?;
    let request = TokenRequest::new(
        token_url,
        DEFAULT_CLIENT_ID,
        Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
    );
    let source = CachedSource::builder(HttpFetcher::new(request, HttpOptions::default())?).build();
    let http = freshtoken::http_client(&HttpOptions::default())?;

    let started = Instant::now();
    let last: Arc<Mutex<Option<Fingerprint>>> = Arc::default();
    let rotations = Arc::new(AtomicU64::new(0));
    let unauthorized = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let per_worker = calls.div_ceil(workers);
    let pause = duration / per_worker.max(1);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (source, http, base) = (source.clone(), http.clone(), server.base_url());
        let (last, rotations, unauthorized, failed, done) = (
            last.clone(),
            rotations.clone(),
            unauthorized.clone(),
            failed.clone(),
            done.clone(),
        );
        let mine = per_worker.min(calls.saturating_sub(worker * per_worker));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pause);
            for i in 0..mine {
                tick.tick().await;
                let token = match source.token().await {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("  token: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let fp = token.fingerprint();
                {
                    let mut last = last
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if *last != Some(fp) {
                        let n = rotations.fetch_add(1, Ordering::Relaxed) + 1;
                        let what = if last.is_none() {
                            "first token"
                        } else {
                            "rotated to"
                        };
                        println!(
                            "  {:>5.2} s  {what} {fp} (#{n}), valid {} more",
                            started.elapsed().as_secs_f64(),
                            freshtoken::fmt_duration(token.remaining(std::time::SystemTime::now()))
                        );
                        let _ = std::io::stdout().flush();
                        *last = Some(fp);
                    }
                }
                let url = format!("{base}/api/items/{worker}-{i}");
                match http
                    .put(&url)
                    .bearer_auth(token.expose_secret())
                    .body("{\"enabled\":true}")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                        unauthorized.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status().is_success() => {}
                    Ok(_) | Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let stats = server.state().stats();
    let elapsed = started.elapsed();
    let _ = server.stop().await;
    Ok(Outcome {
        calls: done.load(Ordering::Relaxed),
        unauthorized: unauthorized.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        token_requests: stats.token_requests,
        rotations: rotations.load(Ordering::Relaxed),
        elapsed,
    })
}

//! The cached hit path, at 1 and 2 threads, next to a plain `Mutex<Option<Token>>` in the
//! same run. Each figure is the time per lookup per thread: with perfect scaling the
//! 2-thread figure equals the 1-thread one.
//!
//! Run: `cargo bench -p freshtoken --bench hit_path`

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use freshtoken::{CachedSource, Clock, ExpirySource, Fetch, SystemClock, Token};
use secrecy::SecretString;

#[derive(Debug)]
struct OneHour;

#[async_trait]
impl Fetch for OneHour {
    fn cache_key(&self) -> freshtoken::CacheKey {
        freshtoken::CacheKey::from_hex(&"0".repeat(64)).expect("64 lowercase hex digits")
    }

    async fn fetch(
        &self,
        _previous: Option<&Token>,
        _budget: freshtoken::Budget,
    ) -> freshtoken::Result<Token> {
        let now = SystemClock.now();
        Ok(hour_token(now))
    }
}

fn hour_token(now: std::time::SystemTime) -> Token {
    Token::new(
        SecretString::from("x".repeat(40)),
        now,
        now + Duration::from_secs(3600),
        ExpirySource::ExpiresIn,
    )
}

/// Polls a future that is expected to complete without waiting (the hit path of `token()`).
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the hit path must not wait"),
    }
}

/// Runs `op` `iters` times on each of `threads` threads at once; returns the wall time.
fn concurrent<S: Sync>(state: &S, threads: usize, iters: u64, op: impl Fn(&S) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    // A benchmark measures real elapsed time: the monotonic clock is the point.
                    #[allow(clippy::disallowed_methods)]
                    let start = Instant::now();
                    for _ in 0..iters {
                        op(state);
                    }
                    start.elapsed()
                })
            })
            .collect();
        elapsed = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap();
    });
    elapsed
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = CachedSource::builder(OneHour).build();
    runtime.block_on(source.token()).unwrap();
    let mutex: Mutex<Option<Token>> = Mutex::new(Some(hour_token(SystemClock.now())));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let mut group = c.benchmark_group("hit_path");
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("cached", threads), |b| {
            b.iter_custom(|iters| {
                concurrent(&source, threads, iters, |s| {
                    let t = s.peek_fresh().expect("fresh");
                    black_box(t.expose_secret().len());
                })
            })
        });
        group.bench_function(BenchmarkId::new("token", threads), |b| {
            b.iter_custom(|iters| {
                concurrent(&source, threads, iters, |s| {
                    let t = poll_once(s.token()).expect("fresh");
                    black_box(t.expose_secret().len());
                })
            })
        });
        group.bench_function(BenchmarkId::new("mutex_option_token", threads), |b| {
            b.iter_custom(|iters| {
                concurrent(&mutex, threads, iters, |m| {
                    let guard = m.lock().unwrap();
                    let t = guard
                        .as_ref()
                        .filter(|t| t.is_valid_at(clock.now()))
                        .expect("fresh");
                    black_box(t.expose_secret().len());
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);

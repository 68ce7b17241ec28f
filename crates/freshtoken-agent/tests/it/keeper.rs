//! The keeper's schedule on paused tokio time: no socket waits on a timer here (the fetcher
//! is in memory), so tokio skips every wait at once and the clock follows it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshtoken::{Budget, CachedSource, Clock, Fetch, Token};
use freshtoken_agent::{Agent, Endpoint, Fingerprint, Load, Plan, ProfilePlan};

use crate::support::TestResult;

/// Wall time that moves with tokio's (paused) clock.
#[derive(Debug)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + self.start.elapsed()
    }
}

/// A token endpoint that is down: records when it was asked.
#[derive(Debug)]
struct Down {
    clock: Arc<TokioClock>,
    asked: Mutex<Vec<SystemTime>>,
}

#[async_trait::async_trait]
impl Fetch for Down {
    async fn fetch(&self, _: Option<&Token>, _: Budget) -> freshtoken::Result<Token> {
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.push(self.clock.now());
        Err(freshtoken::Error::Status {
            status: 503,
            excerpt: "down".into(),
        })
    }

    fn patience(&self) -> Duration {
        Duration::ZERO
    }

    fn cache_key(&self) -> freshtoken::CacheKey {
        // 64 lowercase hex digits always make a key.
        freshtoken::CacheKey::from_hex(&"0".repeat(64)).expect("64 hex digits")
    }
}

/// One profile over the `Down` fetcher.
struct OneProfile {
    fetcher: Arc<Down>,
    clock: Arc<TokioClock>,
    endpoint: Endpoint,
}

#[async_trait::async_trait]
impl Load for OneProfile {
    async fn load(&self) -> Result<Plan, freshtoken_agent::AgentError> {
        let (fetcher, clock) = (Arc::clone(&self.fetcher), Arc::clone(&self.clock));
        let source: freshtoken_agent::BuildSource = Box::new(move |wrap| {
            Box::pin(async move {
                Ok(CachedSource::builder_shared(wrap(fetcher))
                    .clock(clock)
                    .build())
            })
        });
        Ok(Plan {
            endpoint: self.endpoint.clone(),
            profiles: BTreeMap::from([(
                "down".to_owned(),
                ProfilePlan {
                    fingerprint: Fingerprint::new(()),
                    sinks: Vec::new(),
                    source,
                },
            )]),
            proxies: Vec::new(),
        })
    }
}

/// A keeper whose refreshes fail tries again after 1 s, 2 s, 4 s … doubling up to a
/// minute, each pause within ±20 % of that (never near zero: it does not hammer a server
/// that is down), and never gives up.
#[tokio::test(start_paused = true)]
async fn the_keeper_backs_off_from_one_second_doubling_to_a_minute() -> TestResult {
    let clock = Arc::new(TokioClock {
        start: tokio::time::Instant::now(),
    });
    let fetcher = Arc::new(Down {
        clock: Arc::clone(&clock),
        asked: Mutex::default(),
    });
    let dir = tempfile::tempdir()?;
    let loader = Arc::new(OneProfile {
        fetcher: Arc::clone(&fetcher),
        clock: Arc::clone(&clock),
        endpoint: crate::support::endpoint(dir.path()),
    });
    let running = Agent::new(loader, clock).start().await?;
    let handle = running.handle();
    let asked = || {
        fetcher
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };
    let mut changes = handle.changes();
    // Virtual time: an hour passes in an instant unless something hangs.
    let waited = tokio::time::timeout(
        Duration::from_secs(3600),
        changes.wait_for(|_| asked().len() >= 10),
    )
    .await;
    assert!(matches!(waited, Ok(Ok(_))), "{:?}", asked());
    let asked = asked();
    let ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60];
    for (i, (pair, ceiling)) in asked.windows(2).zip(ceilings).enumerate() {
        let pause = pair[1].duration_since(pair[0])?.as_secs_f64();
        let (low, high) = (0.8 * f64::from(ceiling), 1.2 * f64::from(ceiling));
        assert!(
            (low..=high + 0.01).contains(&pause),
            "pause {i}: {pause} s, not within ±20 % of {ceiling} s: {asked:?}"
        );
    }
    running.serve(async {}).await;
    Ok(())
}

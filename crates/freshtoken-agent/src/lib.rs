//! The freshtoken agent as a library: keeps every profile of a [`Plan`] fresh in the
//! background, mirrors tokens into sink files, serves them on a local endpoint (with
//! `/healthz`, `/readyz` and `/metrics`), runs the plan's proxies, and reloads all of that on
//! request without dropping a valid token.
//!
//! It knows nothing of config files, flags or signals: the binary implements [`Load`] (read
//! the file, resolve each profile) and drives [`Agent::run`] with a shutdown future, as
//! mini-redis's `server::run(listener, shutdown)` is driven; a SIGHUP becomes
//! [`Handle::reload`].
//!
//! ```no_run
//! # async fn demo(loader: std::sync::Arc<dyn freshtoken_agent::Load>) -> Result<(), freshtoken_agent::AgentError> {
//! let clock = std::sync::Arc::new(freshtoken::SystemClock);
//! let running = freshtoken_agent::Agent::new(loader, clock).start().await?;
//! let handle = running.handle();
//! tokio::spawn(async move { handle.reload().await });
//! running.serve(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod budget;
pub mod client;
pub mod credential;
mod endpoint;
mod error;
mod keeper;
mod metrics;
pub mod output;
mod plan;
mod proxies;
mod sink;
mod socket_dir;
mod status;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use freshtoken::internal::lock;
use std::time::Duration;

use freshtoken::{CachedSource, SharedClock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::AgentError;
use keeper::Keeper;
use metrics::Metered;
use metrics::{ProfileMetrics, Reloads};
pub use plan::{
    BuildSource, Endpoint, Fingerprint, Load, Plan, ProfilePlan, ProxySpec, SourceFuture, WrapFetch,
};
use proxies::RunningProxy;
pub use sink::{OnExpiry, Sink};

/// How long in-flight proxy and endpoint requests may run on after shutdown (and a
/// restarted proxy's after a reload), unless [`Agent::grace`] says otherwise.
pub const GRACE: Duration = Duration::from_secs(10);

/// A profile the agent keeps.
struct Profile {
    fingerprint: Fingerprint,
    source: CachedSource,
    sinks: Arc<Vec<Sink>>,
    metrics: Arc<ProfileMetrics>,
    /// What the sinks hold, written by the keeper.
    held: Arc<keeper::SinksHeld>,
    /// One endpoint caller at a time fetches ahead of the refresh schedule for its
    /// `min_ttl` (see `endpoint::token_for`).
    early: tokio::sync::Mutex<()>,
    keeper: JoinHandle<()>,
}

impl Drop for Profile {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// The agent's state, shared with the endpoint.
struct State {
    loader: Arc<dyn Load>,
    clock: SharedClock,
    profiles: Mutex<BTreeMap<String, Arc<Profile>>>,
    /// The proxies serving now. Never held across an await: a reload drains the proxies it
    /// stops outside it, so that `/metrics` does not wait for the drain.
    proxies: Mutex<Vec<RunningProxy>>,
    /// The endpoint as started: changes to it need a restart.
    endpoint: Mutex<Option<Endpoint>>,
    reloads: Reloads,
    /// See [`Agent::grace`].
    grace: Duration,
    /// One reload at a time; shutdown waits for the one in progress.
    reloading: tokio::sync::Mutex<()>,
    /// Bumped when a keeper wrote or cleared sinks or tried a refresh, and after each reload.
    events: Arc<watch::Sender<u64>>,
    /// Bumped to make every keeper look at the clock again.
    wake: watch::Sender<u64>,
}

/// A profile checked and ready to start: its source is built, its sinks are valid.
struct Prepared {
    fingerprint: Fingerprint,
    /// The running profile's source when its fingerprint is unchanged, else a new one.
    source: CachedSource,
    /// Whether `source` is new (the proxies of this profile restart with it).
    renewed: bool,
    /// The profile's counters: the running profile's, kept across reloads.
    metrics: Arc<ProfileMetrics>,
    sinks: Vec<Sink>,
}

/// A plan checked and built, not started.
struct Ready {
    profiles: BTreeMap<String, Prepared>,
    proxies: Vec<ProxySpec>,
    endpoint: Endpoint,
}

/// The agent, not started yet.
pub struct Agent {
    state: Arc<State>,
}

/// What `--check` needs: the sources the plan builds, each able to fetch a token.
#[derive(Debug)]
#[non_exhaustive]
pub struct Checked {
    /// Each profile's source, by name.
    pub sources: BTreeMap<String, CachedSource>,
    /// How many proxies the plan runs.
    pub proxies: usize,
}

impl Agent {
    /// An agent that runs what `loader` says, on `clock` (every token decision uses it).
    pub fn new(loader: Arc<dyn Load>, clock: SharedClock) -> Self {
        let (events, _) = watch::channel(0);
        let (wake, _) = watch::channel(0);
        Self {
            state: Arc::new(State {
                loader,
                clock,
                profiles: Mutex::default(),
                proxies: Mutex::default(),
                endpoint: Mutex::default(),
                reloads: Reloads::default(),
                grace: GRACE,
                reloading: tokio::sync::Mutex::new(()),
                events: Arc::new(events),
                wake,
            }),
        }
    }

    /// How long in-flight requests may run on once their listener stops (shutdown, or a
    /// proxy restarted by a reload) before they are cut off; [`GRACE`] by default.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        // The state is shared only once the agent starts: here it is still this agent's.
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.grace = grace;
        }
        self
    }

    /// Loads and checks the plan, builds every source and binds the endpoint (released
    /// again), starting nothing: what `agent --check` reports on.
    pub async fn check(&self) -> Result<Checked, AgentError> {
        let ready = self.state.prepare(self.state.loader.load().await?).await?;
        drop(endpoint::bind(&ready.endpoint)?);
        Ok(Checked {
            sources: ready
                .profiles
                .into_iter()
                .map(|(name, p)| (name, p.source))
                .collect(),
            proxies: ready.proxies.len(),
        })
    }

    /// Loads the plan, binds the endpoint, starts the keepers and proxies: once this
    /// returns, the endpoint answers. Any proxy that cannot start is the error.
    pub async fn start(self) -> Result<Running, AgentError> {
        let state = self.state;
        let ready = state.prepare(state.loader.load().await?).await?;
        let endpoints = endpoint::bind(&ready.endpoint)?;
        // Before anything starts: the TCP endpoint's credential may fail to be written.
        let (stop, stopped) = freshtoken::drain::channel();
        let serving = endpoints.serve(Arc::clone(&state), stopped)?;
        *lock(&state.endpoint) = Some(ready.endpoint);
        state.apply(ready.profiles);
        if let Some(e) = proxies::reconcile(&state, &ready.proxies, &[])
            .await
            .into_iter()
            .next()
        {
            stop.signal();
            state.shutdown().await;
            return Err(e);
        }
        Ok(Running {
            state,
            stop,
            served: tokio::spawn(serving),
        })
    }

    /// [`Agent::start`], then [`Running::serve`] until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        self.start().await?.serve(shutdown).await;
        Ok(())
    }
}

/// A started agent.
pub struct Running {
    state: Arc<State>,
    stop: freshtoken::drain::Signal,
    served: JoinHandle<()>,
}

impl Running {
    /// A handle to reload the agent or watch it while it serves.
    pub fn handle(&self) -> Handle {
        Handle {
            state: Arc::clone(&self.state),
        }
    }

    /// Serves until `shutdown` completes, then waits for a reload in progress, stops the
    /// proxies (draining them) and the keepers, clears every sink (nothing keeps them fresh
    /// any more, and a sink never outlives its token), and lets endpoint requests finish
    /// for up to the grace period ([`Agent::grace`]).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        tracing::info!("stopping");
        let _one = self.state.reloading.lock().await;
        self.stop.signal();
        self.state.shutdown().await;
        if tokio::time::timeout(self.state.grace, self.served)
            .await
            .is_err()
        {
            tracing::warn!("endpoint requests still running after the grace period were cut off");
        }
    }
}

/// Reloads and watches a running agent; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    state: Arc<State>,
}

impl Handle {
    /// Loads the plan again and applies it; a plan that does not load or check keeps the
    /// running one (the error is logged and returned). Reloads run one at a time.
    pub async fn reload(&self) -> Result<(), AgentError> {
        let s = &self.state;
        let _one = s.reloading.lock().await;
        let result = s.try_reload().await;
        // Logged before counted: whoever sees the count on /metrics finds the log line.
        match &result {
            Ok(()) => {
                tracing::info!("reloaded {}", s.loader.describe());
                s.reloads.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!("kept the running config: {e}");
                s.reloads.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.events.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// A receiver that sees a change each time a keeper wrote or cleared its sinks or
    /// finished a refresh attempt, and after each reload: what to await instead of polling
    /// files.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.state.events.subscribe()
    }

    /// Makes every keeper look at the clock again now, rather than when its timer fires:
    /// for a clock that jumped (a resumed laptop, a test's manual clock).
    pub fn recheck(&self) {
        self.state.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The source of `profile`, if the agent keeps it.
    pub fn source(&self, profile: &str) -> Option<CachedSource> {
        self.state.profile(profile).map(|p| p.source.clone())
    }

    /// Whether every profile holds a valid token and has written it to all its sinks: what
    /// `/readyz` answers 200 for.
    pub fn ready(&self) -> bool {
        self.state.not_ready().is_empty()
    }

    /// The profiles the agent keeps, by name.
    pub fn profiles(&self) -> Vec<String> {
        self.state.profiles().keys().cloned().collect()
    }

    /// The addresses the proxies serving now listen on: the port bound, also for a
    /// `[[proxy]]` that asked for port 0.
    pub fn proxies(&self) -> Vec<std::net::SocketAddr> {
        self.state.proxies().iter().map(|p| p.bound).collect()
    }

    /// Where the endpoint listens.
    pub fn endpoint(&self) -> Option<Endpoint> {
        lock(&self.state.endpoint).clone()
    }
}

impl State {
    fn profiles(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Profile>>> {
        lock(&self.profiles)
    }

    fn proxies(&self) -> std::sync::MutexGuard<'_, Vec<RunningProxy>> {
        lock(&self.proxies)
    }

    /// `profile`, if the agent keeps it.
    fn profile(&self, profile: &str) -> Option<Arc<Profile>> {
        self.profiles().get(profile).map(Arc::clone)
    }

    /// Checks every profile of `plan` and builds what is new or changed, touching nothing
    /// running: a plan that fails here leaves the agent as it was.
    async fn prepare(&self, plan: Plan) -> Result<Ready, AgentError> {
        // What runs now, copied out so that no lock is held while sources are built.
        let running: BTreeMap<String, Arc<Profile>> = self.profiles().clone();
        let mut paths: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut prepared = BTreeMap::new();
        for (name, profile) in plan.profiles {
            for sink in &profile.sinks {
                if let Some(other) = paths.insert(sink.path().to_owned(), name.clone()) {
                    return Err(AgentError::config(format!(
                        "sink {} is named twice (profiles {other:?} and {name:?})",
                        sink.path().display()
                    )));
                }
            }
            let previous = running
                .get(&name)
                .filter(|p| p.fingerprint == profile.fingerprint);
            let (source, metrics, renewed) = match previous {
                Some(p) => (p.source.clone(), Arc::clone(&p.metrics), false),
                None => {
                    let metrics: Arc<ProfileMetrics> = running
                        .get(&name)
                        .map(|p| Arc::clone(&p.metrics))
                        .unwrap_or_default();
                    let counted = Arc::clone(&metrics);
                    let wrap: WrapFetch =
                        Box::new(move |fetcher| Arc::new(Metered::new(fetcher, counted)));
                    ((profile.source)(wrap).await?, metrics, true)
                }
            };
            prepared.insert(
                name,
                Prepared {
                    fingerprint: profile.fingerprint,
                    source,
                    renewed,
                    metrics,
                    sinks: profile.sinks,
                },
            );
        }
        proxies::check(&plan.proxies, &prepared)?;
        Ok(Ready {
            profiles: prepared,
            proxies: plan.proxies,
            endpoint: plan.endpoint,
        })
    }

    /// Starts what `prepared` describes, keeping the sources of unchanged profiles and
    /// clearing the sinks nobody keeps any more.
    fn apply(&self, prepared: BTreeMap<String, Prepared>) {
        let mut running = self.profiles();
        let mut old = std::mem::take(&mut *running);
        for (name, p) in prepared {
            let previous = old.remove(&name);
            let unchanged = previous
                .as_ref()
                .is_some_and(|prev| !p.renewed && *prev.sinks == p.sinks);
            if unchanged && let Some(prev) = previous {
                running.insert(name, prev);
                continue;
            }
            if let Some(prev) = previous {
                if p.renewed {
                    p.metrics.retire(&prev.source);
                }
                let dropped: Vec<_> = prev
                    .sinks
                    .iter()
                    .filter(|s| !p.sinks.iter().any(|n| n.path() == s.path()))
                    .cloned()
                    .collect();
                prev.keeper.abort();
                keeper::clear(&name, &dropped);
                tracing::info!(profile = %name, "profile changed");
            } else {
                tracing::info!(profile = %name, "keeping profile");
            }
            let profile = self.start_profile(&name, p);
            running.insert(name, Arc::new(profile));
        }
        for (name, gone) in old {
            gone.keeper.abort();
            keeper::clear(&name, &gone.sinks);
            tracing::info!(profile = %name, "profile removed; its sinks are cleared");
        }
    }

    /// A profile with its keeper running.
    fn start_profile(&self, name: &str, p: Prepared) -> Profile {
        let sinks = Arc::new(p.sinks);
        let held = Arc::new(keeper::SinksHeld::default());
        let keeper = tokio::spawn(
            Keeper {
                profile: name.to_owned(),
                source: p.source.clone(),
                sinks: Arc::clone(&sinks),
                metrics: Arc::clone(&p.metrics),
                clock: self.clock.clone(),
                held: Arc::clone(&held),
                events: Arc::clone(&self.events),
                wake: self.wake.subscribe(),
            }
            .run(),
        );
        Profile {
            fingerprint: p.fingerprint,
            source: p.source,
            sinks,
            metrics: p.metrics,
            held,
            early: tokio::sync::Mutex::new(()),
            keeper,
        }
    }

    async fn try_reload(&self) -> Result<(), AgentError> {
        let ready = self.prepare(self.loader.load().await?).await?;
        if lock(&self.endpoint).as_ref() != Some(&ready.endpoint) {
            tracing::warn!("changes to [agent] (socket, listen) take effect at the next start");
        }
        // Proxies whose profile gets a new source are restarted with it.
        let renewed: Vec<String> = ready
            .profiles
            .iter()
            .filter(|(_, p)| p.renewed)
            .map(|(n, _)| n.clone())
            .collect();
        self.apply(ready.profiles);
        // A proxy that cannot start is logged by `reconcile`; the rest of the plan holds.
        let _ = proxies::reconcile(self, &ready.proxies, &renewed).await;
        Ok(())
    }

    /// Stops the proxies (draining them) and the keepers, and clears every sink.
    async fn shutdown(&self) {
        proxies::stop_all(self).await;
        let profiles = std::mem::take(&mut *self.profiles());
        for (name, p) in profiles {
            p.keeper.abort();
            keeper::clear(&name, &p.sinks);
        }
    }
}

//! `freshtoken agent`: keeps every profile of the config file fresh in the background,
//! mirrors tokens into sink files, serves them on a local endpoint, runs the configured
//! proxies, and reloads all of that on SIGHUP without dropping a valid token.

pub mod client;
pub mod credential;
mod endpoint;
mod keeper;
mod metrics;
mod proxies;
mod sink;
mod socket_dir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use freshtoken::{CachedSource, MemoryStore, SharedClock, Want};
use tokio::task::JoinHandle;

use crate::cli::{AgentArgs, Cli};
use crate::config::{self, ConfigFile, ProfileConfig};
use crate::exit::{CliError, CliResult};
use crate::secret::ConfigSecrets;
use crate::settings::{self, Environment};
use crate::wiring::{self, Wired};
use keeper::Keeper;
use metrics::{ProfileMetrics, Reloads};
use proxies::RunningProxy;
use sink::Sink;

pub use endpoint::{default_socket, socket_path};

/// How long in-flight proxy and endpoint requests may run on after SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

/// A profile the agent keeps.
struct Profile {
    config: ProfileConfig,
    /// What its secrets were when its source was built (see `ConfigSecrets::digest`).
    secrets: [u8; 32],
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
pub struct Agent {
    config_path: PathBuf,
    clock: SharedClock,
    profiles: Mutex<BTreeMap<String, Arc<Profile>>>,
    /// The proxies serving now. Never held across an await: a reload drains the proxies it
    /// stops outside it, so that `/metrics` does not wait for the drain.
    proxies: Mutex<Vec<RunningProxy>>,
    /// `[agent]` as started: changes to it need a restart.
    endpoint: config::AgentConfig,
    reloads: Reloads,
}

/// A profile checked and ready to start: its source is built, its sinks are valid.
struct Prepared {
    config: ProfileConfig,
    secrets: [u8; 32],
    /// The running profile's source when its credentials are unchanged, else a new one.
    source: CachedSource,
    /// Whether `source` is new (the proxies of this profile restart with it).
    renewed: bool,
    /// The profile's counters: the running profile's, kept across reloads.
    metrics: Arc<ProfileMetrics>,
    sinks: Vec<Sink>,
}

impl Agent {
    fn profiles(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Profile>>> {
        self.profiles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn proxies(&self) -> std::sync::MutexGuard<'_, Vec<RunningProxy>> {
        self.proxies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `profile`, if the agent keeps it.
    fn profile(&self, profile: &str) -> Option<Arc<Profile>> {
        self.profiles().get(profile).map(Arc::clone)
    }

    /// Checks every profile of `file` and builds what is new or changed, touching nothing
    /// running: a config that fails here leaves the agent as it was.
    async fn prepare(&self, file: &ConfigFile) -> CliResult<BTreeMap<String, Prepared>> {
        if file.profiles.is_empty() {
            return Err(CliError::usage(format!(
                "{}: no [profiles.NAME] to keep",
                self.config_path.display()
            )));
        }
        // What runs now, copied out so that no lock is held while sources are built.
        let running: BTreeMap<String, Arc<Profile>> = self.profiles().clone();
        let mut paths: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut prepared = BTreeMap::new();
        for (name, profile) in &file.profiles {
            let sinks = profile
                .sinks
                .iter()
                .map(|s| Sink::from_config(s, name))
                .collect::<CliResult<Vec<_>>>()?;
            for sink in &sinks {
                if let Some(other) = paths.insert(sink.path().to_owned(), name.clone()) {
                    return Err(CliError::usage(format!(
                        "sink {} is named twice (profiles {other:?} and {name:?})",
                        sink.path().display()
                    )));
                }
            }
            // Secrets are read again on every reload: a file rotated in place is a change.
            let read = ConfigSecrets::read(profile);
            let secrets = read.digest();
            let previous = running
                .get(name)
                .filter(|p| p.config.same_credentials(profile) && p.secrets == secrets);
            let (source, metrics, renewed) = match previous {
                Some(p) => (p.source.clone(), Arc::clone(&p.metrics), false),
                None => {
                    let metrics = running
                        .get(name)
                        .map(|p| Arc::clone(&p.metrics))
                        .unwrap_or_default();
                    let named = |e: CliError| CliError {
                        message: format!("profile {name:?}: {}", e.message),
                        ..e
                    };
                    let env = Environment::of_process();
                    let settings =
                        settings::resolve_profile(name, profile, &self.config_path, &env)
                            .map_err(named)?
                            .with_secrets(read);
                    let wired = wiring::wire(settings).await.map_err(named)?;
                    let source = build_source(&wired, name, Arc::clone(&metrics))?;
                    (source, metrics, true)
                }
            };
            prepared.insert(
                name.clone(),
                Prepared {
                    config: profile.clone(),
                    secrets,
                    source,
                    renewed,
                    metrics,
                    sinks,
                },
            );
        }
        Ok(prepared)
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
            let metrics = p.metrics;
            let source = p.source;
            if let Some(prev) = previous {
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
            let sinks = Arc::new(p.sinks);
            let held = Arc::new(keeper::SinksHeld::default());
            let keeper = tokio::spawn(
                Keeper {
                    profile: name.clone(),
                    source: source.clone(),
                    sinks: Arc::clone(&sinks),
                    metrics: Arc::clone(&metrics),
                    clock: self.clock.clone(),
                    held: Arc::clone(&held),
                }
                .run(),
            );
            running.insert(
                name,
                Arc::new(Profile {
                    config: p.config,
                    secrets: p.secrets,
                    source,
                    sinks,
                    metrics,
                    held,
                    early: tokio::sync::Mutex::new(()),
                    keeper,
                }),
            );
        }
        for (name, gone) in old {
            gone.keeper.abort();
            keeper::clear(&name, &gone.sinks);
            tracing::info!(profile = %name, "profile removed; its sinks are cleared");
        }
    }

    /// Re-reads the config file; a file that does not parse or check keeps the old one.
    async fn reload(&self) {
        match self.try_reload().await {
            Ok(()) => {
                self.reloads
                    .ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("reloaded {}", self.config_path.display());
            }
            Err(e) => {
                self.reloads
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("kept the running config: {}", e.message);
            }
        }
    }

    async fn try_reload(&self) -> CliResult {
        let file = read_config(&self.config_path)?;
        let prepared = self.prepare(&file).await?;
        proxies::check(&file, &prepared)?;
        if file.agent != self.endpoint {
            tracing::warn!("changes to [agent] (socket, listen) take effect at the next start");
        }
        // Proxies whose profile gets a new source are restarted with it.
        let renewed: Vec<String> = prepared
            .iter()
            .filter(|(_, p)| p.renewed)
            .map(|(n, _)| n.clone())
            .collect();
        self.apply(prepared);
        // A proxy that cannot start is logged by `reconcile`; the rest of the config holds.
        let _ = proxies::reconcile(self, &file.proxy, &renewed).await;
        Ok(())
    }

    /// Stops the proxies (draining them) and the keepers, and clears every sink: nothing
    /// will keep them fresh any more, and a sink never outlives its token.
    async fn shutdown(&self) {
        proxies::stop_all(self).await;
        let profiles = std::mem::take(&mut *self.profiles());
        for (name, p) in profiles {
            p.keeper.abort();
            keeper::clear(&name, &p.sinks);
        }
    }
}

fn build_source(
    wired: &Wired,
    name: &str,
    metrics: Arc<ProfileMetrics>,
) -> CliResult<CachedSource> {
    let named = |e: CliError| CliError {
        message: format!("profile {name:?}: {}", e.message),
        ..e
    };
    let client = shared_client(&wired.settings.http).map_err(named)?;
    wired
        .source_from(
            Some(Arc::new(MemoryStore::new())),
            Some(client),
            |fetcher| Arc::new(metrics::Metered::new(fetcher, metrics)),
        )
        .map_err(named)
}

/// One HTTP client per distinct set of timeouts and CA file: each client holds its own copy of the TLS
/// roots, and ten profiles need not hold ten.
fn shared_client(options: &freshtoken::HttpOptions) -> CliResult<reqwest::Client> {
    type Key = (Duration, Duration, Option<PathBuf>);
    static CLIENTS: Mutex<Vec<(Key, reqwest::Client)>> = Mutex::new(Vec::new());
    let key = (
        options.timeout,
        options.connect_timeout,
        options.ca_file.clone(),
    );
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let client = freshtoken::http_client(options)?;
    clients.push((key, client.clone()));
    Ok(client)
}

fn read_config(path: &Path) -> CliResult<ConfigFile> {
    Ok(config::load(config::Choice::Named(path))?
        .map(|l| l.file)
        .unwrap_or_default())
}

/// `freshtoken agent`.
pub fn run(cli: &Cli, args: &AgentArgs) -> CliResult {
    let (config_path, file) = match config::load(config::Choice::new(
        cli.config.as_deref(),
        cli.no_config,
    ))? {
        Some(loaded) => (loaded.path, loaded.file),
        None => {
            return Err(CliError::usage(
                "the agent needs a config file: --config PATH (or $XDG_CONFIG_HOME/freshtoken/config.toml)",
            ));
        }
    };
    // Absolute, so that a reload finds the same file whatever the working directory.
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    let runtime = crate::commands::server_runtime()?;
    runtime.block_on(async {
        let clock = wiring::clock(&settings::clock(&Environment::of_process())?);
        let agent = Arc::new(Agent {
            config_path: config_path.clone(),
            clock,
            profiles: Mutex::default(),
            proxies: Mutex::default(),
            endpoint: file.agent.clone(),
            reloads: Reloads::default(),
        });
        let prepared = agent.prepare(&file).await?;
        proxies::check(&file, &prepared)?;
        let endpoints = endpoint::bind(&file.agent)?;
        if args.check {
            if !args.no_fetch {
                check_tokens(&prepared).await?;
            }
            println!(
                "{}: {} profiles, {} proxies: ok",
                config_path.display(),
                file.profiles.len(),
                file.proxy.len()
            );
            return Ok(());
        }
        // Before anything starts: the TCP endpoint's credential may fail to be written.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let serving = endpoints.serve(Arc::clone(&agent), stopped)?;
        agent.apply(prepared);
        if let Some(e) = proxies::reconcile(&agent, &file.proxy, &[])
            .await
            .into_iter()
            .next()
        {
            return Err(e);
        }
        let served = tokio::spawn(serving);
        tracing::info!(
            "freshtoken agent: {} profiles, {} proxies, config {}",
            file.profiles.len(),
            file.proxy.len(),
            config_path.display()
        );
        signals(&agent).await;
        tracing::info!("stopping");
        let _ = stop.send(true);
        agent.shutdown().await;
        if tokio::time::timeout(GRACE, served).await.is_err() {
            tracing::warn!("endpoint requests still running after the grace period were cut off");
        }
        Ok(())
    })
}

/// `--check`: one token per profile, so that a wrong secret or endpoint fails the check
/// instead of the first job. Every profile is tried; the first that failed is the error,
/// with its exit code (3 for a rejected client, 4 for an unreachable server), and any other
/// failing profile is logged before it.
async fn check_tokens(prepared: &BTreeMap<String, Prepared>) -> CliResult {
    let mut failed: Vec<CliError> = Vec::new();
    for (name, p) in prepared {
        match p.source.token_with(Want::one_shot(Duration::ZERO)).await {
            Ok(token) => println!(
                "profile {name:?}: got a token, valid for {}",
                freshtoken::internal::fmt_duration(token.lifetime())
            ),
            Err(e) => {
                let e = CliError::from(e);
                if !failed.is_empty() {
                    tracing::error!("profile {name:?}: {}", e.message);
                }
                failed.push(CliError {
                    message: format!("profile {name:?}: {}", e.message),
                    ..e
                });
            }
        }
    }
    let more = failed.len().saturating_sub(1);
    match failed.into_iter().next() {
        None => Ok(()),
        Some(first) if more == 0 => Err(first),
        Some(first) => Err(CliError {
            message: format!("{} (and {more} more profiles, logged above)", first.message),
            ..first
        }),
    }
}

/// Runs reloads on SIGHUP until SIGINT or SIGTERM.
async fn signals(agent: &Agent) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch signals; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => agent.reload().await,
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}

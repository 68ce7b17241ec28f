//! The `[[proxy]]` entries: the same proxy as `freshtoken proxy`, one per entry, each taking
//! its tokens from a profile the agent keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use freshtoken::provider::GenesysRegion;
use freshtoken_proxy::{AllowedHosts, Config, DEFAULT_REPLAY_LIMIT, Listening, Proxy};
use tokio::task::JoinHandle;
use url::Url;

use super::{Agent, GRACE, Prepared};
use crate::config::{ConfigFile, ProfileConfig, ProxyConfig};
use crate::exit::{CliError, CliResult};
use crate::units::parse_size;

/// A proxy being served.
pub struct RunningProxy {
    pub config: ProxyConfig,
    pub proxy: Proxy,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningProxy {
    /// Stops accepting, lets in-flight requests finish (up to the grace period), returns
    /// once the port is free again.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What an entry resolves to.
struct Checked {
    listen: SocketAddr,
    upstream: Url,
    replay_limit: usize,
    allowed_hosts: AllowedHosts,
}

fn resolve(c: &ProxyConfig, profile: &ProfileConfig) -> CliResult<Checked> {
    let what = || format!("[[proxy]] on {} for profile {:?}", c.listen, c.profile);
    let listen: SocketAddr = c.listen.parse().map_err(|_| {
        CliError::usage(format!(
            "{}: listen is not an address like 127.0.0.1:8080",
            what()
        ))
    })?;
    if !listen.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "{}: the agent's proxies listen on loopback only",
            what()
        )));
    }
    let upstream = match (&c.upstream, &profile.provider, &profile.region) {
        (Some(u), _, _) => Url::parse(u).map_err(|e| {
            CliError::usage(format!("{}: upstream {u:?} is not a URL: {e}", what()))
        })?,
        (None, Some(p), Some(region))
            if p.eq_ignore_ascii_case("genesys") || p.eq_ignore_ascii_case("genesyscloud") =>
        {
            GenesysRegion::find(region)
                .map_err(|e| CliError::usage(format!("{}: {e}", what())))?
                .api_base()
        }
        _ => {
            return Err(CliError::usage(format!(
                "{}: no upstream (set upstream = \"https://…\")",
                what()
            )));
        }
    };
    if !matches!(upstream.scheme(), "http" | "https") || upstream.host_str().is_none() {
        return Err(CliError::usage(format!(
            "{}: upstream {upstream} is not an http(s) URL with a host",
            what()
        )));
    }
    freshtoken::internal::refuse_plain_http("upstream", &upstream, "the token")
        .map_err(|e| CliError::usage(format!("{}: {e}", what())))?;
    let replay_limit = match &c.replay_limit {
        Some(v) => {
            parse_size(v).map_err(|e| CliError::usage(format!("{}: replay_limit: {e}", what())))?
        }
        None => DEFAULT_REPLAY_LIMIT,
    };
    let allowed_hosts = AllowedHosts::parse(&c.allow_hosts)
        .map_err(|e| CliError::usage(format!("{}: allow_hosts: {e}", what())))?;
    Ok(Checked {
        listen,
        upstream,
        replay_limit,
        allowed_hosts,
    })
}

/// Checks every `[[proxy]]` of `file` against the profiles about to run.
pub(super) fn check(file: &ConfigFile, prepared: &BTreeMap<String, Prepared>) -> CliResult {
    let mut seen = BTreeSet::new();
    for c in &file.proxy {
        let Some(profile) = prepared.get(&c.profile) else {
            return Err(CliError::usage(format!(
                "[[proxy]] on {}: no profile {:?} in the config",
                c.listen, c.profile
            )));
        };
        let checked = resolve(c, &profile.config)?;
        if !seen.insert(checked.listen) {
            return Err(CliError::usage(format!(
                "two [[proxy]] entries listen on {}",
                checked.listen
            )));
        }
    }
    Ok(())
}

/// Makes the running proxies match `configs`: unchanged ones keep serving, others are
/// stopped and started anew. `renewed` names profiles whose token source was replaced.
/// Returns the errors of proxies that could not start (the others run).
pub(super) async fn reconcile(
    agent: &Agent,
    configs: &[ProxyConfig],
    renewed: &[String],
) -> Vec<CliError> {
    let (old, start) = {
        let mut running = agent.proxies();
        let mut old = std::mem::take(&mut *running);
        let mut start = Vec::new();
        for c in configs {
            match old
                .iter()
                .position(|r| r.config == *c && !renewed.contains(&c.profile))
            {
                Some(i) => running.push(old.swap_remove(i)),
                None => start.push(c.clone()),
            }
        }
        (old, start)
    };
    // Free the ports first: a changed proxy usually keeps its address. Reloads run one at a
    // time (the signal loop awaits each), so nothing else changes the list meanwhile.
    for r in old {
        tracing::info!(listen = %r.config.listen, "stopping proxy");
        r.stop().await;
    }
    let mut errors = Vec::new();
    for c in start {
        match start_one(agent, &c).await {
            Ok(r) => agent.proxies().push(r),
            Err(e) => {
                tracing::error!("{}", e.message);
                errors.push(e);
            }
        }
    }
    errors
}

async fn start_one(agent: &Agent, c: &ProxyConfig) -> CliResult<RunningProxy> {
    let (source, profile) = {
        let profiles = agent.profiles();
        let p = profiles.get(&c.profile).ok_or_else(|| {
            CliError::usage(format!(
                "[[proxy]] on {}: no profile {:?}",
                c.listen, c.profile
            ))
        })?;
        (p.source.clone(), p.config.clone())
    };
    let checked = resolve(c, &profile)?;
    let proxy = Proxy::with_clock(
        source,
        Config {
            gateway: None,
            upstream: checked.upstream,
            replay_limit: checked.replay_limit,
            ca_file: profile.ca_file.clone(),
        },
        agent.clock.clone(),
    )?;
    let listener = tokio::net::TcpListener::bind(checked.listen)
        .await
        .map_err(|e| {
            CliError::usage(format!(
                "[[proxy]] cannot listen on {}: {e}",
                checked.listen
            ))
        })?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let serving = proxy.clone();
    let listen = c.listen.clone();
    // The header timeout and connection cap of `freshtoken proxy`'s defaults.
    let listening = Listening {
        allowed_hosts: checked.allowed_hosts,
        grace: GRACE,
        ..Listening::default()
    };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = freshtoken_proxy::run(listener, serving, &listening, shutdown).await {
            tracing::error!(%listen, "proxy failed: {e}");
        }
    });
    tracing::info!(listen = %c.listen, upstream = %proxy.upstream(), profile = %c.profile, "proxy started");
    Ok(RunningProxy {
        config: c.clone(),
        proxy,
        stop,
        task,
    })
}

/// Stops every proxy, draining each.
pub(super) async fn stop_all(agent: &Agent) {
    let running = std::mem::take(&mut *agent.proxies());
    for r in running {
        r.stop().await;
    }
}

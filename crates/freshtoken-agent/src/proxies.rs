//! The `[[proxy]]` entries: the same proxy as `freshtoken proxy`, one per entry, each taking
//! its tokens from a profile the agent keeps.

use std::collections::{BTreeMap, BTreeSet};

use freshtoken_proxy::{Config, Listening, Proxy};
use tracing::Instrument;

use crate::{AgentError, Prepared, ProxySpec, State};

/// A proxy being served.
pub(crate) struct RunningProxy {
    pub(crate) spec: ProxySpec,
    /// The address the proxy listens on: the spec's, with the port the system chose when
    /// the spec asked for port 0.
    pub(crate) bound: std::net::SocketAddr,
    pub(crate) proxy: Proxy,
    stop: freshtoken::drain::Signal,
}

impl RunningProxy {
    /// Stops accepting, lets in-flight requests finish (up to the grace period), returns
    /// once the port is free again.
    async fn stop(self) {
        self.stop.drain().await;
    }
}

/// Checks every proxy against the profiles about to run.
pub(crate) fn check(
    specs: &[ProxySpec],
    prepared: &BTreeMap<String, Prepared>,
) -> Result<(), AgentError> {
    let mut seen = BTreeSet::new();
    for c in specs {
        if !prepared.contains_key(&c.profile) {
            return Err(AgentError::config(format!(
                "[[proxy]] on {}: no profile {:?} in the config",
                c.listen, c.profile
            )));
        }
        if !c.listen.ip().is_loopback() {
            return Err(AgentError::config(format!(
                "[[proxy]] on {} for profile {:?}: the agent's proxies listen on loopback only",
                c.listen, c.profile
            )));
        }
        // Port 0 asks the system for a free port: any number of entries may.
        if c.listen.port() != 0 && !seen.insert(c.listen) {
            return Err(AgentError::config(format!(
                "two [[proxy]] entries listen on {}",
                c.listen
            )));
        }
    }
    Ok(())
}

/// Makes the running proxies match `configs`: unchanged ones keep serving, others are
/// stopped and started anew. `renewed` names profiles whose token source was replaced.
/// Returns the errors of proxies that could not start (the others run).
pub(crate) async fn reconcile(
    agent: &State,
    configs: &[ProxySpec],
    renewed: &[String],
) -> Vec<AgentError> {
    let (old, start) = {
        let mut running = agent.proxies();
        let mut old = std::mem::take(&mut *running);
        let mut start = Vec::new();
        for c in configs {
            match old
                .iter()
                .position(|r| r.spec == *c && !renewed.contains(&c.profile))
            {
                Some(i) => running.push(old.swap_remove(i)),
                None => start.push(c.clone()),
            }
        }
        (old, start)
    };
    if !old.is_empty() {
        // Whoever watches `Handle::changes` sees the stopped proxies leave the list.
        agent.events.send_modify(|n| *n = n.wrapping_add(1));
    }
    // Free the ports first: a changed proxy usually keeps its address. Reloads run one at a
    // time (the signal loop awaits each), so nothing else changes the list meanwhile.
    for r in old {
        tracing::info!(listen = %r.bound, profile = %r.spec.profile, "stopping proxy");
        r.stop().await;
    }
    let mut errors = Vec::new();
    for c in start {
        match start_one(agent, &c).await {
            Ok(r) => agent.proxies().push(r),
            Err(e) => {
                tracing::error!("{e}");
                errors.push(e);
            }
        }
    }
    errors
}

async fn start_one(agent: &State, c: &ProxySpec) -> Result<RunningProxy, AgentError> {
    let source = agent
        .profile(&c.profile)
        .ok_or_else(|| {
            AgentError::config(format!(
                "[[proxy]] on {}: no profile {:?}",
                c.listen, c.profile
            ))
        })?
        .source
        .clone();
    let proxy = Proxy::with_clock(
        source,
        Config {
            gateway: c.gateway.clone(),
            upstream: c.upstream.clone(),
            replay_limit: c.replay_limit,
            ca_file: c.ca_file.clone(),
            client_identity: c.client_identity.clone(),
        },
        agent.clock.clone(),
    )?;
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .map_err(|e| AgentError::config(format!("[[proxy]] cannot listen on {}: {e}", c.listen)))?;
    let bound = listener.local_addr().map_err(|e| {
        AgentError::config(format!("[[proxy]] on {}: no local address: {e}", c.listen))
    })?;
    let (stop, watch) = freshtoken::drain::channel();
    let serving = proxy.clone();
    let listen = bound;
    // What the proxy logs while it serves names its profile and the port it bound.
    let span = tracing::info_span!("proxy", profile = %c.profile, %listen);
    // The header timeout and connection cap of `freshtoken proxy`'s defaults.
    let listening = Listening {
        allowed_hosts: c.allowed_hosts.clone(),
        grace: agent.grace,
        ..Listening::default()
    };
    tokio::spawn(
        async move {
            let shutdown = watch.clone().into_signaled();
            if let Err(e) = freshtoken_proxy::run(listener, serving, &listening, shutdown).await {
                tracing::error!("proxy failed: {e}");
            }
            // Held until the proxy has drained and its port is free: `stop` waits for this.
            drop(watch);
        }
        .instrument(span),
    );
    tracing::info!(listen = %bound, upstream = %proxy.upstream(), profile = %c.profile, "proxy started");
    Ok(RunningProxy {
        spec: c.clone(),
        bound,
        proxy,
        stop,
    })
}

/// Stops every proxy, draining each.
pub(crate) async fn stop_all(agent: &State) {
    let running = std::mem::take(&mut *agent.proxies());
    for r in running {
        r.stop().await;
    }
}

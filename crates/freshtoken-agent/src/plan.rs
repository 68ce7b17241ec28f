//! What the agent runs, as typed values: the binary reads its config file (TOML, flags,
//! secrets) and hands the agent a [`Plan`] through [`Load`], at start and on every reload.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use freshtoken::{CachedSource, Fetch};
use freshtoken_proxy::AllowedHosts;
use url::Url;

use crate::AgentError;
use crate::sink::Sink;

/// Reads what the agent should run. Called at start and for every reload: a reload that
/// fails here leaves the agent as it was.
#[async_trait::async_trait]
pub trait Load: Send + Sync {
    /// The plan as the configuration says now.
    async fn load(&self) -> Result<Plan, AgentError>;

    /// What is loaded, for log lines ("reloaded /etc/freshtoken/agent.toml").
    fn describe(&self) -> String {
        "the configuration".to_owned()
    }
}

/// Everything the agent runs.
#[derive(Debug)]
pub struct Plan {
    /// Where the endpoint listens; changes to it take effect at the next start only.
    pub endpoint: Endpoint,
    /// The profiles to keep, by name.
    pub profiles: BTreeMap<String, ProfilePlan>,
    /// The proxies to run.
    pub proxies: Vec<ProxySpec>,
}

/// Where the local endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The unix socket (its folder is made 0700 when missing, refused when open to others).
    pub socket: PathBuf,
    /// A loopback TCP address, where token requests need the agent's credential.
    pub listen: Option<SocketAddr>,
}

/// A fetcher wrapper the agent applies to a profile's fetcher (it counts requests for
/// `/metrics`).
pub type WrapFetch = Box<dyn FnOnce(Arc<dyn Fetch>) -> Arc<dyn Fetch> + Send>;

/// A future that builds a profile's source.
pub type SourceFuture = Pin<Box<dyn Future<Output = Result<CachedSource, AgentError>> + Send>>;

/// Builds a profile's token source, given the agent's fetcher wrapper. Called only when the
/// profile is new or its [`Fingerprint`] changed: building may do network I/O (discovery).
pub type BuildSource = Box<dyn FnOnce(WrapFetch) -> SourceFuture + Send>;

/// One profile to keep.
pub struct ProfilePlan {
    /// What decides whether the running source can be kept on reload: equal fingerprints,
    /// same tokens (the sinks do not count).
    pub fingerprint: Fingerprint,
    /// The files that mirror its token.
    pub sinks: Vec<Sink>,
    /// Builds its source when needed.
    pub source: BuildSource,
}

impl std::fmt::Debug for ProfilePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilePlan")
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

/// Any comparable value standing for a profile's credentials (the binary uses its profile
/// config without the sinks, and a digest of the secrets as read).
pub struct Fingerprint(Box<dyn DynEq>);

impl Fingerprint {
    /// Wraps `value`.
    pub fn new<T: PartialEq + Send + Sync + 'static>(value: T) -> Self {
        Self(Box::new(value))
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_dyn(other.0.as_any())
    }
}

trait DynEq: Send + Sync {
    fn eq_dyn(&self, other: &dyn Any) -> bool;
    fn as_any(&self) -> &dyn Any;
}

impl<T: PartialEq + Send + Sync + 'static> DynEq for T {
    fn eq_dyn(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One proxy, checked: the same proxy as `freshtoken proxy`, taking its tokens from a
/// profile the agent keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// The profile whose token it sets.
    pub profile: String,
    /// A loopback address.
    pub listen: SocketAddr,
    /// Where requests go (http(s), with a host).
    pub upstream: Url,
    /// Largest request body kept for a replay after a 401.
    pub replay_limit: usize,
    /// `Host` names answered besides the listen address.
    pub allowed_hosts: AllowedHosts,
    /// Certificate authorities trusted for the upstream besides the platform's.
    pub ca_file: Option<PathBuf>,
    /// Also answer the login path's token endpoint for the profile's own client (see
    /// [`freshtoken_proxy::Gateway`]).
    pub gateway: Option<freshtoken_proxy::Gateway>,
    /// The client certificate presented to the upstream (for certificate-bound tokens).
    pub client_identity: Option<freshtoken::ClientIdentity>,
}

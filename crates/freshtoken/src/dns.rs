//! Host names resolved by freshtoken itself rather than by the C library's `getaddrinfo`.
//!
//! The prebuilt binary is statically linked. glibc's `getaddrinfo` in a static binary still
//! follows the host's `/etc/nsswitch.conf`, and for any source other than `files` and `dns`
//! it loads that host's NSS modules, built for another glibc, into the process; where there
//! is no `nsswitch.conf` it also gives up on `localhost` when `/etc/hosts` lacks it. So every
//! HTTP connection freshtoken opens (the token endpoint, discovery, identity-token issuers,
//! the proxy's upstream) resolves here, with the same answers on every host:
//!
//! - an IP address is itself;
//! - `localhost` and names under `.localhost` are the loopback addresses, always (RFC 6761):
//!   plain http is allowed to them because they cannot leave the machine, so no hosts file
//!   or name server may send them elsewhere;
//! - any other name comes from `/etc/hosts`, then from the name servers of
//!   `/etc/resolv.conf` (hickory-resolver). Without a `resolv.conf`, only the hosts file
//!   answers; there is no fallback to a public resolver.
//!
//! Redis connections are the one exception: the `redis` crate resolves with the C library.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Resolves host names for freshtoken's HTTP clients (see the module docs for the rules).
///
/// Cheap to clone; the system's configuration is read at the first name that needs it, not
/// when the resolver is made (a warm cache never reads it).
#[derive(Clone, Default)]
pub struct Resolver {
    inner: Arc<OnceLock<Result<Built, String>>>,
    /// A hosts file's text used instead of the system's configuration (tests).
    given_hosts: Option<Arc<str>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// The resolver of this machine: `/etc/hosts` and `/etc/resolv.conf`.
    pub fn system() -> Self {
        Self::default()
    }

    /// A resolver that knows only the names of `hosts` (the text of a hosts file) and asks no
    /// name server, for tests of what uses it.
    pub fn with_hosts_file_text(hosts: &str) -> Self {
        Self {
            inner: Arc::default(),
            given_hosts: Some(hosts.into()),
        }
    }

    /// The addresses of `host`, IPv4 first; an error names the host and says why.
    pub async fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Some(ips) = fixed_answer(host) {
            return Ok(ips);
        }
        let built = self
            .inner
            .get_or_init(|| build(self.given_hosts.as_deref()))
            .as_ref()
            .map_err(|e| fail(host, e))?;
        let found = built.resolver.lookup_ip(host).await.map_err(|e| {
            // The record-not-found error prints its whole query; say it as a person would.
            if !built.has_name_servers {
                no_such_host(
                    host,
                    "not in /etc/hosts, and no name server is set (no /etc/resolv.conf)",
                )
            } else if e.is_nx_domain() {
                no_such_host(host, "no such host")
            } else if e.is_no_records_found() {
                no_such_host(host, "no address for it (in /etc/hosts or DNS)")
            } else {
                fail(host, &e.to_string())
            }
        })?;
        let ips: Vec<IpAddr> = found.iter().collect();
        if ips.is_empty() {
            return Err(no_such_host(host, "no address"));
        }
        Ok(ips)
    }
}

/// A host name that does not exist, or has no address anywhere: an answer, not a failure to
/// get one, so waiting will not fix it (the fetcher does not retry it). A name server that
/// does not answer is an ordinary `io::Error` instead.
#[derive(Debug)]
pub struct NoSuchHost(String);

impl std::fmt::Display for NoSuchHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoSuchHost {}

fn no_such_host(host: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        NoSuchHost(format!("cannot resolve host {host}: {why}")),
    )
}

/// The answers that need no lookup: an address literal, and the loopback names.
fn fixed_answer(host: &str) -> Option<Vec<IpAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(vec![ip]);
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost")).then(|| {
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
    })
}

fn fail(host: &str, why: &str) -> io::Error {
    let why = why.replace(['\n', '\r'], " ");
    io::Error::other(format!("cannot resolve host {host}: {why}"))
}

/// The resolver, once made, and whether it has anyone to ask beyond the hosts file.
struct Built {
    resolver: TokioResolver,
    has_name_servers: bool,
}

fn build(given_hosts: Option<&str>) -> Result<Built, String> {
    let (config, options) = match given_hosts {
        Some(_) => (no_name_servers(), ResolverOpts::default()),
        None => hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
            // No (readable) resolv.conf, as in an empty chroot or a minimal container: the
            // hosts file alone answers. Never a public resolver the user did not choose.
            tracing::debug!("no name servers ({e}); only /etc/hosts resolves names");
            (no_name_servers(), ResolverOpts::default())
        }),
    };
    let has_name_servers = !config.name_servers().is_empty();
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = options;
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.use_hosts_file = match given_hosts {
        Some(_) => ResolveHosts::Never,
        None => ResolveHosts::Always,
    };
    let mut resolver = builder
        .build()
        .map_err(|e| format!("cannot set up name resolution: {e}"))?;
    if let Some(text) = given_hosts {
        let mut hosts = hickory_resolver::Hosts::default();
        hosts
            .read_hosts_conf(text.as_bytes())
            .map_err(|e| format!("bad hosts text: {e}"))?;
        resolver.set_hosts(Arc::new(hosts));
    }
    Ok(Built {
        resolver,
        has_name_servers,
    })
}

/// No name servers, no search domains: only the hosts file answers.
fn no_name_servers() -> ResolverConfig {
    ResolverConfig::from_parts(None, vec![], vec![])
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let ips = resolver.lookup(name.as_str()).await?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    #[tokio::test]
    async fn literals_and_loopback_names_need_no_lookup() {
        // A hosts file that would send localhost elsewhere is not asked.
        let r = Resolver::with_hosts_file_text("10.9.9.9 localhost api.localhost\n");
        for name in ["localhost", "LOCALHOST.", "api.localhost", "a.b.localhost"] {
            assert_eq!(r.lookup(name).await.unwrap(), [V4, V6], "{name}");
        }
        assert_eq!(
            r.lookup("127.0.0.9").await.unwrap(),
            ["127.0.0.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(r.lookup("[::1]").await.unwrap(), [V6]);
        assert_eq!(r.lookup("::1").await.unwrap(), [V6]);
        // Not a loopback name, only one that ends like it.
        assert!(r.lookup("notlocalhost").await.is_err());
    }

    #[tokio::test]
    async fn other_names_come_from_the_hosts_file() {
        let r = Resolver::with_hosts_file_text(
            "# comment\n198.18.0.7 tokens.test tokens\n2001:db8::7 tokens.test\n",
        );
        let ips = r.lookup("tokens.test").await.unwrap();
        assert_eq!(
            ips,
            [
                "198.18.0.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert_eq!(r.lookup("tokens").await.unwrap()[0], ips[0]);
    }

    #[tokio::test]
    async fn an_unknown_name_with_no_name_server_fails_at_once_saying_which() {
        let r = Resolver::with_hosts_file_text("198.18.0.7 tokens.test\n");
        let e = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            r.lookup("login.mypurecloud.com"),
        )
        .await
        .expect("answered without waiting on a name server")
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot resolve host login.mypurecloud.com: "),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains("Query {"), "{text}");
        assert!(
            e.get_ref().is_some_and(|i| i.is::<NoSuchHost>()),
            "an answer, not a failure to get one: {e:?}"
        );
    }
}

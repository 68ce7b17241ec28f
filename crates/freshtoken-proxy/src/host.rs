//! Which `Host` a listener answers. A web page whose DNS name an attacker rebinds to 127.0.0.1
//! makes the browser send its requests to a loopback port with `Host: that-name`, and lets the
//! page read the answers: through the proxy they carry the pipeline's token, from the agent's
//! endpoint they are the token. A request is answered only when its `Host` (or, without one,
//! the authority of its URI, as HTTP/2 sends it) names the address it arrived on, or a name
//! the operator allowed; anything else gets 421 Misdirected Request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{self, HeaderMap};
use http::uri::Uri;

/// The names a listener answers besides its own address (`--allow-host NAME[:PORT]`, a
/// `[[proxy]]`'s `allow_hosts`): for a proxy reached through a name of its own, say a
/// container's `host.docker.internal`. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lower-cased host (IPv6 in brackets), and its port; `None` is the listen port.
    names: Vec<(String, Option<u16>)>,
}

impl AllowedHosts {
    /// Parses `NAME` or `NAME:PORT` values (`[::1]:8080` for IPv6). A name without a port is
    /// allowed on the port the listener is bound to.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, String> {
        let names = values
            .iter()
            .map(|value| {
                let value = value.as_ref();
                host_and_port(value)
                    .ok_or_else(|| format!("{value:?} is not a host name, optionally with :PORT"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { names })
    }

    /// Whether the names list is empty (only the listen address is answered).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether a request whose `Host` is `host` may be answered by a listener whose
    /// connection arrived on `local`: `host` names `local` itself (an IP literal, which no
    /// DNS rebinding can produce), `localhost` or a loopback literal when `local` is on
    /// loopback, or one of the allowed names; always on `local`'s port, unless an allowed
    /// name gives its own. A missing port is 80, as `http://` means.
    pub fn allows(&self, local: SocketAddr, host: &[u8]) -> bool {
        let Some((name, port)) = std::str::from_utf8(host).ok().and_then(host_and_port) else {
            return false;
        };
        let port = port.unwrap_or(80);
        let ip = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
        let local_ip = local.ip().to_canonical();
        let own = port == local.port()
            && match ip {
                Some(ip) => {
                    ip == local_ip
                        || (local_ip.is_loopback()
                            && (ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
                                || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)))
                }
                None => local_ip.is_loopback() && name == "localhost",
            };
        own || self
            .names
            .iter()
            .any(|(allowed, p)| *allowed == name && p.unwrap_or(local.port()) == port)
    }
}

/// `host[:port]` as a `Host` header gives it: the host lower-cased (an IPv6 literal in
/// brackets), and the port if one is given. `None` for anything else: userinfo, a path, an
/// empty or non-numeric port, characters no host name has.
fn host_and_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                more => Some(more.strip_prefix(':')?),
            };
            (format!("[{inside}]"), port)
        }
        None => {
            let (host, port) = match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            };
            let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            if host.is_empty() || !host.bytes().all(name_char) {
                return None;
            }
            (host.to_owned(), port)
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Checks the host a request names against `allowed` for a connection that arrived on
/// `local`: `None` when it may be answered, else the reason for the 421. The `Host` header
/// counts (exactly one); without it the URI's authority does (HTTP/2's `:authority`); a
/// request that names none is refused too.
pub fn misdirected(
    allowed: &AllowedHosts,
    local: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<String> {
    let mut values = headers.get_all(header::HOST).iter();
    let named = match (values.next(), values.next()) {
        (Some(one), None) => one.as_bytes(),
        (None, _) => match uri.authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => return Some("the request names no Host".to_owned()),
        },
        (Some(_), Some(_)) => return Some("the request has more than one Host".to_owned()),
    };
    if allowed.allows(local, named) {
        return None;
    }
    Some(format!(
        "Host {:?} is not this listener's address ({})",
        String::from_utf8_lossy(named),
        own_names(allowed, local)
    ))
}

/// What a listener on `local` answers, for the 421's text.
fn own_names(allowed: &AllowedHosts, local: SocketAddr) -> String {
    let port = local.port();
    let mut names = if local.ip().to_canonical().is_loopback() {
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ]
    } else {
        vec![local.to_string()]
    };
    names.extend(
        allowed
            .names
            .iter()
            .map(|(n, p)| format!("{n}:{}", p.unwrap_or(port))),
    );
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_loopback_listener_answers_its_own_loopback_names_on_its_port_only() {
        let none = AllowedHosts::default();
        let local = addr("127.0.0.1:8080");
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LocalHost:8080",
            "[::1]:8080",
        ] {
            assert!(none.allows(local, host.as_bytes()), "{host}");
        }
        for host in [
            "127.0.0.1:8081",
            "localhost",
            "127.0.0.1",
            "evil.example:8080",
            "localhost.evil.example:8080",
            "127.0.0.1.nip.io:8080",
            "user@localhost:8080",
            "localhost:8080/x",
            "localhost:99999",
            "",
            "localhost:8080 ",
        ] {
            assert!(!none.allows(local, host.as_bytes()), "{host}");
        }
        assert!(!none.allows(local, b"\xff:8080"));
        // Port 80 may be left out, as http:// means.
        assert!(none.allows(addr("127.0.0.1:80"), b"localhost"));
        // IPv6 loopback, and a v4 client on a dual-stack socket.
        assert!(none.allows(addr("[::1]:9000"), b"[::1]:9000"));
        assert!(none.allows(addr("[::1]:9000"), b"localhost:9000"));
        assert!(none.allows(addr("[::ffff:127.0.0.1]:9000"), b"127.0.0.1:9000"));
    }

    #[test]
    fn a_remote_listener_answers_its_own_address_and_allowed_names_only() {
        let none = AllowedHosts::default();
        let local = addr("10.1.2.3:8080");
        assert!(none.allows(local, b"10.1.2.3:8080"));
        assert!(!none.allows(local, b"localhost:8080"));
        assert!(!none.allows(local, b"127.0.0.1:8080"));
        assert!(!none.allows(local, b"build-7.internal:8080"));
        let named = AllowedHosts::parse(&["build-7.internal", "proxy.example:9443"]).unwrap();
        assert!(named.allows(local, b"build-7.internal:8080"));
        assert!(named.allows(local, b"BUILD-7.internal:8080"));
        assert!(!named.allows(local, b"build-7.internal:9443"));
        assert!(named.allows(local, b"proxy.example:9443"));
        assert!(!named.allows(local, b"proxy.example:8080"));
    }

    #[test]
    fn allowed_names_are_names_with_an_optional_port() {
        assert!(AllowedHosts::parse(&["a.example", "b:1", "[fd00::1]:8080"]).is_ok());
        for bad in ["", "a b", "a:port", "a:99999", "u@a", "a/b", ":80"] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_host_header_counts_then_the_uris_authority() {
        let none = AllowedHosts::default();
        let local = addr("127.0.0.1:8080");
        let origin: Uri = "/api".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(misdirected(&none, local, &origin, &headers).is_some());
        let h2: Uri = "http://localhost:8080/api".parse().unwrap();
        assert!(misdirected(&none, local, &h2, &headers).is_none());
        headers.insert(header::HOST, "evil.example:8080".parse().unwrap());
        let refusal = misdirected(&none, local, &h2, &headers).unwrap();
        assert!(refusal.contains("evil.example:8080"), "{refusal}");
        assert!(refusal.contains("localhost:8080"), "{refusal}");
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(misdirected(&none, local, &origin, &headers).is_none());
        headers.append(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(misdirected(&none, local, &origin, &headers).is_some());
    }
}

//! The proxy's handling of a request head (`forward::upstream_head`, through
//! `freshtoken_proxy::fuzzing`): any method, URI and header names and values a client may
//! send, for any upstream URL. Requests for other hosts and `CONNECT` are refused; what is
//! forwarded carries none of the hop-by-hop headers, no `Host` or `Authorization` of the
//! client's, everything else untouched, and an origin-form URI under the upstream's path.
//! The `Host` check (`host::misdirected`, for a request that arrived on 127.0.0.1:8080)
//! answers only a request naming that listener by a loopback name or literal, on its port.
//!
//! Input: the upstream URL on the first line, `METHOD URI` on the second, then `name: value`
//! lines (raw: anything the `http` types accept gets through, as from hyper).
#![no_main]

use freshtoken_fuzz::one_line;
use freshtoken_proxy::fuzzing::{Outcome, request_head, request_host};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;
use url::Url;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Head {
    upstream: Url,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn head(data: &[u8]) -> Option<Head> {
    let mut lines = data
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let upstream = Url::parse(std::str::from_utf8(lines.next()?).ok()?).ok()?;
    let mut request_line = lines.next()?.splitn(3, |b| *b == b' ');
    let method = Method::from_bytes(request_line.next()?).ok()?;
    let uri = Uri::try_from(request_line.next()?).ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(Head {
        upstream,
        method,
        uri,
        headers,
    })
}

/// The names a proxy must not forward (RFC 9110 §7.6.1), read from the raw bytes of every
/// `Connection` value, plus the two the proxy sets itself.
fn dropped(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = HOP_BY_HOP.iter().map(|n| (*n).to_owned()).collect();
    names.extend(["host".to_owned(), "authorization".to_owned()]);
    for value in headers.get_all("connection") {
        for item in value.as_bytes().split(|b| *b == b',') {
            if let Ok(item) = std::str::from_utf8(item.trim_ascii()) {
                names.push(item.to_ascii_lowercase());
            }
        }
    }
    names
}

/// Whether `named` (a `Host` value, or a URI's authority) names 127.0.0.1:8080 by a loopback
/// literal or `localhost`, read from the bytes as a person would.
fn names_the_listener(named: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(named) else {
        return false;
    };
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| {
                let ip = ip.to_canonical();
                ip == std::net::Ipv4Addr::LOCALHOST || ip == std::net::Ipv6Addr::LOCALHOST
            });
    loopback && port.parse::<u16>() == Ok(8080)
}

/// The `Host` check: a request it answers names the listener, and a refusal is one line.
fn check_host(uri: &Uri, headers: &HeaderMap) {
    match request_host(uri, headers) {
        Some(refusal) => one_line("a 421", &refusal),
        None => {
            let hosts: Vec<_> = headers.get_all("host").iter().collect();
            let named = match hosts.as_slice() {
                [one] => one.as_bytes(),
                [] => uri.authority().map_or(&b""[..], |a| a.as_str().as_bytes()),
                _ => panic!("answered a request with {} Host headers", hosts.len()),
            };
            assert!(
                names_the_listener(named),
                "answered Host {:?}",
                String::from_utf8_lossy(named)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(Head {
        upstream,
        method,
        uri,
        headers,
    }) = head(data)
    else {
        return;
    };
    check_host(&uri, &headers);
    let before = headers.clone();
    let outcome = request_head(&upstream, &method, &uri, headers);
    let (sent_uri, sent) = match outcome {
        Outcome::BadUpstream => {
            // Refused only if it is not http(s), has no host, its host is not one an HTTP
            // request can name (the `url` crate is more lenient than `http`), or it is plain
            // http to a host that is not loopback (the token would cross the network in clear).
            let authority = upstream.host_str().map(|host| match upstream.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            });
            let loopback = match upstream.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            assert!(
                !matches!(upstream.scheme(), "http" | "https")
                    || (upstream.scheme() == "http" && !loopback)
                    || authority.is_none_or(|a| a.parse::<Authority>().is_err()),
                "refused an http(s) upstream with a host: {upstream}"
            );
            return;
        }
        Outcome::Refused(status, text) => {
            one_line("a refusal", &text);
            if method == Method::CONNECT {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
            } else {
                assert!(
                    status == StatusCode::FORBIDDEN && uri.authority().is_some()
                        || status == StatusCode::BAD_REQUEST,
                    "{method} {uri} refused with {status}"
                );
            }
            return;
        }
        Outcome::Forwarded(sent_uri, sent) => (sent_uri, sent),
    };
    assert_ne!(method, Method::CONNECT, "CONNECT was forwarded");
    if let Some(authority) = uri.authority() {
        assert!(
            authority
                .host()
                .eq_ignore_ascii_case(upstream.host_str().unwrap_or_default()),
            "{uri} forwarded to {upstream}"
        );
    }
    assert!(
        sent_uri.scheme().is_none() && sent_uri.authority().is_none(),
        "{sent_uri}"
    );
    let base = upstream.path().trim_end_matches('/');
    assert!(
        sent_uri.path().starts_with(base),
        "{sent_uri} for {upstream}"
    );
    if base.is_empty() && uri.scheme().is_none() && uri.authority().is_none() {
        assert_eq!(sent_uri, uri);
    }

    let dropped = dropped(&before);
    for name in sent.keys() {
        assert!(
            !dropped.iter().any(|d| d == name.as_str()),
            "{name} was forwarded"
        );
    }
    for name in before.keys() {
        if dropped.iter().any(|d| d == name.as_str()) {
            continue;
        }
        let want: Vec<_> = before.get_all(name).iter().collect();
        let got: Vec<_> = sent.get_all(name).iter().collect();
        assert_eq!(got, want, "{name} was changed");
    }
});

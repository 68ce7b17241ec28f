//! Which headers cross the proxy (RFC 9110 §7.6.1: hop-by-hop headers do not).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, those named in `Connection`, and `Upgrade`, in place.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names beats ten lookups.
    if !headers.keys().any(|k| {
        matches!(
            k.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
        )
    }) {
        return;
    }
    // Names the `Connection` header lists are removed by their text, never made into owned
    // header names (an allocation each for "keep-alive" on nearly every answer). The first
    // value is a reference-counted copy; further `Connection` headers are rare.
    let mut listed = headers.get_all(header::CONNECTION).iter();
    let first = listed.next().cloned();
    let more: Vec<HeaderValue> = listed.cloned().collect();
    for name in HOP_BY_HOP.iter().chain(std::iter::once(&header::UPGRADE)) {
        headers.remove(name);
    }
    for value in first.iter().chain(&more) {
        // The bytes are split, not the text: one byte that is not visible ASCII must not hide
        // the names listed beside it.
        for name in value.as_bytes().split(|b| *b == b',') {
            match std::str::from_utf8(name.trim_ascii()) {
                Ok(name) if !name.is_empty() => {
                    headers.remove(name);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" X-Second-Hop ,,"),
        );
        h.insert("x-second-hop", HeaderValue::from_static("2"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let mut out = h.clone();
        strip_hop_by_hop(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[header::CONTENT_TYPE], "application/json");
        assert_eq!(out.get_all("x-multi").iter().count(), 2);
    }

    #[test]
    fn names_listed_beside_a_non_ascii_byte_stay_behind_too() {
        // Found by fuzzing (fuzz/fuzz_targets/proxy_head.rs): a `Connection` value with one
        // byte that is not visible ASCII was skipped whole, so the names it lists went on.
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"keep-al\xffve, X-Hop-Secret").unwrap(),
        );
        h.insert("x-hop-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "2");
    }

    #[test]
    fn the_quick_check_knows_every_hop_by_hop_name() {
        // The fast path must not skip a message that has one of them.
        for name in HOP_BY_HOP.iter().chain(std::iter::once(&header::UPGRADE)) {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut h);
            assert!(h.is_empty(), "{name} was forwarded");
        }
    }
}

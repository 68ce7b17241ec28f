//! One request through the proxy: check it is for the upstream, read the body (keeping it
//! for a replay if it is small enough), forward with a fresh token, replay once on a 401
//! (within the bounds of `guard`), stream the answer back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use freshtoken::AccessToken;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use url::Url;

use crate::body::ProxyBody;
use crate::gateway::{self, Gateway, Route};
use crate::headers::strip_hop_by_hop;
use crate::host::{AllowedHosts, misdirected};
use crate::upstream::Upstream;
use crate::{Shared, Stats};

/// A request body: all of it (replayable), or what was read so far and the rest to stream.
enum Body {
    Whole(Bytes),
    Streaming(Bytes, Incoming),
}

/// Handles one request that arrived on `local`; never fails (errors become 4xx/5xx answers).
pub(crate) async fn handle(
    shared: &Shared,
    door: &Door,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // The clock and the copies of method and path only when the access log is on.
    let logged = tracing::enabled!(target: "freshtoken::access", tracing::Level::INFO).then(|| {
        (
            Instant::now(),
            req.method().clone(),
            req.uri().path().to_owned(),
        )
    });
    let (response, replayed) = match forward(shared, door, local, req).await {
        Ok(r) => r,
        Err(refusal) => (refusal, false),
    };
    if let Some((started, method, path)) = logged {
        tracing::info!(
            target: "freshtoken::access",
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            ms = %format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
            replayed,
            "proxied"
        );
    }
    Ok(response)
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(text.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A client request made ready for the upstream: its head rewritten, its body read up to
/// the replay limit.
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
}

/// Checks the request's target and reads its body; an answer for the client instead when
/// it must not, or cannot, be forwarded.
async fn prepare(
    shared: &Shared,
    door: &Door,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Result<Prepared, Response<ProxyBody>> {
    let (parts, incoming) = req.into_parts();
    let mut headers = parts.headers;
    // Judged before `upstream_head` drops the client's `Host`, refused after it: a request
    // for another target is told so first.
    let misdirected = misdirected(&door.hosts, local, &parts.uri, &headers);
    let uri = upstream_head(
        &shared.config.upstream,
        &shared.upstream,
        &parts.method,
        &parts.uri,
        &mut headers,
    )
    .map_err(|(status, text)| plain(status, text))?;
    if let Some(why) = misdirected {
        return Err(plain(
            StatusCode::MISDIRECTED_REQUEST,
            misdirected_text(&why),
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = read_body(
        incoming,
        declared,
        shared.config.replay_limit,
        door.body_timeout,
    )
    .await
    .map_err(|e| match e {
        BodyRead::TooSlow => plain(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time; nothing was forwarded",
        ),
        BodyRead::Failed(e) => plain(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        ),
    })?;
    Ok(Prepared {
        method: parts.method,
        uri,
        headers,
        body,
    })
}

async fn forward(
    shared: &Shared,
    door: &Door,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Result<(Response<ProxyBody>, bool), Response<ProxyBody>> {
    let req = match &shared.config.gateway {
        Some(gateway) => through_gateway(shared, gateway, door, local, req).await?,
        None => req,
    };
    let Prepared {
        method,
        uri,
        headers,
        body,
    } = prepare(shared, door, local, req).await?;
    Stats::add(&shared.stats.requests);
    let token = match shared.source.token().await {
        Ok(token) => {
            shared.guard.token_ok();
            token
        }
        Err(e) => {
            return Err(no_token(
                shared,
                &e,
                "freshtoken has no valid token to forward with",
            ));
        }
    };
    // What a replay needs is copied only when a replay is possible.
    let (body, replay) = match body {
        Body::Whole(bytes) => (
            ProxyBody::full(bytes.clone()),
            Some((bytes, headers.clone())),
        ),
        Body::Streaming(prefix, rest) => (ProxyBody::Prefixed(Some(prefix), rest), None),
    };
    let mut first = send(shared, &method, &uri, headers, &token, body).await?;
    // A DPoP upstream that wants its new nonce: the same request again, with it (RFC 9449 §9).
    if first.status() == StatusCode::UNAUTHORIZED
        && token.is_dpop()
        && crate::dpop::wants_nonce(first.headers())
        && let Some((bytes, headers)) = &replay
    {
        tracing::debug!("the upstream asked for a DPoP nonce; sending the request again with it");
        let again = ProxyBody::full(bytes.clone());
        first = Box::pin(send(shared, &method, &uri, headers.clone(), &token, again)).await?;
    }
    if first.status() != StatusCode::UNAUTHORIZED {
        shared.guard.accepted();
        return Ok((respond(first), false));
    }
    let Some((bytes, headers)) = replay else {
        Stats::add(&shared.stats.not_replayable);
        Stats::add(&shared.stats.unauthorized);
        tracing::info!(
            "401 from the upstream for a body over the replay limit; passed to the client"
        );
        return Ok((respond(first), false));
    };
    // Boxed: the rare path should not add its futures to every request's.
    let kept = Kept {
        method: &method,
        uri: &uri,
        headers,
        body: bytes,
    };
    Box::pin(after_401(shared, kept, token, first)).await
}

/// A request to a gateway: the token endpoint and other login paths are answered here (an
/// `Err`), API requests go on with the API prefix removed.
async fn through_gateway(
    shared: &Shared,
    gateway: &Gateway,
    door: &Door,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Result<Request<Incoming>, Response<ProxyBody>> {
    let path = match gateway.route(req.uri().path()) {
        Route::Api(path) if path.len() == req.uri().path().len() => return Ok(req),
        Route::Api(path) => path.to_owned(),
        Route::OtherLogin => return Err(gateway::not_found()),
        Route::Token => {
            return Err(Box::pin(gateway_token(shared, gateway, door, local, req)).await);
        }
    };
    let (mut parts, body) = req.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut uri = parts.uri.into_parts();
    uri.path_and_query = path_and_query.parse().ok();
    parts.uri =
        Uri::from_parts(uri).map_err(|_| plain(StatusCode::BAD_REQUEST, "bad request target"))?;
    Ok(Request::from_parts(parts, body))
}

/// The gateway's token endpoint: the profile's own client gets the shared token.
async fn gateway_token(
    shared: &Shared,
    gateway: &Gateway,
    door: &Door,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, incoming) = req.into_parts();
    if let Some(why) = misdirected(&door.hosts, local, &parts.uri, &parts.headers) {
        return plain(StatusCode::MISDIRECTED_REQUEST, misdirected_text(&why));
    }
    let form = match read_body(incoming, None, gateway::MAX_FORM, door.body_timeout).await {
        Ok(Body::Whole(form)) => form,
        Ok(Body::Streaming(..)) => return gateway::Refusal::too_large().response(),
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            );
        }
    };
    if let Err(refusal) = gateway.check(&parts.method, &parts.headers, &form) {
        tracing::info!("gateway: refused a token request ({})", refusal.error());
        return refusal.response();
    }
    match shared.source.token().await {
        Ok(token) => {
            shared.guard.token_ok();
            Stats::add(&shared.stats.gateway_tokens);
            let left = token.remaining(shared.guard.now()).as_secs();
            gateway::token_response(token.expose_secret(), left)
        }
        Err(e) => {
            shared.guard.token_failed(&e);
            tracing::warn!("gateway: no token to answer with: {e}");
            gateway::Refusal::unavailable().response()
        }
    }
}

/// The text of a 421: nothing was forwarded, and how to answer another name.
pub(crate) fn misdirected_text(why: &str) -> String {
    format!(
        "freshtoken proxy: {why}; nothing was forwarded (--allow-host NAME, or allow_hosts in an agent's [[proxy]], answers another name)"
    )
}

/// What of a request head goes to `upstream` (the configured URL; `target` its connections):
/// `CONNECT` and absolute URIs for another host are refused, the upstream's path goes before
/// the client's, and hop-by-hop headers, `Host` (each connection sets the upstream's) and
/// `Authorization` (the proxy sets its own) are dropped from `headers`. A refusal is the
/// status and text of the answer the client gets.
pub(crate) fn upstream_head(
    upstream: &Url,
    target: &Upstream,
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
) -> Result<Uri, (StatusCode, String)> {
    if method == Method::CONNECT {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("freshtoken proxy forwards only to {upstream}; CONNECT is refused"),
        ));
    }
    if let Some(authority) = uri.authority() {
        let same = authority
            .host()
            .eq_ignore_ascii_case(upstream.host_str().unwrap_or_default())
            && authority
                .port_u16()
                .or_else(|| upstream.port_or_known_default())
                == upstream.port_or_known_default();
        if !same {
            return Err((
                StatusCode::FORBIDDEN,
                format!("freshtoken proxy forwards only to {upstream}, not to {authority}"),
            ));
        }
    }
    let uri = target.target(uri).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            "the request path does not make a URL".to_owned(),
        )
    })?;
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove(header::AUTHORIZATION);
    Ok(uri)
}

/// The request as it can be sent again.
struct Kept<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// A token request failed: logged once per failure streak, a 503 for the client.
fn no_token(shared: &Shared, e: &freshtoken::Error, what: &str) -> Response<ProxyBody> {
    shared.guard.token_failed(e);
    plain(StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {e}"))
}

/// After a 401 to `refused`: replays with a token the upstream has not refused yet, fetching
/// one only if nobody has since `refused` was handed out, and none while backing off (then
/// the client gets `first`, the 401 itself).
async fn after_401(
    shared: &Shared,
    kept: Kept<'_>,
    refused: AccessToken,
    first: Response<Incoming>,
) -> Result<(Response<ProxyBody>, bool), Response<ProxyBody>> {
    let guard = &shared.guard;
    let pass_on = |first| {
        Stats::add(&shared.stats.unauthorized);
        tracing::debug!("401 from the upstream while backing off; passed to the client");
        (respond(first), false)
    };
    if guard.backing_off() {
        return Ok(pass_on(first));
    }
    let flight = guard.flight().await;
    if guard.backing_off() {
        return Ok(pass_on(first));
    }
    let newer = shared
        .source
        .peek_valid()
        .filter(|current| !current.same_token(&refused));
    let (fresh, flight) = match newer {
        // Another request refreshed since: use its token, and let the next one in.
        Some(current) => (current, None),
        None => {
            // Drop exactly the token that was refused: a newer one is never thrown away.
            if let Err(e) = shared.source.invalidate(&refused).await {
                tracing::warn!("cannot drop the refused token from the cache: {e}");
            }
            match shared.source.token().await {
                Ok(token) => {
                    guard.token_ok();
                    (token, Some(flight))
                }
                Err(e) => {
                    return Err(no_token(
                        shared,
                        &e,
                        "the upstream refused the token and no new one could be had",
                    ));
                }
            }
        }
    };
    drop(refused);
    drop(first);
    Stats::add(&shared.stats.replayed);
    let second = send(
        shared,
        kept.method,
        kept.uri,
        kept.headers,
        &fresh,
        ProxyBody::full(kept.body),
    )
    .await?;
    if second.status() == StatusCode::UNAUTHORIZED {
        Stats::add(&shared.stats.unauthorized);
        guard.refused_fresh(&fresh);
    } else {
        guard.accepted();
    }
    // Only now may the next refused request decide: it sees this verdict.
    drop(flight);
    Ok((respond(second), true))
}

/// Where a client came in: the `Host` names answered there, and how long a request body
/// that is kept (for a replay, or a gateway's token request) may take to arrive.
pub(crate) struct Door {
    pub(crate) hosts: AllowedHosts,
    pub(crate) body_timeout: Duration,
}

/// Why a request body was not read.
enum BodyRead {
    /// It did not arrive within the door's body timeout: a client that sends it a byte at
    /// a time must not hold a connection (and its memory) for good.
    TooSlow,
    Failed(hyper::Error),
}

impl std::fmt::Display for BodyRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyRead::TooSlow => f.write_str("it did not arrive in time"),
            BodyRead::Failed(e) => e.fmt(f),
        }
    }
}

/// The body, all of it up to `limit` (kept), else what came before the limit and the rest to
/// stream; what is kept must arrive within `timeout`.
async fn read_body(
    incoming: Incoming,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Body, BodyRead> {
    match tokio::time::timeout(timeout, read_kept(incoming, declared, limit)).await {
        Ok(read) => read.map_err(BodyRead::Failed),
        Err(_) => Err(BodyRead::TooSlow),
    }
}

async fn read_kept(
    mut incoming: Incoming,
    declared: Option<u64>,
    limit: usize,
) -> Result<Body, hyper::Error> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(Body::Streaming(Bytes::new(), incoming));
    }
    if declared == Some(0) {
        return Ok(Body::Whole(Bytes::new()));
    }
    let mut kept = BytesMut::new();
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame?.into_data() {
            kept.extend_from_slice(&data);
            if kept.len() > limit {
                return Ok(Body::Streaming(kept.freeze(), incoming));
            }
        }
    }
    Ok(Body::Whole(kept.freeze()))
}

async fn send(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    token: &freshtoken::Token,
    body: ProxyBody,
) -> Result<Response<Incoming>, Response<ProxyBody>> {
    let auth = shared.authorization(token).ok_or_else(|| {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the token cannot be sent in a header",
        )
    })?;
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers;
    request.headers_mut().insert(header::AUTHORIZATION, auth);
    let dpop = shared.dpop.as_ref().filter(|_| token.is_dpop());
    if let Some(d) = dpop {
        let now = shared.guard.now();
        let proof = d.proof(
            &shared.config.upstream,
            method,
            uri,
            token.expose_secret(),
            now,
        );
        if let Some(proof) = proof {
            request.headers_mut().insert("dpop", proof);
        }
    }
    let answer = shared.upstream.send(request).await;
    if let (Some(d), Ok(answer)) = (dpop, &answer) {
        d.note(answer.headers());
    }
    answer.map_err(|e| {
        Stats::add(&shared.stats.upstream_errors);
        let mut cause: &dyn std::error::Error = &*e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        plain(
            StatusCode::BAD_GATEWAY,
            format!("freshtoken proxy: the upstream did not answer: {cause}"),
        )
    })
}

fn respond(upstream: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The proxy answers in its own protocol version, not the upstream's (RFC 9110 §6.2): an
    // HTTP/1.0 upstream must not turn the client's keep-alive connection into a 1.0 one.
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, ProxyBody::Incoming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<'a, F: Future + 'a>(
        _: impl FnOnce(&'a Shared, &'a Door, SocketAddr, Request<Incoming>) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request's future is moved into hyper's connection state and through each await:
    /// carried inline, the TLS handshake of a new upstream connection (7.6 KB) and the replay
    /// path made it 3-4 times this size, and the copying showed in profiles. They are boxed.
    #[test]
    fn a_request_future_leaves_its_cold_paths_boxed() {
        let size = future_size(handle);
        assert!(size < 4096, "the per-request future is {size} bytes");
    }
}

//! The protected API: 401 unless the bearer token is one this server issued and still valid
//! on its clock. Besides the echo, endpoints for proxy tests: a large streamed download, an
//! upload sink that never buffers, and a redirect.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;

use crate::state::State;

type Shared = Arc<State>;

/// The 401 of this server's flavour: OAuth's `invalid_token`, or Genesys' `bad.credentials`.
fn unauthorized(state: &State) -> Response {
    if state.genesys {
        return crate::genesys::unauthorized();
    }
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "invalid_token"})),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}

/// Echoes the request; every request (401s too) is recorded with its body for tests.
pub(crate) async fn echo(
    Extract(state): Extract<Shared>,
    peer: Option<axum::Extension<crate::PeerCertificate>>,
    method: Method,
    Path(path): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/{path}");
    state.record(method.as_str(), &path, &body);
    let peer = peer.as_ref().map(|p| &p.0);
    let dpop = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("DPoP "));
    let issued = if dpop {
        match crate::dpop::authorize(&state, method.as_str(), &headers, uri.path()) {
            Ok(issued) => issued,
            Err(refusal) => return *refusal,
        }
    } else {
        let Some(issued) = state.authorize_holder(&headers, &path, peer) else {
            return unauthorized(&state);
        };
        issued
    };
    let mut answer = json!({
        "method": method.as_str(),
        "path": path,
        "client_id": issued.client_id,
        "body_bytes": body.len(),
    });
    // The binding the token passed (RFC 8705 §3), for tests to see.
    if let Some(x5t) = peer.and_then(crate::PeerCertificate::thumbprint) {
        answer["peer_x5t#S256"] = x5t.into();
    }
    axum::Json(answer).into_response()
}

/// `GET /api/blob/{bytes}`: that many bytes, streamed in 64 KiB chunks, never held whole.
pub(crate) async fn blob(
    Extract(state): Extract<Shared>,
    Path(bytes): Path<u64>,
    headers: HeaderMap,
) -> Response {
    if state
        .authorize(&headers, &format!("/api/blob/{bytes}"))
        .is_none()
    {
        return unauthorized(&state);
    }
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(bytes, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                (Ok::<_, std::io::Error>(chunk.slice(..n)), left - n as u64)
            })
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    if let Ok(v) = HeaderValue::try_from(bytes.to_string()) {
        r.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    r
}

/// `PUT|POST /api/sink`: reads the body as it comes, counting bytes, keeping none.
pub(crate) async fn sink(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if state.authorize(&headers, "/api/sink").is_none() {
        return unauthorized(&state);
    }
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => total += c.len() as u64,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("body: {e}")).into_response(),
        }
    }
    axum::Json(json!({ "received_bytes": total })).into_response()
}

/// `GET /api/redirect?to=URL`: 302 to anywhere (to test that the proxy never follows).
pub(crate) async fn redirect(
    Extract(state): Extract<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if state.authorize(&headers, "/api/redirect").is_none() {
        return unauthorized(&state);
    }
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::try_from(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

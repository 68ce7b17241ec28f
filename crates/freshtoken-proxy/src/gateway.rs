//! The login side of a gateway: tools that insist on authenticating themselves (the Genesys
//! Cloud SDKs, CX as Code, `gc`) are pointed at the proxy as their gateway, and their
//! `POST <login prefix>/oauth/token` is answered here with the proxy's own fresh token and its
//! true remaining lifetime. Their auth code runs unchanged and never reaches the real token
//! endpoint, so a fleet behind gateways still makes one token request per lifetime.
//!
//! Only the profile's own client may ask: the client id and secret it presents (HTTP Basic or
//! the form, RFC 6749 §2.3.1) must be the profile's, compared in constant time. Anything else
//! gets the OAuth error a real authorization server would give.

use std::fmt;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::body::ProxyBody;

/// The largest token request read: a client-credentials form is a few hundred bytes.
pub(crate) const MAX_FORM: usize = 64 * 1024;

/// What the gateway answers and for whom.
#[derive(Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The login paths' prefix (`""` or `/login`), without a trailing slash.
    login_prefix: String,
    /// The API paths' prefix (`""` or `/api-gw`), stripped before forwarding.
    api_prefix: String,
    client_id: String,
    /// SHA-256 of the client secret: compared as digests, so that neither its length nor
    /// its bytes show in the time an answer takes.
    secret_digest: [u8; 32],
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("login_prefix", &self.login_prefix)
            .field("api_prefix", &self.api_prefix)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Where a request to a gateway goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// The token endpoint, answered here.
    Token,
    /// Another login path: 404, nothing is forwarded.
    OtherLogin,
    /// The API, forwarded with this path (the API prefix removed).
    Api(&'a str),
}

impl Gateway {
    /// A gateway for the client `client_id` with `client_secret`; prefixes as the SDKs'
    /// `path_params_login` and `path_params_api` give them (`login`, `/login/`, or empty).
    pub fn new(
        client_id: impl Into<String>,
        client_secret: &SecretString,
        login_prefix: &str,
        api_prefix: &str,
    ) -> Self {
        Self {
            login_prefix: normalize(login_prefix),
            api_prefix: normalize(api_prefix),
            client_id: client_id.into(),
            secret_digest: Sha256::digest(client_secret.expose_secret().as_bytes()).into(),
        }
    }

    /// The login prefix (`""` or `/login`).
    pub fn login_prefix(&self) -> &str {
        &self.login_prefix
    }

    /// The API prefix (`""` or `/api-gw`).
    pub fn api_prefix(&self) -> &str {
        &self.api_prefix
    }

    /// Where `path` goes. Login paths are `<login prefix>/oauth/…`; with no prefix, `/oauth/`
    /// paths are login paths, which no API path of Genesys Cloud's is.
    pub(crate) fn route<'a>(&self, path: &'a str) -> Route<'a> {
        // `//oauth/token` is `/oauth/token`: the Go SDK joins `host:port/` and a prefix that
        // starts with a slash.
        let path = match path.find(|c| c != '/') {
            Some(first) if first > 1 => &path[first - 1..],
            _ => path,
        };
        let login = path
            .strip_prefix(self.login_prefix.as_str())
            .filter(|rest| rest.starts_with("/oauth/") || *rest == "/oauth");
        match login {
            Some("/oauth/token") => Route::Token,
            Some(_) => Route::OtherLogin,
            None => Route::Api(
                path.strip_prefix(self.api_prefix.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .unwrap_or(path),
            ),
        }
    }

    /// Whether the client presented the profile's own credentials: `Err` is the OAuth error
    /// to answer with.
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        form: &[u8],
    ) -> Result<(), Refusal> {
        if method != Method::POST {
            return Err(Refusal::method());
        }
        let fields = Fields::parse(form);
        match fields.grant_type.as_deref() {
            None => return Err(Refusal::request("grant_type is missing")),
            Some("client_credentials") => {}
            Some(_) => return Err(Refusal::unsupported_grant()),
        }
        let basic = headers
            .get(header::AUTHORIZATION)
            .map(|v| basic_credentials(v).ok_or_else(Refusal::client_basic));
        let (readings, by_basic) = match (basic, fields.client_id, fields.client_secret) {
            (Some(_), _, Some(_)) => {
                return Err(Refusal::request(
                    "the client authenticated in more than one way",
                ));
            }
            (Some(basic), _, None) => (basic?, true),
            (None, Some(id), Some(secret)) => (vec![(id, secret)], false),
            (None, _, _) => return Err(Refusal::client(false)),
        };
        let id_digest: [u8; 32] = Sha256::digest(self.client_id.as_bytes()).into();
        let matches = |(id, secret): &(String, String)| {
            let secret_ok = ct_eq(
                &Sha256::digest(secret.as_bytes()).into(),
                &self.secret_digest,
            );
            let id_ok = ct_eq(&Sha256::digest(id.as_bytes()).into(), &id_digest);
            secret_ok & id_ok
        };
        // Every reading is compared, so that which one matched does not show in the time.
        let ok = readings.iter().fold(false, |ok, r| ok | matches(r));
        if ok {
            Ok(())
        } else {
            Err(Refusal::client(by_basic))
        }
    }
}

/// `/login/` → `/login`; `login` → `/login`; empty stays empty.
fn normalize(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// Equal, in time that does not depend on where the two differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Read through black_box so that the fold is not turned into an early exit.
    std::hint::black_box(diff) == 0
}

/// The fields of a token request that matter here.
#[derive(Default)]
struct Fields {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl Fields {
    fn parse(form: &[u8]) -> Self {
        let mut fields = Fields::default();
        for (k, v) in url::form_urlencoded::parse(form) {
            let slot = match k.as_ref() {
                "grant_type" => &mut fields.grant_type,
                "client_id" => &mut fields.client_id,
                "client_secret" => &mut fields.client_secret,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        fields
    }
}

/// The id and secret of `Authorization: Basic …`: as sent, and form-decoded when that
/// differs. RFC 6749 §2.3.1 has both form-encoded before base64, but the SDKs send them raw;
/// either reading that matches is the client's.
fn basic_credentials(value: &HeaderValue) -> Option<Vec<(String, String)>> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unform = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let mut readings = vec![(id.to_owned(), secret.to_owned())];
    let unformed = (unform(id), unform(secret));
    if unformed != readings[0] {
        readings.push(unformed);
    }
    Some(readings)
}

/// An OAuth error answer (RFC 6749 §5.2).
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    /// `WWW-Authenticate: Basic`, for a client that tried Basic (§5.2: 401 then).
    challenge: bool,
}

impl Refusal {
    fn method() -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            error: "invalid_request",
            description: "the token endpoint takes POST",
            challenge: false,
        }
    }

    fn request(description: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description,
            challenge: false,
        }
    }

    fn unsupported_grant() -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            description: "this gateway answers the client_credentials grant only",
            challenge: false,
        }
    }

    pub(crate) fn too_large() -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: "invalid_request",
            description: "the token request is too large",
            challenge: false,
        }
    }

    pub(crate) fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "freshtoken has no valid token to answer with; try again shortly",
            challenge: false,
        }
    }

    /// The OAuth error code.
    pub(crate) fn error(&self) -> &'static str {
        self.error
    }

    fn client_basic() -> Self {
        Self::client(true)
    }

    fn client(by_basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "client authentication failed",
            challenge: by_basic,
        }
    }

    pub(crate) fn response(&self) -> Response<ProxyBody> {
        let body = serde_json_like(&[
            ("error", self.error),
            ("error_description", self.description),
        ]);
        let mut r = json_response(self.status, body);
        if self.challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"freshtoken gateway\""),
            );
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        r
    }
}

/// The token answer: the shared token and what is truly left of its life.
pub(crate) fn token_response(token: &str, expires_in: u64) -> Response<ProxyBody> {
    let body = format!(
        "{{\"access_token\":\"{token}\",\"token_type\":\"bearer\",\"expires_in\":{expires_in}}}"
    );
    json_response(StatusCode::OK, body)
}

/// 404 for a login path the gateway does not answer.
pub(crate) fn not_found() -> Response<ProxyBody> {
    json_response(
        StatusCode::NOT_FOUND,
        serde_json_like(&[
            ("error", "not_found"),
            (
                "error_description",
                "this gateway answers POST /oauth/token only",
            ),
        ]),
    )
}

/// `{"k":"v",…}` for values that need no escaping (constants, and tokens, which are checked
/// to be RFC 6750 `b64token`s before anything serves them).
fn serde_json_like(pairs: &[(&str, &str)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Gateway {
        Gateway::new("id", &SecretString::from("s3cret".to_owned()), "login/", "")
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    const GRANT: &[u8] = b"grant_type=client_credentials";

    #[test]
    fn routes_login_paths_under_the_prefix_and_strips_the_api_prefix() {
        let g = gateway();
        assert_eq!(g.route("/login/oauth/token"), Route::Token);
        assert_eq!(g.route("/login/oauth/authorize"), Route::OtherLogin);
        assert_eq!(g.route("/api/v2/users/me"), Route::Api("/api/v2/users/me"));
        assert_eq!(g.route("/oauth/token"), Route::Api("/oauth/token"));
        let plain = Gateway::new("id", &SecretString::from("s".to_owned()), "", "/gw/");
        assert_eq!(plain.route("/oauth/token"), Route::Token);
        assert_eq!(plain.route("/oauth/revoke"), Route::OtherLogin);
        assert_eq!(plain.route("/gw/api/v2/x"), Route::Api("/api/v2/x"));
        assert_eq!(plain.route("/gwx/api"), Route::Api("/gwx/api"));
        assert_eq!(plain.route("/api/v2/x"), Route::Api("/api/v2/x"));
        // As the Go SDK (and so CX as Code) sends them through a gateway on a port.
        assert_eq!(plain.route("//oauth/token"), Route::Token);
        assert_eq!(plain.route("//api/v2/x"), Route::Api("/api/v2/x"));
    }

    #[test]
    fn the_profile_s_own_client_is_let_in_by_basic_or_form() {
        let g = gateway();
        assert!(
            g.check(&Method::POST, &basic("id", "s3cret"), GRANT)
                .is_ok()
        );
        let form = b"grant_type=client_credentials&client_id=id&client_secret=s3cret";
        assert!(g.check(&Method::POST, &HeaderMap::new(), form).is_ok());
        // Form-encoded before base64, as RFC 6749 has it.
        let odd = Gateway::new("a b", &SecretString::from("p%w+".to_owned()), "", "");
        assert!(
            odd.check(&Method::POST, &basic("a+b", "p%25w%2B"), GRANT)
                .is_ok()
        );
    }

    #[test]
    fn anything_else_gets_the_error_a_real_server_gives() {
        let g = gateway();
        let status =
            |r: Result<(), Refusal>| r.map_err(|e| (e.status.as_u16(), e.error, e.challenge));
        assert_eq!(
            status(g.check(&Method::POST, &basic("id", "wrong"), GRANT)),
            Err((401, "invalid_client", true))
        );
        assert_eq!(
            status(g.check(&Method::POST, &basic("other", "s3cret"), GRANT)),
            Err((401, "invalid_client", true))
        );
        assert_eq!(
            status(g.check(&Method::POST, &HeaderMap::new(), GRANT)),
            Err((401, "invalid_client", false))
        );
        assert_eq!(
            status(g.check(
                &Method::POST,
                &basic("id", "s3cret"),
                b"grant_type=password"
            )),
            Err((400, "unsupported_grant_type", false))
        );
        assert_eq!(
            status(g.check(&Method::POST, &basic("id", "s3cret"), b"")),
            Err((400, "invalid_request", false))
        );
        let both = b"grant_type=client_credentials&client_secret=s3cret";
        assert_eq!(
            status(g.check(&Method::POST, &basic("id", "s3cret"), both)),
            Err((400, "invalid_request", false))
        );
        assert_eq!(
            status(g.check(&Method::GET, &basic("id", "s3cret"), GRANT)),
            Err((405, "invalid_request", false))
        );
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(
            status(g.check(&Method::POST, &garbage, GRANT)),
            Err((401, "invalid_client", true))
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", gateway());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("/login"), "{shown}");
    }
}

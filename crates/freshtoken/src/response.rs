//! Parsing the token endpoint's answer: strict where it matters (a token, a lifetime, bearer),
//! tolerant where real servers differ (numeric strings, any Content-Type, a BOM).

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::jwt;
use crate::redact;
use crate::token::{ExpirySource, Token, check_b64token};

/// Longest lifetime believed; anything larger is clamped so arithmetic cannot overflow.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Shortest lifetime accepted, from `expires_in` or a JWT `exp`.
const MIN_LIFETIME: Duration = Duration::from_secs(1);

/// Longest excerpt of a bad body shown to the user.
const EXCERPT_CHARS: usize = 160;

/// A parsed OAuth error answer (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthErrorBody {
    /// The `error` code.
    pub error: String,
    /// `error_description`, else Genesys Cloud's `description`, else `message`.
    pub description: Option<String>,
}

/// Parses a success answer into a token whose expiry is `received_at + expires_in`.
///
/// `default_lifetime` applies only when neither `expires_in` nor a JWT `exp` is present.
pub fn parse_success(
    status: u16,
    body: &[u8],
    received_at: SystemTime,
    default_lifetime: Duration,
) -> Result<Token, Error> {
    parse_success_as(status, body, received_at, default_lifetime, false)
}

/// [`parse_success`] for a request that may have asked for a DPoP-bound token (`dpop`):
/// `token_type` `DPoP` is accepted only then.
pub(crate) fn parse_success_as(
    status: u16,
    body: &[u8],
    received_at: SystemTime,
    default_lifetime: Duration,
    dpop: bool,
) -> Result<Token, Error> {
    let invalid = |problem: String| Error::InvalidResponse { status, problem };
    let obj = match json_object(body) {
        Ok(obj) => obj,
        Err(problem) => return Err(invalid(problem)),
    };

    let access_token = match obj.get("access_token") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("`access_token` is empty".into())),
        Some(_) => return Err(invalid("`access_token` is not a string".into())),
        None => {
            return Err(invalid(format!(
                "no `access_token` in the answer (fields: {})",
                field_names(&obj)
            )));
        }
    };
    if let Err(why) = check_b64token(&access_token) {
        return Err(invalid(format!("`access_token` is {why}")));
    }

    let token_type = token_type(&obj, dpop).map_err(invalid)?;

    let (lifetime, source) = match expires_in(obj.get("expires_in")) {
        Ok(Some(lifetime)) => (lifetime, ExpirySource::ExpiresIn),
        Ok(None) => match jwt::exp_seconds(&access_token) {
            Some(exp) => (
                jwt_lifetime(exp, received_at).map_err(invalid)?,
                ExpirySource::JwtExp,
            ),
            None => (default_lifetime, ExpirySource::Default),
        },
        Err(problem) => return Err(invalid(problem)),
    };

    let scope = scope(&obj);
    let refresh_token = match obj.get("refresh_token") {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s.clone())),
        _ => None,
    };

    let token = Token::new(
        SecretString::from(access_token),
        received_at,
        received_at + lifetime.min(MAX_LIFETIME),
        source,
    )
    .with_token_type(token_type)
    .with_scope(scope)
    .with_refresh_token(refresh_token)
    // Keycloak's `refresh_expires_in`; 0 (Keycloak's "no expiry") or nonsense is not kept.
    .with_refresh_expires_at(
        expires_in(obj.get("refresh_expires_in"))
            .ok()
            .flatten()
            .map(|d| received_at + d.min(MAX_LIFETIME)),
    );
    Ok(token)
}

/// The answer's `token_type`: Bearer (also when absent), or DPoP for a request that asked
/// for it (`dpop`); anything else is the problem to report.
fn token_type(obj: &Map<String, Value>, dpop: bool) -> Result<&'static str, String> {
    let mut token_type = "Bearer";
    match obj.get("token_type") {
        None | Some(Value::Null) => {
            tracing::debug!("token response has no token_type; assuming Bearer");
        }
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) if dpop && t.eq_ignore_ascii_case(crate::dpop::TOKEN_TYPE) => {
            token_type = crate::dpop::TOKEN_TYPE;
        }
        Some(Value::String(t)) => {
            let hint = if t.eq_ignore_ascii_case(crate::dpop::TOKEN_TYPE) {
                " (set dpop = true in the profile for DPoP-bound tokens)"
            } else {
                ""
            };
            return Err(format!(
                "token_type is {:?}; only Bearer tokens are supported{hint}",
                sanitize(&redact::fields(t), 40)
            ));
        }
        Some(_) => return Err("`token_type` is not a string".into()),
    }
    Ok(token_type)
}

/// The granted scope: a string, or a list (some servers send one) joined the way RFC 6749
/// spells scopes.
fn scope(obj: &Map<String, Value>) -> Option<String> {
    match obj.get("scope") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

/// Reads an OAuth error body, if the answer is one.
pub fn parse_error_body(body: &[u8]) -> Option<OAuthErrorBody> {
    let obj = json_object(body).ok()?;
    // Both are shown to the user: a server that quotes the request or its own answer in
    // them must not get a credential shown with them.
    let error = match obj.get("error") {
        Some(Value::String(s)) if !s.is_empty() => sanitize(&redact::fields(s), 80),
        _ => return None,
    };
    let description = ["error_description", "description", "message"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .filter(|d| !d.trim().is_empty())
        .map(|d| sanitize(&redact::fields(d), 300));
    Some(OAuthErrorBody { error, description })
}

/// A short excerpt of a body fit for an error line: tags dropped, whitespace and control
/// characters folded, cut at a character boundary.
///
/// The values of credential fields (`access_token`, `refresh_token`, `id_token`, assertions)
/// are redacted first, as text: the body may be form-encoded or malformed JSON, and cutting
/// it short must not leave half a token showing.
pub fn excerpt(body: &[u8]) -> String {
    let text = redact::fields(&String::from_utf8_lossy(strip_bom(body)));
    let mut without_tags = String::with_capacity(text.len().min(4096));
    let mut in_tag = false;
    let looks_html = text.trim_start().starts_with('<');
    for c in text.chars().take(8192) {
        match c {
            '<' if looks_html => in_tag = true,
            '>' if looks_html && in_tag => {
                in_tag = false;
                without_tags.push(' ');
            }
            _ if in_tag => {}
            c => without_tags.push(c),
        }
    }
    sanitize(&without_tags, EXCERPT_CHARS)
}

fn sanitize(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut last_space = true;
    let mut count = 0;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if count == max_chars {
            out.push('…');
            return out.trim_end().to_owned();
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_owned()
}

fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    let body = strip_bom(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body is empty".into());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(format!(
            "the body is JSON but not an object: {}",
            excerpt(body)
        )),
        Err(_) => {
            let what = if body.trim_ascii_start().starts_with(b"<") {
                "HTML or XML"
            } else {
                "not JSON"
            };
            Err(format!("the body is {what}: {}", excerpt(body)))
        }
    }
}

fn field_names(obj: &Map<String, Value>) -> String {
    if obj.is_empty() {
        return "none".into();
    }
    obj.keys()
        .take(12)
        .map(|k| sanitize(k, 40))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `expires_in` as a number or a numeric string; `Ok(None)` when absent or null.
fn expires_in(value: Option<&Value>) -> Result<Option<Duration>, String> {
    let secs = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    let Some(secs) = secs.filter(|s| s.is_finite()) else {
        return Err(format!(
            "`expires_in` is not a number: {}",
            short_value(value)
        ));
    };
    // Less than a second cannot be used: by the time the token reaches its caller it is
    // gone, and a refresh-ahead window of a fraction of it would make every call a request.
    if secs < MIN_LIFETIME.as_secs_f64() {
        return Err(format!(
            "`expires_in` is {secs}; a token must live at least one second"
        ));
    }
    Ok(Some(Duration::from_secs_f64(
        secs.min(MAX_LIFETIME.as_secs_f64()),
    )))
}

/// The lifetime a JWT's `exp` (Unix seconds) leaves from `received_at`: refused once past,
/// negative included, or when under a second; capped at [`MAX_LIFETIME`].
fn jwt_lifetime(exp: f64, received_at: SystemTime) -> Result<Duration, String> {
    let now = received_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let left = exp - now;
    if left <= 0.0 {
        return Err("no `expires_in`, and the token's JWT `exp` is already past".into());
    }
    if left < MIN_LIFETIME.as_secs_f64() {
        return Err(format!(
            "no `expires_in`, and the token's JWT `exp` leaves it {left:.3} s; a token must live at least one second"
        ));
    }
    Ok(Duration::from_secs_f64(
        left.min(MAX_LIFETIME.as_secs_f64()),
    ))
}

fn short_value(value: Option<&Value>) -> String {
    value
        .map(|v| sanitize(&redact::fields(&v.to_string()), 40))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const DEFAULT: Duration = Duration::from_secs(300);

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ok(body: &str) -> Token {
        parse_success(200, body.as_bytes(), at(), DEFAULT).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(body: &[u8]) -> String {
        match parse_success(200, body, at(), DEFAULT) {
            Ok(t) => panic!("{:?} parsed: {t:?}", String::from_utf8_lossy(body)),
            Err(e) => e.to_string(),
        }
    }

    fn jwt_with_exp(exp: u64) -> String {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            b.encode(format!(r#"{{"sub":"x","exp":{exp}}}"#))
        )
    }

    #[test]
    fn accepts_what_real_servers_send() {
        // (body, lifetime in ms, expiry source, scope)
        let jwt = jwt_with_exp(1_700_000_000 + 120);
        let with_jwt = format!(r#"{{"access_token":"{jwt}","token_type":"Bearer"}}"#);
        let rows: Vec<(&str, u64, ExpirySource, Option<&str>)> = vec![
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":3600}"#,
                3_600_000,
                ExpirySource::ExpiresIn,
                None,
            ),
            (
                r#"{"access_token":"a","token_type":"BEARER","expires_in":"86399"}"#,
                86_399_000,
                ExpirySource::ExpiresIn,
                None,
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":2.5}"#,
                2_500,
                ExpirySource::ExpiresIn,
                None,
            ),
            (
                "\u{FEFF}{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":60}",
                60_000,
                ExpirySource::ExpiresIn,
                None,
            ),
            (
                r#"{"access_token":"a","expires_in":60,"scope":"read write"}"#,
                60_000,
                ExpirySource::ExpiresIn,
                Some("read write"),
            ),
            (
                r#"{"access_token":"a","expires_in":60,"scope":["read","write"]}"#,
                60_000,
                ExpirySource::ExpiresIn,
                Some("read write"),
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer"}"#,
                300_000,
                ExpirySource::Default,
                None,
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":null}"#,
                300_000,
                ExpirySource::Default,
                None,
            ),
            (&with_jwt, 120_000, ExpirySource::JwtExp, None),
            (
                r#"  {"access_token":"a","expires_in":1e12}  "#,
                MAX_LIFETIME.as_millis() as u64,
                ExpirySource::ExpiresIn,
                None,
            ),
        ];
        for (body, lifetime_ms, source, scope) in rows {
            let t = ok(body);
            assert_eq!(t.lifetime(), Duration::from_millis(lifetime_ms), "{body}");
            assert_eq!(t.expiry_source(), source, "{body}");
            assert_eq!(t.scope(), scope, "{body}");
            assert_eq!(t.received_at(), at());
        }
    }

    #[test]
    fn refuses_what_cannot_be_used_with_a_clear_reason() {
        let huge_html = format!(
            "<html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
            "x".repeat(10_000)
        );
        let rows: Vec<(&[u8], &str)> = vec![
            (b"", "the body is empty"),
            (b"  \n", "the body is empty"),
            (
                b"<html><body><h1>Service Unavailable</h1></body></html>",
                "HTML or XML: Service Unavailable",
            ),
            (huge_html.as_bytes(), "HTML or XML: 502 Bad Gateway"),
            (
                b"access_token=a&expires_in=3",
                "not JSON: access_token=[REDACTED]&expires_in=3",
            ),
            (
                br#"{"access_token":"REAL","expires_in":3600,}"#,
                r#"not JSON: {"access_token":"[REDACTED]","expires_in":3600,}"#,
            ),
            (
                br#"[{"refresh_token":"REAL"}]"#,
                r#"JSON but not an object: [{"refresh_token":"[REDACTED]"}]"#,
            ),
            (b"[1,2]", "JSON but not an object"),
            (
                br#"{"token_type":"Bearer","expires_in":3600}"#,
                "no `access_token` in the answer (fields: expires_in, token_type)",
            ),
            (
                br#"{"access_token":"","expires_in":3600}"#,
                "`access_token` is empty",
            ),
            (
                br#"{"access_token":42,"expires_in":3600}"#,
                "`access_token` is not a string",
            ),
            (
                br#"{"access_token":"a b","expires_in":3600}"#,
                "`access_token` is not an RFC 6750 bearer token (b64token): character 2 of 3",
            ),
            (
                br#"{"access_token":"x$(id>/tmp/p)","expires_in":3600}"#,
                "`access_token` is not an RFC 6750 bearer token",
            ),
            (
                br#"{"access_token":"a","expires_in":0}"#,
                "`expires_in` is 0",
            ),
            (
                br#"{"access_token":"a","expires_in":-5}"#,
                "`expires_in` is -5",
            ),
            (
                br#"{"access_token":"a","expires_in":"soon"}"#,
                "`expires_in` is not a number: \"soon\"",
            ),
            (
                br#"{"access_token":"a","expires_in":true}"#,
                "`expires_in` is not a number",
            ),
            (
                br#"{"access_token":"a","token_type":"mac","expires_in":60}"#,
                "token_type is \"mac\"; only Bearer",
            ),
            (
                br#"{"access_token":"a","token_type":"DPoP","expires_in":60}"#,
                "token_type is \"DPoP\"",
            ),
            (
                br#"{"access_token":"a","token_type":7,"expires_in":60}"#,
                "`token_type` is not a string",
            ),
            (br#"{"access_token":"a","#, "not JSON"),
        ];
        for (body, want) in rows {
            let got = err(body);
            assert!(
                got.contains(want),
                "{:?}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(body)
            );
            assert!(!got.contains('\n'), "{got:?}");
            assert!(got.chars().count() < 400, "{got:?}");
        }
    }

    #[test]
    fn a_damaged_answer_that_holds_a_token_is_not_shown() {
        // Found by fuzzing (fuzz/fuzz_targets/token_response.rs): an answer cut short, or
        // one that is not JSON, was quoted in the error, token and all. Token fields are now
        // redacted in every excerpt, as text.
        let rows: &[(&[u8], &str, &str)] = &[
            (
                br#"{"access_token": "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIs{ImtpZCI6IlZ"#,
                "eyJhbGci",
                "not JSON",
            ),
            (
                br#"{"access_token":"tok-0123456789","token_type":"bearer","expires_in":86399,}"#,
                "tok-0123456789",
                "not JSON",
            ),
            (
                br#"{"token_type":"bearer","Refresh_Token":"rt-0123456789""#,
                "rt-0123456789",
                "not JSON",
            ),
            (
                br#"[{"access_token":"tok-0123456789"}]"#,
                "tok-0123456789",
                "JSON but not an object",
            ),
            (
                b"access_token=tok-0123456789&expires_in=3",
                "tok-0123456789",
                "not JSON",
            ),
        ];
        for (body, token, want) in rows {
            let got = err(body);
            assert!(!got.contains(token), "{got:?}");
            assert!(got.contains(want), "{got:?}");
        }
    }

    #[test]
    fn token_type_dpop_is_accepted_only_when_asked_for() {
        let dpop = br#"{"access_token":"a","token_type":"DPoP","expires_in":60}"#;
        let asked = parse_success_as(200, dpop, at(), DEFAULT, true).unwrap();
        assert_eq!(asked.token_type(), "DPoP");
        assert!(asked.is_dpop());
        let e = parse_success_as(200, dpop, at(), DEFAULT, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("set dpop = true"), "{e}");
        let bearer = br#"{"access_token":"a","token_type":"bearer","expires_in":60}"#;
        let t = parse_success_as(200, bearer, at(), DEFAULT, true).unwrap();
        assert_eq!(t.token_type(), "Bearer");
        assert!(!t.is_dpop());
    }

    #[test]
    fn an_expired_jwt_without_expires_in_is_refused() {
        let jwt = jwt_with_exp(1_700_000_000 - 5);
        let body = format!(r#"{{"access_token":"{jwt}"}}"#);
        assert!(err(body.as_bytes()).contains("already past"));
    }

    #[test]
    fn lifetimes_under_a_second_and_negative_exps_are_refused() {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = |exp: &str| {
            format!(
                r#"{{"access_token":"e30.{}.sig"}}"#,
                b.encode(format!(r#"{{"exp":{exp}}}"#))
            )
        };
        for (body, want) in [
            (token("-1"), "JWT `exp` is already past"),
            (token("-1e300"), "JWT `exp` is already past"),
            (token("0"), "JWT `exp` is already past"),
            (token("1700000000"), "JWT `exp` is already past"),
            (
                token("1700000000.999"),
                "leaves it 0.999 s; a token must live at least one second",
            ),
            (
                r#"{"access_token":"a","expires_in":0.999}"#.to_owned(),
                "`expires_in` is 0.999; a token must live at least one second",
            ),
            (
                r#"{"access_token":"a","expires_in":"0.5"}"#.to_owned(),
                "`expires_in` is 0.5",
            ),
        ] {
            let got = err(body.as_bytes());
            assert!(got.contains(want), "{body}: {got}");
        }
        // The boundary, and a far future that is capped, not ignored.
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":1}"#).lifetime(),
            Duration::from_secs(1)
        );
        assert_eq!(ok(&token("1700000001")).lifetime(), Duration::from_secs(1));
        let far = ok(&token("1e300"));
        assert_eq!(
            (far.lifetime(), far.expiry_source()),
            (MAX_LIFETIME, ExpirySource::JwtExp)
        );
    }

    #[test]
    fn reads_oauth_errors_including_genesys_description() {
        type Row<'a> = (&'a str, Option<(&'a str, Option<&'a str>)>);
        let rows: &[Row] = &[
            (
                r#"{"error":"invalid_client","error_description":"bad secret"}"#,
                Some(("invalid_client", Some("bad secret"))),
            ),
            (
                r#"{"error":"invalid_request","description":"Rate limit exceeded the maximum. Retry the request in [12] seconds"}"#,
                Some((
                    "invalid_request",
                    Some("Rate limit exceeded the maximum. Retry the request in [12] seconds"),
                )),
            ),
            (
                r#"{"error":"invalid_scope"}"#,
                Some(("invalid_scope", None)),
            ),
            (
                r#"{"error":"x","error_description":"line1\nline2"}"#,
                Some(("x", Some("line1 line2"))),
            ),
            (
                r#"{"error":"invalid_request","error_description":"body was client_assertion=eyJ.x.y&access_token=AT"}"#,
                Some((
                    "invalid_request",
                    Some("body was client_assertion=[REDACTED]&access_token=[REDACTED]"),
                )),
            ),
            (r#"{"message":"not an oauth error"}"#, None),
            ("<html>oops</html>", None),
            ("", None),
        ];
        for (body, want) in rows {
            let got = parse_error_body(body.as_bytes());
            let got = got
                .as_ref()
                .map(|e| (e.error.as_str(), e.description.as_deref()));
            assert_eq!(got, *want, "{body}");
        }
    }

    #[test]
    fn excerpts_are_short_single_line_and_readable() {
        assert_eq!(
            excerpt(b"<html>\n<title>Bad\tGateway</title>\r\n</html>"),
            "Bad Gateway"
        );
        assert_eq!(excerpt(b"plain\x00text\x1b[31m"), "plain text [31m");
        let long = excerpt("é".repeat(500).as_bytes());
        assert_eq!(long.chars().count(), EXCERPT_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(excerpt(&[0xff, 0xfe, b'a']), "\u{FFFD}\u{FFFD}a");
        // A token past the cut is redacted before the cut, not half shown.
        let long = format!("{}\"access_token\":\"{}\"", "x".repeat(150), "T".repeat(40));
        let cut = excerpt(long.as_bytes());
        assert!(!cut.contains('T'), "{cut}");
        assert!(excerpt(b"<html><pre>id_token: IT</pre></html>").contains("id_token: [REDACTED]"));
    }
}

//! What the commands print, in one vocabulary: the token formats of `get` are the agent's
//! ([`TokenFormat`], shared by its sinks and its endpoint, and
//! [`freshtoken_agent::output::TokenWire`], the one JSON shape of a token), and everything
//! goes to stdout through [`print`].
//!
//! The JSON of `status`, `inspect` and `agent --check` follows one rule set, checked against
//! the schemas in tests/it/schemas: a moment is two fields that say which, `NAME` (RFC 3339,
//! UTC, to the second) and `NAME_unix` (Unix seconds); a field that can be unknown is there
//! as null rather than left out; a token's state (never the token) is [`token_state`].

pub(crate) use freshtoken_agent::output::TokenFormat;

use std::time::SystemTime;

use freshtoken::{Freshness, RefreshPolicy, Token};
use serde_json::{Value, json};

use crate::cli::{DataFormat, Format};
use crate::exit::{CliError, CliResult};

/// Whether a command that prints data prints JSON: `--format json`, or its older `--json`.
pub(crate) fn wants_json(format: DataFormat, json_flag: bool) -> bool {
    json_flag || format == DataFormat::Json
}

/// Sets `NAME` (RFC 3339) and `NAME_unix` (Unix seconds) in `object`: the one way a moment is
/// written in JSON.
pub(crate) fn set_time(object: &mut Value, name: &str, t: SystemTime) {
    object[name] = json!(freshtoken_agent::output::rfc3339(t));
    object[format!("{name}_unix")] = json!(unix(t));
}

/// `t` in Unix seconds (0 before the epoch, which no token time is).
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `fresh`, `stale` (valid, but past the point where it is refreshed ahead of expiry, taken
/// without jitter: the latest such point), `expired`, or `none`.
pub(crate) fn state_word(
    token: Option<&Token>,
    policy: &RefreshPolicy,
    now: SystemTime,
) -> &'static str {
    match token.map(|t| policy.assess(t, now, 0.0, std::time::Duration::ZERO)) {
        None => "none",
        Some(Freshness::Fresh) => "fresh",
        Some(Freshness::Expired) => "expired",
        Some(_) => "stale",
    }
}

/// What is known about a token, without the token: its state, fingerprint, expiry, where the
/// expiry came from, scope (null when the server did not say) and when it was fetched.
pub(crate) fn token_state(t: &Token, policy: &RefreshPolicy, now: SystemTime) -> Value {
    let mut v = json!({
        "state": state_word(Some(t), policy, now),
        "fingerprint": t.fingerprint().to_string(),
        "valid": t.is_valid_at(now),
        "expires_in": t.remaining(now).as_secs(),
        "expiry_from": expiry_from(t),
        "scope": t.scope(),
    });
    set_time(&mut v, "expires_at", t.expires_at());
    set_time(&mut v, "fetched_at", t.received_at());
    v
}

/// Where a token's expiry came from, as JSON says it.
fn expiry_from(t: &Token) -> &'static str {
    match t.expiry_source() {
        freshtoken::ExpirySource::ExpiresIn => "expires_in",
        freshtoken::ExpirySource::JwtExp => "jwt_exp",
        _ => "default_lifetime",
    }
}

/// `--format` (and, for `env`, `--env NAME`) as the one format vocabulary of `get`, the
/// sinks and the agent's endpoint.
pub(crate) fn token_format(format: Format, env_name: Option<&str>) -> TokenFormat {
    match (format, env_name) {
        (Format::Raw, _) => TokenFormat::Raw,
        (Format::Json, _) => TokenFormat::Json,
        (Format::Header, _) => TokenFormat::Header,
        (Format::Env, None) => TokenFormat::env(),
        (Format::Env, Some(name)) => TokenFormat::Env {
            name: name.to_owned(),
        },
    }
}

/// Writes what a command prints to stdout. A reader that went away (`freshtoken status |
/// head -1`) ends the command quietly, as it does for `cat`, rather than as an internal error.
pub(crate) fn print(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::internal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// `value` pretty-printed, newline-terminated.
pub(crate) fn print_json(value: &Value) -> CliResult {
    print(&format!("{}\n", pretty(value)))
}

/// `value` as indented JSON text.
pub(crate) fn pretty(value: &Value) -> String {
    // Cannot fail: serde_json fails only on a map key that is not a string or on a
    // `Serialize` impl that errors, and a `Value` has neither.
    serde_json::to_string_pretty(value).expect("a JSON value with string keys serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::Token;
    use std::time::{Duration, SystemTime};

    /// The token in the asked-for format, as `get` prints it.
    fn render(token: &Token, format: Format, now: SystemTime) -> String {
        token_format(format, None).render(token, now)
    }

    /// A token issued at 1,700,000,000 for an hour with scope "a b", and a moment 10 minutes
    /// into its life: the fixture of the rendering tests.
    fn sample_token() -> (Token, SystemTime) {
        use freshtoken::ExpirySource;
        use secrecy::SecretString;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = Token::new(
            SecretString::from("tok".to_owned()),
            at,
            at + Duration::from_secs(3600),
            ExpirySource::ExpiresIn,
        )
        .with_scope(Some("a b".into()));
        (t, at + Duration::from_secs(600))
    }

    use serde_json::json;

    #[test]
    fn formats() -> Result<(), serde_json::Error> {
        let (t, now) = sample_token();
        assert_eq!(render(&t, Format::Raw, now), "tok\n");
        assert_eq!(
            render(&t, Format::Header, now),
            "Authorization: Bearer tok\n"
        );
        assert_eq!(
            render(&t, Format::Env, now),
            "FRESHTOKEN_ACCESS_TOKEN='tok'\nFRESHTOKEN_EXPIRES_AT=1700003600\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render(&t, Format::Json, now))?;
        assert_eq!(
            v,
            json!({"access_token":"tok","token_type":"Bearer","expires_in":3000,"expires_at":"2023-11-14T23:13:20Z","expires_at_unix":1700003600,"scope":"a b"})
        );
        Ok(())
    }
}

//! What the commands print, in one vocabulary: the token formats of `get` are the agent's
//! ([`TokenFormat`], shared by its sinks and its endpoint, and [`TokenWire`], the one JSON
//! shape of a token), and everything goes to stdout through [`print`].

pub(crate) use freshtoken_agent::output::TokenFormat;

use crate::cli::Format;
use crate::exit::{CliError, CliResult};

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
pub(crate) fn print_json(value: &serde_json::Value) -> CliResult {
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("a JSON value with string keys serializes")
    ))
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
            json!({"access_token":"tok","token_type":"Bearer","expires_in":3000,"expires_at":1700003600,"scope":"a b"})
        );
        Ok(())
    }
}

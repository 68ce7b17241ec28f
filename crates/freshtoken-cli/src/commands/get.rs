//! `freshtoken get`: a valid token on stdout, and nothing else.

use std::path::Path;
use std::time::{Duration, SystemTime};

use freshtoken::{Token, Want};
use serde_json::json;

use crate::cli::{Cli, Format, GetArgs};
use crate::env;
use crate::exit::{CliError, CliResult};
use crate::units::parse_duration;
use crate::wiring;

pub async fn run(cli: &Cli, args: &GetArgs) -> CliResult {
    let print = |token: &Token, now| {
        super::print(&match (&args.env, args.format) {
            (Some(name), Format::Env) => render_env(token, name),
            _ => render(token, args.format, now),
        })
    };
    match &args.env {
        Some(name) if !crate::units::is_env_name(name) => {
            return Err(CliError::usage(format!(
                "--env {name:?} is not an environment variable name"
            )));
        }
        Some(_) if args.format != Format::Env => {
            return Err(CliError::usage("--env names the variable of --format env"));
        }
        _ => {}
    }
    let min_ttl = match &args.min_ttl {
        Some(v) => parse_duration(v).map_err(|e| CliError::usage(format!("--min-ttl: {e}")))?,
        None => Duration::ZERO,
    };
    if let Some(socket) = &args.agent {
        match from_agent(cli, socket.as_deref(), min_ttl) {
            Ok(token) => return print(&token, freshtoken::Clock::now(&freshtoken::SystemClock)),
            Err(not) if not.suspicious => {
                tracing::warn!("not using the agent: {}; fetching directly", not.reason);
            }
            Err(not) => tracing::info!("not using the agent: {}; fetching directly", not.reason),
        }
    }
    let wired = wiring::wire(wiring::settings(cli, &args.credentials)?).await?;
    let token = wired.source()?.token_with(Want::one_shot(min_ttl)).await?;
    print(&token, wired.clock.now())
}

/// The fast path: a running agent's token, without reading secrets or starting a runtime.
/// `--agent http://127.0.0.1:PORT` asks its TCP endpoint, with the credential beside the
/// config's socket; a path (or nothing) asks that socket (or the config's).
fn from_agent(
    cli: &Cli,
    given: Option<&Path>,
    min_ttl: Duration,
) -> Result<Token, crate::agent::client::NotUsed> {
    let configured = || match wiring::load_config(cli) {
        Ok(Some(loaded)) => crate::agent::socket_path(&loaded.file.agent),
        _ => crate::agent::default_socket(),
    };
    let profile = cli.profile.as_deref().unwrap_or("default");
    let tcp = given
        .and_then(Path::to_str)
        .and_then(|g| g.strip_prefix("http://"));
    match (tcp, given) {
        (Some(addr), _) => crate::agent::client::fetch_tcp(addr, &configured(), profile, min_ttl)
            .map_err(Into::into),
        (None, Some(socket)) => crate::agent::client::fetch(socket, profile, min_ttl),
        (None, None) => crate::agent::client::fetch(&configured(), profile, min_ttl),
    }
}

/// The token in the asked-for format, newline-terminated.
pub fn render(token: &Token, format: Format, now: SystemTime) -> String {
    let secret = token.expose_secret();
    let expires_at = token
        .expires_at()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match format {
        Format::Raw => format!("{secret}\n"),
        Format::Header => format!("Authorization: Bearer {secret}\n"),
        Format::Env => render_env(token, env::ACCESS_TOKEN),
        Format::Json => {
            let mut v = json!({
                "access_token": secret,
                "token_type": token.token_type(),
                "expires_in": token.remaining(now).as_secs(),
                "expires_at": expires_at,
            });
            if let Some(scope) = token.scope() {
                v["scope"] = json!(scope);
            }
            format!("{v}\n")
        }
    }
}

/// `NAME='<token>'` and `FRESHTOKEN_EXPIRES_AT=<unix seconds>` lines, for `eval`, `source`
/// and `set -a; . FILE`; the agent's env sinks choose NAME.
///
/// The token is single-quoted for POSIX shells although only `b64token`s get this far: what
/// is meant to be evaluated must not depend on every path having checked the token.
pub fn render_env(token: &Token, name: &str) -> String {
    let expires_at = token
        .expires_at()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{name}={}\nFRESHTOKEN_EXPIRES_AT={expires_at}\n",
        shell_quote(token.expose_secret())
    )
}

/// `value` in single quotes, each `'` in it written `'\''`: a POSIX shell reads it back
/// unchanged and expands nothing in it.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// A token issued at 1,700,000,000 for an hour with scope "a b", and a moment 10 minutes
/// into its life: the fixture of every rendering test.
#[cfg(test)]
pub(crate) fn sample_token() -> (Token, SystemTime) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn env_output_reads_back_unchanged_in_a_shell_and_runs_nothing() -> std::io::Result<()> {
        use freshtoken::ExpirySource;
        use secrecy::SecretString;
        let dir = tempfile::tempdir()?;
        let marker = dir.path().join("ran");
        let m = marker.display();
        // Tokens no server answer gets past the b64token check with; quoting alone holds.
        for value in [
            format!("x$(touch {m})"),
            format!("x`touch {m}`"),
            format!("x';touch {m};'"),
            format!("x'\\''$(touch {m})"),
            format!("x\"$(touch {m})\"\ntouch {m}"),
            "plain.b64/token+==".to_owned(),
        ] {
            let at = SystemTime::UNIX_EPOCH;
            let token = Token::new(
                SecretString::from(value.clone()),
                at,
                at,
                ExpirySource::ExpiresIn,
            );
            let file = dir.path().join("token.env");
            std::fs::write(&file, render_env(&token, "T"))?;
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(". {}; printf %s \"$T\"", file.display()))
                .output()?;
            assert!(out.status.success(), "{value:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), value);
            assert!(!marker.exists(), "{value:?} ran code");
        }
        Ok(())
    }
}

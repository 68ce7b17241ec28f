//! `freshtoken get`: a valid token on stdout, and nothing else.

use std::path::Path;
use std::time::{Duration, SystemTime};

use freshtoken::{Token, Want};
use freshtoken_agent::client;
use freshtoken_agent::output::TokenFormat;

use crate::cli::{Cli, Format, GetArgs};
use crate::exit::{CliError, CliResult};
use crate::settings::{Settings, parse_duration};

pub fn run(cli: &Cli, args: &GetArgs) -> CliResult {
    let min_ttl = match &args.min_ttl {
        Some(v) => parse_duration(v).map_err(|e| CliError::usage(format!("--min-ttl: {e}")))?,
        None => Duration::ZERO,
    };
    if let Some(socket) = &args.agent {
        match from_agent(cli, socket.as_deref(), min_ttl) {
            Ok(token) => return super::print(&render(&token, args.format, SystemTime::now())),
            Err(not) if not.suspicious => {
                tracing::warn!("not using the agent: {}; fetching directly", not.reason);
            }
            Err(not) => tracing::info!("not using the agent: {}; fetching directly", not.reason),
        }
    }
    let (token, now) = super::runtime()?.block_on(async {
        let settings = Settings::resolve(cli, &args.credentials).await?;
        let source = super::source(&settings)?;
        let token = source.token_with(Want::one_shot(min_ttl)).await?;
        CliResult::Ok((token, settings.clock.now()))
    })?;
    super::print(&render(&token, args.format, now))
}

/// The fast path: a running agent's token, without reading secrets or starting a runtime.
/// `--agent http://127.0.0.1:PORT` asks its TCP endpoint, with the credential beside the
/// config's socket; a path (or nothing) asks that socket (or the config's).
fn from_agent(
    cli: &Cli,
    given: Option<&Path>,
    min_ttl: Duration,
) -> Result<Token, client::NotUsed> {
    let configured = || match crate::config::load(crate::config::Choice::new(
        cli.config.as_deref(),
        cli.no_config,
    )) {
        Ok(Some(loaded)) => super::agent::socket_path(&loaded.file.agent),
        _ => client::default_socket(),
    };
    let profile = cli.profile.as_deref().unwrap_or("default");
    let tcp = given
        .and_then(Path::to_str)
        .and_then(|g| g.strip_prefix("http://"));
    match (tcp, given) {
        (Some(addr), _) => {
            client::fetch_tcp(addr, &configured(), profile, min_ttl).map_err(Into::into)
        }
        (None, Some(socket)) => client::fetch(socket, profile, min_ttl),
        (None, None) => client::fetch(&configured(), profile, min_ttl),
    }
}

/// The token in the asked-for format, newline-terminated.
pub fn render(token: &Token, format: Format, now: SystemTime) -> String {
    token_format(format).render(token, now)
}

/// `--format` as the one format vocabulary of `get`, the sinks and the agent's endpoint.
fn token_format(format: Format) -> TokenFormat {
    match format {
        Format::Raw => TokenFormat::Raw,
        Format::Json => TokenFormat::Json,
        Format::Header => TokenFormat::Header,
        Format::Env => TokenFormat::env(),
    }
}

/// A token issued at 1,700,000,000 for an hour with scope "a b", and a moment 10 minutes
/// into its life: the fixture of the rendering tests.
#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken_agent::output::render_env;
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

//! `freshtoken get`: a valid token on stdout, and nothing else.

use std::path::Path;
use std::time::Duration;

use freshtoken::{Token, Want};
use freshtoken_agent::client;

use crate::cli::{Cli, Format, GetArgs};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::units::parse_duration;
use crate::wiring;

/// `get --agent`, answered before any runtime starts: `true` when the agent's token was
/// printed; `false` sends the caller on to [`run`] (no `--agent`, or no agent could answer,
/// which is logged).
pub(crate) fn run_from_agent(cli: &Cli, args: &GetArgs) -> CliResult<bool> {
    let Some(socket) = &args.agent else {
        return Ok(false);
    };
    let ask = Ask::of(args)?;
    match from_agent(cli, socket.as_deref(), ask.min_ttl) {
        Ok(token) => {
            let now = freshtoken::Clock::now(&freshtoken::SystemClock);
            output::print(&ask.format.render(&token, now))?;
            return Ok(true);
        }
        Err(not) if not.suspicious => {
            tracing::warn!("not using the agent: {}; fetching directly", not.reason);
        }
        Err(not) => tracing::info!("not using the agent: {}; fetching directly", not.reason),
    }
    Ok(false)
}

/// `get` from the profile's own cache and token endpoint (after [`run_from_agent`]).
pub(crate) async fn run(cli: &Cli, args: &GetArgs) -> CliResult {
    let ask = Ask::of(args)?;
    let mut settings = wiring::settings(cli, &args.credentials)?;
    crate::feedback::attach(&mut settings.http);
    let wired = wiring::wire(settings).await?;
    let token = wired
        .source()?
        .token_with(Want::one_shot(ask.min_ttl))
        .await?;
    output::print(&ask.format.render(&token, wired.clock.now()))
}

/// What a `get` asks for, checked before anything is read.
struct Ask {
    format: output::TokenFormat,
    min_ttl: Duration,
}

impl Ask {
    fn of(args: &GetArgs) -> CliResult<Self> {
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
        Ok(Ask {
            format: output::token_format(args.format, args.env.as_deref()),
            min_ttl,
        })
    }
}

/// The fast path: a running agent's token, without reading secrets or starting a runtime.
/// `--agent http://127.0.0.1:PORT` asks its TCP endpoint, with the credential beside the
/// config's socket; a path (or nothing) asks that socket (or the config's).
fn from_agent(
    cli: &Cli,
    given: Option<&Path>,
    min_ttl: Duration,
) -> Result<Token, client::NotUsed> {
    let configured = || match wiring::load_config(cli) {
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

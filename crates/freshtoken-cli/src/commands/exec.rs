//! `freshtoken exec`: runs a command with a valid token in its environment, optionally with
//! the proxy running beside it for its whole life; passes its exit code through.

use std::time::Duration;

use freshtoken::internal::fmt_duration;
use freshtoken::{AccessToken, CachedSource, SharedClock, Want};
use freshtoken_proxy::{Config, DEFAULT_REPLAY_LIMIT, Proxy};
use secrecy::ExposeSecret;

use crate::cli::{Cli, ExecArgs};
use crate::env;
use crate::exit::{CliError, CliResult};
use crate::settings::Settings;
use crate::units::{is_env_name, parse_duration};
use crate::wiring;

/// Exit code when CMD is there but cannot be run (not executable, a folder), as shells use it.
const CANNOT_RUN: u8 = 126;

/// Exit code when CMD is not there (no such file, or no such name on PATH), as shells use it.
const NOT_FOUND: u8 = 127;

/// The exit code and the words for a CMD that did not start: 127 when it is not there, 126
/// when it is there but is not something that can be run.
fn why_not_run(e: &std::io::Error) -> (u8, &'static str) {
    match e.kind() {
        std::io::ErrorKind::NotFound => (NOT_FOUND, "not found"),
        // EACCES, EISDIR, ENOEXEC and the like: there, but not a program this system runs.
        _ => (CANNOT_RUN, "not executable"),
    }
}

/// The most exec asks for on its own: a CMD that needs longer says so with `--min-ttl`.
const DEFAULT_MIN_TTL: Duration = Duration::from_secs(300);

pub(crate) async fn run(cli: &Cli, args: &ExecArgs) -> CliResult<u8> {
    let min_ttl = args
        .min_ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| CliError::usage(format!("--min-ttl: {e}")))?;
    let names = token_names(args)?;
    let mut settings = wiring::settings(cli, &args.credentials)?;
    if !args.proxy {
        // The first token only, before CMD owns the terminal; the proxy's later refreshes
        // must not write over CMD's output.
        crate::feedback::attach(&mut settings.http);
    }
    let wired = wiring::wire(settings).await?;
    let settings = &wired.settings;
    // Checked before a token is fetched: an upstream it may not go to stops here.
    let upstream = checked_upstream(args, &wired)?;
    let upstream_identity = super::proxy::upstream_identity(
        args.upstream_client_cert.as_ref(),
        args.upstream_client_key.as_ref(),
    )?;
    let request = wired.token_request()?;
    // CMD logs in to its gateway with a stand-in secret made for this run: the real one
    // stays out of its environment, as it does without --gateway.
    let stand_in = args.gateway.gateway.then(stand_in_secret);
    let gateway = stand_in.as_ref().map(|secret| {
        freshtoken_proxy::Gateway::new(
            request.client_id.to_string(),
            secret,
            &args.gateway.gateway_login_prefix,
            &args.gateway.gateway_api_prefix,
        )
    });
    let client_id = request.client_id.to_string();
    let source = wired.source_of(request, None, None, |fetcher| fetcher)?;
    let token = child_token(&source, min_ttl, args.proxy, &wired.clock).await?;
    let mut command = child_command(args, settings, &names, &token);
    drop(token);

    // The proxy, for a child that outlives its token: the same source, refreshed in the
    // background, until the child is gone (its first request needs no second fetch).
    let proxy_task = match upstream {
        Some(upstream) => {
            let background =
                start_proxy(source, upstream, gateway, upstream_identity, settings).await?;
            proxy_env(&mut command, args, &background);
            if let Some(secret) = &stand_in {
                command.env(env::GENESYS_CLIENT_ID, &client_id);
                command.env(env::GENESYS_CLIENT_SECRET, secret.expose_secret());
            }
            Some(background)
        }
        None => None,
    };

    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let (code, why) = why_not_run(&e);
            eprintln!(
                "freshtoken: error: cannot run {:?}: {why} ({e})",
                args.command[0]
            );
            return Ok(code);
        }
    };
    let code = wait_forwarding_signals(&mut child).await?;
    if let Some(background) = proxy_task {
        background.stop().await;
    }
    Ok(code)
}

/// The variables that get the token: `--env NAME`s, else FRESHTOKEN_ACCESS_TOKEN; each
/// name, and each `--proxy-env` name, checked to be one a shell takes.
/// The upstream of `--proxy` (none without it), after the checks that must stop a run before
/// a token is fetched.
fn checked_upstream(args: &ExecArgs, wired: &wiring::Wired) -> CliResult<Option<url::Url>> {
    if args.gateway.gateway && !args.proxy {
        return Err(CliError::usage(
            "--gateway needs --proxy: the gateway is the proxy",
        ));
    }
    if !args.proxy {
        return Ok(None);
    }
    let upstream = wired.settings.upstream(args.upstream.as_deref())?;
    let login = &wired.request_public().token_url;
    if let Some(warning) = wiring::regions_differ(login, &upstream) {
        tracing::warn!("{warning}");
    }
    Ok(Some(upstream))
}

fn token_names(args: &ExecArgs) -> CliResult<Vec<String>> {
    let names = if args.env.is_empty() {
        vec![env::ACCESS_TOKEN.to_owned()]
    } else {
        args.env.clone()
    };
    match names
        .iter()
        .chain(&args.proxy_env)
        .find(|n| !is_env_name(n))
    {
        Some(bad) => Err(CliError::usage(format!(
            "{bad:?} is not an environment variable name"
        ))),
        None => Ok(names),
    }
}

/// CMD with the token in its environment (under each of `names`, and Genesys Cloud's own
/// names under its provider), without the variables secrets are read from.
fn child_command(
    args: &ExecArgs,
    settings: &Settings,
    names: &[String],
    token: &AccessToken,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    for name in kept_from_child(settings) {
        command.env_remove(name);
    }
    for name in names {
        command.env(name, token.expose_secret());
    }
    // Genesys Cloud's tools (CX as Code, gc, the SDKs' examples) read their own names.
    if let Some(region) = &settings.provider {
        command.env(env::GENESYS_ACCESS_TOKEN, token.expose_secret());
        command.env(env::GENESYS_REGION, region.name);
    }
    command
}

/// A secret only this run's gateway accepts: 32 random bytes, hex.
fn stand_in_secret() -> secrecy::SecretString {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    secrecy::SecretString::from(hex)
}

/// The proxy beside CMD, on a free loopback port.
async fn start_proxy(
    source: CachedSource,
    upstream: url::Url,
    gateway: Option<freshtoken_proxy::Gateway>,
    client_identity: Option<freshtoken::ClientIdentity>,
    settings: &Settings,
) -> CliResult<freshtoken_proxy::Background> {
    let proxy = Proxy::new(
        source,
        Config {
            upstream,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            ca_file: settings.http.ca_file.clone(),
            gateway,
            client_identity,
        },
    )?;
    freshtoken_proxy::Background::start(proxy)
        .await
        .map_err(|e| CliError::internal(format!("cannot start the proxy: {e}")))
}

/// Where CMD finds the proxy: its URL in FRESHTOKEN_PROXY_URL (or the --proxy-env names),
/// and with --gateway its host, port and protocol as the Genesys Cloud Terraform provider
/// reads them.
fn proxy_env(
    command: &mut tokio::process::Command,
    args: &ExecArgs,
    proxy: &freshtoken_proxy::Background,
) {
    let names = match args.proxy_env.is_empty() {
        true => vec![env::PROXY_URL.to_owned()],
        false => args.proxy_env.clone(),
    };
    for name in &names {
        command.env(name, proxy.url());
    }
    if args.gateway.gateway {
        let addr = proxy.addr();
        command.env(env::GENESYS_GATEWAY_HOST, addr.ip().to_string());
        command.env(env::GENESYS_GATEWAY_PORT, addr.port().to_string());
        command.env(env::GENESYS_GATEWAY_PROTOCOL, "http");
    }
}

/// The variables CMD does not inherit: every one a secret may be read from (see
/// [`Settings::secret_variables`]), and `FRESHTOKEN_CACHE` when its Redis URL carries a
/// password. CMD gets a token, not what buys more tokens; a `freshtoken` that CMD runs
/// itself uses the token it was handed (`FRESHTOKEN_ACCESS_TOKEN`) or gets its own
/// credentials.
fn kept_from_child(settings: &Settings) -> Vec<String> {
    let mut names = settings.secret_variables.clone();
    let cache = std::env::var_os(env::CACHE).unwrap_or_default();
    let cache = cache.to_string_lossy();
    if freshtoken::store::redact_url(&cache) != cache {
        names.push(env::CACHE.to_owned());
    }
    names
}

/// The token CMD gets: valid for `--min-ttl` when given; else, without `--proxy`, for
/// min(5 min, half the server's lifetime), so that tokens shorter than 5 minutes work and a
/// cached one is reused while half its life is left; with `--proxy` for no minimum, since
/// the proxy, not this token, keeps CMD's requests authorised.
async fn child_token(
    source: &CachedSource,
    min_ttl: Option<Duration>,
    proxy: bool,
    clock: &SharedClock,
) -> CliResult<AccessToken> {
    if let Some(min_ttl) = min_ttl {
        return Ok(source.token_with(Want::one_shot(min_ttl)).await?);
    }
    let token = source.token_with(Want::one_shot(Duration::ZERO)).await?;
    if proxy {
        return Ok(token);
    }
    let wanted = default_min_ttl(token.lifetime());
    if token.remaining(clock.now()) >= wanted {
        return Ok(token);
    }
    drop(token);
    match source.token_with(Want::one_shot(wanted)).await {
        Ok(token) => Ok(token),
        // Only if the server's lifetime shrank between the two tokens.
        Err(freshtoken::Error::LifetimeTooShort { lifetime, min_ttl }) => {
            Err(CliError::usage(format!(
                "the server's tokens now live {}, less than the {} exec asks for by default (half the lifetime of the token it held); set --min-ttl",
                fmt_duration(lifetime),
                fmt_duration(min_ttl)
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// What exec asks for without `--min-ttl`: min(5 min, half of `lifetime`).
fn default_min_ttl(lifetime: Duration) -> Duration {
    DEFAULT_MIN_TTL.min(lifetime / 2)
}

/// Waits for the child, passing SIGINT and SIGTERM on to it; its exit code, or 128+N when
/// signal N ended it.
async fn wait_forwarding_signals(child: &mut tokio::process::Child) -> CliResult<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen =
        |kind| signal(kind).map_err(|e| CliError::internal(format!("cannot watch signals: {e}")));
    let mut int = listen(SignalKind::interrupt())?;
    let mut term = listen(SignalKind::terminate())?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let forward = |sig: i32| {
        if let Some(pid) = pid {
            // SAFETY: kill(2) with a pid we spawned and still wait for; no memory is involved.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| CliError::internal(format!("cannot wait for the command: {e}")))?;
                return Ok(exit_code(status));
            }
            _ = int.recv() => forward(libc::SIGINT),
            _ = term.recv() => forward(libc::SIGTERM),
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_minimum_is_half_the_lifetime_up_to_five_minutes() {
        let s = Duration::from_secs;
        assert_eq!(default_min_ttl(s(3)), Duration::from_millis(1500));
        assert_eq!(default_min_ttl(s(300)), s(150));
        assert_eq!(default_min_ttl(s(600)), s(300));
        assert_eq!(default_min_ttl(s(86_400)), s(300));
    }
}

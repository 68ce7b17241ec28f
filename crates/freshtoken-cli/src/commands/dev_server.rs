//! `freshtoken dev-server`: a local authorization server and API to try pipelines against.

use std::io::Write;
use std::net::SocketAddr;

use freshtoken_devserver::{CiConfig, Config, Faults, Federation, Running};

use crate::cli::DevServerArgs;
use crate::exit::{CliError, CliResult};
use crate::units::parse_duration;

pub(crate) async fn run(args: &DevServerArgs) -> CliResult {
    let config = config(args)?;
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        CliError::usage(format!(
            "--listen {:?} is not an address like 127.0.0.1:8080",
            args.listen
        ))
    })?;
    if !addr.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "--listen {addr}: the dev-server only listens on loopback (127.0.0.1 or [::1])"
        )));
    }
    {
        let server = Running::start(addr, config.clone())
            .await
            .map_err(|e| CliError::usage(format!("cannot listen on {addr}: {e}")))?;
        let ids: Vec<_> = config.clients.iter().map(|(id, _)| id.as_str()).collect();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "freshtoken dev-server on {}", server.base_url());
        let _ = writeln!(out, "  token endpoint  {}", server.token_url());
        let _ = writeln!(
            out,
            "  issuer          {} (metadata at /.well-known/openid-configuration)",
            server.base_url()
        );
        let _ = writeln!(out, "  protected API   {}/api/...", server.base_url());
        let _ = writeln!(
            out,
            "  stats, faults   {0}/__stats  {0}/__faults",
            server.base_url()
        );
        let _ = writeln!(out, "  clients         {}", ids.join(", "));
        if config.ci.is_some() {
            let _ = writeln!(
                out,
                "  CI issuer       {0}/ci  ACTIONS_ID_TOKEN_REQUEST_URL={0}/ci/id-token? ACTIONS_ID_TOKEN_REQUEST_TOKEN={CI_REQUEST_TOKEN}",
                server.base_url()
            );
        }
        let _ = writeln!(
            out,
            "  token lifetime  {}",
            freshtoken::internal::fmt_duration(config.ttl)
        );
        let _ = out.flush();
        drop(out);
        super::shutdown_signal().await;
        server
            .stop()
            .await
            .map_err(|e| CliError::internal(format!("dev-server failed: {e}")))
    }
}

fn config(args: &DevServerArgs) -> CliResult<Config> {
    let ttl = parse_duration(&args.ttl).map_err(|e| CliError::usage(format!("--ttl: {e}")))?;
    if ttl.as_secs() < 1 {
        return Err(CliError::usage(
            "--ttl must be at least 1s (expires_in is whole seconds)",
        ));
    }
    let mut config = Config {
        ttl,
        ..Config::default()
    };
    if !args.clients.is_empty() {
        config.clients = args
            .clients
            .iter()
            .map(|c| match c.split_once(':') {
                Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
                    Ok((id.to_owned(), secret.to_owned()))
                }
                _ => Err(CliError::usage("--client must be ID:SECRET")),
            })
            .collect::<CliResult<_>>()?;
    }
    for entry in &args.client_keys {
        let Some((id, path)) = entry
            .split_once(':')
            .filter(|(id, p)| !id.is_empty() && !p.is_empty())
        else {
            return Err(CliError::usage(
                "--client-key must be ID:PUBLIC_KEY_PEM_FILE",
            ));
        };
        let pem = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("--client-key {id}: cannot read {path}: {e}")))?;
        config.client_keys.push((id.to_owned(), pem));
    }
    config.refresh_tokens = args.refresh_tokens;
    let mut faults = Faults::default();
    for f in &args.faults {
        faults.apply_flag(f).map_err(CliError::usage)?;
    }
    config.faults = faults;
    config.ci = ci(args)?;
    Ok(config)
}

/// The request token of the dev-server's CI issuer: it guards nothing, as the server does not.
const CI_REQUEST_TOKEN: &str = "dev-request-token";

/// The CI identity issuer `--ci-federation` asks for.
fn ci(args: &DevServerArgs) -> CliResult<Option<CiConfig>> {
    if args.ci_federations.is_empty() {
        return Ok(None);
    }
    let subject = "repo:dev/app:ref:refs/heads/main";
    let federations = args
        .ci_federations
        .iter()
        .map(|f| match f.split_once(':') {
            Some((client, audience)) if !client.is_empty() && !audience.is_empty() => {
                Ok(Federation {
                    client_id: client.to_owned(),
                    subject: subject.to_owned(),
                    audience: audience.to_owned(),
                })
            }
            _ => Err(CliError::usage("--ci-federation must be CLIENT:AUDIENCE")),
        })
        .collect::<CliResult<_>>()?;
    let identity_ttl =
        parse_duration(&args.ci_ttl).map_err(|e| CliError::usage(format!("--ci-ttl: {e}")))?;
    Ok(Some(CiConfig {
        request_token: CI_REQUEST_TOKEN.to_owned(),
        identity_ttl,
        subject: subject.to_owned(),
        federations,
    }))
}

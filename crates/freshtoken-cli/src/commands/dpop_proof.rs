//! `freshtoken dpop-proof`: one DPoP proof (RFC 9449) for a request a shell step makes itself
//! with the profile's DPoP-bound token.

use freshtoken::Want;
use freshtoken::dpop::access_token_hash;
use std::time::Duration;
use url::Url;

use crate::cli::{Cli, DpopProofArgs};
use crate::exit::{CliError, CliResult};
use crate::wiring;

pub(crate) async fn run(cli: &Cli, args: &DpopProofArgs) -> CliResult {
    let method = args.method.trim();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(CliError::usage(format!(
            "--method {method:?} is not an HTTP method"
        )));
    }
    let url = Url::parse(args.url.trim())
        .map_err(|e| CliError::usage(format!("--url {:?} is not a URL: {e}", args.url)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CliError::usage(format!(
            "--url {url} is not an http(s) URL with a host"
        )));
    }
    if let Some(n) = &args.nonce
        && (n.is_empty() || !n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
    {
        return Err(CliError::usage("--nonce is empty or not printable ASCII"));
    }
    let wired = wiring::wire(wiring::settings(cli, &args.credentials)?).await?;
    let Some(key) = wired.request_public().dpop.clone() else {
        return Err(CliError::usage(format!(
            "profile {} has no DPoP key: set dpop = true (or dpop_key) in it",
            wired.profile()
        )));
    };
    let ath = if args.no_ath {
        None
    } else {
        let token = wired
            .source()?
            .token_with(Want::one_shot(Duration::ZERO))
            .await?;
        if !token.is_dpop() {
            tracing::warn!(
                "the profile's token is a {} token, not DPoP-bound: the server did not bind it",
                token.token_type()
            );
        }
        Some(access_token_hash(token.expose_secret()))
    };
    let proof = key.proof(
        &method.to_ascii_uppercase(),
        &url,
        ath.as_deref(),
        args.nonce.as_deref(),
        wired.clock.now(),
    );
    crate::output::print(&format!("{proof}\n"))
}

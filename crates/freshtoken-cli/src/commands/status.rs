//! `freshtoken status`: what the cache holds for a profile. Never the token itself.

use std::time::SystemTime;

use serde_json::json;

use crate::cli::{Cli, StatusArgs};
use crate::exit::CliResult;
use crate::human;
use crate::settings::{CacheChoice, Settings};

pub fn run(cli: &Cli, args: &StatusArgs) -> CliResult {
    let settings = Settings::resolve(cli, &args.credentials)?;
    let store = settings.cache.store();
    let key = settings.cache_key();
    let token = super::runtime()?.block_on(store.load(&key))?;
    let now = SystemTime::now();
    let request = settings.request_public();
    let location = match settings.cache {
        CacheChoice::Memory => "memory (nothing is kept between commands)".to_owned(),
        CacheChoice::File(_) => format!("file {}", store.location(&key)),
    };
    let source = settings
        .config_path
        .as_ref()
        .map(|p| format!(" (from {})", p.display()))
        .unwrap_or_default();

    if args.json {
        let mut v = json!({
            "profile": settings.profile,
            "token_url": request.token_url.as_str(),
            "client_id": request.client_id,
            "auth_method": request.auth_method.as_str(),
            "cache": { "kind": store.kind(), "location": store.location(&key) },
            "cached": token.is_some(),
        });
        if let Some(api) = &settings.api_base {
            v["api_base"] = json!(api.as_str());
        }
        if let Some(t) = &token {
            v["token"] = json!({
                "fingerprint": t.fingerprint().to_string(),
                "valid": t.is_valid_at(now),
                "expires_at": human::timestamp(t.expires_at()),
                "expires_in": t.remaining(now).as_secs(),
                "expiry_from": t.expiry_source(),
                "scope": t.scope(),
                "fetched_at": human::timestamp(t.received_at()),
            });
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }

    let mut lines = vec![
        ("profile", format!("{}{source}", settings.profile)),
        ("token URL", request.token_url.to_string()),
        ("client id", request.client_id.clone()),
        ("auth method", request.auth_method.to_string()),
        ("cache", location),
    ];
    if let Some(api) = &settings.api_base {
        lines.insert(2, ("API base", api.to_string()));
    }
    match &token {
        None => lines.push(("token", "not cached".into())),
        Some(t) => {
            let state = if t.is_valid_at(now) {
                "cached"
            } else {
                "cached, expired"
            };
            lines.push((
                "token",
                format!("{state} (fingerprint {})", t.fingerprint()),
            ));
            lines.push((
                "expires",
                format!(
                    "{} ({}; from {})",
                    human::timestamp(t.expires_at()),
                    human::relative(t.expires_at(), now),
                    expiry_from(t)
                ),
            ));
            lines.push(("scope", t.scope().unwrap_or("(not reported)").to_owned()));
            lines.push((
                "last fetch",
                format!(
                    "{} ({})",
                    human::timestamp(t.received_at()),
                    human::relative(t.received_at(), now)
                ),
            ));
        }
    }
    for (label, value) in lines {
        println!("{:<12} {value}", format!("{label}:"));
    }
    Ok(())
}

fn expiry_from(t: &freshtoken::Token) -> &'static str {
    match t.expiry_source() {
        freshtoken::ExpirySource::ExpiresIn => "expires_in",
        freshtoken::ExpirySource::JwtExp => "the JWT's exp",
        _ => "the default lifetime",
    }
}

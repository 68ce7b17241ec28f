//! `freshtoken status`: what each cache layer holds for a profile. Never the token itself.

use std::time::SystemTime;

use freshtoken::Token;
use serde_json::{Value, json};

use crate::cli::{Cli, StatusArgs};
use crate::exit::CliResult;
use crate::human;
use crate::settings::{CacheChoice, Settings};

/// What one layer holds.
struct Layer {
    kind: &'static str,
    location: String,
    token: Result<Option<Token>, String>,
    ttl: Option<std::time::Duration>,
}

pub fn run(cli: &Cli, args: &StatusArgs) -> CliResult {
    let runtime = super::runtime()?;
    let settings = runtime.block_on(Settings::resolve(cli, &args.credentials))?;
    let key = settings.cache_key();
    let request = settings.token_request().ok();
    let redis_without_credentials =
        matches!(settings.cache, CacheChoice::Redis { .. }) && request.is_none();
    let layers = settings.layers(request.as_ref())?;
    let layers: Vec<Layer> = runtime.block_on(async {
        let mut out = Vec::new();
        for store in &layers {
            let token = store.load(&key).await.map_err(|e| e.to_string());
            let ttl = store.ttl(&key).await.ok().flatten();
            out.push(Layer {
                kind: store.kind(),
                location: store.location(&key),
                token,
                ttl,
            });
        }
        out
    });
    let now = settings.clock.now();
    let answered = layers
        .iter()
        .find(|l| matches!(&l.token, Ok(Some(t)) if t.is_valid_at(now)));
    let public = settings.request_public();

    if args.json {
        let mut v = json!({
            "profile": settings.profile,
            "token_url": public.token_url.as_str(),
            "client_id": public.client_id,
            "auth_method": public.auth_method.as_str(),
            "layers": layers.iter().map(|l| layer_json(l, now)).collect::<Vec<_>>(),
            "cached": answered.is_some(),
            "answered_by": answered.map(|l| l.kind),
        });
        if let Some(api) = &settings.api_base {
            v["api_base"] = json!(api.as_str());
        }
        if let Some(Ok(Some(t))) = answered.map(|l| &l.token) {
            v["token"] = token_json(t, now);
        }
        return super::print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("a JSON value with string keys serializes")
        ));
    }

    let source = settings
        .config_path
        .as_ref()
        .map(|p| format!(" (from {})", p.display()))
        .unwrap_or_default();
    let mut lines = vec![
        (
            "profile".to_owned(),
            format!("{}{source}", settings.profile),
        ),
        ("token URL".to_owned(), public.token_url.to_string()),
    ];
    if let Some(api) = &settings.api_base {
        lines.push(("API base".to_owned(), api.to_string()));
    }
    lines.push(("client id".to_owned(), public.client_id.to_string()));
    lines.push(("auth method".to_owned(), public.auth_method.to_string()));
    for l in &layers {
        let where_ = if l.kind == "memory" {
            "memory (nothing is kept between commands)".to_owned()
        } else {
            format!("{} {}", l.kind, l.location)
        };
        let state = match &l.token {
            Err(e) => format!("not answering: {e}"),
            Ok(None) => "no token".to_owned(),
            Ok(Some(t)) if !t.is_valid_at(now) => {
                format!("expired token (fingerprint {})", t.fingerprint())
            }
            Ok(Some(t)) => format!(
                "token {} expires {}",
                t.fingerprint(),
                human::relative(t.expires_at(), now)
            ),
        };
        let ttl = l
            .ttl
            .map(|d| format!(", key TTL {}", human::duration(d)))
            .unwrap_or_default();
        lines.push(("cache".to_owned(), format!("{where_}: {state}{ttl}")));
    }
    if redis_without_credentials {
        lines.push(("cache".to_owned(), "redis: not read (its values are sealed with the client's secret, which is not available)".into()));
    }
    match answered.map(|l| (&l.token, l.kind)) {
        Some((Ok(Some(t)), kind)) => {
            lines.push((
                "token".to_owned(),
                format!("cached in {kind} (fingerprint {})", t.fingerprint()),
            ));
            lines.push((
                "expires".to_owned(),
                format!(
                    "{} ({}; from {})",
                    human::timestamp(t.expires_at()),
                    human::relative(t.expires_at(), now),
                    expiry_from(t)
                ),
            ));
            lines.push((
                "scope".to_owned(),
                t.scope().unwrap_or("(not reported)").to_owned(),
            ));
            lines.push((
                "last fetch".to_owned(),
                format!(
                    "{} ({})",
                    human::timestamp(t.received_at()),
                    human::relative(t.received_at(), now)
                ),
            ));
        }
        _ => lines.push(("token".to_owned(), "not cached".to_owned())),
    }
    let text: String = lines
        .iter()
        .map(|(label, value)| format!("{:<12} {value}\n", format!("{label}:")))
        .collect();
    super::print(&text)
}

fn token_json(t: &Token, now: SystemTime) -> Value {
    json!({
        "fingerprint": t.fingerprint().to_string(),
        "valid": t.is_valid_at(now),
        "expires_at": human::timestamp(t.expires_at()),
        "expires_in": t.remaining(now).as_secs(),
        "expiry_from": t.expiry_source(),
        "scope": t.scope(),
        "fetched_at": human::timestamp(t.received_at()),
    })
}

fn layer_json(l: &Layer, now: SystemTime) -> Value {
    let mut v = json!({ "kind": l.kind, "location": l.location });
    match &l.token {
        Err(e) => v["error"] = json!(e),
        Ok(Some(t)) => v["token"] = token_json(t, now),
        Ok(None) => v["token"] = Value::Null,
    }
    if let Some(ttl) = l.ttl {
        v["ttl_ms"] = json!(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    }
    v
}

fn expiry_from(t: &Token) -> &'static str {
    match t.expiry_source() {
        freshtoken::ExpirySource::ExpiresIn => "expires_in",
        freshtoken::ExpirySource::JwtExp => "the JWT's exp",
        _ => "the default lifetime",
    }
}

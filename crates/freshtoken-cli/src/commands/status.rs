//! `freshtoken status`: what each cache layer holds for a profile. Never the token itself.

use std::time::SystemTime;

use freshtoken::Token;
use serde_json::{Value, json};

use crate::cli::{Cli, StatusArgs};
use crate::exit::CliResult;
use crate::human;
use crate::output;
use crate::settings::CacheChoice;
use crate::wiring;

/// What one layer holds.
struct Layer {
    kind: &'static str,
    location: String,
    token: Result<Option<Token>, String>,
    ttl: Option<std::time::Duration>,
}

pub(crate) async fn run(cli: &Cli, args: &StatusArgs) -> CliResult {
    let wired = wiring::wire(wiring::settings(cli, &args.credentials)?).await?;
    let key = wired.cache_key();
    let request = wired.token_request().ok();
    let mut layers = Vec::new();
    for store in wired.layers(request.as_ref())? {
        let token = store.load(&key).await.map_err(|e| e.to_string());
        let ttl = store.ttl(&key).await.ok().flatten();
        layers.push(Layer {
            kind: store.kind(),
            location: store.location(&key),
            token,
            ttl,
        });
    }
    let login = login_state(&wired).await;
    let report = Report {
        login,
        now: wired.clock.now(),
        redis_unread: matches!(wired.settings.cache.choice, CacheChoice::Redis { .. })
            && request.is_none(),
        wired: &wired,
        layers,
    };
    if args.json {
        output::print_json(&report.json())
    } else {
        output::print(&report.text())
    }
}

/// What `status` found for one profile.
struct Report<'a> {
    wired: &'a wiring::Wired,
    /// A login profile's stored login: where, and whether and until when it lasts.
    login: Option<LoginState>,
    layers: Vec<Layer>,
    /// A Redis layer was left out: its values are sealed with a secret not at hand.
    redis_unread: bool,
    now: SystemTime,
}

impl Report<'_> {
    /// The nearest layer holding a valid token.
    fn answered(&self) -> Option<(&Layer, &Token)> {
        self.layers.iter().find_map(|l| match &l.token {
            Ok(Some(t)) if t.is_valid_at(self.now) => Some((l, t)),
            _ => None,
        })
    }

    fn json(&self) -> Value {
        let (settings, public) = (&self.wired.settings, self.wired.request_public());
        let answered = self.answered();
        let mut v = json!({
            "profile": settings.profile,
            "token_url": public.token_url.as_str(),
            "client_id": public.client_id,
            "auth_method": public.auth_method.as_str(),
            "layers": self.layers.iter().map(|l| layer_json(l, self.now)).collect::<Vec<_>>(),
            "cached": answered.is_some(),
            "answered_by": answered.map(|(l, _)| l.kind),
        });
        if let Some(api) = settings.api_base() {
            v["api_base"] = json!(api.as_str());
        }
        let identity = wiring::identity::peek(&settings.identity);
        if !identity.is_empty() {
            v["identity"] = identity
                .into_iter()
                .map(|(role, source, claims)| json!({"role": role, "source": source, "claims": claims}))
                .collect();
        }
        if let Some((_, t)) = answered {
            v["token"] = token_json(t, self.now);
        }
        if let Some(l) = &self.login {
            v["login"] = json!({
                "path": l.path,
                "stored": l.stored.as_ref().map(|s| s.is_some()).unwrap_or(false),
                "error": l.stored.as_ref().err(),
                "refresh_expires_at": l.ends().map(human::timestamp),
                "refresh_expires_in": l.ends().map(|e| e.duration_since(self.now).map(|d| d.as_secs()).unwrap_or(0)),
            });
        }
        v
    }

    fn text(&self) -> String {
        let (settings, public) = (&self.wired.settings, self.wired.request_public());
        let source = settings
            .config_path
            .as_ref()
            .map(|p| format!(" (from {})", p.display()))
            .unwrap_or_default();
        let mut lines = vec![
            ("profile", format!("{}{source}", settings.profile)),
            ("token URL", public.token_url.to_string()),
        ];
        if let Some(api) = settings.api_base() {
            lines.push(("API base", api.to_string()));
        }
        lines.push(("client id", public.client_id.to_string()));
        lines.push(("auth method", public.auth_method.to_string()));
        for (role, source, claims) in wiring::identity::peek(&settings.identity) {
            let claims =
                claims.unwrap_or_else(|| "claims logged at -v when a token is fetched".into());
            lines.push(("identity", format!("{role} from {source}: {claims}")));
        }
        for l in &self.layers {
            lines.push(("cache", layer_text(l, self.now)));
        }
        if self.redis_unread {
            lines.push(("cache", "redis: not read (its values are sealed with the client's secret, which is not available)".into()));
        }
        if let Some(l) = &self.login {
            lines.push(("login", l.text(self.now)));
        }
        match self.answered() {
            Some((l, t)) => lines.extend(token_text(l.kind, t, self.now)),
            None => lines.push(("token", "not cached".to_owned())),
        }
        lines
            .iter()
            .map(|(label, value)| format!("{:<12} {value}\n", format!("{label}:")))
            .collect()
    }
}

/// One layer's line: where it is and what it holds.
fn layer_text(l: &Layer, now: SystemTime) -> String {
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
    format!("{where_}: {state}{ttl}")
}

/// The lines about the token that answers, from the layer `kind`.
fn token_text(kind: &str, t: &Token, now: SystemTime) -> [(&'static str, String); 4] {
    [
        (
            "token",
            format!("cached in {kind} (fingerprint {})", t.fingerprint()),
        ),
        (
            "expires",
            format!(
                "{} ({}; from {})",
                human::timestamp(t.expires_at()),
                human::relative(t.expires_at(), now),
                expiry_from(t)
            ),
        ),
        ("scope", t.scope().unwrap_or("(not reported)").to_owned()),
        (
            "last fetch",
            format!(
                "{} ({})",
                human::timestamp(t.received_at()),
                human::relative(t.received_at(), now)
            ),
        ),
    ]
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

/// A login profile's stored login, as `status` shows it (never the refresh token).
struct LoginState {
    path: String,
    stored: Result<Option<freshtoken::login::StoredLogin>, String>,
}

impl LoginState {
    fn ends(&self) -> Option<SystemTime> {
        self.stored
            .as_ref()
            .ok()
            .and_then(|s| s.as_ref())
            .and_then(|s| s.refresh_expires_at)
    }

    fn text(&self, now: SystemTime) -> String {
        match &self.stored {
            Err(e) => format!("{}: {e}", self.path),
            Ok(None) => format!("none stored ({}): run `freshtoken login`", self.path),
            Ok(Some(_)) => match self.ends() {
                Some(ends) => format!(
                    "{}: refresh token ends {} ({})",
                    self.path,
                    human::timestamp(ends),
                    human::relative(ends, now)
                ),
                None => format!("{}: refresh token stored (no known end)", self.path),
            },
        }
    }
}

async fn login_state(wired: &wiring::Wired) -> Option<LoginState> {
    let logins = match wired.login_store()? {
        Ok(l) => l,
        Err(e) => {
            return Some(LoginState {
                path: String::new(),
                stored: Err(e.message),
            });
        }
    };
    // The login's key is the request's own cache key (see freshtoken::login::login_key).
    let key = wired.request_public().cache_key();
    Some(LoginState {
        path: logins.path(&key).display().to_string(),
        stored: logins.load(&key).await.map_err(|e| e.to_string()),
    })
}

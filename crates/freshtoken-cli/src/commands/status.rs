//! `freshtoken status`: what each cache layer holds for a profile. Never the token itself.

use std::time::SystemTime;

use freshtoken::Token;
use serde_json::{Value, json};

use crate::cli::{Cli, StatusArgs};
use crate::exit::CliResult;
use crate::human;
use crate::output;
use crate::settings::{CacheChoice, Settings};
use crate::wiring;

/// What one layer holds.
struct Layer {
    kind: &'static str,
    location: String,
    token: Result<Option<Token>, String>,
    ttl: Option<std::time::Duration>,
}

pub(crate) async fn run(cli: &Cli, args: &StatusArgs) -> CliResult {
    let json = output::wants_json(args.format, args.json);
    if let Some(socket) = &args.agent {
        return super::status_agent::run(cli, socket.as_deref(), json);
    }
    if let Some(loaded) = every_profile(cli)? {
        return run_all(cli, args, &loaded, json).await;
    }
    let report = gather(wiring::wire(wiring::settings(cli, &args.credentials)?).await?).await?;
    if json {
        output::print_json(&report.json())
    } else {
        output::print(&report.text())
    }
}

/// The config file when `status` is to show every profile of it: no profile was chosen
/// (`--profile`, `FRESHTOKEN_PROFILE`) and the file names one other than `default` (a file
/// whose one profile is `default` is shown as that profile, as before).
fn every_profile(cli: &Cli) -> CliResult<Option<crate::config::Loaded>> {
    if cli.profile.is_some() {
        return Ok(None);
    }
    Ok(wiring::load_config(cli)?.filter(|l| l.file.profiles.keys().any(|name| name != "default")))
}

/// `status` of every profile of `loaded`, and first of the environment's when flags or
/// `FRESHTOKEN_*` variables name an endpoint or a client (layered on `default` as `get`
/// would use them). A profile that cannot be read is shown with why, not as a failure of
/// the command: `status` needs no client id and no secret to run.
async fn run_all(
    cli: &Cli,
    args: &StatusArgs,
    loaded: &crate::config::Loaded,
    json: bool,
) -> CliResult {
    let env = crate::settings::Environment::of_process();
    let c = &args.credentials;
    let from_flags = c.token_url.is_some()
        || c.issuer.is_some()
        || c.provider.is_some()
        || c.client_id.is_some();
    let mut entries: Vec<(String, CliResult<Settings>)> = Vec::new();
    if from_flags {
        entries.push(("default".to_owned(), wiring::settings(cli, c)));
    }
    for name in loaded.file.profiles.keys() {
        if from_flags && name == "default" {
            continue;
        }
        // As `freshtoken --profile NAME get` would read it (its cache too), without flags.
        let settings = crate::settings::resolve(&crate::settings::Inputs {
            args: &crate::cli::CredentialArgs::default(),
            profile: Some(name),
            config: Some(loaded),
            no_config: false,
            env: &env,
        });
        entries.push((name.clone(), settings));
    }
    let mut reports = Vec::new();
    for (name, settings) in entries {
        let report = match settings {
            Ok(settings) => match wiring::wire(settings).await {
                Ok(wired) => gather(wired).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        reports.push((name, report));
    }
    if json {
        let profiles: Vec<Value> = reports
            .iter()
            .map(|(name, r)| match r {
                Ok(r) => r.json(),
                Err(e) => json!({"profile": name, "config_file": loaded.path.display().to_string(), "error": e.message}),
            })
            .collect();
        return output::print_json(&json!({ "profiles": profiles }));
    }
    let text: Vec<String> = reports
        .iter()
        .map(|(name, r)| match r {
            Ok(r) => r.text(),
            Err(e) => format!(
                "{:<12} {name} (from {})\n{:<12} {}\n",
                "profile:",
                loaded.path.display(),
                "error:",
                e.message
            ),
        })
        .collect();
    output::print(&text.join("\n"))
}

/// What each cache layer of `wired` holds, and the failure note its store keeps.
async fn gather(wired: wiring::Wired) -> CliResult<Report> {
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
    let store = wired.store(request.as_ref())?;
    let note = store.note(&key).await.ok().flatten();
    let budget = store.budget_use(&key).await.ok().flatten();
    let login = login_state(&wired).await;
    Ok(Report {
        login,
        now: wired.clock.now(),
        redis_unread: matches!(wired.settings.cache.choice, CacheChoice::Redis { .. })
            && request.is_none(),
        wired,
        layers,
        note,
        budget,
    })
}

/// What `status` found for one profile.
struct Report {
    wired: wiring::Wired,
    layers: Vec<Layer>,
    /// The last failed refresh and the backoff it set, as the store keeps them for everyone
    /// who shares it.
    note: Option<freshtoken::FailureNote>,
    /// The fleet's request budget (`token_rate`) in the current window, as Redis counts it.
    budget: Option<freshtoken::BudgetUse>,
    /// A Redis layer was left out: its values are sealed with a secret not at hand.
    redis_unread: bool,
    /// A login profile's stored login: where, and whether and until when it lasts.
    login: Option<LoginState>,
    now: SystemTime,
}

impl Report {
    /// The nearest layer holding a valid token.
    fn answered(&self) -> Option<(&Layer, &Token)> {
        self.layers.iter().find_map(|l| match &l.token {
            Ok(Some(t)) if t.is_valid_at(self.now) => Some((l, t)),
            _ => None,
        })
    }

    /// The one JSON shape of a profile's status (see docs/json.md).
    fn json(&self) -> Value {
        let (settings, public) = (&self.wired.settings, self.wired.request_public());
        let policy = &settings.policy;
        let answered = self.answered();
        let nearest = self
            .layers
            .iter()
            .find_map(|l| l.token.as_ref().ok().cloned().flatten());
        let mut v = json!({
            "profile": settings.profile,
            "config_file": settings.config_path.as_ref().map(|p| p.display().to_string()),
            "token_url": public.token_url.as_str(),
            "api_base": settings.api_base().map(|a| a.as_str().to_owned()),
            "client_id": public.client_id,
            "auth_method": public.auth_method.as_str(),
            "layers": self.layers.iter().map(|l| layer_json(l, policy, self.now)).collect::<Vec<_>>(),
            "redis_unread": self.redis_unread,
            "cached": answered.is_some(),
            "answered_by": answered.map(|(l, _)| l.kind),
            "state": output::state_word(answered.map(|(_, t)| t).or(nearest.as_ref()), policy, self.now),
            "token": answered.map(|(_, t)| output::token_state(t, policy, self.now)),
            "last_error": self.note.as_ref().map(|n| note_json(n, self.now)),
            "budget": self.budget.as_ref().map(budget_json),
        });
        let identity = wiring::identity::peek(&settings.identity);
        if !identity.is_empty() {
            v["identity"] = identity
                .into_iter()
                .map(|(role, source, claims)| json!({"role": role, "source": source, "claims": claims}))
                .collect();
        }
        if let Some(l) = &self.login {
            v["login"] = l.json(self.now);
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
        if let Some(l) = &self.login {
            lines.push(("login", l.text(self.now)));
        }
        for l in &self.layers {
            lines.push(("cache", layer_text(l, self.now)));
        }
        if self.redis_unread {
            lines.push(("cache", "redis: not read (its values are sealed with the client's secret, which is not available)".into()));
        }
        match self.answered() {
            Some((l, t)) => {
                let state = output::state_word(Some(t), &settings.policy, self.now);
                lines.push(("state", state.to_owned()));
                lines.extend(token_text(l.kind, t, self.now));
            }
            None => lines.push(("token", "not cached".to_owned())),
        }
        if let Some(n) = &self.note {
            let wait = if n.holds_at(self.now) {
                format!(", next try {}", human::relative(n.not_before, self.now))
            } else {
                String::new()
            };
            lines.push((
                "last error",
                format!("{} ({} in a row{wait})", n.error, n.failures),
            ));
        }
        if let Some(b) = &self.budget {
            lines.push(("budget", budget_text(b)));
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

/// The store's failure note: the error, how many failures in a row, and until when a
/// caller holding a usable token waits before trying again.
fn note_json(n: &freshtoken::FailureNote, now: SystemTime) -> Value {
    let mut v = json!({
        "error": n.error,
        "failures": n.failures,
        "backoff_left": n.not_before.duration_since(now).map(|d| d.as_secs()).unwrap_or(0),
    });
    output::set_time(&mut v, "backoff_until", n.not_before);
    v
}

/// The budget window's use: requests let go and refused, of how many per period.
fn budget_json(b: &freshtoken::BudgetUse) -> Value {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "spent": b.spent,
        "limit": b.limit,
        "refused": b.refused,
        "period_ms": ms(b.period),
        "window_left_ms": ms(b.window_left),
    })
}

fn budget_text(b: &freshtoken::BudgetUse) -> String {
    format!(
        "{} of {} token requests per {} used in this window ({} refused), next window in {}",
        b.spent,
        b.limit,
        human::duration(b.period),
        b.refused,
        human::duration(b.window_left)
    )
}

fn layer_json(l: &Layer, policy: &freshtoken::RefreshPolicy, now: SystemTime) -> Value {
    let (token, error) = match &l.token {
        Err(e) => (Value::Null, json!(e)),
        Ok(Some(t)) => (output::token_state(t, policy, now), Value::Null),
        Ok(None) => (Value::Null, Value::Null),
    };
    json!({
        "kind": l.kind,
        "location": l.location,
        "token": token,
        "error": error,
        "ttl_ms": l.ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
    })
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

    /// Its JSON (see docs/json.md), never the refresh token.
    fn json(&self, now: SystemTime) -> Value {
        let mut v = json!({
            "path": self.path,
            "stored": self.stored.as_ref().map(|s| s.is_some()).unwrap_or(false),
            "error": self.stored.as_ref().err(),
            "refresh_expires_at": Value::Null,
            "refresh_expires_at_unix": Value::Null,
            "refresh_expires_in": self.ends().map(|e| e.duration_since(now).map(|d| d.as_secs()).unwrap_or(0)),
        });
        if let Some(ends) = self.ends() {
            output::set_time(&mut v, "refresh_expires_at", ends);
        }
        v
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

//! `freshtoken agent`: the glue between the config file and the agent crate. Reads the file,
//! turns each profile, sink, proxy and the `[agent]` section into the agent's typed plan
//! ([`freshtoken_agent::Plan`]), runs the agent, and turns signals into reloads (SIGHUP) and
//! shutdown (SIGTERM, SIGINT).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use freshtoken::internal::{fmt_duration, lock, refuse_plain_http};
use freshtoken::provider::GenesysRegion;
use freshtoken::{MemoryStore, Want};
use freshtoken_agent::output::{Template, TokenFormat, check_env_name};
use freshtoken_agent::{
    Agent, AgentError, BuildSource, Endpoint, Fingerprint, Load, OnExpiry, Plan, ProfilePlan,
    ProxySpec, Sink, client,
};
use freshtoken_proxy::{AllowedHosts, DEFAULT_REPLAY_LIMIT};
use url::Url;

use crate::cli::{AgentArgs, Cli, DataFormat};
use crate::config::{self, AgentConfig, ConfigFile, ProfileConfig, ProxyConfig, SinkConfig};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::secret::ConfigSecrets;
use crate::settings::{self, Environment};
use crate::units::{Listen, parse_loopback, parse_size};
use crate::wiring;

/// The socket path of `[agent]`, or the default: where the agent listens and `get --agent`
/// asks.
pub(crate) fn socket_path(config: &AgentConfig) -> PathBuf {
    config.socket.clone().unwrap_or_else(client::default_socket)
}

/// `freshtoken agent`, on the runtime `main` started.
pub(crate) async fn run(cli: &Cli, args: &AgentArgs) -> CliResult {
    let config_path = match wiring::load_config(cli)? {
        Some(loaded) => loaded.path,
        None => {
            return Err(CliError::usage(
                "the agent needs a config file: --config PATH (or $XDG_CONFIG_HOME/freshtoken/config.toml)",
            ));
        }
    };
    // Absolute, so that a reload finds the same file whatever the working directory.
    let config_path = std::path::absolute(&config_path).unwrap_or(config_path);
    let loader = Arc::new(FileLoader {
        path: config_path.clone(),
    });
    {
        let env = Environment::of_process();
        let agent = Agent::new(loader, wiring::clock(&settings::clock(&env)?));
        if args.check {
            return check(&agent, args, &config_path).await;
        }
        let running = agent.start().await.map_err(cli_error)?;
        let handle = running.handle();
        tracing::info!(
            "freshtoken agent: {} profiles, {} proxies, config {}",
            handle.profiles().len(),
            handle.proxies().len(),
            config_path.display()
        );
        signals(running, handle).await;
        Ok(())
    }
}

/// Serves until SIGINT or SIGTERM, reloading on SIGHUP.
async fn signals(running: freshtoken_agent::Running, handle: freshtoken_agent::Handle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch signals; stopping");
        running.serve(async {}).await;
        return;
    };
    let reloads = async {
        loop {
            hup.recv().await;
            // Logged, and counted on /metrics, by the agent.
            let _ = handle.reload().await;
        }
    };
    let stop = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    tokio::select! {
        () = running.serve(stop) => {}
        () = reloads => {}
    }
}

/// The agent's error as the CLI reports it, with today's exit codes: 2 for a config the
/// agent cannot run, the library's kind for its errors, 5 for local failures.
fn cli_error(e: AgentError) -> CliError {
    match e {
        AgentError::Config(message) => CliError::usage(message),
        AgentError::Library(e) => CliError::from(e),
        AgentError::Load(e) => match e.downcast::<CliError>() {
            Ok(e) => *e,
            Err(e) => CliError::internal(e.to_string()),
        },
        other => CliError::internal(other.to_string()),
    }
}

/// The plan of the config file at `path`, read again at every load.
struct FileLoader {
    path: PathBuf,
}

#[async_trait::async_trait]
impl Load for FileLoader {
    async fn load(&self) -> Result<Plan, AgentError> {
        plan(&self.path).map_err(|e| AgentError::Load(Box::new(e)))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// The config file at `path` as the agent's plan. Sources are built only when the agent asks
/// (a profile new or changed): building one may do discovery.
fn plan(path: &Path) -> CliResult<Plan> {
    let file: ConfigFile = config::load(config::Choice::Named(path))?
        .map(|l| l.file)
        .unwrap_or_default();
    if file.profiles.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no [profiles.NAME] to keep",
            path.display()
        )));
    }
    let mut profiles = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (name, profile) in &file.profiles {
        let sinks = profile
            .sinks
            .iter()
            .map(|s| sink(s, name))
            .collect::<CliResult<Vec<_>>>()?;
        // Secrets are read again on every reload: a file rotated in place is a change.
        let read = ConfigSecrets::read(profile);
        let fingerprint = Fingerprint::new((profile.credentials(), read.digest()));
        secrets.insert(name.clone(), read.client_secret());
        let source = build(name.clone(), profile.clone(), path.to_owned(), read);
        profiles.insert(
            name.clone(),
            ProfilePlan {
                fingerprint,
                sinks,
                source,
            },
        );
    }
    let proxies = file
        .proxy
        .iter()
        .map(|c| match file.profiles.get(&c.profile) {
            Some(profile) => proxy(c, profile, secrets.get(&c.profile).cloned().flatten()),
            None => Err(CliError::usage(format!(
                "[[proxy]] on {}: no profile {:?} in the config",
                c.listen, c.profile
            ))),
        })
        .collect::<CliResult<Vec<_>>>()?;
    Ok(Plan {
        endpoint: endpoint(&file.agent)?,
        profiles,
        proxies,
    })
}

/// `[agent]`: the socket, and the TCP address checked to be loopback.
fn endpoint(config: &AgentConfig) -> CliResult<Endpoint> {
    let listen = match config.listen.as_deref().map(parse_loopback) {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(Listen::NotAnAddress)) => {
            return Err(CliError::usage(format!(
                "[agent] listen = {:?} is not an address like 127.0.0.1:8765",
                config.listen.as_deref().unwrap_or_default()
            )));
        }
        Some(Err(Listen::NotLoopback(addr))) => {
            return Err(CliError::usage(format!(
                "[agent] listen = {addr}: the token endpoint serves loopback only (127.0.0.1 or [::1])"
            )));
        }
    };
    Ok(Endpoint {
        socket: socket_path(config),
        listen,
    })
}

/// Builds the source of profile `name` when the agent asks: resolves its settings (discovery
/// included) with the secrets read at load, on one shared HTTP client per set of options.
fn build(name: String, profile: ProfileConfig, path: PathBuf, read: ConfigSecrets) -> BuildSource {
    Box::new(move |wrap| {
        Box::pin(async move {
            let named = |e: CliError| CliError {
                message: format!("profile {name:?}: {}", e.message),
                ..e
            };
            let load = |e: CliError| AgentError::Load(Box::new(named(e)));
            let env = Environment::of_process();
            let settings = settings::resolve_profile(&name, &profile, &path, &env)
                .map_err(load)?
                .with_secrets(read);
            let wired = wiring::wire(settings).await.map_err(load)?;
            let client = shared_client(&wired.settings.http).map_err(load)?;
            wired
                .source_from(Some(Arc::new(MemoryStore::new())), Some(client), wrap)
                .map_err(load)
        })
    })
}

/// One HTTP client per distinct set of timeouts and CA file: each client holds its own copy of the TLS
/// roots, and ten profiles need not hold ten.
fn shared_client(options: &freshtoken::HttpOptions) -> CliResult<reqwest::Client> {
    type Key = (Duration, Duration, Option<PathBuf>);
    static CLIENTS: Mutex<Vec<(Key, reqwest::Client)>> = Mutex::new(Vec::new());
    let key = (
        options.timeout,
        options.connect_timeout,
        options.ca_file.clone(),
    );
    let mut clients = lock(&CLIENTS);
    if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
        return Ok(c.clone());
    }
    let client = freshtoken::http_client(options)?;
    clients.push((key, client.clone()));
    Ok(client)
}

/// Checks a `[[profiles.NAME.sinks]]` entry; errors name the profile and the path.
fn sink(c: &SinkConfig, profile: &str) -> CliResult<Sink> {
    let what = |e: String| {
        CliError::usage(format!(
            "sink {} of profile {profile:?}: {e}",
            c.path.display()
        ))
    };
    if !c.path.is_absolute() || c.path.file_name().is_none() {
        return Err(what("the path must be absolute and name a file".into()));
    }
    let template = match (c.format, &c.template) {
        (config::SinkFormat::Template, Some(t)) => Some(Template::parse(t).map_err(what)?),
        (config::SinkFormat::Template, None) => {
            return Err(what("format = \"template\" needs template = \"…\"".into()));
        }
        (_, Some(_)) => return Err(what("template is only for format = \"template\"".into())),
        (_, None) => None,
    };
    let env_name = match (&c.env_name, c.format) {
        (Some(n), config::SinkFormat::Env) => {
            check_env_name(n).map_err(what)?;
            Some(n.clone())
        }
        (Some(_), _) => return Err(what("env_name is only for format = \"env\"".into())),
        (None, _) => None,
    };
    let format = match (c.format, template, env_name) {
        (_, Some(t), _) => TokenFormat::Template(t),
        (_, None, Some(name)) => TokenFormat::Env { name },
        (config::SinkFormat::Env, None, None) => TokenFormat::env(),
        (config::SinkFormat::Json, None, None) => TokenFormat::Json,
        _ => TokenFormat::Raw,
    };
    let mode = match &c.mode {
        None => 0o600,
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| what(format!("mode {m:?} is not octal like \"0640\"")))?,
    };
    if mode & 0o007 != 0 {
        tracing::warn!(
            "sink {} of profile {profile:?}: mode {mode:o} lets every user read the token",
            c.path.display()
        );
    }
    let on_expiry = match c.on_expiry {
        config::OnExpiry::Remove => OnExpiry::Remove,
        config::OnExpiry::Empty => OnExpiry::Empty,
    };
    Sink::new(c.path.clone(), format, mode, on_expiry).map_err(what)
}

/// Checks a `[[proxy]]` entry of `profile`: a loopback address, an http(s) upstream (the
/// provider's API base by default), sizes parsed.
fn proxy(
    c: &ProxyConfig,
    profile: &ProfileConfig,
    secret: Option<Result<secrecy::SecretString, String>>,
) -> CliResult<ProxySpec> {
    let what = |e: String| {
        CliError::usage(format!(
            "[[proxy]] on {} for profile {:?}: {e}",
            c.listen, c.profile
        ))
    };
    let listen = parse_loopback(&c.listen).map_err(|e| match e {
        Listen::NotAnAddress => what("listen is not an address like 127.0.0.1:8080".into()),
        Listen::NotLoopback(_) => what("the agent's proxies listen on loopback only".into()),
    })?;
    let upstream = match (&c.upstream, &profile.provider, &profile.region) {
        (Some(u), _, _) => {
            Url::parse(u).map_err(|e| what(format!("upstream {u:?} is not a URL: {e}")))?
        }
        (None, Some(p), Some(region))
            if p.eq_ignore_ascii_case("genesys") || p.eq_ignore_ascii_case("genesyscloud") =>
        {
            GenesysRegion::find(region)
                .map_err(|e| what(e.to_string()))?
                .api_base()
        }
        _ => return Err(what("no upstream (set upstream = \"https://…\")".into())),
    };
    if !matches!(upstream.scheme(), "http" | "https") || upstream.host_str().is_none() {
        return Err(what(format!(
            "upstream {upstream} is not an http(s) URL with a host"
        )));
    }
    refuse_plain_http("upstream", &upstream, "the token").map_err(|e| what(e.to_string()))?;
    let replay_limit = match &c.replay_limit {
        Some(v) => parse_size(v).map_err(|e| what(format!("replay_limit: {e}")))?,
        None => DEFAULT_REPLAY_LIMIT,
    };
    let allowed_hosts =
        AllowedHosts::parse(&c.allow_hosts).map_err(|e| what(format!("allow_hosts: {e}")))?;
    let gateway = match (c.gateway, &profile.client_id, secret) {
        (false, _, _) => None,
        (true, Some(id), Some(Ok(secret))) => Some(freshtoken_proxy::Gateway::new(
            id.clone(),
            &secret,
            c.gateway_login_prefix.as_deref().unwrap_or_default(),
            c.gateway_api_prefix.as_deref().unwrap_or_default(),
        )),
        (true, _, Some(Err(e))) => return Err(what(format!("gateway: {e}"))),
        (true, _, _) => {
            return Err(what(
                "gateway = true lets in the profile's own client: it needs client_id and client_secret"
                    .into(),
            ));
        }
    };
    Ok(ProxySpec {
        gateway,
        profile: c.profile.clone(),
        listen,
        upstream,
        replay_limit,
        allowed_hosts,
        ca_file: profile.ca_file.clone(),
        client_identity: upstream_identity(c).map_err(what)?,
    })
}

/// The certificate a `[[proxy]]` presents to its upstream (`upstream_client_cert` and
/// `upstream_client_key`, both or neither), read now with the rules of every secret.
fn upstream_identity(c: &ProxyConfig) -> Result<Option<freshtoken::ClientIdentity>, String> {
    use crate::secret::SecretSpec;
    match (&c.upstream_client_cert, &c.upstream_client_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => crate::wiring::read_identity(
            &SecretSpec::File(cert.clone()),
            &SecretSpec::File(key.clone()),
            freshtoken::AuthMethod::TlsClientAuth,
        )
        .map(Some)
        .map_err(|e| e.message),
        _ => Err("upstream_client_cert and upstream_client_key go together".into()),
    }
}

/// `--check`: the config, then (unless `--no-fetch`) one token per profile, so that a wrong
/// secret or endpoint fails the check instead of the first job. Every profile is tried; the
/// first that failed is the error, with its exit code (3 for a rejected client, 4 for an
/// unreachable server), and any other failing profile is logged before it. With `--format
/// json` the outcome is one JSON document on stdout, failures included, and the exit code
/// is the same.
async fn check(agent: &Agent, args: &AgentArgs, config_path: &Path) -> CliResult {
    let checked = agent.check().await.map_err(cli_error)?;
    let json = args.format == DataFormat::Json;
    let mut results = Vec::new();
    if !args.no_fetch {
        for (name, source) in &checked.sources {
            let got = source.token_with(Want::one_shot(Duration::ZERO)).await;
            results.push((name.clone(), got.map_err(CliError::from)));
        }
    }
    if json {
        output::print_json(&check_json(config_path, &checked, &results, args.no_fetch))?;
    } else {
        for (name, got) in &results {
            if let Ok(token) = got {
                println!(
                    "profile {name:?}: got a token, valid for {}",
                    fmt_duration(token.lifetime())
                );
            }
        }
    }
    first_failure(results)?;
    if !json {
        println!(
            "{}: {} profiles, {} proxies: ok",
            config_path.display(),
            checked.sources.len(),
            checked.proxies
        );
    }
    Ok(())
}

/// `agent --check --format json`: the config file, each profile's outcome (the token's
/// state, never the token; or the error and its exit code), the proxies, and whether all
/// is well.
fn check_json(
    config_path: &Path,
    checked: &freshtoken_agent::Checked,
    results: &[(String, CliResult<freshtoken::AccessToken>)],
    no_fetch: bool,
) -> serde_json::Value {
    let now = freshtoken::Clock::now(&freshtoken::SystemClock);
    let policy = freshtoken::RefreshPolicy::default();
    let profiles: Vec<_> = checked
        .sources
        .keys()
        .map(|name| {
            let got = results.iter().find(|(n, _)| n == name).map(|(_, g)| g);
            serde_json::json!({
                "profile": name,
                "ok": got.is_none_or(|g| g.is_ok()),
                "token": got.and_then(|g| g.as_ref().ok()).map(|t| output::token_state(t, &policy, now)),
                "error": got.and_then(|g| g.as_ref().err()).map(|e| e.message.clone()),
                "exit_code": got.and_then(|g| g.as_ref().err()).map(|e| e.code),
            })
        })
        .collect();
    serde_json::json!({
        "config_file": config_path.display().to_string(),
        "fetched": !no_fetch,
        "ok": results.iter().all(|(_, g)| g.is_ok()),
        "profiles": profiles,
        "proxies": checked.proxies,
    })
}

/// The first failure of `results`, naming its profile and how many more failed (those are
/// logged here).
fn first_failure(results: Vec<(String, CliResult<freshtoken::AccessToken>)>) -> CliResult {
    let mut failed: Vec<CliError> = Vec::new();
    for (name, got) in results {
        if let Err(e) = got {
            if !failed.is_empty() {
                tracing::error!("profile {name:?}: {}", e.message);
            }
            failed.push(CliError {
                message: format!("profile {name:?}: {}", e.message),
                ..e
            });
        }
    }
    let more = failed.len().saturating_sub(1);
    match failed.into_iter().next() {
        None => Ok(()),
        Some(first) if more == 0 => Err(first),
        Some(first) => Err(CliError {
            message: format!("{} (and {more} more profiles, logged above)", first.message),
            ..first
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkFormat;

    fn config(path: &str, format: SinkFormat) -> SinkConfig {
        SinkConfig {
            path: path.into(),
            format,
            template: None,
            env_name: None,
            mode: None,
            on_expiry: config::OnExpiry::Remove,
        }
    }

    fn checked(
        format: SinkFormat,
        template: Option<&str>,
        env_name: Option<&str>,
    ) -> CliResult<Sink> {
        sink(
            &SinkConfig {
                template: template.map(str::to_owned),
                env_name: env_name.map(str::to_owned),
                ..config("/run/x/t", format)
            },
            "p",
        )
    }

    #[test]
    fn sinks_that_cannot_work_are_refused_naming_profile_and_path() {
        let e = |r: CliResult<Sink>| r.err().map(|e| e.message).unwrap_or_default();
        assert!(e(checked(SinkFormat::Template, None, None)).contains("needs template"));
        assert!(
            e(checked(SinkFormat::Template, Some("{{token}}"), None))
                .contains("unknown placeholder {{token}}")
        );
        assert!(
            e(checked(SinkFormat::Template, Some("{{access_token"), None))
                .contains("without its }}")
        );
        assert!(e(checked(SinkFormat::Raw, Some("x"), None)).contains("only for format"));
        assert!(e(checked(SinkFormat::Raw, None, Some("X"))).contains("only for format"));
        let bad = e(checked(SinkFormat::Env, None, Some("1BAD")));
        assert!(bad.contains("not a variable name"), "{bad}");
        assert!(bad.starts_with("sink /run/x/t of profile \"p\": "), "{bad}");
        let relative = SinkConfig {
            mode: Some("0640".into()),
            ..config("t.token", SinkFormat::Raw)
        };
        assert!(e(sink(&relative, "p")).contains("absolute"));
        let bad_mode = SinkConfig {
            mode: Some("rw-r--r--".into()),
            ..config("/t", SinkFormat::Raw)
        };
        assert!(e(sink(&bad_mode, "p")).contains("not octal"));
    }

    #[test]
    fn each_sink_format_becomes_its_token_format() -> CliResult {
        let cases = [
            (checked(SinkFormat::Raw, None, None)?, "/run/x/t"),
            (checked(SinkFormat::Json, None, None)?, "/run/x/t"),
        ];
        for (s, path) in cases {
            assert_eq!(s.path(), Path::new(path));
            assert_eq!(s.mode(), 0o600);
        }
        assert_eq!(
            checked(SinkFormat::Env, None, Some("GENESYSCLOUD_ACCESS_TOKEN"))?,
            Sink::new(
                "/run/x/t".into(),
                TokenFormat::Env {
                    name: "GENESYSCLOUD_ACCESS_TOKEN".into()
                },
                0o600,
                OnExpiry::Remove
            )
            .map_err(CliError::usage)?
        );
        Ok(())
    }

    #[test]
    fn a_gateway_proxy_lets_in_the_profile_s_own_client_or_is_refused() -> CliResult {
        let parsed = config::parse(
            "[profiles.p]\ntoken_url = \"https://idp.example/token\"\nclient_id = \"id\"\n\
             [[proxy]]\nprofile = \"p\"\nlisten = \"127.0.0.1:0\"\nupstream = \"https://api.example\"\n\
             gateway = true\ngateway_login_prefix = \"login\"\n",
            Path::new("/cfg.toml"),
        )?;
        let (c, profile) = (&parsed.proxy[0], &parsed.profiles["p"]);
        let secret = Some(Ok(secrecy::SecretString::from("s".to_owned())));
        let spec = proxy(c, profile, secret)?;
        let gateway = spec.gateway.expect("a gateway");
        assert_eq!(gateway.login_prefix(), "/login");
        let e = proxy(c, profile, None)
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.contains("needs client_id and client_secret"), "{e}");
        let e = proxy(c, profile, Some(Err("cannot read /x".into())))
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.contains("gateway: cannot read /x"), "{e}");
        Ok(())
    }
}

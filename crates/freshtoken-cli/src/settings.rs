//! Flags, then environment, then config file, then defaults — resolved in one place into
//! the settings a command runs with.
//!
//! This is a pure function of its [`Inputs`]: the parsed flags, a snapshot of the
//! environment and the config file already read. It reads no file, asks no server, reads no
//! clock and never looks at the process's environment, so every precedence rule is tested
//! with plain values (see the table test below). What needs I/O — discovering an issuer,
//! reading a secret, opening a cache — is left as a description here and done by
//! [`crate::wiring`].
//!
//! clap already puts a flag before its `FRESHTOKEN_*` variable; this module puts both before
//! the config file's profile and fills in defaults.

pub(crate) mod dpop;
mod endpoint;
pub(crate) mod identity;
pub(crate) mod login;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use freshtoken::provider::GenesysRegion;
use freshtoken::{AuthMethod, FileStore, HttpOptions, RefreshPolicy, RetryPolicy, SigningAlg};
use url::Url;

use crate::cli::CredentialArgs;
use crate::config::{self, Loaded, ProfileConfig};
use crate::env;
use crate::exit::{CliError, CliResult};
use crate::secret::{ConfigSecrets, SecretSpec};
use crate::units::parse_duration;

/// A snapshot of the environment variables settings may depend on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The environment of this process (variables that are not UTF-8 are left out: none of
    /// the ones freshtoken reads can be used if they are not).
    pub(crate) fn of_process() -> Self {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// An environment made of `pairs`, for tests and for callers that build one.
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: pairs.into_iter().collect(),
        }
    }

    /// The value of `name`, if it is set (possibly empty).
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The value of `name`, if it is set and not empty.
    fn nonempty(&self, name: &str) -> Option<&str> {
        self.var(name).filter(|v| !v.is_empty())
    }

    /// The per-user cache directory, as [`FileStore::default_dir`] finds it.
    fn cache_dir(&self) -> Option<PathBuf> {
        FileStore::dir_from(
            self.var("XDG_CACHE_HOME").map(OsStr::new),
            self.var("HOME").map(OsStr::new),
        )
    }
}

/// What the settings of a command are made of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs<'a> {
    /// The credential flags (clap has folded each `FRESHTOKEN_*` variable into its flag).
    pub args: &'a CredentialArgs,
    /// `--profile` (or `FRESHTOKEN_PROFILE`).
    pub profile: Option<&'a str>,
    /// The config file read, if any.
    pub config: Option<&'a Loaded>,
    /// Whether config files were turned off (`--no-config`, or `FRESHTOKEN_CONFIG` empty),
    /// for the message when a profile is asked for anyway.
    pub no_config: bool,
    /// The environment.
    pub env: &'a Environment,
}

/// Where the token endpoint comes from, not yet looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Named outright.
    TokenUrl(Url),
    /// Found by discovery from this issuer.
    Issuer(Url),
    /// Genesys Cloud's, for this region.
    Genesys(GenesysRegion),
}

/// Who the client is and how it proves it; its secrets are named here and read when used.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub id: String,
    pub auth_method: AuthMethod,
    pub secret: SecretSpec,
    pub key: SecretSpec,
    /// The client certificate and its key, for the mutual-TLS methods.
    pub certificate: SecretSpec,
    pub certificate_key: SecretSpec,
    pub signing_alg: Option<SigningAlg>,
    pub key_id: Option<String>,
    pub assertion_audience: Option<String>,
    pub assertion_lifetime: Option<Duration>,
}

/// What the token is asked for with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ask {
    pub scope: Vec<String>,
    pub audience: Option<String>,
    pub resource: Vec<String>,
    pub params: Vec<(String, String)>,
}

/// Where tokens are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheChoice {
    /// Only in this process: every `get` fetches.
    Memory,
    /// Per user on this machine, in a directory.
    File(PathBuf),
    /// Per fleet, through Redis, with the per-user file cache in front when there is one.
    Redis {
        /// `redis://`, `rediss://`, `redis+cluster://…`, `redis+sentinel://…`.
        url: String,
        /// The file layer in front of Redis.
        file: Option<PathBuf>,
    },
}

impl CacheChoice {
    /// Parses `memory`, `file`, `file:DIR` or a Redis URL; `dir` is the per-user cache
    /// directory, if there is one.
    pub(crate) fn parse(value: &str, dir: Option<PathBuf>) -> CliResult<Self> {
        match value.trim() {
            "memory" => Ok(CacheChoice::Memory),
            "file" => dir.map(CacheChoice::File).ok_or_else(|| {
                CliError::usage("cannot find a cache directory: set XDG_CACHE_HOME or HOME, or use --cache file:DIR")
            }),
            v if ["redis://", "rediss://", "redis+cluster://", "rediss+cluster://", "redis+sentinel://", "rediss+sentinel://"].iter().any(|p| v.starts_with(p)) => {
                Ok(CacheChoice::Redis {
                    url: v.to_owned(),
                    file: dir,
                })
            }
            v => match v.strip_prefix("file:") {
                Some(dir) if !dir.is_empty() => Ok(CacheChoice::File(PathBuf::from(dir))),
                _ => Err(CliError::usage(format!(
                    "unknown cache {:?}; use file, file:DIR, memory or redis://HOST:PORT/DB",
                    freshtoken::store::redact_url(v)
                ))),
            },
        }
    }

    /// The per-user directory of this cache, if it has one (for discovery documents too).
    pub(crate) fn file_dir(&self) -> Option<&Path> {
        match self {
            CacheChoice::File(dir)
            | CacheChoice::Redis {
                file: Some(dir), ..
            } => Some(dir),
            _ => None,
        }
    }
}

/// The cache and how it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cache {
    pub choice: CacheChoice,
    /// Whether the cache was chosen (flag, environment or profile) rather than defaulted.
    pub explicit: bool,
    /// The Redis refresh lock's lease (`FRESHTOKEN_REDIS_LEASE`), for a Redis cache.
    pub redis_lease: Duration,
    /// The profile's `cache_key`: what seals its Redis values when it has no secret.
    pub seal_key: Option<config::SecretSource>,
    /// The fleet-wide token-request budget (`token_rate`: requests per period), for a
    /// Redis cache.
    pub token_rate: Option<(u32, Duration)>,
}

/// Which clock tokens are judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClockChoice {
    /// The system's.
    System,
    /// The system's, moved ahead (`FRESHTOKEN_CLOCK_SKEW`).
    Ahead(Duration),
    /// The system's, moved by what a file says now (`FRESHTOKEN_CLOCK_SKEW_FILE`).
    SkewFile(PathBuf),
}

/// Everything a command needs to get a profile's token, as described by its inputs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The profile name.
    pub profile: String,
    /// The config file read, if any.
    pub config_path: Option<PathBuf>,
    pub endpoint: Endpoint,
    /// The provider, when the chosen endpoint names one: it gives the API base.
    pub provider: Option<GenesysRegion>,
    /// The API base named outright (`--api-base`, `api_base`), over the provider's.
    pub api_base: Option<Url>,
    pub client: Client,
    /// The identity tokens of a secretless profile (client assertion, token exchange).
    pub identity: identity::Identity,
    pub ask: Ask,
    /// Talking to the token endpoint.
    pub http: HttpOptions,
    /// When to refresh.
    pub policy: RefreshPolicy,
    pub cache: Cache,
    pub clock: ClockChoice,
    /// The environment variables secrets may be read from, the config file's `{ env = … }`
    /// sources included (see [`crate::secret::secret_variables`]): what `exec` keeps from
    /// its child.
    pub secret_variables: Vec<String>,
    /// What was given but not used, and why (logged when the settings are wired).
    pub notes: Vec<String>,
    /// A person's login, when the profile's grant is one (see [`login::Login`]).
    pub login: Option<login::Login>,
    /// DPoP-bound tokens, and with which key (see [`dpop::Dpop`]).
    pub dpop: dpop::Dpop,
}

impl Settings {
    /// The provider's API base URL, when a provider is used (where `proxy` sends the token).
    pub(crate) fn api_base(&self) -> Option<Url> {
        self.api_base
            .clone()
            .or_else(|| self.provider.as_ref().map(GenesysRegion::api_base))
    }

    /// Where `proxy` and `exec --proxy` forward: `--upstream`, else the provider's API base;
    /// plain http only to loopback, checked before any token is asked for.
    pub(crate) fn upstream(&self, flag: Option<&str>) -> CliResult<Url> {
        let url = match (flag, self.api_base()) {
            (Some(u), _) => Url::parse(u)
                .map_err(|e| CliError::usage(format!("--upstream {u:?} is not a URL: {e}")))?,
            (None, Some(api)) => api,
            (None, None) => {
                return Err(CliError::usage(
                    "no upstream: set --upstream URL (or use --provider genesys --region R)",
                ));
            }
        };
        freshtoken::internal::refuse_plain_http("upstream", &url, "the token")?;
        Ok(url)
    }

    /// Uses the secrets `read` holds instead of reading the profile's sources again.
    pub(crate) fn with_secrets(mut self, read: ConfigSecrets) -> Self {
        let (secret, key) = read.into_specs();
        if let (SecretSpec::Config(_), Some(read)) = (&self.client.secret, secret) {
            self.client.secret = read;
        }
        if let (SecretSpec::Config(_), Some(read)) = (&self.client.key, key) {
            self.client.key = read;
        }
        self
    }
}

/// Which layers besides the config file count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layers {
    FlagsAndEnvironment,
    /// The agent's profiles: no flags, and no `FRESHTOKEN_*` or `GENESYSCLOUD_*` variables,
    /// which name one client and so cannot apply to every profile it keeps.
    ConfigOnly,
}

/// The settings of the selected profile.
pub(crate) fn resolve(inputs: &Inputs<'_>) -> CliResult<Settings> {
    let (name, profile) = select_profile(inputs)?;
    let mut settings = build(
        &Source {
            name,
            profile: &profile,
            config_path: inputs.config.map(|l| l.path.as_path()),
            args: inputs.args,
            env: inputs.env,
            layers: Layers::FlagsAndEnvironment,
        },
        Vec::new(),
    )
    .map_err(|e| no_default_profile(inputs).unwrap_or(e))?;
    settings.secret_variables = crate::secret::secret_variables(inputs.config.map(|l| &l.file));
    for var in settings.identity.variables() {
        if !settings.secret_variables.contains(&var) {
            settings.secret_variables.push(var);
        }
    }
    Ok(settings)
}

/// The settings of one profile of a config file as written there (see
/// [`Layers::ConfigOnly`]); the environment only places the cache directory and moves the
/// clock.
pub(crate) fn resolve_profile(
    name: &str,
    profile: &ProfileConfig,
    config_path: &Path,
    env: &Environment,
) -> CliResult<Settings> {
    build(
        &Source {
            name: name.to_owned(),
            profile,
            config_path: Some(config_path),
            args: &CredentialArgs::default(),
            env,
            layers: Layers::ConfigOnly,
        },
        Vec::new(),
    )
}

/// Why settings could not be made when no profile was named and the config file has
/// profiles but no `default`: that, rather than the first key missing from an empty profile
/// (a config whose only profile is `prod` does not mean "no client id").
fn no_default_profile(inputs: &Inputs<'_>) -> Option<CliError> {
    let loaded = inputs.config.filter(|_| inputs.profile.is_none())?;
    let names: Vec<&str> = loaded.file.profiles.keys().map(String::as_str).collect();
    (!names.is_empty() && !names.contains(&"default")).then(|| {
        CliError::usage(format!(
            "no profile default in {} (profiles: {}): choose one with --profile NAME or {}",
            loaded.path.display(),
            names.join(", "),
            env::PROFILE
        ))
    })
}

/// The profile `inputs` select: the named one, else `default` (or nothing) of the file.
fn select_profile(inputs: &Inputs<'_>) -> CliResult<(String, ProfileConfig)> {
    let name = inputs.profile.unwrap_or("default").to_owned();
    let Some(loaded) = inputs.config else {
        return match inputs.profile {
            None => Ok((name, ProfileConfig::default())),
            Some(_) if inputs.no_config => Err(CliError::usage(format!(
                "profile {name:?} asked for, but --no-config (or an empty {}) reads no config file",
                env::CONFIG
            ))),
            Some(_) => Err(CliError::usage(format!(
                "profile {name:?} asked for, but no config file was found (use --config PATH)"
            ))),
        };
    };
    match loaded.file.profiles.get(&name) {
        Some(p) => Ok((name, p.clone())),
        None if inputs.profile.is_none() => Ok((name, ProfileConfig::default())),
        None => {
            let known: Vec<_> = loaded.file.profiles.keys().map(String::as_str).collect();
            Err(CliError::usage(format!(
                "no profile {name:?} in {} (profiles there: {})",
                loaded.path.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

/// One profile with the layers above it.
struct Source<'a> {
    name: String,
    profile: &'a ProfileConfig,
    config_path: Option<&'a Path>,
    args: &'a CredentialArgs,
    env: &'a Environment,
    layers: Layers,
}

impl Source<'_> {
    /// A variable of the environment, if this source reads the environment.
    fn env_var(&self, name: &str) -> Option<&str> {
        (self.layers == Layers::FlagsAndEnvironment)
            .then(|| self.env.var(name))
            .flatten()
    }

    /// How a key of the profile is named in messages.
    fn in_file(&self, what: &str) -> String {
        match self.config_path {
            Some(p) => format!("{what} in profile {:?} of {}", self.name, p.display()),
            None => what.to_owned(),
        }
    }

    /// A duration given by `flag` (named `--name`) over the file's `name`.
    fn duration(
        &self,
        flag: Option<&String>,
        file: Option<&String>,
        name: &str,
    ) -> CliResult<Option<Duration>> {
        match (flag, file) {
            (Some(v), _) => parse_duration(v)
                .map(Some)
                .map_err(|e| CliError::usage(format!("--{name}: {e}"))),
            (None, Some(v)) => parse_duration(v)
                .map(Some)
                .map_err(|e| CliError::usage(format!("{}: {e}", self.in_file(name)))),
            (None, None) => Ok(None),
        }
    }
}

fn build(s: &Source<'_>, mut notes: Vec<String>) -> CliResult<Settings> {
    let in_file = |what: &str| s.in_file(what);
    let genesys_region = s.env_var(env::GENESYS_REGION).map(str::to_owned);
    let parts = endpoint::Parts::resolve(s.args, s.profile, genesys_region, &in_file, &mut notes)?;
    // Genesys Cloud's own client variables count when the endpoint is Genesys Cloud's, or
    // was named in this run; never for a profile of the config file that names another
    // server, which would be sent another client's secret.
    let genesys_vars = parts.genesys_named || parts.named_in_this_run();
    let mut client = client(s, genesys_vars)?;
    let identity = identity::resolve(s, &mut client)?;
    let ask = ask(s)?;
    let http = http(s)?;
    let policy = policy(s)?;
    let cache = cache(s)?;
    let endpoint = match (&parts.token_url, &parts.issuer, &parts.genesys) {
        (Some(url), _, _) => Endpoint::TokenUrl(parse_url("token URL", &url.value)?),
        (None, Some(issuer), _) => Endpoint::Issuer(parse_url("issuer", &issuer.value)?),
        (None, None, Some(region)) => Endpoint::Genesys(region.clone()),
        (None, None, None) => {
            return Err(CliError::usage(format!(
                "no token endpoint: set --token-url ({}), --issuer ({}) or --provider genesys --region R, or token_url in a profile of the config file",
                env::TOKEN_URL,
                env::ISSUER
            )));
        }
    };
    Ok(Settings {
        profile: s.name.clone(),
        config_path: s.config_path.map(Path::to_owned),
        endpoint,
        provider: parts.genesys,
        api_base: api_base(s)?,
        client,
        identity,
        ask,
        http,
        policy,
        cache,
        clock: clock(s.env)?,
        secret_variables: crate::secret::secret_variables(None),
        notes,
        login: login::resolve(s)?,
        dpop: dpop::resolve(s)?,
    })
}

/// The API base named by flag (or its variable) over the file.
fn api_base(s: &Source<'_>) -> CliResult<Option<Url>> {
    let (name, value) = match (&s.args.api_base, &s.profile.api_base) {
        (Some(v), _) => ("--api-base".to_owned(), v),
        (None, Some(v)) => (s.in_file("api_base"), v),
        (None, None) => return Ok(None),
    };
    let url = Url::parse(value.trim())
        .map_err(|e| CliError::usage(format!("{name} {value:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Err(CliError::usage(format!(
            "{name} {value:?} is not an https URL with a host"
        )));
    }
    Ok(Some(url))
}

/// The client: its id, how it authenticates, and where its secrets come from.
fn client(s: &Source<'_>, genesys: bool) -> CliResult<Client> {
    let (args, profile) = (s.args, s.profile);
    let genesys_env = |var: &str| {
        s.env_var(var)
            .filter(|v| genesys && !v.is_empty())
            .map(str::to_owned)
    };
    let id = args
        .client_id
        .clone()
        .or_else(|| genesys_env(env::GENESYS_CLIENT_ID))
        .or(profile.client_id.clone())
        .ok_or_else(|| {
            CliError::usage(format!(
                "no client id: set --client-id, {}, {} or client_id in a profile of the config file",
                env::CLIENT_ID,
                env::GENESYS_CLIENT_ID
            ))
        })?;
    let auth_method = match args
        .auth_method
        .as_deref()
        .or(profile.auth_method.as_deref())
    {
        Some(m) => m
            .parse::<AuthMethod>()
            .map_err(|e| CliError::usage(format!("{}: {e}", s.in_file("auth_method"))))?,
        None => AuthMethod::default(),
    };
    let (secret, key) = (client_secret(s, genesys), private_key(s));
    let (certificate, certificate_key) = certificate(s);
    let signing_alg = match args
        .signing_alg
        .as_deref()
        .or(profile.signing_alg.as_deref())
    {
        Some(a) => Some(
            a.parse::<SigningAlg>()
                .map_err(|e| CliError::usage(format!("{}: {e}", s.in_file("signing_alg"))))?,
        ),
        None => None,
    };
    Ok(Client {
        id,
        auth_method,
        secret,
        key,
        certificate,
        certificate_key,
        signing_alg,
        key_id: args.key_id.clone().or(profile.key_id.clone()),
        assertion_audience: args
            .assertion_audience
            .clone()
            .or(profile.assertion_audience.clone()),
        assertion_lifetime: s.duration(
            None,
            profile.assertion_lifetime.as_ref(),
            "assertion_lifetime",
        )?,
    })
}

/// Where the client secret comes from, highest first: `--client-secret-stdin`,
/// `--client-secret-file`, `FRESHTOKEN_CLIENT_SECRET`, Genesys' variable (Genesys endpoints
/// only), the profile. Named, never read.
fn client_secret(s: &Source<'_>, genesys: bool) -> SecretSpec {
    let (args, profile) = (s.args, s.profile);
    let genesys_secret = s
        .env_var(env::GENESYS_CLIENT_SECRET)
        .is_some_and(|v| genesys && !v.is_empty());
    if args.client_secret_stdin {
        SecretSpec::Stdin
    } else if let Some(path) = &args.client_secret_file {
        SecretSpec::File(path.clone())
    } else if s.env_var(env::CLIENT_SECRET).is_some() {
        SecretSpec::Env(env::CLIENT_SECRET)
    } else if genesys_secret {
        SecretSpec::Env(env::GENESYS_CLIENT_SECRET)
    } else if let Some(source) = &profile.client_secret {
        SecretSpec::Config(source.clone())
    } else {
        SecretSpec::Missing
    }
}

/// Where the private key of `private_key_jwt` comes from: `--private-key`,
/// `FRESHTOKEN_PRIVATE_KEY`, the profile. Named, never read.
fn private_key(s: &Source<'_>) -> SecretSpec {
    let (args, profile) = (s.args, s.profile);
    if let Some(path) = &args.private_key {
        SecretSpec::File(path.clone())
    } else if s.env_var(env::PRIVATE_KEY).is_some() {
        SecretSpec::Env(env::PRIVATE_KEY)
    } else if let Some(source) = &profile.private_key {
        SecretSpec::Config(source.clone())
    } else {
        SecretSpec::Missing
    }
}

/// Where the client certificate and its key come from: each flag (or its variable) over the
/// profile's key. Named here, read when used (see [`crate::wiring`]).
fn certificate(s: &Source<'_>) -> (SecretSpec, SecretSpec) {
    let pick = |flag: &Option<PathBuf>, file: &Option<config::SecretSource>| match (flag, file) {
        (Some(path), _) => SecretSpec::File(path.clone()),
        (None, Some(source)) => SecretSpec::Config(source.clone()),
        (None, None) => SecretSpec::Missing,
    };
    (
        pick(&s.args.client_cert, &s.profile.client_certificate),
        pick(&s.args.client_key, &s.profile.client_key),
    )
}

/// What the token is asked for with: each list from the flag if given, else the file.
fn ask(s: &Source<'_>) -> CliResult<Ask> {
    let (args, profile) = (s.args, s.profile);
    let params = if args.params.is_empty() {
        profile.params.clone().into_iter().collect()
    } else {
        args.params
            .iter()
            .map(|p| match p.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(CliError::usage(format!("--param {p:?} is not KEY=VALUE"))),
            })
            .collect::<CliResult<Vec<_>>>()?
    };
    Ok(Ask {
        scope: list(&args.scope, profile.scope.as_ref()),
        audience: args.audience.clone().or(profile.audience.clone()),
        resource: list(&args.resource, profile.resource.as_ref()),
        params,
    })
}

/// Timeouts, retries and trust for the token endpoint.
fn http(s: &Source<'_>) -> CliResult<HttpOptions> {
    let (args, profile) = (s.args, s.profile);
    let mut http = HttpOptions::default();
    if let Some(t) = s.duration(args.timeout.as_ref(), profile.timeout.as_ref(), "timeout")? {
        if t.is_zero() {
            return Err(CliError::usage("--timeout must be longer than zero"));
        }
        http.timeout = t;
        http.connect_timeout = http.connect_timeout.min(t);
    }
    if let Some(r) = s.duration(
        args.retry_for.as_ref(),
        profile.retry_for.as_ref(),
        "retry_for",
    )? {
        http.retry = RetryPolicy::default().with_deadline(r);
    }
    if let Some(d) = s.duration(None, profile.default_lifetime.as_ref(), "default_lifetime")? {
        http.default_lifetime = d;
    }
    http.ca_file = args.ca_file.clone().or_else(|| profile.ca_file.clone());
    Ok(http)
}

/// When to refresh: the profile's, else the defaults; checked as a whole.
fn policy(s: &Source<'_>) -> CliResult<RefreshPolicy> {
    let profile = s.profile;
    let mut policy = RefreshPolicy::default();
    if let Some(v) = profile.refresh_at {
        policy.stale_fraction = v;
    }
    if let Some(v) = profile.refresh_jitter {
        policy.jitter_fraction = v;
    }
    if let Some(v) = profile.refresh_margin_fraction {
        policy.margin_fraction = v;
    }
    if let Some(v) = s.duration(
        None,
        profile.refresh_margin_max.as_ref(),
        "refresh_margin_max",
    )? {
        policy.margin_cap = v;
    }
    policy
        .validate()
        .map_err(|e| CliError::usage(s.in_file(&e)))?;
    Ok(policy)
}

/// The cache: flag, else profile, else the per-user file cache (the agent keeps its tokens
/// in process unless a profile names a cache).
fn cache(s: &Source<'_>) -> CliResult<Cache> {
    let named = s.args.cache.as_deref().or(s.profile.cache.as_deref());
    let default = match s.layers {
        Layers::FlagsAndEnvironment => "file",
        Layers::ConfigOnly => "memory",
    };
    let choice = CacheChoice::parse(named.unwrap_or(default), s.env.cache_dir())?;
    let redis_lease = match (&choice, s.env.var(env::REDIS_LEASE)) {
        (CacheChoice::Redis { .. }, Some(v)) => parse_duration(v)
            .map_err(|e| CliError::usage(format!("{}: {e}", env::REDIS_LEASE)))?
            .max(Duration::from_millis(100)),
        _ => freshtoken::store::DEFAULT_LEASE,
    };
    let seal_key = s.profile.cache_key.clone();
    if let Some(config::SecretSource::Command(_)) = &seal_key {
        return Err(CliError::usage(format!(
            "{} must be {{ env = \"VAR\" }} or {{ file = \"PATH\" }}",
            s.in_file("cache_key")
        )));
    }
    let token_rate = match (&choice, s.profile.token_rate.as_deref()) {
        (_, None) => None,
        (CacheChoice::Redis { .. }, Some(v)) => Some(
            crate::units::parse_rate(v)
                .map_err(|e| CliError::usage(format!("{}: {e}", s.in_file("token_rate"))))?,
        ),
        (_, Some(_)) => {
            return Err(CliError::usage(format!(
                "{}: a fleet-wide budget is kept in Redis; it needs a redis:// cache",
                s.in_file("token_rate")
            )));
        }
    };
    Ok(Cache {
        choice,
        explicit: named.is_some(),
        redis_lease,
        seal_key,
        token_rate,
    })
}

/// The real clock, unless FRESHTOKEN_CLOCK_SKEW(_FILE) moves it (for tests of expiry and
/// fleets, and hosts whose clock is known to lag).
pub(crate) fn clock(env: &Environment) -> CliResult<ClockChoice> {
    if let Some(path) = env.nonempty(env::CLOCK_SKEW_FILE) {
        return Ok(ClockChoice::SkewFile(PathBuf::from(path)));
    }
    match env.var(env::CLOCK_SKEW) {
        Some(v) if !v.trim().is_empty() => parse_duration(v)
            .map(ClockChoice::Ahead)
            .map_err(|e| CliError::usage(format!("{}: {e}", env::CLOCK_SKEW))),
        _ => Ok(ClockChoice::System),
    }
}

/// A list setting: the flag's values (each may be space-separated) if given, else the file's.
fn list(flag: &[String], file: Option<&config::OneOrMany>) -> Vec<String> {
    if flag.is_empty() {
        file.map(config::OneOrMany::items).unwrap_or_default()
    } else {
        flag.iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect()
    }
}

/// A URL freshtoken sends credentials to or trusts answers from: https, or http to loopback,
/// refused at once (exit 2) otherwise rather than failing later as an unreachable host.
fn parse_url(what: &str, value: &str) -> CliResult<Url> {
    let url = Url::parse(value.trim())
        .map_err(|e| CliError::usage(format!("{what} {value:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Err(CliError::usage(format!(
            "{what} {value:?} is not an https URL with a host"
        )));
    }
    freshtoken::internal::refuse_plain_http(what, &url, "the client's credentials")
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(url)
}

#[cfg(test)]
mod tests;

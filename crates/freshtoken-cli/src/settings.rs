//! Flags, then environment, then config file, then defaults — resolved in one place into
//! the settings a command runs with.
//!
//! clap already puts a flag before its `FRESHTOKEN_*` variable; this module puts both before
//! the config file's profile and fills in defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use freshtoken::discovery::Metadata;
use freshtoken::provider::GenesysRegion;
use freshtoken::{
    AuthMethod, CacheKey, FileStore, HttpOptions, RefreshPolicy, RetryPolicy, SharedClock,
    SigningAlg, SkewedClock, SystemClock, TokenRequest, TokenStore,
};
use url::Url;

use crate::cli::{Cli, CredentialArgs};
use crate::config::{self, ProfileConfig};
use crate::discovery;
use crate::env;
use crate::exit::{CliError, CliResult};
use crate::secret::{ConfigSecrets, Secret, SecretSpec, read_secret};

/// Where tokens are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChoice {
    /// Only in this process: every `get` fetches.
    Memory,
    /// Per user on this machine, in a directory.
    File(PathBuf),
    /// Per fleet, through Redis, with the per-user file cache in front when there is one.
    Redis {
        /// `redis://`, `rediss://`, `redis+cluster://…`.
        url: String,
        /// The file layer in front of Redis.
        file: Option<PathBuf>,
    },
}

impl CacheChoice {
    /// Parses `memory`, `file`, `file:DIR` or a Redis URL.
    pub fn parse(value: &str) -> CliResult<Self> {
        match value.trim() {
            "memory" => Ok(CacheChoice::Memory),
            "file" => FileStore::default_dir().map(CacheChoice::File).ok_or_else(|| {
                CliError::usage("cannot find a cache directory: set XDG_CACHE_HOME or HOME, or use --cache file:DIR")
            }),
            v if ["redis://", "rediss://", "redis+cluster://", "rediss+cluster://"].iter().any(|p| v.starts_with(p)) => {
                Ok(CacheChoice::Redis {
                    url: v.to_owned(),
                    file: FileStore::default_dir(),
                })
            }
            v => match v.strip_prefix("file:") {
                Some(dir) if !dir.is_empty() => Ok(CacheChoice::File(PathBuf::from(dir))),
                _ => Err(CliError::usage(format!(
                    "unknown cache {:?}; use file, file:DIR, memory or redis://HOST:PORT/DB",
                    freshtoken::internal::redact_url(v)
                ))),
            },
        }
    }

    /// The per-user directory of this cache, if it has one (for discovery documents too).
    pub fn file_dir(&self) -> Option<&Path> {
        match self {
            CacheChoice::File(dir)
            | CacheChoice::Redis {
                file: Some(dir), ..
            } => Some(dir),
            _ => None,
        }
    }
}

/// Everything a command needs to get a profile's token.
#[derive(Debug)]
pub struct Settings {
    /// The profile name.
    pub profile: String,
    /// The config file read, if any.
    pub config_path: Option<PathBuf>,
    /// The request, without its secret (see [`Settings::token_request`]).
    request: TokenRequest,
    secret: SecretSpec,
    key: SecretSpec,
    /// The issuer's metadata, when the endpoint came from discovery.
    metadata: Option<Metadata>,
    /// The provider's API base URL, when a provider is used.
    pub api_base: Option<Url>,
    /// Talking to the token endpoint.
    pub http: HttpOptions,
    /// When to refresh.
    pub policy: RefreshPolicy,
    /// Where to cache.
    pub cache: CacheChoice,
    /// Whether the cache was chosen (flag, environment or profile) rather than defaulted.
    pub cache_explicit: bool,
    /// The clock (the real one, unless FRESHTOKEN_CLOCK_SKEW moves it).
    pub clock: SharedClock,
    /// The environment variables secrets may be read from, the config file's `{ env = … }`
    /// sources included (see [`crate::secret::secret_variables`]): what `exec` keeps from
    /// its child.
    pub secret_variables: Vec<String>,
}

impl Settings {
    /// Resolves the settings of the selected profile for `args`. Async because an issuer is
    /// discovered over the network: awaited on the command's runtime, not a nested one.
    pub async fn resolve(cli: &Cli, args: &CredentialArgs) -> CliResult<Self> {
        let choice = config::Choice::new(cli.config.as_deref(), cli.no_config);
        let loaded = config::load(choice)?;
        let profile_name = cli.profile.clone().unwrap_or_else(|| "default".to_owned());
        let profile = match &loaded {
            Some(l) => match l.file.profiles.get(&profile_name) {
                Some(p) => p.clone(),
                None if cli.profile.is_none() => ProfileConfig::default(),
                None => {
                    let known: Vec<_> = l.file.profiles.keys().map(String::as_str).collect();
                    return Err(CliError::usage(format!(
                        "no profile {profile_name:?} in {} (profiles there: {})",
                        l.path.display(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            },
            None if cli.profile.is_some() => {
                return Err(CliError::usage(if choice == config::Choice::Nothing {
                    format!(
                        "profile {profile_name:?} asked for, but --no-config (or an empty {}) reads no config file",
                        env::CONFIG
                    )
                } else {
                    format!(
                        "profile {profile_name:?} asked for, but no config file was found (use --config PATH)"
                    )
                }));
            }
            None => ProfileConfig::default(),
        };
        let secret_variables = crate::secret::secret_variables(loaded.as_ref().map(|l| &l.file));
        let config_path = loaded.map(|l| l.path);
        let mut settings = Self::build(
            profile_name,
            &profile,
            config_path,
            args,
            Layers::FlagsAndEnvironment,
        )
        .await?;
        settings.secret_variables = secret_variables;
        Ok(settings)
    }

    /// The settings of one profile of a config file as written there: no flags, and no
    /// `FRESHTOKEN_*` or `GENESYSCLOUD_*` variables, which name one client and so cannot
    /// apply to every profile the agent keeps. Async like [`Settings::resolve`].
    pub async fn for_profile(
        name: &str,
        profile: &ProfileConfig,
        config_path: &Path,
    ) -> CliResult<Self> {
        Self::build(
            name.to_owned(),
            profile,
            Some(config_path.to_owned()),
            &CredentialArgs::default(),
            Layers::ConfigOnly,
        )
        .await
    }

    async fn build(
        profile_name: String,
        profile: &ProfileConfig,
        config_path: Option<PathBuf>,
        args: &CredentialArgs,
        layers: Layers,
    ) -> CliResult<Self> {
        let use_env = layers == Layers::FlagsAndEnvironment;
        let env_var = |name: &str| use_env.then(|| std::env::var(name).ok()).flatten();
        let from = |what: &str| match &config_path {
            Some(p) => format!("{what} in profile {profile_name:?} of {}", p.display()),
            None => what.to_owned(),
        };

        // The endpoint, as one unit (see `Endpoint::resolve`).
        let endpoint = Endpoint::resolve(args, profile, use_env, &from)?;
        let genesys = endpoint.genesys;
        let genesys_env = |var: &str| {
            genesys
                .as_ref()
                .and_then(|_| env_var(var))
                .filter(|v| !v.is_empty())
        };

        let client_id = args
            .client_id
            .clone()
            .or_else(|| genesys_env(env::GENESYS_CLIENT_ID))
            .or(profile.client_id.clone())
            .ok_or_else(|| {
                CliError::usage(format!(
                    "no client id: set --client-id, {} or client_id in a profile of the config file",
                    env::CLIENT_ID
                ))
            })?;
        let auth_method = match args
            .auth_method
            .as_deref()
            .or(profile.auth_method.as_deref())
        {
            Some(m) => m
                .parse::<AuthMethod>()
                .map_err(|e| CliError::usage(format!("{}: {e}", from("auth_method"))))?,
            None => AuthMethod::default(),
        };
        let scope = list(&args.scope, profile.scope.as_ref());
        let resource = list(&args.resource, profile.resource.as_ref());
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

        let secret = if args.client_secret_stdin {
            SecretSpec::Stdin
        } else if let Some(path) = &args.client_secret_file {
            SecretSpec::File(path.clone())
        } else if env_var(env::CLIENT_SECRET).is_some() {
            SecretSpec::Env(env::CLIENT_SECRET)
        } else if genesys_env(env::GENESYS_CLIENT_SECRET).is_some() {
            SecretSpec::Env(env::GENESYS_CLIENT_SECRET)
        } else if let Some(source) = &profile.client_secret {
            SecretSpec::Config(source.clone())
        } else {
            SecretSpec::Missing
        };

        let duration = |flag: Option<&String>,
                        file: Option<&String>,
                        name: &str|
         -> CliResult<Option<Duration>> {
            match (flag, file) {
                (Some(v), _) => parse_duration(v)
                    .map(Some)
                    .map_err(|e| CliError::usage(format!("--{name}: {e}"))),
                (None, Some(v)) => parse_duration(v)
                    .map(Some)
                    .map_err(|e| CliError::usage(format!("{}: {e}", from(name)))),
                (None, None) => Ok(None),
            }
        };
        let mut http = HttpOptions::default();
        if let Some(t) = duration(args.timeout.as_ref(), profile.timeout.as_ref(), "timeout")? {
            if t.is_zero() {
                return Err(CliError::usage("--timeout must be longer than zero"));
            }
            http.timeout = t;
            http.connect_timeout = http.connect_timeout.min(t);
        }
        if let Some(r) = duration(
            args.retry_for.as_ref(),
            profile.retry_for.as_ref(),
            "retry_for",
        )? {
            http.retry = RetryPolicy::default().with_deadline(r);
        }
        if let Some(d) = duration(None, profile.default_lifetime.as_ref(), "default_lifetime")? {
            http.default_lifetime = d;
        }
        http.ca_file = args.ca_file.clone().or_else(|| profile.ca_file.clone());

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
        if let Some(v) = duration(
            None,
            profile.refresh_margin_max.as_ref(),
            "refresh_margin_max",
        )? {
            policy.margin_cap = v;
        }
        policy.validate().map_err(|e| CliError::usage(from(&e)))?;

        let cache = CacheChoice::parse(
            args.cache
                .as_deref()
                .or(profile.cache.as_deref())
                // The agent keeps its tokens in process unless a profile names a cache.
                .unwrap_or(if use_env { "file" } else { "memory" }),
        )?;

        let key = if let Some(path) = &args.private_key {
            SecretSpec::File(path.clone())
        } else if env_var(env::PRIVATE_KEY).is_some() {
            SecretSpec::Env(env::PRIVATE_KEY)
        } else if let Some(source) = &profile.private_key {
            SecretSpec::Config(source.clone())
        } else {
            SecretSpec::Missing
        };
        let signing_alg = match args
            .signing_alg
            .as_deref()
            .or(profile.signing_alg.as_deref())
        {
            Some(a) => Some(
                a.parse::<SigningAlg>()
                    .map_err(|e| CliError::usage(format!("{}: {e}", from("signing_alg"))))?,
            ),
            None => None,
        };
        let assertion_lifetime = duration(
            None,
            profile.assertion_lifetime.as_ref(),
            "assertion_lifetime",
        )?;

        // The token endpoint: named outright, else found from the issuer, else the provider's.
        let mut metadata = None;
        let token_url = match (
            endpoint.token_url.as_ref(),
            endpoint.issuer.as_ref(),
            &genesys,
        ) {
            (Some(url), _, _) => parse_url("token URL", url)?,
            (None, Some(issuer), _) => {
                let issuer = parse_url("issuer", issuer)?;
                let meta = discovery::cached(&issuer, &http, &cache).await?;
                let url = meta.token_endpoint.clone();
                metadata = Some(meta);
                url
            }
            (None, None, Some(region)) => region.token_url(),
            (None, None, None) => {
                return Err(CliError::usage(format!(
                    "no token endpoint: set --token-url ({}), --issuer ({}) or --provider genesys --region R, or token_url in a profile of the config file",
                    env::TOKEN_URL,
                    env::ISSUER
                )));
            }
        };

        let mut request = TokenRequest::new(token_url, client_id, None);
        request.signing_alg = signing_alg;
        request.key_id = args.key_id.clone().or(profile.key_id.clone());
        request.assertion_audience = args
            .assertion_audience
            .clone()
            .or(profile.assertion_audience.clone());
        if let Some(l) = assertion_lifetime {
            request.assertion_lifetime = l;
        }
        request.auth_method = auth_method;
        request.scope = scope;
        request.audience = args.audience.clone().or(profile.audience.clone());
        request.resource = resource;
        request.params = params;

        let clock = clock_from_env()?;

        let cache_explicit = args.cache.is_some() || profile.cache.is_some();
        Ok(Settings {
            cache_explicit,
            clock,
            profile: profile_name,
            config_path,
            request,
            secret,
            key,
            metadata,
            api_base: genesys.as_ref().map(GenesysRegion::api_base),
            http,
            policy,
            cache,
            secret_variables: crate::secret::secret_variables(None),
        })
    }

    /// The cache layers, nearest first (see [`crate::stores::layers`]).
    pub fn layers(&self, request: Option<&TokenRequest>) -> CliResult<Vec<Arc<dyn TokenStore>>> {
        crate::stores::layers(&self.cache, request, &self.clock)
    }

    /// The cache as one store.
    pub fn store(&self, request: Option<&TokenRequest>) -> CliResult<Arc<dyn TokenStore>> {
        Ok(crate::stores::stack(self.layers(request)?, &self.clock))
    }

    /// The cache key, which needs no secret.
    pub fn cache_key(&self) -> CacheKey {
        self.request.cache_key()
    }

    /// The request without its secret, for display.
    pub fn request_public(&self) -> &TokenRequest {
        &self.request
    }

    /// Uses the secrets `read` holds instead of reading the profile's sources again.
    pub fn with_secrets(mut self, read: ConfigSecrets) -> Self {
        let (secret, key) = read.into_specs();
        if let (SecretSpec::Config(_), Some(read)) = (&self.secret, secret) {
            self.secret = read;
        }
        if let (SecretSpec::Config(_), Some(read)) = (&self.key, key) {
            self.key = read;
        }
        self
    }

    /// The full request: reads the secret now (from stdin, a file, the environment or a
    /// command) and checks that the request can work.
    pub fn token_request(&self) -> CliResult<TokenRequest> {
        let mut request = self.request.clone();
        if request.auth_method.needs_secret() {
            request.client_secret =
                Some(read_secret(&self.secret, Secret::ClientSecret, request.auth_method)?.into());
        }
        if request.auth_method.needs_private_key() {
            request.private_key =
                Some(read_secret(&self.key, Secret::PrivateKey, request.auth_method)?.into());
        }
        request.validate()?;
        if let Some(meta) = &self.metadata {
            let alg = request.signer()?.map(|s| s.alg());
            meta.check(request.auth_method, alg)?;
        }
        Ok(request)
    }
}

/// The real clock, unless FRESHTOKEN_CLOCK_SKEW moves it (for tests of expiry and fleets).
pub fn clock_from_env() -> CliResult<SharedClock> {
    if let Some(path) = std::env::var_os(env::CLOCK_SKEW_FILE).filter(|p| !p.is_empty()) {
        return Ok(Arc::new(crate::skew_clock::FileSkewClock::new(path.into())));
    }
    match std::env::var(env::CLOCK_SKEW) {
        Ok(v) if !v.trim().is_empty() => {
            let ahead = parse_duration(&v)
                .map_err(|e| CliError::usage(format!("{}: {e}", env::CLOCK_SKEW)))?;
            Ok(Arc::new(SkewedClock::ahead(ahead)))
        }
        _ => Ok(Arc::new(SystemClock)),
    }
}

/// How high a source ranks: a flag over its environment variable over the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Flag,
    Environment,
    File,
}

/// One setting of the endpoint as given by the highest source that gives it.
struct Part {
    rank: Rank,
    value: String,
    /// How the user named it, for messages: `--token-url`, `FRESHTOKEN_TOKEN_URL`, ….
    name: String,
}

/// How a part of the endpoint is named as a flag, a variable and a profile key.
const TOKEN_URL_NAMES: [&str; 3] = ["--token-url", env::TOKEN_URL, "token_url"];
const ISSUER_NAMES: [&str; 3] = ["--issuer", env::ISSUER, "issuer"];
const PROVIDER_NAMES: [&str; 3] = ["--provider", env::PROVIDER, "provider"];

impl Part {
    fn new(rank: Rank, value: &str, name: String) -> Self {
        Self {
            rank,
            value: value.to_owned(),
            name,
        }
    }

    /// The part as the flag (or, `from_env`, its variable) gives it, else the file.
    fn given(
        arg: &Option<String>,
        from_env: bool,
        [flag, var, key]: [&str; 3],
        file: &Option<String>,
        in_file: &dyn Fn(&str) -> String,
    ) -> Option<Self> {
        match (arg, file) {
            (Some(v), _) if from_env => Some(Self::new(Rank::Environment, v, var.to_owned())),
            (Some(v), _) => Some(Self::new(Rank::Flag, v, flag.to_owned())),
            (None, Some(v)) => Some(Self::new(Rank::File, v, in_file(key))),
            (None, None) => None,
        }
    }
}

/// The token endpoint, taken whole from the highest source that names one.
///
/// The endpoint is where the client's credentials are sent, so it is one unit: a token URL,
/// an issuer, or a provider with its region, all from one source. A lower source cannot
/// replace or complete a part of it (a config file cannot turn the environment's
/// `FRESHTOKEN_PROVIDER=genesys` into its own token URL, nor pick the region); a higher one
/// may choose the region of a provider named lower, which keeps the endpoint a provider's.
#[derive(Debug)]
struct Endpoint {
    token_url: Option<String>,
    issuer: Option<String>,
    /// The provider's region, when the provider is part of the chosen source's endpoint: it
    /// gives the API base (where `proxy` sends the token), and the token URL when that
    /// source names none.
    genesys: Option<GenesysRegion>,
}

impl Endpoint {
    fn resolve(
        args: &CredentialArgs,
        profile: &ProfileConfig,
        use_env: bool,
        in_file: &dyn Fn(&str) -> String,
    ) -> CliResult<Self> {
        let given = |arg, from_env, names, file| Part::given(arg, from_env, names, file, in_file);
        let e = args.from_env;
        let (a, p) = (args, profile);
        let token_url = given(&a.token_url, e.token_url, TOKEN_URL_NAMES, &p.token_url);
        let issuer = given(&a.issuer, e.issuer, ISSUER_NAMES, &p.issuer);
        let provider = given(&a.provider, e.provider, PROVIDER_NAMES, &p.provider);
        let genesys_region = use_env
            .then(|| std::env::var(env::GENESYS_REGION).ok())
            .flatten();
        let provider = provider.or_else(|| {
            // Genesys Cloud's own variable implies its provider when nothing else names an
            // endpoint, so that its users need no flags.
            let alone = token_url.is_none() && issuer.is_none();
            genesys_region
                .as_ref()
                .filter(|_| alone)
                .map(|_| Part::new(Rank::Environment, "genesys", env::GENESYS_REGION.to_owned()))
        });
        let Some(top) = [&token_url, &issuer, &provider]
            .into_iter()
            .flatten()
            .min_by_key(|p| p.rank)
            .map(|p| (p.rank, p.name.clone()))
        else {
            return Ok(Self {
                token_url: None,
                issuer: None,
                genesys: None,
            });
        };
        let keep = |part: Option<Part>| match part {
            Some(p) if p.rank == top.0 => Some(p),
            Some(p) => {
                tracing::info!("{} is not used: {} names the token endpoint", p.name, top.1);
                None
            }
            None => None,
        };
        let (token_url, issuer, provider) = (keep(token_url), keep(issuer), keep(provider));
        let genesys = match provider {
            Some(p) => Some(genesys_region_for(
                &p,
                args,
                profile,
                genesys_region,
                in_file,
            )?),
            None => None,
        };
        Ok(Self {
            token_url: token_url.map(|p| p.value),
            issuer: issuer.map(|p| p.value),
            genesys,
        })
    }
}

/// The region of `provider`, from its own source or a higher one.
fn genesys_region_for(
    provider: &Part,
    args: &CredentialArgs,
    profile: &ProfileConfig,
    genesys_region: Option<String>,
    in_file: &dyn Fn(&str) -> String,
) -> CliResult<GenesysRegion> {
    let p = &provider.value;
    if !(p.eq_ignore_ascii_case("genesys") || p.eq_ignore_ascii_case("genesyscloud")) {
        return Err(CliError::usage(format!(
            "unknown provider {p:?}; known: genesys"
        )));
    }
    let (region_rank, region_name) = if args.from_env.region {
        (Rank::Environment, env::REGION)
    } else {
        (Rank::Flag, "--region")
    };
    let regions = [
        (args.region.clone(), region_rank, region_name.to_owned()),
        (
            genesys_region,
            Rank::Environment,
            env::GENESYS_REGION.to_owned(),
        ),
        (profile.region.clone(), Rank::File, in_file("region")),
    ];
    let mut given = regions
        .iter()
        .filter_map(|(r, rank, name)| Some((r.as_ref()?, *rank, name)));
    if let Some((region, _, _)) = given.clone().find(|(_, rank, _)| *rank <= provider.rank) {
        return GenesysRegion::find(region).map_err(CliError::usage);
    }
    let allowed: Vec<String> = [
        ("--region".to_owned(), Rank::Flag),
        (env::REGION.to_owned(), Rank::Environment),
        (env::GENESYS_REGION.to_owned(), Rank::Environment),
        (in_file("region"), Rank::File),
    ]
    .into_iter()
    .filter(|(_, rank)| *rank <= provider.rank)
    .map(|(name, _)| name)
    .collect();
    let allowed = match allowed.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    // A region given lower (say, in the config file) is named, so that nobody wonders why.
    let ignored = given
        .next()
        .map(|(_, _, name)| format!("; {name} is not used: the endpoint is one unit"))
        .unwrap_or_default();
    Err(CliError::usage(format!(
        "the genesys provider ({}) needs a region (e.g. us-east-1) from {allowed}{ignored}",
        provider.name
    )))
}

/// Which layers besides the config file count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layers {
    FlagsAndEnvironment,
    ConfigOnly,
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

/// Durations as people write them: `30s`, `5m`, `1h30m`, `250ms`, or bare seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("{value:?} is not a duration (try 30s, 5m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() -> Result<(), String> {
        assert_eq!(parse_duration("30")?, Duration::from_secs(30));
        assert_eq!(parse_duration("5m")?, Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
        assert!(
            parse_duration("-5s")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("soon").is_err());
        Ok(())
    }

    #[test]
    fn cache_choices() -> Result<(), CliError> {
        assert_eq!(CacheChoice::parse("memory")?, CacheChoice::Memory);
        assert_eq!(
            CacheChoice::parse("file:/tmp/x")?,
            CacheChoice::File("/tmp/x".into())
        );
        assert!(
            CacheChoice::parse("redis-ish")
                .unwrap_err()
                .message
                .contains("unknown cache")
        );
        assert!(CacheChoice::parse("file:").is_err());
        Ok(())
    }
}

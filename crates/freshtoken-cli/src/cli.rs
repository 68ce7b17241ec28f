//! The command line, as clap sees it. Parsing only: meaning is given in `settings.rs`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::env;
use crate::exit;

const ABOUT: &str = "Keeps OAuth2 access tokens fresh for CI/CD pipelines and long batch jobs.";

const LONG_ABOUT: &str = "\
Keeps OAuth2 access tokens fresh for CI/CD pipelines and long batch jobs.

freshtoken fetches a token with the client credentials grant, caches it (per user on this
machine by default), refreshes it ahead of expiry and hands it to whatever needs it.

Credentials are taken from flags, then FRESHTOKEN_* environment variables, then the config
file (--config PATH or FRESHTOKEN_CONFIG, else $XDG_CONFIG_HOME/freshtoken/config.toml; a
file in the working directory is read only when named; --no-config reads none). The token
endpoint is one unit: the highest of these that names one (token URL, issuer, or provider
and region) gives all of it.
Secrets never go in flags: use FRESHTOKEN_CLIENT_SECRET, --client-secret-file,
--client-secret-stdin, or client_secret = { env | file | command } in the config file.";

/// `freshtoken`: the whole command line.
#[derive(Debug, Parser)]
#[command(name = "freshtoken", version = crate::help::VERSION, about = ABOUT, long_about = LONG_ABOUT, after_help = exit::HELP)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Never shows secrets.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log level: error, warn, info, debug or trace (overrides -v; RUST_LOG also works).
    #[arg(long, global = true, env = env::LOG_LEVEL, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log lines as text (default) or JSON objects, one per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = env::LOG_FORMAT)]
    pub log_format: LogFormat,

    /// Config file (default: $XDG_CONFIG_HOME/freshtoken/config.toml, else
    /// ~/.config/freshtoken/config.toml). A file in the working directory is read only when
    /// named here: in CI the working directory is the code under test. Empty: none.
    // Empty is allowed (clap refuses an empty path): `FRESHTOKEN_CONFIG=` means no file.
    #[arg(long, global = true, env = env::CONFIG, value_name = "PATH",
          value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub config: Option<PathBuf>,

    /// Read no config file at all, whatever --config or FRESHTOKEN_CONFIG say.
    #[arg(long, global = true)]
    pub no_config: bool,

    /// Profile of the config file to use.
    #[arg(long, global = true, env = env::PROFILE, value_name = "NAME")]
    pub profile: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
// Deferred: a command's arguments are built only when it is the one parsed, so that a
// `get` does not allocate the whole command tree (a third of a warm `get`'s instructions).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum Command {
    /// Print a valid access token (and nothing else) on stdout.
    #[command(after_help = crate::help::get())]
    Get(GetArgs),
    /// Decode a JWT (header, claims, time left); says so when a token is opaque.
    #[command(after_help = crate::help::INSPECT)]
    Inspect(InspectArgs),
    /// Show every profile (or the one --profile names): endpoint, cache, token state, expires
    /// in, last fetch, last error and backoff. Never the token.
    #[command(after_help = crate::help::STATUS)]
    Status(StatusArgs),
    /// Drop the cached token of a profile (e.g. after it was revoked).
    #[command(after_help = crate::help::INVALIDATE)]
    Invalidate(CredentialArgs),
    /// Run CMD with a valid token in its environment (and optionally a local proxy).
    #[command(after_help = format!("{}\n\n{EXEC_HELP}", crate::help::exec()))]
    Exec(ExecArgs),
    /// Local reverse proxy: a fresh bearer token on every request, one replay after a 401.
    #[command(after_help = crate::help::PROXY)]
    Proxy(ProxyArgs),
    /// Keep every profile of the config file fresh: sink files, a local token endpoint,
    /// proxies, /metrics. SIGHUP reloads the config, SIGTERM stops.
    #[command(long_about = AGENT_HELP, after_help = crate::help::AGENT)]
    Agent(AgentArgs),
    /// Run a local authorization server and protected API for trying pipelines.
    #[command(after_help = crate::help::DEV_SERVER)]
    DevServer(DevServerArgs),
    /// Show the whole idea end to end against an in-process dev-server.
    #[command(after_help = crate::help::DEMO)]
    Demo(DemoArgs),
    /// Log a person in (authorization code with PKCE through the browser) and keep the
    /// refresh token, so that get, exec, proxy and the agent can use the profile.
    #[command(after_help = LOGIN_HELP)]
    Login(LoginArgs),
    /// Revoke the profile's stored refresh token (RFC 7009) and delete it.
    Logout(CredentialArgs),
    /// Print a DPoP proof (RFC 9449) for one request with the profile's DPoP-bound token,
    /// for `curl -H "DPoP: $(freshtoken dpop-proof --method GET --url URL)"`.
    #[command(after_help = DPOP_PROOF_HELP)]
    DpopProof(DpopProofArgs),
    /// Print a shell completion script: bash, zsh or fish.
    #[command(after_help = crate::help::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Write the man pages (freshtoken.1 and one per command) into DIR; scripts/release.sh
    /// ships them.
    #[command(hide = true)]
    ManPages(ManPagesArgs),
}

const DPOP_PROOF_HELP: &str = "\
The profile says dpop = true (or dpop_key = { file = \"key.pem\" }). The proof carries the hash
(ath) of the profile's current token, so take the token and the proof together:
  TOKEN=$(freshtoken get) && curl -H \"Authorization: DPoP $TOKEN\" \\
    -H \"DPoP: $(freshtoken dpop-proof --method GET --url \"$URL\")\" \"$URL\"
A proof is good for one request (its jti is fresh each time). See docs/sender-constrained.md.";

/// `freshtoken dpop-proof`.
#[derive(Debug, Args)]
pub(crate) struct DpopProofArgs {
    /// The request's method (htm), e.g. GET.
    #[arg(long, value_name = "METHOD")]
    pub method: String,

    /// The request's URL (htu; its query and fragment are left out of the proof).
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// The server's DPoP-Nonce, when it asked for one.
    #[arg(long, value_name = "NONCE")]
    pub nonce: Option<String>,

    /// No ath (no token is fetched): a proof for a token request rather than an API call.
    #[arg(long)]
    pub no_ath: bool,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

const LOGIN_HELP: &str = "\
The profile says grant = \"authorization_code\" (and, where the server matches registered
redirect URIs exactly, redirect_uri = \"http://127.0.0.1:PORT/callback\"). The refresh token is
kept in $XDG_STATE_HOME/freshtoken (else ~/.local/state/freshtoken), mode 0600. See docs/login.md.";

/// `freshtoken login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Use the device flow (RFC 8628) instead of the browser on this machine.
    #[arg(long)]
    pub device: bool,

    /// Do not open a browser; only print the URL.
    #[arg(long)]
    pub no_browser: bool,

    /// `json`: one JSON object per step on stdout (the URL to open, then the outcome).
    #[arg(long, value_enum, default_value_t = LoginFormat::Text)]
    pub format: LoginFormat,

    /// How long to wait for the browser to come back, e.g. 5m.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub wait: String,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// How `login` reports its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LoginFormat {
    /// Sentences on stderr.
    Text,
    /// One JSON object per step on stdout.
    Json,
}

impl Cli {
    /// Parses the command line like [`Parser::try_parse`], and also notes which endpoint
    /// settings came from the environment rather than a flag (see [`EndpointFromEnv`]).
    pub(crate) fn parse_noting_sources() -> Result<Self, clap::Error> {
        // The command tree is freed here even for a one-shot `get`: keeping it saved 80,000
        // instructions but cost 15-20 page faults more (the allocations after it could not
        // reuse its memory), 0.15-0.27 ms of CPU more in all (perf stat, 200 runs each).
        let matches = command().try_get_matches()?;
        let mut cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command()))?;
        if let (Some((_, sub)), Some(credentials)) =
            (matches.subcommand(), cli.command.credentials_mut())
        {
            credentials.from_env = EndpointFromEnv::of(sub);
        }
        Ok(cli)
    }
}

impl Command {
    /// The credential flags of the commands that take them.
    fn credentials_mut(&mut self) -> Option<&mut CredentialArgs> {
        match self {
            Command::Get(a) => Some(&mut a.credentials),
            Command::Inspect(a) => Some(&mut a.credentials),
            Command::Status(a) => Some(&mut a.credentials),
            Command::Invalidate(a) | Command::Logout(a) => Some(a),
            Command::Login(a) => Some(&mut a.credentials),
            Command::Exec(a) => Some(&mut a.credentials),
            Command::Proxy(a) => Some(&mut a.credentials),
            Command::DpopProof(a) => Some(&mut a.credentials),
            Command::Agent(_)
            | Command::DevServer(_)
            | Command::Demo(_)
            | Command::Completions(_)
            | Command::ManPages(_) => None,
        }
    }
}

/// Which endpoint settings came from their `FRESHTOKEN_*` variable rather than a flag.
///
/// clap folds a flag and its variable into one field, but the endpoint is one unit taken
/// from the highest source that names one, so flags and the environment must be told apart:
/// `--provider genesys --region R` is not to be completed by `FRESHTOKEN_TOKEN_URL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EndpointFromEnv {
    pub token_url: bool,
    pub issuer: bool,
    pub provider: bool,
    pub region: bool,
}

impl EndpointFromEnv {
    fn of(matches: &clap::ArgMatches) -> Self {
        // `ids` lists only what was given, so `value_source` is never asked about an id the
        // command does not have (which clap treats as a bug).
        let from_env = |id: &str| {
            matches.ids().any(|i| i.as_str() == id)
                && matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable)
        };
        Self {
            token_url: from_env("token_url"),
            issuer: from_env("issuer"),
            provider: from_env("provider"),
            region: from_env("region"),
        }
    }
}

/// Where the credentials and the token endpoint come from.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Credentials and token endpoint")]
pub(crate) struct CredentialArgs {
    /// Token endpoint URL.
    #[arg(long, env = env::TOKEN_URL, value_name = "URL")]
    pub token_url: Option<String>,

    /// OpenID Connect issuer: the token endpoint is found by discovery.
    #[arg(long, env = env::ISSUER, value_name = "URL")]
    pub issuer: Option<String>,

    /// A known provider that fills in the endpoints: genesys.
    #[arg(long, env = env::PROVIDER, value_name = "NAME")]
    pub provider: Option<String>,

    /// The provider's region, e.g. us-east-1, eu-west-1 (also GENESYSCLOUD_REGION).
    #[arg(long, env = env::REGION, value_name = "REGION")]
    pub region: Option<String>,

    /// The API base URL, where the proxy sends the token (default: the provider's, e.g.
    /// https://api.mypurecloud.com); --upstream overrides it.
    #[arg(long, env = env::API_BASE, value_name = "URL")]
    pub api_base: Option<String>,

    /// OAuth client id (also GENESYSCLOUD_OAUTHCLIENT_ID).
    #[arg(long, env = env::CLIENT_ID, value_name = "ID")]
    pub client_id: Option<String>,

    /// Read the client secret from this file, which must be a regular file (trailing newline
    /// ignored; to pipe the secret in, use --client-secret-stdin).
    #[arg(long, env = env::CLIENT_SECRET_FILE, value_name = "PATH", conflicts_with = "client_secret_stdin")]
    pub client_secret_file: Option<PathBuf>,

    /// Read the client secret from standard input.
    #[arg(long)]
    pub client_secret_stdin: bool,

    /// Client authentication: client_secret_basic (default), client_secret_post,
    /// client_secret_jwt, private_key_jwt, none, client_assertion (a CI identity token, see
    /// --client-assertion-file), tls_client_auth or self_signed_tls_client_auth (mutual TLS,
    /// see --client-cert).
    #[arg(long, env = env::AUTH_METHOD, value_name = "METHOD")]
    pub auth_method: Option<String>,

    /// PEM private key file for private_key_jwt (PKCS#1, PKCS#8 or SEC1; FRESHTOKEN_PRIVATE_KEY
    /// may hold the PEM itself).
    #[arg(long, env = env::PRIVATE_KEY_FILE, value_name = "PATH")]
    pub private_key: Option<PathBuf>,

    /// PEM client certificate file (leaf first) for tls_client_auth and
    /// self_signed_tls_client_auth; the token request goes to the issuer's mTLS endpoint
    /// alias when discovery names one.
    #[arg(long, env = env::CLIENT_CERT_FILE, value_name = "PATH")]
    pub client_cert: Option<PathBuf>,

    /// PEM private key file of --client-cert (PKCS#8, PKCS#1 or SEC1; unencrypted).
    #[arg(long, env = env::CLIENT_KEY_FILE, value_name = "PATH")]
    pub client_key: Option<PathBuf>,

    /// `kid` header of client assertions (may start with "-", as JWK thumbprints do).
    #[arg(long, env = env::KEY_ID, value_name = "KID", allow_hyphen_values = true)]
    pub key_id: Option<String>,

    /// Client assertion algorithm: HS256/384/512 for client_secret_jwt; RS256, PS256, ES256,
    /// ES384 or EdDSA for private_key_jwt (default: follows the key).
    #[arg(long, env = env::SIGNING_ALG, value_name = "ALG")]
    pub signing_alg: Option<String>,

    /// `aud` of client assertions (default: the token endpoint).
    #[arg(long, env = env::ASSERTION_AUDIENCE, value_name = "AUD")]
    pub assertion_audience: Option<String>,

    /// Send the identity token in this file (a CI job's or a pod's OIDC token, read again
    /// for every request) as the client assertion: no client secret. Implies --auth-method
    /// client_assertion.
    #[arg(long, env = env::CLIENT_ASSERTION_FILE, value_name = "PATH", conflicts_with = "client_assertion_from")]
    pub client_assertion_file: Option<PathBuf>,

    /// Like --client-assertion-file, from github[:AUDIENCE] (GitHub Actions' OIDC endpoint),
    /// gitlab:VAR (an id_tokens variable), env:VAR or file:PATH.
    #[arg(long, env = env::CLIENT_ASSERTION_FROM, value_name = "SOURCE")]
    pub client_assertion_from: Option<String>,

    /// Exchange the identity token in this file for the access token (RFC 8693 token
    /// exchange; read again for every request).
    #[arg(long, env = env::SUBJECT_TOKEN_FILE, value_name = "PATH", conflicts_with = "subject_token_from")]
    pub subject_token_file: Option<PathBuf>,

    /// Like --subject-token-file, from github[:AUDIENCE], gitlab:VAR, env:VAR or file:PATH.
    #[arg(long, env = env::SUBJECT_TOKEN_FROM, value_name = "SOURCE")]
    pub subject_token_from: Option<String>,

    /// Scope to request (repeatable, or space-separated).
    #[arg(long, env = env::SCOPE, value_name = "SCOPE", num_args = 1, action = ArgAction::Append)]
    pub scope: Vec<String>,

    /// `audience` parameter (Auth0 and others).
    #[arg(long, env = env::AUDIENCE, value_name = "AUD")]
    pub audience: Option<String>,

    /// `resource` parameter, RFC 8707 (repeatable).
    #[arg(long, env = env::RESOURCE, value_name = "URI", action = ArgAction::Append)]
    pub resource: Vec<String>,

    /// Extra form parameter for the token request (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", action = ArgAction::Append)]
    pub params: Vec<String>,

    /// Token cache: file (default, per user on this machine), file:DIR, or memory (none kept).
    #[arg(long, env = env::CACHE, value_name = "CACHE")]
    pub cache: Option<String>,

    /// Timeout of one token request, e.g. 30s.
    #[arg(long, env = env::TIMEOUT, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Keep retrying a failing token endpoint this long, e.g. 60s (0 = no retries).
    #[arg(long, env = env::RETRY_FOR, value_name = "DURATION")]
    pub retry_for: Option<String>,

    /// PEM file of certificate authorities to trust besides the system's, for a token
    /// endpoint, issuer or upstream behind a private CA. Verification is never turned off.
    #[arg(long, env = env::CA_FILE, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Filled in after parsing by [`Cli::parse_noting_sources`].
    #[arg(skip)]
    pub from_env: EndpointFromEnv,
}

/// Output formats of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The token alone.
    Raw,
    /// {"access_token", "token_type", "expires_in", "expires_at" (RFC 3339),
    /// "expires_at_unix", "scope" (null when not said)}.
    Json,
    /// `Authorization: Bearer <token>`.
    Header,
    /// `FRESHTOKEN_ACCESS_TOKEN='<token>'` lines, single-quoted for POSIX shells (for `eval`
    /// and `set -a; . file`; docker's --env-file and $GITHUB_ENV keep quotes: use raw there).
    Env,
}

/// Output formats of the commands that print data (`status`, `inspect`, `agent --check`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum DataFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document (see docs/json.md for the shapes).
    Json,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for journald, Loki and the like).
    Json,
}

const AGENT_HELP: &str = "\
Keeps every profile of the config file fresh in the background (refresh-ahead with jitter),
writes each profile's sinks (files holding its token, replaced whole, removed or emptied
once the token expires with no new one), serves a local endpoint, and runs the [[proxy]]
entries.

Endpoint, on a unix socket of mode 0600 ([agent] socket, default
$XDG_RUNTIME_DIR/freshtoken/agent.sock, else /tmp/freshtoken-<uid>/agent.sock; its folder must
be yours, mode 0700, not a symlink: made so when missing, else the agent exits 2) and, if
[agent] listen is set, on loopback TCP, where every request must name that address in its
Host (421 otherwise) and a token request needs `Authorization: Bearer` and the credential the
agent writes at each start to the 0600 file beside its socket, SOCKET.credential (401 without
it):
  GET /v1/token/<profile>?min_ttl=60s   the token as JSON (or raw with Accept: text/plain);
                                        404 unknown profile, 400 min_ttl not below the
                                        tokens' lifetime, 503 no valid token (with why;
                                        Retry-After when a min_ttl beyond the held token's
                                        waits for the next early fetch)
  GET /healthz    the process is alive
  GET /readyz     every profile holds a valid token and its sinks hold one too (503 lists
                  those that do not, and why)
  GET /metrics    Prometheus text: token requests by profile and outcome, seconds until
                  expiry, refresh latency, sink writes, proxy requests and 401 replays

Signals: SIGHUP re-reads the config and the secrets it names (profiles added, changed,
removed, or whose secret changed; a config that does not parse keeps the running one, and
says why); SIGTERM or SIGINT stops: proxies drain,
sinks are removed or emptied (nothing keeps them fresh any more), exit 0.

`freshtoken get --agent` asks the agent first and falls back to its own fetch. The TCP port
and the [[proxy]] entries disconnect a client that has not sent a request head within 10 s.";

/// `freshtoken agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Check the config (profiles, secrets, sinks, proxies) and get one token per profile,
    /// then exit, starting nothing; a profile whose token cannot be had fails the check
    /// with its exit code (3 for a client the server rejects) and its name.
    #[arg(long)]
    pub check: bool,

    /// With --check: check the config only, without asking for tokens (for a machine that
    /// cannot reach the token endpoints yet).
    #[arg(long, requires = "check")]
    pub no_fetch: bool,

    /// With --check: the outcome as text or as one JSON document.
    #[arg(long, value_enum, default_value_t = DataFormat::Text, requires = "check")]
    pub format: DataFormat,
}

/// `freshtoken get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The printed token stays valid at least this long, e.g. 10m (refreshed first if needed).
    #[arg(long, value_name = "DURATION")]
    pub min_ttl: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Raw)]
    pub format: Format,

    /// With --format env: the variable that holds the token (default
    /// FRESHTOKEN_ACCESS_TOKEN), e.g. GENESYSCLOUD_ACCESS_TOKEN.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Option<String>,

    /// Ask a running `freshtoken agent` first (on SOCKET, default the config's [agent]
    /// socket or $XDG_RUNTIME_DIR/freshtoken/agent.sock; or on its loopback TCP port,
    /// http://127.0.0.1:PORT, sending the credential the agent wrote beside that socket);
    /// fetch directly if it cannot answer, or is not yours (socket folder not yours and 0700,
    /// or served by another user).
    #[arg(long, value_name = "SOCKET|URL", num_args = 0..=1)]
    #[allow(clippy::option_option)]
    pub agent: Option<Option<std::path::PathBuf>>,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `freshtoken inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The token, or - to read it from stdin. Without it: the profile's cached token.
    #[arg(value_name = "TOKEN|-")]
    pub token: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = DataFormat::Text)]
    pub format: DataFormat,

    /// Same as --format json.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `freshtoken status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = DataFormat::Text)]
    pub format: DataFormat,

    /// Same as --format json.
    #[arg(long)]
    pub json: bool,

    /// Show what a running `freshtoken agent` holds instead, per profile (state, expires in,
    /// fingerprint, last error; never a token) and proxy (the address bound): on SOCKET
    /// (default the config's [agent] socket or $XDG_RUNTIME_DIR/freshtoken/agent.sock) or
    /// its loopback TCP port, http://127.0.0.1:PORT, with the credential beside that socket.
    /// Exit 4 when no agent of yours answers.
    #[arg(long, value_name = "SOCKET|URL", num_args = 0..=1)]
    #[allow(clippy::option_option)]
    pub agent: Option<Option<std::path::PathBuf>>,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

const EXEC_HELP: &str = "\
CMD gets the token, not the credentials: FRESHTOKEN_CLIENT_SECRET, GENESYSCLOUD_OAUTHCLIENT_SECRET,
FRESHTOKEN_PRIVATE_KEY, FRESHTOKEN_REDIS_PASSWORD, every variable a `{ env = ... }` source of the
config file names, and FRESHTOKEN_CACHE when its URL holds a password are removed from its
environment.

Exit status: CMD's own exit code (128+N if a signal N ended it); 126 if CMD is there but
cannot be run (not executable, a folder); 127 if it is not found; otherwise the codes of `freshtoken get` (2 usage, 3 rejected, 4 unavailable, 5 internal).";

/// `freshtoken exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The token handed to CMD stays valid at least this long [default: min(5m, half the
    /// server's token lifetime); with --proxy, no minimum, as the proxy keeps CMD's requests
    /// fresh]. A value longer than the server's tokens live is an error (exit 2).
    #[arg(long, value_name = "DURATION")]
    pub min_ttl: Option<String>,

    /// Environment variable that receives the token (repeatable; default FRESHTOKEN_ACCESS_TOKEN).
    #[arg(long = "env", value_name = "NAME", action = ArgAction::Append)]
    pub env: Vec<String>,

    /// Also run the proxy for CMD's whole life on an ephemeral loopback port, and put its URL
    /// in FRESHTOKEN_PROXY_URL (or --proxy-env): a CMD that runs for hours keeps working.
    #[arg(long)]
    pub proxy: bool,

    /// Environment variable that receives the proxy's URL (repeatable).
    #[arg(long, value_name = "NAME", action = ArgAction::Append, requires = "proxy")]
    pub proxy_env: Vec<String>,

    /// With --proxy: where the proxy forwards (default: the provider's API base); https, or
    /// http to loopback only.
    // Not `requires = "proxy"`: a FRESHTOKEN_UPSTREAM set for a whole pipeline must not break
    // the steps that run exec without a proxy.
    #[arg(long, value_name = "URL", env = env::UPSTREAM)]
    pub upstream: Option<String>,

    /// With --proxy: present this PEM client certificate to the upstream when it asks for
    /// one, for tokens bound to it (see `proxy --help`).
    #[arg(long, value_name = "PATH", requires_all = ["proxy", "upstream_client_key"])]
    pub upstream_client_cert: Option<PathBuf>,

    /// With --proxy: the PEM private key of --upstream-client-cert.
    #[arg(long, value_name = "PATH", requires = "upstream_client_cert")]
    pub upstream_client_key: Option<PathBuf>,

    /// With --proxy: the proxy is also CMD's gateway (see `proxy --help`), and CMD gets
    /// GENESYSCLOUD_GATEWAY_HOST, _PORT and _PROTOCOL naming it, as the Genesys Cloud
    /// Terraform provider reads them, with GENESYSCLOUD_OAUTHCLIENT_ID and a stand-in
    /// GENESYSCLOUD_OAUTHCLIENT_SECRET that only this gateway accepts, for this run.
    #[command(flatten)]
    pub gateway: GatewayArgs,

    #[command(flatten)]
    pub credentials: CredentialArgs,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `freshtoken proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: String,

    /// Where every request goes (default: the provider's API base); https, or http to
    /// loopback only (the token is on every request).
    #[arg(long, value_name = "URL", env = env::UPSTREAM)]
    pub upstream: Option<String>,

    /// Request bodies up to this size are kept so that they can be replayed after a 401.
    #[arg(long, default_value = "1MiB", value_name = "SIZE")]
    pub replay_limit: String,

    /// Allow listening on an address other than loopback (anyone who can reach it gets
    /// requests made with your token).
    #[arg(long)]
    pub allow_remote: bool,

    /// Also answer requests whose Host is NAME (on the listen port) or NAME:PORT (repeatable).
    /// Without it only the listen address is answered (127.0.0.1:P, localhost:P, [::1]:P on
    /// loopback); any other Host gets 421 and nothing is forwarded, so that a web page
    /// rebinding its DNS name to this machine cannot use the token.
    #[arg(long, value_name = "NAME[:PORT]", action = ArgAction::Append)]
    pub allow_host: Vec<String>,

    /// A client that has not sent a whole request head this long after connecting (or after
    /// its last answer) is disconnected, and one whose request body (up to --replay-limit)
    /// takes longer than this gets 408; at most 30s.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub header_timeout: String,

    /// Client connections open at once; at the cap one WARN line is logged and new ones wait
    /// in the kernel's backlog until one closes.
    #[arg(long, default_value_t = freshtoken_proxy::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,

    /// How long in-flight requests may finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub grace: String,

    /// Serving threads, each with its own event loop and upstream connections (default: one per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Present this PEM client certificate to the upstream when it asks for one: an API that
    /// binds tokens to a certificate (RFC 8705, cnf.x5t#S256) accepts them only from its
    /// holder. Usually the profile's own --client-cert.
    #[arg(long, value_name = "PATH", requires = "upstream_client_key")]
    pub upstream_client_cert: Option<PathBuf>,

    /// The PEM private key of --upstream-client-cert (read with the same checks as secrets).
    #[arg(long, value_name = "PATH", requires = "upstream_client_cert")]
    pub upstream_client_key: Option<PathBuf>,

    #[command(flatten)]
    pub gateway: GatewayArgs,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// `--gateway`: the proxy as the gateway of tools that authenticate themselves.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Gateway, for tools that log in themselves")]
pub(crate) struct GatewayArgs {
    /// Also answer POST <login prefix>/oauth/token (client_credentials) with the shared fresh
    /// token and its true expires_in, so that tools that authenticate themselves (the Genesys
    /// Cloud SDKs, CX as Code, gc) make no token request of their own: give them the proxy as
    /// their gateway. Only the profile's own client id and secret are let in; other login
    /// paths get 404.
    #[arg(long)]
    pub gateway: bool,

    /// The login paths' prefix the tools are given (their path_params_login), e.g. login;
    /// default none.
    #[arg(long, value_name = "PATH", default_value = "", requires = "gateway")]
    pub gateway_login_prefix: String,

    /// The API paths' prefix the tools are given (their path_params_api), removed before
    /// forwarding; default none.
    #[arg(long, value_name = "PATH", default_value = "", requires = "gateway")]
    pub gateway_api_prefix: String,
}

/// `freshtoken dev-server`.
#[derive(Debug, Args)]
pub(crate) struct DevServerArgs {
    /// Address to listen on (loopback only; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: String,

    /// Lifetime of the tokens it issues, e.g. 3s or 1h.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub ttl: String,

    /// Register a client as ID:SECRET (repeatable; default dev-client:dev-secret). Test
    /// credentials only: they show in the process list.
    #[arg(long = "client", value_name = "ID:SECRET", action = ArgAction::Append)]
    pub clients: Vec<String>,

    /// Register a private_key_jwt client as ID:PUBLIC_KEY_PEM_FILE (repeatable).
    #[arg(long = "client-key", value_name = "ID:PEM_FILE", action = ArgAction::Append)]
    pub client_keys: Vec<String>,

    /// Issue refresh tokens (rotated on every use) and accept the refresh_token grant.
    #[arg(long)]
    pub refresh_tokens: bool,

    /// Switch on a fault: outage, outage-next=N, rate-limit=SECS, throttle=SECS, delay=MS,
    /// reject-api, dpop-nonce[=EVERY] (DPoP proofs need the server's nonce, a new one after
    /// every EVERY accepted), dpop-wrong-jkt (repeatable; also settable at run time with POST
    /// /__faults).
    #[arg(long = "fault", value_name = "FAULT", action = ArgAction::Append)]
    pub faults: Vec<String>,

    /// Also be a CI identity issuer (at /ci, GitHub Actions-style) whose tokens for AUDIENCE
    /// stand for CLIENT, as a client assertion or a token exchange's subject (repeatable).
    #[arg(long = "ci-federation", value_name = "CLIENT:AUDIENCE", action = ArgAction::Append)]
    pub ci_federations: Vec<String>,

    /// Lifetime of the CI issuer's identity tokens.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub ci_ttl: String,
}

/// `freshtoken demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Lifetime of the demo's tokens.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub ttl: String,

    /// How long the bulk job runs.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: String,

    /// API calls to make in all.
    #[arg(long, default_value_t = 600)]
    pub calls: u32,

    /// Concurrent workers making the calls.
    #[arg(long, default_value_t = 4)]
    pub workers: u32,
}

/// `freshtoken completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// bash (bash-completion or `source`).
    Bash,
    /// zsh (a `_freshtoken` file on $fpath).
    Zsh,
    /// fish (~/.config/fish/completions).
    Fish,
}

/// The global options that do not apply to a command, hidden from its help and completions.
const NOT_FOR: [(&str, &[&str]); 4] = [
    ("demo", &["config", "no_config", "profile"]),
    ("dev-server", &["config", "no_config", "profile"]),
    ("completions", &["config", "no_config", "profile"]),
    ("man-pages", &["config", "no_config", "profile"]),
];

/// The command line as help, completions and man pages show it: [`Cli::command`] with the
/// global options that do not apply to a command left out of that command's help.
pub(crate) fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (name, ids) in NOT_FOR {
        // A subcommand that has an argument of a global's id keeps its own: a hidden copy
        // (same parser, same type) stands in for the global there.
        let copies: Vec<clap::Arg> = ids
            .iter()
            .filter_map(|id| cmd.get_arguments().find(|a| a.get_id() == *id))
            .map(|a| a.clone().global(false).hide(true))
            .collect();
        cmd = cmd.mut_subcommand(name, |sub| sub.args(copies));
    }
    cmd
}

/// `freshtoken man-pages`.
#[derive(Debug, Args)]
pub(crate) struct ManPagesArgs {
    /// The folder the pages are written into (made if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

//! The config file: TOML, strict (an unknown key is an error naming file, line and column).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use freshtoken::internal::regular_file::{self, Symlinks};
use serde::Deserialize;

use crate::exit::{CliError, CliResult};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// Named profiles; `default` is used when no profile is named.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Where `freshtoken agent` serves its endpoint.
    #[serde(default)]
    pub agent: AgentConfig,
    /// Proxies that `freshtoken agent` runs, one per `[[proxy]]`.
    #[serde(default)]
    pub proxy: Vec<ProxyConfig>,
}

/// `[agent]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentConfig {
    /// The token endpoint's unix socket (default `$XDG_RUNTIME_DIR/freshtoken/agent.sock`).
    pub socket: Option<PathBuf>,
    /// A loopback TCP address serving the token endpoint, `/metrics`, `/healthz`, `/readyz`.
    pub listen: Option<String>,
}

/// One `[[proxy]]`: the same proxy as `freshtoken proxy`, kept by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyConfig {
    /// The profile whose token it sets.
    pub profile: String,
    /// Loopback address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Where requests go; defaults to the provider's API base.
    pub upstream: Option<String>,
    /// Largest request body kept for a replay after a 401 (default 1MiB).
    pub replay_limit: Option<String>,
    /// `Host` names answered besides the listen address, `NAME` or `NAME:PORT`.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Also answer `POST <gateway_login_prefix>/oauth/token` for the profile's own client,
    /// as `proxy --gateway` does.
    #[serde(default)]
    pub gateway: bool,
    /// The login paths' prefix of a gateway (default none).
    pub gateway_login_prefix: Option<String>,
    /// The API paths' prefix of a gateway, removed before forwarding (default none).
    pub gateway_api_prefix: Option<String>,
    /// A PEM client certificate presented to the upstream, for certificate-bound tokens
    /// (with `upstream_client_key`), as `proxy --upstream-client-cert` does.
    pub upstream_client_cert: Option<PathBuf>,
    /// The PEM private key of `upstream_client_cert`.
    pub upstream_client_key: Option<PathBuf>,
}

/// One `[[profiles.NAME.sinks]]`: a file the agent keeps holding the profile's token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub format: SinkFormat,
    /// With `format = "template"`: the text, with `{{access_token}}` and the like.
    pub template: Option<String>,
    /// With `format = "env"`: the variable's name (default FRESHTOKEN_ACCESS_TOKEN).
    pub env_name: Option<String>,
    /// Octal file mode (default "0600").
    pub mode: Option<String>,
    /// What happens once the token expires with no new one: `remove` (default) or `empty`.
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

/// How a sink holds the token.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SinkFormat {
    /// The token alone.
    #[default]
    Raw,
    /// `{"access_token", "expires_at" (RFC 3339), "expires_at_unix", "expires_in", "scope", "token_type"}`.
    Json,
    /// `NAME='token'` and `FRESHTOKEN_EXPIRES_AT=…` lines, quoted for POSIX shells.
    Env,
    /// The `template` text with its placeholders filled in.
    Template,
}

/// What a sink becomes when its token expires.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnExpiry {
    /// The file is removed.
    #[default]
    Remove,
    /// The file is kept, empty.
    Empty,
}

/// One profile: how to get one client's token.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileConfig {
    pub token_url: Option<String>,
    /// OpenID Connect issuer; the token endpoint comes from discovery.
    pub issuer: Option<String>,
    /// A known provider: `genesys`.
    pub provider: Option<String>,
    /// The provider's region.
    pub region: Option<String>,
    /// The API base URL (default: the provider's).
    pub api_base: Option<String>,
    /// PEM private key for `private_key_jwt`.
    pub private_key: Option<SecretSource>,
    /// PEM client certificate (leaf first) for `tls_client_auth` and
    /// `self_signed_tls_client_auth`.
    pub client_certificate: Option<SecretSource>,
    /// The PEM private key of `client_certificate`.
    pub client_key: Option<SecretSource>,
    pub key_id: Option<String>,
    pub signing_alg: Option<String>,
    pub assertion_audience: Option<String>,
    /// Lifetime of client assertions (default 60s).
    pub assertion_lifetime: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretSource>,
    pub auth_method: Option<String>,
    pub scope: Option<OneOrMany>,
    pub audience: Option<String>,
    pub resource: Option<OneOrMany>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub cache: Option<String>,
    /// Fleet-wide token-request budget in the Redis cache, `N/period` (e.g. `300/min`).
    pub token_rate: Option<String>,
    pub timeout: Option<String>,
    pub retry_for: Option<String>,
    /// PEM file of certificate authorities trusted besides the platform's.
    pub ca_file: Option<PathBuf>,
    /// Lifetime assumed when the server gives no expiry at all.
    pub default_lifetime: Option<String>,
    /// Fraction of the lifetime after which a refresh starts (default 0.75).
    pub refresh_at: Option<f64>,
    /// Largest random jitter subtracted from `refresh_at`, as a fraction (default 0.05).
    pub refresh_jitter: Option<f64>,
    /// Callers wait for a new token when less than min(this, fraction × lifetime) is left.
    pub refresh_margin_max: Option<String>,
    /// See `refresh_margin_max` (default 0.10).
    pub refresh_margin_fraction: Option<f64>,
    /// Files `freshtoken agent` keeps holding this profile's token (other commands ignore them).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// `client_credentials` (the default), `token_exchange` (RFC 8693, see docs/ci.md), or a
    /// person's login: `authorization_code`, `device_code` (see docs/login.md).
    pub grant: Option<String>,
    /// The redirect URI of the code flow, exactly as registered (a loopback http URL).
    pub redirect_uri: Option<String>,
    /// Where the browser logs in, over discovery's and the provider's.
    pub authorization_endpoint: Option<String>,
    /// The device flow's endpoint (RFC 8628), over discovery's.
    pub device_authorization_endpoint: Option<String>,
    /// Where `logout` revokes the refresh token (RFC 7009), over discovery's.
    pub revocation_endpoint: Option<String>,
    /// The identity token sent as the client assertion (`auth_method = "client_assertion"`).
    pub client_assertion: Option<IdentitySource>,
    /// The token exchange's subject token.
    pub subject_token: Option<IdentitySource>,
    /// Its type (default `urn:ietf:params:oauth:token-type:jwt`).
    pub subject_token_type: Option<String>,
    /// The type of token asked for; the answer's `issued_token_type` must be it.
    pub requested_token_type: Option<String>,
    /// The token exchange's optional actor token.
    pub actor_token: Option<IdentitySource>,
    /// Its type (default `urn:ietf:params:oauth:token-type:jwt`).
    pub actor_token_type: Option<String>,
    /// The key that seals this profile's tokens in Redis (`{ env }` or `{ file }`), for a
    /// profile with neither a client secret nor a private key to derive it from.
    pub cache_key: Option<SecretSource>,
    /// DPoP (RFC 9449): `true` binds the profile's tokens to a key made for it and kept in
    /// the state folder; see docs/sender-constrained.md.
    pub dpop: Option<bool>,
    /// The DPoP key to use instead of a made one: a P-256 private key in PEM (`{ file }`,
    /// `{ env }` or `{ command }`). Implies `dpop = true`.
    pub dpop_key: Option<SecretSource>,
    /// The algorithm of a made DPoP key: `ES256` (the default) or `EdDSA`.
    pub dpop_alg: Option<String>,
}

impl ProfileConfig {
    /// What decides which tokens the profile gets: everything but the sinks. Two profiles
    /// with equal credentials get the same tokens (the agent keeps a source across a reload
    /// that changed only the sinks).
    pub(crate) fn credentials(&self) -> ProfileConfig {
        ProfileConfig {
            sinks: Vec::new(),
            ..self.clone()
        }
    }
}

/// A string or a list of strings (`scope = "a b"` or `scope = ["a", "b"]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// Split into items, space-separated strings included.
    pub(crate) fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => s.split_whitespace().map(str::to_owned).collect(),
            OneOrMany::Many(v) => v
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// Where a secret comes from. A plain string is refused: secrets do not belong in files
/// that get committed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub(crate) enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline ignored).
    File(PathBuf),
    /// A program's standard output, e.g. `["vault", "kv", "get", "-field=secret", "ci/app"]`.
    Command(Vec<String>),
}

const SECRET_SHAPES: &str =
    "a secret must be { env = \"VAR\" }, { file = \"PATH\" } or { command = [\"prog\", \"arg\"] }";

impl TryFrom<toml::Value> for SecretSource {
    type Error = String;

    // Hand-written so that no error message can echo the value: it may be the secret itself.
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let table = match value {
            toml::Value::Table(t) => t,
            toml::Value::String(_) => {
                return Err(format!(
                    "{SECRET_SHAPES}, not a plain string: secrets do not belong in config files"
                ));
            }
            _ => return Err(SECRET_SHAPES.to_owned()),
        };
        let mut entries = table.into_iter();
        let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
            return Err(format!("{SECRET_SHAPES} (exactly one of them)"));
        };
        match (kind.as_str(), value) {
            ("env", toml::Value::String(v)) if !v.is_empty() => Ok(SecretSource::Env(v)),
            ("file", toml::Value::String(p)) if !p.is_empty() => {
                Ok(SecretSource::File(PathBuf::from(p)))
            }
            ("command", toml::Value::Array(items)) if !items.is_empty() => items
                .into_iter()
                .map(|i| match i {
                    toml::Value::String(s) => Ok(s),
                    _ => Err("command = [...] must be a list of strings".to_owned()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(SecretSource::Command),
            (other, _) if !["env", "file", "command"].contains(&other) => {
                Err(format!("{SECRET_SHAPES}; `{other}` is not one of them"))
            }
            _ => Err(SECRET_SHAPES.to_owned()),
        }
    }
}

/// Where a CI job's (or a pod's) identity token comes from; obtained again for every token
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub(crate) enum IdentitySource {
    /// GitHub Actions' endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`), for this audience.
    GithubActions { audience: Option<String> },
    /// A GitLab CI `id_tokens:` variable.
    Gitlab { env: String },
    /// A file read again each time (a Kubernetes projected service-account token).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A program's standard output, bounded like secret commands.
    Command(Vec<String>),
}

const IDENTITY_SHAPES: &str = "an identity token source must be { github_actions = { audience = \"AUD\" } }, { gitlab = { env = \"VAR\" } }, { file = \"PATH\" }, { env = \"VAR\" } or { command = [\"prog\", \"arg\"] }";

impl TryFrom<toml::Value> for IdentitySource {
    type Error = String;

    // Hand-written, as for secrets, so that no message echoes a value (it may be a token).
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let toml::Value::Table(table) = value else {
            return Err(IDENTITY_SHAPES.to_owned());
        };
        let mut entries = table.into_iter();
        let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
            return Err(format!("{IDENTITY_SHAPES} (exactly one of them)"));
        };
        let text = |v: toml::Value| match v {
            toml::Value::String(s) if !s.is_empty() => Ok(s),
            _ => Err(IDENTITY_SHAPES.to_owned()),
        };
        let field = |v: toml::Value, name: &str| match v {
            toml::Value::Table(mut t) => {
                let found = t.remove(name).map(text).transpose()?;
                match t.keys().next() {
                    Some(other) => Err(format!("{IDENTITY_SHAPES}; `{other}` is not a key there")),
                    None => Ok(found),
                }
            }
            _ => Err(IDENTITY_SHAPES.to_owned()),
        };
        match kind.as_str() {
            "github_actions" => Ok(IdentitySource::GithubActions {
                audience: field(value, "audience")?,
            }),
            "gitlab" => match field(value, "env")? {
                Some(env) => Ok(IdentitySource::Gitlab { env }),
                None => Err("gitlab = { env = \"VAR\" } names the id_tokens variable".to_owned()),
            },
            "file" => text(value).map(|p| IdentitySource::File(PathBuf::from(p))),
            "env" => text(value).map(IdentitySource::Env),
            "command" => match value {
                toml::Value::Array(items) if !items.is_empty() => items
                    .into_iter()
                    .map(text)
                    .collect::<Result<Vec<_>, _>>()
                    .map(IdentitySource::Command),
                _ => Err(IDENTITY_SHAPES.to_owned()),
            },
            other => Err(format!("{IDENTITY_SHAPES}; `{other}` is not one of them")),
        }
    }
}

/// The file's path and contents.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub path: PathBuf,
    pub file: ConfigFile,
}

/// Which config file a command reads.
///
/// A file in the working directory is never read unless named: in CI the working directory
/// is the code under test, and a pull request could otherwise add a `freshtoken.toml` that
/// sends the pipeline's credentials elsewhere or runs a "secret" command of its choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice<'a> {
    /// Named with `--config` or `FRESHTOKEN_CONFIG`: it must exist.
    Named(&'a Path),
    /// The user's own, `$XDG_CONFIG_HOME/freshtoken/config.toml` (else
    /// `~/.config/freshtoken/config.toml`), when it exists.
    Default,
    /// None: `--no-config`, or `FRESHTOKEN_CONFIG` (or `--config`) set empty.
    Nothing,
}

impl<'a> Choice<'a> {
    /// The choice `--config` (`named`, which clap fills from `FRESHTOKEN_CONFIG` too) and
    /// `--no-config` make.
    pub(crate) fn new(named: Option<&'a Path>, no_config: bool) -> Self {
        match named {
            _ if no_config => Choice::Nothing,
            Some(path) if path.as_os_str().is_empty() => Choice::Nothing,
            Some(path) => Choice::Named(path),
            None => Choice::Default,
        }
    }
}

/// Reads the config file `choice` names; `None` when there is none.
pub(crate) fn load(choice: Choice<'_>) -> CliResult<Option<Loaded>> {
    match choice {
        Choice::Named(path) => read(path).map(Some),
        Choice::Nothing => Ok(None),
        Choice::Default => match default_path() {
            Some(path) if path.is_file() => read(&path).map(Some),
            _ => Ok(None),
        },
    }
}

/// `$XDG_CONFIG_HOME/freshtoken/config.toml`, else `$HOME/.config/freshtoken/config.toml`.
fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("freshtoken").join("config.toml"))
}

/// Largest config file read. One with hundreds of profiles is a few dozen KiB, but a sink
/// template may be large (the agent's tests write 32 MiB ones); the cap only stops a file
/// that never ends.
const MAX_CONFIG: u64 = 64 * 1024 * 1024;

fn read(path: &Path) -> CliResult<Loaded> {
    let cannot =
        |e: String| CliError::usage(format!("cannot read config file {}: {e}", path.display()));
    // A regular file only, opened without blocking: a FIFO would hang the read for good.
    let bytes = regular_file::read(path, MAX_CONFIG, Symlinks::Follow)
        .map_err(|e| cannot(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".into()))?;
    parse(&text, path).map(|file| Loaded {
        path: path.to_owned(),
        file,
    })
}

/// Parses `text`; errors read `PATH:LINE:COL: what is wrong`.
pub(crate) fn parse(text: &str, path: &Path) -> CliResult<ConfigFile> {
    toml::from_str::<ConfigFile>(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let mut start = span.start.min(text.len());
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let before = &text[..start];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(":{line}:{col}")
            })
            .unwrap_or_default();
        let message = e.message().trim().replace('\n', " ");
        CliError::usage(format!("{}{at}: {message}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("f.toml")).unwrap_err().message
    }

    #[test]
    fn reads_the_documented_shape() -> Result<(), Box<dyn std::error::Error>> {
        let f = parse(
            r#"
[profiles.default]
token_url = "https://login.mypurecloud.com/oauth/token"
client_id = "abc"
client_secret = { env = "GENESYS_SECRET" }
scope = ["a", "b c"]

[profiles.other]
client_secret = { command = ["pass", "show", "ci"] }
params = { tenant = "t1" }
"#,
            Path::new("f.toml"),
        )?;
        let d = &f.profiles["default"];
        assert_eq!(
            d.scope.as_ref().ok_or("no scope read")?.items(),
            ["a", "b", "c"]
        );
        assert!(matches!(d.client_secret, Some(SecretSource::Env(ref v)) if v == "GENESYS_SECRET"));
        assert_eq!(f.profiles["other"].params["tenant"], "t1");
        Ok(())
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let e = parse_err("[profiles.default]\nclient_id = \"a\"\ntokn_url = \"x\"\n");
        assert!(e.starts_with("f.toml:3:1: unknown field `tokn_url`"), "{e}");
        let e = parse_err("[profile.default]\n");
        assert!(e.starts_with("f.toml:1:2: unknown field `profile`"), "{e}");
    }

    #[test]
    fn plain_secrets_and_bad_syntax_are_refused() {
        let e = parse_err("[profiles.default]\nclient_secret = \"hunter2\"\n");
        assert!(e.starts_with("f.toml:2:17:"), "{e}");
        assert!(!e.contains("hunter2"), "the secret must not be echoed: {e}");
        let e = parse_err("[profiles.default\n");
        assert!(e.starts_with("f.toml:1:"), "{e}");
    }

    #[test]
    fn damaged_configs_never_panic_and_errors_stay_on_one_line() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let seed = "[profiles.default]\ntoken_url = \"https://x/t\"\nclient_id = \"a\"\nclient_secret = { command = [\"p\", \"q\"] }\nscope = [\"a\", \"b\"]\nrefresh_at = 0.5\nparams = { k = \"v\" }\n";
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..5_000 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => {
                        let pool = b"[]{}=\"'\n.,#x0";
                        bytes[i] = pool[rng.random_range(0..pool.len())];
                    }
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = parse(&text, Path::new("f.toml")) {
                assert!(!e.message.contains('\n'), "{}", e.message);
                assert!(e.message.starts_with("f.toml"), "{}", e.message);
            }
        }
    }
}

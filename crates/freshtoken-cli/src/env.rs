//! Environment variable names, in one place so that help, docs and code agree.

/// Token endpoint URL.
pub(crate) const TOKEN_URL: &str = "FRESHTOKEN_TOKEN_URL";
/// Client id.
pub(crate) const CLIENT_ID: &str = "FRESHTOKEN_CLIENT_ID";
/// Client secret (the only way to pass a secret through the environment).
pub(crate) const CLIENT_SECRET: &str = "FRESHTOKEN_CLIENT_SECRET";
/// A file holding the client secret.
pub(crate) const CLIENT_SECRET_FILE: &str = "FRESHTOKEN_CLIENT_SECRET_FILE";
/// OIDC issuer, for discovery of the token endpoint.
pub(crate) const ISSUER: &str = "FRESHTOKEN_ISSUER";
/// A known provider (`genesys`).
pub(crate) const PROVIDER: &str = "FRESHTOKEN_PROVIDER";
/// The provider's region.
pub(crate) const REGION: &str = "FRESHTOKEN_REGION";
/// A PEM private key's contents, for `private_key_jwt`.
pub(crate) const PRIVATE_KEY: &str = "FRESHTOKEN_PRIVATE_KEY";
/// A PEM private key file, for `private_key_jwt`.
pub(crate) const PRIVATE_KEY_FILE: &str = "FRESHTOKEN_PRIVATE_KEY_FILE";
/// A PEM client certificate file, for `tls_client_auth` and `self_signed_tls_client_auth`.
pub(crate) const CLIENT_CERT_FILE: &str = "FRESHTOKEN_CLIENT_CERT_FILE";
/// The PEM private key file of that certificate.
pub(crate) const CLIENT_KEY_FILE: &str = "FRESHTOKEN_CLIENT_KEY_FILE";
/// `kid` of client assertions.
pub(crate) const KEY_ID: &str = "FRESHTOKEN_KEY_ID";
/// Algorithm of client assertions.
pub(crate) const SIGNING_ALG: &str = "FRESHTOKEN_SIGNING_ALG";
/// `aud` of client assertions.
pub(crate) const ASSERTION_AUDIENCE: &str = "FRESHTOKEN_ASSERTION_AUDIENCE";
/// `--client-assertion-file`.
pub(crate) const CLIENT_ASSERTION_FILE: &str = "FRESHTOKEN_CLIENT_ASSERTION_FILE";
/// `--client-assertion-from`.
pub(crate) const CLIENT_ASSERTION_FROM: &str = "FRESHTOKEN_CLIENT_ASSERTION_FROM";
/// `--subject-token-file`.
pub(crate) const SUBJECT_TOKEN_FILE: &str = "FRESHTOKEN_SUBJECT_TOKEN_FILE";
/// `--subject-token-from`.
pub(crate) const SUBJECT_TOKEN_FROM: &str = "FRESHTOKEN_SUBJECT_TOKEN_FROM";
/// Genesys Cloud's own variables, as its Terraform provider and CLI read them.
pub(crate) const GENESYS_CLIENT_ID: &str = "GENESYSCLOUD_OAUTHCLIENT_ID";
/// See [`GENESYS_CLIENT_ID`].
pub(crate) const GENESYS_CLIENT_SECRET: &str = "GENESYSCLOUD_OAUTHCLIENT_SECRET";
/// See [`GENESYS_CLIENT_ID`].
pub(crate) const GENESYS_REGION: &str = "GENESYSCLOUD_REGION";
/// The token, as Genesys Cloud's Terraform provider and `gc` read it (`exec` sets it under
/// the Genesys provider).
pub(crate) const GENESYS_ACCESS_TOKEN: &str = "GENESYSCLOUD_ACCESS_TOKEN";
/// Where the Genesys Cloud Terraform provider finds its gateway (`exec --proxy --gateway`
/// sets them for CMD).
pub(crate) const GENESYS_GATEWAY_HOST: &str = "GENESYSCLOUD_GATEWAY_HOST";
/// See [`GENESYS_GATEWAY_HOST`].
pub(crate) const GENESYS_GATEWAY_PORT: &str = "GENESYSCLOUD_GATEWAY_PORT";
/// See [`GENESYS_GATEWAY_HOST`].
pub(crate) const GENESYS_GATEWAY_PROTOCOL: &str = "GENESYSCLOUD_GATEWAY_PROTOCOL";
/// Client authentication method.
pub(crate) const AUTH_METHOD: &str = "FRESHTOKEN_AUTH_METHOD";
/// Requested scope, space-separated.
pub(crate) const SCOPE: &str = "FRESHTOKEN_SCOPE";
/// `audience` parameter.
pub(crate) const AUDIENCE: &str = "FRESHTOKEN_AUDIENCE";
/// `resource` parameter(s), space-separated.
pub(crate) const RESOURCE: &str = "FRESHTOKEN_RESOURCE";
/// Cache choice: `memory`, `file`, `file:DIR`.
pub(crate) const CACHE: &str = "FRESHTOKEN_CACHE";
/// Per-request timeout.
pub(crate) const TIMEOUT: &str = "FRESHTOKEN_TIMEOUT";
/// How long to keep retrying a failing token endpoint.
pub(crate) const RETRY_FOR: &str = "FRESHTOKEN_RETRY_FOR";
/// Certificate authorities trusted besides the platform's (PEM file).
pub(crate) const CA_FILE: &str = "FRESHTOKEN_CA_FILE";
/// Config file path.
pub(crate) const CONFIG: &str = "FRESHTOKEN_CONFIG";
/// Profile name.
pub(crate) const PROFILE: &str = "FRESHTOKEN_PROFILE";
/// Password for the Redis cache (instead of one in the URL).
pub(crate) const REDIS_PASSWORD: &str = "FRESHTOKEN_REDIS_PASSWORD";
/// Lease of the Redis refresh lock (default 30s).
pub(crate) const REDIS_LEASE: &str = "FRESHTOKEN_REDIS_LEASE";
/// Moves freshtoken's clock ahead by a duration: for whole-process tests of expiry, and for
/// hosts whose clock is known to lag.
pub(crate) const CLOCK_SKEW: &str = "FRESHTOKEN_CLOCK_SKEW";
/// Names a file whose duration moves the clock of a running process (tests of `proxy` and
/// `agent`; see `skew_clock.rs`).
pub(crate) const CLOCK_SKEW_FILE: &str = "FRESHTOKEN_CLOCK_SKEW_FILE";
/// Log level (`error`, `warn`, `info`, `debug`, `trace`).
pub(crate) const LOG_LEVEL: &str = "FRESHTOKEN_LOG_LEVEL";
/// The API base URL, where `proxy` and `exec --proxy` forward (default: the provider's).
pub(crate) const API_BASE: &str = "FRESHTOKEN_API_BASE";
/// Where `proxy` and `exec --proxy` forward (default: the provider's API base).
pub(crate) const UPSTREAM: &str = "FRESHTOKEN_UPSTREAM";
/// Log format: text or json.
pub(crate) const LOG_FORMAT: &str = "FRESHTOKEN_LOG_FORMAT";
/// Where `exec --proxy` puts the proxy's URL by default.
pub(crate) const PROXY_URL: &str = "FRESHTOKEN_PROXY_URL";
/// Where `exec` puts the token by default.
pub(crate) const ACCESS_TOKEN: &str = "FRESHTOKEN_ACCESS_TOKEN";

//! Environment variable names, in one place so that help, docs and code agree.

/// Token endpoint URL.
pub const TOKEN_URL: &str = "FRESHTOKEN_TOKEN_URL";
/// Client id.
pub const CLIENT_ID: &str = "FRESHTOKEN_CLIENT_ID";
/// Client secret (the only way to pass a secret through the environment).
pub const CLIENT_SECRET: &str = "FRESHTOKEN_CLIENT_SECRET";
/// A file holding the client secret.
pub const CLIENT_SECRET_FILE: &str = "FRESHTOKEN_CLIENT_SECRET_FILE";
/// Client authentication method.
pub const AUTH_METHOD: &str = "FRESHTOKEN_AUTH_METHOD";
/// Requested scope, space-separated.
pub const SCOPE: &str = "FRESHTOKEN_SCOPE";
/// `audience` parameter.
pub const AUDIENCE: &str = "FRESHTOKEN_AUDIENCE";
/// `resource` parameter(s), space-separated.
pub const RESOURCE: &str = "FRESHTOKEN_RESOURCE";
/// Cache choice: `memory`, `file`, `file:DIR`.
pub const CACHE: &str = "FRESHTOKEN_CACHE";
/// Per-request timeout.
pub const TIMEOUT: &str = "FRESHTOKEN_TIMEOUT";
/// How long to keep retrying a failing token endpoint.
pub const RETRY_FOR: &str = "FRESHTOKEN_RETRY_FOR";
/// Config file path.
pub const CONFIG: &str = "FRESHTOKEN_CONFIG";
/// Profile name.
pub const PROFILE: &str = "FRESHTOKEN_PROFILE";
/// Log level (`error`, `warn`, `info`, `debug`, `trace`).
pub const LOG_LEVEL: &str = "FRESHTOKEN_LOG_LEVEL";
/// Where `exec` puts the token by default.
pub const ACCESS_TOKEN: &str = "FRESHTOKEN_ACCESS_TOKEN";

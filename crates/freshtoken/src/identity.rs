//! Identity tokens: the short-lived, signed OIDC token a CI job (GitHub Actions, GitLab CI) or
//! a Kubernetes pod is handed, used in place of a client secret — as a client assertion
//! (RFC 7523, `auth_method = client_assertion`) or as the subject of a token exchange
//! (RFC 8693).
//!
//! The point of freshtoken owning them is their life: one is obtained for every token request
//! (never kept past its own `exp`), so a job that outlives several identity tokens never
//! presents an expired one — the failure of tools that read it once (Azure's
//! `AADSTS700024`). The sources that need no process spawning live here (the GitHub Actions
//! endpoint, a file the kubelet rotates, a fixed value); a caller adds others (a command, as
//! the CLI does) by implementing [`IdentityToken`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::http::{HttpOptions, http_client};

/// Largest identity token accepted from any source; real ones are one or two KiB.
pub const MAX_IDENTITY_TOKEN: usize = 16 * 1024;

/// The `subject_token_type` (and `actor_token_type`) of a JWT (RFC 8693 §3), the default.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The `grant_type` of a token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// Where identity tokens come from. Every call must return a token obtained now (read again,
/// fetched again): the fetcher calls it once per token request.
#[async_trait]
pub trait IdentityToken: Send + Sync + fmt::Debug {
    /// A current identity token.
    async fn identity_token(&self) -> Result<SecretString>;

    /// A stable name of the source without any secret (`github_actions`, `file /var/run/…`):
    /// part of the cache key, since another source may name another subject, and logged.
    fn describe(&self) -> String;
}

/// A shared identity-token source.
pub type SharedIdentity = Arc<dyn IdentityToken>;

/// The claims of an identity token worth showing: who issued it, whom it names, for whom,
/// until when. Read, never verified (that is the authorization server's job), and never the
/// token itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IdentityClaims {
    /// `iss`.
    pub issuer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud`, one or many.
    pub audience: Vec<String>,
    /// `exp`.
    pub expires_at: Option<SystemTime>,
}

impl IdentityClaims {
    /// The claims of `token`, if it is a readable JWT.
    pub fn of(token: &str) -> Option<Self> {
        let decoded = crate::jwt::decode(token).ok()?;
        let text = |name: &str| {
            decoded
                .claims
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let audience = match decoded.claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(all)) => all
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            issuer: text("iss"),
            subject: text("sub"),
            audience,
            expires_at: decoded.time_claim("exp"),
        })
    }

    /// One line for logs and `status`: `iss=… sub=… aud=… exp=…` (seconds since the epoch).
    pub fn summary(&self) -> String {
        let exp = self
            .expires_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(|| "-".to_owned(), |d| d.as_secs().to_string());
        format!(
            "iss={} sub={} aud={} exp={exp}",
            self.issuer.as_deref().unwrap_or("-"),
            self.subject.as_deref().unwrap_or("-"),
            if self.audience.is_empty() {
                "-".to_owned()
            } else {
                self.audience.join(",")
            },
        )
    }
}

/// Gets one identity token from `source` and checks it can still be presented on `clock`:
/// a JWT whose `exp` has passed (or passes within `margin`) is refused here rather than by
/// the server. Its claims are logged at debug level (`-v`).
pub async fn obtain(
    source: &dyn IdentityToken,
    role: &str,
    clock: &SharedClock,
    margin: Duration,
) -> Result<SecretString> {
    let token = source.identity_token().await?;
    let text = token.expose_secret().trim();
    if text.is_empty() {
        return Err(Error::Config(format!(
            "the {role} from {} is empty",
            source.describe()
        )));
    }
    if text.len() > MAX_IDENTITY_TOKEN {
        return Err(Error::Config(format!(
            "the {role} from {} is larger than {} KiB",
            source.describe(),
            MAX_IDENTITY_TOKEN / 1024
        )));
    }
    if let Some(claims) = IdentityClaims::of(text) {
        tracing::info!("{role} from {}: {}", source.describe(), claims.summary());
        if let Some(exp) = claims.expires_at
            && exp <= clock.now() + margin
        {
            return Err(Error::NoValidToken(format!(
                "the {role} from {} has expired (or expires within {}s); the source must hand out a current one",
                source.describe(),
                margin.as_secs()
            )));
        }
    }
    Ok(SecretString::from(text.to_owned()))
}

/// GitHub Actions' OIDC token: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with
/// `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, the JWT in `.value`. The job
/// needs `permissions: id-token: write`.
pub struct GithubActions {
    request_url: Url,
    request_token: SecretString,
    audience: Option<String>,
    options: HttpOptions,
    http: tokio::sync::OnceCell<reqwest::Client>,
}

impl fmt::Debug for GithubActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubActions")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl GithubActions {
    /// A source for the endpoint `request_url` (the job's `ACTIONS_ID_TOKEN_REQUEST_URL`),
    /// with its `request_token`, asking for `audience` (GitHub's default when `None`).
    pub fn new(
        request_url: Url,
        request_token: SecretString,
        audience: Option<String>,
        options: HttpOptions,
    ) -> Result<Self> {
        crate::http::refuse_plain_http("identity token URL", &request_url, "the request token")?;
        if request_token.expose_secret().trim().is_empty() {
            return Err(Error::Config(
                "the GitHub Actions identity request token is empty".into(),
            ));
        }
        Ok(Self {
            request_url,
            request_token,
            audience,
            options,
            http: tokio::sync::OnceCell::new(),
        })
    }

    fn url(&self) -> Url {
        let mut url = self.request_url.clone();
        if let Some(aud) = &self.audience {
            url.query_pairs_mut().append_pair("audience", aud);
        }
        url
    }

    fn host(&self) -> String {
        self.request_url.host_str().unwrap_or("?").to_owned()
    }
}

#[async_trait]
impl IdentityToken for GithubActions {
    async fn identity_token(&self) -> Result<SecretString> {
        let http = self
            .http
            .get_or_try_init(|| async { http_client(&self.options) })
            .await?;
        let response = http
            .get(self.url())
            .bearer_auth(self.request_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                Error::transport(format!(
                    "cannot get the GitHub Actions identity token from {}: {}",
                    self.host(),
                    crate::http::root_cause(&e)
                ))
            })?;
        let status = response.status();
        let body = crate::http::read_capped(response, MAX_IDENTITY_TOKEN + 1024)
            .await
            .map_err(|_| {
                Error::transport(format!(
                    "the GitHub Actions identity token answer from {} is unreadable or too large",
                    self.host()
                ))
            })?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Error::transport(format!(
                "the GitHub Actions identity token endpoint {} answered HTTP {}",
                self.host(),
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(Error::Config(format!(
                "the GitHub Actions identity token endpoint {} answered HTTP {} (does the job have `permissions: id-token: write`?)",
                self.host(),
                status.as_u16()
            )));
        }
        let value = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("value")?.as_str().map(str::to_owned))
            .ok_or_else(|| {
                Error::transport(format!(
                    "the GitHub Actions identity token answer from {} has no \"value\"",
                    self.host()
                ))
            })?;
        Ok(SecretString::from(value))
    }

    fn describe(&self) -> String {
        match &self.audience {
            Some(aud) => format!("github_actions (audience {aud})"),
            None => "github_actions".to_owned(),
        }
    }
}

/// A token in a file, read again for every request: a Kubernetes projected service-account
/// token, which the kubelet rotates in place. Regular files only (no FIFO, no device),
/// capped at [`MAX_IDENTITY_TOKEN`].
#[derive(Debug, Clone)]
pub struct IdentityFile {
    path: PathBuf,
}

impl IdentityFile {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

#[async_trait]
impl IdentityToken for IdentityFile {
    async fn identity_token(&self) -> Result<SecretString> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            crate::regular_file::read(
                &path,
                MAX_IDENTITY_TOKEN as u64,
                crate::regular_file::Symlinks::Follow,
            )
        })
        .await
        .map_err(|e| Error::Config(format!("reading {}: {e}", self.path.display())))?;
        let bytes = read.map_err(|e| {
            Error::Config(format!(
                "cannot read the identity token file {}: {e}",
                self.path.display()
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Config(format!(
                "the identity token file {} is not text",
                self.path.display()
            ))
        })?;
        Ok(SecretString::from(text.trim().to_owned()))
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// A token given once (an environment variable read at start, such as GitLab's `id_tokens:`
/// variable, which lives as long as the job).
pub struct FixedIdentity {
    name: String,
    token: SecretString,
}

impl fmt::Debug for FixedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedIdentity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FixedIdentity {
    /// `token`, described as `name` (say `env CI_JOB_JWT`).
    pub fn new(name: impl Into<String>, token: SecretString) -> Self {
        Self {
            name: name.into(),
            token,
        }
    }
}

#[async_trait]
impl IdentityToken for FixedIdentity {
    async fn identity_token(&self) -> Result<SecretString> {
        Ok(self.token.clone())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use base64::Engine;

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.c2ln",
            b64(&serde_json::json!({"alg": "EdDSA"})),
            b64(&claims)
        )
    }

    #[test]
    fn claims_show_who_and_until_when_never_the_token() {
        let token = jwt(serde_json::json!({
            "iss": "https://token.actions.example", "sub": "repo:o/r:ref:refs/heads/main",
            "aud": ["api://AzureADTokenExchange"], "exp": 2_000_000_000u64,
        }));
        let summary = IdentityClaims::of(&token).unwrap().summary();
        assert_eq!(
            summary,
            "iss=https://token.actions.example sub=repo:o/r:ref:refs/heads/main aud=api://AzureADTokenExchange exp=2000000000"
        );
        assert!(IdentityClaims::of("opaque").is_none());
    }

    #[tokio::test]
    async fn an_expired_identity_token_is_never_presented() {
        let clock = ManualClock::starting_now();
        let now = clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let token = jwt(serde_json::json!({"sub": "job", "exp": now + 60}));
        let source = FixedIdentity::new("env T", SecretString::from(token));
        let shared: SharedClock = Arc::new(clock.clone());
        let margin = Duration::from_secs(5);
        assert!(
            obtain(&source, "client assertion", &shared, margin)
                .await
                .is_ok()
        );
        clock.advance(Duration::from_secs(56));
        let refused = obtain(&source, "client assertion", &shared, margin)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("has expired"), "{refused}");
        assert!(refused.to_string().contains("env T"), "{refused}");
    }

    #[tokio::test]
    async fn a_file_is_read_again_each_time_and_must_be_regular() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = IdentityFile::new(&path);
        assert_eq!(
            source.identity_token().await.unwrap().expose_secret(),
            "first"
        );
        std::fs::write(&path, "second").unwrap();
        assert_eq!(
            source.identity_token().await.unwrap().expose_secret(),
            "second"
        );
        let dir_source = IdentityFile::new(dir.path());
        assert!(dir_source.identity_token().await.is_err());
        std::fs::write(&path, "x".repeat(MAX_IDENTITY_TOKEN + 1)).unwrap();
        assert!(source.identity_token().await.is_err());
    }
}

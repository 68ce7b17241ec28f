//! Finding the token endpoint from an issuer: OpenID Connect Discovery, falling back to
//! RFC 8414 authorization server metadata.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::assertion::SigningAlg;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::fetch::{HttpOptions, http_client};
use crate::owned::{self, Unfit};
use crate::regular_file::{self, Symlinks};
use crate::request::AuthMethod;
use crate::response;
use crate::sync::lock;

/// The parts of an issuer's metadata that freshtoken uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The issuer, as the document states it.
    pub issuer: String,
    /// Where to ask for tokens.
    pub token_endpoint: Url,
    /// Client authentication methods the token endpoint accepts, if listed.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// Algorithms it accepts for client assertions, if listed.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Option<Vec<String>>,
    /// Where a browser is sent to log in (the code flow), if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<Url>,
    /// The device flow's endpoint (RFC 8628), if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<Url>,
    /// Where tokens are revoked (RFC 7009), if listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<Url>,
    /// The endpoints to use with mutual TLS (RFC 8705 §5), if listed: a server may accept
    /// client certificates on other hosts than its plain endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_endpoint_aliases: Option<MtlsAliases>,
}

/// The `mtls_endpoint_aliases` of an issuer's metadata (RFC 8705 §5): the parts freshtoken
/// uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MtlsAliases {
    /// The token endpoint that asks for client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<Url>,
}

impl Metadata {
    /// The token endpoint for `method`: the mTLS alias for the certificate methods when the
    /// server names one (RFC 8705 §5), else `token_endpoint`.
    pub fn token_endpoint_for(&self, method: AuthMethod) -> &Url {
        let alias = self
            .mtls_endpoint_aliases
            .as_ref()
            .and_then(|a| a.token_endpoint.as_ref());
        match alias {
            Some(url) if method.needs_client_certificate() => url,
            _ => &self.token_endpoint,
        }
    }

    /// Checks that `method` (and `alg`, for the JWT methods) fit what the server lists.
    /// OpenID Connect Discovery §3: an absent method list means `client_secret_basic` only.
    pub fn check(&self, method: AuthMethod, alg: Option<SigningAlg>) -> Result<()> {
        let methods = self
            .token_endpoint_auth_methods_supported
            .clone()
            .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
        // A CI identity token is a JWT signed by a private key (the CI issuer's): metadata lists
        // that way of authenticating as private_key_jwt (Azure AD, Keycloak), there being no
        // registered name of its own.
        let listed_as = match method {
            AuthMethod::ClientAssertion => AuthMethod::PrivateKeyJwt.as_str(),
            m => m.as_str(),
        };
        if !methods.iter().any(|m| m == listed_as) {
            return Err(Error::Config(format!(
                "{} does not accept the auth method {method} at its token endpoint; it lists: {}",
                one_line(&self.issuer),
                one_line(&methods.join(", "))
            )));
        }
        if let (true, Some(alg), Some(algs)) = (
            method.is_jwt(),
            alg,
            &self.token_endpoint_auth_signing_alg_values_supported,
        ) && !algs.iter().any(|a| a == alg.as_str())
        {
            return Err(Error::Config(format!(
                "{} does not accept {alg} client assertions; it lists: {}",
                one_line(&self.issuer),
                one_line(&algs.join(", "))
            )));
        }
        Ok(())
    }
}

/// Text from an issuer's document, fit for a one-line message: control characters (line
/// breaks, terminal escapes) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The two places metadata may live for `issuer`, in the order tried.
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    // An issuer has no query or fragment (RFC 8414 §2); one given anyway is left out rather
    // than swallowing the well-known path.
    let mut base = issuer.clone();
    base.set_query(None);
    base.set_fragment(None);
    let path = issuer.path().trim_end_matches('/');
    let mut oidc = base.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    // RFC 8414 §3.1: the well-known part goes between the host and the issuer's path.
    let mut rfc8414 = base;
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    vec![oidc, rfc8414]
}

/// How long discovered metadata is trusted before it is read again.
pub const METADATA_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Discovered metadata, per process and (with `dir`) in a file shared by the user's processes,
/// kept for [`METADATA_MAX_AGE`]. A damaged cache file is ignored and rewritten.
pub async fn discover_cached(
    issuer: &Url,
    options: &HttpOptions,
    dir: Option<&Path>,
) -> Result<Metadata> {
    static MEMORY: Mutex<Vec<(String, SystemTime, Metadata)>> = Mutex::new(Vec::new());
    let now = SystemClock.now();
    let fresh = |at: SystemTime| {
        now.duration_since(at)
            .is_ok_and(|age| age < METADATA_MAX_AGE)
    };
    {
        let memory = lock(&MEMORY);
        if let Some((_, _, m)) = memory
            .iter()
            .find(|(i, at, _)| i == issuer.as_str() && fresh(*at))
        {
            return Ok(m.clone());
        }
    }
    let path = dir.map(|d| {
        d.join(format!(
            "discovery-{}.json",
            &hex::encode(Sha256::digest(issuer.as_str()))[..32]
        ))
    });
    let from_file = path.as_ref().and_then(|p| read_cache_file(p, fresh));
    let metadata = match from_file {
        Some(m) => m,
        None => {
            let m = discover(issuer, options).await?;
            if let (Some(path), Ok(bytes)) = (&path, serde_json::to_vec(&m))
                && let Err(e) = write_private(path, &bytes)
            {
                tracing::warn!(
                    "cannot cache the issuer's metadata in {}: {e}",
                    path.display()
                );
            }
            m
        }
    };
    lock(&MEMORY).push((issuer.to_string(), now, metadata.clone()));
    Ok(metadata)
}

/// The metadata cached in `path` if it is the user's own regular file in the user's own
/// folder, `fresh` by its age, and at most 1 MiB. Anything else — a FIFO, a symlink, a file or
/// folder another user made (whose document could name any token endpoint) — is ignored with
/// a warning, and the file replaced when the folder is the user's.
fn read_cache_file(path: &Path, fresh: impl Fn(SystemTime) -> bool) -> Option<Metadata> {
    use std::io::Read;
    const MAX: u64 = 1024 * 1024;
    let dir = path.parent().unwrap_or(Path::new("."));
    match owned::check_dir(dir) {
        Ok(()) | Err(Unfit::Open { .. }) => {}
        Err(Unfit::Missing) => return None,
        Err(why) => {
            tracing::warn!("not using the discovery cache in {}: {why}", dir.display());
            return None;
        }
    }
    let opened = regular_file::open(path, Symlinks::Refuse).and_then(|(file, meta)| {
        owned::check_file(&meta).map_err(std::io::Error::other)?;
        Ok((file, meta))
    });
    let (file, meta) = match opened {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(
                "ignoring discovery cache file {}: {e}; it will be replaced",
                path.display()
            );
            return None;
        }
    };
    if !fresh(meta.modified().ok()?) || meta.len() > MAX {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice::<Metadata>(&bytes).ok()
}

/// Writes `bytes` to `path` (mode 0600, folders it creates 0700) by rename, so readers never
/// see half; nothing is written in a folder that is not the user's own.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    owned::create_dirs(dir)?;
    match owned::check_dir(dir) {
        Ok(()) | Err(Unfit::Open { .. }) => {}
        // Said when it was read.
        Err(_) => return Ok(()),
    }
    let tmp = dir.join(format!(
        ".discovery.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A metadata request that got no (whole) answer, with the HTTP client's error as the source.
fn unanswered(url: &Url, e: reqwest::Error) -> Error {
    let message = format!("cannot read {url}: {}", crate::fetch::chain(&e));
    let error = if e.is_timeout() {
        Error::timeout(message)
    } else {
        Error::transport(message)
    };
    error.with_source(e)
}

/// Reads the issuer's metadata over HTTP.
pub async fn discover(issuer: &Url, options: &HttpOptions) -> Result<Metadata> {
    let http = http_client(options)?;
    let mut last = None;
    for url in metadata_urls(issuer) {
        tracing::debug!(%url, "reading authorization server metadata");
        let response = match http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(unanswered(&url, e)),
        };
        let status = response.status();
        let body = response.bytes().await.map_err(|e| unanswered(&url, e))?;
        if body.len() > options.max_body {
            return Err(Error::InvalidResponse {
                status: status.as_u16(),
                problem: format!(
                    "the metadata at {url} is larger than {} bytes",
                    options.max_body
                ),
            });
        }
        if !status.is_success() {
            last = Some(format!("{url} answered HTTP {}", status.as_u16()));
            continue;
        }
        let meta: Metadata = serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse {
            status: status.as_u16(),
            problem: format!(
                "the metadata at {url} is not usable ({e}): {}",
                response::excerpt(&body)
            ),
        })?;
        if meta.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
            return Err(Error::Config(format!(
                "the metadata at {url} names issuer {:?}, not {issuer}; refusing it (OpenID Connect Discovery §4.3)",
                meta.issuer
            )));
        }
        return Ok(meta);
    }
    Err(Error::Config(format!(
        "no authorization server metadata for issuer {issuer}: {}",
        last.unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_locations() {
        let urls = metadata_urls(&Url::parse("https://idp.example.com/realms/ci").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://idp.example.com/realms/ci/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://idp.example.com/.well-known/oauth-authorization-server/realms/ci"
        );
        let urls = metadata_urls(&Url::parse("https://idp.example.com/").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://idp.example.com/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn an_issuer_query_or_fragment_stays_out_of_the_well_known_locations() {
        // Found by fuzzing (fuzz/fuzz_targets/discovery.rs): the OpenID location was made by
        // appending to the whole issuer, so after a `?` or `#` the well-known path became part
        // of the query or fragment, and the issuer's own page was asked for instead.
        let rows = [
            (
                "https://xe?rver.example.com",
                "https://xe/.well-known/openid-configuration",
                "https://xe/.well-known/oauth-authorization-server",
            ),
            (
                "https://login.mi/#rosoftonline.com/v2.0",
                "https://login.mi/.well-known/openid-configuration",
                "https://login.mi/.well-known/oauth-authorization-server",
            ),
            (
                "https://idp.example.com/realms/ci/?x=1#f",
                "https://idp.example.com/realms/ci/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server/realms/ci",
            ),
        ];
        for (issuer, oidc, rfc8414) in rows {
            let urls = metadata_urls(&Url::parse(issuer).unwrap());
            let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
            assert_eq!(urls, [oidc, rfc8414], "{issuer}");
        }
    }

    #[test]
    fn a_refusal_is_one_line_whatever_the_document_holds() {
        // Found by fuzzing (fuzz/fuzz_targets/discovery.rs): the document's issuer and lists
        // went into the message as they were, line breaks and escape sequences included.
        let m = Metadata {
            issuer: "https://idp\r\u{1b}[2J".into(),
            token_endpoint: Url::parse("https://idp/token").unwrap(),
            token_endpoint_auth_methods_supported: Some(vec!["private_key_jwt\nx".into()]),
            token_endpoint_auth_signing_alg_values_supported: Some(vec!["RS256\r\n".into()]),
            authorization_endpoint: None,
            device_authorization_endpoint: None,
            revocation_endpoint: None,
            mtls_endpoint_aliases: None,
        };
        for e in [
            m.check(AuthMethod::ClientSecretPost, None),
            m.check(AuthMethod::PrivateKeyJwt, Some(SigningAlg::ES256)),
        ] {
            let e = e.unwrap_err().to_string();
            assert!(!e.contains(['\r', '\n', '\u{1b}']), "{e:?}");
            assert!(e.contains("https://idp"), "{e}");
        }
    }

    #[test]
    fn checks_methods_and_algorithms() {
        let mut m = Metadata {
            issuer: "https://idp".into(),
            token_endpoint: Url::parse("https://idp/token").unwrap(),
            token_endpoint_auth_methods_supported: None,
            token_endpoint_auth_signing_alg_values_supported: Some(vec!["RS256".into()]),
            authorization_endpoint: None,
            device_authorization_endpoint: None,
            revocation_endpoint: None,
            mtls_endpoint_aliases: None,
        };
        assert!(m.check(AuthMethod::ClientSecretBasic, None).is_ok());
        let e = m
            .check(AuthMethod::ClientSecretPost, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it lists: client_secret_basic"), "{e}");
        m.token_endpoint_auth_methods_supported = Some(vec!["private_key_jwt".into()]);
        assert!(
            m.check(AuthMethod::PrivateKeyJwt, Some(SigningAlg::RS256))
                .is_ok()
        );
        let e = m
            .check(AuthMethod::PrivateKeyJwt, Some(SigningAlg::ES256))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not accept ES256"), "{e}");
        assert!(m.check(AuthMethod::ClientAssertion, None).is_ok());
        m.token_endpoint_auth_methods_supported = Some(vec!["client_secret_post".into()]);
        let e = m
            .check(AuthMethod::ClientAssertion, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth method client_assertion"), "{e}");
    }

    #[test]
    fn the_certificate_methods_use_the_mtls_alias_when_there_is_one() -> serde_json::Result<()> {
        let plain = r#"{"issuer":"https://idp","token_endpoint":"https://idp/token"}"#;
        let m: Metadata = serde_json::from_str(plain)?;
        assert_eq!(
            m.token_endpoint_for(AuthMethod::TlsClientAuth).as_str(),
            "https://idp/token"
        );
        let aliased = r#"{"issuer":"https://idp","token_endpoint":"https://idp/token",
            "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.idp/token","other":"x"}}"#;
        let m: Metadata = serde_json::from_str(aliased)?;
        for method in [
            AuthMethod::TlsClientAuth,
            AuthMethod::SelfSignedTlsClientAuth,
        ] {
            assert_eq!(
                m.token_endpoint_for(method).as_str(),
                "https://mtls.idp/token"
            );
        }
        for method in [AuthMethod::ClientSecretBasic, AuthMethod::PrivateKeyJwt] {
            assert_eq!(m.token_endpoint_for(method).as_str(), "https://idp/token");
        }
        // Kept through the discovery cache file.
        let again: Metadata = serde_json::from_slice(&serde_json::to_vec(&m)?)?;
        assert_eq!(again, m);
        Ok(())
    }
}

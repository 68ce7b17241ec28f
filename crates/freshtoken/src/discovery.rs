//! Finding the token endpoint from an issuer: OpenID Connect Discovery, falling back to
//! RFC 8414 authorization server metadata.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::assertion::SigningAlg;
use crate::error::{Error, Result};
use crate::fetch::{HttpOptions, http_client};
use crate::request::AuthMethod;
use crate::response;

/// The parts of an issuer's metadata that freshtoken uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl Metadata {
    /// Checks that `method` (and `alg`, for the JWT methods) fit what the server lists.
    /// OpenID Connect Discovery §3: an absent method list means `client_secret_basic` only.
    pub fn check(&self, method: AuthMethod, alg: Option<SigningAlg>) -> Result<()> {
        let methods = self
            .token_endpoint_auth_methods_supported
            .clone()
            .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
        if !methods.iter().any(|m| m == method.as_str()) {
            return Err(Error::Config(format!(
                "{} does not accept the auth method {method} at its token endpoint; it lists: {}",
                self.issuer,
                methods.join(", ")
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
                self.issuer,
                algs.join(", ")
            )));
        }
        Ok(())
    }
}

/// The two places metadata may live for `issuer`, in the order tried.
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let base = issuer.as_str().trim_end_matches('/');
    let mut urls = Vec::new();
    if let Ok(u) = Url::parse(&format!("{base}/.well-known/openid-configuration")) {
        urls.push(u);
    }
    // RFC 8414 §3.1: the well-known part goes between the host and the issuer's path.
    let mut rfc8414 = issuer.clone();
    let path = issuer.path().trim_end_matches('/').to_owned();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    urls.push(rfc8414);
    urls
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
            Err(e) => {
                return Err(Error::Transport(format!(
                    "cannot read {url}: {}",
                    crate::fetch::chain(&e)
                )));
            }
        };
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Error::Transport(format!("cannot read {url}: {}", crate::fetch::chain(&e)))
        })?;
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
    fn checks_methods_and_algorithms() {
        let mut m = Metadata {
            issuer: "https://idp".into(),
            token_endpoint: Url::parse("https://idp/token").unwrap(),
            token_endpoint_auth_methods_supported: None,
            token_endpoint_auth_signing_alg_values_supported: Some(vec!["RS256".into()]),
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
    }
}

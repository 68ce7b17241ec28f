//! What identifies a token request: endpoint, client, authentication and grant parameters.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use url::Url;

use crate::assertion::{DEFAULT_ASSERTION_LIFETIME, Signer, SigningAlg};
use crate::credentials::{ClientId, ClientSecret, PrivateKey};
use crate::error::{Error, Missing};
use crate::exchange::TokenExchange;

/// How the client proves who it is at the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1). The default.
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT assertion signed with the client secret (HS256/384/512).
    ClientSecretJwt,
    /// A JWT assertion signed with a private key (RS*, PS*, ES256, ES384, EdDSA).
    PrivateKeyJwt,
    /// A public client: `client_id` in the body, no secret.
    None,
    /// An identity token obtained for each request (a CI job's OIDC token, a pod's projected
    /// service-account token) sent as the client assertion (RFC 7523 §2.2): no secret at all.
    ClientAssertion,
    /// Mutual TLS with a certificate from a CA the server trusts (RFC 8705 §2.1): the
    /// client certificate proves who it is; `client_id` in the body, no secret.
    TlsClientAuth,
    /// Mutual TLS with a self-signed certificate registered with the server (RFC 8705 §2.2).
    SelfSignedTlsClientAuth,
}

impl AuthMethod {
    /// The name used in configs and in discovery documents.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
            AuthMethod::ClientAssertion => "client_assertion",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
        }
    }

    /// Whether this method needs a client secret.
    pub fn needs_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic
                | AuthMethod::ClientSecretPost
                | AuthMethod::ClientSecretJwt
        )
    }

    /// Whether this method needs a private key.
    pub fn needs_private_key(self) -> bool {
        matches!(self, AuthMethod::PrivateKeyJwt)
    }

    /// Whether this method signs an assertion.
    pub fn is_jwt(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt
        )
    }

    /// Whether this method authenticates with a client certificate (mutual TLS): the token
    /// request goes to the server's mTLS endpoint, if it names one.
    pub fn needs_client_certificate(self) -> bool {
        matches!(
            self,
            AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth
        )
    }

    /// Every method, for help texts and error messages.
    pub const ALL: [AuthMethod; 8] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::ClientSecretJwt,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
        AuthMethod::ClientAssertion,
        AuthMethod::TlsClientAuth,
        AuthMethod::SelfSignedTlsClientAuth,
    ];
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = AuthMethod::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown auth method {s:?}; known: {}", known.join(", "))
            })
    }
}

/// Form fields that freshtoken sets itself and extra parameters may not override.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "audience",
    "resource",
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
];

/// A client credentials token request (RFC 6749 §4.4).
///
/// `Debug` shows everything but the secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenRequest {
    /// The token endpoint.
    pub token_url: Url,
    /// The client id.
    pub client_id: ClientId,
    /// How the client authenticates.
    pub auth_method: AuthMethod,
    /// The client secret, for the methods that need one.
    pub client_secret: Option<ClientSecret>,
    /// Requested scopes (sent space-separated; empty means none sent).
    pub scope: Vec<String>,
    /// `audience`, as Auth0 and others want it.
    pub audience: Option<String>,
    /// `resource` indicators (RFC 8707), each sent as its own field.
    pub resource: Vec<String>,
    /// Any other form fields, in order.
    pub params: Vec<(String, String)>,
    /// The PEM private key, for `private_key_jwt`.
    pub private_key: Option<PrivateKey>,
    /// `kid` of the assertion's header.
    pub key_id: Option<String>,
    /// The assertion's algorithm; by default it follows the key (or HS256 with a secret).
    pub signing_alg: Option<SigningAlg>,
    /// The assertion's `aud`; by default the token endpoint.
    pub assertion_audience: Option<String>,
    /// How long an assertion is valid.
    pub assertion_lifetime: Duration,
    /// The token exchange grant (RFC 8693) instead of client credentials; the subject token
    /// comes from the fetcher's identity source.
    pub exchange: Option<TokenExchange>,
    /// The stable name of the identity-token sources used (client assertion, subject, actor),
    /// never a token: part of the cache key, since another source may name another subject.
    pub identity_source: Option<String>,
    /// `x5t#S256` of the client certificate of the mutual-TLS methods: part of the cache
    /// key, since a server binds its tokens to the certificate they were asked with, and a
    /// renewed certificate must not be served a token bound to the old one.
    pub certificate_thumbprint: Option<String>,
    /// The DPoP key (RFC 9449): each token request carries a proof of it, and the server
    /// binds the token to it. `None`: bearer tokens.
    pub dpop: Option<crate::dpop::DpopKey>,
}

impl TokenRequest {
    /// A request with the default auth method and no extras (see also
    /// [`TokenRequest::client_credentials`], which builds and checks one step by step).
    pub fn new(
        token_url: Url,
        client_id: impl Into<ClientId>,
        client_secret: Option<SecretString>,
    ) -> Self {
        Self {
            token_url,
            client_id: client_id.into(),
            auth_method: AuthMethod::default(),
            client_secret: client_secret.map(ClientSecret::from),
            scope: Vec::new(),
            audience: None,
            resource: Vec::new(),
            params: Vec::new(),
            private_key: None,
            key_id: None,
            signing_alg: None,
            assertion_audience: None,
            assertion_lifetime: DEFAULT_ASSERTION_LIFETIME,
            exchange: None,
            identity_source: None,
            certificate_thumbprint: None,
            dpop: None,
        }
    }

    /// The assertion signer for the JWT methods (`None` for the others).
    pub fn signer(&self) -> Result<Option<Signer>, Error> {
        match (self.auth_method, &self.client_secret, &self.private_key) {
            (AuthMethod::ClientSecretJwt, Some(secret), _) => {
                Signer::with_secret(secret.as_secret(), self.signing_alg).map(Some)
            }
            (AuthMethod::PrivateKeyJwt, _, Some(key)) => {
                Signer::with_private_key(key.as_secret(), self.signing_alg, self.key_id.clone())
                    .map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Checks what can be checked before talking to the server.
    pub fn validate(&self) -> Result<(), Error> {
        match self.token_url.scheme() {
            "https" => {}
            "http" => refuse_plain_http("token URL", &self.token_url, "credentials")?,
            other => {
                return Err(Error::Config(format!(
                    "token URL scheme {other:?} is not http(s)"
                )));
            }
        }
        if !self.token_url.username().is_empty() || self.token_url.password().is_some() {
            return Err(Error::Config(
                "token URL must not carry user:password; the client id and secret go in their own settings"
                    .into(),
            ));
        }
        if self.client_id.as_str().trim().is_empty() {
            return Err(Error::Missing(Missing::ClientId));
        }
        if self.auth_method.needs_secret() && self.client_secret.is_none() {
            return Err(Error::Missing(Missing::ClientSecret {
                auth_method: self.auth_method,
            }));
        }
        if self.auth_method.needs_private_key() && self.private_key.is_none() {
            return Err(Error::Missing(Missing::PrivateKey));
        }
        if self.signing_alg.is_some() && !self.auth_method.is_jwt() {
            return Err(Error::Config(format!(
                "a signing algorithm applies to client_secret_jwt and private_key_jwt, not {}",
                self.auth_method
            )));
        }
        if let Some((name, _)) = self
            .params
            .iter()
            .find(|(k, _)| RESERVED_PARAMS.contains(&k.as_str()))
        {
            return Err(Error::Config(format!(
                "extra parameter {name:?} is set by freshtoken itself; use the matching setting instead"
            )));
        }
        Ok(())
    }

    /// The cache identity of the token this request yields. Everything that changes what
    /// token comes back is in it; the secret is not.
    pub fn cache_key(&self) -> CacheKey {
        let mut scope = self.scope.clone();
        scope.sort();
        scope.dedup();
        let mut resource = self.resource.clone();
        resource.sort();
        let mut params = self.params.clone();
        params.sort();

        let mut h = Sha256::new();
        let mut field = |name: &str, value: &str| {
            // Length-prefixed so that no two different requests hash the same bytes.
            for part in [name, value] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        };
        field("v", "1");
        field("token_url", self.token_url.as_str());
        field("client_id", self.client_id.as_str());
        field("auth_method", self.auth_method.as_str());
        for s in &scope {
            field("scope", s);
        }
        field("audience", self.audience.as_deref().unwrap_or(""));
        for r in &resource {
            field("resource", r);
        }
        for (k, v) in &params {
            field(k, v);
        }
        // Only when set, so that the keys of every other request stay what they were.
        if let Some(x) = &self.exchange {
            field("grant", "token_exchange");
            field("subject_token_type", &x.subject_token_type);
            field(
                "requested_token_type",
                x.requested_token_type.as_deref().unwrap_or(""),
            );
        }
        if let Some(source) = &self.identity_source {
            field("identity_source", source);
        }
        if let Some(x5t) = &self.certificate_thumbprint {
            field("x5t#S256", x5t);
        }
        // A token bound to one key is useless with another, and a bearer token is not one.
        if let Some(key) = &self.dpop {
            field("dpop_jkt", key.thumbprint());
        }
        CacheKey(hex::encode(h.finalize()))
    }
}

impl TokenRequest {
    /// Starts a client credentials request to `token_url` as `client_id`; the builder's
    /// [`build`](TokenRequestBuilder::build) checks it (see [`TokenRequest::validate`]).
    ///
    /// ```
    /// # fn demo() -> Result<(), freshtoken::Error> {
    /// use freshtoken::{AuthMethod, TokenRequest};
    ///
    /// let request = TokenRequest::client_credentials(
    ///     "https://login.example.com/oauth/token".parse().expect("a URL"),
    ///     "my-client",
    /// )
    /// .secret("from-a-vault".to_owned())
    /// .auth_method(AuthMethod::ClientSecretPost)
    /// .scope("read")
    /// .scope("write")
    /// .build()?;
    /// assert_eq!(request.scope, ["read", "write"]);
    /// # Ok(()) }
    /// # demo().unwrap();
    /// ```
    pub fn client_credentials(
        token_url: Url,
        client_id: impl Into<ClientId>,
    ) -> TokenRequestBuilder {
        TokenRequestBuilder {
            request: TokenRequest::new(token_url, client_id, None),
        }
    }
}

/// Builds a [`TokenRequest`] step by step; see [`TokenRequest::client_credentials`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TokenRequestBuilder {
    request: TokenRequest,
}

impl TokenRequestBuilder {
    /// The client secret (for the default `client_secret_basic`, `client_secret_post` and
    /// `client_secret_jwt`).
    pub fn secret(mut self, secret: impl Into<ClientSecret>) -> Self {
        self.request.client_secret = Some(secret.into());
        self
    }

    /// How the client authenticates (default `client_secret_basic`).
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.request.auth_method = method;
        self
    }

    /// The PEM private key, for `private_key_jwt`.
    pub fn private_key(mut self, key: impl Into<PrivateKey>) -> Self {
        self.request.private_key = Some(key.into());
        self
    }

    /// The `kid` of the assertion's header.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.request.key_id = Some(key_id.into());
        self
    }

    /// The assertion's algorithm, instead of the one the key (or HS256) implies.
    pub fn signing_alg(mut self, alg: SigningAlg) -> Self {
        self.request.signing_alg = Some(alg);
        self
    }

    /// The assertion's `aud`, instead of the token endpoint.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.request.assertion_audience = Some(audience.into());
        self
    }

    /// How long an assertion is valid (default [`DEFAULT_ASSERTION_LIFETIME`]).
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.request.assertion_lifetime = lifetime;
        self
    }

    /// Adds one scope to the request (sent space-separated).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.request.scope.push(scope.into());
        self
    }

    /// The `audience` parameter, as Auth0 and others want it.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.request.audience = Some(audience.into());
        self
    }

    /// Adds one `resource` indicator (RFC 8707).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.request.resource.push(resource.into());
        self
    }

    /// Adds one more form field; the ones freshtoken sets itself are refused by `build`.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.params.push((name.into(), value.into()));
        self
    }

    /// Asks for tokens bound to `key` (DPoP, RFC 9449) instead of bearer tokens.
    pub fn dpop(mut self, key: crate::dpop::DpopKey) -> Self {
        self.request.dpop = Some(key);
        self
    }

    /// The request, checked as [`TokenRequest::validate`] does.
    pub fn build(self) -> Result<TokenRequest, Error> {
        self.request.validate()?;
        Ok(self.request)
    }
}

pub use crate::http::refuse_plain_http;

/// The name under which a token is cached: a SHA-256 over what identifies it, never the
/// secret, so that the name itself gives nothing away.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The hex digest (64 characters, safe as a file name or Redis key part).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a key from its hex form (as read back from a store).
    pub fn from_hex(hex: &str) -> Option<Self> {
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| CacheKey(hex.to_owned()))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> TokenRequest {
        TokenRequest::new(
            Url::parse("https://login.example.com/oauth/token").unwrap(),
            "client-1",
            Some(SecretString::from("s3cr3t-value".to_owned())),
        )
    }

    #[test]
    fn key_covers_identity_but_not_the_secret() {
        let base = req().cache_key();
        assert_eq!(base.as_str().len(), 64);
        assert!(CacheKey::from_hex(base.as_str()).is_some());

        let mut other_secret = req();
        other_secret.client_secret = Some(ClientSecret::from("another".to_owned()));
        assert_eq!(
            other_secret.cache_key(),
            base,
            "the secret must not change the key"
        );

        let changes: [fn(&mut TokenRequest); 11] = [
            (|r| r.token_url = Url::parse("https://login.example.com/other").unwrap()),
            (|r| r.client_id = "client-2".into()),
            (|r| r.auth_method = AuthMethod::ClientSecretPost),
            (|r| r.scope = vec!["a".into()]),
            (|r| r.audience = Some("api".into())),
            (|r| r.resource = vec!["https://api".into()]),
            (|r| r.params = vec![("x".into(), "1".into())]),
            (|r| r.exchange = Some(TokenExchange::default())),
            (|r| {
                r.exchange = Some(TokenExchange {
                    requested_token_type: Some("urn:x".into()),
                    ..TokenExchange::default()
                })
            }),
            (|r| r.identity_source = Some("file /var/run/token".into())),
            (|r| r.certificate_thumbprint = Some("x5t".into())),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut r = req();
            change(&mut r);
            assert_ne!(r.cache_key(), base, "change {i} must change the key");
        }
    }

    #[test]
    fn key_ignores_scope_order_and_is_unambiguous() {
        let mut a = req();
        a.scope = vec!["b".into(), "a".into()];
        let mut b = req();
        b.scope = vec!["a".into(), "b".into(), "a".into()];
        assert_eq!(a.cache_key(), b.cache_key());

        let mut c = req();
        c.scope = vec!["a b".into()];
        assert_ne!(c.cache_key(), a.cache_key());
    }

    #[test]
    fn validation_explains_what_to_fix() {
        let mut r = req();
        assert!(r.validate().is_ok());
        r.token_url = Url::parse("http://idp.example.com/token").unwrap();
        assert!(r.validate().unwrap_err().to_string().contains("use https"));
        r.token_url = Url::parse("http://127.0.0.1:8080/token").unwrap();
        assert!(r.validate().is_ok());
        r.client_secret = None;
        assert!(
            r.validate()
                .unwrap_err()
                .to_string()
                .contains("needs a client secret")
        );
        r.auth_method = AuthMethod::None;
        assert!(r.validate().is_ok());
        r.params = vec![("grant_type".into(), "password".into())];
        assert!(
            r.validate()
                .unwrap_err()
                .to_string()
                .contains("\"grant_type\"")
        );
    }

    #[test]
    fn messages_say_what_is_missing_not_which_flag_sets_it() {
        use crate::fetch::tests::names_a_cli_setting;
        let mut no_id = req();
        no_id.client_id = " ".into();
        let mut no_secret = req();
        no_secret.client_secret = None;
        let mut no_key = req();
        no_key.auth_method = AuthMethod::PrivateKeyJwt;
        let mut userinfo = req();
        userinfo.token_url = Url::parse("https://u:p@login.example.com/token").unwrap();
        let errors = [
            no_id.validate().unwrap_err(),
            no_secret.validate().unwrap_err(),
            no_key.validate().unwrap_err(),
            userinfo.validate().unwrap_err(),
            Error::LifetimeTooShort {
                lifetime: Duration::from_secs(3),
                min_ttl: Duration::from_secs(600),
            },
        ];
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages[0], "no client id");
        assert!(matches!(
            errors[1],
            Error::Missing(Missing::ClientSecret { .. })
        ));
        assert_eq!(messages[2], "private_key_jwt needs a private key");
        for (e, m) in errors.iter().zip(&messages) {
            assert!(!names_a_cli_setting(m), "{m}");
            assert_eq!(e.kind(), crate::ErrorKind::Config, "{m}");
        }
    }

    #[test]
    fn the_builder_makes_the_same_request_and_checks_it() {
        let url = Url::parse("https://login.example.com/oauth/token").unwrap();
        let built = TokenRequest::client_credentials(url.clone(), "client-1")
            .secret("s3cr3t-value".to_owned())
            .scope("b")
            .scope("a")
            .audience("api")
            .param("x", "1")
            .build()
            .unwrap();
        let mut by_hand = req();
        by_hand.scope = vec!["a".into(), "b".into()];
        by_hand.audience = Some("api".into());
        by_hand.params = vec![("x".into(), "1".into())];
        assert_eq!(built.cache_key(), by_hand.cache_key());
        assert_eq!(built.client_id.as_str(), "client-1");

        let refused = TokenRequest::client_credentials(url, "client-1").build();
        assert!(matches!(
            refused,
            Err(Error::Missing(Missing::ClientSecret { .. }))
        ));
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", req());
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }

    #[test]
    fn auth_method_names_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(m.as_str().parse::<AuthMethod>().unwrap(), m);
        }
        assert!(
            "basic"
                .parse::<AuthMethod>()
                .unwrap_err()
                .contains("client_secret_basic")
        );
    }
}

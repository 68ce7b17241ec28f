//! The client credentials request over HTTP: client authentication, capped bodies, timeouts,
//! no redirects, and retries of what is worth retrying.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use rand::Rng;
use secrecy::ExposeSecret;
use url::form_urlencoded;

use crate::assertion::{ASSERTION_TYPE, Signer};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
pub(crate) use crate::http::{BodyError, chain, read_capped, root_cause};
pub use crate::http::{DEFAULT_LIFETIME, HttpOptions, http_client, install_crypto_provider};
use crate::identity::SharedIdentity;
use crate::observe::{FinishGuard, RetryNotice};
use crate::request::{AuthMethod, CacheKey, TokenRequest};
use crate::response;
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::token::{ExpirySource, Token};

/// Anything that can produce a new token. The HTTP client is the real one; tests of the
/// cached source plug in faults that a real server cannot be made to show.
#[async_trait]
pub trait Fetch: Send + Sync + fmt::Debug {
    /// Gets a new token within `budget`. `previous` is the token being replaced, if any.
    async fn fetch(&self, previous: Option<&Token>, budget: Budget) -> Result<Token>;

    /// The name under which this fetcher's tokens are cached: everything that changes
    /// which token comes back is in it, no secret is. Sources that share a store share
    /// tokens exactly when their keys are equal, so a wrapper returns its inner fetcher's.
    fn cache_key(&self) -> CacheKey;

    /// How long one call may spend getting a token, lock waits and retries included: the
    /// cached source turns it into each call's [`Budget`].
    fn patience(&self) -> Duration {
        RetryPolicy::default().deadline
    }

    /// The DPoP key this fetcher's tokens are bound to, if any: whoever uses the tokens (the
    /// proxy) signs a proof with it for every request. A wrapper returns its inner one's.
    fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        None
    }
}

/// What one call may spend on getting a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Budget {
    /// The call ends here: lock waits, backoffs and the attempt in flight included.
    pub deadline: tokio::time::Instant,
    /// Whether a failed attempt may be retried before the deadline. A caller that holds a
    /// usable token makes one attempt and leaves a failure note instead, so that everyone
    /// sharing the store backs off together.
    pub retry: bool,
}

impl Budget {
    /// Retries allowed for `patience` from now.
    pub fn within(patience: Duration) -> Self {
        Self {
            deadline: tokio::time::Instant::now() + patience,
            retry: true,
        }
    }

    /// The same deadline, one attempt.
    pub fn once(self) -> Self {
        Self {
            retry: false,
            ..self
        }
    }

    /// Time left before the deadline.
    pub fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// Fetches tokens from an RFC 6749 token endpoint with the client credentials grant.
pub struct HttpFetcher {
    /// Built on first use: a warm cache never needs it, and building it costs milliseconds.
    http: tokio::sync::OnceCell<reqwest::Client>,
    request: TokenRequest,
    signer: Option<Signer>,
    scope_warned: std::sync::atomic::AtomicBool,
    options: HttpOptions,
    clock: SharedClock,
    identity: Identities,
    /// The identity tokens of the latest attempts, scrubbed from what the server answers.
    presented: std::sync::Mutex<Vec<secrecy::SecretString>>,
    /// The token endpoint's latest `DPoP-Nonce`, sent in the next proof.
    dpop_nonce: std::sync::Mutex<Option<String>>,
}

/// The identity-token sources of a fetcher (see [`crate::identity`]).
#[derive(Debug, Default, Clone)]
struct Identities {
    assertion: Option<SharedIdentity>,
    subject: Option<SharedIdentity>,
    actor: Option<SharedIdentity>,
}

/// The identity tokens obtained for one attempt.
#[derive(Default)]
struct Presented {
    assertion: Option<secrecy::SecretString>,
    subject: Option<secrecy::SecretString>,
    actor: Option<secrecy::SecretString>,
}

/// How long an identity token must still be valid to be sent: the server checks `exp` on
/// its own clock, a little after we send it.
const IDENTITY_MARGIN: Duration = Duration::from_secs(5);

impl fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("request", &self.request)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl HttpFetcher {
    /// A fetcher for `request`; fails on settings that can never work.
    pub fn new(request: TokenRequest, options: HttpOptions) -> Result<Self> {
        request.validate()?;
        if request.auth_method.needs_client_certificate() && options.client_identity.is_none() {
            return Err(Error::Missing(crate::error::Missing::ClientCertificate {
                auth_method: request.auth_method,
            }));
        }
        Ok(Self {
            http: tokio::sync::OnceCell::new(),
            signer: request.signer()?,
            scope_warned: std::sync::atomic::AtomicBool::new(false),
            request,
            options,
            clock: Arc::new(SystemClock),
            identity: Identities::default(),
            presented: std::sync::Mutex::new(Vec::new()),
            dpop_nonce: std::sync::Mutex::new(None),
        })
    }

    /// Uses `source` for the client assertion of `auth_method = client_assertion`: one
    /// identity token obtained for every request (RFC 7523 §2.2).
    pub fn with_client_assertion(mut self, source: SharedIdentity) -> Self {
        self.identity.assertion = Some(source);
        self
    }

    /// Uses `source` for the `subject_token` of a token exchange (RFC 8693), obtained for
    /// every request.
    pub fn with_subject_token(mut self, source: SharedIdentity) -> Self {
        self.identity.subject = Some(source);
        self
    }

    /// Uses `source` for the optional `actor_token` of a token exchange.
    pub fn with_actor_token(mut self, source: SharedIdentity) -> Self {
        self.identity.actor = Some(source);
        self
    }

    /// Obtains the identity tokens this attempt needs, each a current one.
    async fn identity_tokens(&self, grant: Grant<'_>) -> Result<Presented> {
        let req = &self.request;
        let get = |source: &Option<SharedIdentity>, role: &'static str| {
            let source = source.clone();
            let clock = self.clock.clone();
            async move {
                match source {
                    Some(s) => crate::identity::obtain(s.as_ref(), role, &clock, IDENTITY_MARGIN)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            }
        };
        let mut presented = Presented::default();
        if req.auth_method == AuthMethod::ClientAssertion {
            presented.assertion = get(&self.identity.assertion, "client assertion").await?;
            if presented.assertion.is_none() {
                return Err(Error::Config(
                    "client_assertion needs an identity token source".into(),
                ));
            }
        }
        if req.exchange.is_some() && matches!(grant, Grant::ClientCredentials) {
            presented.subject = get(&self.identity.subject, "subject token").await?;
            if presented.subject.is_none() {
                return Err(Error::Config(
                    "the token exchange needs a subject token source".into(),
                ));
            }
            presented.actor = get(&self.identity.actor, "actor token").await?;
        }
        let mut kept = crate::sync::lock(&self.presented);
        for t in [&presented.assertion, &presented.subject, &presented.actor]
            .into_iter()
            .flatten()
        {
            kept.push(t.clone());
        }
        let excess = kept.len().saturating_sub(6);
        kept.drain(..excess);
        Ok(presented)
    }

    /// Uses `client` (from [`http_client`] with this fetcher's options) instead of building
    /// one: a process that keeps many profiles shares one client and its TLS roots. A client
    /// built without the options' client certificate presents none.
    pub fn with_client(self, client: reqwest::Client) -> Self {
        let _ = self.http.set(client);
        self
    }

    /// Uses `clock` for receive times (and so for expiry).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The request this fetcher makes.
    pub fn request(&self) -> &TokenRequest {
        &self.request
    }

    /// The grant's own form fields: client credentials or a token exchange (with the asked-for
    /// scope, audience, resource and extra fields), or a refresh.
    fn grant_fields(
        req: &TokenRequest,
        form: &mut form_urlencoded::Serializer<'_, String>,
        grant: Grant<'_>,
        presented: &Presented,
    ) {
        match grant {
            Grant::ClientCredentials => {
                match (&req.exchange, &presented.subject) {
                    (Some(x), Some(subject)) => {
                        let actor = presented.actor.as_ref().map(|a| a.expose_secret());
                        for (k, v) in crate::exchange::form(x, subject.expose_secret(), actor) {
                            form.append_pair(k, &v);
                        }
                    }
                    _ => {
                        form.append_pair("grant_type", "client_credentials");
                    }
                }
                if !req.scope.is_empty() {
                    form.append_pair("scope", &req.scope.join(" "));
                }
                if let Some(aud) = &req.audience {
                    form.append_pair("audience", aud);
                }
                for r in &req.resource {
                    form.append_pair("resource", r);
                }
                for (k, v) in &req.params {
                    form.append_pair(k, v);
                }
            }
            // The refreshed token keeps the original grant's scope and audience (RFC 6749 §6).
            Grant::RefreshToken(rt) => {
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", rt.expose_secret());
            }
            // RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5).
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                verifier,
            } => {
                form.append_pair("grant_type", "authorization_code");
                form.append_pair("code", code.expose_secret());
                form.append_pair("redirect_uri", redirect_uri);
                form.append_pair("code_verifier", verifier.expose_secret());
            }
            // RFC 8628 §3.4.
            Grant::DeviceCode(code) => {
                form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:device_code");
                form.append_pair("device_code", code.expose_secret());
            }
        }
    }

    /// The token request, built without awaiting (the form serializer is not `Send`).
    fn build(
        &self,
        http: &reqwest::Client,
        grant: Grant<'_>,
        presented: &Presented,
    ) -> Result<reqwest::RequestBuilder> {
        let req = &self.request;
        let mut form = form_urlencoded::Serializer::new(String::new());
        Self::grant_fields(req, &mut form, grant, presented);
        let mut builder = http
            .post(req.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        match (req.auth_method, &req.client_secret) {
            (AuthMethod::ClientSecretBasic, Some(secret)) => {
                let header = reqwest::header::HeaderValue::try_from(basic_auth(
                    req.client_id.as_str(),
                    secret.expose_secret(),
                ));
                let Ok(mut value) = header else {
                    return Err(Error::Config(
                        "the client id or secret cannot be sent in an HTTP header".into(),
                    ));
                };
                value.set_sensitive(true);
                builder = builder.header(reqwest::header::AUTHORIZATION, value);
            }
            (AuthMethod::ClientSecretPost, Some(secret)) => {
                form.append_pair("client_id", req.client_id.as_str());
                form.append_pair("client_secret", secret.expose_secret());
            }
            (AuthMethod::ClientSecretJwt | AuthMethod::PrivateKeyJwt, _) => {
                let Some(signer) = &self.signer else {
                    return Err(Error::Config(format!(
                        "{} has no key to sign with",
                        req.auth_method
                    )));
                };
                let audience = req
                    .assertion_audience
                    .clone()
                    .unwrap_or_else(|| req.token_url.to_string());
                let assertion = signer.assertion(
                    req.client_id.as_str(),
                    &audience,
                    self.clock.now(),
                    req.assertion_lifetime,
                )?;
                form.append_pair("client_id", req.client_id.as_str());
                form.append_pair("client_assertion_type", ASSERTION_TYPE);
                form.append_pair("client_assertion", &assertion);
            }
            (AuthMethod::ClientAssertion, _) => {
                let Some(assertion) = &presented.assertion else {
                    return Err(Error::Config(
                        "client_assertion needs an identity token source".into(),
                    ));
                };
                form.append_pair("client_id", req.client_id.as_str());
                form.append_pair("client_assertion_type", ASSERTION_TYPE);
                form.append_pair("client_assertion", assertion.expose_secret());
            }
            _ => {
                form.append_pair("client_id", req.client_id.as_str());
            }
        }
        if let Some(key) = &req.dpop {
            builder = builder.header("DPoP", self.dpop_proof(key));
        }
        Ok(builder.body(form.finish()))
    }

    /// The client, this attempt's identity tokens and the request built with them; an error
    /// is the attempt's outcome.
    async fn prepare(
        &self,
        grant: Grant<'_>,
    ) -> std::result::Result<reqwest::RequestBuilder, Attempt> {
        let http = self
            .http
            .get_or_try_init(|| async { http_client(&self.options) })
            .await
            .map_err(Attempt::Fatal)?;
        let presented = self.identity_tokens(grant).await.map_err(|e| {
            if e.is_transient() {
                Attempt::Retryable(e, None)
            } else {
                Attempt::Fatal(e)
            }
        })?;
        self.build(http, grant, &presented).map_err(Attempt::Fatal)
    }

    async fn attempt(&self, grant: Grant<'_>) -> Attempt {
        let req = &self.request;
        let builder = match self.prepare(grant).await {
            Ok(b) => b,
            Err(outcome) => return outcome,
        };
        tracing::debug!(url = %req.token_url, client_id = %req.client_id, auth = %req.auth_method, "requesting a token");
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return self.transport_failure(e),
        };
        let received_at = self.clock.now();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, received_at));
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| self.redact(v.chars().take(200).collect()));
        self.note_dpop_nonce(response.headers());
        let body = match read_capped(response, self.options.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Attempt::Fatal(Error::InvalidResponse {
                    status: status.as_u16(),
                    problem: format!("the body is larger than {} bytes", self.options.max_body),
                });
            }
            Err(BodyError::Transport(e)) => return self.transport_failure(e),
        };
        let code = status.as_u16();
        if status.is_success() {
            if let (Some(x), Grant::ClientCredentials) = (&req.exchange, grant)
                && let Err(e) = crate::exchange::check_issued_type(x, code, &body)
            {
                return Attempt::Fatal(self.redact_error(e));
            }
            return match response::parse_success_as(
                code,
                &body,
                received_at,
                self.options.default_lifetime,
                req.dpop.is_some(),
            )
            .and_then(|token| self.check_binding(code, token))
            {
                Ok(token) => Attempt::Done(token),
                Err(e) => Attempt::Fatal(self.redact_error(e)),
            };
        }
        if status.is_redirection() {
            return Attempt::Fatal(Error::Redirect {
                status: code,
                location,
            });
        }
        let error = match response::parse_error_body(&body) {
            Some(oauth) => Error::OAuth {
                status: code,
                error: oauth.error,
                description: oauth.description,
            },
            None => Error::Status {
                status: code,
                excerpt: response::excerpt(&body),
            },
        };
        let error = self.redact_error(error);
        if error.is_transient() {
            Attempt::Retryable(error, retry_after)
        } else {
            Attempt::Fatal(error)
        }
    }

    /// A request that got no answer: not retried if waiting cannot fix it (see
    /// [`cannot_heal`]), else retried; the `reqwest::Error` is kept as the source.
    fn transport_failure(&self, e: reqwest::Error) -> Attempt {
        let message = self.transport_message(&e);
        if cannot_heal(&e) {
            Attempt::Fatal(Error::unreachable(message).with_source(e))
        } else if e.is_timeout() {
            Attempt::Retryable(Error::timeout(message).with_source(e), None)
        } else {
            Attempt::Retryable(Error::transport(message).with_source(e), None)
        }
    }

    fn transport_message(&self, e: &reqwest::Error) -> String {
        let what = if e.is_timeout() {
            format!(
                "no answer from {} within {}",
                host(&self.request),
                fmt_duration(self.options.timeout)
            )
        } else if e.is_connect() {
            format!("cannot connect to {}", host(&self.request))
        } else {
            format!("request to {} failed", host(&self.request))
        };
        // The caller adds how to fix it (see `Error::is_unknown_issuer`): the library does
        // not know what its settings are called.
        self.redact(format!("{what}: {}", root_cause(e)))
    }

    /// Removes the client secret from text that came from the server or the network stack:
    /// a server that echoes its input must not make freshtoken print the secret.
    fn redact(&self, text: String) -> String {
        // Credential fields first (a server may echo a token response or the request body),
        // then the secret in every spelling it was sent in (plain, form-encoded, Basic).
        let mut text = crate::redact::fields(&text);
        for t in crate::sync::lock(&self.presented).iter() {
            let t = t.expose_secret();
            if !t.is_empty() && text.contains(t) {
                text = text.replace(t, "[identity token]");
            }
        }
        match &self.request.client_secret {
            Some(s) => {
                crate::redact::secret(&text, self.request.client_id.as_str(), s.expose_secret())
            }
            None => text,
        }
    }

    fn redact_error(&self, e: Error) -> Error {
        match e {
            Error::OAuth {
                status,
                error,
                description,
            } => Error::OAuth {
                status,
                error: self.redact(error),
                description: description.map(|d| self.redact(d)),
            },
            Error::Status { status, excerpt } => Error::Status {
                status,
                excerpt: self.redact(excerpt),
            },
            Error::InvalidResponse { status, problem } => Error::InvalidResponse {
                status,
                problem: self.redact(problem),
            },
            Error::Redirect { status, location } => Error::Redirect {
                status,
                location: location.map(|l| self.redact(l)),
            },
            Error::Transport { message, source } => Error::Transport {
                message: self.redact(message),
                source,
            },
            Error::Timeout { message, source } => Error::Timeout {
                message: self.redact(message),
                source,
            },
            Error::Unavailable {
                attempts,
                elapsed,
                last,
            } => Error::Unavailable {
                attempts,
                elapsed,
                last: Box::new(self.redact_error(*last)),
            },
            other => other,
        }
    }
}

impl HttpFetcher {
    /// One grant, retried as the retry policy allows until the budget's deadline, which also
    /// cuts off the attempt in flight.
    async fn fetch_grant(&self, grant: Grant<'_>, budget: Budget) -> Result<Token> {
        let policy = self.options.retry;
        let started = tokio::time::Instant::now();
        let mut attempts = 0u32;
        let mut guard = FinishGuard {
            observer: self.options.observer.as_deref(),
            told: false,
        };
        loop {
            attempts += 1;
            // The attempt's own timeout ends it, unless the deadline comes clearly first (a
            // call without retries has a deadline of one timeout, less what it took to start).
            let left = budget.left();
            let outcome = if left + Duration::from_millis(100) >= self.options.timeout {
                self.attempt_dpop(grant).await
            } else {
                match tokio::time::timeout(left, self.attempt_dpop(grant)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Attempt::Retryable(
                        Error::timeout(format!(
                            "no answer from {} within the {} left before the deadline",
                            host(&self.request),
                            fmt_duration(left)
                        )),
                        None,
                    ),
                }
            };
            let (error, retry_after) = match outcome {
                Attempt::Done(token) => return Ok(token),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retryable(e, after) => (e, after),
            };
            let wait = policy.backoff(attempts - 1, rand::rng().random::<f64>(), retry_after);
            let may_retry = budget.retry && !policy.deadline.is_zero();
            if !may_retry || wait >= budget.left() {
                if attempts == 1 && !may_retry {
                    return Err(error);
                }
                return Err(Error::Unavailable {
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                });
            }
            let shown = guard.observer.is_some_and(|o| {
                guard.told = true;
                o.retrying(&RetryNotice {
                    attempt: attempts,
                    error: &error,
                    next_in: wait,
                    elapsed: started.elapsed(),
                    left: budget.left(),
                })
            });
            if attempts == 1 && !shown {
                tracing::warn!(
                    "token request failed, retrying for up to {}: {error}",
                    fmt_duration(budget.left())
                );
            } else {
                tracing::debug!(
                    attempt = attempts,
                    wait_ms = wait.as_millis() as u64,
                    "token request failed again: {error}"
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Says once per fetcher when the server granted less than was asked for: a scope such
    /// as a "long-lived token" scope is silently ignored by the client credentials grant.
    fn check_scope(&self, token: &Token) {
        let Some(granted) = token.scope() else { return };
        let granted: Vec<&str> = granted.split_whitespace().collect();
        let missing: Vec<&str> = self
            .request
            .scope
            .iter()
            .map(String::as_str)
            .filter(|s| !granted.contains(s))
            .collect();
        if !missing.is_empty()
            && !self
                .scope_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "the server did not grant the requested scope {}; granted: {}",
                missing.join(" "),
                if granted.is_empty() {
                    "(none)".to_owned()
                } else {
                    granted.join(" ")
                }
            );
        }
    }
}

impl HttpFetcher {
    /// A proof for one token request, with the endpoint's latest nonce.
    fn dpop_proof(&self, key: &crate::dpop::DpopKey) -> String {
        let nonce = crate::sync::lock(&self.dpop_nonce).clone();
        key.proof(
            "POST",
            &self.request.token_url,
            None,
            nonce.as_deref(),
            self.clock.now(),
        )
    }

    /// Keeps the nonce a DPoP answer brings (RFC 9449 §8: any answer may carry a new one).
    fn note_dpop_nonce(&self, headers: &reqwest::header::HeaderMap) {
        if self.request.dpop.is_none() {
            return;
        }
        let nonce = headers
            .get(crate::dpop::NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            // A nonce is NQCHAR (RFC 9449 §8.1); anything else is not echoed into a proof.
            .filter(|v| {
                !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
            });
        if let Some(nonce) = nonce {
            *crate::sync::lock(&self.dpop_nonce) = Some(nonce.to_owned());
        }
    }

    /// One attempt; for DPoP, once more when the server refused it for want of the nonce
    /// it has just sent (`use_dpop_nonce`, RFC 9449 §8).
    async fn attempt_dpop(&self, grant: Grant<'_>) -> Attempt {
        let before = crate::sync::lock(&self.dpop_nonce).clone();
        let outcome = self.attempt(grant).await;
        let wants_nonce = match &outcome {
            Attempt::Fatal(Error::OAuth { error, .. })
            | Attempt::Retryable(Error::OAuth { error, .. }, _) => error == crate::dpop::USE_NONCE,
            _ => false,
        };
        let after = crate::sync::lock(&self.dpop_nonce).clone();
        if self.request.dpop.is_some() && wants_nonce && after.is_some() && after != before {
            tracing::debug!("the token endpoint asked for a DPoP nonce; retrying once with it");
            return self.attempt(grant).await;
        }
        outcome
    }

    /// For DPoP: a JWT access token's `cnf.jkt` must be this key's thumbprint (RFC 9449
    /// §6.1), else every request with it would be refused; a bearer answer is used as one.
    fn check_binding(&self, status: u16, token: Token) -> Result<Token> {
        let Some(key) = &self.request.dpop else {
            return Ok(token);
        };
        if !token.is_dpop() {
            tracing::warn!(
                "asked for a DPoP-bound token, the server issued a {} token; using it as one",
                token.token_type()
            );
            return Ok(token);
        }
        match crate::dpop::token_jkt(token.expose_secret()) {
            Some(jkt) if jkt != key.thumbprint() => Err(Error::InvalidResponse {
                status,
                problem: format!(
                    "the DPoP token is bound to another key (cnf.jkt {:?}, this key is {:?})",
                    jkt.chars().take(64).collect::<String>(),
                    key.thumbprint()
                ),
            }),
            _ => Ok(token),
        }
    }
}

/// Which grant a request uses.
#[derive(Clone, Copy)]
pub(crate) enum Grant<'a> {
    ClientCredentials,
    RefreshToken(&'a secrecy::SecretString),
    AuthorizationCode {
        code: &'a secrecy::SecretString,
        redirect_uri: &'a str,
        verifier: &'a secrecy::SecretString,
    },
    DeviceCode(&'a secrecy::SecretString),
}

impl HttpFetcher {
    /// One request with `grant` (the login grants of [`crate::login`]), retried like any
    /// other; the answer as the server gave it, refresh token included.
    pub(crate) async fn fetch_with(&self, grant: Grant<'_>, budget: Budget) -> Result<Token> {
        let token = self.fetch_grant(grant, budget).await?;
        tracing::debug!(token = %token.fingerprint(), lifetime_s = token.lifetime().as_secs_f64(), "token received");
        Ok(token)
    }
}

#[async_trait]
impl Fetch for HttpFetcher {
    fn cache_key(&self) -> CacheKey {
        self.request.cache_key()
    }

    fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.request.dpop.as_ref()
    }

    /// `--retry-for`; with no retries, one attempt's timeout.
    fn patience(&self) -> Duration {
        if self.options.retry.deadline.is_zero() {
            self.options.timeout
        } else {
            self.options.retry.deadline
        }
    }

    async fn fetch(&self, previous: Option<&Token>, budget: Budget) -> Result<Token> {
        let mut token = None;
        if let Some(rt) = previous.and_then(Token::refresh_token) {
            match self.fetch_grant(Grant::RefreshToken(rt), budget).await {
                // A server that does not rotate refresh tokens keeps the old one valid.
                Ok(t) if t.refresh_token().is_none() => {
                    token = Some(t.with_refresh_token(Some(rt.clone())))
                }
                Ok(t) => token = Some(t),
                Err(Error::OAuth { error, .. }) if error == "invalid_grant" => {
                    tracing::debug!(
                        "the refresh token was refused (invalid_grant); using the client's own grant"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let token = match token {
            Some(t) => t,
            None => self.fetch_grant(Grant::ClientCredentials, budget).await?,
        };
        if token.expiry_source() == ExpirySource::Default {
            tracing::warn!(
                "the token response gave no expires_in and the token is not a JWT with exp; assuming it lives {}",
                fmt_duration(self.options.default_lifetime)
            );
        }
        self.check_scope(&token);
        tracing::debug!(token = %token.fingerprint(), lifetime_s = token.lifetime().as_secs_f64(), "token received");
        Ok(token)
    }
}

enum Attempt {
    Done(Token),
    Retryable(Error, Option<std::time::Duration>),
    Fatal(Error),
}

/// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 asks.
fn basic_auth(client_id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn host(req: &TokenRequest) -> String {
    let url = &req.token_url;
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    }
}

/// Whether a failed request is one that waiting cannot fix: a host name that does not exist
/// (not a resolver that is briefly unable to answer) or a certificate that is not trusted.
fn cannot_heal(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        if inner.is_some_and(|i| i.is::<crate::dns::NoSuchHost>())
            || c.is::<crate::dns::NoSuchHost>()
        {
            return true;
        }
        if let Some(rustls::Error::InvalidCertificate(_)) = inner
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .or_else(|| c.downcast_ref::<rustls::Error>())
        {
            return true;
        }
        let text = c.to_string();
        if text.contains("invalid peer certificate") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A duration as people write it: "30 s", "1.5 s", "250 ms".
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn basic_auth_urlencodes_before_base64() {
        // RFC 6749 §2.3.1: "a:b c" and "p@ss:w/rd" are form-urlencoded first.
        let got = basic_auth("a:b c", "p@ss:w/rd");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(got.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(raw).unwrap(), "a%3Ab+c:p%40ss%3Aw%2Frd");
    }

    #[test]
    fn retry_classification() {
        let oauth = |status: u16, error: &str, d: Option<&str>| Error::OAuth {
            status,
            error: error.into(),
            description: d.map(Into::into),
        };
        let plain = |status| Error::Status {
            status,
            excerpt: String::new(),
        };
        assert!(plain(503).is_transient());
        assert!(plain(500).is_transient());
        assert!(plain(429).is_transient());
        assert!(!plain(404).is_transient());
        assert!(!oauth(401, "invalid_client", None).is_transient());
        assert!(!oauth(400, "invalid_request", Some("missing grant_type")).is_transient());
        assert!(
            oauth(
                400,
                "invalid_request",
                Some("Rate limit exceeded the maximum. Retry the request in [3] seconds")
            )
            .is_transient()
        );
        assert!(oauth(400, "invalid_request", Some("  rate limit exceeded")).is_transient());
        assert!(!oauth(400, "invalid_client", Some("rate limit exceeded")).is_transient());
        assert!(oauth(503, "temporarily_unavailable", None).is_transient());
        assert_eq!(plain(502).kind(), crate::ErrorKind::Unavailable);
        assert_eq!(plain(404).kind(), crate::ErrorKind::Rejected);
        assert_eq!(
            oauth(400, "invalid_request", Some("Rate limit exceeded")).kind(),
            crate::ErrorKind::Unavailable
        );
    }

    /// The words by which a message would tell a user about a CLI's settings rather than
    /// say what is wrong: the binary adds those hints, the library must not.
    pub(crate) fn names_a_cli_setting(message: &str) -> bool {
        message.contains("--")
            || message.contains("FRESHTOKEN_")
            || message.contains("flag")
            || message.contains("profile")
    }

    #[tokio::test]
    async fn a_transport_error_keeps_its_cause_and_names_no_flag() {
        // A port nobody listens on: bound, then closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            listener.local_addr().expect("bound address").port()
        };
        let url = format!("http://127.0.0.1:{port}/token")
            .parse()
            .expect("url");
        let request = TokenRequest::new(url, "client-1", Some("s3cr3t".to_owned().into()));
        let options = HttpOptions {
            retry: RetryPolicy::none(),
            ..HttpOptions::default()
        };
        let fetcher = HttpFetcher::new(request, options).expect("a valid request");
        let budget = Budget::within(Duration::from_secs(10)).once();
        let e = fetcher
            .fetch(None, budget)
            .await
            .expect_err("nobody listens");
        assert!(matches!(e, Error::Transport { .. }), "{e:?}");
        let source = std::error::Error::source(&e).expect("the cause is kept");
        assert!(
            source.downcast_ref::<reqwest::Error>().is_some(),
            "{source:?}"
        );
        let message = e.to_string();
        assert!(message.contains("cannot connect to 127.0.0.1"), "{message}");
        assert!(!names_a_cli_setting(&message), "{message}");
        assert!(!message.contains("s3cr3t") && !format!("{e:?}").contains("s3cr3t"));
    }

    #[test]
    fn the_certificate_methods_send_the_client_id_and_no_secret() -> Result<()> {
        let url: url::Url = "https://mtls.idp.example/token".parse().expect("url");
        let identity = crate::mtls::ClientIdentity::from_pem(
            include_str!("../tests/data/mtls-client.pem"),
            &include_str!("../tests/data/mtls-client.key")
                .to_owned()
                .into(),
        )?;
        for method in [
            AuthMethod::TlsClientAuth,
            AuthMethod::SelfSignedTlsClientAuth,
        ] {
            let mut request =
                TokenRequest::new(url.clone(), "client-1", Some("s3cr3t".to_owned().into()));
            request.auth_method = method;
            let e = HttpFetcher::new(request.clone(), HttpOptions::default()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("auth method {method} needs a client certificate and key")
            );
            let options = HttpOptions {
                client_identity: Some(identity.clone()),
                ..HttpOptions::default()
            };
            let fetcher = HttpFetcher::new(request, options.clone())?;
            let built = fetcher
                .build(
                    &http_client(&options)?,
                    Grant::ClientCredentials,
                    &Presented::default(),
                )?
                .build()
                .map_err(|e| Error::Config(e.to_string()))?;
            let body = built.body().and_then(|b| b.as_bytes()).unwrap_or_default();
            assert_eq!(
                body, b"grant_type=client_credentials&client_id=client-1",
                "{method}"
            );
            assert!(
                built
                    .headers()
                    .get(reqwest::header::AUTHORIZATION)
                    .is_none()
            );
            assert!(!format!("{fetcher:?}").contains("BEGIN"), "{fetcher:?}");
        }
        Ok(())
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250 ms");
    }
}

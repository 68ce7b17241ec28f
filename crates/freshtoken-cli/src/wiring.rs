//! From settings to working parts: the one place where resolving a profile does I/O.
//!
//! [`crate::settings`] decides what a command runs with, from values alone; this module does
//! what that decision needs — reads the config file and the environment, discovers an
//! issuer, reads secrets when they are used, opens caches, builds the clock — and hands the
//! commands a [`CachedSource`]. Everything here is awaited on the command's one runtime,
//! which `main` starts.

mod dpop;
pub(crate) mod identity;
pub(crate) mod login;
mod stores;

use std::sync::Arc;

use freshtoken::discovery::{Metadata, discover_cached};
use freshtoken::{
    CacheKey, CachedSource, Fetch, HttpFetcher, SharedClock, SkewedClock, SystemClock,
    TokenRequest, TokenStore,
};
use url::Url;

use crate::cli::{Cli, CredentialArgs};
use crate::config;
use crate::exit::{CliError, CliResult};
use crate::secret::{Secret, SecretSpec, read_secret};
use crate::settings::{self, ClockChoice, Endpoint, Environment, Inputs, Settings};

/// The config file `cli` names (or the user's own), read now.
pub(crate) fn load_config(cli: &Cli) -> CliResult<Option<config::Loaded>> {
    config::load(config::Choice::new(cli.config.as_deref(), cli.no_config))
}

/// The settings of the profile `cli` selects, from this process's flags, environment and
/// config file.
pub(crate) fn settings(cli: &Cli, args: &CredentialArgs) -> CliResult<Settings> {
    let loaded = load_config(cli)?;
    let env = Environment::of_process();
    settings::resolve(&Inputs {
        args,
        profile: cli.profile.as_deref(),
        config: loaded.as_ref(),
        no_config: config::Choice::new(cli.config.as_deref(), cli.no_config)
            == config::Choice::Nothing,
        env: &env,
    })
}

/// The clock `choice` describes.
pub(crate) fn clock(choice: &ClockChoice) -> SharedClock {
    match choice {
        ClockChoice::System => Arc::new(SystemClock),
        ClockChoice::Ahead(ahead) => Arc::new(SkewedClock::ahead(*ahead)),
        ClockChoice::SkewFile(path) => {
            Arc::new(crate::skew_clock::FileSkewClock::new(path.clone()))
        }
    }
}

/// A profile's settings with their endpoint found and their clock running: what a command
/// builds its source, or reads its cache, with.
#[derive(Debug)]
pub(crate) struct Wired {
    pub settings: Settings,
    pub clock: SharedClock,
    /// The request, without its secrets (see [`Wired::token_request`]).
    request: TokenRequest,
    /// The issuer's metadata, when the endpoint came from discovery.
    metadata: Option<Metadata>,
}

/// Finds the endpoint of `settings` (discovering an issuer, with its document cached beside
/// the tokens) and starts its clock. Notes on what was given but not used are logged here.
pub(crate) async fn wire(settings: Settings) -> CliResult<Wired> {
    for note in &settings.notes {
        tracing::info!("{note}");
    }
    let clock = clock(&settings.clock);
    let (token_url, metadata) = match &settings.endpoint {
        Endpoint::TokenUrl(url) => (url.clone(), None),
        Endpoint::Genesys(region) => (region.token_url(), None),
        Endpoint::Issuer(issuer) => {
            let meta = discover_cached(issuer, &settings.http, settings.cache.choice.file_dir())
                .await
                .map_err(CliError::from)?;
            // RFC 8705 §5: with a client certificate, the mTLS alias if there is one.
            let url = meta.token_endpoint_for(settings.client.auth_method).clone();
            (url, Some(meta))
        }
    };
    let mut request = public_request(&settings, token_url);
    if settings.client.auth_method.needs_client_certificate() {
        // The certificate is public: read now, for the cache key (tokens are bound to it).
        request.certificate_thumbprint = Some(certificate_thumbprint(&settings.client)?);
    }
    request.dpop = dpop::key(&settings)?;
    Ok(Wired {
        settings,
        clock,
        request,
        metadata,
    })
}

/// The gateway `args` ask for, letting in the client of `request` (its id and secret).
pub(crate) fn gateway(
    args: &crate::cli::GatewayArgs,
    request: &TokenRequest,
) -> CliResult<Option<freshtoken_proxy::Gateway>> {
    if !args.gateway {
        return Ok(None);
    }
    let secret = request.client_secret.as_ref().ok_or_else(|| {
        CliError::usage(format!(
            "--gateway lets in the profile's own client by its id and secret; auth method {} has no secret",
            request.auth_method
        ))
    })?;
    Ok(Some(freshtoken_proxy::Gateway::new(
        request.client_id.to_string(),
        secret.as_secret(),
        &args.gateway_login_prefix,
        &args.gateway_api_prefix,
    )))
}

/// A warning when `token_url` and `upstream` are in two different Genesys Cloud regions: a
/// token of one region is refused by the other's API, every call a 401.
pub(crate) fn regions_differ(token_url: &Url, upstream: &Url) -> Option<String> {
    let region = |url: &Url| {
        let host = url.host_str()?;
        let domain = host.strip_prefix("login.").or(host.strip_prefix("api."))?;
        freshtoken::provider::GenesysRegion::find(domain).ok()
    };
    match (region(token_url), region(upstream)) {
        (Some(login), Some(api)) if login != api => Some(format!(
            "the token endpoint {token_url} is Genesys Cloud {} but the upstream {upstream} is {}: its API will refuse these tokens",
            login.name, api.name
        )),
        _ => None,
    }
}

/// A client certificate and its key, read from `cert` and `key` (the key with the rules of
/// every secret) and checked to belong together; an error names where each came from.
pub(crate) fn read_identity(
    cert: &SecretSpec,
    key: &SecretSpec,
    method: freshtoken::AuthMethod,
) -> CliResult<freshtoken::ClientIdentity> {
    use secrecy::ExposeSecret;
    let pem = read_secret(cert, Secret::ClientCertificate, method)?;
    let key_pem = read_secret(key, Secret::ClientKey, method)?;
    freshtoken::ClientIdentity::from_pem(pem.expose_secret(), &key_pem).map_err(|e| {
        CliError::usage(format!(
            "{e} (certificate from {}, key from {})",
            cert.origin(),
            key.origin()
        ))
    })
}

/// `x5t#S256` of the client certificate `client` names (its leaf, the first PEM block).
fn certificate_thumbprint(client: &settings::Client) -> CliResult<String> {
    use secrecy::ExposeSecret;
    let pem = read_secret(
        &client.certificate,
        Secret::ClientCertificate,
        client.auth_method,
    )?;
    freshtoken::pem_certificate_thumbprint(pem.expose_secret()).map_err(|e| {
        CliError::usage(format!(
            "{e} (certificate from {})",
            client.certificate.origin()
        ))
    })
}

/// The request `settings` describe for `token_url`, without secrets.
fn public_request(settings: &Settings, token_url: Url) -> TokenRequest {
    let (client, ask) = (&settings.client, &settings.ask);
    let mut request = TokenRequest::new(token_url, client.id.clone(), None);
    request.auth_method = client.auth_method;
    request.signing_alg = client.signing_alg;
    request.key_id = client.key_id.clone();
    request.assertion_audience = client.assertion_audience.clone();
    if let Some(l) = client.assertion_lifetime {
        request.assertion_lifetime = l;
    }
    request.scope = ask.scope.clone();
    request.audience = ask.audience.clone();
    request.resource = ask.resource.clone();
    request.params = ask.params.clone();
    if let Some(x) = &settings.identity.exchange {
        let mut exchange = freshtoken::TokenExchange::default();
        if let Some(t) = &x.subject_token_type {
            exchange.subject_token_type = t.clone();
        }
        if let Some(t) = &x.actor_token_type {
            exchange.actor_token_type = t.clone();
        }
        exchange.requested_token_type = x.requested_token_type.clone();
        request.exchange = Some(exchange);
    }
    request.identity_source = settings.identity.describe();
    request
}

impl Wired {
    /// The profile's name.
    pub(crate) fn profile(&self) -> &str {
        &self.settings.profile
    }

    /// The cache key, which needs no secret (a login's access tokens have their own).
    pub(crate) fn cache_key(&self) -> CacheKey {
        let key = self.request.cache_key();
        match &self.settings.login {
            Some(_) => freshtoken::login::access_key(&key),
            None => key,
        }
    }

    /// The request without its secret, for display.
    pub(crate) fn request_public(&self) -> &TokenRequest {
        &self.request
    }

    /// The full request: reads the secrets now (from stdin, a file, the environment or a
    /// command) and checks that the request can work.
    pub(crate) fn token_request(&self) -> CliResult<TokenRequest> {
        let client = &self.settings.client;
        let mut request = self.request.clone();
        let method = request.auth_method;
        if method.needs_secret() {
            request.client_secret =
                Some(read_secret(&client.secret, Secret::ClientSecret, method)?.into());
        }
        if method.needs_private_key() {
            request.private_key =
                Some(read_secret(&client.key, Secret::PrivateKey, method)?.into());
        }
        request.validate()?;
        if let Some(meta) = &self.metadata {
            let alg = request.signer()?.map(|s| s.alg());
            meta.check(request.auth_method, alg)?;
        }
        Ok(request)
    }

    /// The client certificate and key of a mutual-TLS profile, read now; `None` for the
    /// other methods, which present no certificate.
    pub(crate) fn client_identity(&self) -> CliResult<Option<freshtoken::ClientIdentity>> {
        let client = &self.settings.client;
        if !client.auth_method.needs_client_certificate() {
            return Ok(None);
        }
        read_identity(
            &client.certificate,
            &client.certificate_key,
            client.auth_method,
        )
        .map(Some)
    }

    /// The cache layers, nearest first. `request` carries the credentials that seal Redis
    /// values; without them (status, invalidate when no secret is at hand) Redis is left out.
    pub(crate) fn layers(
        &self,
        request: Option<&TokenRequest>,
    ) -> CliResult<Vec<Arc<dyn TokenStore>>> {
        stores::layers(&self.settings.cache, request, &self.clock)
    }

    /// The cache as one store.
    pub(crate) fn store(&self, request: Option<&TokenRequest>) -> CliResult<Arc<dyn TokenStore>> {
        Ok(stores::stack(self.layers(request)?, &self.clock))
    }

    /// The cached source a command gets its token from.
    pub(crate) fn source(&self) -> CliResult<CachedSource> {
        self.source_with(None)
    }

    /// Like [`Wired::source`]; a long-running command passes `Some(memory)` to keep its
    /// tokens in process unless a cache was chosen explicitly.
    pub(crate) fn source_with(
        &self,
        default_store: Option<Arc<dyn TokenStore>>,
    ) -> CliResult<CachedSource> {
        self.source_from(default_store, None, |fetcher| fetcher)
    }

    /// Like [`Wired::source_with`], with a given HTTP client (built with the settings' HTTP
    /// options) and the fetcher wrapped by `wrap`: the agent shares clients and counts
    /// requests.
    pub(crate) fn source_from(
        &self,
        default_store: Option<Arc<dyn TokenStore>>,
        client: Option<reqwest::Client>,
        wrap: impl FnOnce(Arc<dyn Fetch>) -> Arc<dyn Fetch>,
    ) -> CliResult<CachedSource> {
        self.source_of(self.token_request()?, default_store, client, wrap)
    }

    /// Like [`Wired::source_from`], for a request whose secrets were read already (a caller
    /// that needs them too, such as the gateway, reads them once: stdin cannot be read twice).
    pub(crate) fn source_of(
        &self,
        request: TokenRequest,
        default_store: Option<Arc<dyn TokenStore>>,
        client: Option<reqwest::Client>,
        wrap: impl FnOnce(Arc<dyn Fetch>) -> Arc<dyn Fetch>,
    ) -> CliResult<CachedSource> {
        let store = match default_store {
            Some(store) if !self.settings.cache.explicit => store,
            _ => self.store(Some(&request))?,
        };
        let mut http = self.settings.http.clone();
        http.client_identity = self.client_identity()?;
        let mut request = request;
        if let Some(identity) = &http.client_identity {
            // The certificate read now, should it have been renewed since the wiring.
            request.certificate_thumbprint = Some(identity.thumbprint().to_owned());
        }
        // A shared client presents no certificate: a mutual-TLS profile gets its own.
        let client = client.filter(|_| http.client_identity.is_none());
        let mut fetcher = HttpFetcher::new(request, http)?.with_clock(self.clock.clone());
        if let Some(client) = client {
            fetcher = fetcher.with_client(client);
        }
        let (identity, http) = (&self.settings.identity, &self.settings.http);
        if let Some(source) = &identity.assertion {
            fetcher = fetcher.with_client_assertion(identity::open(source, http)?);
        }
        if let Some(x) = &identity.exchange {
            fetcher = fetcher.with_subject_token(identity::open(&x.subject, http)?);
            if let Some(actor) = &x.actor {
                fetcher = fetcher.with_actor_token(identity::open(actor, http)?);
            }
        }
        // A login profile's tokens come from its stored refresh token.
        let fetcher: Arc<dyn Fetch> = match self.login_store() {
            Some(logins) => Arc::new(
                freshtoken::login::LoginFetcher::new(fetcher, logins?)
                    .with_clock(self.clock.clone()),
            ),
            None => Arc::new(fetcher),
        };
        Ok(CachedSource::builder_shared(wrap(fetcher))
            .store(store)
            .policy(self.settings.policy)
            .clock(self.clock.clone())
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_across_two_genesys_regions_is_named() {
        let url = |s: &str| Url::parse(s).unwrap();
        let us = url("https://login.mypurecloud.com/oauth/token");
        assert!(regions_differ(&us, &url("https://api.mypurecloud.com")).is_none());
        let warning = regions_differ(&us, &url("https://api.mypurecloud.ie")).unwrap();
        assert!(
            warning.contains("us-east-1") && warning.contains("eu-west-1"),
            "{warning}"
        );
        assert!(regions_differ(&us, &url("http://127.0.0.1:8080")).is_none());
        assert!(
            regions_differ(
                &url("https://idp.example/token"),
                &url("https://api.mypurecloud.ie")
            )
            .is_none()
        );
    }
}

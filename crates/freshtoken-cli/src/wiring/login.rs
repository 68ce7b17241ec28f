//! A login profile's parts: where its refresh token is kept and which endpoints the browser,
//! the device flow and the revocation use (the profile's, else discovery's, else the
//! provider's).

use freshtoken::login::LoginStore;
use url::Url;

use super::Wired;
use crate::exit::{CliError, CliResult};
use crate::settings::Endpoint;
use crate::settings::login::Login;

impl Wired {
    /// The profile's login settings, if its grant is a login.
    pub(crate) fn login(&self) -> Option<&Login> {
        self.settings.login.as_ref()
    }

    /// The store of the profile's login; `None` for a client credentials profile.
    pub(crate) fn login_store(&self) -> Option<CliResult<LoginStore>> {
        let login = self.login()?;
        Some(login.state_dir.clone().map(LoginStore::new).ok_or_else(|| {
            CliError::usage("no place for the login: set HOME or XDG_STATE_HOME (an absolute path)")
        }))
    }

    /// Where the browser logs in.
    pub(crate) fn authorization_endpoint(&self) -> CliResult<Url> {
        let from_profile = self.login().and_then(|l| l.authorization_endpoint.clone());
        let from_discovery = self
            .metadata
            .as_ref()
            .and_then(|m| m.authorization_endpoint.clone());
        let from_provider = match &self.settings.endpoint {
            // Genesys Cloud: https://login.<domain>/oauth/authorize.
            Endpoint::Genesys(region) => region.token_url().join("/oauth/authorize").ok(),
            _ => None,
        };
        from_profile
            .or(from_discovery)
            .or(from_provider)
            .ok_or_else(|| {
                CliError::usage(
                    "no authorization endpoint: set authorization_endpoint in the profile, or use an issuer that lists one",
                )
            })
    }

    /// Where a refresh token is revoked, if anywhere is known.
    pub(crate) fn revocation_endpoint(&self) -> Option<Url> {
        self.login()
            .and_then(|l| l.revocation_endpoint.clone())
            .or_else(|| {
                self.metadata
                    .as_ref()
                    .and_then(|m| m.revocation_endpoint.clone())
            })
    }
}

impl Wired {
    /// The device flow's endpoint: the profile's, else discovery's. Genesys Cloud has none.
    pub(crate) fn device_authorization_endpoint(&self) -> CliResult<Url> {
        self.login()
            .and_then(|l| l.device_authorization_endpoint.clone())
            .or_else(|| {
                self.metadata
                    .as_ref()
                    .and_then(|m| m.device_authorization_endpoint.clone())
            })
            .ok_or_else(|| {
                CliError::usage(
                    "this server has no device authorization endpoint (Genesys Cloud has none): use the code flow, grant = \"authorization_code\", or set device_authorization_endpoint in the profile",
                )
            })
    }
}

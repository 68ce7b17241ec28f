//! A profile's login keys (`grant`, `redirect_uri`, the login endpoints) and where logins
//! are kept: values only, no I/O (see docs/login.md).

use std::path::PathBuf;

use url::Url;

use super::Source;
use crate::exit::{CliError, CliResult};

/// Which login grant a profile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginGrant {
    /// Authorization code with PKCE, through a browser and a loopback redirect.
    AuthorizationCode,
    /// The device flow (RFC 8628): a code typed in on another device.
    DeviceCode,
}

/// A person's login: how it is made, and where its refresh token is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub grant: LoginGrant,
    /// The registered redirect URI; `None`: a random loopback port.
    pub redirect_uri: Option<Url>,
    /// Over discovery's and the provider's.
    pub authorization_endpoint: Option<Url>,
    pub device_authorization_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    /// `$XDG_STATE_HOME/freshtoken`, else `~/.local/state/freshtoken`.
    pub state_dir: Option<PathBuf>,
}

/// The login of the profile: `None` for the client credentials grant.
pub(super) fn resolve(s: &Source<'_>) -> CliResult<Option<Login>> {
    let p = s.profile;
    let grant = match p.grant.as_deref().map(str::trim) {
        // Not a person's login (token_exchange is resolved with the identity sources).
        None | Some("client_credentials" | "token_exchange") => return Ok(None),
        Some("authorization_code") => LoginGrant::AuthorizationCode,
        Some("device_code") => LoginGrant::DeviceCode,
        Some(other) => {
            return Err(CliError::usage(format!(
                "{}: {other:?} is not one of client_credentials, token_exchange, authorization_code, device_code",
                s.in_file("grant")
            )));
        }
    };
    let url = |name: &str, value: &Option<String>| -> CliResult<Option<Url>> {
        value
            .as_deref()
            .map(|v| {
                Url::parse(v.trim()).map_err(|e| {
                    CliError::usage(format!("{} {v:?} is not a URL: {e}", s.in_file(name)))
                })
            })
            .transpose()
    };
    let redirect_uri = url("redirect_uri", &p.redirect_uri)?;
    if let Some(r) = &redirect_uri {
        let loopback = matches!(r.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if r.scheme() != "http" || !loopback || r.port().is_none() {
            return Err(CliError::usage(format!(
                "{} {r} must be http://127.0.0.1:PORT/… (the login listens on loopback)",
                s.in_file("redirect_uri")
            )));
        }
    }
    let xdg = s.env.var("XDG_STATE_HOME").map(std::ffi::OsStr::new);
    let home = s.env.var("HOME").map(std::ffi::OsStr::new);
    Ok(Some(Login {
        grant,
        redirect_uri,
        authorization_endpoint: url("authorization_endpoint", &p.authorization_endpoint)?,
        device_authorization_endpoint: url(
            "device_authorization_endpoint",
            &p.device_authorization_endpoint,
        )?,
        revocation_endpoint: url("revocation_endpoint", &p.revocation_endpoint)?,
        state_dir: freshtoken::login::LoginStore::dir_from(xdg, home),
    }))
}

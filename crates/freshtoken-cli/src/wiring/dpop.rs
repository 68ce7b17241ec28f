//! A profile's DPoP key, read or made when the profile is wired: its thumbprint is part of
//! the cache key, so every command that reads the cache needs it.

use freshtoken::dpop::DpopKey;
use secrecy::ExposeSecret;

use crate::exit::{CliError, CliResult};
use crate::secret::{Secret, SecretSpec, read_secret};
use crate::settings::Settings;
use crate::settings::dpop::Dpop;

/// The key `settings` name: the profile's own, or the one made for it in the state folder.
pub(super) fn key(settings: &Settings) -> CliResult<Option<DpopKey>> {
    match &settings.dpop {
        Dpop::Off => Ok(None),
        Dpop::Generated { state_dir, alg } => {
            let dir = state_dir.as_ref().ok_or_else(|| {
                CliError::usage(
                    "no place for the DPoP key: set HOME or XDG_STATE_HOME (an absolute path), or dpop_key in the profile",
                )
            })?;
            Ok(Some(freshtoken::dpop::load_or_create(
                dir,
                &settings.profile,
                *alg,
            )?))
        }
        Dpop::Key(source, alg) => {
            let pem = read_secret(
                &SecretSpec::Config(source.clone()),
                Secret::DpopKey,
                settings.client.auth_method,
            )?;
            let key = DpopKey::from_pem(pem.expose_secret())?;
            match alg {
                // An RSA key signs PS256 when asked; any other mismatch is the user's.
                Some(alg) => key
                    .with_alg(*alg)
                    .map(Some)
                    .map_err(|e| CliError::usage(format!("profile {}: {e}", settings.profile))),
                None => Ok(Some(key)),
            }
        }
    }
}

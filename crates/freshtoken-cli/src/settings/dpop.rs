//! A profile's DPoP keys (`dpop`, `dpop_key`): values only, no I/O — the key is read or
//! made by the wiring (see docs/sender-constrained.md).

use std::path::PathBuf;

use freshtoken::dpop::DpopAlg;

use super::Source;
use crate::config::SecretSource;
use crate::exit::{CliError, CliResult};

/// Whether a profile's tokens are DPoP-bound, and to which key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Dpop {
    /// Bearer tokens.
    #[default]
    Off,
    /// An `alg` key made for the profile on first use and kept in `state_dir` (`None`:
    /// there is no state folder, which is an error when the key is needed).
    Generated {
        state_dir: Option<PathBuf>,
        alg: DpopAlg,
    },
    /// The profile's own key, of `alg` when `dpop_alg` names one.
    Key(SecretSource, Option<DpopAlg>),
}

/// The DPoP setting of the profile.
pub(super) fn resolve(s: &Source<'_>) -> CliResult<Dpop> {
    let p = s.profile;
    let alg = p
        .dpop_alg
        .as_deref()
        .map(|a| {
            a.parse::<DpopAlg>()
                .map_err(|e| CliError::usage(format!("{}: {e}", s.in_file("dpop_alg"))))
        })
        .transpose()?;
    if alg.is_some() && p.dpop != Some(true) && p.dpop_key.is_none() {
        return Err(CliError::usage(format!(
            "{} applies with dpop = true or dpop_key",
            s.in_file("dpop_alg")
        )));
    }
    match (p.dpop, &p.dpop_key) {
        (Some(false), Some(_)) => Err(CliError::usage(format!(
            "{} names a key but dpop = false: remove one of them",
            s.in_file("dpop_key")
        ))),
        (_, Some(key)) => Ok(Dpop::Key(key.clone(), alg)),
        (Some(true), None) if alg.is_some_and(|a| !a.can_generate()) => {
            Err(CliError::usage(format!(
                "{} is {} but freshtoken makes only ES256 and EdDSA keys: name an RSA key of your own in dpop_key",
                s.in_file("dpop_alg"),
                alg.map(DpopAlg::as_str).unwrap_or_default()
            )))
        }
        (Some(true), None) => {
            let xdg = s.env.var("XDG_STATE_HOME").map(std::ffi::OsStr::new);
            let home = s.env.var("HOME").map(std::ffi::OsStr::new);
            Ok(Dpop::Generated {
                state_dir: freshtoken::login::LoginStore::dir_from(xdg, home),
                alg: alg.unwrap_or_default(),
            })
        }
        (Some(false) | None, None) => Ok(Dpop::Off),
    }
}

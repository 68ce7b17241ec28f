//! The identity-token sources of a secretless profile, opened. The HTTP and file sources are
//! the library's; a command is run here, with the bounded runner of secret commands, so that
//! the library never spawns processes.

use std::sync::Arc;

use async_trait::async_trait;
use freshtoken::HttpOptions;
use freshtoken::identity::{
    FixedIdentity, GithubActions, IdentityFile, IdentityToken, SharedIdentity,
};
use secrecy::SecretString;
use url::Url;

use crate::config::IdentitySource;
use crate::exit::{CliError, CliResult};
use crate::settings::identity::describe;

/// GitHub Actions' variables for its OIDC endpoint.
const GITHUB_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
const GITHUB_TOKEN: &str = crate::secret::GITHUB_REQUEST_TOKEN;

/// Opens `source` (reading the variables it names now).
pub(super) fn open(source: &IdentitySource, http: &HttpOptions) -> CliResult<SharedIdentity> {
    let var = |name: &str, what: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| CliError::usage(format!("{what}: ${name} is not set")))
    };
    Ok(match source {
        IdentitySource::GithubActions { audience } => {
            let what = "the GitHub Actions identity token (does the job have `permissions: id-token: write`?)";
            let url = var(GITHUB_URL, what)?;
            let url = Url::parse(&url)
                .map_err(|e| CliError::usage(format!("${GITHUB_URL} is not a URL: {e}")))?;
            let token = SecretString::from(var(GITHUB_TOKEN, what)?);
            Arc::new(GithubActions::new(
                url,
                token,
                audience.clone(),
                http.clone(),
            )?)
        }
        IdentitySource::Gitlab { env } | IdentitySource::Env(env) => {
            let token = var(env, "the identity token")?;
            Arc::new(FixedIdentity::new(
                describe(source),
                SecretString::from(token),
            ))
        }
        IdentitySource::File(path) => Arc::new(IdentityFile::new(path)),
        IdentitySource::Command(argv) => Arc::new(CommandIdentity { argv: argv.clone() }),
    })
}

/// For `status`: each identity source of `identity` (role, source) with the claims of the
/// token it holds now, for the sources that can be looked at without fetching or running
/// anything (a file, a variable); never the token.
pub(crate) fn peek(
    identity: &crate::settings::identity::Identity,
) -> Vec<(&'static str, String, Option<String>)> {
    let exchange = identity.exchange.as_ref();
    [
        ("client assertion", identity.assertion.as_ref()),
        ("subject token", exchange.map(|x| &x.subject)),
        ("actor token", exchange.and_then(|x| x.actor.as_ref())),
    ]
    .into_iter()
    .filter_map(|(role, source)| source.map(|s| (role, s)))
    .map(|(role, source)| {
        let held = match source {
            IdentitySource::File(path) => freshtoken::internal::regular_file::read(
                path,
                freshtoken::identity::MAX_IDENTITY_TOKEN as u64,
                freshtoken::internal::regular_file::Symlinks::Follow,
            )
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
            IdentitySource::Env(var) | IdentitySource::Gitlab { env: var } => {
                std::env::var(var).ok()
            }
            IdentitySource::GithubActions { .. } | IdentitySource::Command(_) => None,
        };
        let claims = held
            .and_then(|t| freshtoken::identity::IdentityClaims::of(t.trim()))
            .map(|c| c.summary());
        (role, describe(source), claims)
    })
    .collect()
}

/// An identity token printed by a command, run again for every request.
#[derive(Debug)]
struct CommandIdentity {
    argv: Vec<String>,
}

#[async_trait]
impl IdentityToken for CommandIdentity {
    async fn identity_token(&self) -> freshtoken::Result<SecretString> {
        let argv = self.argv.clone();
        let out = tokio::task::spawn_blocking(move || {
            crate::secret::run_secret_command(&argv, "identity token", crate::secret::COMMAND_LIMIT)
        })
        .await
        .map_err(|e| freshtoken::Error::Config(format!("the identity token command: {e}")))?;
        out.map(|t| SecretString::from(t.trim().to_owned()))
            .map_err(|e| freshtoken::Error::Config(e.to_string()))
    }

    fn describe(&self) -> String {
        describe(&IdentitySource::Command(self.argv.clone()))
    }
}

//! Secretless profiles: the identity token (a CI job's, a pod's) as the client assertion or as
//! the subject of a token exchange. Resolved from values alone, like the rest of settings;
//! the sources are opened in wiring.

use std::path::PathBuf;

use freshtoken::AuthMethod;

use super::{Client, Source};
use crate::config::IdentitySource;
use crate::exit::{CliError, CliResult};
use crate::secret::SecretSpec;

/// The identity tokens a profile uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The client assertion's source (`auth_method = client_assertion`).
    pub assertion: Option<IdentitySource>,
    /// The token exchange, when the grant is `token_exchange`.
    pub exchange: Option<Exchange>,
}

/// A token exchange's sources and types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exchange {
    pub subject: IdentitySource,
    pub subject_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor: Option<IdentitySource>,
    pub actor_token_type: Option<String>,
}

impl Identity {
    /// The environment variables the identity tokens are read from (flags included): `exec`
    /// keeps them from its child, as it keeps the secrets.
    pub(crate) fn variables(&self) -> Vec<String> {
        let exchange = self.exchange.as_ref();
        [
            self.assertion.as_ref(),
            exchange.map(|x| &x.subject),
            exchange.and_then(|x| x.actor.as_ref()),
        ]
        .into_iter()
        .flatten()
        .filter_map(|s| match s {
            IdentitySource::Env(v) | IdentitySource::Gitlab { env: v } => Some(v.clone()),
            _ => None,
        })
        .collect()
    }

    /// A stable name of the sources, never a token: part of the cache key.
    pub(crate) fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(a) = &self.assertion {
            parts.push(format!("client_assertion {}", describe(a)));
        }
        if let Some(x) = &self.exchange {
            parts.push(format!("subject_token {}", describe(&x.subject)));
            if let Some(a) = &x.actor {
                parts.push(format!("actor_token {}", describe(a)));
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// How a source is named in the cache key, logs and `status`.
pub(crate) fn describe(source: &IdentitySource) -> String {
    match source {
        IdentitySource::GithubActions { audience: Some(a) } => {
            format!("github_actions (audience {a})")
        }
        IdentitySource::GithubActions { audience: None } => "github_actions".to_owned(),
        IdentitySource::Gitlab { env } => format!("gitlab ${env}"),
        IdentitySource::File(p) => format!("file {}", p.display()),
        IdentitySource::Env(v) => format!("env ${v}"),
        IdentitySource::Command(argv) => format!(
            "command {:?}",
            argv.first().map(String::as_str).unwrap_or("")
        ),
    }
}

/// A source named by flag: `github[:AUDIENCE]`, `gitlab:VAR`, `env:VAR` or `file:PATH`.
fn parse_flag(flag: &str, value: &str) -> CliResult<IdentitySource> {
    let (kind, rest) = value.split_once(':').unwrap_or((value, ""));
    let rest = rest.trim();
    match (kind, rest) {
        ("github", "") => Ok(IdentitySource::GithubActions { audience: None }),
        ("github", aud) => Ok(IdentitySource::GithubActions {
            audience: Some(aud.to_owned()),
        }),
        ("gitlab", var) if !var.is_empty() => Ok(IdentitySource::Gitlab {
            env: var.to_owned(),
        }),
        ("env", var) if !var.is_empty() => Ok(IdentitySource::Env(var.to_owned())),
        ("file", path) if !path.is_empty() => Ok(IdentitySource::File(PathBuf::from(path))),
        _ => Err(CliError::usage(format!(
            "--{flag} {value:?}: use github[:AUDIENCE], gitlab:VAR, env:VAR or file:PATH"
        ))),
    }
}

/// The profile's identity tokens; a client assertion source makes `client_assertion` the
/// auth method unless another was named, and one named without a source is refused.
pub(super) fn resolve(s: &Source<'_>, client: &mut Client) -> CliResult<Identity> {
    let profile = s.profile;
    let method_named = s.args.auth_method.is_some() || profile.auth_method.is_some();
    let assertion = assertion(s, client, method_named)?;
    let exchange = exchange(s)?;
    if exchange.is_none()
        && (profile.actor_token.is_some()
            || profile.subject_token_type.is_some()
            || profile.requested_token_type.is_some())
    {
        return Err(CliError::usage(format!(
            "{} apply to grant = \"token_exchange\" only",
            s.in_file("subject_token_type, requested_token_type and actor_token")
        )));
    }
    // A token exchange with no secret anywhere is a public client's.
    if exchange.is_some() && !method_named && matches!(client.secret, SecretSpec::Missing) {
        client.auth_method = AuthMethod::None;
    }
    Ok(Identity {
        assertion,
        exchange,
    })
}

/// The client assertion's source, if any; a source alone makes the auth method
/// `client_assertion`, and the two must agree when both are named.
fn assertion(
    s: &Source<'_>,
    client: &mut Client,
    method_named: bool,
) -> CliResult<Option<IdentitySource>> {
    let (args, profile) = (s.args, s.profile);
    let assertion = match (&args.client_assertion_file, &args.client_assertion_from) {
        (Some(path), _) => Some(IdentitySource::File(path.clone())),
        (None, Some(v)) => Some(parse_flag("client-assertion-from", v)?),
        (None, None) => profile.client_assertion.clone(),
    };
    if assertion.is_some() && !method_named {
        client.auth_method = AuthMethod::ClientAssertion;
    }
    match (&assertion, client.auth_method) {
        (None, AuthMethod::ClientAssertion) => {
            return Err(CliError::usage(format!(
                "auth method client_assertion needs an identity token: set --client-assertion-file, --client-assertion-from or {}",
                s.in_file("client_assertion")
            )));
        }
        (Some(_), m) if m != AuthMethod::ClientAssertion => {
            return Err(CliError::usage(format!(
                "a client assertion source is given but the auth method is {m}; use auth_method = \"client_assertion\" (or drop the source)"
            )));
        }
        _ => {}
    }
    Ok(assertion)
}

/// The token exchange of `grant = "token_exchange"` (or of a subject token alone), checked
/// against the grant named.
fn exchange(s: &Source<'_>) -> CliResult<Option<Exchange>> {
    let (args, profile) = (s.args, s.profile);
    let subject = match (&args.subject_token_file, &args.subject_token_from) {
        (Some(path), _) => Some(IdentitySource::File(path.clone())),
        (None, Some(v)) => Some(parse_flag("subject-token-from", v)?),
        (None, None) => profile.subject_token.clone(),
    };
    let exchange = match (profile.grant.as_deref().map(str::trim), subject) {
        (None | Some("token_exchange"), Some(subject)) => Some(Exchange {
            subject,
            subject_token_type: profile.subject_token_type.clone(),
            requested_token_type: profile.requested_token_type.clone(),
            actor: profile.actor_token.clone(),
            actor_token_type: profile.actor_token_type.clone(),
        }),
        (Some("token_exchange"), None) => {
            return Err(CliError::usage(format!(
                "grant token_exchange needs a subject token: set --subject-token-file, --subject-token-from or {}",
                s.in_file("subject_token")
            )));
        }
        (None | Some("client_credentials"), None) => None,
        // A person's login (see `settings::login`), which takes no subject token.
        (Some("authorization_code" | "device_code"), None) => None,
        (Some(login @ ("authorization_code" | "device_code")), Some(_)) => {
            return Err(CliError::usage(format!(
                "a subject token is given but {} is {login}; use grant = \"token_exchange\"",
                s.in_file("grant")
            )));
        }
        (Some("client_credentials"), Some(_)) => {
            return Err(CliError::usage(format!(
                "a subject token is given but {} is client_credentials; use grant = \"token_exchange\"",
                s.in_file("grant")
            )));
        }
        (Some(other), _) => {
            return Err(CliError::usage(format!(
                "{}: unknown grant {other:?}; known: client_credentials, token_exchange, authorization_code, device_code",
                s.in_file("grant")
            )));
        }
    };
    Ok(exchange)
}

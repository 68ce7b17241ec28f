//! The token exchange grant (RFC 8693): an identity token (the CI job's, a pod's) traded for
//! an access token, as Google's STS, Keycloak, Auth0 and others do.

use crate::error::Error;
use crate::identity::{TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_JWT};

/// The RFC 8693 parameters of a token exchange request, besides the subject token itself
/// (which the fetcher obtains from its [`IdentityToken`](crate::identity::IdentityToken)
/// source for every request) and `audience`, `resource` and `scope` (the request's own).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenExchange {
    /// `subject_token_type`, by default [`TOKEN_TYPE_JWT`].
    pub subject_token_type: String,
    /// `requested_token_type`; when set, the answer's `issued_token_type` must equal it.
    pub requested_token_type: Option<String>,
    /// `actor_token_type`, sent when an actor token source is given.
    pub actor_token_type: String,
}

impl Default for TokenExchange {
    fn default() -> Self {
        Self {
            subject_token_type: TOKEN_TYPE_JWT.to_owned(),
            requested_token_type: None,
            actor_token_type: TOKEN_TYPE_JWT.to_owned(),
        }
    }
}

/// The fields of one exchange request, in order.
pub(crate) fn form(
    exchange: &TokenExchange,
    subject: &str,
    actor: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT.to_owned()),
        ("subject_token", subject.to_owned()),
        ("subject_token_type", exchange.subject_token_type.clone()),
    ];
    if let Some(t) = &exchange.requested_token_type {
        fields.push(("requested_token_type", t.clone()));
    }
    if let Some(actor) = actor {
        fields.push(("actor_token", actor.to_owned()));
        fields.push(("actor_token_type", exchange.actor_token_type.clone()));
    }
    fields
}

/// Checks an exchange answer's `issued_token_type` (RFC 8693 §2.2.1, required): present, and
/// the requested type when one was asked for; a token of another type would be sent as a
/// bearer token that the API refuses.
pub(crate) fn check_issued_type(
    exchange: &TokenExchange,
    status: u16,
    body: &[u8],
) -> Result<(), Error> {
    let issued = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("issued_token_type")?.as_str().map(str::to_owned));
    match (issued, &exchange.requested_token_type) {
        (None, _) => Err(Error::InvalidResponse {
            status,
            problem: "the token exchange answer has no issued_token_type".into(),
        }),
        (Some(issued), Some(wanted)) if &issued != wanted => Err(Error::InvalidResponse {
            status,
            problem: format!("the token exchange issued a {issued}, not the {wanted} requested"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issued_type_must_be_there_and_be_the_one_asked_for() {
        let mut x = TokenExchange::default();
        let at = br#"{"access_token":"a","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#;
        assert!(check_issued_type(&x, 200, at).is_ok());
        assert!(check_issued_type(&x, 200, br#"{"access_token":"a"}"#).is_err());
        x.requested_token_type = Some("urn:ietf:params:oauth:token-type:jwt".into());
        let e = check_issued_type(&x, 200, at).unwrap_err().to_string();
        assert!(
            e.contains("not the urn:ietf:params:oauth:token-type:jwt"),
            "{e}"
        );
    }

    #[test]
    fn an_actor_is_sent_with_its_type() {
        let x = TokenExchange::default();
        let names: Vec<_> = form(&x, "s", Some("a"))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            names,
            [
                "grant_type",
                "subject_token",
                "subject_token_type",
                "actor_token",
                "actor_token_type"
            ]
        );
    }
}

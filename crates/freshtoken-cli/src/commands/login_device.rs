//! `freshtoken login --device`: the device flow (RFC 8628). The user code and the URL to
//! open are shown; the token endpoint is polled at the server's interval (+5 s on each
//! `slow_down`, with padding against clock drift) until the user answers or the code
//! expires.

use std::time::Duration;

use freshtoken::login::{LoginStore, poll_device_code, store_login};
use freshtoken::{Budget, Error, HttpFetcher, Token, TokenRequest};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::login::{post_form, step};
use crate::cli::LoginFormat;
use crate::exit::{CliError, CliResult, code};
use crate::wiring::Wired;

/// The device authorization answer (RFC 8628 §3.2); Google spells the URI `verification_url`.
#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

/// Runs the device flow; the access token of the stored login.
pub(crate) async fn run(
    wired: &Wired,
    request: &TokenRequest,
    http: &HttpFetcher,
    logins: &LoginStore,
    format: LoginFormat,
    wait: Duration,
) -> CliResult<Token> {
    let url = wired.device_authorization_endpoint()?;
    let auth = authorize(wired, request, &url).await?;
    let expires_in = Duration::from_secs(auth.expires_in);
    step(
        format,
        json!({"step": "device", "verification_uri": auth.verification_uri,
               "verification_uri_complete": auth.verification_uri_complete,
               "user_code": auth.user_code, "expires_in": auth.expires_in}),
        || {
            format!(
                "To log in, open {} and enter the code {} (it expires in {})",
                auth.verification_uri_complete
                    .as_deref()
                    .unwrap_or(&auth.verification_uri),
                auth.user_code,
                freshtoken::internal::fmt_duration(expires_in)
            )
        },
    )?;
    let device_code = SecretString::from(auth.device_code);
    let deadline = tokio::time::Instant::now() + expires_in.min(wait);
    let mut interval = Duration::from_secs(auth.interval.unwrap_or(5));
    loop {
        // A little more than asked, so that a server whose clock runs ahead never sees a
        // poll that is early by its reckoning.
        let pause = interval + (interval / 10).max(Duration::from_millis(100));
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(rejected(&if wait < expires_in {
                format!(
                    "the login was not approved within --wait {}",
                    freshtoken::internal::fmt_duration(wait)
                )
            } else {
                "the device code expired before the login was approved; run login again".to_owned()
            }));
        }
        tokio::time::sleep(pause).await;
        let budget = Budget::within(Duration::from_secs(30));
        match poll_device_code(http, &device_code, budget).await {
            Ok(token) => return Ok(store_login(http, logins, token, budget).await?),
            Err(Error::OAuth { error, .. }) => match error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += Duration::from_secs(5),
                "expired_token" => {
                    return Err(rejected(
                        "the device code expired before the login was approved; run login again",
                    ));
                }
                "access_denied" => {
                    return Err(rejected(
                        "the login was refused: access_denied (the user said no)",
                    ));
                }
                other => {
                    return Err(rejected(&format!(
                        "the device login failed: {}",
                        other.replace(['\r', '\n'], " ")
                    )));
                }
            },
            Err(e) => return Err(e.into()),
        }
    }
}

fn rejected(message: &str) -> CliError {
    CliError {
        code: code::REJECTED,
        message: message.to_owned(),
    }
}

/// `POST device_authorization_endpoint` with the client and the scope.
async fn authorize(
    wired: &Wired,
    request: &TokenRequest,
    url: &Url,
) -> CliResult<DeviceAuthorization> {
    freshtoken::internal::refuse_plain_http(
        "device authorization endpoint",
        url,
        "the client's credentials",
    )?;
    let mut form = Vec::new();
    if !request.scope.is_empty() {
        form.push(("scope", request.scope.join(" ")));
    }
    let (status, body) = post_form(request, wired, url, form).await?;
    if !(200..300).contains(&status) {
        let excerpt: String = String::from_utf8_lossy(&body)
            .chars()
            .take(200)
            .collect::<String>()
            .replace(['\r', '\n'], " ");
        return Err(CliError {
            code: code::REJECTED,
            message: format!(
                "the device authorization endpoint {url} answered HTTP {status}: {excerpt}"
            ),
        });
    }
    serde_json::from_slice(&body).map_err(|e| CliError {
        code: code::UNAVAILABLE,
        message: format!("the device authorization endpoint {url} gave no usable answer: {e}"),
    })
}

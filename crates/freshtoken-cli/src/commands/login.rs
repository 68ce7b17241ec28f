//! `freshtoken login` and `logout`: a person's login with the authorization code grant and
//! PKCE (a loopback redirect on 127.0.0.1), kept as a refresh token in the state folder.

use std::time::Duration;

use freshtoken::login::{LoginStore, Pkce, finish_code_login, login_key, random_b64};
use freshtoken::{Budget, Fetch, HttpFetcher};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use crate::cli::{Cli, CredentialArgs, LoginArgs, LoginFormat};
use crate::exit::{CliError, CliResult, code};
use crate::settings::login::LoginGrant;
use crate::wiring::{self, Wired};

/// Largest request the redirect listener reads: a request line with a code and a state.
const MAX_REQUEST: usize = 16 * 1024;

/// Adds how to log in to a "login needed" error: the profile is the user's to name.
pub(crate) fn with_login_hint(mut e: CliError, cli: &Cli) -> CliError {
    if e.code == code::LOGIN_NEEDED && !e.message.contains("freshtoken login") {
        let profile = cli
            .profile
            .as_deref()
            .map(|p| format!(" --profile {p}"))
            .unwrap_or_default();
        e.message
            .push_str(&format!("; run `freshtoken login{profile}`"));
    }
    e
}

/// `freshtoken login`.
pub(crate) async fn run(cli: &Cli, args: &LoginArgs) -> CliResult {
    let wait = crate::units::parse_duration(&args.wait)
        .map_err(|e| CliError::usage(format!("--wait: {e}")))?;
    let wired = wiring::wire(wiring::settings(cli, &args.credentials)?).await?;
    let Some(login) = wired.login() else {
        return Err(CliError::usage(format!(
            "profile {:?} is not a login: set grant = \"authorization_code\" in it (see docs/login.md)",
            wired.profile()
        )));
    };
    let logins = wired
        .login_store()
        .unwrap_or_else(|| Err(CliError::internal("a login profile without a login store")))?;
    let request = wired.token_request()?;
    let http = HttpFetcher::new(request.clone(), wired.settings.http.clone())?
        .with_clock(wired.clock.clone());
    if args.device || login.grant == LoginGrant::DeviceCode {
        let token =
            super::login_device::run(&wired, &request, &http, &logins, args.format, wait).await?;
        return done(&wired, &http, &logins, &token, args.format);
    }
    let listener = bind(login.redirect_uri.as_ref()).await?;
    let redirect_uri = match &login.redirect_uri {
        Some(uri) => uri.clone(),
        None => redirect_on(&listener)?,
    };
    let pkce = Pkce::new();
    let state = random_b64(24);
    let url = authorization_url(&wired, &redirect_uri, &pkce, &state)?;
    step(
        args.format,
        json!({"step": "authorize", "authorization_url": url.as_str()}),
        || {
            format!(
                "Open this URL to log in (waiting up to {}):\n{url}",
                freshtoken::internal::fmt_duration(wait)
            )
        },
    )?;
    if !args.no_browser {
        open_browser(&url);
    }
    let code = tokio::time::timeout(wait, redirect(&listener, &redirect_uri, &state))
        .await
        .map_err(|_| CliError {
            code: code::UNAVAILABLE,
            message: format!(
                "no login came back to {redirect_uri} within {}",
                freshtoken::internal::fmt_duration(wait)
            ),
        })??;
    let budget = Budget::within(Duration::from_secs(60));
    let token = finish_code_login(
        &http,
        &logins,
        &code,
        redirect_uri.as_str(),
        &pkce.verifier,
        budget,
    )
    .await?;
    done(&wired, &http, &logins, &token, args.format)
}

/// Says that the login worked, and where it is kept.
fn done(
    wired: &Wired,
    http: &HttpFetcher,
    logins: &LoginStore,
    token: &freshtoken::Token,
    format: LoginFormat,
) -> CliResult {
    let path = logins.path(&login_key(http));
    step(
        format,
        json!({"step": "done", "logged_in": true, "profile": wired.profile(),
               "expires_in": token.remaining(wired.clock.now()).as_secs(), "stored": path.display().to_string()}),
        || format!("Logged in; the login is kept in {}", path.display()),
    )?;
    Ok(())
}

/// Says one step: a JSON line on stdout (flushed: a script waits for it), or a sentence
/// on stderr.
pub(crate) fn step(
    format: LoginFormat,
    value: serde_json::Value,
    text: impl FnOnce() -> String,
) -> CliResult {
    match format {
        LoginFormat::Json => crate::output::print(&format!("{value}\n")),
        LoginFormat::Text => {
            eprintln!("{}", text());
            Ok(())
        }
    }
}

/// Binds the redirect's loopback address (its port), or a random port on 127.0.0.1.
async fn bind(redirect_uri: Option<&Url>) -> CliResult<TcpListener> {
    let addr = match redirect_uri {
        Some(uri) => {
            let port = uri.port().unwrap_or(80);
            match uri.host_str() {
                Some("[::1]") => format!("[::1]:{port}"),
                _ => format!("127.0.0.1:{port}"),
            }
        }
        None => "127.0.0.1:0".to_owned(),
    };
    TcpListener::bind(&addr).await.map_err(|e| {
        CliError::usage(format!(
            "cannot listen on {addr} for the login's redirect: {e}"
        ))
    })
}

fn redirect_on(listener: &TcpListener) -> CliResult<Url> {
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::internal(format!("cannot read the listener's address: {e}")))?;
    Url::parse(&format!("http://{addr}/callback"))
        .map_err(|e| CliError::internal(format!("redirect URI: {e}")))
}

/// The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3), with a nonce for OpenID.
fn authorization_url(
    wired: &Wired,
    redirect_uri: &Url,
    pkce: &Pkce,
    state: &str,
) -> CliResult<Url> {
    let mut url = wired.authorization_endpoint()?;
    let request = wired.request_public();
    let scope = request.scope.join(" ");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", request.client_id.as_str())
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("state", state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256");
        if !scope.is_empty() {
            q.append_pair("scope", &scope);
        }
        if request.scope.iter().any(|s| s == "openid") {
            q.append_pair("nonce", &random_b64(16));
        }
        if let Some(aud) = &request.audience {
            q.append_pair("audience", aud);
        }
    }
    Ok(url)
}

/// Opens `url` in `$BROWSER`, `xdg-open` or `open`, whichever starts; the URL was printed
/// anyway.
fn open_browser(url: &Url) {
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    let candidates = browser
        .into_iter()
        .chain(["xdg-open".to_owned(), "open".to_owned()]);
    for program in candidates {
        let started = std::process::Command::new(&program)
            .arg(url.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if started.is_ok() {
            return;
        }
    }
    tracing::info!("no browser could be started; open the URL by hand");
}

/// Waits for the browser's redirect to `redirect_uri`: the code, once `state` matches.
/// Requests for other paths get 404 and the wait goes on.
async fn redirect(
    listener: &TcpListener,
    redirect_uri: &Url,
    state: &str,
) -> CliResult<SecretString> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| CliError::internal(format!("the redirect listener failed: {e}")))?;
        let Some(target) = read_target(&mut stream).await else {
            continue;
        };
        if target.path() != redirect_uri.path() {
            answer(&mut stream, "404 Not Found", "Not the login's redirect.").await;
            continue;
        }
        let outcome = judge(&target, state);
        let page = match &outcome {
            Ok(_) => "Logged in. You can close this window and go back to the terminal.",
            Err(_) => "The login did not work; the terminal says why. You can close this window.",
        };
        answer(
            &mut stream,
            if outcome.is_ok() {
                "200 OK"
            } else {
                "400 Bad Request"
            },
            page,
        )
        .await;
        return outcome;
    }
}

/// What a redirect says: the code, or why there is none.
fn judge(target: &Url, state: &str) -> CliResult<SecretString> {
    let param = |name: &str| {
        target
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let rejected = |message: String| CliError {
        code: code::REJECTED,
        message,
    };
    let same_state = param("state")
        .is_some_and(|s| freshtoken::login::s256(&s) == freshtoken::login::s256(state));
    if !same_state {
        return Err(rejected(
            "the login's redirect carries another state: refusing it (a forged or stale redirect)"
                .into(),
        ));
    }
    if let Some(error) = param("error") {
        let description = param("error_description")
            .map(|d| format!(" ({})", d.replace(['\r', '\n'], " ")))
            .unwrap_or_default();
        return Err(rejected(format!(
            "the login was refused: {}{description}",
            error.replace(['\r', '\n'], " ")
        )));
    }
    param("code")
        .filter(|c| !c.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| rejected("the login's redirect carries no code".into()))
}

/// The request target of one HTTP request, as a URL on the listener; `None` for anything
/// that is not a GET of a path within a few seconds.
async fn read_target(stream: &mut TcpStream) -> Option<Url> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.lines().next()?.split(' ');
    let (method, path) = (parts.next()?, parts.next()?);
    if method != "GET" || !path.starts_with('/') {
        return None;
    }
    Url::parse(&format!("http://127.0.0.1{path}")).ok()
}

async fn answer(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>freshtoken</title></head><body><p>{text}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `freshtoken logout`: revokes the stored refresh token where a revocation endpoint is
/// known (RFC 7009), then deletes it and the profile's cached access token.
pub(crate) async fn logout(cli: &Cli, args: &CredentialArgs) -> CliResult {
    let wired = wiring::wire(wiring::settings(cli, args)?).await?;
    let Some(logins) = wired.login_store() else {
        return Err(CliError::usage(format!(
            "profile {:?} is not a login (no grant = \"authorization_code\")",
            wired.profile()
        )));
    };
    let logins: LoginStore = logins?;
    let request = wired.token_request()?;
    let http = HttpFetcher::new(request.clone(), wired.settings.http.clone())?;
    let key = login_key(&http);
    if let (Some(stored), Some(url)) = (logins.load(&key).await?, wired.revocation_endpoint()) {
        revoke(&request, &wired, &url, &stored.refresh_token).await?;
    }
    let removed = logins.remove(&key).await?;
    // The access token the login gave goes too: it is the person's, not the client's.
    let cached = freshtoken::login::LoginFetcher::new(http, logins).cache_key();
    wired.store(Some(&request))?.remove(&cached).await?;
    eprintln!(
        "{}",
        if removed {
            "Logged out."
        } else {
            "No login was stored."
        }
    );
    Ok(())
}

/// Revokes `token` at `url` (RFC 7009) with the client's secret where it has one.
async fn revoke(
    request: &freshtoken::TokenRequest,
    wired: &Wired,
    url: &Url,
    token: &SecretString,
) -> CliResult {
    freshtoken::internal::refuse_plain_http("revocation endpoint", url, "the refresh token")?;
    let form = vec![
        ("token", token.expose_secret().to_owned()),
        ("token_type_hint", "refresh_token".to_owned()),
    ];
    let (status, _) = post_form(request, wired, url, form).await?;
    if !(200..300).contains(&status) {
        return Err(CliError {
            code: code::REJECTED,
            message: format!("the revocation endpoint {url} answered HTTP {status}"),
        });
    }
    Ok(())
}

/// POSTs `form` to `url` with the client's id (and secret, Basic or in the form): the
/// status and a capped body.
pub(crate) async fn post_form(
    request: &freshtoken::TokenRequest,
    wired: &Wired,
    url: &Url,
    mut form: Vec<(&'static str, String)>,
) -> CliResult<(u16, Vec<u8>)> {
    let http = freshtoken::http_client(&wired.settings.http)?;
    let mut builder = http.post(url.clone());
    match (&request.client_secret, request.auth_method) {
        (Some(secret), freshtoken::AuthMethod::ClientSecretBasic) => {
            // Form-urlencoded before base64, as RFC 6749 §2.3.1 asks (and the token request does).
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            builder = builder.basic_auth(
                enc(request.client_id.as_str()),
                Some(enc(secret.as_secret().expose_secret())),
            );
        }
        (Some(secret), freshtoken::AuthMethod::ClientSecretPost) => {
            form.push(("client_id", request.client_id.as_str().to_owned()));
            form.push((
                "client_secret",
                secret.as_secret().expose_secret().to_owned(),
            ));
        }
        // A public client, or a JWT method (no assertion is signed for these endpoints yet):
        // the id alone, never the secret in a form it was not meant for.
        _ => form.push(("client_id", request.client_id.as_str().to_owned())),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let answer = builder
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| CliError {
            code: code::UNAVAILABLE,
            message: format!("cannot reach {url}: {e}"),
        })?;
    let status = answer.status().as_u16();
    let body = answer.bytes().await.map_err(|e| CliError {
        code: code::UNAVAILABLE,
        message: format!("cannot read the answer of {url}: {e}"),
    })?;
    Ok((status, body.iter().take(MAX_REQUEST * 4).copied().collect()))
}

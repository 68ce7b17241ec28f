//! Logins against the dev-server: the code flow with PKCE (a scripted user agent follows
//! the authorization URL, which the dev-server auto-approves), the stored refresh token,
//! its rotation under the cross-process lock, and the ways a login ends (exit 6 in the CLI).
// Real elapsed-time bounds ("did not hang"): the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::login::{LoginFetcher, LoginStore, Pkce, finish_code_login, random_b64};
use freshtoken::{
    Budget, Clock, ErrorKind, Fetch, HttpFetcher, HttpOptions, ManualClock, TokenRequest,
};
use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Faults, Running};
use secrecy::SecretString;

async fn server(clock: &ManualClock) -> Running {
    let config = Config {
        clock: Arc::new(clock.clone()),
        ..Config::default()
    };
    Running::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .expect("dev-server starts")
}

fn http(server: &Running) -> HttpFetcher {
    let request = TokenRequest::new(
        server.token_url().parse().expect("url"),
        DEFAULT_CLIENT_ID,
        Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
    );
    HttpFetcher::new(request, HttpOptions::default()).expect("valid request")
}

fn budget() -> Budget {
    Budget::within(Duration::from_secs(10))
}

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// The user agent: GETs the authorization URL and returns the redirect's query.
async fn authorize(server: &Running, challenge: &str, state: &str) -> url::Url {
    let mut url: url::Url = format!("{}/oauth/authorize", server.base_url())
        .parse()
        .expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", DEFAULT_CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    // freshtoken's client follows no redirect: the Location is what a browser would follow.
    let client = freshtoken::http_client(&HttpOptions::default()).expect("client");
    let answer = client.get(url).send().await.expect("authorize answers");
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().expect("ascii");
    location.parse().expect("a URL")
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Logs in through the code flow; the stored login's folder.
async fn log_in(server: &Running, logins: &LoginStore) {
    let pkce = Pkce::new();
    let state = random_b64(16);
    let back = authorize(server, &pkce.challenge, &state).await;
    assert_eq!(param(&back, "state").as_deref(), Some(state.as_str()));
    let code = SecretString::from(param(&back, "code").expect("a code"));
    let token = finish_code_login(
        &http(server),
        logins,
        &code,
        REDIRECT,
        &pkce.verifier,
        budget(),
    )
    .await
    .expect("the code is exchanged");
    assert!(
        token.refresh_token().is_none(),
        "the refresh token is kept on disk, not handed out"
    );
}

fn stored_rt(logins: &LoginStore, fetcher: &LoginFetcher) -> String {
    let (_, key) = fetcher.login();
    let text = std::fs::read_to_string(logins.path(key)).expect("the login is stored");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

#[tokio::test]
async fn the_code_flow_stores_a_refresh_token_that_rotates_on_disk() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = LoginStore::new(dir.path().join("state/freshtoken"));
    log_in(&server, &logins).await;

    let fetcher = LoginFetcher::new(http(&server), logins.clone());
    let (_, key) = fetcher.login();
    let path = logins.path(key);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(logins.dir()), 0o700);

    let rt1 = stored_rt(&logins, &fetcher);
    let token = fetcher.fetch(None, budget()).await.expect("refreshed");
    assert!(token.refresh_token().is_none());
    assert!(server.state().check(token.expose_secret()).is_some());
    let rt2 = stored_rt(&logins, &fetcher);
    assert_ne!(
        rt1, rt2,
        "the rotated refresh token replaced the old one on disk"
    );
    fetcher
        .fetch(None, budget())
        .await
        .expect("refreshed again");
    let stats = server.state().stats();
    assert_eq!(stats.refresh_grants, 2, "{stats:?}");
    assert_eq!(stats.refresh_reuses, 0, "{stats:?}");
    assert_ne!(
        fetcher.cache_key(),
        http(&server).cache_key(),
        "a person's tokens are not cached as the client's own"
    );
}

#[tokio::test]
async fn a_wrong_verifier_is_refused_and_nothing_is_stored() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = LoginStore::new(dir.path());
    let pkce = Pkce::new();
    let back = authorize(&server, &pkce.challenge, "s").await;
    let code = SecretString::from(param(&back, "code").expect("a code"));
    let other = Pkce::new();
    let e = finish_code_login(
        &http(&server),
        &logins,
        &code,
        REDIRECT,
        &other.verifier,
        budget(),
    )
    .await
    .expect_err("another verifier");
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
    let fetcher = LoginFetcher::new(http(&server), logins);
    let e = fetcher.fetch(None, budget()).await.expect_err("no login");
    assert_eq!(e.kind(), ErrorKind::LoginNeeded, "{e}");
}

#[tokio::test]
async fn denied_consent_comes_back_as_access_denied_with_the_state() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    server.state().set_faults(Faults {
        deny_consent: true,
        ..Faults::default()
    });
    let back = authorize(&server, &Pkce::new().challenge, "st-1").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "state").as_deref(), Some("st-1"));
    assert_eq!(param(&back, "code"), None);
}

#[tokio::test]
async fn a_refused_or_expired_refresh_token_means_login_needed() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    server.state().set_faults(Faults {
        refresh_ttl_s: Some(600),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = LoginStore::new(dir.path());
    log_in(&server, &logins).await;
    let fetcher = LoginFetcher::new(http(&server), logins.clone());
    fetcher
        .fetch(None, budget())
        .await
        .expect("within its life");

    clock.advance(Duration::from_secs(600));
    let e = fetcher.fetch(None, budget()).await.expect_err("expired");
    assert_eq!(e.kind(), ErrorKind::LoginNeeded, "{e}");
    assert_eq!(
        e.to_string(),
        "login needed: the stored refresh token was refused (invalid_grant)"
    );

    log_in(&server, &logins).await;
    server.state().revoke_refresh_tokens();
    let e = fetcher.fetch(None, budget()).await.expect_err("revoked");
    assert_eq!(e.kind(), ErrorKind::LoginNeeded, "{e}");
}

/// Fifty fetchers, each with its own store handle on one folder (as fifty processes are),
/// refresh at once: each presents the refresh token the previous one stored, so the
/// server's reuse detection never fires and the chain survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_never_present_the_same_refresh_token() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = LoginStore::new(dir.path());
    log_in(&server, &logins).await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let fetcher = LoginFetcher::new(http(&server), LoginStore::new(dir.path()));
        tasks.push(tokio::spawn(async move {
            fetcher
                .fetch(None, Budget::within(Duration::from_secs(30)))
                .await
        }));
    }
    for task in tasks {
        task.await.expect("joined").expect("every refresh works");
    }
    let stats = server.state().stats();
    assert_eq!(stats.refresh_reuses, 0, "{stats:?}");
    assert_eq!(stats.refresh_grants, 50, "{stats:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The chain is alive: one more refresh works.
    let fetcher = LoginFetcher::new(http(&server), logins);
    fetcher
        .fetch(None, budget())
        .await
        .expect("the chain is intact");
}

/// `refresh_expires_in` is kept with the login: once it has passed on the client's clock,
/// the login is over without a request that could only be refused.
#[tokio::test]
async fn a_refresh_token_past_its_known_end_needs_a_login_without_asking() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    server.state().set_faults(Faults {
        refresh_ttl_s: Some(600),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = LoginStore::new(dir.path());
    log_in(&server, &logins).await;
    let fetcher =
        LoginFetcher::new(http(&server), logins.clone()).with_clock(Arc::new(clock.clone()));
    let (_, key) = fetcher.login();
    let stored = logins.load(key).await.unwrap().expect("stored");
    let ends = stored
        .refresh_expires_at
        .expect("the server said when it ends");
    let left = ends.duration_since(clock.now()).unwrap();
    assert!(
        left > Duration::from_secs(590) && left <= Duration::from_secs(601),
        "{left:?}"
    );

    // The login was made on the system clock, a moment after the manual one started.
    clock.advance(Duration::from_secs(601));
    let before = server.state().stats().token_requests;
    let e = fetcher.fetch(None, budget()).await.expect_err("ended");
    assert_eq!(e.kind(), ErrorKind::LoginNeeded, "{e}");
    assert!(e.to_string().contains("has expired"), "{e}");
    assert_eq!(
        server.state().stats().token_requests,
        before,
        "nothing was asked"
    );
}

/// The login file gets the file cache's checks: one others may read, or a symlink, or a
/// folder open to others that is not the user's, is refused with an error naming it, never
/// used; the folder the store makes is 0700.
#[tokio::test]
async fn a_login_file_open_to_others_or_symlinked_is_refused() {
    let clock = ManualClock::starting_now();
    let server = server(&clock).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let logins = LoginStore::new(dir.path().join("state"));
    log_in(&server, &logins).await;
    let fetcher = LoginFetcher::new(http(&server), logins.clone());
    let (_, key) = fetcher.login();
    let path = logins.path(key);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = logins.load(key).await.expect_err("readable by others");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    let e = fetcher.fetch(None, budget()).await.expect_err("not used");
    assert!(e.to_string().contains("not using the login"), "{e}");

    let elsewhere = dir.path().join("elsewhere.login");
    std::fs::rename(&path, &elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let e = logins.load(key).await.expect_err("a symlink");
    assert!(e.to_string().contains("not using the login"), "{e}");
    let before = server.state().stats().token_requests;
    fetcher.fetch(None, budget()).await.expect_err("not used");
    assert_eq!(server.state().stats().token_requests, before);
}

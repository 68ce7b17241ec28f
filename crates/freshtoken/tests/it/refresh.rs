//! Refresh tokens against the dev-server: used for the next refresh, rotated, and when
//! refused (invalid_grant) the client's own grant takes over, silently.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use freshtoken::{CachedSource, HttpFetcher, HttpOptions, ManualClock, TokenRequest, Want};
use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Running};
use secrecy::{ExposeSecret, SecretString};

async fn setup() -> (Running, CachedSource, ManualClock) {
    let config = Config {
        refresh_tokens: true,
        ..Config::default()
    };
    let server = Running::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap();
    let request = TokenRequest::new(
        server.token_url().parse().unwrap(),
        DEFAULT_CLIENT_ID,
        Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
    );
    let clock = ManualClock::starting_now();
    let source = CachedSource::builder(HttpFetcher::new(request, HttpOptions::default()).unwrap())
        .clock(Arc::new(clock.clone()))
        .build();
    (server, source, clock)
}

#[tokio::test]
async fn the_refresh_token_is_used_and_rotated() {
    let (server, source, clock) = setup().await;
    let first = source.token().await.unwrap();
    let rt1 = first
        .refresh_token()
        .expect("the server issued one")
        .expose_secret()
        .to_owned();

    clock.advance(Duration::from_secs(3000)); // stale
    let second = source
        .token_with(Want::one_shot(Duration::ZERO))
        .await
        .unwrap();
    assert!(!second.same_token(&first));
    let rt2 = second.refresh_token().unwrap().expose_secret().to_owned();
    assert_ne!(rt1, rt2, "the rotated refresh token replaces the old one");
    let stats = server.state().stats();
    assert_eq!(stats.refresh_grants, 1, "{stats:?}");
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(
        stats.token_errors, 0,
        "the old refresh token was not tried again"
    );
}

#[tokio::test]
async fn a_refused_refresh_token_falls_back_to_the_client_grant() {
    let (server, source, clock) = setup().await;
    source.token().await.unwrap();
    server.state().revoke_refresh_tokens();

    clock.advance(Duration::from_secs(3000));
    let next = source
        .token_with(Want::one_shot(Duration::ZERO))
        .await
        .unwrap();
    assert!(
        next.refresh_token().is_some(),
        "a new refresh token comes with the new grant"
    );
    let stats = server.state().stats();
    assert_eq!(
        stats.token_requests, 3,
        "client_credentials, refused refresh_token, client_credentials"
    );
    assert_eq!(stats.token_errors, 1);
    assert_eq!(stats.refresh_grants, 0);
}

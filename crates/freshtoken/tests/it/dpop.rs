//! DPoP-bound tokens (RFC 9449) against the dev-server: each token request carries a proof,
//! the server's nonce is taken with one retry, the token comes back as `DPoP` bound to the
//! key, and a token bound to another key is refused.

use std::net::SocketAddr;

use freshtoken::dpop::{DpopKey, access_token_hash, token_jkt};
use freshtoken::{Budget, Clock, Error, Fetch, HttpFetcher, HttpOptions, TokenRequest};
use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Faults, Running};
use secrecy::SecretString;

async fn server(faults: Faults) -> Running {
    let config = Config {
        faults,
        ..Config::default()
    };
    Running::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap()
}

fn fetcher(server: &Running, key: Option<DpopKey>) -> HttpFetcher {
    let mut request = TokenRequest::new(
        server.token_url().parse().unwrap(),
        DEFAULT_CLIENT_ID,
        Some(SecretString::from(DEFAULT_CLIENT_SECRET.to_owned())),
    );
    request.dpop = key;
    HttpFetcher::new(request, HttpOptions::default()).unwrap()
}

fn budget() -> Budget {
    Budget::within(std::time::Duration::from_secs(10))
}

#[tokio::test]
async fn a_dpop_token_is_bound_to_the_key_and_works_only_with_a_proof() {
    let server = server(Faults::default()).await;
    let key = DpopKey::generate();
    let token = fetcher(&server, Some(key.clone()))
        .fetch(None, budget())
        .await
        .unwrap();
    assert_eq!(token.token_type(), "DPoP");
    assert_eq!(
        token_jkt(token.expose_secret()).as_deref(),
        Some(key.thumbprint())
    );
    let stats = server.state().dpop_stats();
    assert_eq!((stats.proofs_ok, stats.bound_tokens), (1, 1), "{stats:?}");

    let url: url::Url = format!("{}/api/things?page=2", server.base_url())
        .parse()
        .unwrap();
    let http = freshtoken::http_client(&freshtoken::HttpOptions::default()).unwrap();
    let ath = access_token_hash(token.expose_secret());
    let proof = key.proof("GET", &url, Some(&ath), None, freshtoken::SystemClock.now());
    let ok = http
        .get(url.clone())
        .header("Authorization", format!("DPoP {}", token.expose_secret()))
        .header("DPoP", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The same token as a bearer token, or with no proof, is refused.
    let bearer = http
        .get(url.clone())
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
    let no_proof = http
        .get(url)
        .header("Authorization", format!("DPoP {}", token.expose_secret()))
        .send()
        .await
        .unwrap();
    assert_eq!(no_proof.status(), 401);
}

#[tokio::test]
async fn the_servers_nonce_is_taken_with_one_retry() {
    let server = server(Faults {
        dpop_nonce: true,
        ..Faults::default()
    })
    .await;
    let key = DpopKey::generate();
    let f = fetcher(&server, Some(key));
    let token = f.fetch(None, budget()).await.unwrap();
    assert_eq!(token.token_type(), "DPoP");
    let stats = server.state().stats();
    assert_eq!(
        stats.token_requests, 2,
        "one refused for its nonce, one retry: {stats:?}"
    );
    assert_eq!(server.state().dpop_stats().nonce_challenges, 1);
    // The nonce is kept: the next request needs no retry.
    f.fetch(None, budget()).await.unwrap();
    assert_eq!(server.state().stats().token_requests, 3);
}

#[tokio::test]
async fn a_token_bound_to_another_key_is_refused() {
    let server = server(Faults {
        dpop_wrong_jkt: true,
        ..Faults::default()
    })
    .await;
    let err = fetcher(&server, Some(DpopKey::generate()))
        .fetch(None, budget())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("bound to another key"), "{err}");
}

#[tokio::test]
async fn bearer_and_dpop_tokens_are_cached_apart() {
    let server = server(Faults::default()).await;
    let bearer = fetcher(&server, None);
    let a = fetcher(&server, Some(DpopKey::generate()));
    let b = fetcher(&server, Some(DpopKey::generate()));
    assert_ne!(bearer.cache_key(), a.cache_key());
    assert_ne!(a.cache_key(), b.cache_key());
    let token = bearer.fetch(None, budget()).await.unwrap();
    assert_eq!(token.token_type(), "Bearer");
}

#[tokio::test]
async fn an_eddsa_key_gets_a_bound_token_the_api_takes() {
    let server = server(Faults::default()).await;
    let key = DpopKey::generate_for(freshtoken::dpop::DpopAlg::EdDsa).unwrap();
    let token = fetcher(&server, Some(key.clone()))
        .fetch(None, budget())
        .await
        .unwrap();
    assert_eq!(
        token_jkt(token.expose_secret()).as_deref(),
        Some(key.thumbprint())
    );
    let url: url::Url = format!("{}/api/x", server.base_url()).parse().unwrap();
    let ath = access_token_hash(token.expose_secret());
    let http = freshtoken::http_client(&freshtoken::HttpOptions::default()).unwrap();
    let r = http
        .post(url.clone())
        .header("Authorization", format!("DPoP {}", token.expose_secret()))
        .header(
            "DPoP",
            key.proof(
                "POST",
                &url,
                Some(&ath),
                None,
                freshtoken::SystemClock.now(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

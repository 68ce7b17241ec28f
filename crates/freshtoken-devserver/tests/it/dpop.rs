//! The dev-server as a DPoP resource server checks a proof as RFC 9449 §4.3 and §7 ask: its
//! signature against its own key, htm, htu, an iat near its clock, a jti never seen before,
//! the token's hash, the key the token is bound to, and the nonce when nonces are on.

use std::net::SocketAddr;
use std::time::Duration;

use freshtoken::{Clock, SystemClock};

use freshtoken::dpop::{DpopKey, access_token_hash};
use freshtoken_devserver::{Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Faults, Running};

struct Fixture {
    server: Running,
    key: DpopKey,
    token: String,
    http: reqwest::Client,
}

async fn fixture(faults: Faults) -> Fixture {
    let server = Running::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Config {
            faults,
            ..Config::default()
        },
    )
    .await
    .unwrap();
    let key = DpopKey::generate();
    let http = freshtoken::http_client(&freshtoken::HttpOptions::default()).unwrap();
    let url: url::Url = server.token_url().parse().unwrap();
    let mut nonce = None;
    // At most one nonce challenge, as a client would take it.
    for _ in 0..2 {
        let proof = key.proof("POST", &url, None, nonce.as_deref(), SystemClock.now());
        let r = http
            .post(url.clone())
            .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
            .header("DPoP", proof)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        if r.status() == 400 {
            nonce = r
                .headers()
                .get("dpop-nonce")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(body["error"], "use_dpop_nonce");
            continue;
        }
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["token_type"], "DPoP");
        let token = body["access_token"].as_str().unwrap().to_owned();
        return Fixture {
            server,
            key,
            token,
            http,
        };
    }
    panic!("no token after a nonce challenge");
}

impl Fixture {
    fn url(&self, path: &str) -> url::Url {
        format!("{}{path}", self.server.base_url()).parse().unwrap()
    }

    fn proof(&self, method: &str, path: &str, nonce: Option<&str>) -> String {
        let ath = access_token_hash(&self.token);
        self.key.proof(
            method,
            &self.url(path),
            Some(&ath),
            nonce,
            SystemClock.now(),
        )
    }

    async fn call(&self, method: &str, path: &str, proof: &str) -> reqwest::Response {
        self.http
            .request(method.parse().unwrap(), self.url(path))
            .header("Authorization", format!("DPoP {}", self.token))
            .header("DPoP", proof)
            .send()
            .await
            .unwrap()
    }
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_good_proof_passes_once_and_a_replayed_one_is_refused() {
    let f = fixture(Faults::default()).await;
    let proof = f.proof("GET", "/api/x", None);
    assert_eq!(f.call("GET", "/api/x?q=1", &proof).await.status(), 200);
    let replay = f.call("GET", "/api/x?q=1", &proof).await;
    assert_eq!(replay.status(), 401);
    assert!(www_authenticate(&replay).contains("invalid_dpop_proof"));
    let stats = f.server.state().dpop_stats();
    assert_eq!(stats.replays_refused, 1, "{stats:?}");
    assert_eq!(
        stats.proofs_ok, 2,
        "the token request's and the first call's"
    );
}

#[tokio::test]
async fn a_proof_for_another_request_token_or_time_is_refused() {
    let f = fixture(Faults::default()).await;
    let ath = access_token_hash(&f.token);
    let now = SystemClock.now();
    let refused = [
        ("another method", f.proof("POST", "/api/x", None)),
        ("another path", f.proof("GET", "/api/y", None)),
        (
            "another token",
            f.key.proof(
                "GET",
                &f.url("/api/x"),
                Some(&access_token_hash("other")),
                None,
                now,
            ),
        ),
        (
            "no ath",
            f.key.proof("GET", &f.url("/api/x"), None, None, now),
        ),
        (
            "too old",
            f.key.proof(
                "GET",
                &f.url("/api/x"),
                Some(&ath),
                None,
                now - Duration::from_secs(300),
            ),
        ),
        (
            "another key",
            DpopKey::generate().proof("GET", &f.url("/api/x"), Some(&ath), None, now),
        ),
    ];
    for (why, proof) in refused {
        let r = f.call("GET", "/api/x", &proof).await;
        assert_eq!(r.status(), 401, "{why}");
        assert!(www_authenticate(&r).starts_with("DPoP "), "{why}");
    }
    let stats = f.server.state().dpop_stats();
    assert_eq!(stats.proofs_refused, 6, "{stats:?}");
    assert_eq!(stats.proofs_ok, 1, "only the token request's: {stats:?}");
    assert_eq!(
        f.call("GET", "/api/x", &f.proof("GET", "/api/x", None))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_stale_nonce_gets_use_dpop_nonce_and_the_new_one() {
    let f = fixture(Faults {
        dpop_nonce: true,
        dpop_nonce_every: Some(2),
        ..Faults::default()
    })
    .await;
    // The token request's proof was the first of two under the nonce: one more, then a new one.
    let nonce = f.server.state().dpop_stats();
    assert_eq!(nonce.nonce_challenges, 1, "{nonce:?}");
    let challenged = f
        .call("GET", "/api/x", &f.proof("GET", "/api/x", Some("stale")))
        .await;
    assert_eq!(challenged.status(), 401);
    assert!(www_authenticate(&challenged).contains("error=\"use_dpop_nonce\""));
    let fresh = challenged.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        f.call("GET", "/api/x", &f.proof("GET", "/api/x", Some(&fresh)))
            .await
            .status(),
        200
    );
    // That was the second proof under it: the nonce has moved on.
    let after = f
        .call("GET", "/api/x", &f.proof("GET", "/api/x", Some(&fresh)))
        .await;
    assert_eq!(after.status(), 401);
    assert_ne!(after.headers()["dpop-nonce"].to_str().unwrap(), fresh);
    assert_eq!(f.server.state().dpop_stats().proofs_refused, 0);
}

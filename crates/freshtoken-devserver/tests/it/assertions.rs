//! The dev-server checks client assertions as a strict server would: signature, iss/sub, aud,
//! exp, and jti never reused. Keys are generated at test time with the openssl CLI.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use freshtoken::{ASSERTION_TYPE, Clock, Signer, SigningAlg, SystemClock};
use freshtoken_devserver::{Config, Running};
use secrecy::SecretString;

/// (private PEM, public PEM) for `algorithm` ("RSA", "EC", "ED25519").
fn keypair(dir: &Path, name: &str, args: &[&str]) -> (String, String) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = |c: &mut Command| {
        let s = c
            .status()
            .expect("openssl is needed to generate test keys: apt-get install openssl");
        assert!(s.success(), "{c:?}");
    };
    ok(Command::new("openssl")
        .args(["genpkey", "-quiet"])
        .args(args)
        .arg("-out")
        .arg(&private));
    ok(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    (
        std::fs::read_to_string(private).unwrap(),
        std::fs::read_to_string(public).unwrap(),
    )
}

const HMAC_SECRET: &str = "hmac-secret-long-enough-for-hs512-0123456789-0123456789-0123456789";

struct Fixture {
    server: Running,
    rsa: String,
    ec: String,
    ed: String,
    other_rsa: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, rsa_pub) = keypair(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec, ec_pub) = keypair(
        dir.path(),
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (ed, ed_pub) = keypair(dir.path(), "ed", &["-algorithm", "ED25519"]);
    let (other_rsa, _) = keypair(
        dir.path(),
        "other",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let config = Config {
        clients: vec![("hs".into(), HMAC_SECRET.into())],
        client_keys: vec![
            ("rsa".into(), rsa_pub),
            ("ec".into(), ec_pub),
            ("ed".into(), ed_pub),
        ],
        ..Config::default()
    };
    let server = Running::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap();
    Fixture {
        server,
        rsa,
        ec,
        ed,
        other_rsa,
        _dir: dir,
    }
}

fn key(pem: &str) -> Signer {
    Signer::with_private_key(&SecretString::from(pem.to_owned()), None, None).unwrap()
}

/// POSTs a client_credentials request with `assertion`; returns (status, body).
async fn post(f: &Fixture, client_id: &str, assertion: &str) -> (u16, String) {
    let http = freshtoken::http_client(&freshtoken::HttpOptions::default()).unwrap();
    let body = format!(
        "grant_type=client_credentials&client_id={client_id}&client_assertion_type={}&client_assertion={assertion}",
        ASSERTION_TYPE.replace(':', "%3A")
    );
    let r = http
        .post(f.server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn good_assertions_are_accepted_for_every_key_type() {
    let f = fixture().await;
    let aud = f.server.token_url();
    let now = SystemClock.now();
    for (client, signer) in [
        ("rsa", key(&f.rsa)),
        ("ec", key(&f.ec)),
        ("ed", key(&f.ed)),
        (
            "hs",
            Signer::with_secret(
                &SecretString::from(HMAC_SECRET.to_owned()),
                Some(SigningAlg::HS512),
            )
            .unwrap(),
        ),
    ] {
        let a = signer
            .assertion(client, &aud, now, Duration::from_secs(60))
            .unwrap();
        let (status, body) = post(&f, client, &a).await;
        assert_eq!(status, 200, "{client} ({}): {body}", signer.alg());
        assert!(body.contains("access_token"), "{body}");
    }
    let rsa = Signer::with_private_key(
        &SecretString::from(f.rsa.clone()),
        Some(SigningAlg::PS256),
        None,
    )
    .unwrap();
    let (status, body) = post(
        &f,
        "rsa",
        &rsa.assertion("rsa", &aud, now, Duration::from_secs(60))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "PS256: {body}");
}

#[tokio::test]
async fn bad_assertions_are_refused_with_invalid_client() {
    let f = fixture().await;
    let aud = f.server.token_url();
    let now = SystemClock.now();
    let rsa = key(&f.rsa);
    let minute = Duration::from_secs(60);

    let good = rsa.assertion("rsa", &aud, now, minute).unwrap();
    assert_eq!(post(&f, "rsa", &good).await.0, 200);
    let cases: Vec<(&str, String, &str)> = vec![
        ("a replayed jti", good.clone(), "jti was used before"),
        (
            "another audience",
            rsa.assertion("rsa", "https://elsewhere/token", now, minute)
                .unwrap(),
            "InvalidAudience",
        ),
        (
            "an expired assertion",
            rsa.assertion("rsa", &aud, now - Duration::from_secs(3600), minute)
                .unwrap(),
            "ExpiredSignature",
        ),
        (
            "the wrong key",
            key(&f.other_rsa)
                .assertion("rsa", &aud, now, minute)
                .unwrap(),
            "InvalidSignature",
        ),
        (
            "another client's name",
            rsa.assertion("ec", &aud, now, minute).unwrap(),
            "does not fit",
        ),
        (
            "the wrong HMAC secret",
            Signer::with_secret(&SecretString::from("x".repeat(64)), None)
                .unwrap()
                .assertion("hs", &aud, now, minute)
                .unwrap(),
            "InvalidSignature",
        ),
        ("garbage", "not-a-jwt".into(), "not a JWT"),
    ];
    for (what, assertion, why) in cases {
        let client = freshtoken::jwt::decode(&assertion)
            .ok()
            .and_then(|d| d.claims["sub"].as_str().map(str::to_owned))
            .unwrap_or("rsa".into());
        let (status, body) = post(&f, &client, &assertion).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            body.contains("invalid_client") && body.contains(why),
            "{what}: {body}"
        );
    }
    let stats = f.server.state().stats();
    assert_eq!(stats.tokens_issued, 1);
}

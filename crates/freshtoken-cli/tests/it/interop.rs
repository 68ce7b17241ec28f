//! Interoperability with an authorization server nobody on this project wrote: the npm
//! package `oidc-provider` (pinned in tests/interop/package.json), started on loopback with
//! one client per client-authentication method and keys generated at start.
//!
//! Each method must yield a token that the provider's own introspection endpoint reports
//! active; each negative case must end with exit code 3 and the provider's OAuth error.
//! `scripts/test.sh` runs `npm ci` in tests/interop first.

use freshtoken_testkit::*;
use serde_json::Value;

/// What the provider's introspection endpoint says of `token`.
pub(crate) fn introspect(p: &OidcProvider, token: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = freshtoken::http_client(&freshtoken::HttpOptions::default()).unwrap();
    rt.block_on(async {
        let r = http
            .post(p.introspection_endpoint())
            .basic_auth(
                urlencode("introspector"),
                Some(urlencode(&p.secret("introspector"))),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", urlencode(token)))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    })
}

/// Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1).
fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[track_caller]
fn assert_active(p: &OidcProvider, o: &std::process::Output, client: &str) {
    assert_code(o, 0);
    let token = stdout(o).trim().to_owned();
    let info = introspect(p, &token);
    assert_eq!(info["active"], true, "{client}: {info}");
    assert_eq!(info["client_id"], client, "{info}");
    assert_eq!(info["scope"], "api:read", "{info}");
}

#[test]
fn every_client_authentication_method_gets_an_active_token() {
    let p = OidcProvider::start();
    let sb = Sandbox::new();

    // client_secret_basic, through discovery at the provider's real well-known document.
    let o = run(p
        .get(&sb, "basic")
        .args(["--issuer", p.issuer(), "--client-secret-file"])
        .arg(p.file("basic", "secret_file")));
    assert_active(&p, &o, "basic");

    // client_secret_post.
    let o = run(p
        .get(&sb, "post")
        .args([
            "--token-url",
            p.token_endpoint(),
            "--auth-method",
            "client_secret_post",
        ])
        .env("FRESHTOKEN_CLIENT_SECRET", p.secret("post")));
    assert_active(&p, &o, "post");

    // client_secret_jwt, HS256.
    let o = run(p
        .get(&sb, "secret-jwt")
        .args(["--issuer", p.issuer(), "--auth-method", "client_secret_jwt"])
        .env("FRESHTOKEN_CLIENT_SECRET", p.secret("secret-jwt")));
    assert_active(&p, &o, "secret-jwt");

    // private_key_jwt: RS256 (PKCS#8 and PKCS#1), PS256, ES256 (PKCS#8 and SEC1), ES384, EdDSA.
    let keys: &[(&str, &str, Option<&str>)] = &[
        ("pk-rs256", "key_file", None),
        ("pk-rs256", "pkcs1_key_file", None),
        ("pk-ps256", "key_file", Some("PS256")),
        ("pk-es256", "key_file", None),
        ("pk-es256", "sec1_key_file", None),
        ("pk-es384", "key_file", None),
        ("pk-eddsa", "key_file", None),
    ];
    for (client, key_field, alg) in keys {
        let mut cmd = p.get(&sb, client);
        cmd.args([
            "--issuer",
            p.issuer(),
            "--auth-method",
            "private_key_jwt",
            "--private-key",
        ])
        .arg(p.file(client, key_field));
        if let Some(kid) = p.info["clients"][client]["kid"].as_str() {
            cmd.arg(format!("--key-id={kid}")); // thumbprints may start with "-"
        }
        if let Some(alg) = alg {
            cmd.args(["--signing-alg", alg]);
        }
        let o = run(&mut cmd);
        assert_active(&p, &o, client);
    }
}

#[test]
fn refusals_end_with_exit_3_and_the_providers_oauth_error() {
    let p = OidcProvider::start();
    let sb = Sandbox::new();
    let o = run(p
        .get(&sb, "basic")
        .args(["--token-url", p.token_endpoint()])
        .env("FRESHTOKEN_CLIENT_SECRET", "wrong-secret"));
    assert_fails_with(&o, 3, "invalid_client (client authentication failed)");

    let o = run(p
        .get(&sb, "secret-jwt")
        .args([
            "--token-url",
            p.token_endpoint(),
            "--auth-method",
            "client_secret_jwt",
        ])
        .env(
            "FRESHTOKEN_CLIENT_SECRET",
            "not-the-secret-but-long-enough-for-hmac-0123456789",
        ));
    assert_fails_with(&o, 3, "invalid_client");

    // A key the provider never saw.
    let o = run(p
        .get(&sb, "pk-rs256")
        .args([
            "--token-url",
            p.token_endpoint(),
            "--auth-method",
            "private_key_jwt",
            "--private-key",
        ])
        .arg(p.info["wrong_key_file"].as_str().unwrap()));
    assert_fails_with(&o, 3, "invalid_client (client authentication failed)");

    // The right key, the wrong audience.
    let o = run(p
        .get(&sb, "pk-es256")
        .args([
            "--token-url",
            p.token_endpoint(),
            "--auth-method",
            "private_key_jwt",
            "--assertion-audience",
            "https://elsewhere.example/token",
            "--private-key",
        ])
        .arg(p.file("pk-es256", "key_file")));
    assert_fails_with(&o, 3, "invalid_client (client authentication failed)");
    assert!(!stderr(&o).contains("BEGIN"), "{}", stderr(&o));
}

#[test]
fn discovery_checks_the_method_and_scope_gaps_are_named() {
    let p = OidcProvider::start();
    let sb = Sandbox::new();
    // The provider does not list "none" for its token endpoint: caught before any request.
    let o = run(p
        .get(&sb, "basic")
        .args(["--issuer", p.issuer(), "--auth-method", "none"]));
    assert_fails_with(&o, 2, "does not accept the auth method none");

    // A "long-lived token" scope the client credentials grant ignores: named once, token still printed.
    let o = run(p
        .get(&sb, "basic")
        .args([
            "--issuer",
            p.issuer(),
            "--scope",
            "api:read long_lived_token",
        ])
        .env("FRESHTOKEN_CLIENT_SECRET", p.secret("basic")));
    assert_code(&o, 0);
    assert!(
        stderr(&o)
            .contains("did not grant the requested scope long_lived_token; granted: api:read"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).matches("did not grant").count(), 1);

    // A signing algorithm the key does not fit: a clear error before any request.
    let o = run(p
        .get(&sb, "pk-eddsa")
        .args([
            "--issuer",
            p.issuer(),
            "--auth-method",
            "private_key_jwt",
            "--signing-alg",
            "RS256",
            "--private-key",
        ])
        .arg(p.file("pk-eddsa", "key_file")));
    assert_fails_with(
        &o,
        2,
        "does not fit the private key, which is an Ed25519 key",
    );
}

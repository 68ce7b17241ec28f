//! Mutual-TLS client authentication (RFC 8705) and certificate-bound tokens, end to end: the
//! dev-server behind a TLS listener that asks for client certificates, certificates made in
//! the test with rcgen, `get` finding the mTLS token endpoint through discovery, and the
//! proxy presenting the same certificate to an API that accepts bound tokens only from their
//! holder.
// Real elapsed-time bounds ("did not hang"): the clock is the point.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_devserver::{CertificateClient, Config};
use freshtoken_testkit::*;

const PKI_CLIENT: &str = "pki-client";
const PKI_SAN: &str = "pki-client.freshtoken.test";
const SELF_CLIENT: &str = "self-signed-client";

/// A dev-server with one client of each mTLS method, and their certificates in `dir`.
struct Setup {
    mtls: MtlsServer,
    ca: TestCa,
    pki: ClientCert,
    self_signed: ClientCert,
}

fn setup(dir: &Path, config: Config) -> Setup {
    let ca = TestCa::new("freshtoken client CA");
    let pki = ClientCert::issued(dir, "pki", &ca, PKI_SAN);
    let self_signed = ClientCert::self_signed(dir, "self");
    let mtls = MtlsServer::start_with(
        dir,
        Config {
            certificate_clients: vec![
                CertificateClient::Pki {
                    client_id: PKI_CLIENT.into(),
                    ca: ca.der(),
                    san_dns: PKI_SAN.into(),
                },
                CertificateClient::SelfSigned {
                    client_id: SELF_CLIENT.into(),
                    certificate: self_signed.der.clone(),
                },
            ],
            ..config
        },
    );
    Setup {
        mtls,
        ca,
        pki,
        self_signed,
    }
}

/// `freshtoken ARGS` for `client` with `method` and `cert`, finding the token endpoint
/// through discovery at the dev-server's plain-http issuer.
fn cmd(sb: &Sandbox, s: &Setup, client: &str, method: &str, cert: &ClientCert) -> Command {
    cmd_with(sb, s, client, method, &cert.cert_file, &cert.key_file)
}

/// Like [`cmd`], with the certificate and key files named one by one.
fn cmd_with(
    sb: &Sandbox,
    s: &Setup,
    client: &str,
    method: &str,
    cert: &Path,
    key: &Path,
) -> Command {
    let mut c = sb.cmd();
    c.env("FRESHTOKEN_RETRY_FOR", "0")
        .env("FRESHTOKEN_CA_FILE", &s.mtls.ca_file)
        .env("FRESHTOKEN_ISSUER", s.mtls.server.base_url())
        .env("FRESHTOKEN_CLIENT_ID", client)
        .env("FRESHTOKEN_AUTH_METHOD", method)
        .env("FRESHTOKEN_CLIENT_CERT_FILE", cert)
        .env("FRESHTOKEN_CLIENT_KEY_FILE", key);
    c
}

/// Both methods get a token from the mTLS alias that discovery names (the plain endpoint
/// sees no certificate and refuses them), and each token is bound to its certificate.
#[test]
fn both_methods_get_a_token_bound_to_their_certificate_from_the_mtls_alias() {
    let sb = Sandbox::new();
    let s = setup(sb.path(), Config::default());
    for (client, method, cert) in [
        (PKI_CLIENT, "tls_client_auth", &s.pki),
        (SELF_CLIENT, "self_signed_tls_client_auth", &s.self_signed),
    ] {
        let o = run(cmd(&sb, &s, client, method, cert).args(["get", "--cache", "memory"]));
        assert_code(&o, 0);
        let token = stdout(&o).trim().to_owned();
        assert_eq!(
            s.mtls.server.state().binding(&token),
            Some(cert.thumbprint()),
            "{method}: the token is bound to the client's certificate"
        );
        assert!(!stderr(&o).contains("PRIVATE KEY"), "{}", stderr(&o));
    }
    assert_eq!(s.mtls.server.stats().tokens_issued, 2);

    // The token URL given outright: the plain endpoint gets no certificate and refuses.
    let o = run(sb
        .cmd()
        .env("FRESHTOKEN_RETRY_FOR", "0")
        .args(["get", "--cache", "memory"])
        .args(["--token-url", &s.mtls.server.token_url()])
        .args(["--client-id", SELF_CLIENT])
        .args(["--auth-method", "self_signed_tls_client_auth"])
        .arg("--client-cert")
        .arg(&s.self_signed.cert_file)
        .arg("--client-key")
        .arg(&s.self_signed.key_file));
    assert_fails_with(&o, 3, "no TLS client certificate");
}

/// A certificate the server does not know for that client is refused by the server (exit 3):
/// another self-signed one; for tls_client_auth, one of another CA, or of the client's CA
/// for another name.
#[test]
fn a_certificate_that_is_not_the_client_s_is_refused() {
    let sb = Sandbox::new();
    let s = setup(sb.path(), Config::default());
    let stranger = ClientCert::self_signed(sb.path(), "stranger");
    let wrong_name = ClientCert::issued(sb.path(), "wrong-name", &s.ca, "x.freshtoken.test");
    for (client, method, cert, expected) in [
        (
            SELF_CLIENT,
            "self_signed_tls_client_auth",
            &stranger,
            "not the registered one",
        ),
        (
            SELF_CLIENT,
            "self_signed_tls_client_auth",
            &s.pki,
            "not the registered one",
        ),
        (PKI_CLIENT, "tls_client_auth", &stranger, "is not trusted"),
        (
            PKI_CLIENT,
            "tls_client_auth",
            &wrong_name,
            "does not name pki-client.freshtoken.test",
        ),
    ] {
        let o = run(cmd(&sb, &s, client, method, cert).args(["get", "--cache", "memory"]));
        assert_fails_with(&o, 3, expected);
    }
    assert_eq!(s.mtls.server.stats().tokens_issued, 0);
}

/// Mistakes in the certificate or key are one-line usage errors (exit 2) before any request,
/// and never show the key.
#[test]
fn a_bad_certificate_or_key_is_a_one_line_usage_error() {
    let sb = Sandbox::new();
    let s = setup(sb.path(), Config::default());
    let key_text = std::fs::read_to_string(&s.pki.key_file).unwrap();
    let key_body = key_text.lines().nth(1).unwrap_or_default().to_owned();
    let garbage = sb.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    // Mode 0600, as a key should be: the one line is then the error alone.
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (cert, key) = (&s.pki.cert_file, &s.pki.key_file);
    for (cert, key, expected) in [
        (
            cert,
            &s.self_signed.key_file,
            "the client key does not match the client certificate",
        ),
        (
            &garbage,
            key,
            "the client certificate holds no PEM certificate",
        ),
        (
            cert,
            &garbage,
            "the client key is not an unencrypted PEM private key",
        ),
    ] {
        let mut c = cmd_with(&sb, &s, PKI_CLIENT, "tls_client_auth", cert, key);
        let o = run(c.args(["get", "--cache", "memory"]));
        assert_fails_with(&o, 2, expected);
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains(&key_body), "{err}");
    }
    let o = run(sb
        .cmd()
        .args(["get", "--cache", "memory"])
        .args(["--issuer", &s.mtls.server.base_url()])
        .args(["--client-id", PKI_CLIENT])
        .args(["--auth-method", "tls_client_auth"]));
    assert_fails_with(&o, 2, "needs a client certificate");
    assert_eq!(s.mtls.server.stats().token_requests, 0);
}

/// A running `freshtoken proxy`, killed when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy(mut cmd: Command) -> Proxy {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = proxy_url(&mut child);
    Proxy { child, url }
}

/// The proxy presents the profile's certificate to the API, which takes the bound tokens
/// only from their holder: zero 401s across several lifetimes (both clocks moved by the
/// test), one new token per lifetime. Without `--upstream-client-cert` the same token is
/// refused, which is what makes the count mean something.
#[test]
fn a_bound_token_works_through_the_proxy_across_lifetimes() {
    const TTL: Duration = Duration::from_secs(60);
    let sb = Sandbox::new();
    let clock = ManualClock::starting_now();
    let s = setup(
        sb.path(),
        Config {
            ttl: TTL,
            clock: Arc::new(clock.clone()),
            ..Config::default()
        },
    );
    let skew = sb.path().join("skew");
    std::fs::write(&skew, "0s").unwrap();
    let proxy_cmd = |with_cert: bool| {
        let mut c = cmd(&sb, &s, PKI_CLIENT, "tls_client_auth", &s.pki);
        c.env("FRESHTOKEN_CLOCK_SKEW_FILE", &skew).args([
            "proxy",
            "--upstream",
            &format!("{}/api", s.mtls.url),
        ]);
        if with_cert {
            c.arg("--upstream-client-cert")
                .arg(&s.pki.cert_file)
                .arg("--upstream-client-key")
                .arg(&s.pki.key_file);
        }
        c
    };
    let bound = proxy(proxy_cmd(true));
    let lifetimes = 4;
    for lifetime in 0..lifetimes {
        for _ in 0..5 {
            let (code, body) = curl(&[&format!("{}/v2/users/me", bound.url)]);
            assert_eq!(code, 200, "lifetime {lifetime}: {body}");
            assert!(body.contains(&s.pki.thumbprint()), "{body}");
        }
        // Past this token's life on both clocks: the proxy must bring a new bound token.
        let ahead = TTL * (lifetime + 1) + Duration::from_secs(1);
        clock.advance(TTL);
        std::fs::write(&skew, format!("{}s", ahead.as_secs())).unwrap();
        // The proxy reads the skew file again every 20 ms.
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = s.mtls.server.stats();
    assert_eq!(stats.api_401, 0, "{stats:?}");
    assert_eq!(stats.api_ok, 5 * u64::from(lifetimes), "{stats:?}");
    assert!(
        (u64::from(lifetimes)..=u64::from(lifetimes) + 1).contains(&stats.tokens_issued),
        "{stats:?}"
    );

    // The same profile's proxy presenting no certificate: its bound token is refused.
    let unbound = proxy(proxy_cmd(false));
    let (code, _) = curl(&[&format!("{}/v2/users/me", unbound.url)]);
    assert_eq!(code, 401);
}

/// The agent keeps a mutual-TLS profile's token (bound to its certificate), and its
/// `[[proxy]]` with `upstream_client_cert` presents that certificate: the API answers 200
/// with the thumbprint it checked. The same entry without it gets the bound token refused.
#[test]
fn the_agent_s_proxy_presents_the_certificate_of_a_bound_profile() {
    let sb = Sandbox::new();
    let s = setup(sb.path(), Config::default());
    let (with, without) = (free_port(), free_port());
    let (cert, key) = (s.pki.cert_file.display(), s.pki.key_file.display());
    let config = format!(
        r#"[agent]
socket = "{socket}"

[profiles.a]
issuer = "{issuer}"
client_id = "{PKI_CLIENT}"
auth_method = "tls_client_auth"
client_certificate = {{ file = "{cert}" }}
client_key = {{ file = "{key}" }}
ca_file = "{ca}"
retry_for = "0s"

[[proxy]]
profile = "a"
listen = "127.0.0.1:{with}"
upstream = "{mtls}/api"
upstream_client_cert = "{cert}"
upstream_client_key = "{key}"

[[proxy]]
profile = "a"
listen = "127.0.0.1:{without}"
upstream = "{mtls}/api"
"#,
        socket = sb.path().join("run/agent.sock").display(),
        issuer = s.mtls.server.base_url(),
        ca = s.mtls.ca_file.display(),
        mtls = s.mtls.url,
    );
    let path = sb.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let log = sb.path().join("agent.log");
    let child = sb
        .cmd()
        .arg("--config")
        .arg(&path)
        .arg("agent")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Proxy {
        child,
        url: String::new(),
    };
    let url = format!("http://127.0.0.1:{with}/v2/users/me");
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        Duration::from_secs(10),
        || curl(&[&url]).0 == 200,
        || {
            format!(
                "the agent's proxy answers {:?}; its log:\n{}",
                curl(&[&url]),
                agent_log()
            )
        },
    );
    let answer = curl(&[&url]);
    assert!(answer.1.contains(&s.pki.thumbprint()), "{}", answer.1);
    let (code, _) = curl(&[&format!("http://127.0.0.1:{without}/v2/users/me")]);
    assert_eq!(code, 401);
    drop(agent);
}

/// The file cache keys a bound token by its certificate: after the certificate is renewed
/// (same files, a new certificate and key), `get` asks for a token bound to the new one
/// instead of serving the cached token that only the old certificate can use.
#[test]
fn a_renewed_certificate_is_not_served_the_token_bound_to_the_old_one() {
    let sb = Sandbox::new();
    let s = setup(sb.path(), Config::default());
    let get = || {
        let o = run(cmd(&sb, &s, PKI_CLIENT, "tls_client_auth", &s.pki).arg("get"));
        assert_code(&o, 0);
        stdout(&o).trim().to_owned()
    };
    let first = get();
    assert_eq!(
        get(),
        first,
        "served from the file cache while the certificate stays"
    );
    let renewed = ClientCert::issued(sb.path(), "renewed", &s.ca, PKI_SAN);
    std::fs::copy(&renewed.cert_file, &s.pki.cert_file).unwrap();
    std::fs::copy(&renewed.key_file, &s.pki.key_file).unwrap();
    let second = get();
    assert_ne!(second, first);
    let state = s.mtls.server.state();
    assert_eq!(state.binding(&second), Some(renewed.thumbprint()));
    assert_eq!(s.mtls.server.stats().tokens_issued, 2);
}

/// `exec --proxy` with `--upstream-client-cert`: CMD's requests through the proxy reach the
/// API with the certificate its bound token needs; without it they are refused.
#[test]
fn exec_s_proxy_presents_the_certificate_too() {
    let sb = Sandbox::new();
    let s = setup(sb.path(), Config::default());
    let upstream = format!("{}/api", s.mtls.url);
    let script = r#"curl -s -m 10 -w '\n%{http_code}' "$FRESHTOKEN_PROXY_URL/v2/users/me""#;
    let exec = |with_cert: bool| {
        let mut c = cmd(&sb, &s, PKI_CLIENT, "tls_client_auth", &s.pki);
        c.args(["exec", "--proxy", "--upstream", &upstream]);
        if with_cert {
            c.arg("--upstream-client-cert")
                .arg(&s.pki.cert_file)
                .arg("--upstream-client-key")
                .arg(&s.pki.key_file);
        }
        let o = run(c.args(["--", "sh", "-c", script]));
        assert_code(&o, 0);
        stdout(&o)
    };
    let out = exec(true);
    assert!(out.ends_with("\n200"), "{out}");
    assert!(out.contains(&s.pki.thumbprint()), "{out}");
    assert!(exec(false).ends_with("\n401"));
}

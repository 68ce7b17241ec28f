//! Mutual TLS (RFC 8705) against `oidc-provider` with its `mTLS` feature on: the harness's
//! second listener asks for client certificates (made here with rcgen), discovery names it in
//! `mtls_endpoint_aliases`, and the provider binds its tokens to the certificate.

use freshtoken_testkit::*;

use crate::interop::introspect;

const SAN: &str = "mtls-pki.freshtoken.test";

/// Both methods get an active token through discovery, bound to the certificate that was
/// presented (`cnf."x5t#S256"` in the provider's introspection); the self-signed client
/// presenting another certificate is refused with the provider's `invalid_client`.
#[test]
fn both_mtls_methods_get_a_certificate_bound_token_from_oidc_provider() {
    let sb = Sandbox::new();
    let dir = sb.path().join("mtls");
    std::fs::create_dir(&dir).unwrap();
    let server_ca = TestCa::new("interop server CA");
    let server_ca_file = dir.join("server-ca.pem");
    server_ca.write(&server_ca_file);
    ClientCert::issued(&dir, "server", &server_ca, "127.0.0.1");
    let client_ca = TestCa::new("interop client CA");
    client_ca.write(&dir.join("client-ca.pem"));
    let pki = ClientCert::issued(&dir, "pki", &client_ca, SAN);
    let self_signed = ClientCert::self_signed(&dir, "self-signed");
    let dir_text = dir.display().to_string();
    let p = OidcProvider::start_with_env(&[
        ("FRESHTOKEN_INTEROP_MTLS_DIR", &dir_text),
        ("FRESHTOKEN_INTEROP_MTLS_SAN", SAN),
    ]);
    let get = |client: &str, method: &str, cert: &ClientCert| {
        let mut c = p.get(&sb, client);
        c.args(["--issuer", p.issuer(), "--auth-method", method])
            .arg("--client-cert")
            .arg(&cert.cert_file)
            .arg("--client-key")
            .arg(&cert.key_file)
            .arg("--ca-file")
            .arg(&server_ca_file);
        run(&mut c)
    };
    for (client, method, cert) in [
        ("mtls-pki", "tls_client_auth", &pki),
        ("mtls-self", "self_signed_tls_client_auth", &self_signed),
    ] {
        let o = get(client, method, cert);
        assert_code(&o, 0);
        let info = introspect(&p, stdout(&o).trim());
        assert_eq!(info["active"], true, "{client}: {info}");
        assert_eq!(info["client_id"], client, "{info}");
        assert_eq!(
            info["cnf"]["x5t#S256"],
            cert.thumbprint().as_str(),
            "{client}: bound to its certificate: {info}"
        );
    }
    let o = get("mtls-self", "self_signed_tls_client_auth", &pki);
    assert_fails_with(&o, 3, "invalid_client");
}

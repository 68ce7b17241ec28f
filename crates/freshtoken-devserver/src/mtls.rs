//! Mutual-TLS client authentication (RFC 8705 §2) and certificate-bound tokens (§3).
//!
//! The dev-server itself speaks plain HTTP; a TLS listener in front of it (the testkit's
//! `MtlsServer`) asks each client for a certificate and hands the one it got to the app as a
//! [`PeerCertificate`] request extension, which no client can forge: as a TLS-terminating
//! proxy does for a real server. Clients registered as [`CertificateClient`]s authenticate by
//! that certificate alone, and their tokens are bound to it: the API takes them only with
//! the same certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use freshtoken::internal::lock;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The certificate chain a client presented in the TLS handshake (DER, leaf first).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Vec<Vec<u8>>);

impl PeerCertificate {
    /// `x5t#S256` of the leaf.
    pub fn thumbprint(&self) -> Option<String> {
        self.0
            .first()
            .map(|leaf| freshtoken::certificate_thumbprint(leaf))
    }
}

/// A client that authenticates with a certificate.
#[derive(Debug, Clone)]
pub enum CertificateClient {
    /// `tls_client_auth`: a certificate that chains to `ca` (DER) and names `san_dns` among
    /// its DNS subject alternative names.
    Pki {
        /// The client id.
        client_id: String,
        /// The certificate authority that issues the client's certificates.
        ca: Vec<u8>,
        /// The DNS name the certificate must carry (`tls_client_auth_san_dns`).
        san_dns: String,
    },
    /// `self_signed_tls_client_auth`: exactly this certificate (DER), as registered.
    SelfSigned {
        /// The client id.
        client_id: String,
        /// The registered certificate.
        certificate: Vec<u8>,
    },
}

impl CertificateClient {
    fn client_id(&self) -> &str {
        match self {
            CertificateClient::Pki { client_id, .. }
            | CertificateClient::SelfSigned { client_id, .. } => client_id,
        }
    }
}

/// What the server knows about certificates: its certificate clients, where its TLS
/// listener is (for the metadata's `mtls_endpoint_aliases`), and which token is bound to
/// which certificate.
#[derive(Debug, Default)]
pub(crate) struct Mtls {
    pub(crate) clients: Vec<CertificateClient>,
    pub(crate) base_url: Option<String>,
    bindings: Mutex<HashMap<String, String>>,
}

impl Mtls {
    pub(crate) fn new(clients: Vec<CertificateClient>, base_url: Option<String>) -> Self {
        Self {
            clients,
            base_url,
            bindings: Mutex::default(),
        }
    }

    /// The certificate client named `client_id`, if it is one.
    fn client(&self, client_id: &str) -> Option<&CertificateClient> {
        self.clients.iter().find(|c| c.client_id() == client_id)
    }

    /// Binds `token` to the certificate whose thumbprint is `x5t`.
    pub(crate) fn bind(&self, token: &str, x5t: String) {
        let mut bindings = lock(&self.bindings);
        // Tests issue hundreds of tokens at most; a long run must not grow without bound.
        if bindings.len() >= 65_536 {
            bindings.clear();
        }
        bindings.insert(token.to_owned(), x5t);
    }

    /// The thumbprint `token` is bound to, if it is bound.
    pub(crate) fn binding(&self, token: &str) -> Option<String> {
        lock(&self.bindings).get(token).cloned()
    }
}

/// Authenticates a token request by its TLS client certificate when the `client_id` it names
/// is a certificate client: `Ok(Some((client_id, x5t)))`. `Ok(None)` leaves the request to
/// the other methods. A certificate client that also sends a secret or an assertion is
/// refused, as is one whose certificate is missing or not the registered kind (`Err`: why,
/// for the `invalid_client` answer).
pub(crate) fn authenticate<'a>(
    mtls: &Mtls,
    now: SystemTime,
    peer: Option<&PeerCertificate>,
    other_method: bool,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<(String, String)>, String> {
    let Some(client) = field("client_id").and_then(|id| mtls.client(id)) else {
        return Ok(None);
    };
    if other_method {
        return Err("a certificate client authenticates with its certificate alone".into());
    }
    let Some((leaf, rest)) = peer.and_then(|p| p.0.split_first()) else {
        return Err("no TLS client certificate".into());
    };
    match client {
        CertificateClient::SelfSigned { certificate, .. } => {
            if !crate::compare::constant_time_eq(certificate, leaf) {
                return Err("the TLS client certificate is not the registered one".into());
            }
        }
        CertificateClient::Pki { ca, san_dns, .. } => {
            check_pki(ca, san_dns, leaf, rest, now)?;
        }
    }
    Ok(Some((
        client.client_id().to_owned(),
        freshtoken::certificate_thumbprint(leaf),
    )))
}

/// RFC 8705 §2.1: the chain verifies to the client's CA, and the subject names `san_dns`.
fn check_pki(
    ca: &[u8],
    san_dns: &str,
    leaf: &[u8],
    rest: &[Vec<u8>],
    now: SystemTime,
) -> Result<(), String> {
    freshtoken::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.to_vec()))
        .map_err(|e| format!("the registered CA is not usable: {e}"))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("cannot verify client certificates: {e}"))?;
    let leaf = CertificateDer::from(leaf.to_vec());
    let intermediates: Vec<_> = rest
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    verifier
        .verify_client_cert(&leaf, &intermediates, UnixTime::since_unix_epoch(since))
        .map_err(|e| format!("the TLS client certificate is not trusted: {e}"))?;
    let parsed = rustls::server::ParsedCertificate::try_from(&leaf)
        .map_err(|e| format!("the TLS client certificate cannot be read: {e}"))?;
    let name = ServerName::try_from(san_dns.to_owned())
        .map_err(|_| format!("{san_dns:?} is not a DNS name"))?;
    rustls::client::verify_server_name(&parsed, &name)
        .map_err(|_| format!("the TLS client certificate does not name {san_dns}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_certificate_clients_are_taken_and_they_need_their_certificate() {
        let mtls = Mtls::new(
            vec![CertificateClient::SelfSigned {
                client_id: "c".into(),
                certificate: vec![1, 2, 3],
            }],
            None,
        );
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let field = |id: &'static str| move |k: &str| (k == "client_id").then_some(id);
        let peer = PeerCertificate(vec![vec![1, 2, 3]]);
        let other = PeerCertificate(vec![vec![9]]);
        assert!(matches!(
            authenticate(&mtls, now, Some(&peer), false, &field("someone")),
            Ok(None)
        ));
        let (id, x5t) = authenticate(&mtls, now, Some(&peer), false, &field("c"))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!((id.as_str(), x5t.len()), ("c", 43));
        for (peer, other_method, why) in [
            (None, false, "no TLS client certificate"),
            (Some(&other), false, "not the registered one"),
            (Some(&peer), true, "certificate alone"),
        ] {
            let e = authenticate(&mtls, now, peer, other_method, &field("c"))
                .err()
                .unwrap_or_default();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}

//! Certificate authorities beyond the platform's: a token endpoint or an API behind a private
//! CA (a company's Keycloak, an internal gateway) is trusted by naming that CA's certificate,
//! never by turning verification off.

use std::io::Read;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};
use crate::regular_file::{self, Symlinks};

/// Largest CA file read: a whole system bundle is about 200 KiB.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// The certificates in the PEM file `path` (one CA, or a bundle), to be trusted in addition
/// to the platform's roots. A file that cannot be read, is not PEM, or holds no certificate
/// is a configuration error that names the file.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |why: String| Error::Config(format!("CA file {}: {why}", path.display()));
    // A regular file only: a FIFO named here would block the read for good.
    let (file, meta) =
        regular_file::open(path, Symlinks::Follow).map_err(|e| bad(e.to_string()))?;
    let size = meta.len();
    if size > MAX_CA_FILE {
        return Err(bad(format!(
            "{size} bytes, more than a CA bundle holds ({} MiB at most)",
            MAX_CA_FILE / (1024 * 1024)
        )));
    }
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE)
        .read_to_end(&mut pem)
        .map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_the_problem() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.pem");
        let e = load_ca_file(&missing).unwrap_err().to_string();
        assert!(
            e.contains("missing.pem") && e.contains("No such file"),
            "{e}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n")?;
        let e = load_ca_file(&empty).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )?;
        let e = load_ca_file(&broken).unwrap_err().to_string();
        assert!(e.contains("not a PEM certificate file"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
        Ok(())
    }
}

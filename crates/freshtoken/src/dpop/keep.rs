//! A generated DPoP key kept in a folder of the user's (the state folder): created once,
//! 0600 in a 0700 folder, and read back only when it is still the user's own private
//! regular file, as the cache's files are.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::{DpopAlg, DpopKey};
use crate::error::Error;
use crate::owned::{self, Unfit};
use crate::regular_file::Symlinks;

/// Largest key file read: a P-256 PKCS#8 PEM is under 300 bytes.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// The file that keeps the `alg` key named `name` in `dir`: `NAME.dpop.pem` for a plain name
/// and ES256 (`NAME.eddsa.dpop.pem` for EdDSA), else a digest of the name (a profile name
/// may hold anything).
pub fn key_path(dir: &Path, name: &str, alg: DpopAlg) -> PathBuf {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let stem = if plain {
        name.to_owned()
    } else {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16])
    };
    let kind = match alg {
        DpopAlg::EdDsa => ".eddsa",
        // RSA keys are never made: a path for one is only ever looked at, never written.
        DpopAlg::Rs256 | DpopAlg::Ps256 => ".rsa",
        DpopAlg::Es256 => "",
    };
    dir.join(format!("{stem}{kind}.dpop.pem"))
}

/// The `alg` key named `name` in `dir`, made (and kept) on first use. A file there that is
/// not the user's own private regular file, or not a key, is refused, never replaced: a
/// token may be bound to it.
pub fn load_or_create(dir: &Path, name: &str, alg: DpopAlg) -> Result<DpopKey, Error> {
    let path = key_path(dir, name, alg);
    let refuse =
        |why: String| Error::store(format!("not using the DPoP key {}: {why}", path.display()));
    match owned::check_dir(dir) {
        Ok(()) => {}
        Err(Unfit::Missing) => owned::create_dirs(dir)
            .map_err(|e| Error::store(format!("cannot create {}: {e}", dir.display())))?,
        Err(Unfit::Open { .. }) => owned::restrict(dir)
            .map_err(|e| Error::store(format!("cannot restrict {}: {e}", dir.display())))?,
        Err(why) => {
            return Err(Error::store(format!(
                "not using the folder {} for DPoP keys: {why}",
                dir.display()
            )));
        }
    }
    if let Some(key) = read(&path).map_err(refuse)? {
        return Ok(key);
    }
    let key = DpopKey::generate_for(alg)?;
    let pem = key.to_pem()?;
    match create_new(&path, pem.expose_secret().as_bytes()) {
        Ok(()) => {
            tracing::info!(
                jkt = key.thumbprint(),
                "made a DPoP key in {}",
                path.display()
            );
            Ok(key)
        }
        // Another process made it meanwhile: its key is the one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path)
            .map_err(refuse)?
            .ok_or_else(|| refuse("it vanished while it was made".into())),
        Err(e) => Err(Error::store(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}

/// The key at `path`; `None` when there is no file.
fn read(path: &Path) -> Result<Option<DpopKey>, String> {
    let (file, meta) = match crate::regular_file::open(path, Symlinks::Refuse) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it ({e})")),
    };
    owned::check_file(&meta)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_KEY_FILE + 1), &mut bytes)
        .map_err(|e| format!("cannot read it ({e})"))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err("it is larger than any key".into());
    }
    let text = String::from_utf8(bytes).map_err(|_| "it is not a PEM file".to_owned())?;
    DpopKey::from_pem(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` whole (a temporary file, synced, then linked into place), 0600,
/// failing with `AlreadyExists` when `path` exists: a key is never replaced.
fn create_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    };
    let result = write();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state").join("freshtoken");
        let first = load_or_create(&state, "ci", DpopAlg::Es256).unwrap();
        let path = key_path(&state, "ci", DpopAlg::Es256);
        assert!(path.ends_with("ci.dpop.pem"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state), 0o700);
        let again = load_or_create(&state, "ci", DpopAlg::Es256).unwrap();
        assert_eq!(again.thumbprint(), first.thumbprint());
        let other = load_or_create(&state, "other profile/../x", DpopAlg::Es256).unwrap();
        assert_ne!(other.thumbprint(), first.thumbprint());
        assert_eq!(
            fs::read_dir(&state).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    #[test]
    fn an_unfit_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s");
        let key = load_or_create(&state, "p", DpopAlg::Es256).unwrap();
        let path = key_path(&state, "p", DpopAlg::Es256);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&state, "p", DpopAlg::Es256)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lets others read"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_or_create(&state, "p", DpopAlg::Es256)
                .unwrap()
                .thumbprint(),
            key.thumbprint()
        );
        fs::write(&path, "not a key").unwrap();
        let err = load_or_create(&state, "p", DpopAlg::Es256)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a P-256"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "not a key",
            "left as it was"
        );
    }
}

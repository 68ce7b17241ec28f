//! The bearer credential of the agent's TCP endpoint. Any local user can open a loopback
//! port, where only the agent's own user can open its socket: so a TCP request for a token
//! must carry this credential, which the agent writes at every start to a file of mode 0600
//! beside its socket (`<socket>.credential`). Whoever can read that file is the agent's user
//! (or root); `get --agent http://…` reads it and sends it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, header};
use freshtoken::internal::regular_file::{self, Symlinks};
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::AgentError;

/// Random bytes in a credential: 256 bits, beyond guessing.
const BYTES: usize = 32;

/// Longest credential file read by a client: the hex of [`BYTES`] and a newline, with room.
const MAX_FILE: u64 = 1024;

/// The credential file of the agent serving `socket`: beside it, named after it.
pub fn path_for(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".credential");
    PathBuf::from(name)
}

/// A credential the agent holds: the value it accepts, and the file it wrote it to.
pub struct Credential {
    value: SecretString,
    path: PathBuf,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A new random credential, written to [`path_for`] `socket` (mode 0600, created anew:
    /// whatever was there, a symlink included, is replaced, never written through).
    pub fn create(socket: &Path) -> Result<Self, AgentError> {
        let mut bytes = [0u8; BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
            AgentError::internal(format!(
                "cannot draw random bytes for the endpoint's credential: {e}"
            ))
        })?;
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = path_for(socket);
        let failed = |e: std::io::Error| {
            AgentError::config(format!(
                "cannot write the endpoint's credential to {}: {e}",
                path.display()
            ))
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(e)),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(failed)?;
        file.write_all(format!("{value}\n").as_bytes())
            .map_err(failed)?;
        Ok(Self {
            value: SecretString::from(value),
            path,
        })
    }

    /// Where the credential is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `headers` carry exactly one `Authorization: Bearer <this credential>`,
    /// compared in constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(space) = value.iter().position(|b| *b == b' ') else {
            return false;
        };
        let (scheme, given) = (&value[..space], &value[space + 1..]);
        scheme.eq_ignore_ascii_case(b"bearer")
            && same(given.trim_ascii(), self.value.expose_secret().as_bytes())
    }

    /// Removes the file, when the agent stops: the credential dies with it.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `a == b` in time that depends on their lengths only (the length of a credential is no
/// secret), so that timing tells nothing of how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The credential in the file beside `socket`, for a client of the TCP endpoint.
pub fn read_for(socket: &Path) -> Result<SecretString, String> {
    let path = path_for(socket);
    let bytes = regular_file::read(&path, MAX_FILE, Symlinks::Refuse)
        .map_err(|e| format!("cannot read the agent's credential {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let value = text.trim();
    if value.is_empty() {
        return Err(format!(
            "the agent's credential {} is empty",
            path.display()
        ));
    }
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    /// Headers with one `Authorization`; a value a header cannot carry gives none.
    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = value.parse() {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn a_credential_is_new_random_private_and_admits_only_itself() -> Outcome {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("agent.sock");
        // A symlink planted where the file goes is replaced, not written through.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep")?;
        std::os::unix::fs::symlink(&elsewhere, path_for(&socket))?;
        let one = Credential::create(&socket)?;
        assert_eq!(std::fs::read_to_string(&elsewhere)?, "keep");
        let meta = std::fs::symlink_metadata(one.path())?;
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(one.path())?;
        let value = text.trim();
        assert_eq!(value.len(), 2 * BYTES);
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(read_for(&socket)?.expose_secret(), value);

        assert!(one.admits(&bearer(&format!("Bearer {value}"))));
        assert!(one.admits(&bearer(&format!("bearer {value}"))));
        assert!(!one.admits(&HeaderMap::new()));
        assert!(!one.admits(&bearer(value)));
        assert!(!one.admits(&bearer(&format!("Basic {value}"))));
        assert!(!one.admits(&bearer(&format!("Bearer {}", &value[1..]))));
        let mut wrong = value.as_bytes().to_vec();
        wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
        assert!(!one.admits(&bearer(&format!("Bearer {}", String::from_utf8(wrong)?))));
        let mut twice = bearer(&format!("Bearer {value}"));
        twice.append(header::AUTHORIZATION, "Bearer x".parse()?);
        assert!(!one.admits(&twice));

        let two = Credential::create(&socket)?;
        assert_ne!(
            two.value.expose_secret(),
            one.value.expose_secret(),
            "a new one at every start"
        );
        assert!(!format!("{two:?}").contains(two.value.expose_secret()));
        two.remove();
        assert!(!two.path().exists());
        Ok(())
    }
}

//! Sinks: files that hold a profile's token for tools that read files, rewritten on every
//! refresh and never left holding an expired token.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use freshtoken::Token;

use crate::output::TokenFormat;

/// What a sink becomes when its token expires with no new one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum OnExpiry {
    /// The file is removed.
    #[default]
    Remove,
    /// The file is kept, empty.
    Empty,
}

/// One sink, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    path: PathBuf,
    format: TokenFormat,
    mode: u32,
    on_expiry: OnExpiry,
}

impl Sink {
    /// A sink at `path` (absolute, naming a file) written in `format` with file mode `mode`
    /// (at most 0o777); the error says which of these it is not.
    pub fn new(
        path: PathBuf,
        format: TokenFormat,
        mode: u32,
        on_expiry: OnExpiry,
    ) -> Result<Self, String> {
        if !path.is_absolute() || path.file_name().is_none() {
            return Err("the path must be absolute and name a file".into());
        }
        if mode > 0o777 {
            return Err(format!("mode {mode:o} is not a file mode"));
        }
        Ok(Self {
            path,
            format,
            mode,
            on_expiry,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's mode.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The file's contents for `token`.
    pub fn render(&self, token: &Token, now: SystemTime) -> String {
        self.format.render(token, now)
    }

    /// Replaces the file with `token`, whole (temporary file and rename).
    pub fn write(&self, token: &Token, now: SystemTime) -> std::io::Result<()> {
        freshtoken::internal::write_file_atomically(
            &self.path,
            self.render(token, now).as_bytes(),
            self.mode,
        )
    }

    /// Takes the token away: removes the file, or empties it, as configured.
    pub fn clear(&self) -> std::io::Result<()> {
        match self.on_expiry {
            OnExpiry::Remove => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            OnExpiry::Empty => {
                freshtoken::internal::write_file_atomically(&self.path, b"", self.mode)
            }
        }
    }

    /// Removes temporary files that a killed agent left beside the sink.
    pub fn sweep(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let candidate = entry.path();
            if freshtoken::internal::is_temporary_of(&self.path, &candidate) {
                let _ = std::fs::remove_file(&candidate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::ExpirySource;
    use secrecy::SecretString;
    use std::time::{Duration, UNIX_EPOCH};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn refuses_relative_paths_and_bad_modes() {
        let e = |r: Result<Sink, String>| r.err().unwrap_or_default();
        let relative = Sink::new("t.token".into(), TokenFormat::Raw, 0o640, OnExpiry::Remove);
        assert!(e(relative).contains("absolute"));
        let folder = Sink::new("/".into(), TokenFormat::Raw, 0o600, OnExpiry::Remove);
        assert!(e(folder).contains("name a file"));
        let mode = Sink::new("/t".into(), TokenFormat::Raw, 0o1777, OnExpiry::Remove);
        assert!(e(mode).contains("not a file mode"));
    }

    #[test]
    fn writes_and_clears() -> TestResult {
        let dir = tempfile::tempdir()?;
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = Token::new(
            SecretString::from("tok".to_owned()),
            at,
            at + Duration::from_secs(3600),
            ExpirySource::ExpiresIn,
        );
        for (on_expiry, gone) in [(OnExpiry::Remove, true), (OnExpiry::Empty, false)] {
            let path = dir.path().join(format!("{on_expiry:?}"));
            let s = Sink::new(path.clone(), TokenFormat::Raw, 0o600, on_expiry)?;
            s.write(&t, at)?;
            assert_eq!(std::fs::read_to_string(&path)?, "tok\n");
            let leftover = dir.path().join(format!(".{on_expiry:?}.1.2.tmp"));
            std::fs::write(&leftover, "half")?;
            s.sweep();
            assert!(!leftover.exists());
            s.clear()?;
            assert_eq!(!path.exists(), gone);
            if !gone {
                assert_eq!(std::fs::read_to_string(&path)?, "");
            }
            // Clearing twice is fine: a sink already gone stays gone.
            s.clear()?;
        }
        Ok(())
    }
}

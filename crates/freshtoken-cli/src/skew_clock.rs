//! A clock whose offset a test moves while the process runs: the long-running surfaces
//! (`proxy`, `agent`) cannot share a `ManualClock` with the test that drives them, and a
//! fixed `FRESHTOKEN_CLOCK_SKEW` cannot move once they have started.
//!
//! `FRESHTOKEN_CLOCK_SKEW_FILE=PATH` names a file holding a duration (`16s`); the clock is the
//! real time plus that duration, read again at most every [`REREAD`]. A file that is missing
//! or unreadable keeps the last offset. Only for tests: nothing reads the file unless the
//! variable is set, and then only a small regular file.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use freshtoken::{Clock, SystemClock};

use crate::units::parse_duration;

/// How often the file is read again.
const REREAD: Duration = Duration::from_millis(20);

/// The real clock plus the offset in a file (see the module docs).
#[derive(Debug)]
pub(crate) struct FileSkewClock {
    path: PathBuf,
    read: Mutex<(Option<Instant>, Duration)>,
}

impl FileSkewClock {
    /// A clock moved by the duration in `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            read: Mutex::new((None, Duration::ZERO)),
        }
    }

    fn offset(&self) -> Duration {
        let mut read = freshtoken::internal::lock(&self.read);
        if read.0.is_none_or(|at| at.elapsed() >= REREAD) {
            let text = freshtoken::internal::regular_file::read(
                &self.path,
                64,
                freshtoken::internal::regular_file::Symlinks::Follow,
            );
            if let Some(ahead) = text
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| parse_duration(&t).ok())
            {
                read.1 = ahead;
            }
            // How often the file is re-read is real elapsed time, not the skewed clock's.
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            read.0 = Some(now);
        }
        read.1
    }
}

impl Clock for FileSkewClock {
    fn now(&self) -> SystemTime {
        SystemClock.now() + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_follows_the_file_and_survives_its_absence() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("skew");
        let clock = FileSkewClock::new(path.clone());
        assert_eq!(clock.offset(), Duration::ZERO);
        std::fs::write(&path, "16s")?;
        std::thread::sleep(REREAD);
        assert_eq!(clock.offset(), Duration::from_secs(16));
        std::fs::remove_file(&path)?;
        std::thread::sleep(REREAD);
        assert_eq!(clock.offset(), Duration::from_secs(16), "kept");
        Ok(())
    }
}

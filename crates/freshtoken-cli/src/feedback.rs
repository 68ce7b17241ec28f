//! Feedback while waiting for the token endpoint: on a terminal, one stderr line that is
//! rewritten at each failed attempt and cleared when the wait ends, so that a person sees
//! why nothing happens and that Ctrl-C stops it. Off a terminal nothing is attached, and
//! the library's log (one WARN for the first failure) is what a CI log gets.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use freshtoken::{HttpOptions, RetryNotice, RetryObserver};

/// Waits shorter than this are not shown: a retry that succeeds at once needs no words.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Attaches the terminal line to `http` when stderr is a terminal.
pub(crate) fn attach(http: &mut HttpOptions) {
    if std::io::stderr().is_terminal() {
        let line: Arc<dyn RetryObserver> = Arc::new(TerminalLine::default());
        http.observer = Some(line);
    }
}

/// The updating line.
#[derive(Debug, Default)]
pub(crate) struct TerminalLine {
    drawn: AtomicBool,
}

impl RetryObserver for TerminalLine {
    fn retrying(&self, notice: &RetryNotice<'_>) -> bool {
        if notice.elapsed + notice.next_in >= SHOW_AFTER {
            let mut err = std::io::stderr().lock();
            // \r and erase-line: the line is rewritten in place, never scrolled.
            let _ = write!(err, "\r\x1b[K{}", line(notice));
            let _ = err.flush();
            self.drawn.store(true, Ordering::Relaxed);
        }
        true
    }

    fn finished(&self) {
        if self.drawn.swap(false, Ordering::Relaxed) {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

/// "waiting for the token endpoint: attempt 3 failed (HTTP 503), next in 4 s — Ctrl-C to stop"
pub(crate) fn line(notice: &RetryNotice<'_>) -> String {
    let secs = notice.next_in.as_secs_f64().ceil().max(1.0);
    format!(
        "freshtoken: waiting for the token endpoint: attempt {} failed ({}), next in {secs} s — Ctrl-C to stop",
        notice.attempt,
        short(&notice.error.to_string())
    )
}

/// The gist of an error for one line: "HTTP 503" when it is a status, else its start.
fn short(error: &str) -> String {
    if let Some(at) = error.find("HTTP ") {
        let code: String = error[at + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if code.len() == 3 {
            return format!("HTTP {code}");
        }
    }
    let mut s: String = error.chars().take(60).collect();
    if error.chars().count() > 60 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn the_gist_of_an_error() {
        assert_eq!(
            short("the token endpoint answered HTTP 503: Service Unavailable"),
            "HTTP 503"
        );
        assert_eq!(short("connection refused"), "connection refused");
        assert_eq!(short(&"x".repeat(80)).chars().count(), 61);
    }
}

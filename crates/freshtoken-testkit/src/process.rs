//! Bounded waits on the processes a test starts, and assertions on what they printed. Every
//! wait ends at [`PROCESS_LIMIT`]: a process that hangs fails its test with the output so
//! far, instead of holding the suite until CI gives up on it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs and captures; never panics on a non-zero exit.
///
/// The process gets [`PROCESS_LIMIT`] to end; past that it is killed and the test fails with
/// what it printed, instead of holding the suite until CI gives up on it.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = ended_within_limit(&mut child);
    // A process it left behind may still hold the pipes: a bounded wait, not a join that
    // could last as long as that process.
    let grace = match status {
        Some(_) => PROCESS_LIMIT,
        None => Duration::from_secs(2),
    };
    let (out, err) = (out.recv_timeout(grace), err.recv_timeout(grace));
    let held = out.is_err() || err.is_err();
    let output = Output {
        status: status.unwrap_or_default(),
        stdout: out.unwrap_or_default(),
        stderr: err.unwrap_or_default(),
    };
    assert!(
        status.is_some() && !held,
        "{}\nstdout: {}\nstderr: {}",
        match status {
            None => format!("the process did not end within {PROCESS_LIMIT:?}; killed"),
            Some(_) => "the process ended, but something it started holds its output open".into(),
        },
        stdout(&output),
        stderr(&output)
    );
    output
}

/// How long a process a test starts may take to end, or to print the line that says it is
/// ready. Every wait inside freshtoken is bounded far below this (an HTTP attempt by 30 s, the
/// agent client by 35 s), so reaching it means a hang.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// Reads a pipe to its end on a thread of its own, so that a child that fills one pipe while
/// the test waits on the other cannot stall, and a pipe held open for good cannot either.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}

/// Waits for `child` to end; kills it and fails the test once [`PROCESS_LIMIT`] has passed.
#[track_caller]
pub fn wait(child: &mut Child, what: &str) -> ExitStatus {
    ended_within_limit(child)
        .unwrap_or_else(|| panic!("{what} did not end within {PROCESS_LIMIT:?}; killed"))
}

/// The exit status of `child`, or `None` when it had to be killed at [`PROCESS_LIMIT`].
fn ended_within_limit(child: &mut Child) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if started.elapsed() > PROCESS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The first line `child` prints on stdout, the one that says it is ready and where. Fails the
/// test (killing the child) when none comes within [`PROCESS_LIMIT`]; the rest of stdout is
/// closed.
#[track_caller]
pub fn first_line(child: &mut Child, what: &str) -> String {
    try_first_line(child, what).unwrap_or_else(|e| panic!("{e}"))
}

/// The address a `freshtoken proxy` says it listens on, from its first line ("freshtoken
/// proxy on http://127.0.0.1:PORT …"); it must be a loopback URL.
pub fn proxy_url(child: &mut Child) -> String {
    let line = first_line(child, "the proxy");
    let url = line
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "proxy said {line:?}");
    url
}

/// [`first_line`], with the failure returned so that the caller can add what it knows.
pub fn try_first_line(child: &mut Child, what: &str) -> Result<String, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(PROCESS_LIMIT) {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(format!("cannot read the first line of {what}: {e}")),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{what} printed no line within {PROCESS_LIMIT:?}; killed"
            ))
        }
    }
}

/// What the process printed on stdout, as text (lossy: tests compare and show it).
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What the process printed on stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it is wrong.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Asserts the exit code and that stderr holds `needle`, showing the output when not.
#[track_caller]
pub fn assert_fails_with(o: &Output, code: i32, needle: &str) {
    assert_code(o, code);
    assert!(
        stderr(o).contains(needle),
        "stderr lacks {needle:?}:\n{}",
        stderr(o)
    );
}

/// Polls `done` until it holds, failing with `what()` once `limit` has passed: for
/// conditions another process brings about (a file written, a reload applied).
#[track_caller]
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool, what: impl Fn() -> String) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{}", what());
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! Minimal HTTP/1.1 clients, for pages the binary serves on loopback (the dev-server's
//! stats, the agent's socket and endpoint, the proxy): raw over TCP or a unix socket with
//! nothing but std, or through a real curl. Each request says `Connection: close` and reads
//! to the end, and each wait is bounded.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{run, stderr, stdout};

/// A free loopback port (free when asked; the process under test binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A GET with nothing but std, enough for a JSON stats page on loopback: the body.
#[track_caller]
pub fn http_get(url: &str) -> String {
    http(url, "GET", "", None).1
}

/// One request to `url` (`http://HOST:PORT/PATH`) with nothing but std: (status, body).
/// The body is sent as JSON; `bearer` becomes an `Authorization` header.
#[track_caller]
pub fn http(url: &str, method: &str, body: &str, bearer: Option<&str>) -> (u16, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("cannot connect to {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout can be set");
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = String::new();
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body.as_bytes()))
        .and_then(|()| s.read_to_string(&mut out).map(drop))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    split_response(&out).unwrap_or_else(|| panic!("{method} {url}: not HTTP: {out:?}"))
}

/// One GET of `path` over the unix socket at `socket`: `(status, body)`, `None` if nobody
/// answers (not listening yet, or gone), so that a test can poll for readiness.
pub fn over_socket(socket: &Path, path: &str) -> Option<(u16, String)> {
    let mut s = UnixStream::connect(socket).ok()?;
    // The agent's client may wait up to 35 s for a token; longer than that is a hang.
    s.set_read_timeout(Some(Duration::from_secs(35))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    split_response(&answer)
}

/// `(status, body)` of a whole HTTP/1.1 response.
fn split_response(answer: &str) -> Option<(u16, String)> {
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

/// `curl ARGS` (silent, bounded to 10 s): the status code and the body.
#[track_caller]
pub fn curl(args: &[&str]) -> (u16, String) {
    curl_as(None, args)
}

/// [`curl`], as the test's own user or, with `uid`, as that user (and its group, no others)
/// by `setpriv`, to see what another local user may reach.
#[track_caller]
pub fn curl_as(uid: Option<u32>, args: &[&str]) -> (u16, String) {
    let mut cmd = match uid {
        None => Command::new("curl"),
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "curl",
            ]);
            c
        }
    };
    cmd.args(["-s", "-S", "-m", "10", "-w", "\n%{http_code}"])
        .args(args);
    let out = run(&mut cmd);
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.parse().unwrap_or_else(|_| {
        panic!(
            "curl {args:?} printed no status (is curl installed? apt-get install curl): {text:?} {}",
            stderr(&out)
        )
    });
    (code, body.to_owned())
}

//! `freshtoken get --agent`: asks a running agent over its socket (or its loopback TCP port,
//! with its credential), with a few lines of plain HTTP/1.1 and no async runtime, so that the
//! fast path stays fast.
//!
//! Only an agent of the user's own is asked over the socket: the socket's folder must be the
//! user's, mode 0700, not a symlink, and the process serving the socket must run as the user
//! or as root (its uid taken from the connection, `SO_PEERCRED`). Anything else may be
//! another local user serving planted tokens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use freshtoken::{ExpirySource, Token};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::output::TokenWire;

/// Largest answer read from the agent.
const MAX_ANSWER: u64 = 64 * 1024;

/// Room for a whole usual answer (a token's is about 400 bytes), so that it is read with one
/// system call: from an empty buffer, `read_to_end` starts with 32 bytes and doubles, which
/// took six `recvfrom` calls per `get --agent` (strace).
const ANSWER_CAPACITY: usize = 4096;

/// The endpoint's answer: a [`TokenWire`], or `{"error": …}` with a status that is not 200.
#[derive(Deserialize)]
struct Answer {
    #[serde(flatten)]
    token: TokenWire,
    error: Option<String>,
}

/// `$XDG_RUNTIME_DIR/freshtoken/agent.sock`, else `/tmp/freshtoken-<uid>/agent.sock`: where
/// the agent listens, and `get --agent` asks, unless told otherwise.
pub fn default_socket() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map(|p| p.join("freshtoken"))
        // SAFETY: getuid cannot fail and touches no memory.
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/freshtoken-{}", unsafe { libc::getuid() })));
    dir.join("agent.sock")
}

/// Why the agent was not used; the caller then fetches on its own.
#[derive(Debug)]
pub struct NotUsed {
    /// What happened, in a few words.
    pub reason: String,
    /// Whether the socket may be another user's, not the user's agent: worth a warning,
    /// where a missing or failing agent is only worth an info line.
    pub suspicious: bool,
}

impl From<String> for NotUsed {
    fn from(reason: String) -> Self {
        Self {
            reason,
            suspicious: false,
        }
    }
}

impl From<&str> for NotUsed {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// The token of `profile`, valid at least `min_ttl`, from the agent on `socket`, if that is
/// the user's own agent (see the module docs).
pub fn fetch(socket: &Path, profile: &str, min_ttl: Duration) -> Result<Token, NotUsed> {
    let stream = connect(socket)?;
    let timeout = Some(ANSWER_WAIT);
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    ask(stream, "agent", None, profile, min_ttl).map_err(NotUsed::from)
}

/// [`fetch`] from the agent's loopback TCP endpoint at `addr` (`127.0.0.1:8765`), with the
/// credential the agent serving `socket` wrote beside it. Nothing is sent beyond loopback.
pub fn fetch_tcp(
    addr: &str,
    socket: &Path,
    profile: &str,
    min_ttl: Duration,
) -> Result<Token, String> {
    let addr: SocketAddr = addr
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("--agent http://{addr}: not an address like http://127.0.0.1:8765"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--agent http://{addr}: the agent's credential is sent to loopback only"
        ));
    }
    let credential = crate::credential::read_for(socket)?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_WAIT)
        .map_err(|e| format!("no agent on http://{addr}: {e}"))?;
    let timeout = Some(ANSWER_WAIT);
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let host = addr.to_string();
    ask(
        stream,
        &host,
        Some(credential.expose_secret()),
        profile,
        min_ttl,
    )
}

/// Longest wait for the agent's answer: beyond the endpoint's own 30 s wait for a refresh.
const ANSWER_WAIT: Duration = Duration::from_secs(35);

/// Longest wait for a TCP connection to the agent.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// One request for `profile`'s token on `stream`, and its answer read.
fn ask(
    mut stream: impl Read + Write,
    host: &str,
    credential: Option<&str>,
    profile: &str,
    min_ttl: Duration,
) -> Result<Token, String> {
    let authorization = credential
        .map(|c| format!("Authorization: Bearer {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /v1/token/{}?min_ttl={}ms HTTP/1.1\r\nHost: {host}\r\n{authorization}Accept: application/json\r\nConnection: close\r\n\r\n",
        encode(profile),
        min_ttl.as_millis()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot ask the agent: {e}"))?;
    drop(request);
    let mut answer = Vec::with_capacity(ANSWER_CAPACITY);
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(|e| format!("cannot read the agent's answer: {e}"))?;
    token_from(&answer, min_ttl)
}

/// The token in the agent's answer, or why there is none.
fn token_from(answer: &[u8], min_ttl: Duration) -> Result<Token, String> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the agent's answer has no end of headers")?;
    let head =
        std::str::from_utf8(&answer[..split]).map_err(|_| "the agent's answer is not text")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("the agent's answer has no status")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        return Err("the agent answered in chunks, which this client does not read".into());
    }
    let body: Answer = serde_json::from_slice(&answer[split + 4..])
        .map_err(|_| format!("the agent answered {status} with a body that is not its JSON"))?;
    if status != 200 {
        return Err(format!(
            "the agent answered {status}: {}",
            body.error.as_deref().unwrap_or("no reason given")
        ));
    }
    if body.token.access_token.is_empty() {
        return Err("the agent answered 200 without a token".into());
    }
    let expires_at = body.token.expiry();
    // A DPoP-bound token stays one: `get --agent --format json` says so, as `get` does.
    let token_type = if body
        .token
        .token_type
        .eq_ignore_ascii_case(freshtoken::dpop::TOKEN_TYPE)
    {
        freshtoken::dpop::TOKEN_TYPE
    } else {
        "Bearer"
    };
    let token = Token::new(
        SecretString::from(body.token.access_token),
        freshtoken::Clock::now(&freshtoken::SystemClock),
        expires_at,
        ExpirySource::ExpiresIn,
    )
    .with_token_type(token_type)
    .with_scope(body.token.scope);
    if token.remaining(freshtoken::Clock::now(&freshtoken::SystemClock)) < min_ttl {
        return Err("the agent's token is shorter-lived than --min-ttl".into());
    }
    Ok(token)
}

/// What the agent on `socket` holds (`GET /v1/status`, see `freshtoken status --agent`), if
/// it is the user's own agent: `{"profiles": [...], "proxies": [...]}`, never a token.
pub fn status(socket: &Path) -> Result<serde_json::Value, NotUsed> {
    let stream = connect(socket)?;
    let _ = stream.set_read_timeout(Some(CONNECT_WAIT));
    let _ = stream.set_write_timeout(Some(CONNECT_WAIT));
    status_on(stream, "agent", None).map_err(NotUsed::from)
}

/// [`status`] from the agent's loopback TCP endpoint at `addr`, with the credential the
/// agent serving `socket` wrote beside it. Nothing is sent beyond loopback.
pub fn status_tcp(addr: &str, socket: &Path) -> Result<serde_json::Value, String> {
    let addr = loopback(addr)?;
    let credential = crate::credential::read_for(socket)?;
    let stream = TcpStream::connect_timeout(&addr, CONNECT_WAIT)
        .map_err(|e| format!("no agent on http://{addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(CONNECT_WAIT));
    let _ = stream.set_write_timeout(Some(CONNECT_WAIT));
    status_on(stream, &addr.to_string(), Some(credential.expose_secret()))
}

/// `addr` (`127.0.0.1:8765`) if it is a loopback address: the only kind the credential is
/// sent to.
fn loopback(addr: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = addr
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("--agent http://{addr}: not an address like http://127.0.0.1:8765"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--agent http://{addr}: the agent's credential is sent to loopback only"
        ));
    }
    Ok(addr)
}

/// One `GET /v1/status` on `stream`, and its JSON answer.
fn status_on(
    mut stream: impl Read + Write,
    host: &str,
    credential: Option<&str>,
) -> Result<serde_json::Value, String> {
    let authorization = credential
        .map(|c| format!("Authorization: Bearer {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /v1/status HTTP/1.1\r\nHost: {host}\r\n{authorization}Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot ask the agent: {e}"))?;
    drop(request);
    let mut answer = Vec::with_capacity(ANSWER_CAPACITY);
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(|e| format!("cannot read the agent's answer: {e}"))?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the agent's answer has no end of headers")?;
    let head =
        std::str::from_utf8(&answer[..split]).map_err(|_| "the agent's answer is not text")?;
    let status = head.split(' ').nth(1).unwrap_or("?").to_owned();
    let body: serde_json::Value = serde_json::from_slice(&answer[split + 4..])
        .map_err(|_| format!("the agent answered {status} with a body that is not its JSON"))?;
    if status != "200" {
        let why = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!("the agent answered {status}: {why}"));
    }
    Ok(body)
}

/// Connects to `socket` after checking its folder, then checks who serves it.
fn connect(socket: &Path) -> Result<UnixStream, NotUsed> {
    let suspicious = |reason: String| NotUsed {
        reason,
        suspicious: true,
    };
    let dir = crate::socket_dir::of(socket);
    match freshtoken::internal::owned::check_dir(dir) {
        Ok(()) => {}
        Err(freshtoken::internal::owned::Unfit::Missing) => {
            return Err(format!(
                "no agent on {}: {} does not exist",
                socket.display(),
                dir.display()
            )
            .into());
        }
        Err(_) => {
            let why = crate::socket_dir::untrusted(dir).unwrap_or_default();
            return Err(suspicious(why));
        }
    }
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("no agent on {}: {e}", socket.display()))?;
    let me = freshtoken::internal::owned::user();
    match peer_uid(&stream) {
        Ok(uid) if uid == me || uid == 0 => Ok(stream),
        Ok(uid) => Err(suspicious(format!(
            "{} is served by uid {uid}, not by you (uid {me}) or root",
            socket.display()
        ))),
        Err(e) => Err(suspicious(format!(
            "cannot tell who serves {} ({e})",
            socket.display()
        ))),
    }
}

/// The uid of the process at the other end of `stream`, as the kernel recorded it when that
/// process bound and listened: it cannot be forged by what the process sends.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let size = std::mem::size_of::<libc::ucred>();
    let mut len = libc::socklen_t::try_from(size).map_err(std::io::Error::other)?;
    // SAFETY: the descriptor is open for as long as `stream` is borrowed; `cred` and `len`
    // are valid for writes, and `len` says how many bytes `cred` holds.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(size) {
        return Err(std::io::Error::other("SO_PEERCRED answered short"));
    }
    Ok(cred.uid)
}

/// The uid of the process at the other end of `stream` (`getpeereid`).
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: the descriptor is open for as long as `stream` is borrowed; both out
    // parameters are valid for writes.
    let rc = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(uid)
}

/// Elsewhere the peer cannot be told, so no agent is trusted.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
fn peer_uid(_stream: &UnixStream) -> std::io::Result<u32> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no peer credentials on this platform",
    ))
}

/// Percent-encodes a profile name for the path.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_profile_names() {
        assert_eq!(super::encode("prod-eu_1"), "prod-eu_1");
        assert_eq!(super::encode("a b/c"), "a%20b%2Fc");
    }
}

//! `freshtoken get --agent`: asks a running agent over its socket (or its loopback TCP port,
//! with its credential), with a few lines of plain HTTP/1.1 and no async runtime, so that the
//! fast path stays fast.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshtoken::{ExpirySource, Token};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Largest answer read from the agent.
const MAX_ANSWER: u64 = 64 * 1024;

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_at: u64,
    scope: Option<String>,
    error: Option<String>,
}

/// The token of `profile`, valid at least `min_ttl`, from the agent on `socket`. The error
/// says why the agent could not be used (the caller then fetches on its own).
pub fn fetch(socket: &Path, profile: &str, min_ttl: Duration) -> Result<Token, String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("no agent on {}: {e}", socket.display()))?;
    let timeout = Some(ANSWER_WAIT);
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    ask(stream, "agent", None, profile, min_ttl)
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
    let credential = super::credential::read_for(socket)?;
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
    let mut answer = Vec::new();
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
    if body.access_token.is_empty() {
        return Err("the agent answered 200 without a token".into());
    }
    let expires_at = UNIX_EPOCH + Duration::from_secs(body.expires_at);
    let token = Token::new(
        SecretString::from(body.access_token),
        SystemTime::now(),
        expires_at,
        ExpirySource::ExpiresIn,
    )
    .with_scope(body.scope);
    if token.remaining(SystemTime::now()) < min_ttl {
        return Err("the agent's token is shorter-lived than --min-ttl".into());
    }
    Ok(token)
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

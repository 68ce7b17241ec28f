//! A real `redis-server` on a free loopback port, for the library's store tests and the
//! binary's fleet tests. It uses std only (no library types), so the library's tests can
//! share it; see the crate's documentation.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    /// The loopback port it listens on, kept across [`RedisServer::restart`].
    pub port: u16,
    dir: tempfile::TempDir,
    /// More `redis-server` arguments (a cluster node's, a replica's).
    args: Vec<String>,
    /// A configuration file to start with (a sentinel's: it must have one, and rewrites it).
    conf: Option<std::path::PathBuf>,
    /// The network namespace it runs in (see [`crate::NetLab`]): it is started there, and
    /// [`RedisServer::command`] asks it there. `None`: the test's own.
    netns: Option<String>,
}

impl RedisServer {
    /// Starts one on a free port with nothing persisted; fails, saying how to install it,
    /// when `redis-server` is not there.
    ///
    /// A port is free when asked, but another test of the same process may start a server
    /// on it before this one binds it; then another free port is tried.
    pub fn start() -> Self {
        Self::start_with(Vec::new(), crate::clients::free_port)
    }

    /// Starts one in network namespace `netns` (or the test's own for `None`), with more
    /// arguments and an optional configuration file (a sentinel's).
    pub(crate) fn start_in(
        netns: Option<&str>,
        args: Vec<String>,
        conf: Option<&str>,
        pick: fn() -> u16,
    ) -> Self {
        Self::start_inner_in(netns.map(str::to_owned), args, conf, pick)
    }

    /// Starts one with more arguments, on a port `pick` chooses (a cluster node also needs
    /// the port 10000 above its own free, for the cluster bus).
    pub(crate) fn start_with(args: Vec<String>, pick: fn() -> u16) -> Self {
        Self::start_inner(args, None, pick)
    }

    fn start_inner(args: Vec<String>, conf: Option<&str>, pick: fn() -> u16) -> Self {
        Self::start_inner_in(None, args, conf, pick)
    }

    fn start_inner_in(
        netns: Option<String>,
        args: Vec<String>,
        conf: Option<&str>,
        pick: fn() -> u16,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let conf = conf.map(|text| {
            let path = dir.path().join("sentinel.conf");
            std::fs::write(&path, text).expect("the configuration file can be written");
            path
        });
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            args,
            conf,
            netns,
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = pick();
            match server.spawn() {
                Ok(child) => {
                    server.child = Some(child);
                    return server;
                }
                Err(e) => last = e,
            }
        }
        panic!("{last}")
    }

    /// `redis://127.0.0.1:PORT/0`, as `--cache` takes it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on the same port.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        let child = self.spawn().unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
    }

    /// A redis-server on [`RedisServer::port`], once it answers as this one: a server that
    /// answers PING on the port may be another test's, when this one could not bind it.
    fn spawn(&self) -> Result<Child, String> {
        // A process started from a thread in a namespace lives there.
        crate::netns::within(self.netns.as_deref(), || self.spawn_here())
    }

    fn spawn_here(&self) -> Result<Child, String> {
        let mut child = Command::new("redis-server")
            .args(&self.conf)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed: apt-get install redis-server (scripts/test.sh installs it)");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server ended ({status}) on port {}: the port is taken",
                    self.port
                ));
            }
            if self.command(&["PING"]).as_deref() == Some("+PONG") {
                if self.answers_as_this_one() {
                    return Ok(child);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "port {} is taken by another redis-server",
                    self.port
                ));
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server did not start on port {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server on the port works in this one's directory (each has its own; a
    /// sentinel, which has no CONFIG, names its configuration file there).
    fn answers_as_this_one(&self) -> bool {
        let name = self.dir.path().file_name().unwrap_or_default();
        let name = name.to_string_lossy();
        self.command(&["CONFIG", "GET", "dir"])
            .is_some_and(|reply| reply.contains(&*name))
            || self
                .command(&["INFO", "server"])
                .is_some_and(|reply| reply.contains(&*name))
    }

    /// Stops it (a crash, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// One command in RESP; returns the raw reply, `None` when not reachable.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        crate::netns::within(self.netns.as_deref(), || self.command_here(args))
    }

    fn command_here(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        // A reply may arrive in more than one read; the connection stays open after it, so
        // the end is where the reply is complete (not the read timeout, 2 s each time).
        let mut reply = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while resp_end(&reply, 0).is_none() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        if reply.is_empty() {
            return None;
        }
        Some(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    /// Every key and value in the database, as text (for leak checks).
    pub fn dump(&self) -> String {
        let keys = self.command(&["KEYS", "*"]).unwrap_or_default();
        let mut out = keys.clone();
        for key in keys
            .lines()
            .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
        {
            out.push('\n');
            out.push_str(&self.command(&["GET", key]).unwrap_or_default());
        }
        out
    }
}

/// Where the RESP value that starts at `at` in `buf` ends, once all of it is there.
fn resp_end(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + 2;
    let header = std::str::from_utf8(&buf[at + 1..line_end - 2]).ok()?;
    match buf[at] {
        b'$' => match header.parse::<i64>().ok()? {
            n if n < 0 => Some(line_end),
            n => {
                let end = line_end + usize::try_from(n).ok()? + 2;
                (buf.len() >= end).then_some(end)
            }
        },
        b'*' => {
            let mut end = line_end;
            for _ in 0..header.parse::<i64>().ok()?.max(0) {
                end = resp_end(buf, end)?;
            }
            Some(end)
        }
        // Simple strings, errors, integers: one line.
        _ => Some(line_end),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_complete_only_when_all_of_it_arrived() {
        let whole = b"*2\r\n$3\r\ndir\r\n$4\r\n/tmp\r\n";
        assert_eq!(resp_end(whole, 0), Some(whole.len()));
        for cut in 0..whole.len() {
            assert_eq!(resp_end(&whole[..cut], 0), None, "{cut}");
        }
        assert_eq!(resp_end(b"+PONG\r\n", 0), Some(7));
        assert_eq!(resp_end(b"$-1\r\n", 0), Some(5));
        assert_eq!(resp_end(b"*0\r\n", 0), Some(4));
    }

    /// Two tests of one process can be handed the same free port; the second server then
    /// cannot bind it, and the first answers its PING. That server must not pass for its
    /// own: the test would use, and lose, another test's Redis.
    #[test]
    fn a_port_another_redis_server_holds_is_not_taken_for_its_own() {
        let first = RedisServer::start();
        let second = RedisServer {
            child: None,
            port: first.port,
            dir: tempfile::tempdir().unwrap(),
            args: Vec::new(),
            conf: None,
            netns: None,
        };
        let err = second
            .spawn()
            .map(|mut child| {
                let _ = child.kill();
                let _ = child.wait();
            })
            .expect_err("a second server on a taken port is refused");
        assert!(err.contains("taken"), "{err}");
        assert_eq!(first.command(&["PING"]).as_deref(), Some("+PONG"));
    }
}

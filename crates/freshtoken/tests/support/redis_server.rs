//! A real `redis-server` on a free loopback port, for tests. Shared by the library's and the
//! binary's tests (included with `#[path]`).

// Real elapsed-time bounds ("did not hang"): the monotonic clock is the point.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code, unreachable_pub)] // helpers shared by test crates that each use a part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed: apt-get install redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (a crash, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command in RESP; returns the raw reply, `None` when not reachable.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let n = s.read(&mut buf).ok()?;
        let mut out = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Bulk replies may arrive in more than one read.
        while out.starts_with('$') || out.starts_with('*') {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        Some(out.trim_end().to_owned())
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

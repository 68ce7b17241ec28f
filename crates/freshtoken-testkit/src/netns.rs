//! Hosts, not folders: a small network of Linux network namespaces the test makes, so that
//! each "machine" of a fleet test is its own host and every call to Redis and the token
//! endpoint crosses a real (virtual) interface.
//!
//! - A hub namespace holds a bridge; every other namespace has one veth pair to it.
//! - The services namespace ([`SERVICES`], 198.18.0.1) runs Redis (one node, a Cluster or a
//!   Sentinel set) and the dev-server; host `i`
//!   is 198.18.0.(10 + i). 198.18.0.0/15 is the range set aside for benchmarking networks
//!   (RFC 2544): nothing real lives there, and it exists only inside these namespaces.
//! - freshtoken sends credentials over plain http only to loopback, so each host reaches
//!   the dev-server through a relay on its own 127.0.0.1 that forwards across the bridge;
//!   Redis it reaches at 198.18.0.1 directly.
//!
//! Making namespaces needs root (CAP_NET_ADMIN), as CI has; where they cannot be made,
//! [`NetLab::new`] fails the test and says why (it never passes silently).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The address of the services namespace (Redis, the dev-server).
pub const SERVICES: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

static LABS: AtomicU32 = AtomicU32::new(0);

/// A hub, a services namespace and `hosts` host namespaces; all deleted when dropped.
pub struct NetLab {
    prefix: String,
    hosts: usize,
}

impl NetLab {
    /// Makes the namespaces and wires them to the hub's bridge.
    pub fn new(hosts: usize) -> Self {
        let prefix = format!(
            "ft{}n{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Self { prefix, hosts };
        let hub = lab.ns("hub");
        if let Err(e) = ip(&["netns", "add", &hub]) {
            panic!(
                "cannot make a network namespace ({e}): the namespace tests need root with \
                 CAP_NET_ADMIN and iproute2 (`ip`), as CI has; run them there or as root"
            );
        }
        lab.setup()
            .unwrap_or_else(|e| panic!("cannot wire the test network: {e}"));
        lab
    }

    fn setup(&self) -> Result<(), String> {
        let hub = self.ns("hub");
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let mut ends = vec![(self.ns("svc"), SERVICES)];
        for i in 0..self.hosts {
            ends.push((self.host(i), self.host_addr(i)));
        }
        for (k, (ns, addr)) in ends.iter().enumerate() {
            let port = format!("v{k}");
            ip(&["netns", "add", ns])?;
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn ns(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    /// The namespace of host `i`.
    pub fn host(&self, i: usize) -> String {
        self.ns(&format!("h{i}"))
    }

    /// The address of host `i` on the bridge.
    pub fn host_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, u8::try_from(10 + i).expect("at most 245 hosts"))
    }

    /// Runs `f` on a thread inside the services namespace: sockets it binds, and processes
    /// it starts, live there.
    pub fn in_services<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.ns("svc"), f)
    }

    /// A redis-server in the services namespace, on [`SERVICES`] (and its loopback, for its
    /// own start-up check); hosts reach it at `redis://198.18.0.1:PORT/0`.
    pub fn redis(&self) -> crate::RedisServer {
        self.in_services(|| {
            crate::RedisServer::start_with(
                // No protected mode: only the namespaces this test made can reach it.
                [
                    "--bind",
                    "198.18.0.1",
                    "127.0.0.1",
                    "--protected-mode",
                    "no",
                ]
                .map(str::to_owned)
                .to_vec(),
                crate::clients::free_port,
            )
        })
    }

    /// A six-node Redis Cluster in the services namespace, its nodes on [`SERVICES`] (and
    /// announcing it, so that hosts are sent there); hosts reach it at its
    /// [`crate::RedisCluster::url`]. The test's own commands to it run in that namespace.
    pub fn redis_cluster(&self) -> crate::RedisCluster {
        crate::RedisCluster::start_on(Some(&self.ns("svc")), SERVICES)
    }

    /// A primary, a replica and three sentinels in the services namespace on [`SERVICES`];
    /// hosts reach them at [`crate::RedisSentinel::url`].
    pub fn redis_sentinel(&self) -> crate::RedisSentinel {
        crate::RedisSentinel::start_on(Some(&self.ns("svc")), SERVICES)
    }

    /// A dev-server in the services namespace on [`SERVICES`], with a relay to it in every
    /// host; returns it and the token URL hosts use (`http://127.0.0.1:PORT/oauth/token`).
    pub fn dev_server(&self, config: freshtoken_devserver::Config) -> (crate::Server, String) {
        let port = self.in_services(|| {
            TcpListener::bind((SERVICES, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port in the services namespace")
                .port()
        });
        let server = self.in_services(move || {
            crate::Server::start_at(SocketAddr::from((SERVICES, port)), config)
        });
        self.relay(port);
        (server, format!("http://127.0.0.1:{port}/oauth/token"))
    }

    /// In every host, a relay on its own `127.0.0.1:port` to `SERVICES:port` across the
    /// bridge (for the dev-server: plain http goes to loopback only). The relays live as
    /// long as the test process; they end with it.
    fn relay(&self, port: u16) {
        for i in 0..self.hosts {
            let listener = in_netns(&self.host(i), move || {
                TcpListener::bind(("127.0.0.1", port)).expect("a relay port in the host")
            });
            let ns = self.host(i);
            std::thread::spawn(move || {
                enter(&ns);
                for conn in listener.incoming().flatten() {
                    // This thread is in the host: the outbound socket is too.
                    let Ok(out) = TcpStream::connect(SocketAddr::from((SERVICES, port))) else {
                        continue;
                    };
                    pipe(conn, out);
                }
            });
        }
    }

    /// `cmd` (program, arguments, environment, directory) run in host `i`, through
    /// `ip netns exec`.
    pub fn on_host(&self, i: usize, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(i)])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c.env_clear();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        c
    }
}

impl NetLab {
    /// Gives host `i` its own `/etc/resolv.conf` and `/etc/hosts` (files under
    /// `/etc/netns/NAME/`, which `ip netns exec` mounts over `/etc` for what runs there):
    /// `resolv_conf` as given, and a hosts file with `localhost` only. Removed with the lab.
    pub fn name_config(&self, i: usize, resolv_conf: &str) {
        let dir = std::path::Path::new("/etc/netns").join(self.host(i));
        std::fs::create_dir_all(&dir).expect("/etc/netns/NAME (needs root)");
        std::fs::write(dir.join("resolv.conf"), resolv_conf).expect("resolv.conf");
        std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").expect("hosts");
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(self.host(i)));
        }
        let _ = ip(&["netns", "del", &self.ns("hub")]);
        let _ = ip(&["netns", "del", &self.ns("svc")]);
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.host(i)]);
        }
    }
}

/// Copies both ways between two connections until either side ends.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    one_way(a, b2);
    one_way(b, a2);
}

/// Runs `f` inside namespace `ns` (on a scoped thread, so that it may borrow), or right
/// here for `None`: what a Redis started in the services namespace uses to be started and
/// asked there.
pub(crate) fn within<T: Send>(ns: Option<&str>, f: impl FnOnce() -> T + Send) -> T {
    match ns {
        None => f(),
        Some(ns) => std::thread::scope(|s| {
            s.spawn(|| {
                enter(ns);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        }),
    }
}

/// Moves the calling thread into the named namespace (threads it starts follow).
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    // SAFETY: setns on a file descriptor we hold open; it changes only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a new thread in namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// `ip ARGS`, its error output on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

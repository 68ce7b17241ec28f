//! A real Redis Sentinel set on loopback (or in a [`crate::NetLab`]'s services namespace):
//! one primary, one replica and three sentinels
//! (quorum two), so that `redis+sentinel://` runs against the thing it is for and a
//! primary killed mid-run is replaced by a promotion the sentinels agree on.

use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

/// The name the sentinels know the primary by (the path of the URL).
pub const SENTINEL_PRIMARY: &str = "freshtoken-primary";

/// How long a failover (or the first start) may take before the test fails.
const SETTLE: Duration = Duration::from_secs(30);

/// A primary, its replica and three sentinels; all killed when dropped.
pub struct RedisSentinel {
    /// Index 0 starts as the primary, 1 as its replica.
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    /// The address they all listen on: loopback, or the services address of a
    /// [`crate::NetLab`].
    ip: std::net::Ipv4Addr,
}

impl RedisSentinel {
    /// Starts the set; returns once the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels.
    pub fn start() -> Self {
        Self::start_on(None, std::net::Ipv4Addr::LOCALHOST)
    }

    /// [`RedisSentinel::start`] in network namespace `netns` (the test's own for `None`),
    /// every server listening on `ip` (and its loopback); the sentinels name the primary by
    /// `ip`, so clients in other namespaces are sent where they can reach.
    pub(crate) fn start_on(netns: Option<&str>, ip: std::net::Ipv4Addr) -> Self {
        let open: Vec<String> = if ip.is_loopback() {
            Vec::new()
        } else {
            // No protected mode: only the namespaces the test made can reach them.
            [
                "--bind",
                &ip.to_string(),
                "127.0.0.1",
                "--protected-mode",
                "no",
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let pick = crate::clients::free_port;
        let primary = RedisServer::start_in(netns, open.clone(), None, pick);
        let mut replica_args = open.clone();
        replica_args.extend([
            "--replicaof".to_owned(),
            ip.to_string(),
            primary.port.to_string(),
        ]);
        let replica = RedisServer::start_in(netns, replica_args, None, pick);
        // Down after 1 s of silence: a killed primary is replaced within seconds.
        let conf = format!(
            "sentinel monitor {SENTINEL_PRIMARY} {ip} {} 2\n\
             sentinel down-after-milliseconds {SENTINEL_PRIMARY} 1000\n\
             sentinel failover-timeout {SENTINEL_PRIMARY} 10000\n\
             sentinel parallel-syncs {SENTINEL_PRIMARY} 1\n",
            primary.port
        );
        let sentinels = (0..3)
            .map(|_| {
                let mut args = vec!["--sentinel".to_owned()];
                args.extend(open.iter().cloned());
                RedisServer::start_in(netns, args, Some(&conf), pick)
            })
            .collect();
        let set = Self {
            nodes: vec![primary, replica],
            sentinels,
            ip,
        };
        set.settle(
            |s| {
                s.sentinels.iter().all(|sentinel| {
                    let replicas = sentinel
                        .command(&["SENTINEL", "REPLICAS", SENTINEL_PRIMARY])
                        .unwrap_or_default();
                    let others = sentinel
                        .command(&["SENTINEL", "SENTINELS", SENTINEL_PRIMARY])
                        .unwrap_or_default();
                    replicas.starts_with("*1") && others.starts_with("*2")
                }) && s.nodes[1]
                    .command(&["INFO", "replication"])
                    .is_some_and(|r| r.contains("master_link_status:up"))
            },
            "the sentinels to know the replica and each other",
        );
        // And that every sentinel names the primary, and it answers as one.
        set.await_promotion();
        set
    }

    /// `redis+sentinel://S1,S2,S3/NAME/0`, as `--cache` takes it.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("{}:{}", self.ip, s.port))
            .collect();
        format!("redis+sentinel://{}/{SENTINEL_PRIMARY}/0", hosts.join(","))
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> u16 {
        let reply = self
            .sentinels
            .iter()
            .filter(|s| s.is_running())
            .find_map(|s| s.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_PRIMARY]))
            .unwrap_or_default();
        reply
            .lines()
            .last()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no primary address from the sentinels: {reply}"))
    }

    /// A command to the current primary.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let port = self.primary_port();
        self.nodes.iter().find(|n| n.port == port)?.command(args)
    }

    /// The primary killed with SIGKILL once its replica has every write (a crash, not a
    /// handover); returns at once, before the sentinels noticed.
    pub fn crash_primary(&mut self) {
        let port = self.primary_port();
        let primary = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the primary is one of the set");
        let acked = primary.command(&["WAIT", "1", "5000"]).unwrap_or_default();
        assert_eq!(acked, ":1", "the replica of {port} caught up");
        primary.stop();
    }

    /// Waits until every sentinel names the same primary, and it runs and answers as one
    /// (a client may ask any sentinel: one still naming the dead primary would send it
    /// there).
    pub fn await_promotion(&self) {
        self.settle(
            |s| {
                let named: Vec<Option<String>> = s
                    .sentinels
                    .iter()
                    .map(|sentinel| {
                        sentinel.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_PRIMARY])
                    })
                    .collect();
                if named.iter().any(|n| n != &named[0]) {
                    return false;
                }
                let port = s.primary_port();
                s.nodes.iter().any(|n| {
                    n.port == port
                        && n.is_running()
                        && n.command(&["INFO", "replication"])
                            .is_some_and(|r| r.contains("role:master"))
                })
            },
            "the sentinels to promote the replica",
        );
    }

    fn settle(&self, done: impl Fn(&Self) -> bool, what: &str) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < SETTLE, "waited {SETTLE:?} for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

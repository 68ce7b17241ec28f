//! A real six-node Redis Cluster (three primaries, three replicas) on loopback or in a
//! [`crate::NetLab`]'s services namespace, made with
//! `redis-server --cluster-enabled yes` and `redis-cli --cluster create`, so that the
//! `redis+cluster://` path runs against the thing it is for, failovers included.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::clients::free_port;
use crate::redis_server::RedisServer;

/// How long a node may be silent before the others mark it failed: short, so that a killed
/// primary is replaced within seconds, yet well above what a busy 2-core runner stalls for.
const NODE_TIMEOUT_MS: u32 = 2000;

/// How long a failover (or the cluster's first start) may take before the test fails.
const SETTLE: Duration = Duration::from_secs(30);

/// One node as `CLUSTER NODES` shows it.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    primary: bool,
    failed: bool,
    /// The primary's id, for a replica.
    replica_of: Option<String>,
    slots: Vec<(u16, u16)>,
}

/// A primary crashed by [`RedisCluster::crash_primary`]: its slot and the replica that is
/// to take it over.
#[derive(Debug)]
pub struct Takeover {
    slot: u16,
    replica: String,
}

/// A running cluster; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The address its nodes listen on and announce: loopback, or the services address of
    /// a [`crate::NetLab`].
    ip: std::net::Ipv4Addr,
}

impl RedisCluster {
    /// Starts six nodes and joins them into a cluster, each primary with one replica; returns
    /// once every node sees the cluster as ok and every replica is in sync.
    pub fn start() -> Self {
        Self::start_on(None, std::net::Ipv4Addr::LOCALHOST)
    }

    /// [`RedisCluster::start`] in network namespace `netns` (the test's own for `None`), its
    /// nodes listening on `ip` (and their loopback) and announcing `ip` to clients.
    pub(crate) fn start_on(netns: Option<&str>, ip: std::net::Ipv4Addr) -> Self {
        let mut args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            // A replica may always take over, however long it was cut off.
            "--cluster-replica-validity-factor",
            "0",
        ]
        .map(str::to_owned)
        .to_vec();
        if !ip.is_loopback() {
            // No protected mode: only the namespaces the test made can reach it.
            let ip = ip.to_string();
            args.extend(
                [
                    "--bind",
                    &ip,
                    "127.0.0.1",
                    "--protected-mode",
                    "no",
                    "--cluster-announce-ip",
                    &ip,
                ]
                .map(str::to_owned),
            );
        }
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_in(netns, args.clone(), None, cluster_port))
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("{ip}:{}", n.port)).collect();
        let out = crate::netns::within(netns, || {
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .output()
        })
        .expect("redis-cli comes with redis-server (apt-get install redis-server)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes, ip };
        cluster.settle(|_| true, "the new cluster to be ok");
        cluster
    }

    /// `redis+cluster://…` with every node, as `--cache` takes it.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}:{}", self.ip, n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The slot `key` hashes to, as the cluster computes it.
    pub fn keyslot(&self, key: &str) -> u16 {
        let reply = self
            .any_node()
            .command(&["CLUSTER", "KEYSLOT", key])
            .unwrap_or_default();
        reply
            .trim_start_matches(':')
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {reply}"))
    }

    /// A command sent to the primary that serves `key`.
    pub fn command_for(&self, key: &str, args: &[&str]) -> Option<String> {
        let owner = self.owner(self.keyslot(key))?;
        self.node(owner.port).command(args)
    }

    /// Every key on every live primary (for leak checks and lock waits).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for line in self.view().into_iter().filter(|l| l.primary && !l.failed) {
            let reply = self
                .node(line.port)
                .command(&["KEYS", "*"])
                .unwrap_or_default();
            keys.extend(
                reply
                    .lines()
                    .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
                    .map(str::to_owned),
            );
        }
        keys
    }

    /// A planned failover of the primary that serves `key`: its replica runs `CLUSTER
    /// FAILOVER` (which first catches up, so nothing is lost); returns once every node sees
    /// the replica as the slot's primary.
    pub fn fail_over(&self, key: &str) {
        let slot = self.keyslot(key);
        let primary = self.owner(slot).expect("the slot has a primary");
        let replica = self.replica_of(&primary);
        let reply = self
            .node(replica.port)
            .command(&["CLUSTER", "FAILOVER"])
            .unwrap_or_default();
        assert_eq!(reply, "+OK", "CLUSTER FAILOVER on {}", replica.port);
        self.settle(
            |c| c.owner(slot).is_some_and(|o| o.id == replica.id),
            "the replica to take over the slot",
        );
    }

    /// The primary that serves `key`, killed with SIGKILL once its replica has every write
    /// (a crash, not a handover); returns once the replica has been promoted and every
    /// live node sees the cluster as ok.
    pub fn kill_primary(&mut self, key: &str) {
        let takeover = self.crash_primary(key);
        self.await_takeover(takeover);
    }

    /// The crash of [`RedisCluster::kill_primary`] alone: returns at once, while the slot
    /// has no primary (until [`RedisCluster::await_takeover`]).
    pub fn crash_primary(&mut self, key: &str) -> Takeover {
        let slot = self.keyslot(key);
        let primary = self.owner(slot).expect("the slot has a primary");
        let replica = self.replica_of(&primary);
        // WAIT: the replica acknowledged every write so far, so the crash loses none.
        let acked = self
            .node(primary.port)
            .command(&["WAIT", "1", "5000"])
            .unwrap_or_default();
        assert_eq!(acked, ":1", "the replica of {} caught up", primary.port);
        self.node_mut(primary.port).stop();
        Takeover {
            slot,
            replica: replica.id,
        }
    }

    /// Waits until the replica of a crashed primary serves its slot and every live node
    /// sees the cluster as ok.
    pub fn await_takeover(&self, takeover: Takeover) {
        self.settle(
            |c| {
                c.owner(takeover.slot)
                    .is_some_and(|o| o.id == takeover.replica)
            },
            "the replica to be promoted after its primary was killed",
        );
    }

    /// Waits until every live node sees the cluster as ok with every slot served by a
    /// primary that is not failed, replicas in sync, and `done` holds.
    fn settle(&self, done: impl Fn(&Self) -> bool, what: &str) {
        let started = Instant::now();
        loop {
            if self.healthy() && done(self) {
                return;
            }
            assert!(
                started.elapsed() < SETTLE,
                "waited {SETTLE:?} for {what}: {:?}",
                self.view()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn healthy(&self) -> bool {
        self.live().all(|n| {
            let info = n.command(&["CLUSTER", "INFO"]).unwrap_or_default();
            let replication = n.command(&["INFO", "replication"]).unwrap_or_default();
            info.contains("cluster_state:ok")
                && (replication.contains("role:master")
                    || replication.contains("master_link_status:up"))
        }) && (0..3).all(|i| self.owner([0, 6000, 12000][i]).is_some())
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    fn any_node(&self) -> &RedisServer {
        self.live().next().expect("a live cluster node")
    }

    fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }

    /// The cluster as every live node sees it: only lines all of them agree on count.
    fn view(&self) -> Vec<NodeLine> {
        let views: Vec<Vec<NodeLine>> = self
            .live()
            .map(|n| parse_nodes(&n.command(&["CLUSTER", "NODES"]).unwrap_or_default()))
            .collect();
        let Some(first) = views.first() else {
            return Vec::new();
        };
        first
            .iter()
            .filter(|line| {
                views.iter().all(|v| {
                    v.iter().any(|o| {
                        o.id == line.id
                            && o.primary == line.primary
                            && o.failed == line.failed
                            && o.replica_of == line.replica_of
                            && o.slots == line.slots
                    })
                })
            })
            .cloned()
            .collect()
    }

    /// The primary every live node agrees serves `slot`, when it is not failed.
    fn owner(&self, slot: u16) -> Option<NodeLine> {
        self.view().into_iter().find(|l| {
            l.primary && !l.failed && l.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
        })
    }

    /// The live replica of `primary`, once every node agrees on it (after a failover the
    /// old primary turns replica a moment after the new one took the slots).
    fn replica_of(&self, primary: &NodeLine) -> NodeLine {
        let find = |c: &Self| {
            c.view()
                .into_iter()
                .find(|l| l.replica_of.as_deref() == Some(&primary.id) && !l.failed)
        };
        self.settle(|c| find(c).is_some(), "the primary to have a live replica");
        find(self).unwrap_or_else(|| panic!("no live replica of {}", primary.port))
    }
}

/// A port for a cluster node: free, and with the bus port (10000 above) free and in range.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// `CLUSTER NODES` (a bulk string) into lines: id, address, flags, primary, …, slots.
fn parse_nodes(reply: &str) -> Vec<NodeLine> {
    reply
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[0].starts_with('$') {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_owned(),
                port,
                primary: flags.contains(&"master"),
                failed: flags.iter().any(|&x| x == "fail" || x == "fail?"),
                replica_of: (f[3] != "-").then(|| f[3].to_owned()),
                slots,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_parse() {
        let reply = "$300\n\
            a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
            b2 127.0.0.1:30002@40002 slave a1 0 1 1 connected\n\
            c3 127.0.0.1:30003@40003 master,fail - 0 1 2 connected 5461 5462-10922 [5463->-x]";
        let lines = parse_nodes(reply);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].primary && !lines[0].failed && lines[0].slots == vec![(0, 5460)]);
        assert_eq!(lines[1].replica_of.as_deref(), Some("a1"));
        assert_eq!(lines[1].port, 30002);
        assert!(lines[2].failed);
        assert_eq!(lines[2].slots, vec![(5461, 5461), (5462, 10922)]);
    }
}

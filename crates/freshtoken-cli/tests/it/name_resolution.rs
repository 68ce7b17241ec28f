//! Host names resolved by freshtoken's own resolver against a real name server: dnsmasq in
//! one network namespace of the test's, the process in another whose `/etc/resolv.conf` names
//! it, the token endpoint behind TLS on a name only that server knows. (The release tests
//! check the hosts-file side inside an empty chroot.) Needs root, as CI has, and dnsmasq
//! (Debian's dnsmasq-base, which scripts/test.sh installs); without either the test fails
//! and says why.
// A bounded wait for dnsmasq to start: real time is the point.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_testkit::tls::{TLS_TEST_NAME, TlsUpstream};
use freshtoken_testkit::*;

/// dnsmasq in the services namespace, answering `name` with the services address and
/// logging every query to `log`; killed when dropped.
struct NameServer(Child);

impl NameServer {
    fn start(lab: &NetLab, name: &str, log: &std::path::Path) -> Self {
        let args = [
            "--keep-in-foreground".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--bind-interfaces".to_owned(),
            format!("--listen-address={SERVICES}"),
            "--port=53".to_owned(),
            format!("--address=/{name}/{SERVICES}"),
            "--log-queries".to_owned(),
            format!("--log-facility={}", log.display()),
            "--user=root".to_owned(),
            format!("--pid-file={}", log.with_extension("pid").display()),
        ];
        let child = lab.in_services(move || {
            // Debian puts it in /usr/sbin, which a user's PATH may lack.
            let program = ["/usr/sbin/dnsmasq", "dnsmasq"]
                .into_iter()
                .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
                .unwrap_or("dnsmasq");
            Command::new(program)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start dnsmasq ({e}): install Debian's dnsmasq-base")
                })
        });
        let started = Instant::now();
        while !std::fs::read_to_string(log).is_ok_and(|l| l.contains("started, version")) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dnsmasq did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_name_from_the_name_server_of_resolv_conf_reaches_the_token_endpoint() {
    let lab = NetLab::new(1);
    let sb = Sandbox::new();
    let dir = sb.path().to_owned();
    let tls = lab.in_services(move || {
        TlsUpstream::start_at(&dir, &[b"http/1.1"], SocketAddr::from((SERVICES, 0)))
    });
    let port = tls.url.rsplit(':').next().unwrap().to_owned();
    let log = sb.path().join("dnsmasq.log");
    let _dns = NameServer::start(&lab, TLS_TEST_NAME, &log);
    lab.name_config(0, &format!("nameserver {SERVICES}\n"));

    let get = |host: &str| {
        let mut c = sb.cmd();
        c.env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
            .env("FRESHTOKEN_RETRY_FOR", "0")
            .arg("get")
            .args(["--cache", "memory", "--ca-file"])
            .arg(&tls.ca_file)
            .args(["--token-url", &format!("https://{host}:{port}/oauth/token")]);
        run(&mut lab.on_host(0, &c))
    };
    let o = get(TLS_TEST_NAME);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), "from-the-private-ca");
    let queries = std::fs::read_to_string(&log).unwrap();
    let from = lab.host_addr(0);
    assert!(
        queries.contains(&format!("query[A] {TLS_TEST_NAME} from {from}")),
        "the name went to the name server across the bridge: {queries}"
    );

    // A name the server does not know: one line, exit 4, no wait for a timeout.
    let started = Instant::now();
    let o = get("nowhere.test");
    assert_code(&o, 4);
    assert!(
        stderr(&o).contains("cannot resolve host nowhere.test"),
        "{}",
        stderr(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

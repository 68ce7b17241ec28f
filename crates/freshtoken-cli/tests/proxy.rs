//! `freshtoken proxy` as a whole process, with real clients (curl, Python's urllib) and the
//! dev-server as upstream.

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A running `freshtoken proxy`; stopped with SIGTERM when dropped.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(sb: &Sandbox, server: &Server, extra: &[&str]) -> Self {
        let mut cmd = sb.cmd_for(server);
        cmd.args(["-v", "proxy", "--upstream", &server.base_url()])
            .args(extra);
        Self::spawn(cmd)
    }

    /// Starts `cmd` (a `proxy` command line) and reads the address it prints.
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let first = first_line(&mut child, "the proxy");
        let url = first
            .split_whitespace()
            .nth(3)
            .unwrap_or_else(|| panic!("proxy said {first:?}"))
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{first}");
        Self { child, url }
    }

    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGTERM, then its exit status and stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = wait(&mut self.child, "the proxy after SIGTERM");
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // A test that fails half way must not leave its proxy running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let o = run(Command::new("curl").args(["-s", "-S"]).args(args));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn curl_and_python_see_no_401_across_five_token_lifetimes() {
    let server = Server::start(Duration::from_secs(1));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    // Both clients send the token-less requests they always sent, for about 6 s: six lifetimes.
    let curl_loop = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 40); do curl -s -o /dev/null -w '%{{http_code}}\\n' -X PUT -d '{{\"i\":'$i'}}' {}/api/items/$i; sleep 0.15; done",
            proxy.url
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let python = Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import time, urllib.request, urllib.error
codes = []
end = time.time() + 6
while time.time() < end:
    try:
        with urllib.request.urlopen("{}/api/v2/users/me") as r:
            codes.append(r.status)
    except urllib.error.HTTPError as e:
        codes.append(e.code)
    time.sleep(0.05)
print(" ".join(map(str, codes)))
"#,
            proxy.url
        ))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed");
    let curl_codes = String::from_utf8(curl_loop.wait_with_output().unwrap().stdout).unwrap();
    let py_codes = String::from_utf8(python.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(curl_codes.lines().count(), 40);
    assert!(
        curl_codes.lines().all(|c| c == "200"),
        "curl saw: {curl_codes}"
    );
    let py: Vec<&str> = py_codes.split_whitespace().collect();
    assert!(py.len() > 40, "{py_codes}");
    assert!(py.iter().all(|c| *c == "200"), "python saw: {py_codes}");
    let stats = server.stats();
    assert!(
        stats.tokens_issued >= 5,
        "crossed at least 5 lifetimes: {stats:?}"
    );

    let (status, log) = proxy.stop();
    assert!(status.success(), "SIGTERM: exit 0 ({status:?})");
    assert!(
        log.contains("proxied method=PUT path=/api/items/1 status=200"),
        "{log}"
    );
    assert!(!log.contains("dev-"), "no token in the access log:\n{log}");
}

#[test]
fn a_revoked_token_is_replayed_once_with_the_same_body() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    assert!(
        curl(&[
            "-X",
            "PUT",
            "-d",
            r#"{"n":1}"#,
            &format!("{}/api/config/1", proxy.url)
        ])
        .contains("\"body_bytes\":7")
    );
    server.state().revoke_all();
    let body = r#"{"enabled":true,"n":2}"#;
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "PUT",
        "-H",
        "content-type: application/json",
        "-d",
        body,
        &format!("{}/api/config/2", proxy.url),
    ]);
    assert!(out.ends_with(" 200"), "{out}");
    let seen: Vec<_> = server
        .state()
        .api_log()
        .into_iter()
        .filter(|r| r.path == "/api/config/2")
        .collect();
    assert_eq!(seen.len(), 2, "sent, refused, replayed: {seen:?}");
    assert!(
        seen.iter()
            .all(|r| r.method == "PUT" && r.body == body.as_bytes()),
        "the same body twice: {seen:?}"
    );
    assert_eq!(server.stats().api_401, 1);
    let (_, log) = proxy.stop();
    assert!(
        log.contains("path=/api/config/2 status=200") && log.contains("replayed=true"),
        "{log}"
    );
}

#[test]
fn a_body_over_the_replay_limit_gets_its_401_untouched() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &["--replay-limit", "1KiB"]);
    curl(&[&format!("{}/api/warm", proxy.url)]);
    server.state().revoke_all();
    let big = "x".repeat(4096);
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "PUT",
        "--data-binary",
        &big,
        &format!("{}/api/big", proxy.url),
    ]);
    assert!(out.ends_with(" 401"), "{out}");
    assert_eq!(
        server
            .state()
            .api_log()
            .iter()
            .filter(|r| r.path == "/api/big")
            .count(),
        1,
        "not replayed"
    );
    // A small one after it is replayed as usual.
    server.state().revoke_all();
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-X",
        "PUT",
        "-d",
        "small",
        &format!("{}/api/small", proxy.url),
    ]);
    assert!(out.ends_with(" 200"), "{out}");
}

#[test]
fn two_hundred_megabytes_each_way_with_memory_well_under_100_mb() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    const SIZE: u64 = 200 * 1024 * 1024;
    let down = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{http_code}",
        &format!("{}/api/blob/{SIZE}", proxy.url),
    ]);
    assert_eq!(down, format!("{SIZE} 200"));
    let up = run(Command::new("sh").arg("-c").arg(format!(
        "head -c {SIZE} /dev/zero | curl -s -S -T - {}/api/sink",
        proxy.url
    )));
    let up = String::from_utf8_lossy(&up.stdout);
    assert!(up.contains(&format!("\"received_bytes\":{SIZE}")), "{up}");
    let peak = proxy.peak_rss_kib();
    eprintln!("proxy peak resident memory after 200 MiB each way: {peak} KiB");
    assert!(peak < 100 * 1024, "peak resident memory {peak} KiB");
    let (status, _) = proxy.stop();
    assert!(status.success());
}

#[test]
fn not_an_open_proxy_and_redirects_are_not_followed() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let proxy = Proxy::start(&sb, &server, &[]);
    // Absolute-form request for another host.
    let out = curl(&[
        "-w",
        " %{http_code}",
        "-x",
        &proxy.url,
        "http://example.com/steal",
    ]);
    assert!(
        out.contains("forwards only to") && out.ends_with(" 403"),
        "{out}"
    );
    // CONNECT.
    let addr = proxy.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap();
    let mut reply = [0u8; 256];
    let n = s.read(&mut reply).unwrap();
    assert!(
        String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&reply[..n])
    );
    // An upstream redirect to another host reaches the client; nothing reaches that host.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!("http://{}/collect", elsewhere.local_addr().unwrap());
    let out = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{}/api/redirect?to={target}", proxy.url),
    ]);
    assert!(out.starts_with("HTTP/1.1 302"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("location: {target}")),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        elsewhere.accept().is_err(),
        "the proxy must not follow the redirect"
    );
}

#[test]
fn https_upstreams_get_http2_or_http1_by_alpn_and_their_certificate_is_checked() {
    let server = Server::start(Duration::from_secs(3600));
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let http1: &[&[u8]] = &[b"http/1.1"];
    for (alpn, version) in [(both, "HTTP/2.0"), (http1, "HTTP/1.1")] {
        let sb = Sandbox::new();
        let upstream = tls::TlsUpstream::start(sb.path(), alpn);
        let mut cmd = sb.cmd_for(&server);
        cmd.env("SSL_CERT_FILE", &upstream.ca_file).args([
            "-v",
            "proxy",
            "--upstream",
            &upstream.url,
        ]);
        let proxy = Proxy::spawn(cmd);
        for _ in 0..3 {
            let out = curl(&[
                "-w",
                " %{http_code}",
                "-H",
                "Authorization: Bearer from-the-client",
                &format!("{}/v2/things", proxy.url),
            ]);
            assert_eq!(out, format!("{version}\n 200"));
        }
        let put = curl(&[
            "-w",
            " %{http_code}",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "--data-binary",
            r#"{"n":1}"#,
            &format!("{}/v2/things/1", proxy.url),
        ]);
        assert!(put.ends_with(" 200"), "{put}");
        let seen = upstream.seen();
        assert_eq!(seen.len(), 4, "{seen:?}");
        let authority = upstream.url.trim_start_matches("https://");
        for s in &seen {
            assert_eq!(format!("{:?}", s.version), version, "{s:?}");
            assert_eq!(s.authority.as_deref(), Some(authority), "{s:?}");
            let token = s
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or_else(|| panic!("no bearer token: {s:?}"));
            assert!(
                server.state().check(token).is_some(),
                "the upstream got a token the dev-server did not issue: {s:?}"
            );
        }
        assert_eq!(seen[3].body_len, 7, "the PUT body crossed whole");
        let (status, _) = proxy.stop();
        assert!(status.success());
    }

    // The same upstream without its CA among the roots: refused, with the reason, and
    // nothing reaches it.
    let sb = Sandbox::new();
    let upstream = tls::TlsUpstream::start(sb.path(), both);
    let mut cmd = sb.cmd_for(&server);
    cmd.args(["-v", "proxy", "--upstream", &upstream.url]);
    let proxy = Proxy::spawn(cmd);
    let out = curl(&["-w", " %{http_code}", &format!("{}/v2/things", proxy.url)]);
    assert!(
        out.ends_with(" 502") && out.contains("certificate"),
        "{out}"
    );
    assert!(upstream.seen().is_empty());
}

#[test]
fn listening_beyond_loopback_needs_allow_remote() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let o = run(sb.cmd_for(&server).args([
        "proxy",
        "--listen",
        "0.0.0.0:0",
        "--upstream",
        &server.base_url(),
    ]));
    assert_fails_with(&o, 2, "--allow-remote");
}

#[test]
fn ca_file_trusts_a_private_ca_for_the_token_endpoint_and_the_upstream() {
    let sb = Sandbox::new();
    let private = tls::TlsUpstream::start(sb.path(), &[b"http/1.1"]);
    let get = |ca_file: Option<&std::path::Path>| {
        let mut cmd = sb.cmd();
        cmd.env(
            "FRESHTOKEN_TOKEN_URL",
            format!("{}/oauth/token", private.url),
        )
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .env("FRESHTOKEN_RETRY_FOR", "0")
        .args(["get", "--cache", "memory"]);
        if let Some(path) = ca_file {
            cmd.arg("--ca-file").arg(path);
        }
        run(&mut cmd)
    };
    // The platform's roots alone do not know the CA: refused, and the error says why.
    let o = get(None);
    assert_fails_with(
        &o,
        4,
        "invalid peer certificate: UnknownIssuer (a private CA? trust it with --ca-file PATH",
    );
    // With the CA's certificate named, the same endpoint is trusted.
    let o = get(Some(&private.ca_file));
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "from-the-private-ca\n");
    // A file that holds no certificate is a configuration error naming the file.
    let not_pem = sb.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let o = get(Some(&not_pem));
    assert_fails_with(&o, 2, "not-a-ca.pem: holds no PEM certificate");

    // The proxy trusts the same file for its upstream (tokens from the plain dev-server).
    let server = Server::start(Duration::from_secs(3600));
    let through = |ca_file: Option<&std::path::Path>| {
        let mut cmd = sb.cmd_for(&server);
        cmd.args(["proxy", "--upstream", &private.url]);
        if let Some(path) = ca_file {
            cmd.arg("--ca-file").arg(path);
        }
        let proxy = Proxy::spawn(cmd);
        curl(&["-w", " %{http_code}", &format!("{}/v2/things", proxy.url)])
    };
    assert!(through(None).ends_with(" 502"), "without the CA file");
    assert_eq!(through(Some(&private.ca_file)), "HTTP/1.1\n 200");
}

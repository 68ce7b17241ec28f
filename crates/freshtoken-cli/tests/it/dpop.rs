//! DPoP-bound tokens (RFC 9449) through the binary: `get`, `dpop-proof` and the proxy against
//! the dev-server as a DPoP resource server, whose clock moves with the proxy's (one skew
//! file), so that several token lifetimes pass in seconds.
// Real elapsed-time bounds only ("did not hang").
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use freshtoken::{Clock, SystemClock};
use freshtoken_devserver::{Config, Faults};
use freshtoken_testkit::*;

/// The real clock plus the whole seconds in a file: the dev-server's side of the skew file
/// the binary reads through FRESHTOKEN_CLOCK_SKEW_FILE.
#[derive(Debug)]
struct FileSkew(PathBuf);

impl Clock for FileSkew {
    fn now(&self) -> std::time::SystemTime {
        let secs = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().trim_end_matches('s').parse::<u64>().ok())
            .unwrap_or(0);
        SystemClock.now() + Duration::from_secs(secs)
    }
}

const TTL: Duration = Duration::from_secs(60);

/// A dev-server that wants DPoP nonces (a new one after every `every` proofs), on the skew
/// file's clock, and a sandbox whose default profile asks for DPoP.
fn setup(every: u64) -> (Server, Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let skew = sb.path().join("skew");
    std::fs::write(&skew, "0s").unwrap();
    let server = Server::start_with(Config {
        ttl: TTL,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        faults: Faults {
            dpop_nonce: true,
            dpop_nonce_every: Some(every),
            ..Faults::default()
        },
        clock: Arc::new(FileSkew(skew.clone())),
        ..Config::default()
    });
    sb.write_user_config("[profiles.default]\ndpop = true\n");
    (server, sb, skew)
}

fn cmd(sb: &Sandbox, server: &Server, skew: &Path) -> Command {
    let mut c = sb.cmd_for(server);
    c.env("FRESHTOKEN_CLOCK_SKEW_FILE", skew);
    c
}

#[test]
fn get_and_dpop_proof_give_a_shell_step_a_bound_token_and_a_proof_that_works_once() {
    let (server, sb, skew) = setup(1000);
    let o = run(cmd(&sb, &server, &skew).args(["get", "--format", "json"]));
    assert_code(&o, 0);
    let v = crate::json_shapes::assert_fits("token.json", &stdout(&o));
    assert_eq!(v["token_type"], "DPoP", "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let key = sb.path().join(".local/state/freshtoken/default.dpop.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the made key is private");
    let jkt = freshtoken::dpop::token_jkt(&token).expect("a JWT with cnf.jkt");
    let pem = std::fs::read_to_string(&key).unwrap();
    assert_eq!(
        freshtoken::dpop::DpopKey::from_pem(&pem)
            .unwrap()
            .thumbprint(),
        jkt,
        "bound to the kept key"
    );

    let url = format!("{}/api/v2/users/me?expand=x", server.base_url());
    let curl_with = |proof: &str| {
        let o = run(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Authorization: DPoP {token}"),
            "-H",
            &format!("DPoP: {proof}"),
            &url,
        ]));
        stdout(&o)
    };
    let proof = |nonce: Option<&str>| {
        let mut c = cmd(&sb, &server, &skew);
        c.args(["dpop-proof", "--method", "get", "--url", &url]);
        if let Some(n) = nonce {
            c.args(["--nonce", n]);
        }
        let o = run(&mut c);
        assert_code(&o, 0);
        stdout(&o).trim().to_owned()
    };
    // No nonce yet: the server says which one.
    let challenged = curl_with(&proof(None));
    assert!(challenged.ends_with("401"), "{challenged}");
    let nonce = challenged
        .lines()
        .find_map(|l| {
            l.strip_prefix("dpop-nonce: ")
                .or(l.strip_prefix("DPoP-Nonce: "))
        })
        .expect("a DPoP-Nonce header")
        .trim()
        .to_owned();
    let good = proof(Some(&nonce));
    assert!(curl_with(&good).ends_with("200"));
    let replayed = curl_with(&good);
    assert!(replayed.ends_with("401"), "a replayed proof: {replayed}");
    assert!(replayed.contains("invalid_dpop_proof"), "{replayed}");
    let stats = server.state().dpop_stats();
    assert_eq!(stats.replays_refused, 1, "{stats:?}");

    // Bad input: one clear line, exit 2.
    let o =
        run(cmd(&sb, &server, &skew).args(["dpop-proof", "--method", "GET", "--url", "ftp://x"]));
    assert_fails_with(&o, 2, "not an http(s) URL");
}

#[test]
fn the_proxy_signs_every_request_across_five_token_lifetimes_and_takes_new_nonces() {
    let (server, sb, skew) = setup(7);
    let mut child = cmd(&sb, &server, &skew)
        .args(["-v", "proxy", "--upstream", &server.base_url()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(sb.path().join("proxy.log")).unwrap())
        .spawn()
        .unwrap();
    let url = proxy_url(&mut child);
    let mut codes = Vec::new();
    for lifetime in 0..5u64 {
        // Past the last token's lifetime on both clocks.
        std::fs::write(&skew, format!("{}s", lifetime * (TTL.as_secs() + 5))).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // the proxy reads the file every 20 ms
        let o = run(Command::new("bash").arg("-c").arg(format!(
            "for i in $(seq 12); do curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST -d '{{\"i\":'$i'}}' '{url}/api/items/'$i'?page=2'; curl -s -o /dev/null -w '%{{http_code}}\\n' {url}/api/v2/users/me; done"
        )));
        codes.extend(stdout(&o).lines().map(str::to_owned));
    }
    terminate(&child);
    wait(&mut child, "the proxy after SIGTERM");
    let log = std::fs::read_to_string(sb.path().join("proxy.log")).unwrap_or_default();
    assert_eq!(codes.len(), 120);
    let not_ok: Vec<_> = codes.iter().filter(|c| *c != "200").collect();
    assert!(not_ok.is_empty(), "the clients saw {not_ok:?}\n{log}");
    let dpop = server.state().dpop_stats();
    assert_eq!(dpop.proofs_refused, 0, "{dpop:?}");
    // A token per lifetime, and no more: a nonce challenge is answered with the same token
    // and the new nonce, never by dropping the token.
    assert!(
        (5..=6).contains(&dpop.bound_tokens),
        "a bound token per lifetime: {dpop:?}"
    );
    assert!(
        dpop.nonce_challenges >= 10,
        "the nonce moved every 7 proofs, and each challenge was taken: {dpop:?}"
    );
    // One accepted proof per client request and per token request: none refused, none lost.
    assert_eq!(dpop.proofs_ok, 120 + dpop.bound_tokens, "{dpop:?}");
    assert!(!log.contains(SECRET), "no secret in the log");
}

#[test]
fn the_agent_s_json_sink_says_dpop_and_its_proxy_signs_each_request() {
    let (server, sb, skew) = setup(1000);
    let port = free_port();
    let sink = sb.path().join("sinks/a.json");
    std::fs::create_dir_all(sb.path().join("sinks")).unwrap();
    let config = format!(
        "[agent]\nsocket = \"{}\"\n[profiles.a]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"SECRET_A\" }}\nretry_for = \"0s\"\ndpop = true\n[[profiles.a.sinks]]\npath = \"{}\"\nformat = \"json\"\n[[proxy]]\nprofile = \"a\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"{}\"\n",
        sb.path().join("run/agent.sock").display(),
        server.token_url(),
        sink.display(),
        server.base_url()
    );
    let path = sb.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let log = sb.path().join("agent.log");
    let mut agent = sb
        .cmd()
        .args(["--config", path.to_str().unwrap(), "agent"])
        .env("SECRET_A", SECRET)
        .env("FRESHTOKEN_CLOCK_SKEW_FILE", &skew)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        Duration::from_secs(10),
        || sink.exists(),
        || format!("no sink:\n{}", read_log()),
    );
    let v = crate::json_shapes::assert_fits("token.json", &std::fs::read_to_string(&sink).unwrap());
    assert_eq!(v["token_type"], "DPoP", "{v}");
    // get --agent: the agent's token, still DPoP.
    let socket = sb.path().join("run/agent.sock");
    let o = run(sb
        .cmd()
        .args(["--profile", "a", "get", "--format", "json", "--agent"])
        .arg(&socket));
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["token_type"], "DPoP", "get --agent: {v}");
    let url = format!("http://127.0.0.1:{port}/api/things");
    wait_until(
        Duration::from_secs(10),
        || curl(&[&url]).0 == 200,
        || format!("the agent's proxy did not answer 200:\n{}", read_log()),
    );
    for _ in 0..5 {
        assert_eq!(curl(&[&url]).0, 200);
    }
    terminate(&agent);
    wait(&mut agent, "the agent after SIGTERM");
    let dpop = server.state().dpop_stats();
    assert_eq!(dpop.proofs_refused, 0, "{dpop:?}");
    assert!(
        dpop.proofs_ok >= 7,
        "a proof for the token request and each call: {dpop:?}"
    );
}

/// `get` for oidc-provider's `dpop` client (its tokens must be DPoP-bound), with `profile`
/// as the config file's default profile.
fn oidc_get(p: &OidcProvider, sb: &Sandbox, profile: &str) -> std::process::Output {
    sb.write_user_config(&format!("[profiles.default]\n{profile}\n"));
    run(p
        .get(sb, "dpop")
        .args([
            "--token-url",
            p.token_endpoint(),
            "--format",
            "json",
            "--client-secret-file",
        ])
        .arg(p.file("dpop", "secret_file")))
}

#[test]
fn oidc_provider_binds_the_token_to_the_key_and_its_introspection_shows_cnf_jkt() {
    let p = OidcProvider::start();
    let sb = Sandbox::new();
    // A bearer request is refused: the client's tokens must be DPoP-bound.
    let o = oidc_get(&p, &sb, "");
    assert_fails_with(&o, 3, "invalid_");

    let made = |name: &str| sb.path().join(".local/state/freshtoken").join(name);
    // A key of the user's own: the profile that names `client`'s `field` file, and the file
    // the thumbprint is read from (the PKCS#8 form).
    let own = |client: &str, field: &str, extra: &str| {
        let profile = format!(
            "dpop_key = {{ file = \"{}\" }}\n{extra}",
            p.file(client, field).display()
        );
        (profile, p.file(client, "key_file"))
    };
    for (profile, key_file) in [
        ("dpop = true".to_owned(), made("default.dpop.pem")),
        (
            "dpop = true\ndpop_alg = \"EdDSA\"".to_owned(),
            made("default.eddsa.dpop.pem"),
        ),
        own("pk-es256", "key_file", ""),
        own("pk-es256", "sec1_key_file", ""),
        own("pk-eddsa", "key_file", ""),
        // RSA: RS256 by default (PKCS#8 and PKCS#1), PS256 when asked.
        own("pk-rs256", "key_file", ""),
        own("pk-rs256", "pkcs1_key_file", ""),
        own("pk-ps256", "key_file", "dpop_alg = \"PS256\""),
    ] {
        let o = oidc_get(&p, &sb, &profile);
        assert_eq!(o.status.code(), Some(0), "{profile}: {}", stderr(&o));
        let v = crate::json_shapes::assert_fits("token.json", &stdout(&o));
        assert_eq!(v["token_type"], "DPoP", "{profile}: {v}");
        let info = crate::interop::introspect(&p, v["access_token"].as_str().unwrap());
        assert_eq!(info["active"], true, "{profile}: {info}");
        assert_eq!(info["token_type"], "DPoP", "{profile}: {info}");

        let key = freshtoken::dpop::DpopKey::from_pem(&std::fs::read_to_string(key_file).unwrap())
            .unwrap();
        assert_eq!(info["cnf"]["jkt"], key.thumbprint(), "{profile}: {info}");
    }
}

#[test]
fn oidc_provider_s_dpop_nonce_is_taken_with_one_retry() {
    let p = OidcProvider::start_with_env(&[("FRESHTOKEN_INTEROP_DPOP_NONCE", "1")]);
    let sb = Sandbox::new();
    let o = oidc_get(&p, &sb, "dpop = true");
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let info = crate::interop::introspect(&p, v["access_token"].as_str().unwrap());
    assert_eq!(info["active"], true, "{info}");
    assert!(info["cnf"]["jkt"].is_string(), "{info}");
}

#[test]
fn exec_keeps_a_dpop_key_from_the_environment_away_from_its_child() {
    use secrecy::ExposeSecret;
    let (server, sb, skew) = setup(1000);
    sb.write_user_config("[profiles.default]\ndpop_key = { env = \"DPOP_PEM\" }\n");
    let key = freshtoken::dpop::DpopKey::generate();
    let pem = key.to_pem().unwrap();
    let o = run(cmd(&sb, &server, &skew)
        .env("DPOP_PEM", pem.expose_secret())
        .args(["exec", "--", "sh", "-c", "env"]));
    assert_code(&o, 0);
    let env = stdout(&o);
    assert!(env.contains("FRESHTOKEN_ACCESS_TOKEN="), "{env}");
    assert!(
        !env.contains("DPOP_PEM"),
        "the child got the DPoP key's variable"
    );
    assert!(!env.contains("PRIVATE KEY"), "the child got the DPoP key");
}

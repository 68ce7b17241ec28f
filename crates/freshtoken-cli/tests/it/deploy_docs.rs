//! The deployment examples in docs/deploy, run as written: the systemd unit's ExecStart and
//! ExecReload, the Jenkinsfile's `sh` step, the GitHub Actions job's `run` step. Only what a
//! test cannot have is swapped: install paths for the sandbox's, the CI system's secrets for
//! the dev-server's client, and Genesys Cloud for the dev-server (FRESHTOKEN_TOKEN_URL,
//! FRESHTOKEN_UPSTREAM).
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freshtoken_testkit::*;

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A work tree with `scripts/push-config.sh`, which calls the API through the proxy for
/// a dozen times, and `freshtoken` on PATH.
fn workspace(sb: &Sandbox) -> (PathBuf, String) {
    let work = sb.path().join("work");
    std::fs::create_dir_all(work.join("scripts")).unwrap();
    let script = work.join("scripts/push-config.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -eu\nfor i in $(seq 12); do\n  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data '{\"n\":'$i'}' \"$FRESHTOKEN_PROXY_URL/api/v2/config/$i\")\n  [ \"$code\" = 200 ] || { echo \"request $i: $code\" >&2; exit 1; }\n  sleep 0.25\ndone\necho pushed\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = sb.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_freshtoken"), bin.join("freshtoken")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (work, path)
}

/// Runs a shell step as a CI system would: bash, in the work tree, with the credentials.
fn run_step(sb: &Sandbox, server: &Server, script: &str) -> std::process::Output {
    let (work, path) = workspace(sb);
    run(Command::new("bash")
        .args(["-c", script])
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", sb.path())
        .env("XDG_CACHE_HOME", sb.path().join("cache"))
        .env("XDG_RUNTIME_DIR", sb.path().join("run"))
        .env("FRESHTOKEN_TOKEN_URL", server.token_url())
        .env("FRESHTOKEN_UPSTREAM", server.base_url())
        .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
        .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
        .stdin(Stdio::null()))
}

fn assert_pushed(server: &Server, out: &std::process::Output) {
    assert_code(out, 0);
    assert_eq!(stdout(out).trim(), "pushed");
    let stats = server.stats();
    assert_eq!((stats.api_calls, stats.api_ok, stats.api_401), (12, 12, 0));
}

#[test]
fn the_jenkins_stage_runs_as_written() {
    let text = doc("Jenkinsfile");
    let start = text.find("sh '''").expect("an sh ''' step") + "sh '''".len();
    let end = start + text[start..].find("'''").expect("the step's end");
    // Longer-lived than the step's --min-ttl 5m (rotations under exec --proxy are in exec.rs).
    let server = Server::start(Duration::from_secs(600));
    let sb = Sandbox::new();
    let out = run_step(&sb, &server, &text[start..end]);
    assert_pushed(&server, &out);
}

#[test]
fn the_github_actions_step_runs_as_written() {
    let text = doc("github-actions.yml");
    // The `run: |` block: the lines indented deeper than `run:` itself.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "run: |")
        .expect("a run: | step");
    let indent = lines[at].len() - lines[at].trim_start().len();
    let script: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .map(|l| l.trim_start())
        .collect();
    assert!(
        script
            .iter()
            .any(|l| l.starts_with("freshtoken exec --proxy")),
        "{script:?}"
    );
    let server = Server::start(Duration::from_secs(600));
    let sb = Sandbox::new();
    let out = run_step(&sb, &server, &script.join("\n"));
    assert_pushed(&server, &out);
}

#[test]
fn the_systemd_unit_starts_reloads_and_stops_the_agent_as_written() {
    let unit = doc("freshtoken-agent.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_owned()
    };
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let etc = sb.path().join("etc");
    let run_dir = sb.path().join("run-freshtoken");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&run_dir).unwrap();
    // As systemd makes RuntimeDirectory= (the agent refuses a socket folder open to others).
    let run_mode = u32::from_str_radix(&value("RuntimeDirectoryMode"), 8).unwrap();
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(run_mode)).unwrap();
    // The config and environment file the unit's comments describe.
    std::fs::write(
        etc.join("agent.toml"),
        format!(
            "[agent]\nsocket = \"{}/agent.sock\"\n\n[profiles.default]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"GENESYS_SECRET\" }}\n",
            run_dir.display(),
            server.token_url()
        ),
    )
    .unwrap();
    let exec_start = value("ExecStart")
        .replace(
            "/usr/local/bin/freshtoken",
            env!("CARGO_BIN_EXE_freshtoken"),
        )
        .replace(
            "/etc/freshtoken/agent.toml",
            etc.join("agent.toml").to_str().unwrap(),
        );
    let argv: Vec<&str> = exec_start.split_whitespace().collect();
    let log = sb.path().join("journal");
    let mut agent = Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GENESYS_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let journal = || std::fs::read_to_string(&log).unwrap_or_default();
    let socket = run_dir.join("agent.sock");
    let started = Instant::now();
    loop {
        let out = run(Command::new(env!("CARGO_BIN_EXE_freshtoken"))
            .env_clear()
            .args(["get", "--agent", socket.to_str().unwrap()]));
        if out.status.success() {
            assert!(server.state().check(stdout(&out).trim()).is_some());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no token from the unit's agent: {}",
            journal()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ExecReload, with $MAINPID as systemd fills it in.
    let reload = value("ExecReload").replace("$MAINPID", &agent.id().to_string());
    let argv: Vec<&str> = reload.split_whitespace().collect();
    assert!(
        Command::new(argv[0])
            .args(&argv[1..])
            .status()
            .unwrap()
            .success()
    );
    wait_until(
        Duration::from_secs(10),
        || journal().contains("reloaded"),
        || format!("no reload: {}", journal()),
    );
    // --log-format json, as the unit asks: every line is a JSON object.
    for line in journal().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    // systemd stops a service with SIGTERM: exit 0, which Restart=on-failure leaves alone.
    terminate(&agent);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", journal());
}

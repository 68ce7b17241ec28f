//! The attacks of docs/SECURITY.md that come from the same machine: another local user who
//! gets to `/tmp` or a shared cache folder first, and what `exec` hands its child. Every
//! test here was first seen failing against the code it guards. The tests that act as
//! another user (uid 65534) need root, as CI runs them; elsewhere they say so and stop.
// Real elapsed-time bounds ("did not hang") and real token times: the clocks are the point.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use freshtoken::{ExpirySource, FileStore, Token, TokenRequest, TokenStore};
use freshtoken_testkit::*;
use secrecy::SecretString;

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

// Item 10: exec's child.

/// Secrets in every variable freshtoken may read one from, each distinct so that a leak names
/// its variable.
const SECRET_VARS: [(&str, &str); 6] = [
    ("FRESHTOKEN_CLIENT_SECRET", SECRET),
    (
        "GENESYSCLOUD_OAUTHCLIENT_SECRET",
        "genesys-Zq8vK2pLmN4xR7tY",
    ),
    (
        "FRESHTOKEN_PRIVATE_KEY",
        "-----BEGIN PRIVATE KEY-----\nkey-Zq8vK2pLmN4xR7tY\n-----END PRIVATE KEY-----\n",
    ),
    ("FRESHTOKEN_REDIS_PASSWORD", "redis-Zq8vK2pLmN4xR7tY"),
    // Named by `{ env = … }` sources of the config file: the profile used, and another.
    ("PIPELINE_SECRET", "pipeline-Zq8vK2pLmN4xR7tY"),
    ("OTHER_PROFILE_KEY", "other-Zq8vK2pLmN4xR7tY"),
];

/// A Redis URL with its password, as `FRESHTOKEN_CACHE` may hold one.
const CACHE_WITH_PASSWORD: &str = "redis://:cachepw-Zq8vK2pLmN4xR7tY@127.0.0.1:1/0";

/// What `env` printed in a child of `exec ARGS`, with every secret variable set.
fn child_env(sb: &Sandbox, server: &Server, config: &Path, args: &[&str]) -> String {
    let mut cmd = sb.cmd_for(server);
    for (name, value) in SECRET_VARS {
        cmd.env(name, value);
    }
    let o = run(cmd
        .env("FRESHTOKEN_CONFIG", config)
        // The flag chooses the cache; the variable is only there to be inherited.
        .env("FRESHTOKEN_CACHE", CACHE_WITH_PASSWORD)
        .env("KEEP_ME", "kept")
        .args(["exec", "--cache", "file"])
        .args(args)
        .args(["--", "env"]));
    assert_code(&o, 0);
    stdout(&o)
}

#[test]
fn exec_hands_its_child_the_token_and_no_secret() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let config = sb.path().join("freshtoken.toml");
    std::fs::write(
        &config,
        "[profiles.default]\nclient_secret = { env = \"PIPELINE_SECRET\" }\n\n[profiles.other]\ntoken_url = \"https://other.example/token\"\nclient_id = \"x\"\nauth_method = \"private_key_jwt\"\nprivate_key = { env = \"OTHER_PROFILE_KEY\" }\n",
    )
    .unwrap();
    for args in [&[][..], &["--proxy", "--upstream", &server.base_url()][..]] {
        let env = child_env(&sb, &server, &config, args);
        let token = env
            .lines()
            .find_map(|l| l.strip_prefix("FRESHTOKEN_ACCESS_TOKEN="))
            .unwrap_or_else(|| panic!("no token in the child's environment ({args:?}):\n{env}"));
        assert!(server.state().check(token).is_some(), "{args:?}");
        assert!(env.lines().any(|l| l == "KEEP_ME=kept"), "{args:?}");
        if !args.is_empty() {
            assert!(
                env.contains("FRESHTOKEN_PROXY_URL=http://127.0.0.1:"),
                "{env}"
            );
        }
        for (name, value) in SECRET_VARS {
            let first_line = value.lines().find(|l| l.contains("Zq8v")).unwrap_or(value);
            assert!(
                !env.contains(first_line)
                    && !env.lines().any(|l| l.starts_with(&format!("{name}="))),
                "{name} reached the child ({args:?}):\n{env}"
            );
        }
        assert!(
            !env.contains("cachepw") && !env.contains("FRESHTOKEN_CACHE="),
            "the cache URL's password reached the child ({args:?}):\n{env}"
        );
    }

    // The secret used from a `{ env = … }` source (nothing higher gives one) is removed too.
    let o = run(sb
        .cmd_for(&server)
        .env_remove("FRESHTOKEN_CLIENT_SECRET")
        .env("PIPELINE_SECRET", SECRET)
        .env("FRESHTOKEN_CONFIG", &config)
        .args(["exec", "--", "env"]));
    assert_code(&o, 0);
    let env = stdout(&o);
    assert!(env.contains("FRESHTOKEN_ACCESS_TOKEN="), "{env}");
    assert!(
        !env.contains(SECRET),
        "the secret reached the child:\n{env}"
    );
}

// Item 9: the file cache.

/// A good record for the dev-server's client, holding `value`, in `dir` — what another user
/// can write as well as freshtoken: the key is a hash of public things.
fn plant_record(server: &Server, dir: &Path, value: &str) {
    let request = TokenRequest::new(server.token_url().parse().unwrap(), CLIENT_ID, None);
    let now = SystemTime::now();
    let token = Token::new(
        SecretString::from(value.to_owned()),
        now,
        now + HOUR,
        ExpirySource::ExpiresIn,
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(FileStore::new(dir).save(&request.cache_key(), &token))
        .unwrap();
}

/// Every file under `dir` with its owner and contents, to see that nothing was written there.
fn listing(dir: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let uid = std::fs::symlink_metadata(&path).unwrap().uid();
            (path.clone(), uid, std::fs::read(&path).unwrap_or_default())
        })
        .collect();
    files.sort();
    files
}

/// `get` printed a token of the server's, not `planted`, and `stderr` holds exactly one line,
/// which has `needle` in it.
#[track_caller]
fn served_by_the_server_warning_once(
    server: &Server,
    o: &std::process::Output,
    planted: &str,
    needle: &str,
) {
    assert_code(o, 0);
    let printed = stdout(o);
    assert!(!printed.contains(planted), "the planted token was printed");
    assert!(server.state().check(printed.trim()).is_some(), "{printed}");
    let err = stderr(o);
    assert!(
        err.contains(needle) && err.lines().count() == 1,
        "one warning with {needle:?}:\n{err}"
    );
}

#[test]
fn a_cache_folder_of_another_user_is_neither_believed_nor_written_in() {
    if !as_root() {
        return;
    }
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    // A shared XDG_CACHE_HOME, where another user made `freshtoken/` first.
    let shared = sb.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = shared.join("freshtoken");
    plant_record(&server, &theirs, "planted-by-nobody");
    chown_nobody(&theirs);
    let before = listing(&theirs);
    for _ in 0..2 {
        let o = run(sb
            .cmd_for(&server)
            .env("XDG_CACHE_HOME", &shared)
            .arg("get"));
        served_by_the_server_warning_once(
            &server,
            &o,
            "planted-by-nobody",
            &format!(
                "not using the file cache {}: it belongs to uid 65534",
                theirs.display()
            ),
        );
    }
    assert_eq!(
        server.stats().token_requests,
        2,
        "no cache: one request each"
    );
    assert_eq!(listing(&theirs), before, "nothing written in their folder");
}

#[test]
fn a_record_of_another_user_in_the_users_own_cache_is_ignored_and_replaced() {
    if !as_root() {
        return;
    }
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    plant_record(&server, &sb.cache_dir(), "planted-by-nobody");
    let (record, _, planted) = listing(&sb.cache_dir()).remove(0);
    std::os::unix::fs::lchown(&record, Some(NOBODY), Some(NOBODY)).unwrap();
    let o = run(sb.cmd_for(&server).arg("get"));
    served_by_the_server_warning_once(
        &server,
        &o,
        "planted-by-nobody",
        &format!(
            "ignoring cache file {}: it belongs to uid 65534",
            record.display()
        ),
    );
    let meta = std::fs::symlink_metadata(&record).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o600),
        "replaced by one of the user's"
    );
    assert_ne!(std::fs::read(&record).unwrap(), planted);
}

#[test]
fn a_symlinked_cache_folder_is_not_followed() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let elsewhere = sb.path().join("elsewhere");
    plant_record(&server, &elsewhere, "planted-elsewhere");
    let before = listing(&elsewhere);
    std::fs::create_dir_all(sb.cache_dir().parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, sb.cache_dir()).unwrap();
    let o = run(sb.cmd_for(&server).arg("get"));
    served_by_the_server_warning_once(
        &server,
        &o,
        "planted-elsewhere",
        &format!(
            "not using the file cache {}: it is a symlink",
            sb.cache_dir().display()
        ),
    );
    assert_eq!(
        listing(&elsewhere),
        before,
        "nothing written through the link"
    );
}

#[test]
fn the_cache_folders_freshtoken_creates_are_0700_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    let base = sb.path().join("a/b/cache");
    let mut cmd = sb.cmd_for(&server);
    cmd.env("XDG_CACHE_HOME", &base).arg("get");
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    assert_code(&run(&mut cmd), 0);
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    for dir in ["a", "a/b", "a/b/cache", "a/b/cache/freshtoken"] {
        assert_eq!(mode(&sb.path().join(dir)), 0o700, "{dir}");
    }
    for (file, _, _) in listing(&base.join("freshtoken")) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn a_discovery_document_of_another_user_never_chooses_the_token_endpoint() {
    if !as_root() {
        return;
    }
    let honest = Server::start(HOUR);
    let attacker = Server::start(HOUR);
    let sb = Sandbox::new();
    let shared = sb.path().join("shared");
    let get = |cache: &Path| {
        run(sb
            .cmd_for(&honest)
            .env_remove("FRESHTOKEN_TOKEN_URL")
            .env("FRESHTOKEN_ISSUER", honest.base_url())
            .env("XDG_CACHE_HOME", cache)
            .arg("get"))
    };
    // The document as cached, then rewritten to name the attacker's endpoint.
    assert_code(&get(&shared), 0);
    let folder = shared.join("freshtoken");
    let document = listing(&folder)
        .into_iter()
        .map(|(p, _, _)| p)
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("discovery-")
        })
        .expect("a cached discovery document");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&document).unwrap()).unwrap();
    v["token_endpoint"] = attacker.token_url().into();
    std::fs::write(&document, v.to_string()).unwrap();
    // In the user's own folder, but another user's file; then the whole folder theirs.
    std::os::unix::fs::lchown(&document, Some(NOBODY), Some(NOBODY)).unwrap();
    let o = get(&shared);
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("it belongs to uid 65534"),
        "{}",
        stderr(&o)
    );
    chown_nobody(&folder);
    assert_code(&get(&shared), 0);
    assert_eq!(
        attacker.stats().token_requests,
        0,
        "the client's credentials went to the endpoint another user named"
    );
}

// Item 8: the agent's socket folder, and who serves the socket.

/// A fake agent run as uid 65534 (by `setpriv`), serving a planted token on `DIR/agent.sock`:
/// with `mkdir` it makes DIR first, as another user would make `/tmp/freshtoken-<uid>`.
const FAKE_AGENT: &str = r#"
import json, os, socket, sys, time
folder, mkdir = sys.argv[1], sys.argv[2] == "mkdir"
if mkdir:
    os.mkdir(folder, 0o755)
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(folder, "agent.sock"))
s.listen(16)
print("ready", flush=True)
body = json.dumps({"access_token": "planted-by-nobody", "token_type": "Bearer",
                   "expires_in": 3600, "expires_at": int(time.time()) + 3600}).encode()
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    except OSError:
        pass  # a client that hung up without asking
    c.close()
"#;

/// The fake agent's process; killed when dropped.
struct FakeAgent(std::process::Child);

impl FakeAgent {
    fn start(folder: &Path, mkdir: bool) -> Self {
        // A python3 that uid 65534 can run: not one under root's home.
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("python3 in /usr/bin (apt-get install python3)");
        let mut child = std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args([python, "-c", FAKE_AGENT])
            .arg(folder)
            .arg(if mkdir { "mkdir" } else { "no" })
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv runs (util-linux)");
        assert_eq!(first_line(&mut child, "the fake agent").trim(), "ready");
        Self(child)
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A folder like `/tmp`: anyone may create in it, and the sandbox above lets them reach it.
fn sticky_folder(sb: &Sandbox, name: &str) -> PathBuf {
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = sb.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

#[test]
fn get_agent_never_takes_a_token_from_another_users_socket() {
    if !as_root() {
        return;
    }
    let server = Server::start(HOUR);
    let sb = Sandbox::new();

    // Another user made the default socket folder first and serves planted tokens in it.
    let run_dir = sticky_folder(&sb, "run");
    let folder = run_dir.join("freshtoken");
    let _fake = FakeAgent::start(&folder, true);
    let o = run(sb
        .cmd_for(&server)
        .env("XDG_RUNTIME_DIR", &run_dir)
        .args(["get", "--agent"]));
    served_by_the_server_warning_once(
        &server,
        &o,
        "planted-by-nobody",
        &format!(
            "not using the agent: socket folder {}: it belongs to uid 65534",
            folder.display()
        ),
    );
    // And the real agent says why it cannot start there, naming the folder.
    let config = sb.write_user_config(&format!(
        "[profiles.default]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"FRESHTOKEN_CLIENT_SECRET\" }}\n",
        server.token_url()
    ));
    let o = run(sb.cmd_for(&server).env("XDG_RUNTIME_DIR", &run_dir).args([
        "--config",
        config.to_str().unwrap(),
        "agent",
        "--check",
        "--no-fetch",
    ]));
    assert_fails_with(
        &o,
        2,
        &format!(
            "socket folder {}: it belongs to uid 65534",
            folder.display()
        ),
    );

    // A folder that is the user's own, 0700, but a socket another user bound in it while it
    // was open: the peer's uid gives it away.
    let own = sb.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _left = FakeAgent::start(&own, false);
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = own.join("agent.sock");
    let o = run(sb
        .cmd_for(&server)
        .args(["get", "--agent", socket.to_str().unwrap()]));
    served_by_the_server_warning_once(
        &server,
        &o,
        "planted-by-nobody",
        &format!(
            "not using the agent: {} is served by uid 65534",
            socket.display()
        ),
    );
}

/// `agent --check --no-fetch` with its socket in `folder`: it binds the socket, then exits.
fn agent_in(sb: &Sandbox, server: &Server, folder: &Path) -> std::process::Command {
    let path = sb
        .path()
        .join(format!("agent-{}.toml", rand::random::<u32>()));
    std::fs::write(
        &path,
        format!(
            "[agent]\nsocket = \"{}/agent.sock\"\n\n[profiles.default]\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = {{ env = \"FRESHTOKEN_CLIENT_SECRET\" }}\n",
            folder.display(),
            server.token_url()
        ),
    )
    .unwrap();
    let mut cmd = sb.cmd_for(server);
    cmd.args([
        "--config",
        path.to_str().unwrap(),
        "agent",
        "--check",
        "--no-fetch",
    ]);
    cmd
}

#[test]
fn the_agent_refuses_a_socket_folder_it_cannot_trust() {
    let server = Server::start(HOUR);
    let sb = Sandbox::new();
    // Open to everyone.
    let open = sb.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(&mut agent_in(&sb, &server, &open));
    assert_fails_with(
        &o,
        2,
        &format!("socket folder {}: its mode is 0777", open.display()),
    );
    // A symlink to a folder of the user's own.
    let real = sb.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = sb.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = run(&mut agent_in(&sb, &server, &link));
    assert_fails_with(
        &o,
        2,
        &format!("socket folder {}: it is a symlink", link.display()),
    );
    assert!(
        !real.join("agent.sock").exists(),
        "nothing made through the link"
    );
    // Missing: made 0700 from the first missing folder down, whatever the umask (0277 left
    // 0500 folders nothing could be made in).
    use std::os::unix::process::CommandExt;
    let missing = sb.path().join("a/b");
    let mut cmd = agent_in(&sb, &server, &missing);
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o277);
            Ok(())
        });
    }
    assert_code(&run(&mut cmd), 0);
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!((mode(&sb.path().join("a")), mode(&missing)), (0o700, 0o700));
    // Another user's, mode 0700.
    if !as_root() {
        return;
    }
    let theirs = sb.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown_nobody(&theirs);
    let o = run(&mut agent_in(&sb, &server, &theirs));
    assert_fails_with(
        &o,
        2,
        &format!(
            "socket folder {}: it belongs to uid 65534",
            theirs.display()
        ),
    );
    assert!(!theirs.join("agent.sock").exists());
}

//! The attacks of docs/SECURITY.md that come from the same machine: another local user who
//! gets to `/tmp` or a shared cache folder first, and what `exec` hands its child. Every
//! test here was first seen failing against the code it guards. The tests that act as
//! another user (uid 65534) need root, as CI runs them; elsewhere they say so and stop.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::*;
use freshtoken::{ExpirySource, FileStore, Token, TokenRequest, TokenStore};
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

/// Another local user. The tests that act as one need root (CI runs them as root).
const NOBODY: u32 = 65534;

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("not root: cannot act as another user; skipped");
    }
    root
}

/// `path` and everything under it handed to uid 65534, links not followed.
fn chown_nobody(path: &Path) {
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_nobody(&entry.unwrap().path());
        }
    }
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

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

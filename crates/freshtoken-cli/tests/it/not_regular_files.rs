//! Issue 12: a FIFO where freshtoken reads a file — the cache record, a secret, a CA bundle,
//! the config, the discovery cache — made `get` wait forever for a writer. Only regular files
//! are read now: a cache file that is not one is ignored with a warning and replaced; one the
//! user named is refused with exit 2 and a line that names it. Every run here is bounded by
//! the harness (`run` kills a process after PROCESS_LIMIT), so a hang fails the test.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use freshtoken_testkit::*;

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The one file in `dir` whose name starts with `prefix` and ends with `.json`.
fn only_file(dir: &Path, prefix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(".json")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

fn is_fifo(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Exit 2, one line on stderr, naming `path` and saying it is not a regular file.
#[track_caller]
fn refused_naming(o: &Output, path: &Path) {
    assert_fails_with(
        o,
        2,
        &format!("{}: not a regular file (a FIFO)", path.display()),
    );
    assert_eq!(stderr(o).lines().count(), 1, "{}", stderr(o));
    assert!(stdout(o).is_empty(), "{}", stdout(o));
}

#[test]
fn a_fifo_at_the_cache_record_is_ignored_with_a_warning_and_replaced() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    assert_code(&run(sb.cmd_for(&server).arg("get")), 0);
    let record = only_file(&sb.cache_dir(), "");
    std::fs::remove_file(&record).unwrap();
    mkfifo(&record);

    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
    assert!(server.state().check(stdout(&o).trim()).is_some());
    let err = stderr(&o);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not a regular file"))
        .collect();
    assert!(
        !warnings.is_empty()
            && warnings
                .iter()
                .all(|w| w.contains(&*record.to_string_lossy())),
        "a warning names the cache file: {}",
        stderr(&o)
    );
    assert_eq!(server.stats().token_requests, 2, "the token was fetched");
    // The FIFO was replaced by a record (a rename, never a write into it), which serves next.
    assert!(
        is_regular(&record),
        "{} is a regular file again",
        record.display()
    );
    let o = run(sb.cmd_for(&server).arg("get"));
    assert_code(&o, 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(server.stats().token_requests, 2, "the new record served");
}

#[test]
fn a_fifo_as_the_client_secret_file_is_refused_with_exit_2() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let fifo = sb.path().join("secret");
    mkfifo(&fifo);
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(sb
        .cmd_for(&server)
        .args(["get", "--client-secret-file"])
        .arg(&fifo));
    refused_naming(&o, &fifo);
    assert!(
        stderr(&o).contains("--client-secret-stdin"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.stats().token_requests, 0);
}

#[test]
fn a_fifo_as_the_ca_file_or_the_config_file_is_refused_with_exit_2() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let fifo = sb.path().join("fifo");
    mkfifo(&fifo);
    let o = run(sb.cmd_for(&server).args(["get", "--ca-file"]).arg(&fifo));
    refused_naming(&o, &fifo);
    let o = run(sb.cmd_for(&server).arg("--config").arg(&fifo).arg("get"));
    refused_naming(&o, &fifo);
    assert_eq!(server.stats().token_requests, 0);
}

#[test]
fn a_fifo_at_the_discovery_cache_is_ignored_and_replaced() {
    let server = Server::start(Duration::from_secs(3600));
    let sb = Sandbox::new();
    let get = || {
        run(sb
            .cmd_for(&server)
            .env_remove("FRESHTOKEN_TOKEN_URL")
            .args(["get", "--issuer", &server.base_url()]))
    };
    let o = get();
    assert_code(&o, 0);
    let cached = only_file(&sb.cache_dir(), "discovery-");
    std::fs::remove_file(&cached).unwrap();
    mkfifo(&cached);
    assert!(is_fifo(&cached));

    let o = get();
    assert_code(&o, 0);
    assert!(server.state().check(stdout(&o).trim()).is_some());
    assert!(
        stderr(&o).contains("not a regular file (a FIFO)"),
        "{}",
        stderr(&o)
    );
    assert!(is_regular(&cached), "{} was replaced", cached.display());
}

//! The prebuilt binary of scripts/release.sh: static, it runs inside an empty chroot (the
//! binary and the TLS roots it documents) against a dev-server on loopback; its man pages render and SHA256SUMS
//! holds. Built in release only when asked: scripts/test.sh runs scripts/release.sh and
//! points FRESHTOKEN_RELEASE_DIR at its output; without it these tests say so and pass.

use std::path::PathBuf;
use std::process::Command;

use freshtoken_testkit::*;

/// The release folder, or `None` (said on stderr) when this run was not asked to check it.
fn release_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FRESHTOKEN_RELEASE_DIR").map(PathBuf::from);
    if dir.is_none() {
        eprintln!("FRESHTOKEN_RELEASE_DIR not set: the release binary is not checked");
    }
    dir
}

/// An empty root holding only the release binary and the TLS roots the README says it
/// needs (the HTTP client is built with them even for a plain-http loopback endpoint).
struct Chroot {
    root: tempfile::TempDir,
}

impl Chroot {
    fn new(release: &std::path::Path) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::copy(release.join("freshtoken"), root.path().join("freshtoken")).unwrap();
        let roots = root.path().join("etc/ssl/certs");
        std::fs::create_dir_all(&roots).unwrap();
        std::fs::copy(
            "/etc/ssl/certs/ca-certificates.crt",
            roots.join("ca-certificates.crt"),
        )
        .unwrap();
        Self { root }
    }

    fn path(&self) -> &std::path::Path {
        self.root.path()
    }

    /// Runs `/freshtoken ARGS` inside, with a clean environment plus `env`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        // chroot(8) itself is found on the host PATH; inside there is nothing to find.
        let mut c = Command::new("chroot");
        c.arg(self.path())
            .arg("/freshtoken")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/")
            .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", SECRET)
            .envs(env.iter().copied());
        run(&mut c)
    }
}

/// Root, and a release folder to check; `None` (said on stderr) otherwise.
fn chroot_release() -> Option<PathBuf> {
    let dir = release_dir()?;
    if !as_root() {
        eprintln!("not root: chroot is skipped");
        return None;
    }
    Some(dir)
}

#[test]
fn the_release_binary_runs_alone_in_an_empty_chroot() {
    let Some(dir) = chroot_release() else { return };
    let server = Server::start(std::time::Duration::from_secs(3600));
    let root = Chroot::new(&dir);
    let url = server.token_url();
    let env = [("FRESHTOKEN_TOKEN_URL", url.as_str())];
    let o = root.run(&["--version"], &env);
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("freshtoken "), "{}", stdout(&o));

    // The default file cache, made under HOME inside the chroot; the second get is its hit.
    for _ in 0..2 {
        let o = root.run(&["get"], &env);
        assert_code(&o, 0);
        assert!(!stdout(&o).trim().is_empty());
    }
    assert_eq!(
        server.stats().token_requests,
        1,
        "the second get hit the cache"
    );
    let mut entries: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [".cache", "etc", "freshtoken"],
        "nothing else was needed"
    );
}

/// Names resolve without the C library's NSS: `localhost` with no hosts file at all (static
/// glibc's getaddrinfo answers "Temporary failure in name resolution" there), a name from
/// the chroot's own `/etc/hosts` over HTTPS, and an unknown name fails at once, saying so.
#[test]
fn the_release_binary_resolves_names_without_the_hosts_nss() {
    let Some(dir) = chroot_release() else { return };
    let server = Server::start(std::time::Duration::from_secs(3600));
    let root = Chroot::new(&dir);
    let port = server.token_url().rsplit(':').next().unwrap().to_owned();
    let by_name = format!("http://localhost:{port}");
    let env = [("FRESHTOKEN_TOKEN_URL", by_name.as_str())];
    let o = root.run(&["get", "--cache", "memory"], &env);
    assert_code(&o, 0);
    assert_eq!(server.stats().token_requests, 1);

    let tls = tls::TlsUpstream::start(root.path(), &[b"http/1.1"]);
    std::fs::write(
        root.path().join("etc/hosts"),
        format!("127.0.0.1 {}\n", tls::TLS_TEST_NAME),
    )
    .unwrap();
    let tls_port = tls.url.rsplit(':').next().unwrap().to_owned();
    let named = format!("https://{}:{tls_port}/oauth/token", tls::TLS_TEST_NAME);
    let env = [("FRESHTOKEN_TOKEN_URL", named.as_str())];
    let o = root.run(&["get", "--cache", "memory", "--ca-file", "/ca.pem"], &env);
    assert_code(&o, 0);
    assert!(!stdout(&o).trim().is_empty());

    let unknown = format!("https://nowhere.test:{tls_port}/oauth/token");
    let env = [("FRESHTOKEN_TOKEN_URL", unknown.as_str())];
    let o = root.run(
        &[
            "get",
            "--cache",
            "memory",
            "--ca-file",
            "/ca.pem",
            "--retry-for",
            "0",
        ],
        &env,
    );
    assert_code(&o, 4);
    assert!(
        stderr(&o).contains("cannot resolve host nowhere.test"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_release_ships_man_pages_that_render_and_checksums_that_hold() {
    let Some(dir) = release_dir() else { return };
    let o = run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&dir));
    assert_code(&o, 0);
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    for file in [
        "freshtoken",
        "man/man1/freshtoken.1",
        "man/man1/freshtoken-get.1",
    ] {
        assert!(sums.contains(&format!("  {file}\n")), "{file} in {sums}");
    }
    for page in ["freshtoken.1", "freshtoken-get.1", "freshtoken-status.1"] {
        let o = run(Command::new("man")
            .arg("-l")
            .arg(dir.join("man/man1").join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"));
        assert_code(&o, 0);
        let text = stdout(&o);
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
    }
}

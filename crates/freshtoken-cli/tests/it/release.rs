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

#[test]
fn the_release_binary_runs_alone_in_an_empty_chroot() {
    let Some(dir) = release_dir() else { return };
    if !as_root() {
        eprintln!("not root: chroot is skipped");
        return;
    }
    let server = Server::start(std::time::Duration::from_secs(3600));
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("freshtoken"), root.path().join("freshtoken")).unwrap();
    // What the README says it needs besides: the TLS roots (the HTTP client is built with
    // them even for a plain-http loopback endpoint).
    let roots = root.path().join("etc/ssl/certs");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        roots.join("ca-certificates.crt"),
    )
    .unwrap();
    let in_chroot = |args: &[&str]| {
        // chroot(8) itself is found on the host PATH; inside there is nothing to find.
        let mut c = Command::new("chroot");
        c.arg(root.path())
            .arg("/freshtoken")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", "/")
            .env("FRESHTOKEN_TOKEN_URL", server.token_url())
            .env("FRESHTOKEN_CLIENT_ID", CLIENT_ID)
            .env("FRESHTOKEN_CLIENT_SECRET", SECRET);
        run(&mut c)
    };
    let o = in_chroot(&["--version"]);
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("freshtoken "), "{}", stdout(&o));

    // The default file cache, made under HOME inside the chroot; the second get is its hit.
    for _ in 0..2 {
        let o = in_chroot(&["get"]);
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

//! What a new user meets first: `--version`, shell completions, and `--help` that teaches.

use std::process::Command;

use freshtoken_testkit::*;

#[test]
fn version_names_the_commit_and_the_features_built_in() {
    let sb = Sandbox::new();
    let o = run(sb.cmd().arg("--version"));
    assert_code(&o, 0);
    let out = stdout(&o);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    assert!(
        out.starts_with(&format!(
            "freshtoken {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    // Built from this checkout: the commit is the one checked out (cargo rebuilds on a move
    // of HEAD), unless the build was told another one.
    if std::env::var_os("FRESHTOKEN_GIT_COMMIT").is_none() && !head.is_empty() {
        assert!(out.contains(&format!("commit {head}")), "{out} vs {head}");
    }
    assert!(out.contains("features: redis"), "{out}");
}

/// The bash script, written to a file in the sandbox.
fn bash_script(sb: &Sandbox) -> std::path::PathBuf {
    let o = run(sb.cmd().args(["completions", "bash"]));
    assert_code(&o, 0);
    let path = sb.path().join("freshtoken.bash");
    std::fs::write(&path, stdout(&o)).unwrap();
    path
}

/// What bash completes for `line` (the word under the cursor last), with the script loaded
/// in a shell that read no rc file, as a user's `complete -F` would run it.
fn complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let probe = format!(
        ". '{}'\n\
         spec=$(complete -p freshtoken) || exit 9\n\
         fn=$(printf '%s\\n' \"$spec\" | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         \"$fn\" freshtoken \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let o = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default()));
    assert_code(&o, 0);
    stdout(&o).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completion_parses_and_completes_subcommands_and_flags() {
    let sb = Sandbox::new();
    let script = bash_script(&sb);
    let o = run(Command::new("bash").arg("-n").arg(&script));
    assert_code(&o, 0);

    let st = complete(&script, &["freshtoken", "st"]);
    assert_eq!(st, ["status"], "{st:?}");
    let all = complete(&script, &["freshtoken", ""]);
    for sub in ["get", "exec", "status", "agent", "completions"] {
        assert!(all.iter().any(|w| w == sub), "{sub} missing from {all:?}");
    }
    let flags = complete(&script, &["freshtoken", "get", "--min"]);
    assert_eq!(flags, ["--min-ttl"], "{flags:?}");
    let shells = complete(&script, &["freshtoken", "completions", "z"]);
    assert_eq!(shells, ["zsh"], "{shells:?}");
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands() {
    let sb = Sandbox::new();
    for (shell, marker) in [
        ("zsh", "#compdef freshtoken"),
        ("fish", "complete -c freshtoken"),
    ] {
        let o = run(sb.cmd().args(["completions", shell]));
        assert_code(&o, 0);
        let out = stdout(&o);
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("status") && out.contains("exec"), "{shell}");
    }
    let o = run(sb.cmd().args(["completions", "tcsh"]));
    assert_code(&o, 2);
}

#[test]
fn every_command_ends_its_help_with_examples() {
    let sb = Sandbox::new();
    for sub in [
        "get",
        "inspect",
        "status",
        "invalidate",
        "exec",
        "proxy",
        "agent",
        "dev-server",
        "demo",
        "completions",
    ] {
        let o = run(sb.cmd().args([sub, "--help"]));
        assert_code(&o, 0);
        let out = stdout(&o);
        let examples = out
            .split("\nExamples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{sub} --help has no examples:\n{out}"));
        let lines = examples
            .lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.trim_start().starts_with("freshtoken ") || l.contains(" freshtoken "))
            .count();
        assert!(lines >= 2, "{sub}: {lines} example lines:\n{examples}");
        // The global options stand apart from the command's own.
        assert!(out.contains("\nGlobal options:\n"), "{sub}:\n{out}");
    }
}

#[test]
fn get_and_exec_help_say_where_the_secret_comes_from() {
    let sb = Sandbox::new();
    for sub in ["get", "exec"] {
        let out = stdout(&run(sb.cmd().args([sub, "--help"])));
        for source in [
            "FRESHTOKEN_CLIENT_SECRET,",
            "--client-secret-file",
            "--client-secret-stdin",
            "GENESYSCLOUD_OAUTHCLIENT_SECRET",
            "client_secret = { env",
        ] {
            assert!(out.contains(source), "{sub} --help lacks {source}:\n{out}");
        }
    }
}

#[test]
fn demo_help_lists_only_what_applies_to_it() {
    let sb = Sandbox::new();
    for sub in ["demo", "dev-server", "completions"] {
        let out = stdout(&run(sb.cmd().args([sub, "--help"])));
        for foreign in [
            "--client-id",
            "--token-url",
            "--config",
            "--profile",
            "--no-config",
        ] {
            assert!(
                !out.contains(foreign),
                "{sub} --help shows {foreign}:\n{out}"
            );
        }
        assert!(out.contains("--log-level"), "{sub}:\n{out}");
    }
    // Still accepted where a user's alias puts them, and still shown where they apply.
    assert_code(
        &run(sb.cmd().args(["--no-config", "completions", "bash"])),
        0,
    );
    assert!(stdout(&run(sb.cmd().args(["get", "--help"]))).contains("--profile"));
}

/// `cmd` started under a pseudo-terminal by script(1): its stdout is what the terminal
/// shows, stdout and stderr in one stream.
fn on_a_terminal(cmd: &Command) -> std::process::Child {
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-qefc", &line.join(" "), "/dev/null"])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    script.spawn().unwrap()
}

/// Issue 16: a wait for a failing token endpoint shows, on a terminal, one line rewritten
/// at each attempt ("attempt N failed (HTTP 429), next in S s — Ctrl-C to stop") and cleared
/// when the token comes; off a terminal, one WARN line for the whole wait and no terminal
/// codes. The server asks for 1 s between attempts (Retry-After) until the test lifts the
/// fault after its second request, so the waits are the same every run.
#[test]
fn a_wait_shows_one_updating_line_on_a_terminal_and_one_warn_off_it() {
    use freshtoken_devserver::Faults;
    use std::io::Read;
    let server = Server::start(std::time::Duration::from_secs(3600));
    let sb = Sandbox::new();
    let get = |sb: &Sandbox| {
        let mut c = sb.cmd_for(&server);
        c.env("FRESHTOKEN_RETRY_FOR", "60s")
            .env("FRESHTOKEN_CACHE", "memory")
            .arg("get");
        c
    };
    let limited_twice = |start: &mut dyn FnMut() -> std::process::Child| {
        let before = server.stats().token_requests;
        server.set_faults(Faults {
            rate_limit: Some(1),
            ..Faults::default()
        });
        let mut child = start();
        wait_until(
            std::time::Duration::from_secs(20),
            || server.stats().token_requests >= before + 2,
            || "two token requests".to_owned(),
        );
        server.set_faults(Faults::default());
        let status = wait(&mut child, "freshtoken get");
        let mut out = String::new();
        if let Some(mut s) = child.stdout.take() {
            s.read_to_string(&mut out).unwrap();
        }
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            s.read_to_string(&mut err).unwrap();
        }
        assert!(status.success(), "{status}: {out:?} {err:?}");
        (out, err)
    };

    let (seen, _) = limited_twice(&mut || on_a_terminal(&get(&sb)));
    assert!(
        seen.contains("waiting for the token endpoint: attempt 1 failed (HTTP 429), next in 1 s — Ctrl-C to stop"),
        "{seen:?}"
    );
    assert!(seen.contains("\r\x1b[K"), "rewritten in place: {seen:?}");
    assert!(!seen.contains("WARN"), "said once, on the line: {seen:?}");
    // Cleared when the token came: what follows the last rewrite is the token alone.
    let after = seen.rsplit("\r\x1b[K").next().unwrap_or_default();
    assert!(
        !after.trim().is_empty() && !after.contains("waiting"),
        "{seen:?}"
    );

    let (_, err) = limited_twice(&mut || {
        get(&sb)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    });
    assert_eq!(
        err.matches("WARN").count(),
        1,
        "one WARN for the wait: {err}"
    );
    assert!(!err.contains('\r') && !err.contains("Ctrl-C"), "{err:?}");
}

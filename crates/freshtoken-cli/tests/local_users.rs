//! The attacks of docs/SECURITY.md that come from the same machine: another local user who
//! gets to `/tmp` or a shared cache folder first, and what `exec` hands its child. Every
//! test here was first seen failing against the code it guards. The tests that act as
//! another user (uid 65534) need root, as CI runs them; elsewhere they say so and stop.

mod common;

use std::path::Path;

use common::*;

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

//! The recipes of docs/genesys.md, run as written. Only what a test cannot have is swapped:
//! Genesys Cloud for the dev-server in its Genesys flavour (`FRESHTOKEN_TOKEN_URL` and
//! `FRESHTOKEN_UPSTREAM` point there, beside the `GENESYSCLOUD_*` variables a pipeline sets),
//! and the tools that cannot be installed here — Terraform, `gc`, Archy — for stand-ins that
//! do on the wire what those tools do: the Terraform provider logs in through its gateway (as
//! the Go SDK does, `//oauth/token` on a port) and calls the API with the token it got; `gc`
//! and Archy call the API with the token they are handed. The Python recipe runs the real,
//! pinned Python SDK.
// Real elapsed-time bounds ("did not hang"): the clock is the point.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use freshtoken_devserver::Config;
use freshtoken_testkit::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shell block after `<!-- recipe: NAME -->` in docs/genesys.md (`readme`: in README.md).
fn recipe(name: &str) -> String {
    let doc = if name == "readme" {
        "README.md"
    } else {
        "docs/genesys.md"
    };
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let marker = format!("<!-- recipe: {name} -->");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/genesys.md"));
    let rest = &text[at + marker.len()..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + "```sh\n".len();
    let end = start + rest[start..].find("\n```").expect("the block's end");
    rest[start..end].to_owned()
}

/// A stand-in for a tool, on PATH.
fn stand_in(bin: &Path, name: &str, script: &str) {
    let path = bin.join(name);
    std::fs::write(&path, format!("#!/bin/bash\nset -eu\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What the stand-ins share: a call of `$1` with the bearer token `$2`, which must be 200.
const API_CALL: &str = r#"api() { code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$1"); [ "$code" = 200 ] || { echo "$1: $code" >&2; exit 1; }; }"#;

/// Runs a recipe with bash in a fresh work tree, as a Jenkins `sh` step would, with the
/// pipeline's Genesys Cloud variables and the dev-server swapped in.
fn run_recipe(name: &str, server: &Server) -> Output {
    let sb = Sandbox::new();
    let work = sb.path().join("work");
    let bin = sb.path().join("bin");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(freshtoken_bin(), bin.join("freshtoken")).unwrap();
    let base = server.base_url();
    stand_in(
        &bin,
        "terraform",
        &format!(
            r#"{API_CALL}
[ "$*" = "apply -auto-approve" ] || {{ echo "terraform $*" >&2; exit 2; }}
gw="$GENESYSCLOUD_GATEWAY_PROTOCOL://$GENESYSCLOUD_GATEWAY_HOST:$GENESYSCLOUD_GATEWAY_PORT/"
token=$(curl -sf -u "$GENESYSCLOUD_OAUTHCLIENT_ID:$GENESYSCLOUD_OAUTHCLIENT_SECRET" -d grant_type=client_credentials "$gw/oauth/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for i in $(seq 10); do api "$gw/api/v2/tokens/me" "$token"; done
echo "Apply complete! Resources: 0 added, 10 changed, 0 destroyed.""#
        ),
    );
    for tool in ["gc", "archy"] {
        stand_in(
            &bin,
            tool,
            &format!(
                r#"{API_CALL}
[ "$GENESYSCLOUD_REGION" = us-east-1 ] || {{ echo "region $GENESYSCLOUD_REGION" >&2; exit 2; }}
case "$*" in *--authToken*) [ "${{3:-}}" = "$GENESYSCLOUD_ACCESS_TOKEN" ] || exit 3 ;; esac
api "{base}/api/v2/tokens/me" "$GENESYSCLOUD_ACCESS_TOKEN"
echo "{tool} done""#
            ),
        );
    }
    // The README's script that takes an API host.
    std::fs::write(
        work.join("bulk.py"),
        "import sys, urllib.request\nhost = sys.argv[sys.argv.index('--api-host') + 1]\n\
         for i in range(5):\n    urllib.request.urlopen(host + '/api/v2/tokens/me').read()\n\
         print('bulk done')\n",
    )
    .unwrap();
    let venv = repo().join("target/genesys-venv/bin");
    assert!(
        venv.join("python").exists(),
        "the Genesys Python SDK's virtualenv is missing: run scripts/test.sh"
    );
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new("bash")
        .args(["-c", &recipe(name)])
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", sb.path())
        .env("XDG_CACHE_HOME", sb.path().join("cache"))
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", CLIENT_ID)
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", SECRET)
        .env("GENESYSCLOUD_REGION", "us-east-1")
        .env("FRESHTOKEN_TOKEN_URL", server.token_url())
        .env("FRESHTOKEN_UPSTREAM", server.base_url())
        .stdin(Stdio::null()))
}

fn genesys_server() -> Server {
    Server::start_with(Config {
        ttl: Duration::from_secs(3600),
        genesys: true,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        ..Config::default()
    })
}

/// Each recipe ends well, every API call it made was accepted, and the dev-server saw one
/// token request: freshtoken's own (the tools' logins went to the gateway).
fn assert_ran(name: &str, out: &Output, server: &Server, said: &str, calls: u64) {
    assert_code(out, 0);
    assert!(stdout(out).contains(said), "{name}: {}", stdout(out));
    let stats = server.stats();
    assert_eq!(
        (stats.api_calls, stats.api_ok, stats.api_401),
        (calls, calls, 0),
        "{name}: {stats:?}"
    );
    assert_eq!(stats.token_requests, 1, "{name}: {stats:?}");
    assert!(!stderr(out).contains(SECRET), "{name} printed the secret");
}

#[test]
fn the_cx_as_code_recipe_logs_terraform_in_through_the_gateway() {
    let server = genesys_server();
    let out = run_recipe("terraform", &server);
    assert_ran("terraform", &out, &server, "Apply complete!", 10);
}

#[test]
fn the_python_sdk_recipe_runs_its_own_login_through_the_gateway() {
    let server = genesys_server();
    let out = run_recipe("python", &server);
    assert_ran("python", &out, &server, "updated 20", 40);
}

#[test]
fn the_proxy_url_recipe_is_expanded_by_the_child() {
    let server = genesys_server();
    let out = run_recipe("proxy-url", &server);
    assert_ran("proxy-url", &out, &server, "ok", 1);
}

#[test]
fn the_gc_and_archy_recipes_hand_over_the_token_and_the_region() {
    for (name, said) in [("gc", "gc done"), ("archy", "archy done")] {
        let server = genesys_server();
        let out = run_recipe(name, &server);
        assert_ran(name, &out, &server, said, 1);
    }
}

#[test]
fn the_readme_s_genesys_recipe_runs_as_pasted() {
    let server = genesys_server();
    let out = run_recipe("readme", &server);
    assert_ran("readme", &out, &server, "bulk done", 15);
}

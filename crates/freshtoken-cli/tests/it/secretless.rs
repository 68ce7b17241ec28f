//! Secretless CI: the job's identity token (GitHub Actions-, GitLab- and file-style) as the
//! client assertion (RFC 7523) and as the subject of a token exchange (RFC 8693), against the
//! dev-server playing both the CI identity issuer and the authorization server that trusts it.
// The long job runs real processes while the dev-server's clock and the CLI's skew file move.
#![allow(clippy::disallowed_methods)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_devserver::{CiConfig, Config, Federation};
use freshtoken_testkit::*;

/// What the job presents to the issuer (GitHub's `ACTIONS_ID_TOKEN_REQUEST_TOKEN`).
const REQUEST_TOKEN: &str = "req-Zq8vK2pLmN4xR7tY-ci";
const SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";
const AUDIENCE: &str = "api://AzureADTokenExchange";
/// The client the federation lets the job be; it has no secret anywhere.
const DEPLOYER: &str = "deployer";

fn ci_server(ttl: Duration, identity_ttl: Duration, clock: &ManualClock) -> Server {
    ci_server_for(ttl, identity_ttl, clock, DEPLOYER, AUDIENCE)
}

/// A CI issuer whose tokens for `audience` stand for `client_id`.
fn ci_server_for(
    ttl: Duration,
    identity_ttl: Duration,
    clock: &ManualClock,
    client_id: &str,
    audience: &str,
) -> Server {
    Server::start_with(Config {
        ttl,
        clients: vec![(CLIENT_ID.to_owned(), SECRET.to_owned())],
        clock: Arc::new(clock.clone()),
        ci: Some(CiConfig {
            request_token: REQUEST_TOKEN.to_owned(),
            identity_ttl,
            subject: SUBJECT.to_owned(),
            federations: vec![Federation {
                client_id: client_id.to_owned(),
                subject: SUBJECT.to_owned(),
                audience: audience.to_owned(),
            }],
        }),
        ..Config::default()
    })
}

/// GitHub Actions' URL carries a query of its own; `&audience=` is appended to it.
fn request_url(server: &Server) -> String {
    format!("{}/ci/id-token?api-version=2.0", server.base_url())
}

/// An identity token as the CI hands one to a job (a GitLab variable, a kubelet's file).
fn mint(server: &Server) -> String {
    let url = format!("{}&audience={AUDIENCE}", request_url(server));
    let (status, body) = http(&url, "GET", "", Some(REQUEST_TOKEN));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `freshtoken` for the deployer client, with no secret in sight.
fn job(sb: &Sandbox, server: &Server) -> Command {
    let mut c = sb.cmd();
    c.env("FRESHTOKEN_TOKEN_URL", server.token_url())
        .env("FRESHTOKEN_CLIENT_ID", DEPLOYER)
        .env("FRESHTOKEN_RETRY_FOR", "0")
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", request_url(server))
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN);
    c
}

fn api_status(server: &Server, token: &str) -> u16 {
    http(
        &format!("{}/api/deploy", server.base_url()),
        "GET",
        "",
        Some(token),
    )
    .0
}

/// Every source, both uses: a token the API accepts, the claims (never the token) in `-v`.
#[test]
fn github_gitlab_and_file_sources_as_assertion_and_as_exchange_subject() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let file = sb.path().join("sa-token");
    std::fs::write(&file, mint(&server)).unwrap();
    let gitlab = mint(&server);
    let github = format!("github:{AUDIENCE}");
    let cases: [(&str, Vec<&str>); 6] = [
        ("github assertion", vec!["--client-assertion-from", &github]),
        (
            "gitlab assertion",
            vec!["--client-assertion-from", "gitlab:CI_ID_TOKEN"],
        ),
        (
            "file assertion",
            vec!["--client-assertion-file", file.to_str().unwrap()],
        ),
        ("github exchange", vec!["--subject-token-from", &github]),
        (
            "gitlab exchange",
            vec!["--subject-token-from", "gitlab:CI_ID_TOKEN"],
        ),
        (
            "file exchange",
            vec!["--subject-token-file", file.to_str().unwrap()],
        ),
    ];
    for (i, (name, args)) in cases.iter().enumerate() {
        let o = run(job(&sb, &server)
            .env("CI_ID_TOKEN", &gitlab)
            .args(["-v", "get", "--cache", "memory"])
            .args(args));
        assert_code(&o, 0);
        let token = stdout(&o).trim().to_owned();
        assert_eq!(api_status(&server, &token), 200, "{name}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("sub={SUBJECT}")) && err.contains(&format!("aud={AUDIENCE}")),
            "{name}: the claims are logged: {err}"
        );
        let in_file = std::fs::read_to_string(&file).unwrap();
        for secret in [gitlab.as_str(), in_file.as_str(), REQUEST_TOKEN] {
            assert!(!err.contains(secret), "{name}: a token in the log: {err}");
        }
        let ci = server.state().ci_stats();
        assert_eq!(ci.accepted, i as u64 + 1, "{name}: {ci:?}");
        assert_eq!(ci.rejected, 0, "{name}: {ci:?}");
    }
    assert_eq!(server.stats().token_errors, 0);
}

/// A job without `id-token: write` (a wrong request token), a source named without its
/// auth method, an unknown grant: one clear line each, the documented exit code.
#[test]
fn misconfigured_identity_sources_fail_in_one_clear_line() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let o = run(job(&sb, &server)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "not-the-request-token")
        .args([
            "get",
            "--cache",
            "memory",
            "--client-assertion-from",
            "github",
        ]));
    assert_fails_with(&o, 2, "id-token: write");
    assert!(
        !stderr(&o).contains("not-the-request-token"),
        "{}",
        stderr(&o)
    );

    let o = run(job(&sb, &server).args([
        "get",
        "--cache",
        "memory",
        "--auth-method",
        "client_assertion",
    ]));
    assert_fails_with(&o, 2, "client_assertion needs an identity token");

    let o = run(job(&sb, &server).args([
        "get",
        "--cache",
        "memory",
        "--auth-method",
        "client_secret_post",
        "--client-assertion-from",
        "github",
    ]));
    assert_fails_with(&o, 2, "the auth method is client_secret_post");

    let o = run(job(&sb, &server)
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .args(["get", "--cache", "memory", "--subject-token-from", "github"]));
    assert_fails_with(&o, 2, "$ACTIONS_ID_TOKEN_REQUEST_URL is not set");
    assert_eq!(server.state().ci_stats().rejected, 0);
}

/// A running `freshtoken` (proxy, agent) with the URL it announced, if any; killed when
/// dropped, so that a failed test leaves nothing running.
struct Running(Child, String);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxy(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = proxy_url(&mut child);
    Running(child, url)
}

/// The AADSTS700024 case: a job longer than three identity-token lifetimes (60 s each; the
/// access token lives 90 s, so it is renewed after the identity token that got it expired).
/// The proxy runs the whole job; time moves on the dev-server's clock and the proxy's skew
/// file together. Every call succeeds, and no expired identity token is ever presented.
#[test]
fn a_job_longer_than_three_identity_lifetimes_never_presents_an_expired_one() {
    for (name, source) in [
        (
            "github",
            vec![
                "--client-assertion-from".to_owned(),
                format!("github:{AUDIENCE}"),
            ],
        ),
        (
            "file",
            vec!["--client-assertion-file".to_owned(), "sa-token".to_owned()],
        ),
        (
            "exchange",
            vec!["--subject-token-file".to_owned(), "sa-token".to_owned()],
        ),
        (
            "github exchange",
            vec![
                "--subject-token-from".to_owned(),
                format!("github:{AUDIENCE}"),
            ],
        ),
    ] {
        let clock = ManualClock::starting_now();
        let server = ci_server(Duration::from_secs(90), Duration::from_secs(60), &clock);
        let sb = Sandbox::new();
        let skew = sb.path().join("skew");
        let token_file = sb.path().join("sa-token");
        std::fs::write(&skew, "0s").unwrap();
        std::fs::write(&token_file, mint(&server)).unwrap();
        let mut cmd = job(&sb, &server);
        cmd.env("FRESHTOKEN_CLOCK_SKEW_FILE", &skew)
            .args([
                "proxy",
                "--upstream",
                &server.base_url(),
                "--cache",
                "memory",
            ])
            .args(&source);
        let p = proxy(cmd);
        let steps = 20u64; // 20 × 10 s = 200 s: more than three 60 s identity lifetimes
        let mut failures = 0;
        for step in 1..=steps {
            clock.advance(Duration::from_secs(10));
            std::fs::write(&skew, format!("{}s", step * 10)).unwrap();
            // The kubelet rotates the projected token well before it expires.
            if step % 3 == 0 {
                std::fs::write(&token_file, mint(&server)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(60)); // the skew file is re-read every 20 ms
            let (status, _) = http(&format!("{}/api/step/{step}", p.1), "GET", "", None);
            if status != 200 {
                failures += 1;
            }
        }
        let ci = server.state().ci_stats();
        let stats = server.stats();
        assert_eq!(failures, 0, "{name}: {ci:?} {stats:?}");
        assert_eq!(
            ci.expired, 0,
            "{name}: an expired identity token was presented: {ci:?}"
        );
        assert_eq!(ci.rejected, 0, "{name}: {ci:?}");
        assert!(
            stats.tokens_issued >= 3,
            "{name}: renewed across the job: {stats:?}"
        );
        assert_eq!(stats.api_401, 0, "{name}: {stats:?}");
        eprintln!(
            "{name}: {steps} calls over {} s of job time, {} token requests, {} identity tokens minted, 0 failures",
            steps * 10,
            stats.token_requests,
            ci.identity_tokens
        );
    }
}

/// A fenced block of docs/ci.md: the `nth` one of `lang` after the heading `heading`.
fn ci_doc_block(heading: &str, lang: &str) -> String {
    doc_block("ci.md", heading, lang)
}

/// The first fenced block of `lang` after the heading `heading` in docs/`doc`.
fn doc_block(doc: &str, heading: &str, lang: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(doc);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find(&format!("\n{heading}\n")).expect("the heading");
    let open = format!("```{lang}\n");
    let start = at + text[at..].find(&open).expect("a block") + open.len();
    let end = start + text[start..].find("```").expect("the block's end");
    text[start..end].to_owned()
}

/// The lines indented deeper than the line `key` (a YAML block), unindented.
fn yaml_block<'a>(lines: &[&'a str], key: &str) -> Vec<&'a str> {
    let at = lines
        .iter()
        .position(|l| l.trim() == key)
        .unwrap_or_else(|| panic!("no {key}"));
    let indent = lines[at].len() - lines[at].trim_start().len();
    lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .map(|l| l.trim_start())
        .collect()
}

/// A CI step run as the CI would: bash in a work tree with `scripts/push-config.sh` (a dozen
/// API calls through the proxy) and `freshtoken` on PATH, with `env` and nothing else.
fn run_ci_step(sb: &Sandbox, script: &str, env: &[(String, String)]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let work = sb.path().join("work");
    std::fs::create_dir_all(work.join("scripts")).unwrap();
    let push = work.join("scripts/push-config.sh");
    std::fs::write(
        &push,
        "#!/bin/sh\nset -eu\nfor i in $(seq 12); do\n  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data '{}' \"$FRESHTOKEN_PROXY_URL/api/config/$i\")\n  [ \"$code\" = 200 ] || { echo \"request $i: $code\" >&2; exit 1; }\ndone\necho pushed\n",
    )
    .unwrap();
    std::fs::set_permissions(&push, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = sb.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::os::unix::fs::symlink(freshtoken_bin(), bin.join("freshtoken"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script])
        .current_dir(&work)
        .env_clear()
        .env("PATH", path)
        .env("HOME", sb.path())
        .env("XDG_CACHE_HOME", sb.path().join("cache"))
        .env("XDG_RUNTIME_DIR", sb.path().join("run"))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// The job's `env:` (or `variables:`) as written, with what only the CI or the real IdP can
/// give swapped for the dev-server's: `${{ … }}` values and the https URLs.
fn job_env(lines: &[&str], key: &str, server: &Server) -> Vec<(String, String)> {
    yaml_block(lines, key)
        .iter()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let v = match k {
                "FRESHTOKEN_TOKEN_URL" => server.token_url(),
                "FRESHTOKEN_UPSTREAM" => server.base_url(),
                "FRESHTOKEN_CLIENT_ID" => DEPLOYER.to_owned(),
                _ if v.contains("${{") => panic!("{k} needs a stand-in"),
                _ => v.to_owned(),
            };
            (k.to_owned(), v)
        })
        .collect()
}

fn assert_pushed(server: &Server, out: &std::process::Output) {
    assert_code(out, 0);
    assert_eq!(stdout(out).trim(), "pushed");
    let stats = server.stats();
    assert_eq!((stats.api_ok, stats.api_401), (12, 0), "{stats:?}");
    assert_eq!(server.state().ci_stats().rejected, 0);
}

#[test]
fn the_github_actions_job_of_docs_ci_runs_as_written() {
    let yaml = ci_doc_block("## GitHub Actions", "yaml");
    assert!(yaml.contains("id-token: write"), "{yaml}");
    let lines: Vec<&str> = yaml.lines().collect();
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(600), Duration::from_secs(300), &clock);
    let mut env = job_env(&lines, "env:", &server);
    // What the runner sets for a job with `id-token: write`.
    env.push(("ACTIONS_ID_TOKEN_REQUEST_URL".into(), request_url(&server)));
    env.push((
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
        REQUEST_TOKEN.into(),
    ));
    let script = yaml_block(&lines, "run: |").join("\n");
    let sb = Sandbox::new();
    let out = run_ci_step(&sb, &script, &env);
    assert_pushed(&server, &out);
    assert!(server.state().ci_stats().accepted >= 1);
}

#[test]
fn the_gitlab_job_of_docs_ci_runs_as_written() {
    let yaml = ci_doc_block("## GitLab CI", "yaml");
    let lines: Vec<&str> = yaml.lines().collect();
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(600), Duration::from_secs(300), &clock);
    let mut env = job_env(&lines, "variables:", &server);
    // What GitLab sets for the `id_tokens:` entry.
    let var = yaml_block(&lines, "id_tokens:")[0]
        .trim_end_matches(':')
        .to_owned();
    env.push((var, mint(&server)));
    let script: Vec<&str> = yaml_block(&lines, "script:")
        .iter()
        .map(|l| l.trim_start_matches("- "))
        .collect();
    let sb = Sandbox::new();
    let out = run_ci_step(&sb, &format!("set -eu\n{}", script.join("\n")), &env);
    assert_pushed(&server, &out);
    assert!(server.state().ci_stats().accepted >= 1);
}

/// Genesys' secretless route of docs/ci.md: the identity token logs into Vault and the client
/// secret comes from `client_secret = { command = … }`. `vault` is a stand-in that hands the
/// secret only to the job's own identity token.
#[test]
fn the_genesys_route_through_vault_runs_with_a_stand_in_vault() {
    use std::os::unix::fs::PermissionsExt;
    let toml = ci_doc_block("## Genesys Cloud: through Vault", "toml");
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let identity = mint(&server);
    let bin = sb.path().join("vault-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let vault = bin.join("vault");
    std::fs::write(
        &vault,
        format!(
            "#!/bin/sh\ncase \"$1 $2\" in\n  'write -field=token') [ \"$5\" = \"jwt={identity}\" ] && echo vault-tok && exit 0; echo 'permission denied' >&2; exit 2;;\n  'kv get') [ \"$VAULT_TOKEN\" = vault-tok ] && echo '{SECRET}' && exit 0; echo 'permission denied' >&2; exit 2;;\nesac\nexit 2\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Genesys Cloud swapped for the dev-server, the client id for its client.
    let profile: String = toml
        .lines()
        .map(|l| match l.split_once(" = ") {
            Some(("provider", _)) => format!("token_url = \"{}\"", server.token_url()),
            Some(("region", _)) => String::new(),
            Some(("client_id", _)) => format!("client_id = \"{CLIENT_ID}\""),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = sb.path().join("config.toml");
    std::fs::write(&config, profile).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let get = |token: &str| {
        run(sb
            .cmd()
            .env("PATH", &path)
            .env("FRESHTOKEN_ID_TOKEN", token)
            .args(["--config", config.to_str().unwrap(), "--profile", "genesys"])
            .args(["get", "--cache", "memory"]))
    };
    let o = get(&identity);
    assert_code(&o, 0);
    assert_eq!(api_status(&server, stdout(&o).trim()), 200);
    assert!(!stderr(&o).contains(SECRET));
    let o = get("not-the-job-token");
    assert_fails_with(&o, 2, "permission denied");
}

/// Google STS' profile of docs/providers.md, with only the endpoint swapped for the
/// dev-server's: a public client's token exchange of the GitHub identity token, the issued
/// token type checked.
#[test]
fn the_google_sts_profile_of_docs_providers_exchanges_as_written() {
    let toml = doc_block(
        "providers.md",
        "## Google Cloud (Workload Identity Federation, STS)",
        "toml",
    );
    let parsed: toml::Table = toml.parse().unwrap();
    let profile = &parsed["profiles"]["google"];
    let audience = profile["subject_token"]["github_actions"]["audience"]
        .as_str()
        .unwrap();
    let client_id = profile["client_id"].as_str().unwrap();
    let clock = ManualClock::starting_now();
    let server = ci_server_for(
        Duration::from_secs(3600),
        Duration::from_secs(300),
        &clock,
        client_id,
        audience,
    );
    let sb = Sandbox::new();
    let config = sb.path().join("config.toml");
    let swapped = toml.replace("https://sts.googleapis.com/v1/token", &server.token_url());
    std::fs::write(&config, swapped).unwrap();
    let mut cmd = sb.cmd();
    cmd.env("ACTIONS_ID_TOKEN_REQUEST_URL", request_url(&server))
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
        .args(["--config", config.to_str().unwrap(), "--profile", "google"])
        .args(["get", "--cache", "memory"]);
    let o = run(&mut cmd);
    assert_code(&o, 0);
    assert_eq!(api_status(&server, stdout(&o).trim()), 200);
    assert_eq!(server.state().ci_stats().accepted, 1);
}

/// A secretless profile has no secret to derive the Redis seal from: Redis is refused for it
/// in one line, unless the profile names a `cache_key`, and then two machines (two homes)
/// share its token through Redis.
#[test]
fn redis_seals_a_secretless_profile_with_its_cache_key_or_is_refused() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let redis = RedisServer::start();
    let sb = Sandbox::new();
    let token_file = sb.path().join("sa-token");
    std::fs::write(&token_file, mint(&server)).unwrap();
    let config = |extra: &str| {
        let path = sb.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[profiles.ci]\ntoken_url = \"{}\"\nclient_id = \"{DEPLOYER}\"\nclient_assertion = {{ file = \"{}\" }}\ncache = \"{}\"\n{extra}",
                server.token_url(),
                token_file.display(),
                redis.url()
            ),
        )
        .unwrap();
        path
    };
    let get = |machine: &str, path: &std::path::Path| {
        let home = sb.path().join(machine);
        std::fs::create_dir_all(&home).unwrap();
        run(sb
            .cmd()
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("SEAL", "seal-Zq8vK2pLmN4xR7tY-key")
            .args(["--config", path.to_str().unwrap(), "--profile", "ci", "get"]))
    };
    let o = get("a", &config(""));
    assert_fails_with(&o, 2, "set cache_key = { env = \"VAR\" }");
    assert_eq!(
        server.stats().token_requests,
        0,
        "refused before any request"
    );

    let path = config("cache_key = { env = \"SEAL\" }\n");
    let first = get("a", &path);
    assert_code(&first, 0);
    let second = get("b", &path);
    assert_code(&second, 0);
    assert_eq!(stdout(&first), stdout(&second), "shared through Redis");
    assert_eq!(server.stats().token_requests, 1);
}

/// `exec` gives its child the access token, not what buys more: the identity token's
/// variable and GitHub's request token are kept from it.
#[test]
fn exec_keeps_the_identity_token_and_the_request_token_from_its_child() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let identity = mint(&server);
    let o = run(job(&sb, &server)
        .env("CI_ID_TOKEN", &identity)
        .args([
            "exec",
            "--cache",
            "memory",
            "--subject-token-from",
            "gitlab:CI_ID_TOKEN",
        ])
        .args(["--", "env"]));
    assert_code(&o, 0);
    let child = stdout(&o);
    assert!(
        child.contains("FRESHTOKEN_ACCESS_TOKEN=dev-"),
        "the child gets its token: {child}"
    );
    assert!(
        !child.contains(&identity),
        "the identity token reached the child"
    );
    assert!(
        !child.contains(REQUEST_TOKEN),
        "the request token reached the child"
    );
}

/// `status` names the identity source and the claims of the token it holds now (a file's),
/// never the token.
#[test]
fn status_shows_the_identity_tokens_claims_never_the_token() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let file = sb.path().join("sa-token");
    let identity = mint(&server);
    std::fs::write(&file, &identity).unwrap();
    for json in [false, true] {
        let mut cmd = job(&sb, &server);
        cmd.args(["status", "--client-assertion-file", file.to_str().unwrap()]);
        if json {
            cmd.arg("--json");
        }
        let o = run(&mut cmd);
        assert_code(&o, 0);
        let out = stdout(&o);
        assert!(out.contains(&format!("sub={SUBJECT}")), "{out}");
        assert!(out.contains("client assertion"), "{out}");
        assert!(
            !out.contains(&identity),
            "the identity token in status: {out}"
        );
    }
    assert_eq!(
        server.state().ci_stats().identity_tokens,
        1,
        "status fetched nothing"
    );
}

/// A third-party check: oidc-provider with a token-exchange grant registered by the harness
/// (its `registerGrantType`), validating the subject token against the dev-server's JWKS,
/// takes what freshtoken sends; an identity token for another audience is refused.
#[test]
fn oidc_provider_exchanges_the_dev_server_s_identity_token() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let ci_issuer = format!("{}/ci", server.base_url());
    let provider = OidcProvider::start_with_env(&[
        ("FRESHTOKEN_INTEROP_CI_ISSUER", &ci_issuer),
        ("FRESHTOKEN_INTEROP_CI_AUDIENCE", "freshtoken-interop"),
    ]);
    let sb = Sandbox::new();
    let exchange = |audience: &str| {
        run(sb
            .cmd()
            .env("FRESHTOKEN_TOKEN_URL", provider.token_endpoint())
            .env("FRESHTOKEN_CLIENT_ID", "exchanger")
            .env("FRESHTOKEN_RETRY_FOR", "0")
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", request_url(&server))
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
            .args(["get", "--cache", "memory", "--scope", "api:read"])
            .args(["--subject-token-from", &format!("github:{audience}")]))
    };
    let o = exchange("freshtoken-interop");
    assert_code(&o, 0);
    let seen = crate::interop::introspect(&provider, stdout(&o).trim());
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], "exchanger", "{seen}");
    assert_eq!(seen["scope"], "api:read", "{seen}");
    let o = exchange("someone-else");
    assert_fails_with(&o, 3, "invalid_grant");
}

/// The agent keeps a secretless profile as any other: its local token endpoint answers
/// through a job of more than three identity-token lifetimes, the file rotated as the
/// kubelet does, with no failure and no expired identity token presented.
#[test]
fn the_agent_keeps_a_secretless_profile_across_identity_lifetimes() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(90), Duration::from_secs(60), &clock);
    let sb = Sandbox::new();
    let skew = sb.path().join("skew");
    let token_file = sb.path().join("sa-token");
    std::fs::write(&skew, "0s").unwrap();
    std::fs::write(&token_file, mint(&server)).unwrap();
    let socket = sb.path().join("run/agent.sock");
    let config = sb.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsocket = \"{}\"\n[profiles.ci]\ntoken_url = \"{}\"\nclient_id = \"{DEPLOYER}\"\nclient_assertion = {{ file = \"{}\" }}\nretry_for = \"0s\"\n",
            socket.display(),
            server.token_url(),
            token_file.display()
        ),
    )
    .unwrap();
    let agent = sb
        .cmd()
        .env("FRESHTOKEN_CLOCK_SKEW_FILE", &skew)
        .args(["--config", config.to_str().unwrap(), "agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Running(agent, String::new());
    let token = || over_socket(&socket, "/v1/token/ci");
    wait_until(
        Duration::from_secs(10),
        || token().is_some_and(|(s, _)| s == 200),
        || "the agent never served the profile".to_owned(),
    );
    let mut failures = 0;
    for step in 1..=20u64 {
        clock.advance(Duration::from_secs(10));
        std::fs::write(&skew, format!("{}s", step * 10)).unwrap();
        if step % 3 == 0 {
            std::fs::write(&token_file, mint(&server)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(60));
        let answer = token();
        let ok = answer.as_ref().is_some_and(|(status, body)| {
            *status == 200
                && serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| {
                    v["access_token"]
                        .as_str()
                        .is_some_and(|t| api_status(&server, t) == 200)
                })
        });
        if !ok {
            failures += 1;
        }
    }
    drop(agent);
    let ci = server.state().ci_stats();
    assert_eq!(failures, 0, "{ci:?} {:?}", server.stats());
    assert_eq!(ci.expired, 0, "{ci:?}");
    assert_eq!(ci.rejected, 0, "{ci:?}");
    assert!(server.stats().tokens_issued >= 3, "{:?}", server.stats());
}

/// A source that hands out the same identity token for ever (a variable read once) is not
/// presented once that token has expired: freshtoken says so in one line (exit 4) and the
/// server never sees it.
#[test]
fn an_identity_token_past_its_exp_is_refused_before_it_is_sent() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(60), &clock);
    let sb = Sandbox::new();
    let stale = mint(&server);
    clock.advance(Duration::from_secs(120));
    let o = run(job(&sb, &server)
        .env("CI_ID_TOKEN", &stale)
        .env("FRESHTOKEN_CLOCK_SKEW", "120s")
        .args([
            "get",
            "--cache",
            "memory",
            "--client-assertion-from",
            "env:CI_ID_TOKEN",
        ]));
    assert_fails_with(
        &o,
        4,
        "the client assertion from env $CI_ID_TOKEN has expired",
    );
    assert!(!stderr(&o).contains(&stale), "{}", stderr(&o));
    assert_eq!(server.stats().token_requests, 0, "never sent");
    assert_eq!(server.state().ci_stats().expired, 0);
}

/// `freshtoken dev-server --ci-federation` plays the CI issuer for trying docs/ci.md by
/// hand: what its banner says is enough for a secretless `get`.
#[test]
fn the_dev_server_command_plays_the_ci_issuer_from_its_banner() {
    let sb = Sandbox::new();
    let mut child = sb
        .cmd()
        .args([
            "dev-server",
            "--ci-federation",
            "deployer:api://AzureADTokenExchange",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout_pipe = child.stdout.take().unwrap();
    let server = Running(child, String::new());
    // Read on a thread of its own, so that a banner without the line fails in 10 s, not never.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout_pipe)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    while !lines.iter().any(|l| l.contains("CI issuer")) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("no CI issuer line ({e}): {lines:?}"),
        }
    }
    let base = lines[0].trim().rsplit(' ').next().unwrap().to_owned();
    let banner = lines.last().unwrap();
    let var = |name: &str| {
        banner
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let o = run(sb
        .cmd()
        .env("FRESHTOKEN_TOKEN_URL", format!("{base}/oauth/token"))
        .env("FRESHTOKEN_CLIENT_ID", "deployer")
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        )
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        )
        .args(["get", "--cache", "memory"])
        .args([
            "--client-assertion-from",
            "github:api://AzureADTokenExchange",
        ]));
    assert_code(&o, 0);
    let (status, _) = http(
        &format!("{base}/api/ping"),
        "GET",
        "",
        Some(stdout(&o).trim()),
    );
    assert_eq!(status, 200);
    drop(server);
}

/// With `--issuer`, the discovered metadata's `private_key_jwt` is what lets a client
/// assertion of the CI's identity token through (no IdP lists a name of its own for it).
#[test]
fn discovery_takes_private_key_jwt_as_the_issuers_word_for_client_assertions() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let o = run(job(&sb, &server)
        .env_remove("FRESHTOKEN_TOKEN_URL")
        .env("FRESHTOKEN_ISSUER", server.base_url())
        .args(["get", "--cache", "memory"])
        .args(["--client-assertion-from", &format!("github:{AUDIENCE}")]));
    assert_code(&o, 0);
    assert_eq!(api_status(&server, stdout(&o).trim()), 200);
}

/// A token exchange's answer must say what it issued (RFC 8693 §2.2.1): one without
/// `issued_token_type`, or with another type than the one requested, is a bad response
/// (exit 4), not a token to send.
#[test]
fn an_exchange_answer_without_the_requested_issued_token_type_is_refused() {
    let clock = ManualClock::starting_now();
    let server = ci_server(Duration::from_secs(3600), Duration::from_secs(300), &clock);
    let sb = Sandbox::new();
    let subject = sb.path().join("sa-token");
    std::fs::write(&subject, mint(&server)).unwrap();
    let config = sb.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.x]\ntoken_url = \"{}\"\nclient_id = \"{DEPLOYER}\"\nsubject_token = {{ file = \"{}\" }}\nrequested_token_type = \"urn:ietf:params:oauth:token-type:access_token\"\n",
            server.token_url(),
            subject.display()
        ),
    )
    .unwrap();
    let get = || {
        run(sb
            .cmd()
            .args(["--config", config.to_str().unwrap(), "--profile", "x"])
            .args(["get", "--cache", "memory", "--retry-for", "0"]))
    };
    assert_code(&get(), 0);
    server.canned(
        200,
        r#"{"access_token":"at-1","token_type":"Bearer","expires_in":300}"#,
    );
    assert_fails_with(&get(), 4, "no issued_token_type");
    server.canned(
        200,
        r#"{"access_token":"at-1","token_type":"Bearer","expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#,
    );
    assert_fails_with(
        &get(),
        4,
        "issued a urn:ietf:params:oauth:token-type:id_token",
    );
}

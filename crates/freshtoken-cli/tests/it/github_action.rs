//! The repository's GitHub Action (`action.yml`), run as written, as the runner runs a
//! composite action: `${{ inputs.X }}` replaced by the values given (else the inputs'
//! defaults), each step's `env:` set, its `run:` script run with `bash --noprofile --norc -eo
//! pipefail`, and GITHUB_ENV, GITHUB_PATH and GITHUB_OUTPUT files carried from step to step.
//! Only the install is swapped: the `binary` input names the binary cargo built for the tests
//! (the cargo branch runs against a stand-in `cargo` that records what it was asked).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use freshtoken_testkit::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One step of the composite action.
struct Step {
    id: Option<String>,
    env: Vec<(String, String)>,
    run: String,
}

/// The action's input defaults, its steps and its outputs (name → expression), read from
/// the file's fixed layout: two-space indents, `run: |` blocks.
struct Action {
    defaults: BTreeMap<String, String>,
    steps: Vec<Step>,
    outputs: BTreeMap<String, String>,
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v)
        .to_owned()
}

/// The lines of the top-level section `name:`.
fn section<'a>(lines: &[&'a str], name: &str) -> Vec<&'a str> {
    let at = lines
        .iter()
        .position(|l| *l == format!("{name}:"))
        .unwrap_or_else(|| panic!("no {name}: section"));
    lines[at + 1..]
        .iter()
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .copied()
        .collect()
}

fn parse_action() -> Action {
    let text = std::fs::read_to_string(repo_root().join("action.yml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut defaults = BTreeMap::new();
    let mut current = None;
    for l in section(&lines, "inputs") {
        if indent(l) == 2 {
            current = Some(l.trim().trim_end_matches(':').to_owned());
        } else if let (Some(name), Some(v)) = (&current, l.trim().strip_prefix("default:")) {
            defaults.insert(name.clone(), unquote(v));
        }
    }
    let mut outputs = BTreeMap::new();
    let mut current = None;
    for l in section(&lines, "outputs") {
        if indent(l) == 2 {
            current = Some(l.trim().trim_end_matches(':').to_owned());
        } else if let (Some(name), Some(v)) = (&current, l.trim().strip_prefix("value:")) {
            outputs.insert(name.clone(), v.trim().to_owned());
        }
    }
    let runs = section(&lines, "runs");
    assert!(runs.iter().any(|l| l.trim() == "using: composite"));
    let mut steps: Vec<Step> = Vec::new();
    let mut i = runs.iter().position(|l| l.trim() == "steps:").unwrap() + 1;
    while i < runs.len() {
        let l = runs[i];
        let key = l.trim().trim_start_matches("- ");
        if l.trim_start().starts_with("- ") {
            steps.push(Step {
                id: None,
                env: Vec::new(),
                run: String::new(),
            });
        }
        let step = steps.last_mut().expect("a step item first");
        if let Some(id) = key.strip_prefix("id: ") {
            step.id = Some(id.to_owned());
        } else if key == "env:" {
            while i + 1 < runs.len() && indent(runs[i + 1]) > indent(l) {
                i += 1;
                let (k, v) = runs[i].trim().split_once(": ").unwrap();
                step.env.push((k.to_owned(), unquote(v)));
            }
        } else if key == "run: |" {
            while i + 1 < runs.len() && (runs[i + 1].is_empty() || indent(runs[i + 1]) > indent(l))
            {
                i += 1;
                step.run += runs[i].get(indent(l) + 2..).unwrap_or("");
                step.run += "\n";
            }
        }
        i += 1;
    }
    Action {
        defaults,
        steps,
        outputs,
    }
}

/// What a run of the action left: every step's output, the job's environment after it, the
/// action's outputs.
struct Ran {
    out: Output,
    job_env: BTreeMap<String, String>,
    path: String,
    outputs: BTreeMap<String, String>,
    env_file: String,
}

/// `${{ inputs.X }}` as the runner replaces it: the given value, else the default.
fn substitute(value: &str, inputs: &[(&str, &str)], defaults: &BTreeMap<String, String>) -> String {
    let mut v = value.to_owned();
    while let Some(start) = v.find("${{ inputs.") {
        let end = start + v[start..].find(" }}").unwrap() + 3;
        let name = &v[start + "${{ inputs.".len()..end - 3];
        let given = inputs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let value = given
            .map(str::to_owned)
            .or_else(|| defaults.get(name).cloned())
            .unwrap_or_else(|| panic!("input {name} has neither a value nor a default"));
        v.replace_range(start..end, &value);
    }
    assert!(
        !v.contains("${{"),
        "an expression the test does not know: {v}"
    );
    v
}

/// Runs a bash step as the runner does, with `env` and the job's files.
fn run_bash(sb: &Sandbox, script: &str, env: &BTreeMap<String, String>, path: &str) -> Output {
    let file = sb.path().join("step.sh");
    std::fs::write(&file, script).unwrap();
    run(Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&file)
        .env_clear()
        .envs(env)
        .env("PATH", path)
        .current_dir(sb.path())
        .stdin(Stdio::null()))
}

/// Runs the action with `inputs` in a job whose environment is `job`.
fn run_action(sb: &Sandbox, inputs: &[(&str, &str)], job: &[(&str, &str)], path: &str) -> Ran {
    let action = parse_action();
    let temp = sb.path().join("runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let (env_file, path_file) = (sb.path().join("github-env"), sb.path().join("github-path"));
    std::fs::write(&env_file, "").unwrap();
    std::fs::write(&path_file, "").unwrap();
    let mut job_env: BTreeMap<String, String> = job
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in [
        ("HOME", sb.path().to_owned()),
        ("XDG_CACHE_HOME", sb.path().join("cache")),
        ("RUNNER_TEMP", temp.clone()),
        ("GITHUB_ENV", env_file.clone()),
        ("GITHUB_PATH", path_file.clone()),
        ("GITHUB_ACTION_PATH", repo_root()),
    ] {
        job_env.insert(k.into(), v.display().to_string());
    }
    let mut path = path.to_owned();
    let mut outputs_of = BTreeMap::new();
    let mut last = None;
    for (n, step) in action.steps.iter().enumerate() {
        let output_file = sb.path().join(format!("github-output-{n}"));
        std::fs::write(&output_file, "").unwrap();
        let mut env = job_env.clone();
        env.insert("GITHUB_OUTPUT".into(), output_file.display().to_string());
        for (k, v) in &step.env {
            env.insert(k.clone(), substitute(v, inputs, &action.defaults));
        }
        let out = run_bash(sb, &step.run, &env, &path);
        let failed = !out.status.success();
        if let Some(id) = &step.id {
            outputs_of.insert(id.clone(), std::fs::read_to_string(&output_file).unwrap());
        }
        // What the step added to the job: GITHUB_ENV's lines, GITHUB_PATH's folders first.
        for line in std::fs::read_to_string(&env_file).unwrap().lines() {
            let (k, v) = line.split_once('=').expect("NAME=VALUE lines");
            job_env.insert(k.into(), v.into());
        }
        for dir in std::fs::read_to_string(&path_file).unwrap().lines() {
            if !path.starts_with(&format!("{dir}:")) {
                path = format!("{dir}:{path}");
            }
        }
        let mut joined: Output = last.take().unwrap_or(out.clone());
        if n > 0 {
            joined.stdout.extend_from_slice(&out.stdout);
            joined.stderr.extend_from_slice(&out.stderr);
            joined.status = out.status;
        }
        last = Some(joined);
        if failed {
            break;
        }
    }
    let mut outputs = BTreeMap::new();
    for (name, expr) in &action.outputs {
        let id = expr
            .strip_prefix("${{ steps.")
            .and_then(|e| e.strip_suffix(&format!(".outputs.{name} }}}}")))
            .unwrap_or_else(|| panic!("output {name}: {expr}"));
        let file = outputs_of.get(id).cloned().unwrap_or_default();
        if let Some(v) = file
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
        {
            outputs.insert(name.clone(), v.to_owned());
        }
    }
    Ran {
        out: last.expect("the action has steps"),
        job_env,
        path,
        outputs,
        env_file: std::fs::read_to_string(&env_file).unwrap(),
    }
}

fn system_path() -> String {
    std::env::var("PATH").unwrap_or_default()
}

/// The inputs that point the action at `server` with the tests' binary.
fn inputs_for(server: &Server) -> Vec<(&'static str, String)> {
    vec![
        ("binary", env!("CARGO_BIN_EXE_freshtoken").to_owned()),
        ("token-url", server.token_url()),
        ("client-id", CLIENT_ID.to_owned()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn the_action_exposes_a_masked_token_to_later_steps() {
    let server = Server::start(Duration::from_secs(600));
    let sb = Sandbox::new();
    let mut inputs = inputs_for(&server);
    inputs.push(("client-secret", SECRET.to_owned()));
    inputs.push(("min-ttl", "5m".to_owned()));
    let ran = run_action(&sb, &as_refs(&inputs), &[], &system_path());
    assert_code(&ran.out, 0);
    let log = stdout(&ran.out);
    let token = ran.outputs.get("token").expect("the token output").clone();
    assert!(token.len() > 20, "{token}");
    // Masked: the runner is told before anything else could print it, and only there.
    assert!(log.contains(&format!("::add-mask::{token}\n")), "{log}");
    assert_eq!(log.matches(token.as_str()).count(), 1, "{log}");
    assert!(log.contains(&format!("::add-mask::{SECRET}\n")), "{log}");
    assert_eq!(log.matches(SECRET).count(), 1, "{log}");
    // The job's later steps have the token and the settings, never the secret.
    assert!(!ran.env_file.contains(SECRET), "{}", ran.env_file);
    assert_eq!(ran.job_env["FRESHTOKEN_ACCESS_TOKEN"], token);
    let later = run_bash(
        &sb,
        "curl -sf -X PUT -H \"Authorization: Bearer $FRESHTOKEN_ACCESS_TOKEN\" --data '{}' \"${FRESHTOKEN_TOKEN_URL%/oauth/token}/api/items/1\"\necho\nenv\n",
        &ran.job_env,
        &ran.path,
    );
    assert_code(&later, 0);
    let later_out = stdout(&later);
    assert!(
        later_out.contains("\"path\":\"/api/items/1\""),
        "{later_out}"
    );
    assert!(!later_out.contains(SECRET), "{later_out}");
    assert!(later_out.contains(&format!("FRESHTOKEN_CLIENT_ID={CLIENT_ID}")));
    assert_eq!(server.stats().api_ok, 1);
}

#[test]
fn the_action_runs_a_step_under_exec_with_the_secret_from_the_job() {
    let server = Server::start(Duration::from_secs(600));
    let sb = Sandbox::new();
    let mut inputs = inputs_for(&server);
    let base = server.base_url();
    inputs.push((
        "run",
        format!(
            "curl -sf -X PUT -H \"Authorization: Bearer $FRESHTOKEN_ACCESS_TOKEN\" --data '{{}}' {base}/api/items/2\necho\necho \"child has $FRESHTOKEN_ACCESS_TOKEN\"\nenv | grep -c SECRET || true\n"
        ),
    ));
    let job = [("FRESHTOKEN_CLIENT_SECRET", SECRET)];
    let ran = run_action(&sb, &as_refs(&inputs), &job, &system_path());
    assert_code(&ran.out, 0);
    let log = stdout(&ran.out);
    assert!(log.contains("\"path\":\"/api/items/2\""), "{log}");
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix("child has "))
        .unwrap_or_else(|| panic!("{log}"));
    // The token the script got is masked before the script's first line runs.
    let mask = log.find(&format!("::add-mask::{token}\n")).expect("masked");
    assert!(mask < log.find("\"path\"").unwrap(), "{log}");
    // The secret reached neither the script's environment nor the job's.
    assert!(log.lines().any(|l| l == "0"), "no SECRET variable:\n{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(!ran.job_env.contains_key("FRESHTOKEN_ACCESS_TOKEN"));
    assert!(ran.outputs.is_empty());
}

#[test]
fn the_action_runs_a_step_under_exec_proxy() {
    let server = Server::start(Duration::from_secs(600));
    let sb = Sandbox::new();
    let mut inputs = inputs_for(&server);
    let upstream = server.base_url();
    inputs.push(("client-secret", SECRET.to_owned()));
    inputs.push(("proxy", "true".to_owned()));
    inputs.push(("upstream", upstream));
    inputs.push((
        "run",
        "for i in 1 2 3; do curl -sf -X PUT --data '{}' \"$FRESHTOKEN_PROXY_URL/api/items/$i\"; echo; done\nenv | grep -c SECRET || true\n".to_owned(),
    ));
    let ran = run_action(&sb, &as_refs(&inputs), &[], &system_path());
    assert_code(&ran.out, 0);
    let log = stdout(&ran.out);
    assert_eq!(log.matches("\"path\":\"/api/items/").count(), 3, "{log}");
    // The secret input reached freshtoken, not the script.
    assert!(log.lines().any(|l| l == "0"), "no SECRET variable:\n{log}");
    assert_eq!(log.matches(SECRET).count(), 1, "only masked:\n{log}");
    let stats = server.stats();
    assert_eq!((stats.api_ok, stats.api_401), (3, 0));
}

#[test]
fn the_action_builds_freshtoken_with_cargo_install_without_a_binary() {
    let server = Server::start(Duration::from_secs(600));
    let sb = Sandbox::new();
    // A stand-in cargo: records its arguments and "installs" the tests' binary in --root.
    let bin = sb.path().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$HOME/cargo-args\"\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\nln -s '{}' \"$2/bin/freshtoken\"\n",
            env!("CARGO_BIN_EXE_freshtoken")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inputs = [
        ("token-url", server.token_url()),
        ("client-id", CLIENT_ID.to_owned()),
        ("client-secret", SECRET.to_owned()),
    ];
    let path = format!("{}:{}", bin.display(), system_path());
    let ran = run_action(&sb, &as_refs(&inputs), &[], &path);
    assert_code(&ran.out, 0);
    let args = std::fs::read_to_string(sb.path().join("cargo-args")).unwrap();
    let crate_dir = repo_root().join("crates/freshtoken-cli");
    assert!(
        args.starts_with(&format!(
            "install\n--locked\n--path\n{}\n--root\n",
            crate_dir.display()
        )),
        "{args}"
    );
    assert!(ran.outputs.contains_key("token"));
}

#[test]
fn the_actions_scripts_take_inputs_only_through_env() {
    // An input pasted into a script's text would be run as shell code.
    for step in parse_action().steps {
        assert!(!step.run.contains("${{"), "{}", step.run);
        assert!(!step.run.is_empty());
    }
}

#[test]
fn the_documented_uses_name_only_inputs_the_action_has() {
    let inputs = parse_action().defaults;
    for doc in ["README.md", "docs/deploy/github-action.md"] {
        let text = std::fs::read_to_string(repo_root().join(doc)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut seen = 0;
        for (at, l) in lines.iter().enumerate() {
            if !l.trim_start().starts_with("- uses: OWNER/freshtoken@REF")
                && !l.trim_start().starts_with("uses: OWNER/freshtoken@REF")
            {
                continue;
            }
            let with = at
                + 1
                + lines[at + 1..]
                    .iter()
                    .position(|l| l.trim() == "with:")
                    .unwrap();
            for w in lines[with + 1..]
                .iter()
                .take_while(|w| indent(w) > indent(lines[with]))
            {
                let key = w.trim().split(':').next().unwrap();
                assert!(inputs.contains_key(key), "{doc}: no input {key}");
                seen += 1;
            }
        }
        assert!(seen >= 3, "{doc}: the action's use is shown");
    }
}

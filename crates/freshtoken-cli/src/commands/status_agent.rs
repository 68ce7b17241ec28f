//! `freshtoken status --agent`: what a running agent holds, from its `GET /v1/status`. The
//! agent answers in the one JSON shape (`expires_at` RFC 3339 beside `expires_at_unix`);
//! `--format json` prints it with where the agent was asked, text otherwise. Never a token.

use std::path::Path;
use std::time::Duration;

use freshtoken_agent::client;
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::exit::{CliError, CliResult, code};
use crate::human;
use crate::output;
use crate::wiring;

/// Asks the agent on `given` (a socket path, `http://127.0.0.1:PORT`, or the config's
/// socket) and prints what it holds; exit 4 when no agent of the user's answers.
pub(crate) fn run(cli: &Cli, given: Option<&Path>, json: bool) -> CliResult {
    let configured = || match wiring::load_config(cli) {
        Ok(Some(loaded)) => super::agent::socket_path(&loaded.file.agent),
        _ => client::default_socket(),
    };
    let tcp = given
        .and_then(Path::to_str)
        .and_then(|g| g.strip_prefix("http://"));
    let (at, answer) = match (tcp, given) {
        (Some(addr), _) => (
            format!("http://{addr}"),
            client::status_tcp(addr, &configured()),
        ),
        (None, socket) => {
            let socket = socket.map_or_else(configured, Path::to_path_buf);
            let answer = client::status(&socket).map_err(|n| n.reason);
            (socket.display().to_string(), answer)
        }
    };
    let mut report = answer.map_err(|reason| CliError {
        code: code::UNAVAILABLE,
        message: format!("no agent status: {reason}"),
    })?;
    report["agent"] = json!(at);
    if json {
        output::print_json(&report)
    } else {
        output::print(&text(&report))
    }
}

/// The report for people: a line per profile, a line per proxy.
fn text(report: &Value) -> String {
    let mut out = format!("agent on {}\n", report["agent"].as_str().unwrap_or("?"));
    let profiles = report["profiles"].as_array().map_or(&[][..], Vec::as_slice);
    if profiles.is_empty() {
        out.push_str("no profiles\n");
    }
    for p in profiles {
        let name = p["profile"].as_str().unwrap_or("?");
        let state = p["state"].as_str().unwrap_or("?");
        out.push_str(&format!("profile {name}: {state}"));
        if let (Some(secs), Some(at)) = (p["expires_in"].as_u64(), p["expires_at"].as_str()) {
            let left = human::duration(Duration::from_secs(secs));
            out.push_str(&format!(", expires in {left} ({at})"));
        }
        if let Some(f) = p["fingerprint"].as_str() {
            out.push_str(&format!(", token {f}"));
        }
        out.push('\n');
        if let Some(e) = p["last_error"].as_str() {
            out.push_str(&format!("  last error: {e}\n"));
        }
        if p["cache"].is_object() {
            out.push_str(&cache_text(&p["cache"]));
        }
    }
    for x in report["proxies"].as_array().map_or(&[][..], Vec::as_slice) {
        out.push_str(&format!(
            "proxy on {} to {} (profile {})\n",
            x["listen"].as_str().unwrap_or("?"),
            x["upstream"].as_str().unwrap_or("?"),
            x["profile"].as_str().unwrap_or("?"),
        ));
    }
    out
}

/// A profile's cache counters for people: which layer answered, lock waits, failure notes,
/// and the request budget.
fn cache_text(c: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let a = &c["answers"];
    let (w, f, b) = (&c["lock_waits"], &c["failure_notes"], &c["budget"]);
    let mut out = format!(
        "  answered by: memory {}, file {}, redis {}\n  lock waits: {} ({} ms in all, longest {} ms)\n  failure notes: {} seen, {} written\n",
        n(&a["memory"]),
        n(&a["file"]),
        n(&a["redis"]),
        n(&w["count"]),
        n(&w["total_ms"]),
        n(&w["max_ms"]),
        n(&f["seen"]),
        n(&f["written"]),
    );
    match (b["spent"].as_u64(), b["limit"].as_u64()) {
        (Some(spent), Some(limit)) => out.push_str(&format!(
            "  budget: {spent} of {limit} used in this window ({} refused fleet-wide), over budget {} times here\n",
            n(&b["refused"]),
            n(&b["over"])
        )),
        _ if n(&b["over"]) > 0 => {
            out.push_str(&format!("  budget: over budget {} times\n", n(&b["over"])))
        }
        _ => {}
    }
    out
}

//! `GET /v1/status`: what the agent holds, per profile and proxy, for `freshtoken status
//! --agent`. Never a token: its state, expiry, fingerprint and the last error. It sits
//! behind the same access rules as `/v1/token` (the socket, or TCP with the credential).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use freshtoken::{BudgetUse, StatsSnapshot};
use serde_json::{Value, json};

use crate::State as Agent;
use crate::output::rfc3339;

/// The answer of `GET /v1/status`.
pub(crate) async fn status(State(agent): State<Arc<Agent>>) -> Response {
    let profiles: Vec<_> = agent
        .profiles()
        .iter()
        .map(|(n, p)| (n.clone(), Arc::clone(p)))
        .collect();
    let budgets: BTreeMap<String, Option<BudgetUse>> = profiles
        .iter()
        .map(|(name, _)| name.clone())
        .zip(crate::budget::budget_uses(profiles.iter().map(|(_, p)| &p.source)).await)
        .collect();
    let mut report = snapshot(&agent);
    if let Some(list) = report["profiles"].as_array_mut() {
        for v in list {
            let name = v["profile"].as_str().unwrap_or_default().to_owned();
            if let Some((_, p)) = profiles.iter().find(|(n, _)| *n == name) {
                let budget = budgets.get(&name).copied().flatten();
                v["cache"] = cache_json(&p.metrics.cache(&p.source), budget.as_ref());
            }
        }
    }
    let body = format!("{report}\n");
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `{"profiles": [...], "proxies": [...]}`: every profile with its token's state (`fresh`,
/// `stale`, `expired`, `none`), expiry (`expires_at` RFC 3339, `expires_at_unix`,
/// `expires_in` seconds; null without a token), fingerprint and last error; every proxy with
/// the address it bound.
fn snapshot(agent: &Agent) -> Value {
    let now = agent.clock.now();
    let profiles: Vec<Value> = agent
        .profiles()
        .iter()
        .map(|(name, p)| {
            let valid = p.source.peek_valid();
            let state = match (&valid, p.source.next_refresh()) {
                (Some(_), _) if p.source.peek_fresh().is_some() => "fresh",
                (Some(_), _) => "stale",
                (None, Some(_)) => "expired",
                (None, None) => "none",
            };
            let mut v = json!({
                "profile": name,
                "state": state,
                "fingerprint": valid.as_ref().map(|t| t.fingerprint().to_string()),
                "expires_at": null,
                "expires_at_unix": null,
                "expires_in": valid.as_ref().map(|t| t.remaining(now).as_secs()),
                "last_error": p.metrics.last_error(),
            });
            if let Some(t) = &valid {
                let at = t.expires_at();
                v["expires_at"] = json!(rfc3339(at));
                v["expires_at_unix"] = json!(
                    at.duration_since(std::time::SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                );
            }
            v
        })
        .collect();
    let proxies: Vec<Value> = agent
        .proxies()
        .iter()
        .map(|r| {
            json!({
                "profile": r.spec.profile,
                "listen": r.bound.to_string(),
                "upstream": r.spec.upstream.as_str(),
            })
        })
        .collect();
    json!({ "profiles": profiles, "proxies": proxies })
}

/// A profile's `cache` object: which layer answered, lock waits, failure notes and the
/// request budget (see docs/json.md). The budget's window figures are null for a profile
/// without a budget, or when its store did not answer in time.
pub(crate) fn cache_json(s: &StatsSnapshot, budget: Option<&BudgetUse>) -> Value {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let answers: serde_json::Map<String, Value> = freshtoken::stats::LAYERS
        .iter()
        .zip(s.answers)
        .map(|(layer, n)| ((*layer).to_owned(), json!(n)))
        .collect();
    json!({
        "answers": answers,
        "lock_waits": {
            "count": s.lock_waits,
            "total_ms": ms(s.lock_wait_total),
            "max_ms": ms(s.lock_wait_max),
        },
        "failure_notes": {"seen": s.notes_seen, "written": s.notes_written},
        "budget": {
            "over": s.over_budget,
            "spent": budget.map(|b| b.spent),
            "limit": budget.map(|b| b.limit),
            "refused": budget.map(|b| b.refused),
            "window_left_ms": budget.map(|b| ms(b.window_left)),
        },
    })
}

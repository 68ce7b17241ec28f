//! The agent's counters and their Prometheus text exposition (format 0.0.4), written by hand:
//! a handful of counters and one histogram do not need a metrics framework.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use freshtoken::{Budget, BudgetUse, ErrorKind, Fetch, StatsSnapshot, Token};

/// Upper bounds of the refresh latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Outcomes of a token request, as labels.
pub const OUTCOMES: [&str; 4] = ["ok", "rejected", "unavailable", "error"];

/// Counters of one profile; they live as long as the profile, across reloads.
#[derive(Debug, Default)]
pub struct ProfileMetrics {
    requests: [AtomicU64; 4],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_micros: AtomicU64,
    sink_writes: AtomicU64,
    sink_errors: AtomicU64,
    sink_clears: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
    /// The cache counters of the sources a reload replaced, so that the profile's counters
    /// do not start again from zero when its settings change.
    retired_cache: std::sync::Mutex<StatsSnapshot>,
}

impl ProfileMetrics {
    fn observe(&self, outcome: usize, took: Duration) {
        self.requests[outcome].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts a sink written (or not).
    pub fn sink_written(&self, ok: bool) {
        let c = if ok {
            &self.sink_writes
        } else {
            &self.sink_errors
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts sinks cleared because no valid token was left.
    pub fn sink_cleared(&self) {
        self.sink_clears.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the counters of a source a reload replaces.
    pub fn retire(&self, source: &freshtoken::CachedSource) {
        let mut retired = freshtoken::internal::lock(&self.retired_cache);
        *retired = retired.plus(&source.stats());
    }

    /// The profile's cache counters: `source`'s and those of the sources before it.
    pub fn cache(&self, source: &freshtoken::CachedSource) -> StatsSnapshot {
        freshtoken::internal::lock(&self.retired_cache).plus(&source.stats())
    }

    /// Why the last token request failed, while no later one has succeeded.
    pub fn last_error(&self) -> Option<String> {
        freshtoken::internal::lock(&self.last_error).clone()
    }

    /// Token requests made so far, all outcomes.
    pub fn requests(&self) -> u64 {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// A fetcher that counts its requests, their outcomes and latency for one profile.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Fetch>,
    metrics: Arc<ProfileMetrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Fetch>, metrics: Arc<ProfileMetrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl Fetch for Metered {
    fn cache_key(&self) -> freshtoken::CacheKey {
        self.inner.cache_key()
    }

    fn patience(&self) -> std::time::Duration {
        self.inner.patience()
    }

    fn dpop_key(&self) -> Option<&freshtoken::dpop::DpopKey> {
        self.inner.dpop_key()
    }

    async fn fetch(&self, previous: Option<&Token>, budget: Budget) -> freshtoken::Result<Token> {
        // Request latency is real elapsed time: the monotonic clock is the point.
        #[allow(clippy::disallowed_methods)]
        let started = Instant::now();
        let result = self.inner.fetch(previous, budget).await;
        let outcome = match &result {
            Ok(_) => 0,
            Err(e) => match e.kind() {
                ErrorKind::Rejected => 1,
                ErrorKind::Unavailable | ErrorKind::Timeout => 2,
                _ => 3,
            },
        };
        self.metrics.observe(outcome, started.elapsed());
        *freshtoken::internal::lock(&self.metrics.last_error) =
            result.as_ref().err().map(ToString::to_string);
        result
    }
}

/// What one profile shows at scrape time.
pub struct ProfileSample<'a> {
    pub name: &'a str,
    pub metrics: &'a ProfileMetrics,
    /// Seconds the held token stays valid; `None` without a valid token.
    pub expires_in: Option<f64>,
    /// What the profile's cache layers did for it (its source's counters).
    pub cache: StatsSnapshot,
    /// The fleet's request budget in the current window, for a profile that has one and
    /// whose store answered.
    pub budget: Option<BudgetUse>,
}

/// What one proxy shows at scrape time.
pub struct ProxySample<'a> {
    pub profile: &'a str,
    pub listen: String,
    pub stats: freshtoken_proxy::StatsSnapshot,
}

/// Reads one counter out of a proxy's snapshot.
type ProxyCounter = fn(&freshtoken_proxy::StatsSnapshot) -> u64;

/// Counts of config reloads.
#[derive(Debug, Default)]
pub struct Reloads {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// The whole exposition.
pub fn render(
    profiles: &[ProfileSample<'_>],
    proxies: &[ProxySample<'_>],
    reloads: &Reloads,
) -> String {
    let mut w = Writer {
        out: String::with_capacity(4096),
    };
    token_families(&mut w, profiles);
    refresh_histogram(&mut w, profiles);
    sink_families(&mut w, profiles);
    cache_families(&mut w, profiles);
    budget_families(&mut w, profiles);
    proxy_families(&mut w, proxies);
    reload_family(&mut w, reloads);
    w.out
}

/// Token requests by outcome, and the held token's state.
fn token_families(w: &mut Writer, profiles: &[ProfileSample<'_>]) {
    w.family(
        "freshtoken_token_requests_total",
        "counter",
        "Token requests made, by profile and outcome (ok, rejected, unavailable, error).",
    );
    for p in profiles {
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let v = p.metrics.requests[i].load(Ordering::Relaxed);
            w.sample(
                "freshtoken_token_requests_total",
                &[("profile", p.name), ("outcome", outcome)],
                v as f64,
            );
        }
    }
    w.family(
        "freshtoken_token_valid",
        "gauge",
        "1 while the profile holds a valid token.",
    );
    for p in profiles {
        w.sample(
            "freshtoken_token_valid",
            &[("profile", p.name)],
            f64::from(u8::from(p.expires_in.is_some())),
        );
    }
    w.family(
        "freshtoken_token_expires_in_seconds",
        "gauge",
        "Seconds until the held token expires (0 without one).",
    );
    for p in profiles {
        w.sample(
            "freshtoken_token_expires_in_seconds",
            &[("profile", p.name)],
            p.expires_in.unwrap_or(0.0),
        );
    }
}

/// How long token requests took.
fn refresh_histogram(w: &mut Writer, profiles: &[ProfileSample<'_>]) {
    w.family(
        "freshtoken_refresh_duration_seconds",
        "histogram",
        "Time a token request took, retries included.",
    );
    for p in profiles {
        let m = p.metrics;
        for (bound, count) in BUCKETS.iter().zip(&m.buckets) {
            let le = format!("{bound}");
            w.sample(
                "freshtoken_refresh_duration_seconds_bucket",
                &[("profile", p.name), ("le", &le)],
                count.load(Ordering::Relaxed) as f64,
            );
        }
        let total = m.requests();
        w.sample(
            "freshtoken_refresh_duration_seconds_bucket",
            &[("profile", p.name), ("le", "+Inf")],
            total as f64,
        );
        w.sample(
            "freshtoken_refresh_duration_seconds_sum",
            &[("profile", p.name)],
            m.latency_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        w.sample(
            "freshtoken_refresh_duration_seconds_count",
            &[("profile", p.name)],
            total as f64,
        );
    }
}

/// Sink writes and clears.
fn sink_families(w: &mut Writer, profiles: &[ProfileSample<'_>]) {
    w.family(
        "freshtoken_sink_writes_total",
        "counter",
        "Sink files written, by profile and outcome.",
    );
    for p in profiles {
        let m = p.metrics;
        w.sample(
            "freshtoken_sink_writes_total",
            &[("profile", p.name), ("outcome", "ok")],
            m.sink_writes.load(Ordering::Relaxed) as f64,
        );
        w.sample(
            "freshtoken_sink_writes_total",
            &[("profile", p.name), ("outcome", "error")],
            m.sink_errors.load(Ordering::Relaxed) as f64,
        );
    }
    w.family(
        "freshtoken_sink_clears_total",
        "counter",
        "Times a profile's sinks were removed or emptied for want of a valid token.",
    );
    for p in profiles {
        w.sample(
            "freshtoken_sink_clears_total",
            &[("profile", p.name)],
            p.metrics.sink_clears.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Reads one counter out of a profile's cache counters.
type CacheCounter = fn(&StatsSnapshot) -> f64;

/// Reads one figure out of a budget window's use.
type BudgetFigure = fn(&BudgetUse) -> f64;

/// Which layer answered, lock waits and failure notes: the fleet's cache at work.
fn cache_families(w: &mut Writer, profiles: &[ProfileSample<'_>]) {
    w.family(
        "freshtoken_cache_answers_total",
        "counter",
        "Times a cache layer (memory, file, redis) supplied the token a refresh needed, so that no token request was made.",
    );
    for p in profiles {
        for (layer, n) in freshtoken::stats::LAYERS.iter().zip(p.cache.answers) {
            w.sample(
                "freshtoken_cache_answers_total",
                &[("profile", p.name), ("layer", layer)],
                n as f64,
            );
        }
    }
    let families: [(&str, &str, &str, CacheCounter); 5] = [
        (
            "freshtoken_lock_waits_total",
            "counter",
            "Times a refresh waited for the refresh lock another process or machine held.",
            |s| s.lock_waits as f64,
        ),
        (
            "freshtoken_lock_wait_seconds_total",
            "counter",
            "Time spent waiting for another holder's refresh lock, all waits together.",
            |s| s.lock_wait_total.as_secs_f64(),
        ),
        (
            "freshtoken_lock_wait_seconds_max",
            "gauge",
            "The longest wait for another holder's refresh lock.",
            |s| s.lock_wait_max.as_secs_f64(),
        ),
        (
            "freshtoken_failure_notes_seen_total",
            "counter",
            "Times a failure note (the fleet's backoff) was in effect and the token endpoint was left alone.",
            |s| s.notes_seen as f64,
        ),
        (
            "freshtoken_failure_notes_written_total",
            "counter",
            "Failure notes this agent left for the fleet after a failed refresh.",
            |s| s.notes_written as f64,
        ),
    ];
    for (name, kind, help, get) in families {
        w.family(name, kind, help);
        for p in profiles {
            w.sample(name, &[("profile", p.name)], get(&p.cache));
        }
    }
}

/// The fleet's request budget (`token_rate`): this agent's refusals, and the window's use.
fn budget_families(w: &mut Writer, profiles: &[ProfileSample<'_>]) {
    w.family(
        "freshtoken_budget_over_total",
        "counter",
        "Times a refresh found the fleet's token-request budget (token_rate) spent.",
    );
    for p in profiles {
        w.sample(
            "freshtoken_budget_over_total",
            &[("profile", p.name)],
            p.cache.over_budget as f64,
        );
    }
    let families: [(&str, &str, BudgetFigure); 3] = [
        (
            "freshtoken_budget_spent",
            "Token requests the fleet made in the current budget window.",
            |b| b.spent as f64,
        ),
        (
            "freshtoken_budget_limit",
            "Token requests a budget window allows the fleet (token_rate).",
            |b| f64::from(b.limit),
        ),
        (
            "freshtoken_budget_refused",
            "Token requests refused in the current budget window, fleet-wide.",
            |b| b.refused as f64,
        ),
    ];
    for (name, help, get) in families {
        w.family(name, "gauge", help);
        for p in profiles {
            if let Some(b) = &p.budget {
                w.sample(name, &[("profile", p.name)], get(b));
            }
        }
    }
}

/// Each proxy's counters.
fn proxy_families(w: &mut Writer, proxies: &[ProxySample<'_>]) {
    let proxy_families: [(&str, &str, ProxyCounter); 5] = [
        (
            "freshtoken_proxy_requests_total",
            "Requests forwarded by a proxy.",
            |s| s.requests,
        ),
        (
            "freshtoken_proxy_replays_total",
            "Requests sent again with a new token after a 401.",
            |s| s.replayed,
        ),
        (
            "freshtoken_proxy_unauthorized_total",
            "401s passed on to the client.",
            |s| s.unauthorized,
        ),
        (
            "freshtoken_proxy_upstream_errors_total",
            "Requests the upstream could not answer (502).",
            |s| s.upstream_errors,
        ),
        (
            "freshtoken_proxy_gateway_tokens_total",
            "Token requests a gateway proxy answered with the shared token.",
            |s| s.gateway_tokens,
        ),
    ];
    for (name, help, get) in proxy_families {
        w.family(name, "counter", help);
        for p in proxies {
            w.sample(
                name,
                &[("profile", p.profile), ("listen", &p.listen)],
                get(&p.stats) as f64,
            );
        }
    }
}

/// Config reloads by outcome.
fn reload_family(w: &mut Writer, reloads: &Reloads) {
    w.family(
        "freshtoken_config_reloads_total",
        "counter",
        "Config reloads (SIGHUP), by outcome.",
    );
    w.sample(
        "freshtoken_config_reloads_total",
        &[("outcome", "ok")],
        reloads.ok.load(Ordering::Relaxed) as f64,
    );
    w.sample(
        "freshtoken_config_reloads_total",
        &[("outcome", "error")],
        reloads.failed.load(Ordering::Relaxed) as f64,
    );
}

struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_add_up() {
        let m = ProfileMetrics::default();
        m.observe(0, Duration::from_millis(30));
        m.observe(2, Duration::from_secs(3));
        let text = render(
            &[ProfileSample {
                name: "a\"b\\c\nd",
                metrics: &m,
                expires_in: Some(12.5),
                cache: StatsSnapshot::default(),
                budget: None,
            }],
            &[],
            &Reloads::default(),
        );
        assert!(
            text.contains(
                r#"freshtoken_token_requests_total{profile="a\"b\\c\nd",outcome="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"freshtoken_refresh_duration_seconds_bucket{profile="a\"b\\c\nd",le="0.05"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"freshtoken_refresh_duration_seconds_bucket{profile="a\"b\\c\nd",le="5"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"freshtoken_refresh_duration_seconds_count{profile="a\"b\\c\nd"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"freshtoken_token_expires_in_seconds{profile="a\"b\\c\nd"} 12.5"#),
            "{text}"
        );
    }

    #[test]
    fn cache_counters_are_shown_per_layer_and_the_budget_only_where_there_is_one() {
        let m = ProfileMetrics::default();
        let stats = freshtoken::CacheStats::default();
        let sample = |name, budget| ProfileSample {
            name,
            metrics: &m,
            expires_in: None,
            cache: stats.snapshot(),
            budget,
        };
        let used = BudgetUse::new(7, 5, Duration::from_secs(60), Duration::from_secs(12));
        let text = render(
            &[sample("fleet", Some(used)), sample("alone", None)],
            &[],
            &Reloads::default(),
        );
        for layer in ["memory", "file", "redis"] {
            assert!(
                text.contains(&format!(
                    "freshtoken_cache_answers_total{{profile=\"alone\",layer=\"{layer}\"}} 0"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("freshtoken_lock_waits_total{profile=\"alone\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("freshtoken_budget_spent{profile=\"fleet\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("freshtoken_budget_refused{profile=\"fleet\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("freshtoken_budget_limit{profile=\"fleet\"} 5"),
            "{text}"
        );
        assert!(
            !text.contains("freshtoken_budget_spent{profile=\"alone\"}"),
            "{text}"
        );
        assert!(
            text.contains("freshtoken_budget_over_total{profile=\"alone\"} 0"),
            "{text}"
        );
    }
}

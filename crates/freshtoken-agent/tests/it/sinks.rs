//! Sinks across rotations.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use freshtoken::ManualClock;
use freshtoken_agent::output::{Template, TokenFormat};
use freshtoken_agent::{Agent, OnExpiry, Sink};

use crate::support::*;

/// The token a sink holds, checked whole for its format (a partial write fails here).
fn token_in(name: &str, text: &str) -> String {
    match name {
        "a.token" => text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("partial raw sink {text:?}"))
            .to_owned(),
        "b.json" => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("bad json sink {text:?}")),
        _ => {
            let rest = text
                .strip_prefix("token=")
                .unwrap_or_else(|| panic!("partial template sink {text:?}"));
            assert!(rest.ends_with(" end\n"), "partial template sink {text:?}");
            rest.split(' ').next().unwrap_or_default().to_owned()
        }
    }
}

/// Replaces the whole-process test that read three sinks every 50 ms for 10 s of real time
/// (`reads > 300`): the clock steps through nine token lifetimes, and at every step each
/// sink holds, whole, a token the server accepts — the old one until the new one is
/// written, never an empty or refused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_hold_a_whole_valid_token_through_every_rotation() -> TestResult {
    capture();
    let clock = ManualClock::starting_now();
    let server = server(&clock, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir()?;
    let names = [("a", "a.token"), ("b", "b.json"), ("c", "c.tpl")];
    let formats = [
        TokenFormat::Raw,
        TokenFormat::Json,
        TokenFormat::Template(Template::parse(
            "token={{access_token}} until={{expires_at}} end\n",
        )?),
    ];
    let mut profiles = BTreeMap::new();
    for ((profile, file), format) in names.iter().zip(formats) {
        let sink = Sink::new(dir.path().join(file), format, 0o600, OnExpiry::Remove)?;
        profiles.insert((*profile).to_owned(), ProfileSpec::new(profile, vec![sink]));
    }
    let spec = Spec {
        endpoint: endpoint(dir.path()),
        profiles,
        proxies: Vec::new(),
        fail: None,
    };
    let loader = TestLoader::new(&server, &clock, spec);
    let running = Agent::new(loader, Arc::new(clock.clone())).start().await?;
    let handle = running.handle();
    let socket = endpoint(dir.path()).socket;

    // What each sink holds, checked whole and valid on the server's (manual) clock.
    let held = || -> BTreeMap<&str, String> {
        names
            .iter()
            .filter_map(|(_, file)| {
                let text = read(&dir.path().join(file))?;
                assert!(!text.is_empty(), "sink {file} empty");
                let token = token_in(file, &text);
                assert!(
                    server.state().check(&token).is_some(),
                    "sink {file} holds a token the server refuses"
                );
                Some((*file, token))
            })
            .collect()
    };
    let current = |profile: &str| {
        handle
            .source(profile)
            .and_then(|s| s.peek_valid())
            .map(|t| t.expose_secret().to_owned())
    };
    let all_current = |held: &BTreeMap<&str, String>| {
        names
            .iter()
            .all(|(p, file)| held.get(file).is_some() && held.get(file) == current(p).as_ref())
    };
    until(&handle, "every sink written", || {
        all_current(&held()) && handle.ready()
    })
    .await;
    assert_eq!(get(&socket, "/readyz").await.0, 200);

    // A reader racing the writes: whatever moment it reads, a sink is whole, never empty.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dir) = (Arc::clone(&stop), dir.path().to_owned());
        tokio::task::spawn_blocking(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (_, file) in names {
                    let text = read(&dir.join(file)).unwrap_or_else(|| panic!("{file} missing"));
                    assert!(!text.is_empty(), "sink {file} empty");
                    token_in(file, &text);
                    reads += 1;
                }
            }
            reads
        })
    };
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for rotation in 0..9 {
        let before = held();
        assert_eq!(before.len(), 3, "rotation {rotation}: a sink is missing");
        for (file, token) in &before {
            seen.entry(file).or_default().insert(token.clone());
        }
        // Stale (refresh at 70-75 % of 60 s), still valid: the old token stays until the
        // new one is written.
        advance(&clock, &handle, Duration::from_secs(50));
        assert_eq!(held().len(), 3, "rotation {rotation}: a sink went missing");
        until(&handle, "every sink rotated", || {
            let now = held();
            all_current(&now) && now.iter().all(|(f, t)| before.get(f) != Some(t))
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await?;
    eprintln!("{reads} reads raced the writes of 9 rotations");
    for (file, tokens) in &seen {
        assert_eq!(tokens.len(), 9, "sink {file} saw {} tokens", tokens.len());
    }
    for (_, file) in names {
        let mode = std::fs::metadata(dir.path().join(file))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let log = log();
    for c in ["a", "b", "c"] {
        assert!(!log.contains(&secret_of(c)), "the log holds a secret");
    }
    for token in seen.values().flatten() {
        assert!(!log.contains(token.as_str()), "the log holds a token");
    }

    // Stopping clears the sinks (nothing keeps them fresh) and removes the socket.
    running.serve(async {}).await;
    for (_, file) in names {
        assert!(!dir.path().join(file).exists(), "{file} outlived the agent");
    }
    assert!(!socket.exists(), "the socket outlived the agent");
    Ok(())
}

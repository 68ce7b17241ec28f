//! The config file (`freshtoken-cli/src/config.rs`, compiled here from its own source, as the
//! CLI has no library target): any text a user may write. A refusal is one line that names
//! the file (and where it can, line and column), exits 2, and never echoes a secret written
//! in plain text.
#![no_main]

use std::path::Path;

use freshtoken_fuzz::{echoes_none, one_line};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/freshtoken-cli/src/exit.rs"]
mod exit;

#[allow(dead_code)]
#[path = "../../crates/freshtoken-cli/src/config.rs"]
mod config;

/// The values written as `client_secret = "…"` or `private_key = '…'` (a plain string,
/// which the parser refuses without showing it).
fn plain_secrets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        for field in ["client_secret", "private_key"] {
            let Some(rest) = line.trim_start().strip_prefix(field) else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let value = &rest[1..];
            let value = &value[..value.find(quote).unwrap_or(value.len())];
            if value.chars().count() >= 8 && !value.contains(char::is_whitespace) {
                found.push(value.to_owned());
            }
        }
    }
    found
}

fuzz_target!(|data: &[u8]| {
    // The file is read as UTF-8; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, Path::new("f.toml")) {
        Ok(file) => {
            for profile in file.profiles.values() {
                assert!(profile.same_credentials(profile));
                for items in [&profile.scope, &profile.resource].into_iter().flatten() {
                    assert!(items.items().iter().all(|i| !i.is_empty()));
                }
            }
        }
        Err(e) => {
            assert_eq!(e.code, exit::code::USAGE);
            one_line("a config error", &e.message);
            assert!(e.message.starts_with("f.toml"), "{:?}", e.message);
            echoes_none("a config error", &e.message, &plain_secrets(text));
        }
    }
});

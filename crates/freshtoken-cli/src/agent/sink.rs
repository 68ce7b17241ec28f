//! Sinks: files that hold a profile's token for tools that read files, rewritten on every
//! refresh and never left holding an expired token.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use freshtoken::Token;

use crate::cli::Format;
use crate::commands::get::{render, render_env};
use crate::config::{OnExpiry, SinkConfig, SinkFormat};
use crate::env;
use crate::exit::{CliError, CliResult};

/// Placeholders a template may use.
const PLACEHOLDERS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_at",
    "expires_at_rfc3339",
    "expires_in",
    "scope",
];

/// One sink, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    path: PathBuf,
    format: SinkFormat,
    template: Option<String>,
    env_name: String,
    mode: u32,
    on_expiry: OnExpiry,
}

impl Sink {
    /// Checks a `[[profiles.NAME.sinks]]` entry; errors name the profile and the path.
    pub fn from_config(c: &SinkConfig, profile: &str) -> CliResult<Self> {
        let what = || format!("sink {} of profile {profile:?}", c.path.display());
        if !c.path.is_absolute() || c.path.file_name().is_none() {
            return Err(CliError::usage(format!(
                "{}: the path must be absolute and name a file",
                what()
            )));
        }
        let template = match (c.format, &c.template) {
            (SinkFormat::Template, Some(t)) => {
                check_template(t).map_err(|e| CliError::usage(format!("{}: {e}", what())))?;
                Some(t.clone())
            }
            (SinkFormat::Template, None) => {
                return Err(CliError::usage(format!(
                    "{}: format = \"template\" needs template = \"…\"",
                    what()
                )));
            }
            (_, Some(_)) => {
                return Err(CliError::usage(format!(
                    "{}: template is only for format = \"template\"",
                    what()
                )));
            }
            (_, None) => None,
        };
        let env_name = match (&c.env_name, c.format) {
            (Some(n), SinkFormat::Env) => {
                let valid = n
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(CliError::usage(format!(
                        "{}: env_name {n:?} is not a variable name",
                        what()
                    )));
                }
                n.clone()
            }
            (Some(_), _) => {
                return Err(CliError::usage(format!(
                    "{}: env_name is only for format = \"env\"",
                    what()
                )));
            }
            (None, _) => env::ACCESS_TOKEN.to_owned(),
        };
        let mode = match &c.mode {
            None => 0o600,
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    CliError::usage(format!("{}: mode {m:?} is not octal like \"0640\"", what()))
                })?,
        };
        if mode & 0o007 != 0 {
            tracing::warn!("{}: mode {mode:o} lets every user read the token", what());
        }
        Ok(Self {
            path: c.path.clone(),
            format: c.format,
            template,
            env_name,
            mode,
            on_expiry: c.on_expiry,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's contents for `token`.
    pub fn render(&self, token: &Token, now: SystemTime) -> String {
        match self.format {
            SinkFormat::Raw => render(token, Format::Raw, now),
            SinkFormat::Json => render(token, Format::Json, now),
            SinkFormat::Env => render_env(token, &self.env_name),
            SinkFormat::Template => fill(self.template.as_deref().unwrap_or_default(), token, now),
        }
    }

    /// Replaces the file with `token`, whole (temporary file and rename).
    pub fn write(&self, token: &Token, now: SystemTime) -> std::io::Result<()> {
        freshtoken::internal::write_file_atomically(
            &self.path,
            self.render(token, now).as_bytes(),
            self.mode,
        )
    }

    /// Takes the token away: removes the file, or empties it, as configured.
    pub fn clear(&self) -> std::io::Result<()> {
        match self.on_expiry {
            OnExpiry::Remove => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            OnExpiry::Empty => {
                freshtoken::internal::write_file_atomically(&self.path, b"", self.mode)
            }
        }
    }

    /// Removes temporary files that a killed agent left beside the sink.
    pub fn sweep(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let candidate = entry.path();
            if freshtoken::internal::is_temporary_of(&self.path, &candidate) {
                let _ = std::fs::remove_file(&candidate);
            }
        }
    }
}

fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a {{ without its }}".to_owned())?;
        let name = after[..end].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}} (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

fn fill(template: &str, token: &Token, now: SystemTime) -> String {
    let expires_at = token
        .expires_at()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = String::with_capacity(template.len() + token.expose_secret().len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        match after[..end].trim() {
            "access_token" => out.push_str(token.expose_secret()),
            "token_type" => out.push_str(token.token_type()),
            "expires_at" => out.push_str(&expires_at.to_string()),
            "expires_at_rfc3339" => {
                out.push_str(&humantime::format_rfc3339_seconds(token.expires_at()).to_string());
            }
            "expires_in" => out.push_str(&token.remaining(now).as_secs().to_string()),
            "scope" => out.push_str(token.scope().unwrap_or_default()),
            _ => {}
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::get::sample_token;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn config(path: &str, format: SinkFormat) -> SinkConfig {
        SinkConfig {
            path: path.into(),
            format,
            template: None,
            env_name: None,
            mode: None,
            on_expiry: OnExpiry::Remove,
        }
    }

    fn sink(format: SinkFormat, template: Option<&str>, env_name: Option<&str>) -> CliResult<Sink> {
        Sink::from_config(
            &SinkConfig {
                template: template.map(str::to_owned),
                env_name: env_name.map(str::to_owned),
                ..config("/run/x/t", format)
            },
            "p",
        )
    }

    #[test]
    fn renders_each_format() -> TestResult {
        let (t, now) = sample_token();
        assert_eq!(sink(SinkFormat::Raw, None, None)?.render(&t, now), "tok\n");
        assert_eq!(
            sink(SinkFormat::Env, None, Some("GENESYSCLOUD_ACCESS_TOKEN"))?.render(&t, now),
            "GENESYSCLOUD_ACCESS_TOKEN='tok'\nFRESHTOKEN_EXPIRES_AT=1700003600\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&sink(SinkFormat::Json, None, None)?.render(&t, now))?;
        assert_eq!(json["access_token"], "tok");
        assert_eq!(json["expires_at"], 1_700_003_600);
        assert_eq!(json["scope"], "a b");
        let s = sink(
            SinkFormat::Template,
            Some(
                "Authorization: {{ token_type }} {{access_token}} # {{expires_at}} {{expires_at_rfc3339}} {{expires_in}}s {{scope}}\n",
            ),
            None,
        )?;
        assert_eq!(
            s.render(&t, now),
            "Authorization: Bearer tok # 1700003600 2023-11-14T23:13:20Z 3000s a b\n"
        );
        Ok(())
    }

    #[test]
    fn refuses_what_cannot_work() {
        let e = |r: CliResult<Sink>| r.err().map(|e| e.message).unwrap_or_default();
        assert!(e(sink(SinkFormat::Template, None, None)).contains("needs template"));
        assert!(
            e(sink(SinkFormat::Template, Some("{{token}}"), None))
                .contains("unknown placeholder {{token}}")
        );
        assert!(
            e(sink(SinkFormat::Template, Some("{{access_token"), None)).contains("without its }}")
        );
        assert!(e(sink(SinkFormat::Raw, Some("x"), None)).contains("only for format"));
        assert!(e(sink(SinkFormat::Env, None, Some("1BAD"))).contains("not a variable name"));
        let relative = SinkConfig {
            mode: Some("0640".into()),
            ..config("t.token", SinkFormat::Raw)
        };
        assert!(e(Sink::from_config(&relative, "p")).contains("absolute"));
        let bad_mode = SinkConfig {
            mode: Some("rw-r--r--".into()),
            ..config("/t", SinkFormat::Raw)
        };
        assert!(e(Sink::from_config(&bad_mode, "p")).contains("not octal"));
    }

    #[test]
    fn writes_and_clears() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (t, now) = sample_token();
        for (on_expiry, gone) in [(OnExpiry::Remove, true), (OnExpiry::Empty, false)] {
            let path = dir.path().join(format!("{on_expiry:?}"));
            let s = Sink::from_config(
                &SinkConfig {
                    on_expiry,
                    ..config(
                        path.to_str().ok_or("a non-UTF-8 temporary path")?,
                        SinkFormat::Raw,
                    )
                },
                "p",
            )?;
            s.write(&t, now)?;
            assert_eq!(std::fs::read_to_string(&path)?, "tok\n");
            let leftover = dir.path().join(format!(".{on_expiry:?}.1.2.tmp"));
            std::fs::write(&leftover, "half")?;
            s.sweep();
            assert!(!leftover.exists());
            s.clear()?;
            assert_eq!(!path.exists(), gone);
            if !gone {
                assert_eq!(std::fs::read_to_string(&path)?, "");
            }
            // Clearing twice is fine: a sink already gone stays gone.
            s.clear()?;
        }
        Ok(())
    }
}

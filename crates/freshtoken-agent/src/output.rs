//! How a token is written out: one format vocabulary and one JSON shape for `freshtoken get`,
//! the agent's sinks, its endpoint and the endpoint's client, so that a file, a stdout and an
//! HTTP answer holding "the same token as JSON" hold the same bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freshtoken::Token;
use serde::{Deserialize, Serialize};

/// The variable an env output sets unless told otherwise.
pub const DEFAULT_ENV_NAME: &str = "FRESHTOKEN_ACCESS_TOKEN";

/// How a token is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFormat {
    /// The token alone.
    Raw,
    /// [`TokenWire`] as one line of JSON.
    Json,
    /// `Authorization: Bearer <token>`.
    Header,
    /// `NAME='<token>'` and `FRESHTOKEN_EXPIRES_AT=<unix seconds>` lines, for `eval`,
    /// `source` and `set -a; . FILE` (see [`render_env`]).
    Env {
        /// The variable's name, checked by [`check_env_name`].
        name: String,
    },
    /// A text with placeholders filled in.
    Template(Template),
}

impl TokenFormat {
    /// The env format with the default variable name.
    pub fn env() -> Self {
        Self::Env {
            name: DEFAULT_ENV_NAME.to_owned(),
        }
    }

    /// `token` in this format, at `now` (for `expires_in`); newline-terminated except for a
    /// template, which is written as given.
    pub fn render(&self, token: &Token, now: SystemTime) -> String {
        match self {
            TokenFormat::Raw => format!("{}\n", token.expose_secret()),
            TokenFormat::Header => format!("Authorization: Bearer {}\n", token.expose_secret()),
            TokenFormat::Env { name } => render_env(token, name),
            TokenFormat::Json => format!("{}\n", TokenWire::new(token, now).to_json()),
            TokenFormat::Template(t) => t.fill(token, now),
        }
    }
}

/// The JSON shape of a token, as `get --format json` prints it, a json sink holds it and the
/// agent's endpoint answers it. Fields are in alphabetical order, as the output has always
/// had them. Times are given twice, in fields that say which: `expires_at` as RFC 3339 (for
/// people and `date -d`), `expires_at_unix` as Unix seconds (for arithmetic); `scope` is
/// always there, null when the server did not say, so that a reader need not guess.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TokenWire {
    /// The token itself.
    pub access_token: String,
    /// When it expires, RFC 3339 in UTC to the second.
    pub expires_at: String,
    /// When it expires, in Unix seconds.
    pub expires_at_unix: u64,
    /// Seconds it stays valid from when it was written.
    pub expires_in: u64,
    /// Its scope, null when the server did not say.
    pub scope: Option<String>,
    /// `Bearer`, or `DPoP` for a DPoP-bound token.
    pub token_type: String,
}

impl TokenWire {
    /// `token` as seen at `now`.
    pub fn new(token: &Token, now: SystemTime) -> Self {
        Self {
            access_token: token.expose_secret().to_owned(),
            expires_at: rfc3339(token.expires_at()),
            expires_at_unix: unix_seconds(token.expires_at()),
            expires_in: token.remaining(now).as_secs(),
            scope: token.scope().map(str::to_owned),
            token_type: token.token_type().to_owned(),
        }
    }

    /// One line of JSON, no newline.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// When the token expires (from `expires_at_unix`, the field meant for machines).
    pub fn expiry(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at_unix)
    }
}

/// `t` as RFC 3339 in UTC to the second, the one way times are written in JSON.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl std::fmt::Display for TokenWire {
    /// Never the token: a wire struct that reaches a log line shows its shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a token expiring at {}", self.expires_at_unix)
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `NAME='<token>'` and `FRESHTOKEN_EXPIRES_AT=<unix seconds>` lines, for `eval`, `source`
/// and `set -a; . FILE`; the agent's env sinks choose NAME.
///
/// The token is single-quoted for POSIX shells although only `b64token`s get this far: what
/// is meant to be evaluated must not depend on every path having checked the token.
pub fn render_env(token: &Token, name: &str) -> String {
    format!(
        "{name}={}\nFRESHTOKEN_EXPIRES_AT={}\n",
        shell_quote(token.expose_secret()),
        unix_seconds(token.expires_at())
    )
}

/// `value` in single quotes, each `'` in it written `'\''`: a POSIX shell reads it back
/// unchanged and expands nothing in it.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Whether `name` can be a shell variable's name (letters, digits, `_`, not starting with
/// a digit): an env output with any other name would not set what it says.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("env_name {name:?} is not a variable name"))
    }
}

/// Placeholders a template may use.
const PLACEHOLDERS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_at",
    "expires_at_rfc3339",
    "expires_in",
    "scope",
];

/// A text with `{{access_token}}`-style placeholders, checked: every placeholder is known and
/// closed, so that filling it in cannot fail or leave a placeholder behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// Checks `text`; the error names the unknown or unclosed placeholder.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rest = text;
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
        Ok(Self(text.to_owned()))
    }

    /// The text with `token`'s values in place of the placeholders.
    pub fn fill(&self, token: &Token, now: SystemTime) -> String {
        let mut out = String::with_capacity(self.0.len() + token.expose_secret().len());
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                break;
            };
            match after[..end].trim() {
                "access_token" => out.push_str(token.expose_secret()),
                "token_type" => out.push_str(token.token_type()),
                "expires_at" => out.push_str(&unix_seconds(token.expires_at()).to_string()),
                "expires_at_rfc3339" => {
                    out.push_str(&rfc3339(token.expires_at()));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshtoken::ExpirySource;
    use secrecy::SecretString;

    /// A token issued at 1,700,000,000 for an hour with scope "a b", and a moment 10
    /// minutes into its life.
    fn sample_token() -> (Token, SystemTime) {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = Token::new(
            SecretString::from("tok".to_owned()),
            at,
            at + Duration::from_secs(3600),
            ExpirySource::ExpiresIn,
        )
        .with_scope(Some("a b".into()));
        (t, at + Duration::from_secs(600))
    }

    #[test]
    fn formats() -> Result<(), Box<dyn std::error::Error>> {
        let (t, now) = sample_token();
        assert_eq!(TokenFormat::Raw.render(&t, now), "tok\n");
        assert_eq!(
            TokenFormat::Header.render(&t, now),
            "Authorization: Bearer tok\n"
        );
        assert_eq!(
            TokenFormat::env().render(&t, now),
            "FRESHTOKEN_ACCESS_TOKEN='tok'\nFRESHTOKEN_EXPIRES_AT=1700003600\n"
        );
        let named = TokenFormat::Env {
            name: "GENESYSCLOUD_ACCESS_TOKEN".into(),
        };
        assert_eq!(
            named.render(&t, now),
            "GENESYSCLOUD_ACCESS_TOKEN='tok'\nFRESHTOKEN_EXPIRES_AT=1700003600\n"
        );
        // Byte for byte what `get --format json` printed before the wire struct.
        assert_eq!(
            TokenFormat::Json.render(&t, now),
            "{\"access_token\":\"tok\",\"expires_at\":\"2023-11-14T23:13:20Z\",\"expires_at_unix\":1700003600,\"expires_in\":3000,\"scope\":\"a b\",\"token_type\":\"Bearer\"}\n"
        );
        let back: TokenWire = serde_json::from_str(&TokenFormat::Json.render(&t, now))?;
        assert_eq!(back, TokenWire::new(&t, now));
        assert!(
            !back.to_string().contains("tok\""),
            "Display shows no token"
        );
        let s = Template::parse(
            "Authorization: {{ token_type }} {{access_token}} # {{expires_at}} {{expires_at_rfc3339}} {{expires_in}}s {{scope}}\n",
        )?;
        assert_eq!(
            TokenFormat::Template(s).render(&t, now),
            "Authorization: Bearer tok # 1700003600 2023-11-14T23:13:20Z 3000s a b\n"
        );
        Ok(())
    }

    #[test]
    fn refuses_templates_and_names_that_cannot_work() {
        let e = |r: Result<Template, String>| r.err().unwrap_or_default();
        assert!(e(Template::parse("{{token}}")).contains("unknown placeholder {{token}}"));
        assert!(e(Template::parse("{{access_token")).contains("without its }}"));
        assert!(check_env_name("1BAD").is_err());
        assert!(check_env_name("a-b").is_err());
        assert!(check_env_name("_OK_1").is_ok());
    }

    #[test]
    fn env_output_reads_back_unchanged_in_a_shell_and_runs_nothing() -> std::io::Result<()> {
        use freshtoken::ExpirySource;
        use secrecy::SecretString;
        let dir = tempfile::tempdir()?;
        let marker = dir.path().join("ran");
        let m = marker.display();
        // Tokens no server answer gets past the b64token check with; quoting alone holds.
        for value in [
            format!("x$(touch {m})"),
            format!("x`touch {m}`"),
            format!("x';touch {m};'"),
            format!("x'\\''$(touch {m})"),
            format!("x\"$(touch {m})\"\ntouch {m}"),
            "plain.b64/token+==".to_owned(),
        ] {
            let at = SystemTime::UNIX_EPOCH;
            let token = Token::new(
                SecretString::from(value.clone()),
                at,
                at,
                ExpirySource::ExpiresIn,
            );
            let file = dir.path().join("token.env");
            std::fs::write(&file, render_env(&token, "T"))?;
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(". {}; printf %s \"$T\"", file.display()))
                .output()?;
            assert!(out.status.success(), "{value:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), value);
            assert!(!marker.exists(), "{value:?} ran code");
        }
        Ok(())
    }
}

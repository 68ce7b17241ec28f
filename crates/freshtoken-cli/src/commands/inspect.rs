//! `freshtoken inspect`: what a token says about itself, read without verifying it.

use std::io::Read;
use std::time::SystemTime;

use freshtoken::jwt::{self, NotAJwt};
use freshtoken::{Fingerprint, Token};
use serde_json::{Value, json};

use crate::cli::{Cli, InspectArgs};
use crate::exit::{CliError, CliResult};
use crate::human;
use crate::output;
use crate::wiring;

pub(crate) async fn run(cli: &Cli, args: &InspectArgs) -> CliResult {
    let now = freshtoken::Clock::now(&freshtoken::SystemClock);
    let (text, cached) = match args.token.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .take(1024 * 1024)
                .read_to_string(&mut s)
                .map_err(|e| CliError::usage(format!("cannot read the token from stdin: {e}")))?;
            (s.trim().to_owned(), None)
        }
        Some(t) => (t.trim().to_owned(), None),
        None => {
            let token = cached_token(cli, args).await?;
            (token.expose_secret().to_owned(), Some(token))
        }
    };
    if text.is_empty() {
        return Err(CliError::usage("no token to inspect: the input is empty"));
    }
    let report = describe(&text, cached.as_ref(), now);
    if output::wants_json(args.format, args.json) {
        output::print_json(&report.json)
    } else {
        output::print(&report.text)
    }
}

async fn cached_token(cli: &Cli, args: &InspectArgs) -> CliResult<Token> {
    let wired = wiring::wire(wiring::settings(cli, &args.credentials)?).await?;
    let request = wired.token_request().ok();
    let store = wired.store(request.as_ref())?;
    let key = wired.cache_key();
    store.load(&key).await?.ok_or_else(|| {
        CliError::usage(format!(
            "no token given and none cached for profile {:?} ({}); pass TOKEN or - for stdin",
            wired.profile(),
            store.location(&key)
        ))
    })
}

pub(crate) struct Report {
    pub text: String,
    pub json: Value,
}

/// Describes `token`; `cached` adds what the cache knows about it.
pub(crate) fn describe(token: &str, cached: Option<&Token>, now: SystemTime) -> Report {
    let fingerprint = Fingerprint::of(token).to_string();
    let mut text = String::new();
    let mut out = match jwt::decode(token) {
        Ok(decoded) => {
            text.push_str("JWT (signature not checked)\n");
            text.push_str(&format!(
                "header: {}\n",
                output::pretty(&Value::Object(decoded.header.clone()))
            ));
            text.push_str(&format!(
                "claims: {}\n",
                output::pretty(&Value::Object(decoded.claims.clone()))
            ));
            let mut times = json!({"issued_at": null, "not_before": null, "expires_at": null, "expires_in": null});
            for (claim, label, field) in [
                ("iat", "issued", "issued_at"),
                ("nbf", "not before", "not_before"),
                ("exp", "expires", "expires_at"),
            ] {
                if let Some(t) = decoded.time_claim(claim) {
                    text.push_str(&format!(
                        "{label:<11} {} ({})\n",
                        human::timestamp(t),
                        human::relative(t, now)
                    ));
                    output::set_time(&mut times, field, t);
                }
            }
            if let Some(exp) = decoded.time_claim("exp") {
                let left = exp.duration_since(now).map(|d| d.as_secs()).unwrap_or(0);
                text.push_str(&format!(
                    "time left   {}\n",
                    if left == 0 {
                        "none: expired".to_owned()
                    } else {
                        human::duration(std::time::Duration::from_secs(left))
                    }
                ));
                times["expires_in"] = json!(left);
            }
            json!({"kind": "jwt", "header": decoded.header, "claims": decoded.claims, "times": times, "fingerprint": fingerprint, "length": token.chars().count(), "cache": null})
        }
        Err(why) => {
            let detail = match why {
                NotAJwt::Opaque => String::new(),
                NotAJwt::Malformed(m) => {
                    format!(" (three dot-separated parts, but not a JWT: {m})")
                }
                _ => String::new(),
            };
            text.push_str(&format!(
                "opaque token{detail}: {} characters, fingerprint {fingerprint}\nIts expiry is known only to the server and to freshtoken's cache (see `freshtoken status`).\n",
                token.chars().count()
            ));
            json!({"kind": "opaque", "header": null, "claims": null, "times": null, "fingerprint": fingerprint, "length": token.chars().count(), "cache": null})
        }
    };
    if let Some(t) = cached {
        text.push_str(&format!(
            "cache says: expires {} ({}), received {}\n",
            human::timestamp(t.expires_at()),
            human::relative(t.expires_at(), now),
            human::timestamp(t.received_at())
        ));
        let mut cache = json!({ "expires_in": t.remaining(now).as_secs(), "scope": t.scope() });
        output::set_time(&mut cache, "expires_at", t.expires_at());
        output::set_time(&mut cache, "fetched_at", t.received_at());
        out["cache"] = cache;
    }
    Report { text, json: out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn jwt_and_opaque() {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let jwt = format!(
            "{}.{}.SIGNATUREVALUE",
            b.encode(r#"{"alg":"RS256"}"#),
            b.encode(r#"{"sub":"ci","exp":1700000600,"iat":1699999400}"#)
        );
        let r = describe(&jwt, None, now);
        assert!(r.text.contains("\"sub\": \"ci\""), "{}", r.text);
        assert!(
            r.text.contains("expires     2023-11-14T22:23:20Z (in 10m)"),
            "{}",
            r.text
        );
        assert!(r.text.contains("time left   10m"), "{}", r.text);
        assert!(
            !r.text.contains("SIGNATUREVALUE"),
            "the signature is not shown: {}",
            r.text
        );
        assert_eq!(r.json["times"]["expires_in"], 600);

        let r = describe("dev-abcdef", None, now);
        assert!(
            r.text.starts_with("opaque token: 10 characters"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("dev-abcdef"));
        assert_eq!(r.json["kind"], "opaque");

        let r = describe("a.b.c", None, now);
        assert!(r.text.contains("not a JWT: header"), "{}", r.text);
    }
}

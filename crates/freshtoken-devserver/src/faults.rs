//! Failures a dev-server can be told to show, at start or while it runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The token endpoint's fault switches. Every field may be set alone through
/// `POST /__faults` with a JSON object; fields not given keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Every token request gets 503 with an HTML page.
    pub outage: bool,
    /// The next N token requests get 503, then it recovers.
    pub outage_next: u32,
    /// Every token request gets 429 with `Retry-After` of this many seconds.
    pub rate_limit: Option<u64>,
    /// Every token request gets Genesys Cloud's throttling answer: HTTP 400
    /// `invalid_request`, "Rate limit exceeded …", `Retry-After` of this many seconds.
    pub throttle: Option<u64>,
    /// Token answers are held back this many milliseconds.
    pub delay_ms: u64,
    /// Every token request gets this answer instead (for malformed-response tests).
    pub canned: Option<Canned>,
    /// Accept tokens on `/api` but answer 401 anyway (as a server that revoked them would).
    pub reject_api: bool,
    /// `/oauth/authorize` answers `error=access_denied`, as when the user says no.
    pub deny_consent: bool,
    /// Refresh tokens expire this many seconds (on the server's clock) after they are
    /// issued; the token answer says so in `refresh_expires_in`, as Keycloak does.
    pub refresh_ttl_s: Option<u64>,
    /// `expires_in` of device codes (default 600 s, on the server's clock).
    pub device_expires_in_s: Option<u64>,
    /// `interval` the device flow asks clients to poll at (default 5 s).
    pub device_interval_s: Option<u64>,
    /// The next N device-code polls get `slow_down`.
    pub device_slow_down: u32,
    /// DPoP proofs (token endpoint and API) must carry the server's current nonce; one
    /// without it gets `use_dpop_nonce` and the nonce in `DPoP-Nonce`.
    pub dpop_nonce: bool,
    /// With `dpop_nonce`: a new nonce after every N accepted proofs (0 or unset: never).
    pub dpop_nonce_every: Option<u64>,
    /// DPoP-bound tokens name another key in `cnf.jkt` (a server mixing up its clients).
    pub dpop_wrong_jkt: bool,
}

impl Faults {
    /// Parses one `--fault` word: `outage`, `outage-next=N`, `rate-limit=SECS`,
    /// `throttle=SECS`, `delay=MS`, `reject-api`, `dpop-nonce[=EVERY]` (proofs need the nonce, a
    /// new one after every EVERY accepted), `dpop-wrong-jkt`.
    pub fn apply_flag(&mut self, flag: &str) -> Result<(), String> {
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (flag.trim(), None),
        };
        let number = |v: Option<&str>, default: u64| -> Result<u64, String> {
            match v {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("fault {name}: {v:?} is not a whole number")),
            }
        };
        match name {
            "outage" => self.outage = true,
            "outage-next" => {
                self.outage_next = u32::try_from(number(value, 1)?).unwrap_or(u32::MAX)
            }
            "rate-limit" => self.rate_limit = Some(number(value, 1)?),
            "throttle" => self.throttle = Some(number(value, 1)?),
            "delay" => self.delay_ms = number(value, 1000)?,
            "reject-api" => self.reject_api = true,
            "dpop-nonce" => {
                self.dpop_nonce = true;
                self.dpop_nonce_every = value.map(|v| number(Some(v), 0)).transpose()?;
            }
            "dpop-wrong-jkt" => self.dpop_wrong_jkt = true,
            _ => {
                return Err(format!(
                    "unknown fault {name:?}; known: outage, outage-next=N, rate-limit=SECS, throttle=SECS, delay=MS, reject-api, dpop-nonce[=EVERY], dpop-wrong-jkt"
                ));
            }
        }
        Ok(())
    }

    /// The delay as a duration.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

/// A fixed answer for the token endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Canned {
    /// HTTP status (default 200).
    pub status: Option<u16>,
    /// Content-Type header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: String,
    /// Repeat `body` this many times (for oversized answers).
    pub repeat: Option<usize>,
    /// Send headers, then a body that never ends (for timeout tests).
    pub endless: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let mut f = Faults::default();
        f.apply_flag("outage").unwrap();
        f.apply_flag("rate-limit=3").unwrap();
        f.apply_flag("throttle").unwrap();
        f.apply_flag("delay=250").unwrap();
        f.apply_flag("outage-next=2").unwrap();
        assert!(f.outage);
        assert_eq!(f.rate_limit, Some(3));
        assert_eq!(f.throttle, Some(1));
        assert_eq!(f.delay(), Duration::from_millis(250));
        assert_eq!(f.outage_next, 2);
        assert!(
            f.apply_flag("delay=soon")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!(
            f.apply_flag("meteor")
                .unwrap_err()
                .contains("unknown fault")
        );
    }

    #[test]
    fn json_updates_are_strict() {
        assert!(serde_json::from_str::<Faults>(r#"{"outagee":true}"#).is_err());
        let f: Faults =
            serde_json::from_str(r#"{"canned":{"status":200,"body":"<html>"}}"#).unwrap();
        assert_eq!(f.canned.unwrap().body, "<html>");
    }
}

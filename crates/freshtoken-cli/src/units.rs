//! Values people write by hand — durations, sizes, listen addresses — parsed in one place, so
//! that `--timeout 30s`, `retry_for = "1m"`, `?min_ttl=60s` and `[agent] listen` accept the
//! same spellings and fail with the same words. Each caller names the setting in its error.

use std::net::SocketAddr;
use std::time::Duration;

/// Durations as people write them: `30s`, `5m`, `1h30m`, `250ms`, or bare seconds.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("{value:?} is not a duration (try 30s, 5m, 1h)"))
}

/// Sizes as people write them: `1048576`, `512KiB`, `1MiB`, `10MB`, `1GiB`.
pub(crate) fn parse_size(value: &str) -> Result<usize, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{value:?} is not a size (try 1MiB or 1048576)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1_000_000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return Err(format!("{value:?} is not a size (try 1MiB or 1048576)")),
    };
    n.checked_mul(factor)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{value:?} is too large"))
}

/// A request budget as people write it: `300/min`, `5/s`, `1000/1h`, `20/90s` (requests per
/// period); both parts must be above zero.
pub(crate) fn parse_rate(value: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("{value:?} is not a rate (try 300/min or 5/s)");
    let (n, per) = value.trim().split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let period = match per {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => parse_duration(per).map_err(|_| bad())?,
    };
    if n == 0 || period.is_zero() {
        return Err(format!(
            "{value:?}: a rate needs at least one request per period above zero"
        ));
    }
    Ok((n, period))
}

/// Why a listen address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    /// Not `IP:PORT` (a host name is not taken: what it resolves to can change).
    NotAnAddress,
    /// A real address, but not 127.0.0.1 / ::1; the caller decides whether consent lets it in.
    NotLoopback(SocketAddr),
}

/// `IP:PORT` on loopback. Everything freshtoken serves hands out tokens or spends them, so
/// anything else is refused unless the caller has the user's consent for it.
pub(crate) fn parse_loopback(value: &str) -> Result<SocketAddr, Listen> {
    let addr: SocketAddr = value.trim().parse().map_err(|_| Listen::NotAnAddress)?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(Listen::NotLoopback(addr))
    }
}

/// A name a shell takes for an environment variable: letters, digits and `_`, not starting
/// with a digit.
pub(crate) fn is_env_name(name: &str) -> bool {
    freshtoken_agent::output::check_env_name(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() -> Result<(), String> {
        assert_eq!(parse_duration("30")?, Duration::from_secs(30));
        assert_eq!(parse_duration("5m")?, Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
        assert!(
            parse_duration("-5s")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("soon").is_err());
        Ok(())
    }

    #[test]
    fn sizes() -> Result<(), String> {
        assert_eq!(parse_size("1MiB")?, 1_048_576);
        assert_eq!(parse_size("512KiB")?, 524_288);
        assert_eq!(parse_size("10MB")?, 10_000_000);
        assert_eq!(parse_size("42")?, 42);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        Ok(())
    }

    #[test]
    fn listen_addresses() {
        assert!(parse_loopback("127.0.0.1:0").is_ok());
        assert!(parse_loopback("[::1]:8080").is_ok());
        assert_eq!(parse_loopback("localhost:80"), Err(Listen::NotAnAddress));
        assert_eq!(parse_loopback("8080"), Err(Listen::NotAnAddress));
        assert!(matches!(
            parse_loopback("0.0.0.0:8080"),
            Err(Listen::NotLoopback(a)) if a.port() == 8080
        ));
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("GENESYSCLOUD_ACCESS_TOKEN"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name(""));
    }

    #[test]
    fn rates() {
        let min = Duration::from_secs(60);
        assert_eq!(parse_rate("300/min"), Ok((300, min)));
        assert_eq!(parse_rate(" 5 / s "), Ok((5, Duration::from_secs(1))));
        assert_eq!(parse_rate("1000/1h"), Ok((1000, Duration::from_secs(3600))));
        assert_eq!(parse_rate("20/90s"), Ok((20, Duration::from_secs(90))));
        for bad in [
            "300",
            "/min",
            "x/min",
            "300/fortnightly",
            "0/min",
            "5/0s",
            "-1/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}

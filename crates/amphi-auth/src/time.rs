//! Clock and durations. Verification takes the time as an argument so that
//! tests are deterministic; the server passes [`now_unix`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tolerance for `nbf` in the future, for clocks of the issuer and the server
/// that differ a little. There is deliberately none for `exp`: a token must
/// not outlive what its issuer wrote.
pub const NBF_LEEWAY_SECS: u64 = 30;

/// The current time in seconds since 1970-01-01 UTC.
pub fn now_unix() -> u64 {
    // A clock before 1970 is broken beyond repair; 0 then makes every token
    // look expired, which fails closed.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Why a lifetime such as `2h` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("invalid duration {input:?}: {reason} (examples: 30s, 90m, 2h, 1d)")]
    Invalid { input: String, reason: String },
    #[error("a token lifetime must be at least one second")]
    TooShort,
}

/// Reads a lifetime such as `30s`, `90m`, `2h`, `1d` or `1h 30m`.
///
/// Tokens count whole seconds, so anything under a second is refused rather
/// than rounded to an already-expired token.
pub fn parse_ttl(s: &str) -> Result<Duration, TtlError> {
    let ttl = humantime::parse_duration(s.trim()).map_err(|err| TtlError::Invalid {
        input: s.to_owned(),
        reason: err.to_string(),
    })?;
    if ttl.as_secs() == 0 {
        return Err(TtlError::TooShort);
    }
    Ok(ttl)
}

/// A duration for messages, in the units `parse_ttl` reads: `1d 2h`, `1m 30s`.
pub(crate) fn human_secs(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_ttl("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("0s"), Err(TtlError::TooShort));
        assert_eq!(parse_ttl("500ms"), Err(TtlError::TooShort));
        for bad in ["", "2", "two hours", "-1h", "2x"] {
            assert!(
                matches!(parse_ttl(bad), Err(TtlError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(now_unix() > 1_577_836_800);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(90), "1m 30s");
        assert_eq!(human_secs(86400), "1d");
        assert_eq!(human_secs(7 * 86400 + 3601), "7d 1h 1s");
        // What is printed can be read back.
        assert_eq!(
            parse_ttl(&human_secs(93784)),
            Ok(Duration::from_secs(93784))
        );
    }
}

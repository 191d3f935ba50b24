//! The payload of an Amphi token and the rules every payload must follow.
//!
//! The same rules ([`Claims::check`]) run when a token is minted and when it
//! is verified, so `amphi token` can never print a token the server refuses
//! for its shape.

use std::time::Duration;

use amphi_protocol::Role;
use serde::{Deserialize, Deserializer, Serialize};

use crate::grants::GrantClaims;

/// Longest identity (`sub`), in characters. Portals use e-mail addresses or
/// opaque ids, which fit easily; the bound keeps room state and logs small.
pub const MAX_IDENTITY_CHARS: usize = 256;
/// Longest display name (`name`), in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest room name, in characters (all ASCII, so also bytes).
pub const MAX_ROOM_CHARS: usize = 64;

/// The claims of an Amphi token, spelled as they are in the JWT payload.
///
/// Times are NumericDate: seconds since 1970-01-01T00:00:00Z. When reading a
/// payload, a non-integer time (as `time.time() + 3600` gives in Python) is
/// rounded down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The participant's identity: stable across sessions, unique per person.
    pub sub: String,
    /// The one room the token admits to.
    pub room: String,
    /// Expiry time. The token is refused from this second on.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    /// Display name; the identity is shown when it is absent or blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Not-before time.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_numeric_date"
    )]
    pub nbf: Option<u64>,
    /// Issue time. When present, `exp - iat` must not exceed the maximum lifetime.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_numeric_date"
    )]
    pub iat: Option<u64>,
    /// Role; `student` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Explicit grants, overriding the role's defaults field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<GrantClaims>,
}

impl Claims {
    /// Claims for `identity` in `room`, issued at `now_unix` and valid for `ttl`
    /// (rounded down to whole seconds).
    pub fn new(
        room: impl Into<String>,
        identity: impl Into<String>,
        ttl: Duration,
        now_unix: u64,
    ) -> Self {
        Claims {
            sub: identity.into(),
            room: room.into(),
            exp: now_unix.saturating_add(ttl.as_secs()),
            name: None,
            nbf: None,
            iat: Some(now_unix),
            role: None,
            grants: None,
        }
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    pub fn with_grants(mut self, grants: GrantClaims) -> Self {
        self.grants = Some(grants);
        self
    }

    /// The role the token confers: `student` when the claim is absent.
    pub fn effective_role(&self) -> Role {
        self.role.unwrap_or(Role::Student)
    }

    /// The display name: `name` unless it is absent or blank, else the identity.
    pub fn display_name(&self) -> &str {
        match self.name.as_deref() {
            Some(name) if !name.trim().is_empty() => name,
            _ => &self.sub,
        }
    }

    /// Checks the rules that do not depend on the clock or on the keys.
    pub fn check(&self) -> Result<(), ClaimError> {
        check_identity(&self.sub)?;
        check_room_name(&self.room)?;
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        // A token whose lifetime is empty can never be used; refusing it at
        // mint catches a swapped or zero TTL instead of printing a dead token.
        let starts = self.nbf.into_iter().chain(self.iat).max();
        if let Some(start) = starts
            && self.exp <= start
        {
            return Err(ClaimError::EmptyLifetime);
        }
        Ok(())
    }
}

/// A claim that breaks one of the rules of `docs/tokens.md`.
///
/// Messages name the claim and the rule; they quote the room name (which is
/// public: it is in the join link) but never the identity or the display name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the token's identity (`sub`) is empty")]
    EmptyIdentity,
    #[error(
        "the token's identity (`sub`) is {len} characters long; the limit is {MAX_IDENTITY_CHARS}"
    )]
    IdentityTooLong { len: usize },
    #[error("the token's identity (`sub`) contains control characters")]
    IdentityControlChars,
    #[error("the token's room is empty")]
    EmptyRoom,
    #[error("the token's room name is {len} characters long; the limit is {MAX_ROOM_CHARS}")]
    RoomTooLong { len: usize },
    #[error(
        "the token's room name {room:?} is not valid: use letters, digits, '-', '_' and '.', starting with a letter or digit"
    )]
    InvalidRoom { room: String },
    #[error(
        "the token's display name (`name`) is {len} characters long; the limit is {MAX_NAME_CHARS}"
    )]
    NameTooLong { len: usize },
    #[error("the token's display name (`name`) contains control characters")]
    NameControlChars,
    #[error("the token expires before it becomes valid (`exp` is not after `iat` or `nbf`)")]
    EmptyLifetime,
}

/// Checks a room name: 1 to [`MAX_ROOM_CHARS`] ASCII letters, digits, `-`,
/// `_` and `.`, starting with a letter or a digit.
///
/// The web client puts the room in its URL (`/room/<ROOM>`), so the name must
/// need no escaping; the first-character rule keeps out `.` and `..`, which
/// browsers resolve away as path segments.
pub fn check_room_name(room: &str) -> Result<(), ClaimError> {
    if room.is_empty() {
        return Err(ClaimError::EmptyRoom);
    }
    let len = room.chars().count();
    if len > MAX_ROOM_CHARS {
        return Err(ClaimError::RoomTooLong { len });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let starts_well = room.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !starts_well || !room.chars().all(allowed) {
        return Err(ClaimError::InvalidRoom {
            room: room.to_owned(),
        });
    }
    Ok(())
}

fn check_identity(sub: &str) -> Result<(), ClaimError> {
    if sub.is_empty() {
        return Err(ClaimError::EmptyIdentity);
    }
    let len = sub.chars().count();
    if len > MAX_IDENTITY_CHARS {
        return Err(ClaimError::IdentityTooLong { len });
    }
    // Identities end up in logs and in other participants' UIs; a newline or
    // an escape sequence there could forge log lines or garble terminals.
    if sub.chars().any(char::is_control) {
        return Err(ClaimError::IdentityControlChars);
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ClaimError> {
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(ClaimError::NameTooLong { len });
    }
    if name.chars().any(char::is_control) {
        return Err(ClaimError::NameControlChars);
    }
    Ok(())
}

/// Reads a NumericDate: a non-negative JSON number of seconds, rounded down.
pub(crate) fn numeric_date_from_json(value: &serde_json::Value) -> Option<u64> {
    let number = value.as_number()?;
    if let Some(secs) = number.as_u64() {
        return Some(secs);
    }
    // Negative integers fail as_u64 and land here as negative floats.
    let secs = number.as_f64()?;
    // `as` saturates for huge values, which then simply compare as "far future".
    (secs.is_finite() && secs >= 0.0).then(|| secs.floor() as u64)
}

const NUMERIC_DATE_EXPECTED: &str = "a non-negative number of seconds since 1970-01-01 UTC";

fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    numeric_date_from_json(&value).ok_or_else(|| serde::de::Error::custom(NUMERIC_DATE_EXPECTED))
}

fn optional_numeric_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        value => numeric_date_from_json(&value)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(NUMERIC_DATE_EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for ok in ["physics-101", "a", "R2.D2", "x_y", "9", &"a".repeat(64)] {
            assert_eq!(check_room_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_room_name(""), Err(ClaimError::EmptyRoom));
        assert_eq!(
            check_room_name(&"a".repeat(65)),
            Err(ClaimError::RoomTooLong { len: 65 })
        );
        for bad in [
            ".", "..", "-a", "_a", "a b", "a/b", "a?b", "a#b", "é", "a%20",
        ] {
            assert!(
                matches!(check_room_name(bad), Err(ClaimError::InvalidRoom { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn numeric_dates() {
        use serde_json::json;
        assert_eq!(numeric_date_from_json(&json!(1700000000)), Some(1700000000));
        assert_eq!(
            numeric_date_from_json(&json!(1700000000.9)),
            Some(1700000000)
        );
        assert_eq!(numeric_date_from_json(&json!(-1)), None);
        assert_eq!(numeric_date_from_json(&json!(-0.5)), None);
        assert_eq!(numeric_date_from_json(&json!("1700000000")), None);
        assert_eq!(numeric_date_from_json(&json!(null)), None);
    }

    #[test]
    fn serde_spelling() {
        let claims = Claims::new("physics-101", "alice", Duration::from_secs(60), 1000)
            .with_role(Role::Guest);
        let json = serde_json::to_string(&claims).unwrap();
        assert_eq!(
            json,
            r#"{"sub":"alice","room":"physics-101","exp":1060,"iat":1000,"role":"guest"}"#
        );
        assert_eq!(serde_json::from_str::<Claims>(&json).unwrap(), claims);
        let float: Claims =
            serde_json::from_str(r#"{"sub":"a","room":"r","exp":1060.5,"nbf":null}"#).unwrap();
        assert_eq!((float.exp, float.nbf), (1060, None));
    }

    #[test]
    fn display_name_falls_back_to_identity() {
        let claims = Claims::new("r", "alice", Duration::from_secs(60), 0);
        assert_eq!(claims.display_name(), "alice");
        assert_eq!(claims.clone().with_name("  ").display_name(), "alice");
        assert_eq!(claims.with_name("Alice").display_name(), "Alice");
    }

    #[test]
    fn empty_lifetime_is_refused() {
        let claims = Claims::new("r", "alice", Duration::ZERO, 1000);
        assert_eq!(claims.check(), Err(ClaimError::EmptyLifetime));
        let mut claims = Claims::new("r", "alice", Duration::from_secs(60), 1000);
        claims.nbf = Some(1060);
        assert_eq!(claims.check(), Err(ClaimError::EmptyLifetime));
    }
}

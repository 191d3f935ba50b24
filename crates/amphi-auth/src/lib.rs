//! Amphi access tokens.
//!
//! A token is a JWT signed with HS256 under a secret shared between the
//! server and an institution's portal, chosen by the `kid` header. It admits
//! one identity (`sub`) to one `room` until `exp`, with a role and optional
//! explicit grants. `docs/tokens.md` is the normative description, written
//! for portal developers who mint tokens with any JWT library; this crate
//! verifies them for the server and mints them for `amphi token`.
//!
//! ```
//! use std::time::Duration;
//! use amphi_auth::{Claims, KeySet};
//! use amphi_protocol::Role;
//!
//! let keys = KeySet::dev();
//! let now = 1_700_000_000;
//! let claims = Claims::new("physics-101", "alice@uni.example", Duration::from_secs(7200), now)
//!     .with_name("Alice")
//!     .with_role(Role::Teacher);
//! let token = keys.mint(None, &claims).unwrap();
//!
//! let verified = keys.verify(&token, Some("physics-101"), now + 60).unwrap();
//! assert_eq!(verified.identity, "alice@uni.example");
//! assert!(verified.permissions.moderate);
//! ```

mod claims;
mod grants;
mod keys;
mod mint;
mod time;
mod verify;

pub use claims::{
    ClaimError, Claims, MAX_IDENTITY_CHARS, MAX_NAME_CHARS, MAX_ROOM_CHARS, check_room_name,
};
pub use grants::{GrantClaims, effective_permissions, role_defaults};
pub use keys::{DEV_KID, DEV_MAX_TTL, DEV_SECRET, KeyError, KeySet, MIN_SECRET_BYTES};
pub use mint::MintError;
pub use time::{NBF_LEEWAY_SECS, TtlError, now_unix, parse_ttl};
pub use verify::{ALGORITHM, MAX_TOKEN_BYTES, Malformed, TokenError, VerifiedToken};

#[cfg(test)]
mod tests;

//! Verification of a token presented in `join`.
//!
//! The order of the checks matters. Before the signature is checked only the
//! size, the shape and the header are looked at, because the header names the
//! algorithm and the key; nothing in the payload is read until the signature
//! has been verified, so a forger learns nothing about the claim rules from
//! the error messages. All claim checks (including times) are done here
//! against the `now` the caller passes, rather than by `jsonwebtoken`'s
//! `Validation`, whose default leeway of 60 s and own clock would make the
//! documented limits untrue and tests time-dependent.

use amphi_protocol::{ErrorCode, Permissions, Role};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::claims::{ClaimError, Claims, numeric_date_from_json};
use crate::grants::{GrantClaims, effective_permissions};
use crate::keys::KeySet;
use crate::time::{NBF_LEEWAY_SECS, human_secs};

/// Largest token accepted, in bytes. Real tokens are a few hundred bytes;
/// anything larger is refused before it is decoded at all.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The only algorithm Amphi signs and accepts.
pub const ALGORITHM: &str = "HS256";

/// What a valid token says, ready for the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`.
    pub identity: String,
    pub room: String,
    /// `name`, or the identity when `name` is absent or blank.
    pub name: String,
    /// `role`, or `student` when absent.
    pub role: Role,
    /// The role's defaults with the explicit grants applied.
    pub permissions: Permissions,
    /// `exp`: the server may end the session then.
    pub expires_at: u64,
    /// The key that signed the token, for logs.
    pub kid: String,
}

/// Why a token was refused.
///
/// The messages are sent to the client in the `error` message, so they say
/// precisely what is wrong but never contain the token or a secret. Values
/// taken from an unverified token (algorithm, key id) are quoted shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is {len} bytes long; the limit is {MAX_TOKEN_BYTES}")]
    TooLarge { len: usize },
    #[error("the token is malformed: {0}")]
    Malformed(Malformed),
    #[error("the token is unsigned (algorithm \"none\"); tokens must be signed with HS256")]
    AlgorithmNone,
    #[error("the token is signed with algorithm {alg:?}; only HS256 is accepted")]
    UnsupportedAlgorithm { alg: String },
    #[error("the token's header has no key id (`kid`); it must name the key that signed it")]
    MissingKid,
    #[error("the token's key id {kid:?} is not configured on this server")]
    UnknownKid { kid: String },
    #[error("the token's signature is invalid: it was signed with another secret, or altered")]
    BadSignature,
    #[error("the token has no `{claim}` claim")]
    MissingClaim { claim: &'static str },
    #[error("the token's `{claim}` claim is invalid: {reason}")]
    InvalidClaim { claim: &'static str, reason: String },
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error("the token expired {} ago", human_secs(*.ago_secs))]
    Expired { exp: u64, ago_secs: u64 },
    #[error(
        "the token is not valid for another {} (`nbf`); check the clocks of the issuer and the server",
        human_secs(*.in_secs)
    )]
    NotYetValid { nbf: u64, in_secs: u64 },
    #[error(
        "the token's lifetime of {} is longer than this server's maximum of {}",
        human_secs(*.lifetime_secs),
        human_secs(*.max_secs)
    )]
    TooLongLived { lifetime_secs: u64, max_secs: u64 },
    #[error("the token is for room {token_room:?}, not for room {expected:?}")]
    WrongRoom {
        token_room: String,
        expected: String,
    },
}

/// What exactly is wrong with a token that is not a well-formed JWT. Each
/// message is fixed text, so no part of the token can leak through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("a JWT is three base64url parts separated by dots")]
    NotThreeParts,
    #[error("its header is not base64url")]
    HeaderEncoding,
    #[error("its header is not a JSON object with a string `alg`")]
    HeaderJson,
    #[error("its header lists critical extensions (`crit`), which are not supported")]
    CriticalHeader,
    #[error("its signature is not base64url")]
    SignatureEncoding,
    #[error("its payload is not base64url")]
    PayloadEncoding,
    #[error("its payload is not a JSON object")]
    PayloadJson,
}

impl From<Malformed> for TokenError {
    fn from(reason: Malformed) -> Self {
        TokenError::Malformed(reason)
    }
}

impl TokenError {
    /// Whether the token is valid but does not allow what was asked
    /// (`forbidden`) rather than not valid at all (`unauthorized`). No
    /// verification error is of the first kind today; the hook lets grant
    /// checks join this type without changing the server.
    pub fn is_forbidden(&self) -> bool {
        false
    }

    /// The signalling error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        if self.is_forbidden() {
            ErrorCode::Forbidden
        } else {
            ErrorCode::Unauthorized
        }
    }
}

/// The header fields Amphi looks at. `alg` is read as a string, not as
/// `jsonwebtoken::Algorithm`, so that `none` and unknown algorithms get their
/// own error instead of "malformed".
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl KeySet {
    /// Verifies `token` at time `now_unix` (seconds since 1970). When
    /// `expected_room` is given, the token must be for that room.
    pub fn verify(
        &self,
        token: &str,
        expected_room: Option<&str>,
        now_unix: u64,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge { len: token.len() });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed::NotThreeParts.into());
        };

        // The header is read before the signature is checked: it is what
        // tells which key to check it with. Only `alg`, `kid` and `crit` are
        // used, and only to choose or refuse.
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| Malformed::HeaderEncoding)?;
        let header: Header =
            serde_json::from_slice(&header_json).map_err(|_| Malformed::HeaderJson)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgorithmNone);
        }
        if header.alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm {
                alg: excerpt(&header.alg, 16),
            });
        }
        // RFC 7515 §4.1.11: a recipient must refuse extensions it does not know.
        if header.crit.is_some() {
            return Err(Malformed::CriticalHeader.into());
        }
        let kid = match header.kid {
            Some(kid) if !kid.is_empty() => kid,
            _ => return Err(TokenError::MissingKid),
        };
        let Some(key) = self.get(&kid) else {
            return Err(TokenError::UnknownKid {
                kid: excerpt(&kid, 64),
            });
        };

        // The signing input is the first two parts exactly as received (the
        // slice is in bounds: both parts were split from `token`).
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = &token.as_bytes()[..signed_len];
        // jsonwebtoken's HS256 verifier compares MACs in constant time (aws-lc).
        let valid = jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input,
            &key.decoding,
            Algorithm::HS256,
        )
        .map_err(|_| Malformed::SignatureEncoding)?;
        if !valid {
            return Err(TokenError::BadSignature);
        }

        // From here on the payload was written by someone holding the secret.
        let payload_json = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| Malformed::PayloadEncoding)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&payload_json).map_err(|_| Malformed::PayloadJson)?;
        let claims = read_claims(&payload)?;
        claims.check()?;
        check_times(&claims, self.max_ttl().as_secs(), now_unix)?;
        if let Some(expected) = expected_room
            && expected != claims.room
        {
            return Err(TokenError::WrongRoom {
                token_room: claims.room,
                expected: excerpt(expected, 64),
            });
        }

        let role = claims.effective_role();
        Ok(VerifiedToken {
            identity: claims.sub.clone(),
            name: claims.display_name().to_owned(),
            permissions: effective_permissions(role, claims.grants.as_ref()),
            role,
            room: claims.room,
            expires_at: claims.exp,
            kid: key.kid.clone(),
        })
    }
}

/// Builds [`Claims`] from the payload one claim at a time, so that an error
/// names the claim at fault. JSON `null` counts as absent. Claims Amphi does
/// not know (`iss`, `aud`, `jti`, …) are ignored: portals may add their own.
fn read_claims(payload: &Map<String, Value>) -> Result<Claims, TokenError> {
    let present = |claim: &'static str| payload.get(claim).filter(|value| !value.is_null());
    let required = |claim: &'static str| present(claim).ok_or(TokenError::MissingClaim { claim });
    let string = |claim: &'static str, value: &Value| match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(invalid(claim, "it must be a string")),
    };
    let date = |claim: &'static str, value: &Value| {
        numeric_date_from_json(value).ok_or_else(|| {
            invalid(
                claim,
                "it must be a non-negative number of seconds since 1970-01-01 UTC",
            )
        })
    };

    Ok(Claims {
        sub: string("sub", required("sub")?)?,
        room: string("room", required("room")?)?,
        exp: date("exp", required("exp")?)?,
        name: present("name").map(|v| string("name", v)).transpose()?,
        nbf: present("nbf").map(|v| date("nbf", v)).transpose()?,
        iat: present("iat").map(|v| date("iat", v)).transpose()?,
        role: present("role")
            .map(|v| typed::<Role>("role", v))
            .transpose()?,
        grants: present("grants")
            .map(|v| typed::<GrantClaims>("grants", v))
            .transpose()?,
    })
}

/// Reads a claim with serde. Its message (e.g. "unknown variant `admin`,
/// expected one of …") quotes at most the offending word of a payload the
/// key holder signed.
fn typed<T: DeserializeOwned>(claim: &'static str, value: &Value) -> Result<T, TokenError> {
    T::deserialize(value).map_err(|err| invalid(claim, &err.to_string()))
}

fn invalid(claim: &'static str, reason: &str) -> TokenError {
    TokenError::InvalidClaim {
        claim,
        reason: reason.to_owned(),
    }
}

fn check_times(claims: &Claims, max_ttl: u64, now: u64) -> Result<(), TokenError> {
    if now >= claims.exp {
        return Err(TokenError::Expired {
            exp: claims.exp,
            ago_secs: now - claims.exp,
        });
    }
    if let Some(nbf) = claims.nbf
        && nbf > now.saturating_add(NBF_LEEWAY_SECS)
    {
        return Err(TokenError::NotYetValid {
            nbf,
            in_secs: nbf - now,
        });
    }
    // Both bounds: exp - now catches a far-future exp whatever iat says, and
    // exp - iat catches a token minted long-lived even if presented late.
    let lifetimes = [Some(now), claims.iat].into_iter().flatten();
    for start in lifetimes {
        let lifetime = claims.exp.saturating_sub(start);
        if lifetime > max_ttl {
            return Err(TokenError::TooLongLived {
                lifetime_secs: lifetime,
                max_secs: max_ttl,
            });
        }
    }
    Ok(())
}

/// A value from an untrusted token or client, shortened for an error message.
fn excerpt(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

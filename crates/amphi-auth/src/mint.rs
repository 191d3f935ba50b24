//! Minting tokens, for `amphi token`, the development endpoint and tests.
//! Institutions' portals mint with their own JWT library instead.

use jsonwebtoken::{Algorithm, Header};

use crate::claims::{ClaimError, Claims};
use crate::keys::KeySet;
use crate::time::human_secs;
use crate::verify::MAX_TOKEN_BYTES;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no signing key is configured")]
    NoKeys,
    #[error("no key with id {kid:?} is configured")]
    UnknownKid { kid: String },
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error(
        "a lifetime of {} is longer than the maximum of {}",
        human_secs(*.lifetime_secs),
        human_secs(*.max_secs)
    )]
    TooLongLived { lifetime_secs: u64, max_secs: u64 },
    #[error("the token would be {len} bytes long; the limit is {MAX_TOKEN_BYTES}")]
    TooLarge { len: usize },
    #[error("could not sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

impl KeySet {
    /// Signs `claims` with key `kid`, or with the first key when `kid` is None.
    ///
    /// The claims are held to the same rules as at verification (except the
    /// clock, which is the caller's business), so a minted token is refused
    /// only if it is late, early or for another room.
    pub fn mint(&self, kid: Option<&str>, claims: &Claims) -> Result<String, MintError> {
        let key = match kid {
            Some(kid) => self.get(kid).ok_or_else(|| MintError::UnknownKid {
                kid: kid.to_owned(),
            })?,
            None => self.first().ok_or(MintError::NoKeys)?,
        };
        claims.check()?;
        let max_secs = self.max_ttl().as_secs();
        if let Some(iat) = claims.iat {
            let lifetime_secs = claims.exp.saturating_sub(iat);
            if lifetime_secs > max_secs {
                return Err(MintError::TooLongLived {
                    lifetime_secs,
                    max_secs,
                });
            }
        }

        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let token =
            jsonwebtoken::encode(&header, claims, &key.encoding).map_err(MintError::Sign)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(MintError::TooLarge { len: token.len() });
        }
        Ok(token)
    }
}

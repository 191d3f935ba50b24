//! The server's signing keys: one HS256 secret per key id (`kid`).

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{DecodingKey, EncodingKey};

/// Shortest secret accepted: HS256 is only as strong as its key, and RFC 7518
/// §3.2 asks for a key at least as long as the hash output (32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;

/// Key id of the development key.
pub const DEV_KID: &str = "devkey";
/// The development secret. It is published in `docs/tokens.md`, so anyone can
/// mint tokens for a server that accepts it: never use it in production.
pub const DEV_SECRET: &str = "amphi-development-secret-do-not-use-in-production";
/// Maximum token lifetime of [`KeySet::dev`].
pub const DEV_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// One secret, held only as the keys `jsonwebtoken` needs (which wipe their
/// bytes on drop). `Debug` is written by hand so a secret can never be logged.
pub(crate) struct Key {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// Whether this is [`DEV_SECRET`], so the server can refuse it outside
    /// development mode.
    is_dev_secret: bool,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The keys a server accepts tokens from, and its token policy.
///
/// Keys keep their insertion order: [`KeySet::mint`] without a key id signs
/// with the first one.
pub struct KeySet {
    keys: Vec<Key>,
    max_ttl: Duration,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only key ids: they are public (every token carries one), secrets are not.
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

/// Why a key could not be added to a [`KeySet`].
///
/// Messages name the key id but never include the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key id must not be empty")]
    EmptyKid,
    #[error(
        "the secret of key {kid:?} is {len} bytes long; at least {MIN_SECRET_BYTES} are required"
    )]
    SecretTooShort { kid: String, len: usize },
    #[error("key id {kid:?} is configured twice")]
    DuplicateKid { kid: String },
}

impl KeySet {
    /// An empty key set whose tokens may live at most `max_ttl`.
    pub fn new(max_ttl: Duration) -> Self {
        KeySet {
            keys: Vec::new(),
            max_ttl,
        }
    }

    /// The development key set: key [`DEV_KID`] with the published
    /// [`DEV_SECRET`], tokens living at most 24 hours.
    pub fn dev() -> Self {
        let mut keys = KeySet::new(DEV_MAX_TTL);
        keys.keys
            .push(Key::new(DEV_KID.to_owned(), DEV_SECRET.as_bytes()));
        keys
    }

    /// Adds a key. Secrets are raw bytes (a configuration file's string is
    /// taken as its UTF-8 bytes, exactly as JWT libraries take a string secret).
    pub fn insert(
        &mut self,
        kid: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Result<(), KeyError> {
        let kid = kid.into();
        let secret = secret.into();
        if kid.is_empty() {
            return Err(KeyError::EmptyKid);
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort {
                kid,
                len: secret.len(),
            });
        }
        if self.get(&kid).is_some() {
            return Err(KeyError::DuplicateKid { kid });
        }
        self.keys.push(Key::new(kid, &secret));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Key ids in insertion order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.kid.as_str())
    }

    /// Longest lifetime a token may have.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Whether any key uses the published development secret, under any key
    /// id. A production server should refuse to start when this is true.
    pub fn contains_dev_secret(&self) -> bool {
        self.keys.iter().any(|key| key.is_dev_secret)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    pub(crate) fn first(&self) -> Option<&Key> {
        self.keys.first()
    }
}

impl Key {
    fn new(kid: String, secret: &[u8]) -> Self {
        Key {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            is_dev_secret: secret == DEV_SECRET.as_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-portal";

    #[test]
    fn insert_validates_keys() {
        let mut keys = KeySet::new(Duration::from_secs(3600));
        assert!(keys.is_empty());
        assert_eq!(keys.insert("", SECRET), Err(KeyError::EmptyKid));
        assert_eq!(
            keys.insert("portal", "short"),
            Err(KeyError::SecretTooShort {
                kid: "portal".into(),
                len: 5
            })
        );
        assert_eq!(keys.insert("portal", SECRET), Ok(()));
        assert_eq!(
            keys.insert("portal", SECRET),
            Err(KeyError::DuplicateKid {
                kid: "portal".into()
            })
        );
        assert_eq!(keys.insert("backup", [7u8; 32].to_vec()), Ok(()));
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["portal", "backup"]);
        assert!(!keys.contains_dev_secret());
    }

    #[test]
    fn dev_key_set() {
        let keys = KeySet::dev();
        assert_eq!(keys.kids().collect::<Vec<_>>(), [DEV_KID]);
        assert_eq!(keys.max_ttl(), Duration::from_secs(86400));
        assert!(keys.contains_dev_secret());
        assert!(DEV_SECRET.len() >= MIN_SECRET_BYTES);

        // The dev secret under another name is still the dev secret.
        let mut keys = KeySet::new(Duration::from_secs(60));
        keys.insert("portal", DEV_SECRET).unwrap();
        assert!(keys.contains_dev_secret());
    }

    #[test]
    fn debug_does_not_leak_secrets() {
        let mut keys = KeySet::dev();
        keys.insert("portal", SECRET).unwrap();
        for text in [format!("{keys:?}"), format!("{keys:#?}")] {
            assert!(!text.contains(DEV_SECRET), "{text}");
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("0123456789"), "{text}");
            assert!(text.contains("devkey") && text.contains("portal"), "{text}");
        }
        let key = format!("{:?}", keys.get("portal").unwrap());
        assert!(!key.contains("0123456789"), "{key}");
        // Key-error messages name the key, not the secret.
        let err = KeySet::new(Duration::ZERO)
            .insert("k", "sixteen-byte-key")
            .unwrap_err();
        assert!(!err.to_string().contains("sixteen"), "{err}");
        assert!(!format!("{err:?}").contains("sixteen"), "{err:?}");
    }
}

//! The configuration file (`amphi.toml`) and its validation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use amphi_auth::KeySet;
use serde::Deserialize;

/// Where the development server listens unless told otherwise.
pub const DEV_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7880);
pub const DEFAULT_UDP_PORT: u16 = 7881;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the web client, the signalling WebSocket and the API.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7880),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The one UDP port all WebRTC media goes through. 0 picks a free port.
    pub udp_port: u16,
    /// The address the UDP socket binds to.
    pub bind_ip: IpAddr,
    /// Addresses given to clients as ICE candidates: the machine's public
    /// addresses, or the public address of a 1:1 NAT in front of it. Empty:
    /// `bind_ip`, which must then not be a wildcard.
    pub public_ips: Vec<IpAddr>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            udp_port: DEFAULT_UDP_PORT,
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_ips: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Longest lifetime a token may have, from now to its `exp`.
    #[serde(with = "humantime_serde_compat")]
    pub max_token_ttl: Duration,
    pub keys: Vec<KeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_token_ttl: Duration::from_secs(24 * 3600),
            keys: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with this key carry in their header.
    pub id: String,
    /// The HS256 secret itself, or:
    pub secret: Option<String>,
    /// a file holding it (surrounding white space is ignored).
    pub secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    pub max_participants: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            max_participants: 200,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("auth.keys[{index}] ({id}): {message}")]
    Key {
        index: usize,
        id: String,
        message: String,
    },
    #[error(
        "no signing key: add an [[auth.keys]] entry to the config file, or run `amphi serve --dev` for a local trial"
    )]
    NoKeys,
    #[error(
        "auth.keys uses the published development secret: anyone could mint tokens for this server; generate a secret of your own (openssl rand -base64 48)"
    )]
    DevSecret,
    #[error(
        "media.public_ips is empty and media.bind_ip is {0}: set media.public_ips to the address clients reach this server at"
    )]
    NoPublicIp(IpAddr),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The signing keys, with secrets read from their files.
    pub fn key_set(&self) -> Result<KeySet, ConfigError> {
        let mut keys = KeySet::new(self.auth.max_token_ttl);
        for (index, k) in self.auth.keys.iter().enumerate() {
            let fail = |message: String| ConfigError::Key {
                index,
                id: k.id.clone(),
                message,
            };
            let secret = match (&k.secret, &k.secret_file) {
                (Some(s), None) => s.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("cannot read secret_file {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
                (Some(_), Some(_)) => {
                    return Err(fail("set either secret or secret_file, not both".into()));
                }
                (None, None) => return Err(fail("set secret or secret_file".into())),
            };
            keys.insert(k.id.clone(), secret.into_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        if keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        if keys.contains_dev_secret() {
            return Err(ConfigError::DevSecret);
        }
        Ok(keys)
    }

    /// The addresses to advertise as ICE candidates for a socket bound to
    /// `bound`.
    pub fn candidate_addrs(&self, bound: SocketAddr) -> Result<Vec<SocketAddr>, ConfigError> {
        if self.media.public_ips.is_empty() {
            if bound.ip().is_unspecified() {
                return Err(ConfigError::NoPublicIp(bound.ip()));
            }
            return Ok(vec![bound]);
        }
        Ok(self
            .media
            .public_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, bound.port()))
            .collect())
    }
}

/// Durations written as `"24h"`, `"90m"`, `"30s"`.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        amphi_auth::parse_ttl(&text).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_with_a_key() {
        let c = Config::parse(
            r#"
            [media]
            public_ips = ["192.0.2.7"]
            [[auth.keys]]
            id = "portal"
            secret = "0123456789abcdef0123456789abcdef"
            "#,
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.key_set().unwrap().len(), 1);
        let addrs = c.candidate_addrs("0.0.0.0:7881".parse().unwrap()).unwrap();
        assert_eq!(addrs, vec!["192.0.2.7:7881".parse().unwrap()]);
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../../deploy/amphi.example.toml");
        let c = Config::parse(text, Path::new("amphi.example.toml")).unwrap();
        assert_eq!(c.media.udp_port, DEFAULT_UDP_PORT);
        assert_eq!(c.rooms.max_participants, 200);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[media]\nudp_prot = 5\n", Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("udp_prot"), "{err}");
    }

    #[test]
    fn no_keys_is_refused() {
        let c = Config::parse("", Path::new("t.toml")).unwrap();
        assert!(matches!(c.key_set(), Err(ConfigError::NoKeys)));
    }

    #[test]
    fn development_secret_is_refused_in_a_config_file() {
        let text = format!(
            "[[auth.keys]]\nid = \"portal\"\nsecret = \"{}\"\n",
            amphi_auth::DEV_SECRET
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        assert!(matches!(c.key_set(), Err(ConfigError::DevSecret)));
    }

    #[test]
    fn wildcard_bind_needs_public_ip() {
        let c = Config::parse("", Path::new("t.toml")).unwrap();
        assert!(c.candidate_addrs("0.0.0.0:7881".parse().unwrap()).is_err());
    }

    #[test]
    fn secret_is_not_in_debug_output() {
        let c = Config::parse(
            "[[auth.keys]]\nid = \"k\"\nsecret = \"supersecretsupersecretsupersecret\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}

//! The configuration file (`amphi.toml`) and its validation.
//!
//! A configuration comes from three places, later ones winning: the
//! defaults below, the TOML file, and `AMPHI_<SECTION>_<KEY>` environment
//! variables (see [`crate::config_env`]). [`Config::issues`] then checks
//! everything it can without starting the server, so that
//! `amphi config check` and `amphi serve` refuse the same mistakes, each
//! reported with the key it concerns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use amphi_auth::KeySet;
use serde::{Deserialize, Serialize};

/// Where the development server listens unless told otherwise.
pub const DEV_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7880);
pub const DEFAULT_UDP_PORT: u16 = 7881;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub webhooks: Vec<WebhookConfig>,
    /// The embedded TURN server (crate::turn).
    pub turn: crate::turn::TurnConfig,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// After SIGTERM, how long existing rooms may go on before the server
    /// closes them and exits.
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// `[http.tls]`: when both are set, the server speaks HTTPS itself.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Empty: plain HTTP.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.key.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `info,amphi_room=debug`, …
    /// The `AMPHI_LOG` environment variable, when set, wins.
    pub level: String,
    /// Replace participants' identities by a short hash wherever they are
    /// logged (they are never logged at `info`).
    pub hash_identities: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info,str0m=warn,is=warn".into(),
            hash_identities: false,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`/metrics`, `/healthz`,
    /// `/readyz`). Empty: no metrics listener.
    pub listen: String,
}

impl MetricsConfig {
    pub fn addr(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        if self.listen.trim().is_empty() {
            return Ok(None);
        }
        self.listen.trim().parse().map(Some)
    }
}

/// One `[[webhooks]]` receiver.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (or `http://…` on a trusted network).
    pub url: String,
    /// The HMAC-SHA256 key for `Amphi-Signature`, or:
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// a file holding it (surrounding white space is ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

/// Shortest webhook secret accepted: a guessable key would let anyone
/// forge events.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// Reads a secret given inline or as a file.
fn read_secret(secret: &Option<String>, secret_file: &Option<PathBuf>) -> Result<String, String> {
    match (secret, secret_file) {
        (Some(s), None) => Ok(s.clone()),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("cannot read secret_file {}: {e}", path.display())),
        (Some(_), Some(_)) => Err("set either secret or secret_file, not both".into()),
        (None, None) => Err("set secret or secret_file".into()),
    }
}

impl WebhookConfig {
    /// The signing secret, read from its file if need be.
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        let s = read_secret(&self.secret, &self.secret_file)?;
        if s.len() < MIN_WEBHOOK_SECRET_BYTES {
            return Err(format!(
                "the secret is {} bytes long; use at least {MIN_WEBHOOK_SECRET_BYTES} (openssl rand -hex 32)",
                s.len()
            ));
        }
        Ok(s.into_bytes())
    }
}

/// One problem in a configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `media.udp_port`, `auth.keys[0].secret_file`, or an environment
    /// variable's name when the value came from there.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Issue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the web client, the signalling WebSocket and the API.
    pub listen: SocketAddr,
    pub tls: TlsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7880),
            tls: TlsConfig::default(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
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
    /// Offer ICE over TCP (passive TCP candidates, RFC 6544) besides UDP, for
    /// networks that block UDP.
    pub ice_tcp: bool,
    /// The TCP port for ICE-TCP. Unset: the same number as `udp_port` (so
    /// one port, both protocols, is what a firewall must open); 0 picks a
    /// free port.
    pub tcp_port: Option<u16>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            udp_port: DEFAULT_UDP_PORT,
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_ips: Vec::new(),
            ice_tcp: true,
            tcp_port: None,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with this key carry in their header.
    pub id: String,
    /// The HS256 secret itself, or:
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// a file holding it (surrounding white space is ignored).
    #[serde(default)]
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

#[derive(Debug, Deserialize, Serialize)]
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
    /// Everything wrong with a configuration, one issue per line.
    #[error("{}", issues.iter().map(|i| format!("{}: {i}", path.display())).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, issues: Vec<Issue> },
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
    /// Reads `path` (if any), applies `AMPHI_*` overrides from `env`, and
    /// checks the result: what `amphi serve` and `amphi config check` do.
    /// `dev` relaxes the checks `--dev` makes moot (keys, public address).
    pub fn load_checked(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        dev: bool,
    ) -> Result<Config, ConfigError> {
        let shown = path.unwrap_or(Path::new("(no file)"));
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let config = Self::parse_with_env(&text, shown, env)?;
        let issues = config.issues(dev);
        if !issues.is_empty() {
            return Err(ConfigError::Invalid {
                path: shown.to_owned(),
                issues,
            });
        }
        Ok(config)
    }

    /// Parses a file's text alone (no environment, no checks).
    #[cfg(test)]
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse_with_env(text, path, std::iter::empty())
    }

    /// Parses, then overrides with `AMPHI_*` variables from `env`. Type
    /// errors name the key (`media.udp_port: invalid type…`), or the
    /// variable when the bad value came from one.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |issues| ConfigError::Invalid {
            path: path.to_owned(),
            issues,
        };
        let from_env = crate::config_env::apply(&mut table, env).map_err(invalid)?;
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let var = from_env.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            let key = match var {
                Some(var) => format!("{key} (from {var})"),
                None => key,
            };
            invalid(vec![Issue::new(key, e.inner().to_string())])
        })
    }

    /// Everything wrong with this configuration that can be known without
    /// binding sockets: secrets readable and long enough, certificate and
    /// key loadable, addresses parseable, and so on.
    pub fn issues(&self, dev: bool) -> Vec<Issue> {
        let mut issues = Vec::new();
        if !dev {
            match self.key_set() {
                Ok(_) => {}
                Err(ConfigError::Key { index, message, .. }) => {
                    issues.push(Issue::new(format!("auth.keys[{index}]"), message))
                }
                Err(e) => issues.push(Issue::new("auth.keys", e.to_string())),
            }
            if self.media.public_ips.is_empty() && self.media.bind_ip.is_unspecified() {
                issues.push(Issue::new(
                    "media.public_ips",
                    format!(
                        "empty while media.bind_ip is {}: set it to the address clients reach this server at",
                        self.media.bind_ip
                    ),
                ));
            }
        }
        if self.auth.max_token_ttl.is_zero() {
            issues.push(Issue::new("auth.max_token_ttl", "must be longer than 0s"));
        }
        if self.rooms.max_participants == 0 {
            issues.push(Issue::new("rooms.max_participants", "must be at least 1"));
        }
        let tls = &self.http.tls;
        if tls.enabled() {
            if tls.cert.as_os_str().is_empty() {
                issues.push(Issue::new(
                    "http.tls.cert",
                    "http.tls.key is set but not cert",
                ));
            } else if tls.key.as_os_str().is_empty() {
                issues.push(Issue::new(
                    "http.tls.key",
                    "http.tls.cert is set but not key",
                ));
            } else if let Err(e) = crate::tls::load_certified_key(&tls.cert, &tls.key) {
                issues.push(Issue::new(e.key(), e.to_string()));
            }
        }
        if let Err(e) = self.metrics.addr() {
            issues.push(Issue::new(
                "metrics.listen",
                format!(
                    "{:?} is not an address such as 127.0.0.1:9090: {e}",
                    self.metrics.listen
                ),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            issues.push(Issue::new(
                "log.level",
                format!("{:?}: {e}", self.log.level),
            ));
        }
        let others = crate::turn::OtherListeners {
            media_udp: SocketAddr::new(self.media.bind_ip, self.media.udp_port),
            media_tcp: self.tcp_bind(),
            http: self.http.listen,
            http_tls: tls.enabled(),
        };
        for (key, message) in self.turn.issues(self.media.bind_ip, &others) {
            issues.push(Issue::new(key, message));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if let Err(e) = crate::webhooks::Endpoint::parse_url(&w.url) {
                issues.push(Issue::new(format!("webhooks[{i}].url"), e));
            }
            if let Err(e) = w.secret() {
                issues.push(Issue::new(format!("webhooks[{i}].secret"), e));
            }
        }
        issues
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
            let secret = read_secret(&k.secret, &k.secret_file).map_err(fail)?;
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

    /// Where the ICE-TCP listener binds, when ICE-TCP is on.
    pub fn tcp_bind(&self) -> Option<SocketAddr> {
        let port = self.media.tcp_port.unwrap_or(self.media.udp_port);
        self.media
            .ice_tcp
            .then(|| SocketAddr::new(self.media.bind_ip, port))
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

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let secs = d.as_secs();
        let text = if secs > 0 && secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs > 0 && secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        };
        s.serialize_str(&text)
    }

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

    const EXAMPLE: &str = include_str!("../../../deploy/amphi.example.toml");

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn issues_of(text: &str, vars: &[(&str, &str)]) -> Vec<Issue> {
        match Config::parse_with_env(text, Path::new("t.toml"), env(vars)) {
            Ok(c) => c.issues(false),
            Err(ConfigError::Invalid { issues, .. }) => issues,
            Err(e) => vec![Issue::new("(parse)", e.to_string())],
        }
    }

    /// The text of `[section]` in the example file, up to the next header.
    fn example_section(section: &str) -> String {
        let header = format!("[{section}]");
        let mut out = String::new();
        let mut inside = false;
        for line in EXAMPLE.lines() {
            let t = line.trim_start_matches('#').trim();
            if t.starts_with('[') {
                inside = t == header;
                continue;
            }
            if inside {
                out.push_str(t);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        for (path, _, default) in crate::config_env::keys() {
            let (section, key) = path.rsplit_once('.').unwrap();
            let text = example_section(section);
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{key} =")))
                .unwrap_or_else(|| {
                    panic!("{path} is not in deploy/amphi.example.toml [{section}]")
                });
            let Some(default) = default else { continue };
            // Keys shown uncommented carry the default itself.
            let mut v: Option<&toml::Value> = None;
            for (i, part) in path.split('.').enumerate() {
                v = if i == 0 {
                    example.get(part)
                } else {
                    v.and_then(|t| t.get(part))
                };
            }
            match v {
                Some(v) => assert_eq!(
                    v, &default,
                    "{path}: the example shows {v}, the default is {default}"
                ),
                None => assert!(
                    line.contains(&default.to_string()),
                    "{path}: {line:?} should show {default}"
                ),
            }
        }
        for (path, fields) in crate::config_env::TABLE_ARRAYS {
            let text = example_section(&format!("[{path}]"));
            for f in *fields {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{f} ="))),
                    "[[{path}]] {f} is not shown in the example"
                );
            }
        }
        assert!(
            EXAMPLE.contains("AMPHI_MEDIA_UDP_PORT"),
            "the example explains the environment variables"
        );
    }

    #[test]
    fn environment_overrides_every_kind_of_key() {
        let c = Config::parse_with_env(
            "[media]\nudp_port = 1000\n[[auth.keys]]\nid = \"a\"\nsecret = \"x\"\n",
            Path::new("t.toml"),
            env(&[
                ("AMPHI_MEDIA_UDP_PORT", "7999"),
                ("AMPHI_HTTP_LISTEN", "127.0.0.1:8443"),
                ("AMPHI_MEDIA_PUBLIC_IPS", "192.0.2.7, 2001:db8::7"),
                ("AMPHI_MEDIA_TCP_PORT", "443"),
                ("AMPHI_LOG_HASH_IDENTITIES", "true"),
                ("AMPHI_SERVER_DRAIN_TIMEOUT", "2m"),
                ("AMPHI_HTTP_TLS_CERT", "/etc/amphi/cert.pem"),
                ("AMPHI_AUTH_KEYS_0_SECRET_FILE", "/run/secrets/a"),
                ("AMPHI_WEBHOOKS_0_URL", "https://lms.example/hook"),
                ("AMPHI_WEBHOOKS_0_SECRET", "0123456789abcdef"),
                // Not configuration keys: left alone.
                ("AMPHI_LOG", "debug"),
                ("AMPHI_BIN", "/x"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.media.udp_port, 7999);
        assert_eq!(c.http.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(c.media.public_ips.len(), 2);
        assert_eq!(c.media.tcp_port, Some(443));
        assert!(c.log.hash_identities);
        assert_eq!(c.server.drain_timeout, Duration::from_secs(120));
        assert_eq!(c.http.tls.cert, PathBuf::from("/etc/amphi/cert.pem"));
        assert_eq!(c.auth.keys[0].id, "a");
        assert_eq!(c.auth.keys[0].secret_file, Some("/run/secrets/a".into()));
        assert_eq!(c.webhooks[0].url, "https://lms.example/hook");
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let issues = issues_of("", &[("AMPHI_MEDIA_UDP_PROT", "1")]);
        assert_eq!(issues[0].key, "AMPHI_MEDIA_UDP_PROT", "{issues:?}");
        let issues = issues_of("", &[("AMPHI_MEDIA_UDP_PORT", "lots")]);
        assert_eq!(issues[0].key, "AMPHI_MEDIA_UDP_PORT", "{issues:?}");
        let issues = issues_of("", &[("AMPHI_MEDIA_UDP_PORT", "70000")]);
        assert!(
            issues[0].key.contains("media.udp_port")
                && issues[0].key.contains("AMPHI_MEDIA_UDP_PORT"),
            "{issues:?}"
        );
        let issues = issues_of("", &[("AMPHI_WEBHOOKS_3_URL", "https://x/")]);
        assert_eq!(issues[0].key, "AMPHI_WEBHOOKS_3_URL", "{issues:?}");
    }

    #[test]
    fn each_kind_of_error_names_its_key() {
        let key = "[[auth.keys]]\nid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
        let ip = [("AMPHI_MEDIA_PUBLIC_IPS", "192.0.2.1")];
        assert_eq!(issues_of(key, &ip), vec![], "a valid file");
        let cases: &[(&str, &str)] = &[
            ("[media]\nudp_port = \"x\"\n", "media.udp_port"),
            ("[media]\nbind_ip = \"nowhere\"\n", "media.bind_ip"),
            (
                "[server]\ndrain_timeout = \"soon\"\n",
                "server.drain_timeout",
            ),
            ("[log]\nformat = \"xml\"\n", "log.format"),
            ("[log]\nlevel = \"info,,=[\"\n", "log.level"),
            ("[metrics]\nlisten = \"port 9090\"\n", "metrics.listen"),
            (
                "[http.tls]\ncert = \"/nonexistent/cert.pem\"\n",
                "http.tls.key",
            ),
            (
                "[http.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
                "http.tls.cert",
            ),
            ("[rooms]\nmax_participants = 0\n", "rooms.max_participants"),
            (
                "[[webhooks]]\nurl = \"ftp://x/\"\nsecret = \"0123456789abcdef\"\n",
                "webhooks[0].url",
            ),
            (
                "[[webhooks]]\nurl = \"https://x/\"\nsecret = \"short\"\n",
                "webhooks[0].secret",
            ),
            (
                "[[webhooks]]\nurl = \"https://x/\"\nsecret_file = \"/nonexistent\"\n",
                "webhooks[0].secret",
            ),
        ];
        for (extra, want) in cases {
            let text = format!("{key}{extra}");
            let issues = issues_of(&text, &ip);
            assert!(
                issues.iter().any(|i| i.key.starts_with(want)),
                "{extra:?}: expected an issue about {want}, got {issues:?}"
            );
        }
        let issues = issues_of("[[auth.keys]]\nid = \"k\"\nsecret = \"short\"\n", &[]);
        assert!(issues.iter().any(|i| i.key == "auth.keys[0]"), "{issues:?}");
        assert!(
            issues.iter().any(|i| i.key == "media.public_ips"),
            "{issues:?}"
        );
    }

    #[test]
    fn webhook_secret_is_not_in_debug_output() {
        let c = Config::parse(
            "[[webhooks]]\nurl = \"https://x/\"\nsecret = \"hooksecrethooksecret\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hooksecret"));
    }
}

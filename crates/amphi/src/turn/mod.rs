//! The embedded TURN server (RFC 5766, UDP relay; clients over UDP, TCP or TLS),
//! for networks that let nothing through but a TCP port such as 443.
//!
//! It is a TURN server for this SFU only, not an open relay: a client may
//! create permissions and channels only towards the SFU's own media
//! addresses (its advertised UDP candidates), and relayed datagrams go to the
//! SFU's socket directly (so relaying works behind a 1:1 NAT without
//! hair-pinning). To the SFU a relayed client is just another UDP peer.
//!
//! Credentials are the usual "TURN REST API" scheme, short-lived and
//! computed per participant at join: username `<expiry unix time>:<participant
//! id>`, password `base64(HMAC-SHA1(secret, username))`. An expired username
//! cannot create an allocation; an allocation created in time lives on while
//! its client refreshes it (so a lecture outlives its credentials).

pub mod stun;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amphi_protocol::IceServer;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use self::stun::{Builder, Class, Message};
use crate::metrics::{Ops, TurnAllocationGauge, TurnTransport};

/// Default port of TURN (RFC 5766), UDP and TCP.
pub const DEFAULT_PORT: u16 = 3478;
/// An allocation's lifetime when the client asks for none, and the most it
/// may ask for (RFC 5766 6.2).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Permissions and channel bindings (RFC 5766 8, 11).
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Frames queued for a TCP/TLS client at most; more are dropped.
const TCP_QUEUE: usize = 256;
/// A TCP client must send a valid first message within this time.
const TCP_FIRST_MESSAGE: Duration = Duration::from_secs(10);
/// How long a TCP client may stay silent (it refreshes every few minutes
/// and ICE consent checks every few seconds).
const TCP_IDLE: Duration = Duration::from_secs(120);

/// `[turn]` in the configuration file.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Run the TURN server. Needs `secret` or `secret_file`.
    pub enabled: bool,
    /// UDP port (0: off).
    pub udp_port: u16,
    /// TCP port (0: off). Put 443 here, or in `tls_port`, for networks that
    /// allow nothing else.
    pub tcp_port: u16,
    /// TURN over TLS ("turns:") port (0: off). Uses the certificate of
    /// `[http.tls]`.
    pub tls_port: u16,
    /// Address the listeners bind to (default: `media.bind_ip`).
    pub bind_ip: Option<IpAddr>,
    /// Host name or address given to clients in the `turn:` URLs (default:
    /// the first of `media.public_ips`, else the bind address). A `turns:`
    /// URL needs the name the certificate is for.
    pub host: Option<String>,
    /// The realm of long-term credentials.
    pub realm: String,
    /// The shared secret credentials are derived from; or:
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// a file holding it.
    pub secret_file: Option<PathBuf>,
    /// How long handed-out credentials may start an allocation.
    #[serde(with = "duration_text")]
    pub credential_ttl: Duration,
    /// Allocations at most (each is a UDP socket).
    pub max_allocations: usize,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("enabled", &self.enabled)
            .field("udp_port", &self.udp_port)
            .field("tcp_port", &self.tcp_port)
            .field("tls_port", &self.tls_port)
            .field("bind_ip", &self.bind_ip)
            .field("host", &self.host)
            .field("realm", &self.realm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("credential_ttl", &self.credential_ttl)
            .field("max_allocations", &self.max_allocations)
            .finish()
    }
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: false,
            udp_port: DEFAULT_PORT,
            tcp_port: DEFAULT_PORT,
            tls_port: 0,
            bind_ip: None,
            host: None,
            realm: "amphi".into(),
            secret: None,
            secret_file: None,
            credential_ttl: Duration::from_secs(3600),
            max_allocations: 2000,
        }
    }
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        amphi_auth::parse_ttl(&text).map_err(|e| serde::de::Error::custom(e.to_string()))
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        // As written in the example file: "1h", "10m", "45s".
        let secs = d.as_secs();
        let text = match secs {
            0 => "0s".to_string(),
            s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
            s if s.is_multiple_of(60) => format!("{}m", s / 60),
            s => format!("{s}s"),
        };
        s.serialize_str(&text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("turn.enabled needs turn.secret or turn.secret_file")]
    NoSecret,
    #[error("turn: set either secret or secret_file, not both")]
    TwoSecrets,
    #[error("turn.secret_file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("turn.secret is shorter than 16 bytes")]
    ShortSecret,
    #[error("cannot bind the TURN {what} listener to {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl TurnConfig {
    /// The secret, read from its file if need be.
    pub fn secret(&self) -> Result<Vec<u8>, TurnError> {
        let s = match (&self.secret, &self.secret_file) {
            (Some(s), None) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| TurnError::SecretFile {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
            (Some(_), Some(_)) => return Err(TurnError::TwoSecrets),
            (None, None) => return Err(TurnError::NoSecret),
        };
        if s.len() < 16 {
            return Err(TurnError::ShortSecret);
        }
        Ok(s.into_bytes())
    }
}

/// The other listeners of the server, for `TurnConfig::issues` to find
/// port clashes before a bind fails at start-up.
pub struct OtherListeners {
    /// The media UDP socket.
    pub media_udp: SocketAddr,
    /// The ICE-TCP listener, if on.
    pub media_tcp: Option<SocketAddr>,
    pub http: SocketAddr,
    /// `[http.tls]` is configured (TURN over TLS uses its certificate).
    pub http_tls: bool,
}

impl TurnConfig {
    /// Everything wrong with `[turn]` that can be known without binding
    /// sockets, as (key, message). Nothing is checked while the server is
    /// off: an unused section must not stop a server from starting.
    pub fn issues(&self, media_bind_ip: IpAddr, other: &OtherListeners) -> Vec<(String, String)> {
        let mut issues: Vec<(String, String)> = Vec::new();
        if !self.enabled {
            return issues;
        }
        let mut issue = |key: &str, message: String| issues.push((format!("turn.{key}"), message));
        match self.secret() {
            Ok(_) => {}
            Err(e @ TurnError::SecretFile { .. }) => issue("secret_file", e.to_string()),
            Err(TurnError::ShortSecret) if self.secret.is_none() => issue(
                "secret_file",
                "the secret in it is shorter than 16 bytes (openssl rand -hex 32)".into(),
            ),
            Err(TurnError::ShortSecret) => issue(
                "secret",
                "shorter than 16 bytes (openssl rand -hex 32)".into(),
            ),
            Err(e) => issue("secret", e.to_string()),
        }
        if self.udp_port == 0 && self.tcp_port == 0 && self.tls_port == 0 {
            issue(
                "udp_port",
                "turn.udp_port, tcp_port and tls_port are all 0: no TURN listener".into(),
            );
        }
        if self.tls_port != 0 && !other.http_tls {
            issue(
                "tls_port",
                "TURN over TLS uses the certificate of [http.tls], which is not set".into(),
            );
        }
        if self.tls_port != 0 && self.tls_port == self.tcp_port {
            issue(
                "tls_port",
                format!("{} is also turn.tcp_port", self.tls_port),
            );
        }
        // Two listeners of one protocol on one port: the second bind would
        // fail at start-up, with a less helpful message.
        let ip = self.bind_ip.unwrap_or(media_bind_ip);
        let clash = |port: u16, with: SocketAddr| {
            port != 0
                && port == with.port()
                && (ip == with.ip() || ip.is_unspecified() || with.ip().is_unspecified())
        };
        if clash(self.udp_port, other.media_udp) {
            issue(
                "udp_port",
                format!("{} is also media.udp_port", self.udp_port),
            );
        }
        for (key, port) in [("tcp_port", self.tcp_port), ("tls_port", self.tls_port)] {
            if other.media_tcp.is_some_and(|a| clash(port, a)) {
                issue(
                    key,
                    format!("{port} is also the ICE-TCP port (media.tcp_port)"),
                );
            }
            if clash(port, other.http) {
                issue(key, format!("{port} is also the port of http.listen"));
            }
        }
        if self.realm.trim().is_empty() {
            issue("realm", "must not be empty".into());
        } else if self.realm.contains('"') || self.realm.chars().any(char::is_control) {
            issue(
                "realm",
                "must not contain quotes or control characters".into(),
            );
        }
        if let Some(host) = &self.host
            && (host.is_empty() || host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c)))
        {
            issue(
                "host",
                format!("{host:?} is not a host name or address for a turn: URL"),
            );
        }
        // credential_ttl: "0s" and nonsense are refused when parsing, with
        // the key (amphi_auth::parse_ttl).
        if self.max_allocations == 0 {
            issue("max_allocations", "must be at least 1".into());
        }
        issues
    }
}

/// The password of `username` (TURN REST API scheme).
pub fn password(secret: &[u8], username: &str) -> String {
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The long-term credential key (RFC 5389 15.4).
fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(format!("{username}:{realm}:{password}").as_bytes());
    h.finalize().into()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Makes the `ice_servers` of one participant's `joined`: the TURN URLs
/// with credentials valid for `ttl` from now.
#[derive(Clone)]
pub struct CredentialMinter {
    secret: Arc<Vec<u8>>,
    urls: Vec<String>,
    ttl: Duration,
}

impl std::fmt::Debug for CredentialMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialMinter")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CredentialMinter {
    pub fn ice_servers(&self, participant: &str) -> Vec<IceServer> {
        let username = format!("{}:{participant}", now_unix() + self.ttl.as_secs());
        let credential = password(&self.secret, &username);
        vec![IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }]
    }
}

/// Where the TURN server relays to: the SFU.
#[derive(Debug, Clone)]
pub struct SfuTarget {
    /// The SFU's advertised UDP candidates: the only peers clients may name.
    pub advertised: Vec<SocketAddr>,
    /// The SFU's bound UDP address.
    pub bound: SocketAddr,
}

impl SfuTarget {
    /// Where relayed datagrams really go, and the IP relay sockets bind to:
    /// the SFU's own socket, over loopback when it listens on a wildcard.
    fn local(&self) -> SocketAddr {
        let ip = match self.bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.bound.port())
    }

    fn allows(&self, peer: SocketAddr) -> bool {
        peer == self.local() || peer == self.bound || self.advertised.contains(&peer)
    }

    /// The SFU address a client names as `peer`, or `None` if it is not the
    /// SFU. TURN permissions are per IP, but this server is stricter: the
    /// peer must be one of the SFU's candidates exactly (which is what
    /// browsers name: an ICE-lite server has no other candidates).
    fn resolve(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.allows(peer).then_some(peer)
    }
}

/// What the TURN server listens on, once started.
#[derive(Debug, Clone)]
pub struct TurnHandle {
    pub minter: CredentialMinter,
}

/// How to reach one client.
#[derive(Clone)]
enum Sink {
    Udp(Arc<UdpSocket>, SocketAddr),
    Stream(mpsc::Sender<Vec<u8>>),
}

impl Sink {
    fn send(&self, data: Vec<u8>) {
        match self {
            // A full buffer loses this datagram, as UDP does.
            Sink::Udp(sock, addr) => {
                let _ = sock.try_send_to(&data, *addr);
            }
            Sink::Stream(tx) => {
                let _ = tx.try_send(data);
            }
        }
    }
}

/// A client's transport 5-tuple, as far as this server can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    Udp(SocketAddr),
    /// One per TCP or TLS connection (ids are unique across both; the
    /// transport is here for metrics).
    Stream(u64, TurnTransport),
}

impl ClientKey {
    fn transport(self) -> TurnTransport {
        match self {
            ClientKey::Udp(_) => TurnTransport::Udp,
            ClientKey::Stream(_, t) => t,
        }
    }
}

struct Allocation {
    username: String,
    key: [u8; 16],
    relay: Arc<UdpSocket>,
    expires: Instant,
    /// The SFU address as the client named it, while permitted.
    permission: Option<(SocketAddr, Instant)>,
    /// Channel number bound to the SFU, if any.
    channel: Option<(u16, Instant)>,
    reader: JoinHandle<()>,
    /// Counts this allocation in `/metrics` while it lives.
    _gauge: TurnAllocationGauge,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Shared {
    realm: String,
    nonce: String,
    secret: Vec<u8>,
    sfu: SfuTarget,
    /// The IP given to clients as their relayed address (public, behind NAT).
    relay_public_ip: IpAddr,
    max_allocations: usize,
    allocations: Mutex<HashMap<ClientKey, Allocation>>,
    ops: Arc<Ops>,
}

/// Starts the TURN listeners on the current tokio runtime.
pub async fn start(
    cfg: &TurnConfig,
    bind_ip: IpAddr,
    public_ip: Option<IpAddr>,
    sfu: SfuTarget,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ops: Arc<Ops>,
) -> anyhow::Result<TurnHandle> {
    let secret = cfg.secret()?;
    let bind_ip = cfg.bind_ip.unwrap_or(bind_ip);
    let relay_public_ip = public_ip.unwrap_or(sfu.local().ip());
    let shared = Arc::new(Shared {
        realm: cfg.realm.clone(),
        nonce: format!("{:016x}", rand::random::<u64>()),
        secret: secret.clone(),
        sfu,
        relay_public_ip,
        max_allocations: cfg.max_allocations,
        allocations: Mutex::new(HashMap::new()),
        ops,
    });

    let bind = |port: u16| SocketAddr::new(bind_ip, port);
    let mut handle_udp = None;
    if cfg.udp_port != 0 {
        let addr = bind(cfg.udp_port);
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|source| TurnError::Bind {
                what: "UDP",
                addr,
                source,
            })?;
        handle_udp = Some(sock.local_addr()?);
        tokio::spawn(serve_udp(Arc::new(sock), shared.clone()));
    }
    let mut handle_tcp = None;
    let mut handle_tls = None;
    let ids = Arc::new(std::sync::atomic::AtomicU64::new(1));
    for (port, acceptor, what) in [
        (cfg.tcp_port, None, "TCP"),
        (cfg.tls_port, tls.clone(), "TLS"),
    ] {
        if port == 0 || (what == "TLS" && acceptor.is_none()) {
            if port != 0 {
                warn!(
                    "turn.tls_port is set but [http.tls] has no certificate: TURN over TLS is off"
                );
            }
            continue;
        }
        let addr = bind(port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TurnError::Bind { what, addr, source })?;
        let local = listener.local_addr()?;
        if what == "TCP" {
            handle_tcp = Some(local);
        } else {
            handle_tls = Some(local);
        }
        tokio::spawn(serve_tcp(listener, acceptor, shared.clone(), ids.clone()));
    }
    tokio::spawn(expire(shared.clone()));

    let host = match &cfg.host {
        Some(h) => h.clone(),
        None => match public_ip.unwrap_or(bind_ip) {
            ip if ip.is_unspecified() => shared.sfu.local().ip().to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        },
    };
    let mut urls = Vec::new();
    if let Some(a) = handle_udp {
        urls.push(format!("turn:{host}:{}?transport=udp", a.port()));
    }
    if let Some(a) = handle_tcp {
        urls.push(format!("turn:{host}:{}?transport=tcp", a.port()));
    }
    if let Some(a) = handle_tls {
        urls.push(format!("turns:{host}:{}?transport=tcp", a.port()));
    }
    info!(udp = ?handle_udp, tcp = ?handle_tcp, tls = ?handle_tls, realm = %cfg.realm, "TURN server started");
    Ok(TurnHandle {
        minter: CredentialMinter {
            secret: Arc::new(secret),
            urls,
            ttl: cfg.credential_ttl,
        },
    })
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors for earlier sends: about one client, not the socket.
            Err(e) => {
                debug!("TURN udp receive: {e}");
                continue;
            }
        };
        let sink = Sink::Udp(sock.clone(), from);
        if let Some(reply) = shared.handle(ClientKey::Udp(from), from, &sink, &buf[..n]) {
            sink.send(reply);
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    ids: Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!("TURN accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TCP_FIRST_MESSAGE, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let key = ClientKey::Stream(id, TurnTransport::Tls);
                            serve_stream(s, peer, key, shared).await
                        }
                        _ => debug!(%peer, "TURN TLS handshake failed"),
                    }
                }
                None => {
                    let key = ClientKey::Stream(id, TurnTransport::Tcp);
                    serve_stream(stream, peer, key, shared).await
                }
            }
        });
    }
}

/// One TURN client over TCP or TLS: STUN messages and ChannelData back to
/// back (RFC 5766 11.5: ChannelData padded to 4 bytes on streams).
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    key: ClientKey,
    shared: Arc<Shared>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let sink = Sink::Stream(tx);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut first = true;
    loop {
        let wait = if first { TCP_FIRST_MESSAGE } else { TCP_IDLE };
        let n = match tokio::time::timeout(wait, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        let mut garbage = false;
        while buf.len() - pos >= 4 {
            let rest = &buf[pos..];
            let len = match rest[0] {
                0x00..=0x3F => stun::message_len(rest).unwrap_or(usize::MAX),
                0x40..=0x7F => {
                    (4 + usize::from(u16::from_be_bytes([rest[2], rest[3]]))).div_ceil(4) * 4
                }
                _ => usize::MAX,
            };
            if len == usize::MAX {
                garbage = true;
                break;
            }
            if rest.len() < len {
                break;
            }
            if let Some(reply) = shared.handle(key, peer, &sink, &rest[..len]) {
                sink.send(reply);
            }
            first = false;
            pos += len;
        }
        buf.drain(..pos);
        // A frame is at most 20 + 65535 bytes; anything that does not parse
        // as one is not TURN.
        if garbage {
            debug!(%peer, "TURN over TCP: not a TURN stream; closed");
            break;
        }
    }
    lock(&shared.allocations).remove(&key);
    writer.abort();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent-enough maps behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn expire(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = Instant::now();
        lock(&shared.allocations).retain(|_, a| a.expires > now);
    }
}

impl Shared {
    /// One message from a client; returns the reply, if any.
    fn handle(
        self: &Arc<Self>,
        key: ClientKey,
        from: SocketAddr,
        sink: &Sink,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        if let Some(&first) = data.first()
            && (0x40..=0x7F).contains(&first)
        {
            self.channel_data(key, data);
            return None;
        }
        let msg = Message::parse(data).ok()?;
        match (msg.method, msg.class) {
            (stun::BINDING, Class::Request) => Some(
                Builder::new(stun::BINDING, Class::Success, msg.txid)
                    .xor_addr(stun::XOR_MAPPED_ADDRESS, from)
                    .finish(None),
            ),
            (stun::ALLOCATE, Class::Request) => Some(self.allocate(key, from, sink, &msg)),
            (stun::REFRESH | stun::CREATE_PERMISSION | stun::CHANNEL_BIND, Class::Request) => {
                Some(self.on_allocation(key, &msg))
            }
            (stun::SEND, Class::Indication) => {
                self.send_indication(key, &msg);
                None
            }
            _ => None,
        }
    }

    fn error(&self, msg: &Message, code: u16, reason: &str, key: Option<&[u8]>) -> Vec<u8> {
        let mut b = Builder::new(msg.method, Class::Error, msg.txid).error(code, reason);
        if code == 401 || code == 438 {
            b = b
                .attr(stun::REALM, self.realm.as_bytes())
                .attr(stun::NONCE, self.nonce.as_bytes());
        }
        b.finish(key)
    }

    /// Checks long-term credentials of a request that creates something.
    fn authenticate(&self, msg: &Message) -> Result<(String, [u8; 16]), Vec<u8>> {
        let (Some(username), Some(_), Some(nonce)) = (
            msg.string(stun::USERNAME),
            msg.attr(stun::MESSAGE_INTEGRITY),
            msg.string(stun::NONCE),
        ) else {
            return Err(self.error(msg, 401, "Unauthorized", None));
        };
        if nonce != self.nonce {
            return Err(self.error(msg, 438, "Stale Nonce", None));
        }
        let expiry = username
            .split_once(':')
            .and_then(|(t, _)| t.parse::<u64>().ok());
        if expiry.is_none_or(|t| t < now_unix()) {
            debug!(username, "TURN: expired or malformed username");
            return Err(self.error(msg, 401, "Unauthorized", None));
        }
        let key = long_term_key(username, &self.realm, &password(&self.secret, username));
        if !msg.integrity_ok(&key) {
            debug!(username, "TURN: wrong credentials");
            return Err(self.error(msg, 401, "Unauthorized", None));
        }
        Ok((username.to_owned(), key))
    }

    fn allocate(
        self: &Arc<Self>,
        ck: ClientKey,
        from: SocketAddr,
        sink: &Sink,
        msg: &Message,
    ) -> Vec<u8> {
        let (username, key) = match self.authenticate(msg) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let mut allocations = lock(&self.allocations);
        if let Some(a) = allocations.get(&ck) {
            return self.error(msg, 437, "Allocation Mismatch", Some(&a.key));
        }
        // Only UDP relaying (17), the only transport RFC 5766 defines.
        if msg.attr(stun::REQUESTED_TRANSPORT).and_then(|v| v.first()) != Some(&17) {
            return self.error(msg, 442, "Unsupported Transport Protocol", Some(&key));
        }
        if allocations.len() >= self.max_allocations {
            return self.error(msg, 486, "Allocation Quota Reached", Some(&key));
        }
        let relay_ip = self.sfu.local().ip();
        let relay = match std::net::UdpSocket::bind((relay_ip, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(UdpSocket::from_std)
        {
            Ok(s) => Arc::new(s),
            Err(e) => {
                warn!("TURN: cannot open a relay socket: {e}");
                return self.error(msg, 508, "Insufficient Capacity", Some(&key));
            }
        };
        let Ok(local) = relay.local_addr() else {
            return self.error(msg, 508, "Insufficient Capacity", Some(&key));
        };
        let relayed = SocketAddr::new(self.relay_public_ip, local.port());
        let lifetime = lifetime(msg);
        let reader = tokio::spawn(relay_to_client(
            relay.clone(),
            self.sfu.local(),
            ck,
            sink.clone(),
            // Weak: the allocation (in `self`) owns the reader task.
            Arc::downgrade(self),
        ));
        allocations.insert(
            ck,
            Allocation {
                username,
                key,
                relay,
                expires: Instant::now() + lifetime,
                permission: None,
                channel: None,
                reader,
                _gauge: self.ops.turn_allocated(ck.transport()),
            },
        );
        debug!(client = %from, %relayed, "TURN allocation");
        Builder::new(stun::ALLOCATE, Class::Success, msg.txid)
            .xor_addr(stun::XOR_RELAYED_ADDRESS, relayed)
            .u32(stun::LIFETIME, lifetime.as_secs() as u32)
            .xor_addr(stun::XOR_MAPPED_ADDRESS, from)
            .finish(Some(&key))
    }

    /// Refresh, CreatePermission, ChannelBind: requests on an allocation,
    /// authenticated with its own credentials.
    fn on_allocation(&self, ck: ClientKey, msg: &Message) -> Vec<u8> {
        let mut allocations = lock(&self.allocations);
        let Some(a) = allocations.get_mut(&ck) else {
            return self.error(msg, 437, "Allocation Mismatch", None);
        };
        if msg.string(stun::USERNAME) != Some(a.username.as_str()) || !msg.integrity_ok(&a.key) {
            return self.error(msg, 401, "Unauthorized", None);
        }
        if msg.string(stun::NONCE) != Some(self.nonce.as_str()) {
            return self.error(msg, 438, "Stale Nonce", None);
        }
        let key = a.key;
        let now = Instant::now();
        match msg.method {
            stun::REFRESH => {
                let mut lifetime = lifetime(msg);
                if msg.u32(stun::LIFETIME) == Some(0) {
                    allocations.remove(&ck);
                    lifetime = Duration::ZERO;
                } else {
                    a.expires = now + lifetime;
                }
                Builder::new(stun::REFRESH, Class::Success, msg.txid)
                    .u32(stun::LIFETIME, lifetime.as_secs() as u32)
                    .finish(Some(&key))
            }
            stun::CREATE_PERMISSION => {
                let peers = msg.xor_addrs(stun::XOR_PEER_ADDRESS);
                if peers.is_empty() {
                    return self.error(msg, 400, "Bad Request", Some(&key));
                }
                // Permissions are per IP (RFC 5766 9); a client names the
                // SFU by address and port in its ICE candidate, and only
                // the SFU's own addresses are ever permitted.
                let mut allowed = None;
                for p in peers {
                    match p.and_then(|p| self.sfu.resolve(p)) {
                        Some(sfu) => allowed = Some(sfu),
                        None => {
                            debug!(peer = ?p, "TURN: permission refused (not this SFU)");
                            return self.error(msg, 403, "Forbidden", Some(&key));
                        }
                    }
                }
                if let Some(p) = allowed {
                    a.permission = Some((p, now + PERMISSION_LIFETIME));
                }
                Builder::new(stun::CREATE_PERMISSION, Class::Success, msg.txid).finish(Some(&key))
            }
            _ => {
                let channel = msg
                    .attr(stun::CHANNEL_NUMBER)
                    .and_then(|v| v.get(..2))
                    .map(|v| u16::from_be_bytes([v[0], v[1]]));
                let peer = msg.xor_addr(stun::XOR_PEER_ADDRESS);
                let (Some(channel), Some(peer)) = (channel, peer) else {
                    return self.error(msg, 400, "Bad Request", Some(&key));
                };
                if !(0x4000..=0x7FFF).contains(&channel) {
                    return self.error(msg, 400, "Bad Request", Some(&key));
                }
                if !self.sfu.allows(peer) {
                    debug!(%peer, "TURN: channel refused (not this SFU)");
                    return self.error(msg, 403, "Forbidden", Some(&key));
                }
                if a.channel.is_some_and(|(c, _)| c != channel) {
                    return self.error(msg, 400, "Bad Request", Some(&key));
                }
                a.channel = Some((channel, now + PERMISSION_LIFETIME));
                a.permission = Some((peer, now + PERMISSION_LIFETIME));
                Builder::new(stun::CHANNEL_BIND, Class::Success, msg.txid).finish(Some(&key))
            }
        }
    }

    fn send_indication(&self, ck: ClientKey, msg: &Message) {
        let (Some(peer), Some(data)) = (
            msg.xor_addr(stun::XOR_PEER_ADDRESS),
            msg.attr(stun::DATA_ATTR),
        ) else {
            return;
        };
        let allocations = lock(&self.allocations);
        let Some(a) = allocations.get(&ck) else {
            return;
        };
        let now = Instant::now();
        if a.permission
            .is_some_and(|(p, until)| p.ip() == peer.ip() && until > now)
            && self.sfu.resolve(peer).is_some()
        {
            let _ = a.relay.try_send_to(data, self.sfu.local());
        }
    }

    fn channel_data(&self, ck: ClientKey, data: &[u8]) {
        let [hi, lo, l1, l2, rest @ ..] = data else {
            return;
        };
        let channel = u16::from_be_bytes([*hi, *lo]);
        let len = usize::from(u16::from_be_bytes([*l1, *l2]));
        let Some(payload) = rest.get(..len) else {
            return;
        };
        let allocations = lock(&self.allocations);
        let Some(a) = allocations.get(&ck) else {
            return;
        };
        let now = Instant::now();
        if a.channel
            .is_some_and(|(c, until)| c == channel && until > now)
        {
            let _ = a.relay.try_send_to(payload, self.sfu.local());
        }
    }
}

/// Datagrams from the SFU to one allocation's relay socket, back to the
/// client: as ChannelData when a channel is bound, else a Data indication.
async fn relay_to_client(
    relay: Arc<UdpSocket>,
    sfu: SocketAddr,
    ck: ClientKey,
    sink: Sink,
    shared: std::sync::Weak<Shared>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = relay.recv_from(&mut buf).await else {
            continue;
        };
        // Only the SFU is ever permitted; anything else is dropped.
        if from != sfu {
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let route = {
            let allocations = lock(&shared.allocations);
            let Some(a) = allocations.get(&ck) else {
                return;
            };
            let channel = a.channel.filter(|(_, until)| *until > now).map(|(c, _)| c);
            let peer = a
                .permission
                .filter(|(_, until)| *until > now)
                .map(|(p, _)| p);
            (channel, peer)
        };
        let data = &buf[..n];
        let Ok(len) = u16::try_from(n) else {
            continue;
        };
        let frame = match route {
            (Some(channel), _) => {
                let mut f = Vec::with_capacity(4 + n + 3);
                f.extend_from_slice(&channel.to_be_bytes());
                f.extend_from_slice(&len.to_be_bytes());
                f.extend_from_slice(data);
                // Streams need ChannelData padded to 4 bytes (RFC 5766 11.5).
                if matches!(sink, Sink::Stream(_)) {
                    while !f.len().is_multiple_of(4) {
                        f.push(0);
                    }
                }
                f
            }
            (None, Some(peer)) => Builder::new(stun::DATA, Class::Indication, rand::random())
                .xor_addr(stun::XOR_PEER_ADDRESS, peer)
                .attr(stun::DATA_ATTR, data)
                .finish(None),
            (None, None) => continue,
        };
        sink.send(frame);
    }
}

/// The lifetime a Refresh or Allocate asks for, within bounds.
fn lifetime(msg: &Message) -> Duration {
    msg.u32(stun::LIFETIME)
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(DEFAULT_LIFETIME)
        .clamp(DEFAULT_LIFETIME, MAX_LIFETIME)
}

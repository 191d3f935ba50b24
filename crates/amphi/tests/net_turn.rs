//! The embedded TURN server end to end, over TCP and over TLS (the
//! transports that get through networks allowing nothing but a TCP port
//! such as 443): `joined` hands out short-lived credentials; an allocation
//! with them succeeds, with bad or expired ones it is refused; permissions
//! to anything but the SFU are refused; a str0m peer connection whose only
//! path is the TURN relay completes ICE and DTLS with the SFU and its audio
//! reaches the SFU; `/metrics` counts the allocations by transport.

mod ops_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amphi_client::protocol::{ClientMessage, IceServer, PublishTrack, ServerMessage};
use amphi_client::{RawSignalling, Received, Source, TestServer, tungstenite};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use ops_common::{eventually, metric_sample, metrics_addr};
use sha1::Sha1;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

const SECRET: &str = "turn-test-secret-0123456789abcdef";
const REALM: &str = "amphi.test";
const MAGIC: u32 = 0x2112_A442;

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

// ----- a minimal TURN client (RFC 5766 over TCP) -----------------------

fn password(username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn lt_key(username: &str, password: &str) -> Vec<u8> {
    let mut h = Md5::new();
    h.update(format!("{username}:{REALM}:{password}").as_bytes());
    h.finalize().to_vec()
}

fn xor_addr(addr: SocketAddr, txid: &[u8; 12]) -> Vec<u8> {
    let SocketAddr::V4(a) = addr else {
        panic!("IPv4 only in this test")
    };
    let port = a.port() ^ (MAGIC >> 16) as u16;
    let mut v = vec![0, 1];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend(
        a.ip()
            .octets()
            .iter()
            .zip(MAGIC.to_be_bytes())
            .map(|(x, m)| x ^ m),
    );
    let _ = txid;
    v
}

fn parse_xor_addr(v: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let m = MAGIC.to_be_bytes();
    let ip = [v[4] ^ m[0], v[5] ^ m[1], v[6] ^ m[2], v[7] ^ m[3]];
    SocketAddr::from((ip, port))
}

/// A STUN message: type, attributes, optional MESSAGE-INTEGRITY key.
fn stun(typ: u16, txid: [u8; 12], attrs: &[(u16, Vec<u8>)], key: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&typ.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&MAGIC.to_be_bytes());
    b.extend_from_slice(&txid);
    let push = |b: &mut Vec<u8>, t: u16, v: &[u8]| {
        b.extend_from_slice(&t.to_be_bytes());
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
    };
    for (t, v) in attrs {
        push(&mut b, *t, v);
    }
    if let Some(key) = key {
        let len = (b.len() + 24 - 20) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(key).unwrap();
        mac.update(&b);
        let d = mac.finalize().into_bytes().to_vec();
        push(&mut b, 0x0008, &d);
    }
    let len = (b.len() - 20) as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    b
}

struct Reply {
    typ: u16,
    attrs: Vec<(u16, Vec<u8>)>,
}

impl Reply {
    fn attr(&self, t: u16) -> Option<&[u8]> {
        self.attrs.iter().find(|a| a.0 == t).map(|a| a.1.as_slice())
    }
    fn error_code(&self) -> Option<u16> {
        self.attr(0x0009)
            .map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
    }
}

fn parse_attrs(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut attrs = Vec::new();
    let mut pos = 20;
    while pos + 4 <= msg.len() {
        let t = u16::from_be_bytes([msg[pos], msg[pos + 1]]);
        let l = usize::from(u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]));
        attrs.push((t, msg[pos + 4..pos + 4 + l].to_vec()));
        pos += 4 + l.div_ceil(4) * 4;
    }
    attrs
}

/// TURN over one TCP or TLS connection: `s` carries the bytes, `sock` is
/// the TCP socket under it (for read timeouts).
struct TurnTcp<S: Read + Write = TcpStream> {
    s: S,
    sock: TcpStream,
    buf: Vec<u8>,
    next_txid: u8,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client trusting only `cert` (DER), for `name`: the handshake
/// fails unless the server presents that certificate for that name.
fn tls_connect(addr: SocketAddr, cert: &[u8], name: &str) -> (TlsStream, TcpStream) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert.to_vec()))
        .expect("the test certificate as a trust anchor");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).expect("connect over TCP");
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sock = tcp.try_clone().unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with the trusted certificate");
    }
    (tls, sock)
}

impl TurnTcp<TlsStream> {
    fn connect_tls(addr: SocketAddr, cert: &[u8]) -> Self {
        let (s, sock) = tls_connect(addr, cert, "127.0.0.1");
        TurnTcp {
            s,
            sock,
            buf: Vec::new(),
            next_txid: 0,
        }
    }
}

enum Frame {
    Stun(Vec<u8>),
    Channel(u16, Vec<u8>),
}

impl TurnTcp<TcpStream> {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect to TURN over TCP");
        s.set_nodelay(true).unwrap();
        TurnTcp {
            sock: s.try_clone().unwrap(),
            s,
            buf: Vec::new(),
            next_txid: 0,
        }
    }
}

impl<S: Read + Write> TurnTcp<S> {
    /// `data` as ChannelData on `channel`, padded to 4 bytes (RFC 5766 11.5).
    fn send_channel(&mut self, channel: u16, data: &[u8]) {
        let mut f = Vec::with_capacity(data.len() + 8);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        while !f.len().is_multiple_of(4) {
            f.push(0);
        }
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    fn txid(&mut self) -> [u8; 12] {
        self.next_txid += 1;
        [self.next_txid; 12]
    }

    fn frame(&mut self, timeout: Duration) -> Option<Frame> {
        let end = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf[0] < 0x40 && self.buf.len() >= 20 + len {
                    let m: Vec<u8> = self.buf.drain(..20 + len).collect();
                    return Some(Frame::Stun(m));
                }
                let padded = (4 + len).div_ceil(4) * 4;
                if self.buf[0] >= 0x40 && self.buf.len() >= padded {
                    let m: Vec<u8> = self.buf.drain(..padded).collect();
                    let ch = u16::from_be_bytes([m[0], m[1]]);
                    return Some(Frame::Channel(ch, m[4..4 + len].to_vec()));
                }
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Sends a request and waits for the response with its transaction id.
    fn request(&mut self, typ: u16, attrs: &[(u16, Vec<u8>)], key: Option<&[u8]>) -> Reply {
        let txid = self.txid();
        self.s.write_all(&stun(typ, txid, attrs, key)).unwrap();
        self.s.flush().unwrap();
        loop {
            match self.frame(Duration::from_secs(5)) {
                Some(Frame::Stun(m)) if m[8..20] == txid => {
                    return Reply {
                        typ: u16::from_be_bytes([m[0], m[1]]),
                        attrs: parse_attrs(&m),
                    };
                }
                Some(_) => {}
                None => panic!("no TURN response to 0x{typ:04x}"),
            }
        }
    }
}

const ALLOCATE: u16 = 0x0003;
const CREATE_PERMISSION: u16 = 0x0008;
const CHANNEL_BIND: u16 = 0x0009;
const USERNAME: u16 = 0x0006;
const REALM_ATTR: u16 = 0x0014;
const NONCE: u16 = 0x0015;
const XOR_PEER: u16 = 0x0012;
const XOR_RELAYED: u16 = 0x0016;
const REQ_TRANSPORT: u16 = 0x0019;
const CHANNEL_NUMBER: u16 = 0x000C;

fn auth(username: &str, nonce: &[u8]) -> Vec<(u16, Vec<u8>)> {
    vec![
        (USERNAME, username.as_bytes().to_vec()),
        (REALM_ATTR, REALM.as_bytes().to_vec()),
        (NONCE, nonce.to_vec()),
    ]
}

#[test]
fn turn_over_tcp_relays_only_to_the_sfu_with_valid_credentials() {
    let (turn_tcp, turn_udp, sfu_udp) = (free_tcp_port(), free_udp_port(), free_udp_port());
    let dir = std::env::temp_dir().join(format!("amphi-net-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("amphi.toml");
    std::fs::write(
        &cfg,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n\
             [turn]\nenabled = true\nudp_port = {turn_udp}\ntcp_port = {turn_tcp}\n\
             realm = \"{REALM}\"\nsecret = \"{SECRET}\"\ncredential_ttl = \"10m\"\n"
        ),
    )
    .unwrap();
    let sfu_port = sfu_udp.to_string();
    let srv = TestServer::start(
        env!("CARGO_BIN_EXE_amphi"),
        &[
            "serve",
            "--dev",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--udp-port",
            &sfu_port,
        ],
    )
    .expect("the server starts");
    let sfu: SocketAddr = ([127, 0, 0, 1], sfu_udp).into();
    let turn_addr: SocketAddr = ([127, 0, 0, 1], turn_tcp).into();

    // `joined` carries the TURN URLs and this participant's credentials.
    let token = srv.dev_token("turn-room", "tess", "Tess").unwrap();
    let mut sig = RawSignalling::connect(srv.url()).unwrap();
    sig.send(&ClientMessage::Join {
        token,
        room: None,
        client: None,
    })
    .unwrap();
    let Received::Message(ServerMessage::Joined {
        participant,
        ice_servers,
        ..
    }) = sig.recv(Duration::from_secs(10)).unwrap()
    else {
        panic!("no joined\n{}", srv.log());
    };
    let [
        IceServer {
            urls,
            username: Some(username),
            credential: Some(credential),
        },
    ] = ice_servers.as_slice()
    else {
        panic!("one TURN server with credentials: {ice_servers:?}");
    };
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{turn_tcp}?transport=tcp")),
        "{urls:?}"
    );
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{turn_udp}?transport=udp")),
        "{urls:?}"
    );
    let (expiry, who) = username.split_once(':').expect("<expiry>:<participant>");
    assert_eq!(who, participant.id);
    let expiry: u64 = expiry.parse().unwrap();
    let now = amphi_auth::now_unix();
    assert!(
        expiry > now && expiry <= now + 600 + 5,
        "short-lived: {expiry} vs now {now}"
    );
    assert_eq!(credential, &password(username), "REST API password");

    let mut turn = TurnTcp::connect(turn_addr);
    // No credentials: 401 with realm and nonce.
    let r = turn.request(ALLOCATE, &[(REQ_TRANSPORT, vec![17, 0, 0, 0])], None);
    assert_eq!(r.error_code(), Some(401));
    assert_eq!(r.attr(REALM_ATTR), Some(REALM.as_bytes()));
    let nonce = r.attr(NONCE).expect("a nonce").to_vec();
    let mut attrs = auth(username, &nonce);
    attrs.push((REQ_TRANSPORT, vec![17, 0, 0, 0]));
    // Wrong password.
    let r = turn.request(
        ALLOCATE,
        &attrs,
        Some(&lt_key(username, "not-the-password")),
    );
    assert_eq!(r.error_code(), Some(401), "bad password is refused");
    // Expired (correctly signed) username.
    let old = format!("{}:{}", now - 10, participant.id);
    let mut old_attrs = auth(&old, &nonce);
    old_attrs.push((REQ_TRANSPORT, vec![17, 0, 0, 0]));
    let r = turn.request(ALLOCATE, &old_attrs, Some(&lt_key(&old, &password(&old))));
    assert_eq!(r.error_code(), Some(401), "expired credentials are refused");
    // The real credentials.
    let key = lt_key(username, credential);
    let r = turn.request(ALLOCATE, &attrs, Some(&key));
    assert_eq!(r.typ, 0x0103, "allocate success: {:?}", r.error_code());
    let relayed = parse_xor_addr(r.attr(XOR_RELAYED).expect("a relayed address"));

    // Not an open relay: anything but the SFU is refused.
    for other in ["192.0.2.1:3478", "127.0.0.1:9"] {
        let mut a = auth(username, &nonce);
        a.push((XOR_PEER, xor_addr(other.parse().unwrap(), &[0; 12])));
        let r = turn.request(CREATE_PERMISSION, &a, Some(&key));
        assert_eq!(r.error_code(), Some(403), "permission to {other} refused");
    }
    let mut a = auth(username, &nonce);
    a.push((
        XOR_PEER,
        xor_addr("198.51.100.7:7881".parse().unwrap(), &[0; 12]),
    ));
    a.push((CHANNEL_NUMBER, vec![0x40, 0x00, 0, 0]));
    let r = turn.request(CHANNEL_BIND, &a, Some(&key));
    assert_eq!(r.error_code(), Some(403), "channel to a stranger refused");
    // The SFU: a channel (which also makes a permission).
    let mut a = auth(username, &nonce);
    a.push((XOR_PEER, xor_addr(sfu, &[0; 12])));
    a.push((CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0]));
    let r = turn.request(CHANNEL_BIND, &a, Some(&key));
    assert_eq!(
        r.typ,
        0x0109,
        "channel bind to the SFU: {:?}",
        r.error_code()
    );

    // A publisher connection whose only candidate is the relayed address:
    // ICE, DTLS and its audio reach the SFU through the relay.
    publish_through_relay(
        &mut turn,
        relayed,
        sfu,
        |offer, mid| {
            sig.send(&ClientMessage::PublishOffer {
                sdp: offer,
                tracks: vec![PublishTrack {
                    mid: mid.to_string(),
                    source: Source::Microphone,
                    muted: false,
                }],
            })
            .unwrap();
            loop {
                match sig.recv(Duration::from_secs(10)).unwrap() {
                    Received::Message(ServerMessage::PublishAnswer { sdp }) => break sdp,
                    Received::Message(_) => {}
                    other => panic!("no publish_answer: {other:?}\n{}", srv.log()),
                }
            }
        },
        AUDIO_FRAMES,
        &|| srv.log(),
    );
    let m = metrics_addr(&srv);
    let sample = |series: &str| metric_sample(m, series).unwrap_or(-1.0);
    eventually("the relayed audio in /metrics", WAIT_METRICS, || {
        (sample("amphi_rtp_packets_total{direction=\"in\"}") >= f64::from(AUDIO_FRAMES / 2))
            .then_some(())
    });
    assert_eq!(
        sample("amphi_turn_allocations_total{transport=\"tcp\"}"),
        1.0,
        "one allocation over TCP"
    );
    assert_eq!(sample("amphi_turn_allocations{transport=\"tcp\"}"), 1.0);
    assert_eq!(
        sample("amphi_turn_allocations_total{transport=\"udp\"}"),
        0.0
    );
    let _ = sig.send(&ClientMessage::Leave {});
    let _ = std::fs::remove_dir_all(&dir);
}

/// Opus frames (20 ms each) a relayed publisher sends.
const AUDIO_FRAMES: u32 = 100;
/// The media thread publishes its counters once a second.
const WAIT_METRICS: Duration = Duration::from_secs(10);

/// A publisher connection whose only candidate is `relayed` (a TURN
/// allocation on `turn` with channel 0x4001 bound to the SFU), negotiated
/// by `negotiate(offer, mid) -> answer`: ICE and DTLS with the SFU must go
/// through the relay. Then it sends `audio_frames` Opus frames, one every
/// 20 ms, through the same relay.
fn publish_through_relay<S: Read + Write>(
    turn: &mut TurnTcp<S>,
    relayed: SocketAddr,
    sfu: SocketAddr,
    negotiate: impl FnOnce(String, Mid) -> String,
    audio_frames: u32,
    log: &dyn Fn() -> String,
) {
    let t0 = Instant::now();
    let mut rtc = Rtc::builder().build(t0);
    rtc.add_local_candidate(Candidate::host(relayed, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let answer = negotiate(offer.to_sdp_string(), mid);
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut ice_connected, mut dtls_connected) = (false, false);
    let mut sent = 0u32;
    let mut next_frame = Instant::now();
    let mut done_at = None;
    loop {
        let now = Instant::now();
        assert!(
            now < deadline,
            "over TURN: ice {ice_connected}, dtls {dtls_connected}, {sent} frames sent\n{}",
            log()
        );
        if done_at.is_some_and(|t| now >= t) {
            break;
        }
        if ice_connected && dtls_connected && sent < audio_frames && now >= next_frame {
            let pt = rtc
                .writer(mid)
                .and_then(|w| w.payload_params().next().map(|p| p.pt()))
                .expect("an audio payload type");
            let rtp_time = MediaTime::new(u64::from(sent) * 960, Frequency::FORTY_EIGHT_KHZ);
            rtc.writer(mid)
                .expect("the audio writer")
                .write(pt, now, rtp_time, vec![0xf8, 0xff, 0xfe])
                .expect("an Opus frame written");
            sent += 1;
            next_frame += Duration::from_millis(20);
            if sent == audio_frames {
                // Time for the last packets to leave and arrive.
                done_at = Some(now + Duration::from_millis(300));
            }
        }
        let wait = loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    assert_eq!(t.destination.ip(), sfu.ip());
                    turn.send_channel(0x4001, &t.contents);
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Connected | IceConnectionState::Completed,
                )) => ice_connected = true,
                Output::Event(Event::Connected) => {
                    dtls_connected = true;
                    next_frame = Instant::now();
                }
                Output::Event(_) => {}
                Output::Timeout(t) => break t,
            }
        };
        let wait = wait
            .min(next_frame)
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        match turn.frame(wait) {
            Some(Frame::Channel(0x4001, data)) => {
                let r = Receive::new(Protocol::Udp, sfu, relayed, &data).unwrap();
                rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
            }
            Some(_) => {}
            None => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
        }
    }
}

/// Signalling over WSS (the server speaks TLS when `[http.tls]` is set),
/// trusting only the test certificate.
struct Wss {
    ws: tungstenite::WebSocket<TlsStream>,
    sock: TcpStream,
}

impl Wss {
    fn connect(addr: SocketAddr, cert: &[u8]) -> Self {
        let (tls, sock) = tls_connect(addr, cert, "localhost");
        let (ws, _) = tungstenite::client(format!("wss://localhost:{}/rtc", addr.port()), tls)
            .expect("WSS upgrade");
        Wss { ws, sock }
    }

    fn send(&mut self, m: &ClientMessage) {
        self.ws
            .send(tungstenite::Message::text(m.encode()))
            .expect("a message sent over WSS");
    }

    /// The next server message for which `want` gives something.
    fn until<T>(&mut self, mut want: impl FnMut(ServerMessage) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no awaited message over WSS");
            self.sock
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let msg = self.ws.read().expect("a WSS frame");
            if let Ok(text) = msg.to_text()
                && let Ok(m) = ServerMessage::decode(text)
                && let Some(v) = want(m)
            {
                return v;
            }
        }
    }
}

#[test]
fn turn_over_tls_relays_media_to_the_sfu() {
    let (turn_tls, sfu_udp) = (free_tcp_port(), free_udp_port());
    let dir = ops_common::TempDir::new("net-turn-tls");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = dir.write("cert.pem", &cert.pem());
    let key_pem = dir.write("key.pem", &signing_key.serialize_pem());
    // TLS only: a network that lets nothing but one TLS port through.
    let cfg = dir.write(
        "amphi.toml",
        &format!(
            "[http.tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [turn]\nenabled = true\nudp_port = 0\ntcp_port = 0\ntls_port = {turn_tls}\n\
             realm = \"{REALM}\"\nsecret = \"{SECRET}\"\ncredential_ttl = \"10m\"\n",
            cert_pem.display(),
            key_pem.display()
        ),
    );
    let sfu_port = sfu_udp.to_string();
    let srv = TestServer::start(
        env!("CARGO_BIN_EXE_amphi"),
        &[
            "serve",
            "--dev",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--udp-port",
            &sfu_port,
        ],
    )
    .expect("the server starts");
    assert!(srv.url().starts_with("https://"), "{}", srv.url());
    let sfu: SocketAddr = ([127, 0, 0, 1], sfu_udp).into();
    let http = ops_common::http_addr(&srv);
    let metrics = metrics_addr(&srv);

    let token = srv.dev_token("turn-tls-room", "tom", "Tom").unwrap();
    let mut sig = Wss::connect(http, cert.der());
    sig.send(&ClientMessage::Join {
        token,
        room: None,
        client: None,
    });
    let ice_servers = sig.until(|m| match m {
        ServerMessage::Joined { ice_servers, .. } => Some(ice_servers),
        _ => None,
    });
    let [
        IceServer {
            urls,
            username: Some(username),
            credential: Some(credential),
        },
    ] = ice_servers.as_slice()
    else {
        panic!("one TURN server with credentials: {ice_servers:?}");
    };
    assert_eq!(
        urls,
        &[format!("turns:127.0.0.1:{turn_tls}?transport=tcp")],
        "only the TLS listener is on"
    );

    // The TURN listener presents the [http.tls] certificate, which the
    // client verifies for 127.0.0.1 (the host of the turns: URL).
    let mut turn = TurnTcp::connect_tls(([127, 0, 0, 1], turn_tls).into(), cert.der());
    let r = turn.request(ALLOCATE, &[(REQ_TRANSPORT, vec![17, 0, 0, 0])], None);
    assert_eq!(r.error_code(), Some(401), "credentials needed over TLS too");
    let nonce = r.attr(NONCE).expect("a nonce").to_vec();
    let key = lt_key(username, credential);
    let mut attrs = auth(username, &nonce);
    attrs.push((REQ_TRANSPORT, vec![17, 0, 0, 0]));
    let r = turn.request(ALLOCATE, &attrs, Some(&key));
    assert_eq!(r.typ, 0x0103, "allocate over TLS: {:?}", r.error_code());
    let relayed = parse_xor_addr(r.attr(XOR_RELAYED).expect("a relayed address"));
    let mut a = auth(username, &nonce);
    a.push((
        XOR_PEER,
        xor_addr("192.0.2.1:3478".parse().unwrap(), &[0; 12]),
    ));
    let r = turn.request(CREATE_PERMISSION, &a, Some(&key));
    assert_eq!(r.error_code(), Some(403), "still not an open relay");
    let mut a = auth(username, &nonce);
    a.push((XOR_PEER, xor_addr(sfu, &[0; 12])));
    a.push((CHANNEL_NUMBER, vec![0x40, 0x01, 0, 0]));
    let r = turn.request(CHANNEL_BIND, &a, Some(&key));
    assert_eq!(r.typ, 0x0109, "channel bind over TLS: {:?}", r.error_code());

    publish_through_relay(
        &mut turn,
        relayed,
        sfu,
        |offer, mid| {
            sig.send(&ClientMessage::PublishOffer {
                sdp: offer,
                tracks: vec![PublishTrack {
                    mid: mid.to_string(),
                    source: Source::Microphone,
                    muted: false,
                }],
            });
            sig.until(|m| match m {
                ServerMessage::PublishAnswer { sdp } => Some(sdp),
                _ => None,
            })
        },
        AUDIO_FRAMES,
        &|| srv.log(),
    );
    let sample = |series: &str| metric_sample(metrics, series).unwrap_or(-1.0);
    eventually("the relayed audio in /metrics", WAIT_METRICS, || {
        (sample("amphi_rtp_packets_total{direction=\"in\"}") >= f64::from(AUDIO_FRAMES / 2))
            .then_some(())
    });
    assert_eq!(
        sample("amphi_turn_allocations_total{transport=\"tls\"}"),
        1.0
    );
    assert_eq!(sample("amphi_turn_allocations{transport=\"tls\"}"), 1.0);
    assert_eq!(
        sample("amphi_turn_allocations_total{transport=\"tcp\"}"),
        0.0
    );

    // Closing the TLS connection ends its allocation.
    drop(turn);
    eventually("the allocation to end", WAIT_METRICS, || {
        (sample("amphi_turn_allocations{transport=\"tls\"}") == 0.0).then_some(())
    });
    assert_eq!(
        sample("amphi_turn_allocations_total{transport=\"tls\"}"),
        1.0
    );
    sig.send(&ClientMessage::Leave {});
}

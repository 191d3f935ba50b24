//! ICE over TCP end to end: the real `amphi` binary, one str0m participant
//! whose media goes over ICE-TCP only (RFC 6544 / RFC 4571 framing) and one
//! over UDP, exchanging audio and video through the server while other
//! connections to the TCP port send garbage.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use amphi_client::{ClientOptions, ClientStats, MediaKind, TestParticipant, TestServer};

mod ops_common;
use ops_common::{TempDir, eventually, metric_sample, metrics_addr};

const ROOM: &str = "net-tcp";
/// Generous: debug builds on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);
/// About 2 s of Opus and 1 s of video.
const MIN_AUDIO: u64 = 100;
const MIN_VIDEO: u64 = 90;

/// A TCP port free right now on 127.0.0.1 (the server binds it a moment
/// later; another process taking it in between would fail the test loudly).
fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("its address").port()
}

/// The server, with its metrics listener on (`dir` holds its config).
fn server(tcp_port: u16, dir: &TempDir) -> TestServer {
    let port = tcp_port.to_string();
    let config = dir.write("amphi.toml", "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    TestServer::start(
        env!("CARGO_BIN_EXE_amphi"),
        &[
            "serve",
            "--dev",
            "--config",
            config.to_str().expect("a UTF-8 path"),
            "--listen",
            "127.0.0.1:0",
            "--udp-port",
            "0",
            "--tcp-port",
            &port,
        ],
    )
    .expect("the server starts")
}

fn wait(
    srv: &TestServer,
    who: &TestParticipant,
    what: &str,
    cond: impl FnMut(&ClientStats) -> bool,
) {
    if let Err(e) = who.wait_until(cond, WAIT) {
        panic!("{}: {what}: {e}\nserver log:\n{}", who.id(), srv.log());
    }
}

fn got_media_from(s: &ClientStats, other: &str) -> bool {
    s.from(other, MediaKind::Audio).packets >= MIN_AUDIO
        && s.from(other, MediaKind::Video).packets >= MIN_VIDEO
}

/// Whether the server closed `stream` (EOF or reset) within `timeout`.
fn closed_by_server(stream: &mut TcpStream, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn tcp_only_client_exchanges_media_with_udp_client_despite_garbage() {
    let tcp_port = free_tcp_port();
    let dir = TempDir::new("net-tcp");
    let srv = server(tcp_port, &dir);
    let tcp_addr: SocketAddr = ([127, 0, 0, 1], tcp_port).into();

    // Garbage before anyone joins: a frame that is no WebRTC packet, a
    // zero-length frame, and a length prefix whose body never comes.
    let mut junk = TcpStream::connect(tcp_addr).expect("connect to the TCP port");
    junk.write_all(&[0, 5, b'h', b'e', b'l', b'l', b'o'])
        .expect("write junk");
    let mut empty = TcpStream::connect(tcp_addr).expect("connect to the TCP port");
    empty.write_all(&[0, 0]).expect("write a zero-length frame");
    let mut partial = TcpStream::connect(tcp_addr).expect("connect to the TCP port");
    partial
        .write_all(&[0xff, 0xff, 1, 2, 3])
        .expect("write a partial frame");

    let token = srv.dev_token(ROOM, "udp-alice", "Alice").expect("a token");
    let alice = TestParticipant::spawn(srv.url(), &token)
        .unwrap_or_else(|e| panic!("alice cannot join: {e}\n{}", srv.log()));
    let token = srv.dev_token(ROOM, "tcp-bob", "Bob").expect("a token");
    let opts = ClientOptions {
        ice_tcp: Some(tcp_addr),
        ..ClientOptions::default()
    };
    let bob = TestParticipant::spawn_with(srv.url(), &token, opts)
        .unwrap_or_else(|e| panic!("bob cannot join: {e}\n{}", srv.log()));
    let (a, b) = (alice.id().to_string(), bob.id().to_string());

    assert!(
        closed_by_server(&mut junk, Duration::from_secs(5)),
        "a garbage frame closes its connection"
    );
    assert!(
        closed_by_server(&mut empty, Duration::from_secs(5)),
        "a zero-length frame closes its connection"
    );

    // More garbage during the call, on a fresh connection.
    let mut junk2 = TcpStream::connect(tcp_addr).expect("connect to the TCP port");
    junk2
        .write_all(&[0, 4, 0xde, 0xad, 0xbe, 0xef, 0, 0])
        .expect("write junk");

    wait(&srv, &bob, "bob (TCP) receives alice (UDP)", |s| {
        got_media_from(s, &a)
    });
    wait(&srv, &alice, "alice (UDP) receives bob (TCP)", |s| {
        got_media_from(s, &b)
    });
    assert!(
        closed_by_server(&mut junk2, Duration::from_secs(5)),
        "garbage during a call closes only its own connection"
    );

    // The call goes on after the garbage: both keep receiving.
    let (sa, sb) = (alice.stats(), bob.stats());
    let before_a = sa.from(&b, MediaKind::Video).packets;
    let before_b = sb.from(&a, MediaKind::Video).packets;
    wait(&srv, &alice, "alice keeps receiving bob", |s| {
        s.from(&b, MediaKind::Video).packets >= before_a + MIN_VIDEO
    });
    wait(&srv, &bob, "bob keeps receiving alice", |s| {
        s.from(&a, MediaKind::Video).packets >= before_b + MIN_VIDEO
    });
    // /metrics counts the connections: the three garbage ones, the one
    // during the call and bob's; bob's and the partial one are open.
    let m = metrics_addr(&srv);
    eventually(
        "ICE-TCP connections in /metrics",
        Duration::from_secs(10),
        || {
            let accepted = metric_sample(m, "amphi_ice_tcp_connections_total")?;
            let open = metric_sample(m, "amphi_ice_tcp_connections")?;
            (accepted >= 5.0 && (2.0..accepted).contains(&open)).then_some(())
        },
    );
    // A partial frame is not garbage yet: that connection waits (and the
    // server's first-packet timeout, 10 s, would close it later).
    drop(partial);

    let sb = bob.leave().expect("bob leaves");
    assert!(
        sb.from(&a, MediaKind::Video).keyframes >= 1,
        "video over TCP starts at a keyframe"
    );
    alice.leave().expect("alice leaves");
}

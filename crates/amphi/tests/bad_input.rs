//! The real `amphi` binary fed malformed input: signalling over a real
//! WebSocket, and garbage datagrams on the media port during a call.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use amphi_client::protocol::{ClientMessage, ServerMessage};
use amphi_client::{
    ClientStats, ErrorCode, MediaKind, RawSignalling, Received, TestParticipant, TestServer,
};

const ROOM: &str = "lab";
const WAIT: Duration = Duration::from_secs(30);
const REPLY: Duration = Duration::from_secs(10);

fn server() -> TestServer {
    TestServer::start_dev(env!("CARGO_BIN_EXE_amphi")).expect("the server starts")
}

/// The next message that is not room chatter (`participant_*`,
/// `connection_quality`, `pong`).
fn next_reply(ws: &mut RawSignalling, srv: &TestServer, after: &str) -> Received {
    ws.recv_matching(REPLY, |r| {
        !matches!(
            r,
            Received::Message(
                ServerMessage::ParticipantJoined { .. }
                    | ServerMessage::ParticipantUpdated { .. }
                    | ServerMessage::ParticipantsUpdated { .. }
                    | ServerMessage::ParticipantLeft { .. }
                    | ServerMessage::ConnectionQuality { .. }
                    | ServerMessage::Pong {}
            )
        )
    })
    .unwrap_or_else(|e| panic!("no reply after {after}: {e}\nserver log:\n{}", srv.log()))
}

fn expect_error(ws: &mut RawSignalling, srv: &TestServer, after: &str, code: ErrorCode) {
    match next_reply(ws, srv, after) {
        Received::Message(ServerMessage::Error {
            code: c, message, ..
        }) => {
            assert_eq!(c, code, "after {after}: {message}");
            assert!(!message.is_empty(), "after {after}: the error says why");
        }
        other => panic!("after {after}: expected error {code:?}, got {other:?}"),
    }
}

/// Pings and expects a pong: the connection is still open and served.
fn still_open(ws: &mut RawSignalling, srv: &TestServer, after: &str) {
    ws.send(&ClientMessage::Ping {}).expect("send ping");
    match ws.recv_matching(REPLY, |r| {
        !matches!(
            r,
            Received::Message(
                ServerMessage::ParticipantJoined { .. }
                    | ServerMessage::ParticipantUpdated { .. }
                    | ServerMessage::ParticipantsUpdated { .. }
                    | ServerMessage::ParticipantLeft { .. }
                    | ServerMessage::ConnectionQuality { .. }
            )
        )
    }) {
        Ok(Received::Message(ServerMessage::Pong {})) => {}
        // Before `join`, a ping is "a message other than join".
        Ok(Received::Message(ServerMessage::Error {
            code: ErrorCode::NotJoined,
            ..
        })) => {}
        other => panic!(
            "after {after}: the connection should stay open, got {other:?}\nserver log:\n{}",
            srv.log()
        ),
    }
}

#[test]
fn malformed_signalling_gets_documented_errors() {
    let srv = server();
    let mut ws = RawSignalling::connect(srv.url()).expect("websocket");

    type Send = Box<dyn Fn(&mut RawSignalling)>;
    let cases: Vec<(&str, Send, ErrorCode)> = vec![
        (
            "not JSON",
            Box::new(|ws| ws.send_text("this is not json").unwrap()),
            ErrorCode::BadRequest,
        ),
        (
            "a JSON array",
            Box::new(|ws| ws.send_text("[1,2,3]").unwrap()),
            ErrorCode::BadRequest,
        ),
        (
            "an unknown type",
            Box::new(|ws| ws.send_text(r#"{"type":"dance"}"#).unwrap()),
            ErrorCode::BadRequest,
        ),
        (
            "no type",
            Box::new(|ws| ws.send_text(r#"{"token":"x"}"#).unwrap()),
            ErrorCode::BadRequest,
        ),
        (
            "an unknown field",
            Box::new(|ws| {
                ws.send_text(r#"{"type":"join","token":"x","tokn":"y"}"#)
                    .unwrap()
            }),
            ErrorCode::BadRequest,
        ),
        (
            "a binary frame",
            Box::new(|ws| ws.send_binary(b"{\"type\":\"ping\"}".to_vec()).unwrap()),
            ErrorCode::BadRequest,
        ),
        (
            "a message over the limit",
            Box::new(|ws| {
                let big = format!(
                    r#"{{"type":"join","token":"{}"}}"#,
                    "a".repeat(amphi_protocol::MAX_MESSAGE_BYTES)
                );
                ws.send_text(big).unwrap()
            }),
            ErrorCode::TooLarge,
        ),
        (
            "a publish_offer before join",
            Box::new(|ws| {
                ws.send(&ClientMessage::PublishOffer {
                    sdp: "v=0\r\n".into(),
                    tracks: vec![],
                })
                .unwrap()
            }),
            ErrorCode::NotJoined,
        ),
        (
            "a subscribe_answer before join",
            Box::new(|ws| {
                ws.send(&ClientMessage::SubscribeAnswer {
                    sdp: "v=0\r\n".into(),
                })
                .unwrap()
            }),
            ErrorCode::NotJoined,
        ),
        (
            "leave before join",
            Box::new(|ws| ws.send(&ClientMessage::Leave {}).unwrap()),
            ErrorCode::NotJoined,
        ),
    ];
    for (what, send, code) in &cases {
        send(&mut ws);
        expect_error(&mut ws, &srv, what, *code);
        still_open(&mut ws, &srv, what);
    }

    // The same connection can still join.
    let token = srv.dev_token(ROOM, "tester", "Tester").unwrap();
    ws.send(&ClientMessage::Join {
        token: token.clone(),
        room: None,
        client: Some("bad_input test".into()),
    })
    .unwrap();
    match next_reply(&mut ws, &srv, "join") {
        Received::Message(ServerMessage::Joined { .. }) => {}
        other => panic!("expected joined, got {other:?}"),
    }
    // After join: a second join, garbage, an SDP that is not one.
    ws.send(&ClientMessage::Join {
        token,
        room: None,
        client: None,
    })
    .unwrap();
    expect_error(&mut ws, &srv, "a second join", ErrorCode::AlreadyJoined);
    still_open(&mut ws, &srv, "a second join");
    for (what, text, code) in [
        ("not JSON after join", "{{{", ErrorCode::BadRequest),
        (
            "unknown type after join",
            r#"{"type":"dance"}"#,
            ErrorCode::BadRequest,
        ),
        (
            "a bad mute source",
            r#"{"type":"mute","source":"trumpet","muted":true}"#,
            ErrorCode::BadRequest,
        ),
        (
            "an unparsable publish offer",
            r#"{"type":"publish_offer","sdp":"this is no sdp","tracks":[{"mid":"0","source":"microphone"}]}"#,
            ErrorCode::SdpRejected,
        ),
        (
            "a subscribe answer with no offer pending",
            r#"{"type":"subscribe_answer","sdp":"v=0\r\n"}"#,
            ErrorCode::SdpRejected,
        ),
    ] {
        ws.send_text(text).unwrap();
        expect_error(&mut ws, &srv, what, code);
        still_open(&mut ws, &srv, what);
    }
    ws.send_binary(vec![0u8; 16]).unwrap();
    expect_error(&mut ws, &srv, "binary after join", ErrorCode::BadRequest);
    still_open(&mut ws, &srv, "binary after join");

    // The server is up and a normal client joins and publishes.
    let token = srv.dev_token(ROOM, "normal", "Normal").unwrap();
    let normal = TestParticipant::spawn(srv.url(), &token)
        .unwrap_or_else(|e| panic!("a normal client joins after the abuse: {e}\n{}", srv.log()));
    normal
        .wait_until(|s| s.publisher_connected && s.sent_video.packets > 30, WAIT)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
    ws.send(&ClientMessage::Leave {}).unwrap();
}

#[test]
fn join_must_be_first_and_connection_drop_is_harmless() {
    let srv = server();
    // A connection that sends nothing at all, one that closes mid-way and
    // one that closes right after the handshake.
    let idle = RawSignalling::connect(srv.url()).unwrap();
    {
        let mut ws = RawSignalling::connect(srv.url()).unwrap();
        ws.send_text(r#"{"type":"join","tok"#).unwrap();
        let _ = ws.websocket().get_mut().shutdown(std::net::Shutdown::Both);
    }
    drop(RawSignalling::connect(srv.url()).unwrap());
    let token = srv.dev_token(ROOM, "normal", "Normal").unwrap();
    let normal = TestParticipant::spawn(srv.url(), &token).expect("join");
    drop(idle);
    normal.leave().expect("leave");
}

/// Garbage datagrams of every sort, sent to the server's media port from a
/// foreign socket.
fn garbage() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut x: u32 = 0x1234_5678;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    // Random bytes of many lengths.
    for len in [
        1usize, 2, 3, 4, 11, 12, 13, 20, 64, 100, 200, 500, 1000, 1200, 1500,
    ] {
        out.push((0..len).map(|_| rnd() as u8).collect());
    }
    out.push(Vec::new());
    // STUN binding request header, truncated at every length.
    let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun.extend((0..12).map(|_| rnd() as u8));
    stun.extend([0x00, 0x06, 0x00, 0x04, b'a', b'b', b'c', b'd']);
    for n in 1..stun.len() {
        out.push(stun[..n].to_vec());
    }
    // A complete binding request with an unknown USERNAME and no integrity.
    out.push(stun.clone());
    // STUN with a length field far beyond the datagram.
    out.push(vec![
        0x00, 0x01, 0xff, 0xf0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4,
    ]);
    // RTP-looking: version 2, PT 96 (VP8) / 111 (Opus), random SSRC and body.
    for pt in [96u8, 111, 0x7f] {
        let mut rtp = vec![0x80, pt, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend((0..160).map(|_| rnd() as u8));
        out.push(rtp.clone());
        out.push(rtp[..12].to_vec());
        // Header extension bit with a length running off the end.
        let mut ext = rtp[..12].to_vec();
        ext[0] |= 0x10;
        ext.extend([0xbe, 0xde, 0xff, 0xff]);
        out.push(ext);
        // CSRC count 15 with no CSRCs.
        let mut cc = rtp[..12].to_vec();
        cc[0] |= 0x0f;
        out.push(cc);
    }
    // RTCP-looking: SR, RR, PLI, NACK, BYE, with bad lengths.
    for pt in [200u8, 201, 203, 205, 206] {
        out.push(vec![0x81, pt, 0x00, 0x07, 0xde, 0xad, 0xbe, 0xef]);
        out.push(vec![0x81, pt, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 2]);
    }
    // DTLS-looking: a ClientHello record header with garbage.
    let mut dtls = vec![0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
    dtls.extend((0..200).map(|_| rnd() as u8));
    out.push(dtls.clone());
    out.push(dtls[..13].to_vec());
    // A jumbo datagram.
    out.push((0..9000).map(|_| rnd() as u8).collect());
    out
}

#[test]
fn garbage_on_the_media_port_does_not_disturb_a_call() {
    let srv = server();
    let alice_token = srv.dev_token(ROOM, "alice", "Alice").unwrap();
    let bob_token = srv.dev_token(ROOM, "bob", "Bob").unwrap();
    let alice = TestParticipant::spawn(srv.url(), &alice_token).unwrap();
    let bob = TestParticipant::spawn(srv.url(), &bob_token).unwrap();
    let (a, b) = (alice.id().to_string(), bob.id().to_string());
    let flowing = |s: &ClientStats, from: &str| {
        s.from(from, MediaKind::Audio).packets >= 50 && s.from(from, MediaKind::Video).packets >= 60
    };
    let sa = alice
        .wait_until(|s| flowing(s, &b), WAIT)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
    bob.wait_until(|s| flowing(s, &a), WAIT)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));

    let media: Vec<SocketAddr> = sa.server_media_addrs.clone();
    assert!(
        !media.is_empty(),
        "the publish answer has a candidate: {sa:#?}"
    );

    let before = (alice.stats(), bob.stats());
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagrams = garbage();
    let end = std::time::Instant::now() + Duration::from_secs(2);
    let mut sent = 0u64;
    while std::time::Instant::now() < end {
        for d in &datagrams {
            for to in &media {
                // Errors (ICMP unreachable) would mean the server died.
                attacker.send_to(d, to).expect("send garbage");
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("sent {sent} garbage datagrams to {media:?}");
    // For the record: what (if anything) the server answered the attacker.
    let mut buf = [0u8; 2048];
    attacker
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut answers = 0;
    while attacker.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    eprintln!("the server sent {answers} datagrams back to the attacker");

    std::thread::sleep(Duration::from_millis(500));
    let after = (alice.stats(), bob.stats());
    for (name, from, b4, af) in [
        ("alice", &b, &before.0, &after.0),
        ("bob", &a, &before.1, &after.1),
    ] {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let (x, y) = (b4.from(from, kind), af.from(from, kind));
            // 2.5 s: ~125 audio packets, ~225 video packets expected.
            let min = if kind == MediaKind::Audio { 60 } else { 100 };
            assert!(
                y.packets >= x.packets + min,
                "{name} kept receiving {kind:?} ({} → {})\nserver log:\n{}",
                x.packets,
                y.packets,
                srv.log()
            );
            assert_eq!(y.seq_gaps, 0, "{name}: {kind:?}: {af:#?}");
            assert_eq!(y.ssrcs.len(), 1, "{name}: {kind:?}: {af:#?}");
        }
        assert!(af.left.is_empty(), "{name}: nobody left: {af:#?}");
        assert!(af.errors.is_empty(), "{name}: {af:#?}");
    }

    // The server is still up: a third client joins and receives both.
    let carol_token = srv.dev_token(ROOM, "carol", "Carol").unwrap();
    let carol = TestParticipant::spawn(srv.url(), &carol_token).unwrap();
    carol
        .wait_until(|s| flowing(s, &a) && flowing(s, &b), WAIT)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
}

#[test]
fn flooding_signalling_is_rate_limited_not_fatal() {
    let srv = server();
    let token = srv.dev_token(ROOM, "flood", "Flood").unwrap();
    let mut ws = RawSignalling::connect(srv.url()).unwrap();
    ws.send(&ClientMessage::Join {
        token,
        room: None,
        client: None,
    })
    .unwrap();
    match next_reply(&mut ws, &srv, "join") {
        Received::Message(ServerMessage::Joined { .. }) => {}
        other => panic!("expected joined, got {other:?}"),
    }
    for _ in 0..200 {
        ws.send(&ClientMessage::Ping {}).unwrap();
    }
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < 200 {
        let reply = ws.recv(REPLY).unwrap_or_else(|e| {
            panic!(
                "a ping flood: {e} after {pongs} pongs and {limited} rate_limited for 200 pings\nserver log:\n{}",
                srv.log()
            )
        });
        match reply {
            Received::Message(ServerMessage::Pong {}) => pongs += 1,
            Received::Message(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            // Room status, not an answer to the pings.
            Received::Message(ServerMessage::ConnectionQuality { .. }) => {}
            other => {
                panic!("during a ping flood: {other:?} after {pongs} pongs, {limited} refusals")
            }
        }
    }
    eprintln!("{pongs} pongs, {limited} rate_limited");
    assert!(limited > 0, "200 messages at once are rate limited");
    assert!(pongs > 0);
    // The connection is still open once the bucket refills.
    std::thread::sleep(Duration::from_millis(500));
    still_open(&mut ws, &srv, "a ping flood");
}

#[test]
fn silent_signalling_times_out() {
    let srv = server();
    let alice =
        TestParticipant::spawn(srv.url(), &srv.dev_token(ROOM, "alice", "Alice").unwrap()).unwrap();
    // Joins, then never reads again: the server's pings go unanswered.
    let mut ws = RawSignalling::connect(srv.url()).unwrap();
    ws.send(&ClientMessage::Join {
        token: srv.dev_token(ROOM, "mute", "Mute").unwrap(),
        room: None,
        client: None,
    })
    .unwrap();
    let id = match next_reply(&mut ws, &srv, "join") {
        Received::Message(ServerMessage::Joined { participant, .. }) => participant.id,
        other => panic!("expected joined, got {other:?}"),
    };
    // Documented: closed after 15 s of silence, reason `timeout`.
    let s = alice
        .wait_until(|s| s.saw_left(&id), Duration::from_secs(25))
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
    let reason = s.left.iter().find(|(p, _)| *p == id).map(|(_, r)| *r);
    assert_eq!(reason, Some(amphi_client::LeaveReason::Timeout), "{s:#?}");
}

#[test]
fn dead_media_path_ends_the_session_with_media_failed() {
    let srv = server();
    let alice =
        TestParticipant::spawn(srv.url(), &srv.dev_token(ROOM, "alice", "Alice").unwrap()).unwrap();
    let bob =
        TestParticipant::spawn(srv.url(), &srv.dev_token(ROOM, "bob", "Bob").unwrap()).unwrap();
    let b = bob.id().to_string();
    alice
        .wait_until(|s| s.from(&b, MediaKind::Audio).packets >= 50, WAIT)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
    // Bob's UDP dies; his signalling lives on (and answers pings).
    bob.cut_media(true);
    let s = alice
        .wait_until(|s| s.saw_left(&b), Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
    let reason = s.left.iter().find(|(p, _)| *p == b).map(|(_, r)| *r);
    assert_eq!(
        reason,
        Some(amphi_client::LeaveReason::MediaFailed),
        "{s:#?}"
    );
    let s = bob
        .wait_until(|s| s.bye.is_some(), WAIT)
        .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", srv.log()));
    assert_eq!(
        s.bye,
        Some(amphi_client::LeaveReason::MediaFailed),
        "{s:#?}"
    );
}

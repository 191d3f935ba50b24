//! End to end: the real `amphi` binary, three real WebRTC participants
//! (str0m, over UDP on 127.0.0.1) speaking the public signalling protocol.

use std::time::{Duration, Instant};

use amphi_client::{
    ClientError, ClientStats, ErrorCode, LeaveReason, MediaKind, TestParticipant, TestServer,
};

const ROOM: &str = "physics-101";
/// Generous: debug builds on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);
/// About 2 s of Opus (one packet per 20 ms).
const MIN_AUDIO: u64 = 100;
/// About 1 s of video (30 fps, 3 packets per frame).
const MIN_VIDEO: u64 = 90;

fn server() -> TestServer {
    TestServer::start_dev(env!("CARGO_BIN_EXE_amphi")).expect("the server starts")
}

fn join(srv: &TestServer, identity: &str, name: &str) -> TestParticipant {
    let token = srv.dev_token(ROOM, identity, name).expect("a token");
    TestParticipant::spawn(srv.url(), &token)
        .unwrap_or_else(|e| panic!("{identity} cannot join: {e}\nserver log:\n{}", srv.log()))
}

fn wait(
    srv: &TestServer,
    who: &TestParticipant,
    what: &str,
    cond: impl FnMut(&ClientStats) -> bool,
) -> ClientStats {
    match who.wait_until(cond, WAIT) {
        Ok(s) => s,
        Err(e) => panic!(
            "{} ({}): {what}: {e}\nserver log:\n{}",
            who.id(),
            who.stats().id.unwrap_or_default(),
            srv.log()
        ),
    }
}

fn received_from_all(s: &ClientStats, others: &[String]) -> bool {
    others.iter().all(|o| {
        s.from(o, MediaKind::Audio).packets >= MIN_AUDIO
            && s.from(o, MediaKind::Video).packets >= MIN_VIDEO
    })
}

#[test]
fn three_clients_exchange_media_and_one_leaves() {
    let srv = server();
    let alice = join(&srv, "alice", "Alice");
    let bob = join(&srv, "bob", "Bob");
    let carol = join(&srv, "carol", "Carol");
    let all = [&alice, &bob, &carol];
    let ids: Vec<String> = all.iter().map(|c| c.id().to_string()).collect();
    assert!(
        ids.iter().all(|i| !i.is_empty()),
        "every client has an id: {ids:?}"
    );

    // Everyone gets everyone else's audio and video.
    for (i, c) in all.iter().enumerate() {
        let others: Vec<String> = ids.iter().filter(|o| **o != ids[i]).cloned().collect();
        let s = wait(&srv, c, "receive audio and video from both others", |s| {
            received_from_all(s, &others)
        });
        for o in &others {
            let (au, vi) = (s.from(o, MediaKind::Audio), s.from(o, MediaKind::Video));
            eprintln!(
                "{} from {o}: audio {} pkts, video {} pkts / {} keyframes, mean latency {:?}/{:?}",
                ids[i],
                au.packets,
                vi.packets,
                vi.keyframes,
                au.mean_latency(),
                vi.mean_latency()
            );
            assert!(s.roster.contains_key(o), "{} has {o} in its roster", ids[i]);
            let video = s.from(o, MediaKind::Video);
            assert_eq!(
                video.first_packet_was_keyframe,
                Some(true),
                "{}: video from {o} starts with a keyframe: {s:#?}",
                ids[i]
            );
            assert_eq!(video.streams_not_starting_with_keyframe, 0, "{s:#?}");
            assert!(video.keyframes >= 1, "{s:#?}");
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let c = s.from(o, kind);
                assert_eq!(
                    c.seq_gaps, 0,
                    "{}: {kind:?} from {o}: no gaps on loopback: {s:#?}",
                    ids[i]
                );
                assert_eq!(c.seq_backwards, 0, "{}: {kind:?} from {o}: {s:#?}", ids[i]);
                assert_eq!(c.ts_backwards, 0, "{}: {kind:?} from {o}: {s:#?}", ids[i]);
                assert_eq!(
                    c.ssrcs.len(),
                    1,
                    "{}: {kind:?} from {o}: one SSRC: {s:#?}",
                    ids[i]
                );
                assert!(c.stamped > 0, "payloads are forwarded untouched");
            }
        }
        assert!(
            !s.received.keys().any(|(p, _)| *p == ids[i]),
            "{} does not receive its own media: {s:#?}",
            ids[i]
        );
        assert_eq!(
            s.unmatched_packets, 0,
            "every packet is on a mapped mid: {s:#?}"
        );
        assert!(s.publisher_connected && s.subscriber_connected);
        assert!(s.errors.is_empty(), "no errors: {s:#?}");
        assert!(s.sent_audio.packets > 0 && s.sent_video.keyframes > 0);
    }

    // Carol leaves: the others see it and stop receiving her media.
    let carol_id = ids[2].clone();
    let carol_final = carol.leave().expect("carol leaves cleanly");
    assert!(
        carol_final.signalling_closed,
        "the server closed carol's socket"
    );
    for c in [&alice, &bob] {
        let s = wait(&srv, c, "see carol leave", |s| {
            s.left
                .iter()
                .any(|(p, r)| *p == carol_id && *r == LeaveReason::Left)
        });
        assert!(!s.roster.contains_key(&carol_id));
    }
    // Let packets in flight drain, then check nothing more arrives from her
    // while alice and bob still hear each other.
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<ClientStats> = [&alice, &bob].iter().map(|c| c.stats()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    for (i, c) in [&alice, &bob].iter().enumerate() {
        let after = c.stats();
        let other = &ids[1 - i];
        for kind in [MediaKind::Audio, MediaKind::Video] {
            assert_eq!(
                after.from(&carol_id, kind).packets,
                before[i].from(&carol_id, kind).packets,
                "{}: no {kind:?} from carol after she left",
                ids[i]
            );
            assert!(
                after.from(other, kind).packets > before[i].from(other, kind).packets + 10,
                "{}: {kind:?} from {other} keeps flowing",
                ids[i]
            );
            assert_eq!(after.from(other, kind).seq_gaps, 0, "{after:#?}");
        }
    }

    // Dave takes carol's place: the server may reuse her m-lines for his
    // tracks; his video must still start at a keyframe, without gaps.
    let dave = join(&srv, "dave", "Dave");
    let dave_id = dave.id().to_string();
    for c in [&alice, &bob] {
        let s = wait(&srv, c, "receive dave", |s| {
            s.from(&dave_id, MediaKind::Audio).packets >= 50
                && s.from(&dave_id, MediaKind::Video).packets >= 60
        });
        let v = s.from(&dave_id, MediaKind::Video);
        assert_eq!(v.first_packet_was_keyframe, Some(true), "{s:#?}");
        assert_eq!(v.streams_not_starting_with_keyframe, 0, "{s:#?}");
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let d = s.from(&dave_id, kind);
            assert_eq!(
                (d.seq_gaps, d.seq_backwards, d.ts_backwards),
                (0, 0, 0),
                "{s:#?}"
            );
        }
        assert_eq!(s.unmatched_packets, 0, "{s:#?}");
    }
    wait(&srv, &dave, "receive alice and bob", |s| {
        received_from_all(s, &ids[..2])
    });
    drop(dave);

    // A fourth client with a forged token is refused with `unauthorized`.
    let good = srv.dev_token(ROOM, "mallory", "Mallory").unwrap();
    for (what, token) in [
        ("tampered signature", tamper_signature(&good)),
        ("unsigned (alg none)", unsigned_token(&good)),
        ("garbage", "not.a.jwt".to_string()),
        ("empty", String::new()),
    ] {
        match TestParticipant::spawn(srv.url(), &token) {
            Err(e) => assert_eq!(
                e.server_code(),
                Some(ErrorCode::Unauthorized),
                "{what} token: {e}"
            ),
            Ok(p) => panic!("{what} token was accepted as {}", p.id()),
        }
    }
    // The refused attempts did not disturb the room.
    let s = wait(&srv, &alice, "see dave leave", |s| s.saw_left(&dave_id));
    assert!(!s.roster.keys().any(|k| !ids.contains(k)), "{s:#?}");

    drop(alice);
    drop(bob);
}

#[test]
fn expired_token_is_unauthorized() {
    let srv = server();
    let token = srv
        .token(&[
            "--dev",
            "--room",
            ROOM,
            "--identity",
            "late",
            "--name",
            "Late",
            "--ttl",
            "1s",
        ])
        .expect("a 1-second token");
    // `exp` has no leeway (docs/tokens.md); wait until it has passed.
    std::thread::sleep(Duration::from_millis(2100));
    match TestParticipant::spawn(srv.url(), &token) {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::Unauthorized, "{message}");
            assert!(message.contains("expired"), "{message}");
        }
        Err(e) => panic!("expected unauthorized, got {e}"),
        Ok(p) => panic!("an expired token was accepted as {}", p.id()),
    }
    // A token for another room, announced with `room`, is refused too.
    let token = srv.dev_token("chemistry", "eve", "Eve").unwrap();
    let opts = amphi_client::ClientOptions {
        room: Some(ROOM.into()),
        ..Default::default()
    };
    let e = TestParticipant::spawn_with(srv.url(), &token, opts).expect_err("wrong room");
    assert_eq!(e.server_code(), Some(ErrorCode::Unauthorized), "{e}");
}

#[test]
fn late_joiner_gets_keyframe_first_and_abrupt_disconnect_is_seen() {
    let srv = server();
    let alice = join(&srv, "alice", "Alice");
    let bob = join(&srv, "bob", "Bob");
    let a = alice.id().to_string();
    let b = bob.id().to_string();
    wait(&srv, &bob, "receive alice", |s| {
        s.from(&a, MediaKind::Video).packets >= MIN_VIDEO
    });
    // Alice's keyframes come every 2 s; a joiner half-way through must still
    // start at a keyframe (the server asks alice for one).
    std::thread::sleep(Duration::from_millis(900));
    let t0 = Instant::now();
    let carol = join(&srv, "carol", "Carol");
    let s = wait(&srv, &carol, "receive alice's video", |s| {
        s.from(&a, MediaKind::Video).packets >= 10
    });
    let v = s.from(&a, MediaKind::Video);
    assert_eq!(v.first_packet_was_keyframe, Some(true), "{s:#?}");
    assert_eq!(v.seq_gaps, 0, "{s:#?}");
    eprintln!("carol's first video from alice after {:?}", t0.elapsed());

    // Bob vanishes without `leave`: the others see `disconnected`.
    let _ = bob.abort();
    for c in [&alice, &carol] {
        wait(&srv, c, "see bob disconnect", |s| {
            s.left
                .iter()
                .any(|(p, r)| *p == b && *r == LeaveReason::Disconnected)
        });
    }
}

#[test]
fn video_is_never_paused_on_an_open_link() {
    // Two people on a loopback with no limit: whatever the bandwidth
    // estimate does while it starts, and while each camera's rate ramps up,
    // neither picture may wait or freeze. Each one starts with the voice,
    // at a keyframe, and then has no gap longer than a few frames.
    let srv = server();
    let alice = join(&srv, "alice", "Alice");
    let bob = join(&srv, "bob", "Bob");
    let ids = [alice.id().to_string(), bob.id().to_string()];
    for (who, from) in [(&alice, &ids[1]), (&bob, &ids[0])] {
        // About 4 s of video: past the estimator's start and its 3 s of
        // smoothing, and eight allocation ticks.
        let s = wait(&srv, who, "receive 4 s of video", |s| {
            s.from(from, MediaKind::Video).packets >= 360
        });
        let (audio, video) = (
            s.from(from, MediaKind::Audio),
            s.from(from, MediaKind::Video),
        );
        assert_eq!(video.first_packet_was_keyframe, Some(true), "{s:#?}");
        // On the sender's clock: the picture starts with the voice.
        let (Some(heard), Some(seen)) = (audio.first_stamp_us, video.first_stamp_us) else {
            panic!("no stamped payloads: {s:#?}");
        };
        assert!(
            seen.saturating_sub(heard) < 1_000_000,
            "{}: video from {from} began {} ms after its audio\nserver log:\n{}",
            who.id(),
            seen.saturating_sub(heard) / 1000,
            srv.log()
        );
        assert!(
            video.longest_gap_ms < 300,
            "{}: video from {from} froze for {} ms\nserver log:\n{}",
            who.id(),
            video.longest_gap_ms,
            srv.log()
        );
        assert!(audio.longest_gap_ms < 200, "{s:#?}");
    }
}

#[test]
fn guest_offering_anyway_is_forbidden_and_stays() {
    let srv = server();
    let tok = |id: &str, role: &str| {
        srv.token(&[
            "--dev",
            "--room",
            ROOM,
            "--identity",
            id,
            "--name",
            id,
            "--role",
            role,
        ])
        .expect("a token")
    };
    let alice = TestParticipant::spawn(srv.url(), &tok("alice", "teacher")).expect("alice");
    // A guest that offers anyway gets `forbidden` for that offer, publishes
    // nothing, and the session goes on (docs/protocol.md, `publish_offer`
    // and the error table: "closed on join; open otherwise").
    let opts = amphi_client::ClientOptions {
        ignore_permissions: true,
        ..Default::default()
    };
    let pushy = TestParticipant::spawn_with(srv.url(), &tok("pushy", "guest"), opts)
        .expect("a guest may join");
    let p = pushy.id().to_string();
    let s = wait(&srv, &pushy, "be refused publishing", |s| {
        s.saw_error(ErrorCode::Forbidden)
    });
    assert_eq!(s.publish_answers, 0, "{s:#?}");
    assert!(
        s.errors.iter().any(
            |e| e.code == ErrorCode::Forbidden && e.request.as_deref() == Some("publish_offer")
        ),
        "the error names the refused request: {s:#?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !pushy.is_finished(),
        "forbidden on a publish_offer keeps the session open (docs/protocol.md): {:#?}\nserver log:\n{}",
        pushy.stats(),
        srv.log()
    );
    pushy.ping();
    wait(&srv, &pushy, "pong after forbidden", |s| s.pongs >= 1);
    std::thread::sleep(Duration::from_millis(500));
    let s = alice.stats();
    assert!(
        s.roster.get(&p).is_some_and(|i| i.tracks.is_empty()),
        "a refused offer publishes nothing: {s:#?}"
    );
    assert!(s.received.keys().all(|(from, _)| *from != p), "{s:#?}");
    // Receiving is allowed and goes on.
    let a = alice.id().to_string();
    wait(&srv, &pushy, "receive alice after forbidden", |s| {
        s.from(&a, MediaKind::Audio).packets >= 50
    });
}

#[test]
fn roles_mute_ping_and_replaced_session() {
    let srv = server();
    let tok = |id: &str, role: &str| {
        srv.token(&[
            "--dev",
            "--room",
            ROOM,
            "--identity",
            id,
            "--name",
            id,
            "--role",
            role,
        ])
        .expect("a token")
    };
    let alice = TestParticipant::spawn(srv.url(), &tok("alice", "teacher")).expect("alice");
    let a = alice.id().to_string();

    // A guest publishes nothing but receives.
    let guest = TestParticipant::spawn(srv.url(), &tok("guest", "guest")).expect("guest");
    let s = wait(&srv, &guest, "receive alice as a guest", |s| {
        s.from(&a, MediaKind::Audio).packets >= 50 && s.from(&a, MediaKind::Video).packets >= 60
    });
    let perm = s.permissions.clone().expect("permissions");
    assert!(perm.subscribe, "{perm:?}");
    assert!(!perm.publish || perm.publish_sources.is_empty(), "{perm:?}");
    assert_eq!(s.sent_audio.packets + s.sent_video.packets, 0);

    // Mute is announced to everyone, the muter included.
    alice.mute(amphi_client::Source::Microphone, true);
    let muted = |info: Option<&amphi_client::protocol::ParticipantInfo>| {
        info.is_some_and(|i| {
            i.tracks
                .iter()
                .any(|t| t.source == amphi_client::Source::Microphone && t.muted)
        })
    };
    wait(&srv, &guest, "see alice muted", |s| muted(s.roster.get(&a)));
    wait(&srv, &alice, "see her own mute echoed", |s| {
        muted(s.me.as_ref())
    });

    // Ping.
    alice.ping();
    let s = wait(&srv, &alice, "pong", |s| s.pongs >= 1);
    assert!(s.last_pong_rtt.is_some());

    // The same identity joining again replaces the older session.
    let alice2 = TestParticipant::spawn(srv.url(), &tok("alice", "teacher")).expect("alice again");
    let a2 = alice2.id().to_string();
    assert_ne!(a, a2, "a new session has a new id");
    let s = wait(&srv, &alice, "be replaced", |s| s.bye.is_some());
    assert_eq!(s.bye, Some(LeaveReason::Replaced), "{s:#?}");
    let s = wait(&srv, &guest, "see the replacement", |s| {
        s.left
            .iter()
            .any(|(id, r)| *id == a && *r == LeaveReason::Replaced)
            && s.from(&a2, MediaKind::Video).packets >= 30
    });
    assert!(
        !s.roster.contains_key(&a) && s.roster.contains_key(&a2),
        "{s:#?}"
    );
    assert_eq!(
        s.from(&a2, MediaKind::Video).first_packet_was_keyframe,
        Some(true)
    );
    assert_eq!(s.from(&a2, MediaKind::Video).seq_gaps, 0, "{s:#?}");
}

/// The same token with one signature character changed (the first, which
/// carries 6 significant bits).
fn tamper_signature(jwt: &str) -> String {
    let (head, sig) = jwt.rsplit_once('.').expect("a JWT");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
    format!("{head}.{}", sig.into_iter().collect::<String>())
}

/// The same claims with `{"alg":"none"}` and no signature.
fn unsigned_token(jwt: &str) -> String {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let header = base64url(br#"{"alg":"none","typ":"JWT","kid":"devkey"}"#);
    format!("{header}.{payload}.")
}

fn base64url(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn six_clients_join_at_once() {
    let srv = server();
    let tokens: Vec<String> = (0..6)
        .map(|i| {
            srv.dev_token(ROOM, &format!("u{i}"), &format!("User {i}"))
                .unwrap()
        })
        .collect();
    let url = srv.url().to_string();
    // Lighter video: six publishers on a debug-build server.
    let opts = amphi_client::ClientOptions {
        video_fps: 15,
        video: amphi_client::VideoShape {
            packets_per_frame: 2,
            ..amphi_client::ClientOptions::default().video
        },
        ..Default::default()
    };
    let clients: Vec<TestParticipant> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (url, opts) = (&url, opts.clone());
                s.spawn(move || TestParticipant::spawn_with(url, t, opts))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic").expect("join"))
            .collect()
    });
    let ids: Vec<String> = clients.iter().map(|c| c.id().to_string()).collect();
    for (i, c) in clients.iter().enumerate() {
        let others: Vec<&String> = ids.iter().filter(|o| **o != ids[i]).collect();
        let s = wait(&srv, c, "receive the five others", |s| {
            others.iter().all(|o| {
                s.from(o, MediaKind::Audio).packets >= 50
                    && s.from(o, MediaKind::Video).packets >= 30
            })
        });
        for o in others {
            let v = s.from(o, MediaKind::Video);
            assert_eq!(v.first_packet_was_keyframe, Some(true), "{s:#?}");
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let c = s.from(o, kind);
                assert_eq!(
                    (c.seq_gaps, c.seq_backwards, c.ts_backwards),
                    (0, 0, 0),
                    "{kind:?} from {o}: {s:#?}"
                );
            }
        }
        assert_eq!(s.unmatched_packets, 0, "{s:#?}");
        assert!(s.errors.is_empty(), "{s:#?}");
    }
}

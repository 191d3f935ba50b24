//! Whole calls through the engine with no sockets and a simulated clock.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use amphi_client::protocol::{ClientMessage, LeaveReason};
use amphi_client::{ClientOptions, Connection, MediaKind, SimulcastEncoding};
use amphi_room::{Input, SfuEvent};
use common::World;
use common::options::three_layers;
use str0m::net::{Protocol, Receive};

#[test]
fn three_participants_receive_each_other() {
    let mut w = World::new();
    for _ in 0..3 {
        w.add(ClientOptions::default());
    }
    w.run(Duration::from_secs(4));

    for i in 0..3 {
        let stats = w.clients[i].p.stats().clone();
        assert_eq!(
            stats.roster.len(),
            2,
            "client {i} roster: {:?}",
            stats.roster
        );
        for j in (0..3).filter(|j| *j != i) {
            let from = w.id(j);
            let audio = stats.from(&from, MediaKind::Audio);
            let video = stats.from(&from, MediaKind::Video);
            assert!(
                audio.packets > 50,
                "client {i} got {} audio packets from {from}",
                audio.packets
            );
            assert!(
                video.packets > 100,
                "client {i} got {} video packets from {from}",
                video.packets
            );
            assert_eq!(
                video.first_packet_was_keyframe,
                Some(true),
                "video from {from} to {i}"
            );
            // Nothing is lost on this network, so any gap is the forwarder's.
            assert_eq!(
                (audio.seq_gaps, video.seq_gaps),
                (0, 0),
                "gaps from {from} to {i}"
            );
            assert_eq!(video.ssrcs.len(), 1);
        }
    }
    assert_eq!(w.sfu.room_size("lecture"), 3);
}

#[test]
fn late_joiner_gets_a_keyframe_promptly_and_leavers_disappear() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    // Joins mid-stream: the publisher's periodic keyframe is 2 s away at
    // most, but the keyframe request must bring video sooner.
    let late = w.add(ClientOptions::default());
    w.run(Duration::from_millis(1500));
    let stats = w.clients[late].p.stats().clone();
    for j in 0..2 {
        let v = stats.from(&w.id(j), MediaKind::Video);
        assert!(v.packets > 0, "late joiner has no video from {j}");
        assert_eq!(v.first_packet_was_keyframe, Some(true));
    }

    let gone = w.id(0);
    let offers_before = w.offers.len();
    w.leave_signalling(0, LeaveReason::Disconnected);
    w.run(Duration::from_millis(500));
    let before: HashMap<usize, u64> = (1..3)
        .map(|i| {
            (
                i,
                w.clients[i].p.stats().from(&gone, MediaKind::Audio).packets,
            )
        })
        .collect();
    w.run(Duration::from_secs(1));
    for i in 1..3 {
        let s = w.clients[i].p.stats();
        assert!(
            s.saw_left(&gone),
            "client {i} was not told that {gone} left"
        );
        assert!(!s.roster.contains_key(&gone));
        assert_eq!(s.from(&gone, MediaKind::Audio).packets, before[&i]);
    }
    assert_eq!(w.sfu.room_size("lecture"), 2);
    // Browsers bind the bundled transport to the first m-line: the offers
    // that stop the leaver's m-lines must keep that first m-line alive.
    assert!(w.offers.len() > offers_before);
    // That anchor is an inactive m-line, not a data channel (no SCTP).
    for sdp in &w.offers {
        let mut sections = sdp.split("\r\nm=").skip(1);
        let first = sections.next().unwrap_or("");
        assert!(
            first.starts_with("audio 9 ") && first.contains("a=inactive"),
            "first m-line: {first}"
        );
        assert!(
            !sdp.contains("m=application"),
            "a data channel in the offer: {sdp}"
        );
    }
}

#[test]
fn a_participant_whose_network_dies_is_removed() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(2));
    let dead = w.id(1);
    w.clients[1].online = false;
    w.run(Duration::from_secs(30));
    assert!(
        w.clients[0].p.stats().saw_left(&dead),
        "{dead} was never removed"
    );
    assert_eq!(w.sfu.room_size("lecture"), 1);
    assert!(w.events.contains(&SfuEvent::ParticipantLeft {
        room: "lecture".into(),
        participant: w.clients[1].pid,
        identity: w.clients[1].identity.clone(),
        reason: LeaveReason::MediaFailed,
    }));
    // The room lives on with one participant; it ends with the last.
    w.leave_signalling(0, LeaveReason::Left);
    let lifecycle: Vec<&SfuEvent> = w
        .events
        .iter()
        .filter(|e| matches!(e, SfuEvent::RoomStarted { .. } | SfuEvent::RoomEnded { .. }))
        .collect();
    let room = || "lecture".to_string();
    assert_eq!(
        lifecycle,
        [
            &SfuEvent::RoomStarted { room: room() },
            &SfuEvent::RoomEnded { room: room() }
        ]
    );
}

#[test]
fn garbage_datagrams_disturb_nobody() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(2));
    let before = w.clients[0]
        .p
        .stats()
        .from(&w.id(1), MediaKind::Audio)
        .packets;
    let stranger: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    let known = w.clients[1].p.local_addr(Connection::Publisher);
    let junk: [&[u8]; 4] = [
        &[0xff; 100],
        &[0x00, 0x01, 0x00, 0x10, 0x21, 0x12], // truncated STUN
        &[0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3], // bare RTP
        &[0x81, 0xc9, 0x00, 0x07, 1, 2, 3],    // truncated RTCP
    ];
    for from in [stranger, known] {
        for j in junk {
            if let Ok(r) = Receive::new(Protocol::Udp, from, w.server, j) {
                w.sfu.handle_input(Input::Receive(w.now, r));
            }
        }
    }
    w.run(Duration::from_secs(1));
    let after = w.clients[0]
        .p
        .stats()
        .from(&w.id(1), MediaKind::Audio)
        .packets;
    assert!(
        after > before + 30,
        "media stopped after garbage: {before} -> {after}"
    );
    assert_eq!(w.sfu.room_size("lecture"), 2);
}

#[test]
fn an_offer_with_more_simulcast_layers_than_the_engine_tracks_is_served() {
    // 40 rids: more spatial layers than a track keeps (and than the 32-bit
    // masks dynacast builds of them hold). The rids beyond the first ones
    // are not used; the call goes on through allocation runs and dynacast.
    let mut w = World::new();
    let publisher = w.add(ClientOptions {
        simulcast: (0..40)
            .map(|i| SimulcastEncoding::new(&format!("r{i}"), (160, 90), 1, 200, 1))
            .collect(),
        ..Default::default()
    });
    let listener = w.add(ClientOptions::subscriber_only());
    w.run(Duration::from_secs(3));
    assert_eq!(w.errors(publisher), vec![]);
    let before = w.packets_from(listener, publisher, MediaKind::Audio);
    assert!(before > 50, "listener got {before} audio packets");
    w.run(Duration::from_secs(1));
    let after = w.packets_from(listener, publisher, MediaKind::Audio);
    assert!(after > before + 30, "audio stopped: {before} -> {after}");
    assert_eq!(w.sfu.room_size("lecture"), 2);
}

#[test]
fn a_simulcast_publisher_reaches_each_subscriber_in_the_layer_its_tile_needs() {
    let mut w = World::new();
    // No periodic keyframes within the test: a layer switch must ask the
    // teacher for one, of the right layer.
    let teacher = w.add(ClientOptions {
        simulcast: three_layers(),
        keyframe_interval: Duration::from_secs(600),
        ..Default::default()
    });
    let big = w.add(ClientOptions::subscriber_only());
    let small = w.add(ClientOptions::subscriber_only());
    w.run(Duration::from_secs(2));
    let camera = w.clients[small].p.stats().roster[&w.id(teacher)]
        .tracks
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .map(|t| t.id.clone())
        .expect("the teacher's camera is announced");
    w.send(
        small,
        ClientMessage::TrackSettings {
            track: camera,
            visible: true,
            width: 320,
            height: 180,
        },
    );
    let requests = w.clients[teacher].p.stats().keyframe_requests;
    w.run(Duration::from_secs(4));
    assert!(
        w.clients[teacher].p.stats().keyframe_requests > requests,
        "the switch to the small layer asked for no keyframe"
    );
    fn video(w: &World, i: usize, from: usize) -> amphi_client::ReceivedCounters {
        w.clients[i].p.stats().from(&w.id(from), MediaKind::Video)
    }
    let before = (video(&w, big, teacher), video(&w, small, teacher));
    w.run(Duration::from_secs(3));
    for (name, i, earlier, bytes) in [
        ("big", big, &before.0, 1_100),
        ("small", small, &before.1, 500),
    ] {
        let now = video(&w, i, teacher);
        let packets = now.packets - earlier.packets;
        assert!(packets > 60, "{name} tile: {packets} packets in 3 s");
        let average = (now.bytes - earlier.bytes) / packets;
        assert!(
            average.abs_diff(bytes) < 60,
            "{name} tile: packets of {average} bytes, not the {bytes}-byte layer's"
        );
        assert_eq!(now.ssrcs.len(), 1, "{name}: one stream, whatever the layer");
        assert_eq!(now.first_packet_was_keyframe, Some(true));
        assert_eq!(now.streams_not_starting_with_keyframe, 0, "{name}");
    }
    assert_eq!(w.errors(teacher), vec![]);
}

#[test]
fn joins_and_leaves_in_any_order_settle() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(1));
    // C joins and B leaves before any offer or answer of C's can travel.
    let c = w.add(ClientOptions::default());
    let b = w.id(1);
    w.leave_signalling(1, LeaveReason::Disconnected);
    // And D arrives while C's first negotiation is still in flight.
    let d = w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    for i in [0, c, d] {
        let s = w.clients[i].p.stats().clone();
        assert_eq!(
            s.subscribed_tracks, 4,
            "client {i}: the two others' audio and video, nothing stale"
        );
        assert!(!s.roster.contains_key(&b));
        for j in [0, c, d].into_iter().filter(|j| *j != i) {
            let from = w.id(j);
            assert!(
                s.from(&from, MediaKind::Video).packets > 30,
                "{i} gets no video from {from}"
            );
            assert!(
                s.from(&from, MediaKind::Audio).packets > 30,
                "{i} gets no audio from {from}"
            );
            assert!(s.errors.is_empty(), "{i}: {:?}", s.errors);
        }
    }
}

/// Clients `a` and `b` each got the other's video.
fn video_both_ways(w: &World, a: usize, b: usize) {
    for (i, j) in [(a, b), (b, a)] {
        let v = w.packets_from(i, j, MediaKind::Video);
        assert!(v > 50, "client {i} got {v} video packets from {j}");
    }
}

/// The DTLS fingerprints in the SDPs the engine sent since `from`.
fn server_fingerprints(w: &World, from: (usize, usize)) -> Vec<String> {
    let sdps = w.offers[from.0..].iter().chain(&w.answers[from.1..]);
    let mut found: Vec<String> = sdps
        .flat_map(|sdp| sdp.lines())
        .filter_map(|l| l.strip_prefix("a=fingerprint:"))
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_server_presents_one_certificate_a_day_and_calls_work_with_it() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    video_both_ways(&w, 0, 1);
    // Both participants' publisher and subscriber connections: made
    // one by one, the four showed four fingerprints.
    let first = server_fingerprints(&w, (0, 0));
    assert_eq!(first.len(), 1, "fingerprints: {first:?}");
    assert!(w.answers.len() >= 2 && w.offers.len() >= 2);

    // The first two leave (the SDPs that tell them so would show their
    // connections' certificate). A day later, the next two get a new
    // certificate, and their call works with it.
    for i in 0..2 {
        w.leave_signalling(i, LeaveReason::Left);
    }
    let seen = (w.offers.len(), w.answers.len());
    w.now += amphi_room::certificate::ROTATION;
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    video_both_ways(&w, 2, 3);
    let next = server_fingerprints(&w, seen);
    assert_eq!(next.len(), 1, "fingerprints: {next:?}");
    assert_ne!(next, first, "the certificate was not renewed");
}

#[test]
fn a_camera_reaches_those_already_subscribed_with_its_first_keyframe() {
    let mut w = World::new();
    let student = w.add(common::options::listener());
    w.run(Duration::from_secs(1));
    // The student is subscribed to the teacher's camera before its first
    // packet: that packet must find the student's allocation made, so the
    // keyframe it begins goes through, not the next one a request brings.
    let teacher = w.add(ClientOptions::default());
    let from = w.id(teacher);
    let start = w.now;
    let (mut heard, mut seen) = (None, None);
    while w.now - start < Duration::from_secs(2) && seen.is_none() {
        w.run(Duration::from_millis(10));
        let s = w.clients[student].p.stats();
        let since = w.now - start;
        if s.from(&from, MediaKind::Audio).packets > 0 {
            heard.get_or_insert(since);
        }
        if s.from(&from, MediaKind::Video).packets > 0 {
            seen.get_or_insert(since);
        }
    }
    let (Some(heard), Some(seen)) = (heard, seen) else {
        panic!("heard {heard:?}, seen {seen:?}");
    };
    assert!(
        seen <= heard + Duration::from_millis(100),
        "video came {seen:?} after the teacher joined, audio {heard:?}"
    );
    let video = w.clients[student]
        .p
        .stats()
        .from(&from, MediaKind::Video)
        .clone();
    assert_eq!(video.first_packet_was_keyframe, Some(true), "{video:#?}");
    assert_eq!(
        w.clients[teacher].p.stats().keyframe_requests,
        0,
        "the camera's first keyframe was enough"
    );
}

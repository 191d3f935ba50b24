//! Loss recovery through the engine: datagrams are lost on the in-memory
//! network and what was lost must come back (NACK, then RTX), or a keyframe
//! must be asked for when it cannot.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use amphi_client::protocol::{ClientMessage, ConnectionQuality, ErrorCode, ServerMessage};
use amphi_client::{ClientOptions, Connection, MediaKind, ReceivedCounters};
use common::{Loss, World};

/// Loses every `n`th datagram that `matches`.
fn every_nth(n: u64, matches: impl Fn(SocketAddr, SocketAddr) -> bool + 'static) -> Loss {
    let mut count: u64 = 0;
    Box::new(move |t| {
        if !matches(t.source, t.destination) {
            return false;
        }
        count += 1;
        count.is_multiple_of(n)
    })
}

fn received(w: &World, i: usize, from: usize, kind: MediaKind) -> ReceivedCounters {
    w.clients[i].p.stats().from(&w.id(from), kind)
}

/// What client 1 had received from client 0 before its downlink lost.
struct BeforeLoss {
    video: ReceivedCounters,
    audio: ReceivedCounters,
    nacks_received: u64,
}

/// Two participants; after 3 s, one datagram in `n` to client 1's subscriber
/// connection is lost for 3 s, then the network is clean for 2 s.
fn lossy_downlink(n: u64) -> (World, BeforeLoss) {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    let before = BeforeLoss {
        video: received(&w, 1, 0, MediaKind::Video),
        audio: received(&w, 1, 0, MediaKind::Audio),
        nacks_received: w.sfu.stats().nacks_received,
    };
    assert!(
        before.video.packets > 100,
        "no video before the loss: {:?}",
        before.video
    );
    assert_eq!(before.video.seq_gaps, 0);

    let sub = w.clients[1].p.local_addr(Connection::Subscriber);
    w.loss = Some(every_nth(n, move |_, to| to == sub));
    w.run(Duration::from_secs(3));
    w.loss = None;
    w.run(Duration::from_secs(2));
    (w, before)
}

#[test]
fn video_lost_on_the_way_to_a_subscriber_is_retransmitted() {
    let (w, before) = lossy_downlink(10);
    let video = received(&w, 1, 0, MediaKind::Video);
    let audio = received(&w, 1, 0, MediaKind::Audio);
    let gaps = video.seq_gaps - before.video.seq_gaps;
    let filled = video.seq_backwards - before.video.seq_backwards;
    assert!(
        gaps >= 20,
        "the network lost too little video to test: {gaps} gaps"
    );
    // Each hole is filled by exactly one late packet: its retransmission.
    assert_eq!(filled, gaps, "video holes not (or twice) filled: {video:?}");
    // Audio has no retransmission (Opus FEC covers it): its holes stay,
    // which shows the loss hit it too.
    assert!(
        audio.seq_gaps > before.audio.seq_gaps,
        "no audio lost: {audio:?}"
    );
    assert_eq!(audio.seq_backwards, before.audio.seq_backwards);
    assert!(
        w.sfu.stats().nacks_received > before.nacks_received,
        "the subscriber's NACKs were not counted"
    );
}

/// A slow downlink loses in bursts, and the retransmissions then take a good
/// share of the stream. str0m's default drops queued NACKs once they pass
/// 15 % of a stream's bytes, which left a viewer on such a link frozen
/// until the next keyframe; the engine allows up to half.
#[test]
fn heavy_loss_on_the_way_to_a_subscriber_is_still_repaired() {
    let (w, before) = lossy_downlink(4);
    let video = received(&w, 1, 0, MediaKind::Video);
    let gaps = video.seq_gaps - before.video.seq_gaps;
    let filled = video.seq_backwards - before.video.seq_backwards;
    assert!(gaps >= 50, "the network lost too little video: {gaps} gaps");
    assert_eq!(filled, gaps, "video holes left unfilled: {video:?}");
}

#[test]
fn video_lost_on_the_way_from_a_publisher_is_asked_for_again() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    let video0 = received(&w, 1, 0, MediaKind::Video);
    let nacks_before = w.sfu.stats().nacks_sent;

    // One datagram in ten from client 0's publisher connection is lost.
    let publisher = w.clients[0].p.local_addr(Connection::Publisher);
    w.loss = Some(every_nth(10, move |from, _| from == publisher));
    w.run(Duration::from_secs(3));
    w.loss = None;
    w.run(Duration::from_secs(2));

    let video = received(&w, 1, 0, MediaKind::Video);
    let gaps = video.seq_gaps - video0.seq_gaps;
    let filled = video.seq_backwards - video0.seq_backwards;
    assert!(
        w.sfu.stats().nacks_sent > nacks_before,
        "the server sent the publisher no NACK"
    );
    // The server forwards what it got, then the recovered packets when they
    // come: the subscriber ends with every packet.
    assert!(
        gaps >= 20,
        "the network lost too little video to test: {gaps} gaps"
    );
    assert_eq!(filled, gaps, "holes left in the forwarded video: {video:?}");
}

#[test]
fn a_subscriber_keyframe_request_reaches_the_publisher() {
    let mut w = World::new();
    // A keyframe only every 20 s unless asked: one that comes sooner was
    // asked for.
    w.add(ClientOptions {
        keyframe_interval: Duration::from_secs(20),
        ..ClientOptions::default()
    });
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    let asked_before = w.clients[0].p.stats().keyframe_requests;
    let keys_before = received(&w, 1, 0, MediaKind::Video).keyframes;

    // What a browser does when NACKs could not repair a frame.
    let from = w.id(0);
    assert!(w.clients[1].p.request_keyframe(&from));
    w.run(Duration::from_millis(500));

    assert!(
        w.clients[0].p.stats().keyframe_requests > asked_before,
        "the publisher was not asked for a keyframe"
    );
    let keys = received(&w, 1, 0, MediaKind::Video).keyframes;
    assert!(keys > keys_before, "no new keyframe reached the subscriber");
}

#[test]
fn many_keyframe_requests_are_throttled() {
    let mut w = World::new();
    w.add(ClientOptions {
        keyframe_interval: Duration::from_secs(20),
        ..ClientOptions::default()
    });
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    let asked_before = w.clients[0].p.stats().keyframe_requests;
    let from = w.id(0);
    // A subscriber that cannot decode asks every 50 ms for 2 s.
    for _ in 0..40 {
        w.clients[1].p.request_keyframe(&from);
        w.run(Duration::from_millis(50));
    }
    w.run(Duration::from_secs(1));
    let asked = w.clients[0].p.stats().keyframe_requests - asked_before;
    assert!(
        (1..=4).contains(&asked),
        "{asked} requests reached the publisher in 3 s"
    );
}

#[test]
fn stats_report_the_askers_streams() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    // Long enough for two receiver reports on every video stream.
    w.run(Duration::from_secs(6));
    w.send(0, ClientMessage::GetStats {});
    let answers = w.clients[0].p.stats().media_stats.clone();
    let Some(ServerMessage::Stats {
        publishing,
        receiving,
        quality,
        ..
    }) = answers.last().cloned()
    else {
        panic!("no stats answer: {answers:?}");
    };
    assert_eq!(quality, ConnectionQuality::Good);
    let me = w.id(0);
    let other = w.id(1);
    assert_eq!(publishing.len(), 2, "{publishing:?}");
    for t in &publishing {
        assert_eq!(t.participant, me);
        assert!(t.packets > 50 && t.bytes > 0, "{t:?}");
    }
    assert!(publishing.iter().any(|t| t.kind == MediaKind::Video));
    assert_eq!(receiving.len(), 2, "{receiving:?}");
    for t in &receiving {
        assert_eq!(t.participant, other);
        assert!(t.packets > 50 && t.bytes > 0, "{t:?}");
        // Video receiver reports come every second (audio's every 5 s).
        if t.kind == MediaKind::Video {
            assert!(
                t.rtt_ms.is_some(),
                "no round-trip time from receiver reports: {t:?}"
            );
            assert_eq!(t.loss, Some(0.0), "{t:?}");
        }
    }
}

#[test]
fn asking_for_stats_too_often_is_refused() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(1));
    for _ in 0..6 {
        w.send(0, ClientMessage::GetStats {});
    }
    let answers = |w: &World| w.clients[0].p.stats().media_stats.len();
    let refused = w
        .errors(0)
        .iter()
        .filter(|c| **c == ErrorCode::RateLimited)
        .count();
    assert_eq!((answers(&w), refused), (3, 3));
    // A second later one more is allowed.
    w.run(Duration::from_millis(1100));
    w.send(0, ClientMessage::GetStats {});
    assert_eq!(answers(&w), 4);
}

#[test]
fn red_audio_reaches_red_subscribers_as_is_and_others_unwrapped() {
    // str0m's payload types, which the server offers: Opus 111, its RED 63.
    const OPUS: u8 = 111;
    const RED: u8 = 63;
    let mut w = World::new();
    let red = ClientOptions {
        audio_red: true,
        ..ClientOptions::default()
    };
    w.add(red.clone()); // 0: sends its microphone as RED
    w.add(ClientOptions::default()); // 1: knows no RED
    w.add(red); // 2: takes RED
    w.run(Duration::from_secs(3));

    let plain = received(&w, 1, 0, MediaKind::Audio);
    let wrapped = received(&w, 2, 0, MediaKind::Audio);
    assert!(
        plain.packets > 100 && wrapped.packets > 100,
        "{plain:?} {wrapped:?}"
    );
    assert_eq!(plain.payload_types, [OPUS], "{plain:?}");
    assert_eq!(wrapped.payload_types, [RED], "{wrapped:?}");
    // Unwrapped: exactly the primary frame (80 bytes, ending with its send
    // stamp). Passed on: that frame, the previous one and the RED headers.
    assert_eq!(plain.bytes, 80 * plain.packets);
    assert_eq!(plain.stamped, plain.packets);
    assert!(
        wrapped.bytes >= (2 * 80 + 5) * (wrapped.packets - 1),
        "{wrapped:?}"
    );
    assert_eq!((plain.seq_gaps, wrapped.seq_gaps), (0, 0));
    // Plain Opus from a client without RED stays plain Opus, RED or not.
    assert_eq!(received(&w, 2, 1, MediaKind::Audio).payload_types, [OPUS]);
}

/// The audio m-line of an SDP and the attribute lines under it.
fn audio_section(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .skip_while(|l| !l.starts_with("m=audio"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("m="))
        .map(|(_, l)| l)
        .collect()
}

#[test]
fn opus_is_negotiated_with_fec_and_red_both_ways() {
    let mut w = World::new();
    w.add(ClientOptions {
        audio_red: true,
        ..ClientOptions::default()
    });
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(2));

    // Publisher side: in-band FEC, and RED listed before Opus, or a browser
    // would not send RED.
    let answer = audio_section(&w.answers[0]);
    assert!(answer[0].ends_with(" 63 111"), "{answer:?}");
    assert!(
        answer.contains(&"a=fmtp:111 minptime=10;useinbandfec=1"),
        "{answer:?}"
    );
    assert!(answer.contains(&"a=fmtp:63 111/111"), "{answer:?}");
    // Subscriber side: the same offered to every subscriber.
    for offer in &w.offers {
        let audio = audio_section(offer);
        if audio.is_empty() {
            continue;
        }
        assert!(
            audio.contains(&"a=fmtp:111 minptime=10;useinbandfec=1"),
            "{audio:?}"
        );
        assert!(audio.contains(&"a=rtpmap:63 red/48000/2"), "{audio:?}");
    }
}

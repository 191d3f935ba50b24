//! How the engine drives str0m's pacer: what arrives goes out at once,
//! without waiting for the server's next timer.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use amphi_client::{ClientOptions, Connection, MediaKind};
use amphi_room::{Input, Output};
use common::World;
use common::options::listener;
use str0m::net::{Protocol, Receive, Transmit};

/// A burst of datagrams from a publisher, fed to the engine with no
/// timeout in between (as a busy server reads its socket), comes out to the
/// subscriber whole. str0m's pacer lets a connection send one packet per
/// timeout; when the engine left those timeouts to its timers, one packet
/// per subscriber went out per turn of the server's loop, and under steady
/// input the queues grew without bound (audio-500 collapsed, see
/// docs/benchmarks.md).
#[test]
fn a_burst_goes_out_without_waiting_for_timers() {
    let mut w = World::with_bandwidth_estimation(true);
    let speaker = w.add(ClientOptions {
        publish_video: false,
        ping_interval: None,
        ..ClientOptions::default()
    });
    let listener = w.add(listener());
    w.run(Duration::from_secs(3));
    assert!(
        w.packets_from(listener, speaker, MediaKind::Audio) > 50,
        "audio flows before the burst"
    );

    // Hold back the speaker's datagrams for a while...
    let held = hold_back(&mut w, speaker);
    let sent_before = w.clients[speaker].p.stats().sent_audio.packets;
    w.run(Duration::from_millis(400));
    w.loss = None;
    let burst = w.clients[speaker].p.stats().sent_audio.packets - sent_before;
    assert!(
        burst >= 15,
        "the speaker sent {burst} audio packets in 400 ms"
    );

    // ...then hand them to the engine back to back, time moving on a little
    // with each as it does on a real socket, and no timeout.
    let received_before = w.packets_from(listener, speaker, MediaKind::Audio);
    for t in held.borrow().iter() {
        w.now += Duration::from_micros(20);
        let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
            .expect("a datagram the speaker sent");
        w.sfu.handle_input(Input::Receive(w.now, r));
    }
    // Delivers what the engine has to send, without a timeout.
    w.exchange();
    let forwarded = w.packets_from(listener, speaker, MediaKind::Audio) - received_before;
    assert_eq!(
        forwarded, burst,
        "every audio packet of the burst reached the listener before any timer ran"
    );
}

/// A publisher of the test client set to pace as a browser does spreads a
/// keyframe over time instead of sending it in one burst, and the server
/// forwards it whole. The load generator relies on this for honest latency
/// figures: a 30-packet burst per keyframe is not what browsers send.
#[test]
fn a_paced_publisher_spreads_its_keyframes() {
    use amphi_client::synth::VideoShape;

    let shape = VideoShape {
        width: 1280,
        height: 720,
        packets_per_frame: 5,
        packet_size: 1200,
    };
    let publisher_options = |pacing| ClientOptions {
        publish_audio: false,
        ping_interval: None,
        video: shape,
        keyframe_packets: Some(30),
        keyframe_interval: Duration::from_secs(1),
        video_pacing: pacing,
        ..ClientOptions::default()
    };
    // Most video datagrams the publisher sent in one step of the world (2
    // ms), and the video packets the listener got, over 3 s.
    let measure = |pacing| {
        let mut w = World::new();
        let publisher = w.add(publisher_options(pacing));
        let listener = w.add(listener());
        w.run(Duration::from_secs(2));
        let from = w.clients[publisher].p.local_addr(Connection::Publisher);
        let server = w.server;
        let seen: Rc<RefCell<u32>> = Rc::default();
        let count = seen.clone();
        w.loss = Some(Box::new(move |t: &Transmit| {
            if t.source == from && t.destination == server && t.contents.len() > 1000 {
                *count.borrow_mut() += 1;
            }
            false
        }));
        let received_before = w.packets_from(listener, publisher, MediaKind::Video);
        let sent_before = w.clients[publisher].p.stats().sent_video.packets;
        let mut most = 0;
        for _ in 0..1500 {
            w.run(Duration::from_millis(2));
            most = most.max(seen.replace(0));
        }
        let sent = w.clients[publisher].p.stats().sent_video.packets - sent_before;
        let received = w.packets_from(listener, publisher, MediaKind::Video) - received_before;
        (most, sent, received)
    };

    let (burst_most, _, _) = measure(None);
    assert!(
        burst_most >= 30,
        "unpaced, a keyframe leaves at once ({burst_most} datagrams in 2 ms)"
    );
    // 2.5 times 1.44 Mbit/s: one 1,200-byte packet every 2.7 ms.
    let (paced_most, sent, received) = measure(Some(2.5));
    assert!(
        paced_most <= 2,
        "paced, at most 2 datagrams leave in 2 ms (saw {paced_most})"
    );
    // 3 s at 30 fps, three keyframes of 30 packets: ~525 packets.
    assert!(
        sent >= 450,
        "the paced publisher kept its rate: {sent} packets in 3 s"
    );
    assert!(
        received + 30 >= sent,
        "the listener got what was sent: {received} of {sent}"
    );
}

/// A packet fanned out to many subscribers comes out a subscriber at a time:
/// the first copy is handed to the caller to send before the others are
/// encrypted. Encrypting the whole fan-out first made the first subscriber
/// wait for the last, and wrote every copy into a buffer of its own that
/// had left the cache by the time the kernel read it (docs/benchmarks.md,
/// step 34).
#[test]
fn a_fan_out_comes_out_a_subscriber_at_a_time() {
    const LISTENERS: u64 = 8;
    let mut w = World::new();
    let speaker = w.add(ClientOptions {
        publish_video: false,
        ping_interval: None,
        ..ClientOptions::default()
    });
    let listeners: Vec<usize> = (0..LISTENERS).map(|_| w.add(listener())).collect();
    w.run(Duration::from_secs(3));
    for &l in &listeners {
        assert!(
            w.packets_from(l, speaker, MediaKind::Audio) > 50,
            "audio flows to every listener"
        );
    }

    let held = hold_back(&mut w, speaker);
    w.run(Duration::from_millis(100));
    w.loss = None;

    let mut fanned_out = 0;
    for t in held.borrow().iter() {
        w.now += Duration::from_micros(20);
        let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
            .expect("a datagram the speaker sent");
        let (rtp_before, datagrams_before) = {
            let s = w.sfu.stats();
            (s.rtp_packets_out, s.datagrams_out)
        };
        w.sfu.handle_input(Input::Receive(w.now, r));
        let written = w.sfu.stats().rtp_packets_out - rtp_before;
        let mut first = true;
        let mut transmits = 0;
        loop {
            match w.sfu.poll_output() {
                Output::Transmit(t) => {
                    if first && written == LISTENERS {
                        let encrypted = w.sfu.stats().datagrams_out - datagrams_before;
                        assert!(
                            encrypted < LISTENERS,
                            "{encrypted} copies were encrypted before the first was handed out"
                        );
                    }
                    first = false;
                    transmits += 1;
                    str0m::net::recycle(t.contents);
                }
                Output::Timeout(_) => break,
                _ => {}
            }
        }
        if written == LISTENERS {
            fanned_out += 1;
            assert!(transmits >= LISTENERS, "every listener gets its copy");
        }
    }
    assert!(
        fanned_out >= 3,
        "{fanned_out} audio packets were fanned out"
    );
}

/// Keeps what `publisher` sends to the server from reaching it, until
/// `w.loss` is reset; the datagrams are in the returned list.
/// Someone who starts publishing in a big room changes every member's
/// subscriptions. The engine makes the new subscribe offers a share per
/// turn, not all in one call: each is an SDP to build, and in a room of 375
/// building them in one go kept the media thread from everyone's packets
/// for 22 ms. Everyone still gets theirs, and the new publisher's media.
#[test]
fn a_new_publisher_is_offered_to_a_big_room_a_share_per_turn() {
    const LISTENERS: usize = 40;
    let mut w = World::new();
    w.tick = Duration::from_millis(1);
    let teacher = w.add(ClientOptions::default());
    for _ in 0..LISTENERS {
        w.add(listener());
    }
    w.run(Duration::from_secs(3));
    assert!(
        (1..=LISTENERS).all(|i| w.packets_from(i, teacher, MediaKind::Video) > 0),
        "the class did not start"
    );

    let before = w.offers.len();
    let student = w.add(ClientOptions::default());
    let mut most_in_a_turn = 0;
    let mut turns_with_offers = 0;
    for _ in 0..3_000 {
        let offers = w.offers.len();
        w.run(w.tick);
        let made = w.offers.len() - offers;
        most_in_a_turn = most_in_a_turn.max(made);
        turns_with_offers += usize::from(made > 0);
    }
    // The teacher and each listener get the student's tracks; the student
    // gets the teacher's.
    assert!(
        w.offers.len() - before > LISTENERS,
        "{} offers",
        w.offers.len() - before
    );
    assert!(
        most_in_a_turn <= 16,
        "{most_in_a_turn} subscribe offers made in one turn"
    );
    assert!(turns_with_offers >= 3, "{turns_with_offers} turns");
    for i in (0..=LISTENERS).filter(|i| *i != student) {
        assert!(
            w.packets_from(i, student, MediaKind::Video) > 0
                && w.packets_from(i, student, MediaKind::Audio) > 0,
            "client {i} got nothing from the new publisher"
        );
    }
}

fn hold_back(w: &mut World, publisher: usize) -> Rc<RefCell<Vec<Transmit>>> {
    let held: Rc<RefCell<Vec<Transmit>>> = Rc::default();
    let from = w.clients[publisher].p.local_addr(Connection::Publisher);
    let server = w.server;
    let hold = held.clone();
    w.loss = Some(Box::new(move |t: &Transmit| {
        let ours = t.source == from && t.destination == server;
        if ours {
            hold.borrow_mut().push(Transmit {
                proto: t.proto,
                source: t.source,
                destination: t.destination,
                contents: t.contents.to_vec().into(),
            });
        }
        ours
    }));
    held
}

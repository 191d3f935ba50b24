//! Drives a `Participant` against an in-memory fake SFU made of two str0m
//! `Rtc`s (ICE-lite, RTP mode), on a virtual clock and without sockets:
//! join, publish, subscribe, media that the fake server echoes back to the
//! same participant, keyframe requests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amphi_client::protocol::{
    ClientMessage, ParticipantInfo, Permissions, Role, ServerMessage, SubscribedTrack,
};
use amphi_client::{ClientOptions, MediaKind, Output, Participant, Phase, Source};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Rtc};

const SERVER: &str = "10.0.0.1:7000";
const CLIENT_PUB: &str = "10.0.0.2:50000";
const CLIENT_SUB: &str = "10.0.0.2:50001";

struct FakeServer {
    publisher: Rtc,  // answers the client's publish offer
    subscriber: Rtc, // offers to the client
    addr: SocketAddr,
    sub_pending: Option<SdpPendingOffer>,
    /// Subscriber mids for audio and video.
    sub_audio: Option<Mid>,
    sub_video: Option<Mid>,
    sub_connected: bool,
    pub_connected: bool,
    video_started: bool,
    keyframe_requested: bool,
    publish_mids: Vec<(Mid, MediaKind)>,
    to_client: Vec<ServerMessage>,
}

fn server_rtc(now: Instant, addr: SocketAddr) -> Rtc {
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap())
        .unwrap();
    rtc
}

fn info(id: &str) -> ParticipantInfo {
    ParticipantInfo {
        id: id.into(),
        identity: id.to_lowercase(),
        name: id.into(),
        role: Role::Teacher,
        tracks: vec![],
        hand_raised: false,
        group: None,
        floor: false,
    }
}

impl FakeServer {
    fn new(now: Instant) -> Self {
        let addr: SocketAddr = SERVER.parse().unwrap();
        FakeServer {
            publisher: server_rtc(now, addr),
            subscriber: server_rtc(now, addr),
            addr,
            sub_pending: None,
            sub_audio: None,
            sub_video: None,
            sub_connected: false,
            pub_connected: false,
            video_started: false,
            keyframe_requested: false,
            publish_mids: vec![],
            to_client: vec![],
        }
    }

    fn signal(&mut self, m: ClientMessage) {
        match m {
            ClientMessage::Join { token, .. } => {
                assert_eq!(token, "tok");
                self.to_client.push(ServerMessage::Joined {
                    room: "r".into(),
                    participant: info("P1"),
                    participants: vec![info("P2")],
                    permissions: Permissions {
                        publish: true,
                        subscribe: true,
                        publish_sources: Source::ALL.to_vec(),
                        chat: true,
                        moderate: false,
                    },
                    room_state: Default::default(),
                    ice_servers: vec![],
                });
            }
            ClientMessage::PublishOffer { sdp, tracks } => {
                assert_eq!(tracks.len(), 2);
                assert_eq!(tracks[0].source, Source::Microphone);
                assert_eq!(tracks[1].source, Source::Camera);
                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                let answer = self.publisher.sdp_api().accept_offer(offer).unwrap();
                for t in &tracks {
                    self.publish_mids
                        .push((Mid::from(t.mid.as_str()), t.source.kind()));
                }
                self.to_client.push(ServerMessage::PublishAnswer {
                    sdp: answer.to_sdp_string(),
                });
                // And offer the client its own tracks back.
                let mut api = self.subscriber.sdp_api();
                let a = api.add_media(
                    str0m::media::MediaKind::Audio,
                    Direction::SendOnly,
                    Some("P1".into()),
                    Some("T1".into()),
                    None,
                );
                let v = api.add_media(
                    str0m::media::MediaKind::Video,
                    Direction::SendOnly,
                    Some("P1".into()),
                    Some("T2".into()),
                    None,
                );
                let (offer, pending) = api.apply().unwrap();
                self.sub_pending = Some(pending);
                self.sub_audio = Some(a);
                self.sub_video = Some(v);
                self.to_client.push(ServerMessage::SubscribeOffer {
                    sdp: offer.to_sdp_string(),
                    tracks: vec![
                        SubscribedTrack {
                            mid: a.to_string(),
                            participant: "P1".into(),
                            track: "T1".into(),
                            kind: MediaKind::Audio,
                            source: Source::Microphone,
                        },
                        SubscribedTrack {
                            mid: v.to_string(),
                            participant: "P1".into(),
                            track: "T2".into(),
                            kind: MediaKind::Video,
                            source: Source::Camera,
                        },
                    ],
                });
            }
            ClientMessage::SubscribeAnswer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                let pending = self.sub_pending.take().expect("an offer pending");
                self.subscriber
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .unwrap();
            }
            ClientMessage::Ping {} => self.to_client.push(ServerMessage::Pong {}),
            ClientMessage::Leave {} => {}
            ClientMessage::Mute { .. } => {}
            // The classroom is not this fake's business.
            _ => {}
        }
    }

    /// Polls both connections until their timeouts; forwards media.
    fn pump(&mut self, net: &mut Net, now: Instant) -> Instant {
        let mut events = vec![];
        let t1 = poll_server_rtc(&mut self.publisher, net, now, &mut events);
        for e in events.drain(..) {
            match e {
                Event::RtpPacket(pkt) => self.forward(pkt, now),
                Event::Connected => self.pub_connected = true,
                _ => {}
            }
        }
        let t2 = poll_server_rtc(&mut self.subscriber, net, now, &mut events);
        for e in events.drain(..) {
            if let Event::Connected = e {
                self.sub_connected = true;
            }
        }
        t1.min(t2)
    }

    /// Forwards a packet from the publisher connection to the subscriber.
    fn forward(&mut self, p: RtpPacket, now: Instant) {
        if !self.sub_connected {
            return;
        }
        let mid = self
            .publisher
            .direct_api()
            .stream_rx(&p.header.ssrc)
            .map(|s| s.mid());
        let Some(kind) = mid.and_then(|m| self.publish_mids.iter().find(|x| x.0 == m).map(|x| x.1))
        else {
            return;
        };
        let (out_mid, codec) = match kind {
            MediaKind::Audio => (self.sub_audio.unwrap(), Codec::Opus),
            MediaKind::Video => (self.sub_video.unwrap(), Codec::Vp8),
        };
        if kind == MediaKind::Video && !self.video_started {
            if amphi_client::synth::parse_vp8(&p.payload).is_some_and(|i| i.keyframe)
                && self.keyframe_requested
            {
                self.video_started = true;
            } else {
                if !self.keyframe_requested {
                    self.keyframe_requested = true;
                    let m = mid.unwrap();
                    self.publisher
                        .direct_api()
                        .stream_rx_by_mid(m, None)
                        .unwrap()
                        .request_keyframe(KeyframeRequestKind::Pli);
                }
                return;
            }
        }
        let pt = self
            .subscriber
            .codec_config()
            .find(|c| c.spec().codec == codec)
            .unwrap()
            .pt();
        let mut api = self.subscriber.direct_api();
        let tx = api.stream_tx_by_mid(out_mid, None).unwrap();
        tx.write_rtp(
            RtpWrite::new(pt, p.seq_no, p.header.timestamp, now, p.payload.clone())
                .marker(p.header.marker),
        );
    }
}

struct Net {
    /// (deliver at, from, to, bytes)
    in_flight: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
}

const LATENCY: Duration = Duration::from_millis(2);

fn poll_server_rtc(rtc: &mut Rtc, net: &mut Net, now: Instant, events: &mut Vec<Event>) -> Instant {
    loop {
        match rtc.poll_output().unwrap() {
            str0m::Output::Transmit(t) => {
                net.in_flight
                    .push((now + LATENCY, t.source, t.destination, t.contents.to_vec()))
            }
            str0m::Output::Event(e) => events.push(e),
            str0m::Output::Timeout(t) => return t,
        }
    }
}

#[test]
fn participant_against_fake_sfu() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let start = Instant::now();
    let mut now = start;
    let pub_addr: SocketAddr = CLIENT_PUB.parse().unwrap();
    let sub_addr: SocketAddr = CLIENT_SUB.parse().unwrap();
    let mut p = Participant::new("tok", ClientOptions::default(), pub_addr, sub_addr, now).unwrap();
    let mut server = FakeServer::new(now);
    let mut net = Net { in_flight: vec![] };

    while now < start + Duration::from_secs(5) {
        // Client outputs.
        let mut next = loop {
            match p.poll_output() {
                Output::Transmit(t) => {
                    assert!(t.source == pub_addr || t.source == sub_addr);
                    net.in_flight.push((
                        now + LATENCY,
                        t.source,
                        t.destination,
                        t.contents.to_vec(),
                    ))
                }
                Output::Signal(m) => server.signal(m),
                Output::Timeout(t) => break t,
            }
        };
        for m in std::mem::take(&mut server.to_client) {
            p.handle_signal(m);
        }
        // Server outputs.
        next = next.min(server.pump(&mut net, now));
        if let Some(t) = net.in_flight.iter().map(|x| x.0).min() {
            next = next.min(t);
        }
        // Advance the clock (at least 1 ms to make progress, at most 20 ms
        // so that signalling, which has no timeout, is never starved).
        now = next.clamp(
            now + Duration::from_millis(1),
            now + Duration::from_millis(20),
        );
        // Deliver due datagrams.
        let (due, later): (Vec<_>, Vec<_>) = net.in_flight.drain(..).partition(|x| x.0 <= now);
        net.in_flight = later;
        for (_, from, to, bytes) in due {
            if to == server.addr {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: to,
                        contents: bytes.as_slice().try_into().unwrap(),
                    },
                );
                if server.publisher.accepts(&input) {
                    server.publisher.handle_input(input).unwrap();
                } else if server.subscriber.accepts(&input) {
                    server.subscriber.handle_input(input).unwrap();
                } else {
                    panic!("server dropped datagram from {from}");
                }
                // str0m in RTP mode keeps one received packet for the next
                // poll: poll after every input.
                server.pump(&mut net, now);
            } else {
                assert!(
                    p.handle_datagram(now, from, to, &bytes),
                    "client refused a datagram"
                );
            }
            // Garbage on the client's sockets is refused, never a panic.
            assert!(!p.handle_datagram(now, from, pub_addr, &[0xde, 0xad]));
        }
        p.handle_timeout(now);
        server.publisher.handle_input(Input::Timeout(now)).unwrap();
        server.subscriber.handle_input(Input::Timeout(now)).unwrap();
    }

    assert_eq!(*p.phase(), Phase::Joined);
    let s = p.stats();
    assert_eq!(s.id.as_deref(), Some("P1"));
    assert!(s.roster.contains_key("P2"));
    assert!(server.pub_connected);
    assert!(s.publisher_connected && s.subscriber_connected, "{s:#?}");
    assert_eq!(s.server_media_addrs, vec![server.addr]);
    assert!(s.keyframe_requests >= 1, "{s:#?}");
    assert!(s.sent_video.keyframes >= 2, "{s:#?}");
    let audio = s.from("P1", MediaKind::Audio);
    let video = s.from("P1", MediaKind::Video);
    assert!(audio.packets > 150, "{s:#?}");
    assert!(video.packets > 200, "{s:#?}");
    assert_eq!(video.first_packet_was_keyframe, Some(true), "{s:#?}");
    assert!(video.keyframes >= 2, "{s:#?}");
    assert_eq!(audio.seq_gaps + video.seq_gaps, 0, "{s:#?}");
    assert_eq!(audio.seq_backwards + video.seq_backwards, 0, "{s:#?}");
    assert_eq!(audio.ssrcs.len(), 1);
    assert_eq!(video.ssrcs.len(), 1);
    assert!(audio.stamped > 0);
    assert_eq!(s.unmatched_packets, 0);
    assert!(s.rejected_datagrams > 0); // the garbage above
}

//! Whole calls through the engine with no sockets and a simulated clock:
//! real str0m participants (ICE, DTLS, SRTP) exchange datagrams with the
//! `Sfu` through an in-memory network.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amphi_client::protocol::{
    ClientMessage, LeaveReason, Permissions, Role, ServerMessage, Source,
};
use amphi_client::{ClientOptions, Connection, MediaKind, Output as ClientOutput, Participant};
use amphi_room::{Command, Input, JoinRequest, Output, ParticipantId, Sfu, SfuConfig, SfuEvent};
use str0m::net::{Protocol, Receive, Transmit};

const SERVER: &str = "127.0.0.1:5000";
const TICK: Duration = Duration::from_millis(2);

struct Client {
    pid: ParticipantId,
    p: Participant,
    joined: bool,
    /// Whether the client's datagrams reach the server (false: its network died).
    online: bool,
}

struct World {
    sfu: Sfu,
    clients: Vec<Client>,
    now: Instant,
    server: SocketAddr,
    room: String,
    /// Every subscribe offer the engine sent, in order.
    offers: Vec<String>,
    events: Vec<SfuEvent>,
}

fn teacher() -> Permissions {
    Permissions {
        publish: true,
        subscribe: true,
        publish_sources: Source::ALL.to_vec(),
        chat: true,
        moderate: true,
    }
}

impl World {
    fn new() -> World {
        let server: SocketAddr = SERVER.parse().unwrap();
        let now = Instant::now();
        let sfu = Sfu::new(
            SfuConfig {
                candidates: vec![server],
                ..SfuConfig::default()
            },
            now,
        );
        World {
            sfu,
            clients: Vec::new(),
            now,
            server,
            room: "lecture".into(),
            offers: Vec::new(),
            events: Vec::new(),
        }
    }

    fn add(&mut self, opts: ClientOptions) -> usize {
        let i = self.clients.len();
        let port = 6000 + 2 * i as u16;
        let pub_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let sub_addr: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
        let p = Participant::new(
            "not-checked-by-the-engine",
            opts,
            pub_addr,
            sub_addr,
            self.now,
        )
        .unwrap();
        self.clients.push(Client {
            pid: ParticipantId(100 + i as u64),
            p,
            joined: false,
            online: true,
        });
        i
    }

    fn id(&self, i: usize) -> String {
        self.clients[i].pid.to_string()
    }

    /// Runs the network and both sides for `d` of simulated time.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            let now = self.now;
            self.sfu.handle_input(Input::Timeout(now));
            for c in &mut self.clients {
                c.p.handle_timeout(now);
            }
            self.exchange();
        }
    }

    /// Delivers datagrams one at a time, draining the receiver after each:
    /// str0m in RTP mode hands out one packet per `handle_input`, so a
    /// receiver must be polled before it is given the next datagram.
    fn exchange(&mut self) {
        let mut wire: VecDeque<Transmit> = VecDeque::new();
        for i in 0..self.clients.len() {
            self.drain_client(i, &mut wire);
        }
        self.drain_server(&mut wire);
        while let Some(t) = wire.pop_front() {
            if t.destination == self.server {
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
                self.sfu.handle_input(Input::Receive(self.now, r));
                self.drain_server(&mut wire);
                continue;
            }
            let Some(i) = self.clients.iter().position(|c| {
                c.online
                    && (c.p.local_addr(Connection::Publisher) == t.destination
                        || c.p.local_addr(Connection::Subscriber) == t.destination)
            }) else {
                continue;
            };
            self.clients[i]
                .p
                .handle_datagram(self.now, t.source, t.destination, &t.contents);
            self.drain_client(i, &mut wire);
        }
    }

    fn drain_client(&mut self, i: usize, wire: &mut VecDeque<Transmit>) {
        let now = self.now;
        loop {
            let c = &mut self.clients[i];
            match c.p.poll_output() {
                ClientOutput::Timeout(_) => return,
                ClientOutput::Transmit(t) => {
                    if c.online {
                        wire.push_back(t);
                    }
                }
                ClientOutput::Signal(m) => {
                    let pid = c.pid;
                    let cmd = match m {
                        ClientMessage::Join { .. } => {
                            c.joined = true;
                            Command::Join(JoinRequest {
                                participant: pid,
                                room: self.room.clone(),
                                identity: format!("user-{}", pid.0),
                                name: format!("User {}", pid.0),
                                role: Role::Teacher,
                                permissions: teacher(),
                            })
                        }
                        message => Command::Message {
                            participant: pid,
                            message,
                        },
                    };
                    self.sfu.handle_input(Input::Command(now, cmd));
                    self.drain_server(wire);
                }
            }
        }
    }

    fn drain_server(&mut self, wire: &mut VecDeque<Transmit>) {
        loop {
            match self.sfu.poll_output() {
                Output::Timeout(_) => return,
                Output::Transmit(t) => wire.push_back(t),
                Output::Event(e) => self.events.push(e),
                Output::Signal {
                    participant,
                    message,
                } => {
                    if let ServerMessage::SubscribeOffer { sdp, .. } = &message {
                        self.offers.push(sdp.clone());
                    }
                    if let Some(c) = self.clients.iter_mut().find(|c| c.pid == participant) {
                        c.p.handle_signal(message);
                    }
                }
                Output::Close { participant } => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.pid == participant) {
                        c.p.handle_signalling_closed();
                    }
                }
            }
        }
    }

    fn leave_signalling(&mut self, i: usize, reason: LeaveReason) {
        let pid = self.clients[i].pid;
        self.sfu.handle_input(Input::Command(
            self.now,
            Command::Leave {
                participant: pid,
                reason,
            },
        ));
        self.clients[i].online = false;
        self.clients[i].p.handle_signalling_closed();
        self.exchange();
    }
}

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
    for sdp in &w.offers {
        let first = sdp.lines().find(|l| l.starts_with("m=")).unwrap_or("");
        assert!(first.starts_with("m=application "), "first m-line: {first}");
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

//! An in-memory world for engine tests and `benches/forward.rs`: real str0m
//! participants (ICE, DTLS, SRTP) exchange datagrams with the `Sfu` through
//! an in-memory network, on a simulated clock.
#![allow(dead_code)]

pub mod counting;
pub mod options;

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amphi_client::protocol::{
    ClientMessage, LeaveReason, Permissions, Role, ServerMessage, Source,
};
use amphi_client::{ClientOptions, Connection, MediaKind, Output as ClientOutput, Participant};
use amphi_room::{Command, Input, JoinRequest, Output, ParticipantId, Sfu, SfuConfig, SfuEvent};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{PayloadPools, with_payload_pools};

const SERVER: &str = "127.0.0.1:5000";

thread_local! {
    /// Whether this thread is inside the engine: a test binary with a
    /// counting allocator counts only the engine's allocations
    /// (tests/allocations.rs), not the clients'.
    pub static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
    /// Wall-clock time spent inside the engine, for the benchmark.
    static ENGINE_TIME: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// The longest single call into the engine: how long it kept a media
    /// thread from everything else.
    static LONGEST_CALL: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// The longest single join.
    static LONGEST_JOIN: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs `f`, which calls the engine, marked and timed as engine work.
fn in_engine<T>(f: impl FnOnce() -> T) -> T {
    IN_ENGINE.with(|c| c.set(true));
    let start = Instant::now();
    let out = f();
    let spent = start.elapsed();
    IN_ENGINE.with(|c| c.set(false));
    ENGINE_TIME.with(|t| t.set(t.get() + spent));
    LONGEST_CALL.with(|t| t.set(t.get().max(spent)));
    out
}

/// The longest single call into the engine on this thread since the last
/// call.
pub fn take_longest_call() -> Duration {
    LONGEST_CALL.with(|t| t.replace(Duration::ZERO))
}

/// The longest join on this thread since the last call.
pub fn take_longest_join() -> Duration {
    LONGEST_JOIN.with(|t| t.replace(Duration::ZERO))
}

/// The time spent inside the engine on this thread since the last call.
pub fn take_engine_time() -> Duration {
    ENGINE_TIME.with(|t| t.replace(Duration::ZERO))
}

/// Simulated time per turn of the network, unless a world sets its own.
const TICK: Duration = Duration::from_millis(2);

pub struct Client {
    pub pid: ParticipantId,
    pub p: Participant,
    pub joined: bool,
    pub role: Role,
    pub permissions: Permissions,
    pub identity: String,
    /// Whether the client's datagrams reach the server (false: its network died).
    pub online: bool,
}

/// Decides whether a datagram on the wire is lost (`true`).
pub type Loss = Box<dyn FnMut(&Transmit) -> bool>;

/// A narrow link in front of one address, as a home connection is in front
/// of a student: a token-bucket shaper (tc's `tbf`). What is sent to it
/// leaves at `bits_per_second`, except that a link idle for a while lets up
/// to `burst` bytes through at once; a datagram that would wait longer than
/// `queue` is dropped (tail drop). Datagrams arrive when the link has sent
/// them, so a delay-based estimator reads a real queue from it.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub bits_per_second: u64,
    pub queue: Duration,
    pub burst: u64,
}

pub struct Bottleneck {
    pub to: SocketAddr,
    pub shape: Shape,
    /// The bucket's tokens (bytes) just after the last datagram left, and
    /// when it left.
    tokens: f64,
    last: Option<Instant>,
    held: VecDeque<(Instant, Transmit)>,
    /// Datagrams dropped because the link's queue was full.
    pub dropped: u64,
    /// The longest a datagram spent in the link, its own sending included.
    pub longest_wait: Duration,
}

impl Bottleneck {
    /// Takes `t` in at `now`: queued behind what the link holds, or dropped.
    fn take(&mut self, now: Instant, t: Transmit) {
        let Shape {
            bits_per_second,
            queue,
            burst,
        } = self.shape;
        let bytes_per_second = bits_per_second as f64 / 8.0;
        let size = (t.contents.len() as u64 + UDP_IP_OVERHEAD) as f64;
        // It leaves once what is ahead of it has left and the bucket holds
        // its size.
        let ready = self.last.filter(|&l| l > now).unwrap_or(now);
        let tokens = self.last.map_or(burst as f64, |l| {
            self.tokens + ready.saturating_duration_since(l).as_secs_f64() * bytes_per_second
        });
        let tokens = tokens.min(burst as f64);
        let leaves = if tokens >= size {
            ready
        } else {
            ready + Duration::from_secs_f64((size - tokens) / bytes_per_second)
        };
        if leaves - now > queue {
            self.dropped += 1;
            str0m::net::recycle(t.contents);
            return;
        }
        self.tokens = (tokens - size).max(0.0);
        self.last = Some(leaves);
        self.longest_wait = self.longest_wait.max(leaves - now);
        self.held.push_back((leaves, t));
    }

    /// What the link has delivered by `now`, oldest first.
    fn release(&mut self, now: Instant, wire: &mut VecDeque<Transmit>) {
        while self.held.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, t)) = self.held.pop_front() {
                wire.push_back(t);
            }
        }
    }
}

/// IPv4 and UDP headers: what a link carries beyond the datagram.
const UDP_IP_OVERHEAD: u64 = 28;

pub struct World {
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    pub now: Instant,
    pub server: SocketAddr,
    pub room: String,
    /// Every subscribe offer the engine sent, in order.
    pub offers: Vec<String>,
    /// Every publish answer the engine sent, in order.
    pub answers: Vec<String>,
    /// Every `participant_updated` and `participants_updated` the engine
    /// sent: to whom, about whom.
    pub updates: Vec<(ParticipantId, Vec<String>)>,
    pub events: Vec<SfuEvent>,
    /// Loses datagrams on the wire: called for each one, `true` drops it.
    pub loss: Option<Loss>,
    /// Narrow links in front of some addresses (`World::narrow_downlink`).
    pub bottlenecks: Vec<Bottleneck>,
    /// Simulated time per turn of the network: every client and the server
    /// handle their timeouts, then the datagrams of the turn are delivered.
    pub tick: Duration,
    /// The clients' received payloads come from pools of their own: on the
    /// server's thread they would turn its pools faster than its own
    /// traffic does, and it would allocate for them (tests/allocations.rs).
    client_pools: PayloadPools,
}

pub fn teacher() -> Permissions {
    Permissions {
        publish: true,
        subscribe: true,
        publish_sources: Source::ALL.to_vec(),
        chat: true,
        moderate: true,
    }
}

impl World {
    pub fn new() -> World {
        // This network delivers a whole 2 ms tick at once, with no queues: a
        // delay-based estimator reads nothing real from it, except through
        // a narrow link (`World::narrow_downlink`; tests/congestion.rs).
        World::with_bandwidth_estimation(false)
    }

    /// With str0m's estimator and pacer on every subscriber connection, for
    /// tests of how the engine drives them (not of the estimate).
    pub fn with_bandwidth_estimation(bandwidth_estimation: bool) -> World {
        World::with_config(SfuConfig {
            bandwidth_estimation,
            ..SfuConfig::default()
        })
    }

    /// An engine made with `config`, its candidate set to this network's
    /// server address.
    pub fn with_config(config: SfuConfig) -> World {
        let server: SocketAddr = SERVER.parse().unwrap();
        let now = Instant::now();
        let sfu = Sfu::new(
            SfuConfig {
                candidates: vec![server],
                ..config
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
            answers: Vec::new(),
            updates: Vec::new(),
            events: Vec::new(),
            loss: None,
            bottlenecks: Vec::new(),
            tick: TICK,
            client_pools: PayloadPools::default(),
        }
    }

    pub fn add(&mut self, opts: ClientOptions) -> usize {
        self.add_as(opts, Role::Teacher, teacher())
    }

    pub fn add_as(&mut self, opts: ClientOptions, role: Role, permissions: Permissions) -> usize {
        let i = self.clients.len();
        let identity = format!("user-{}", 100 + i);
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
            role,
            permissions,
            identity,
        });
        i
    }

    pub fn id(&self, i: usize) -> String {
        self.clients[i].pid.to_string()
    }

    /// Runs the network and both sides for `d` of simulated time.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += self.tick;
            let now = self.now;
            in_engine(|| self.sfu.handle_input(Input::Timeout(now)));
            for c in &mut self.clients {
                with_payload_pools(&mut self.client_pools, || c.p.handle_timeout(now));
            }
            self.exchange();
        }
    }

    /// Delivers datagrams one at a time, draining the receiver after each:
    /// str0m in RTP mode hands out one packet per `handle_input`, so a
    /// receiver must be polled before it is given the next datagram.
    pub fn exchange(&mut self) {
        let mut wire: VecDeque<Transmit> = VecDeque::new();
        let mut arrived = VecDeque::new();
        for b in &mut self.bottlenecks {
            b.release(self.now, &mut arrived);
        }
        while let Some(t) = arrived.pop_front() {
            self.deliver_to_client(t, &mut wire);
        }
        for i in 0..self.clients.len() {
            self.drain_client(i, &mut wire);
        }
        self.drain_server(&mut wire);
        while let Some(t) = wire.pop_front() {
            if let Some(lose) = &mut self.loss
                && lose(&t)
            {
                continue;
            }
            if t.destination == self.server {
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
                in_engine(|| self.sfu.handle_input(Input::Receive(self.now, r)));
                // What the server sends for this datagram goes out ahead of
                // the datagrams still queued, as the server's sender flushes
                // a batch at a time: queued behind a keyframe's other
                // packets, a fan-out of 100 held thousands of datagrams,
                // more than str0m keeps buffers for, and the allocation
                // counts measured this network instead of the engine.
                let queued = wire.len();
                self.drain_server(&mut wire);
                wire.rotate_right(wire.len() - queued);
                str0m::net::recycle(t.contents);
                continue;
            }
            if let Some(b) = self.bottlenecks.iter_mut().find(|b| b.to == t.destination) {
                b.take(self.now, t);
                continue;
            }
            self.deliver_to_client(t, &mut wire);
        }
    }

    /// Hands `t` to the client it is for, and puts what that client sends
    /// in answer on the wire.
    fn deliver_to_client(&mut self, t: Transmit, wire: &mut VecDeque<Transmit>) {
        let Some(i) = self.clients.iter().position(|c| {
            c.online
                && (c.p.local_addr(Connection::Publisher) == t.destination
                    || c.p.local_addr(Connection::Subscriber) == t.destination)
        }) else {
            return;
        };
        let c = &mut self.clients[i];
        with_payload_pools(&mut self.client_pools, || {
            c.p.handle_datagram(self.now, t.source, t.destination, &t.contents);
        });
        // As the server's sender does once a datagram is out.
        str0m::net::recycle(t.contents);
        self.drain_client(i, wire);
    }

    /// Puts a narrow link in front of client `i`'s subscriber connection
    /// (what the server sends it), or, with `None`, takes it away once it
    /// has delivered what it holds.
    pub fn narrow_downlink(&mut self, i: usize, shape: Option<Shape>) {
        let to = self.clients[i].p.local_addr(Connection::Subscriber);
        match (shape, self.bottlenecks.iter_mut().find(|b| b.to == to)) {
            (Some(shape), Some(b)) => b.shape = shape,
            (Some(shape), None) => self.bottlenecks.push(Bottleneck {
                to,
                shape,
                tokens: 0.0,
                last: None,
                held: VecDeque::new(),
                dropped: 0,
                longest_wait: Duration::ZERO,
            }),
            // As wide as the loopback: what it holds still leaves in order.
            (None, Some(b)) => {
                b.shape = Shape {
                    bits_per_second: 100_000_000_000,
                    queue: Duration::MAX,
                    burst: 0,
                }
            }
            (None, None) => {}
        }
    }

    /// The narrow link in front of client `i`'s subscriber connection.
    pub fn downlink(&self, i: usize) -> Option<&Bottleneck> {
        let to = self.clients[i].p.local_addr(Connection::Subscriber);
        self.bottlenecks.iter().find(|b| b.to == to)
    }

    fn drain_client(&mut self, i: usize, wire: &mut VecDeque<Transmit>) {
        let now = self.now;
        loop {
            let c = &mut self.clients[i];
            match with_payload_pools(&mut self.client_pools, || c.p.poll_output()) {
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
                                identity: c.identity.clone(),
                                name: format!("User {}", pid.0),
                                role: c.role,
                                permissions: c.permissions.clone(),
                            })
                        }
                        message => Command::Message {
                            participant: pid,
                            message,
                        },
                    };
                    let join = matches!(cmd, Command::Join(_));
                    let start = Instant::now();
                    in_engine(|| self.sfu.handle_input(Input::Command(now, cmd)));
                    if join {
                        let spent = start.elapsed();
                        LONGEST_JOIN.with(|t| t.set(t.get().max(spent)));
                    }
                    self.drain_server(wire);
                }
            }
        }
    }

    fn drain_server(&mut self, wire: &mut VecDeque<Transmit>) {
        loop {
            match in_engine(|| self.sfu.poll_output()) {
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
                    if let ServerMessage::PublishAnswer { sdp } = &message {
                        self.answers.push(sdp.clone());
                    }
                    match &message {
                        ServerMessage::ParticipantUpdated { participant: about } => {
                            self.updates.push((participant, vec![about.id.clone()]));
                        }
                        ServerMessage::ParticipantsUpdated { participants } => {
                            let about = participants.iter().map(|p| p.id.clone()).collect();
                            self.updates.push((participant, about));
                        }
                        _ => {}
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

    pub fn leave_signalling(&mut self, i: usize, reason: LeaveReason) {
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

impl World {
    /// Sends a message as client `i`, as its signalling connection would.
    pub fn send(&mut self, i: usize, message: ClientMessage) {
        let pid = self.clients[i].pid;
        self.sfu.handle_input(Input::Command(
            self.now,
            Command::Message {
                participant: pid,
                message,
            },
        ));
        self.exchange();
    }

    /// Classroom messages client `i` received, newest last.
    pub fn inbox(&self, i: usize) -> Vec<ServerMessage> {
        self.clients[i].p.stats().classroom.clone()
    }

    /// Codes of the errors client `i` received, in order.
    pub fn errors(&self, i: usize) -> Vec<amphi_client::protocol::ErrorCode> {
        self.clients[i]
            .p
            .stats()
            .errors
            .iter()
            .map(|e| e.code)
            .collect()
    }

    pub fn packets_from(&self, i: usize, from: usize, kind: MediaKind) -> u64 {
        self.clients[i].p.stats().from(&self.id(from), kind).packets
    }
}

pub fn student() -> Permissions {
    Permissions {
        publish: true,
        subscribe: true,
        publish_sources: vec![Source::Camera, Source::Microphone],
        chat: true,
        moderate: false,
    }
}

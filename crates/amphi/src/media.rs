//! The media thread: owns the UDP socket, the ICE-TCP listener and its
//! connections (see [`crate::tcp`]), and one [`Sfu`], and runs the engine's
//! loop. Signalling talks to it only through [`MediaHandle`].

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amphi_protocol::{IceServer, ServerMessage};
use amphi_room::{Command, Input, Output, ParticipantId, Sfu, SfuConfig};
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::net::{Protocol, Receive};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, warn};

use crate::metrics::MediaObserver;
use crate::tcp::{Fill, TcpMedia};
use crate::udp_batch::{self, SendFailure};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
const TCP_LISTENER: Token = Token(2);
/// Tokens from here up are ICE-TCP connections.
const FIRST_TCP_CONN: usize = 16;
/// How often idle ICE-TCP connections are looked for.
const TCP_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often the media thread frees pooled payload buffers that quieter
/// traffic no longer needs.
const PAYLOAD_RELEASE_EVERY: Duration = Duration::from_secs(5);

/// What the media thread sends back to one participant's signalling task.
// Moved once through a channel; `Close` is rare, so its small size wastes little.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ToSession {
    Message(ServerMessage),
    /// The engine has forgotten this participant: close the socket.
    Close,
}

enum Request {
    Command(Command, Option<UnboundedSender<ToSession>>),
    /// SIGTERM: tell everyone, take no new rooms (see `MediaObserver`).
    Drain,
    Shutdown,
    /// From now on, add these to each participant's `joined.ice_servers`.
    IceServers(IceServersFn),
}

/// Per-participant ICE servers (TURN credentials are per participant and
/// short-lived, so they are made at each join, by participant id).
pub type IceServersFn = Arc<dyn Fn(&str) -> Vec<IceServer> + Send + Sync>;

/// The signalling side's end of the media thread.
#[derive(Clone)]
pub struct MediaHandle {
    tx: Sender<Request>,
    waker: Arc<Waker>,
    pub udp_addr: SocketAddr,
    /// The ICE-TCP listener's address, when ICE-TCP is on.
    pub tcp_addr: Option<SocketAddr>,
}

impl MediaHandle {
    /// Hands a command to the engine. `session` registers where the
    /// participant's messages go; it is given with `Join`.
    pub fn send(&self, command: Command, session: Option<UnboundedSender<ToSession>>) {
        if self.tx.send(Request::Command(command, session)).is_ok() {
            // A failed wake only delays the command to the next packet or timer.
            let _ = self.waker.wake();
        }
    }

    /// Adds per-participant ICE servers (the embedded TURN server's) to
    /// every later `joined`. Call before serving signalling.
    pub fn set_ice_servers(&self, f: IceServersFn) {
        let _ = self.tx.send(Request::IceServers(f));
        let _ = self.waker.wake();
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown);
        let _ = self.waker.wake();
    }

    /// Sends `draining` to every participant; new rooms are refused from
    /// the moment `Ops::start_draining` was called.
    pub fn drain(&self) {
        let _ = self.tx.send(Request::Drain);
        let _ = self.waker.wake();
    }
}

/// Binds the UDP socket (and the ICE-TCP listener at `tcp_bind`, if any)
/// and starts the media thread. `advertise` maps a bound address to the
/// addresses clients are told to use for it (public IPs behind 1:1 NAT).
pub fn start(
    bind: SocketAddr,
    tcp_bind: Option<SocketAddr>,
    mut config: SfuConfig,
    advertise: impl Fn(SocketAddr) -> anyhow::Result<Vec<SocketAddr>>,
    observer: MediaObserver,
) -> anyhow::Result<(MediaHandle, JoinHandle<()>)> {
    let std_socket = std::net::UdpSocket::bind(bind)
        .map_err(|e| anyhow::anyhow!("cannot bind the media UDP socket to {bind}: {e}"))?;
    std_socket.set_nonblocking(true)?;
    match udp_batch::set_buffers(std_socket.as_raw_fd(), udp_batch::SOCKET_BUFFER) {
        // Linux reports twice what it keeps, bookkeeping included.
        Ok((rcv, _)) if rcv / 2 < udp_batch::SOCKET_BUFFER => warn!(
            granted = rcv / 2,
            wanted = udp_batch::SOCKET_BUFFER,
            "the media socket's receive buffer is small: raise net.core.rmem_max and wmem_max (docs/operations.md)"
        ),
        Ok(_) => {}
        Err(e) => warn!("cannot size the media socket's buffers: {e}"),
    }
    let local = std_socket.local_addr()?;
    config.candidates = advertise(local)?;
    let mut socket = UdpSocket::from_std(std_socket);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let tcp = match tcp_bind {
        Some(tcp_bind) => {
            let std_listener = std::net::TcpListener::bind(tcp_bind).map_err(|e| {
                anyhow::anyhow!("cannot bind the ICE-TCP listener to {tcp_bind}: {e}")
            })?;
            std_listener.set_nonblocking(true)?;
            config.tcp_candidates = advertise(std_listener.local_addr()?)?;
            let listener = TcpListener::from_std(std_listener);
            Some(TcpMedia::new(
                listener,
                poll.registry(),
                TCP_LISTENER,
                FIRST_TCP_CONN,
            )?)
        }
        None => None,
    };
    let tcp_addr = tcp.as_ref().and_then(|t| t.local_addr());
    let tcp_destination = config.tcp_candidates.first().copied().or(tcp_addr);
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    // Datagrams arrive addressed to the bound socket; str0m wants to see the
    // candidate address it advertised.
    let destination = config.candidates.first().copied().unwrap_or(local);
    let thread = std::thread::Builder::new()
        .name("amphi-media".into())
        .spawn(move || {
            let mut media = MediaLoop {
                sfu: Sfu::new(config, Instant::now()),
                socket,
                poll,
                rx,
                sessions: HashMap::new(),
                destination,
                tcp,
                tcp_destination,
                next_sweep: Instant::now() + TCP_SWEEP_EVERY,
                next_payload_release: Instant::now() + PAYLOAD_RELEASE_EVERY,
                ready: Vec::new(),
                observer,
                ice_servers: None,
                receiver: udp_batch::Receiver::default(),
                sender: udp_batch::Sender::default(),
            };
            media.observer.started();
            if let Err(e) = media.run() {
                error!("media thread stopped: {e}");
            }
            media.observer.stopped();
        })?;
    Ok((
        MediaHandle {
            tx,
            waker,
            udp_addr: local,
            tcp_addr,
        },
        thread,
    ))
}

struct MediaLoop {
    sfu: Sfu,
    socket: UdpSocket,
    poll: Poll,
    rx: Receiver<Request>,
    sessions: HashMap<ParticipantId, UnboundedSender<ToSession>>,
    destination: SocketAddr,
    tcp: Option<TcpMedia>,
    /// The advertised TCP candidate that framed packets are addressed to.
    tcp_destination: Option<SocketAddr>,
    next_sweep: Instant,
    next_payload_release: Instant,
    /// Readiness of TCP sockets from the last poll: (token, readable, writable).
    ready: Vec<(Token, bool, bool)>,
    /// Metrics, webhooks and draining (crate::metrics).
    observer: MediaObserver,
    ice_servers: Option<IceServersFn>,
    receiver: udp_batch::Receiver,
    /// Datagrams the engine asked for, sent a batch at a time.
    sender: udp_batch::Sender,
}

impl MediaLoop {
    fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(64);
        loop {
            if !self.take_requests() {
                return Ok(());
            }
            self.read_socket();
            self.serve_tcp();
            let mut timeout = self.flush();
            let now = Instant::now();
            if let Some(tcp) = &self.tcp {
                self.observer.ice_tcp(tcp.accepted, tcp.open());
            }
            self.observer.tick(&self.sfu, now, false);
            if now >= self.next_payload_release {
                // Received payloads come from a pool on this thread (str0m's
                // streams/payload.rs) that grows with the traffic; memory
                // goes back once the traffic drops.
                str0m::rtp::release_idle_payloads(now);
                self.next_payload_release = now + PAYLOAD_RELEASE_EVERY;
            }
            if timeout <= now {
                self.sfu.handle_input(Input::Timeout(now));
                continue;
            }
            if self.tcp.is_some() {
                timeout = timeout.min(self.next_sweep);
            }
            let wait = if self.tcp.as_ref().is_some_and(TcpMedia::has_pending) {
                // Data already waits on a connection that used up its turn.
                Duration::ZERO
            } else {
                timeout.saturating_duration_since(now)
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.tcp.is_some() {
                self.ready.extend(
                    events
                        .iter()
                        .filter(|e| e.token() != SOCKET && e.token() != WAKER)
                        .map(|e| {
                            (
                                e.token(),
                                e.is_readable() || e.is_read_closed() || e.is_error(),
                                e.is_writable(),
                            )
                        }),
                );
            }
        }
    }

    /// Accepts ICE-TCP connections, reads their frames into the engine,
    /// writes what is queued, and closes idle ones.
    fn serve_tcp(&mut self) {
        let Some(tcp) = self.tcp.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        let now = Instant::now();
        let mut to_read = tcp.take_pending();
        for (token, readable, writable) in std::mem::take(&mut self.ready) {
            if tcp.is_listener(token) {
                tcp.accept(registry, now);
            } else if tcp.owns(token) {
                if writable {
                    tcp.flush(registry, token);
                }
                if readable && !to_read.contains(&token) {
                    to_read.push(token);
                }
            }
        }
        for token in to_read {
            self.read_tcp(token);
        }
        if now >= self.next_sweep {
            if let Some(tcp) = self.tcp.as_mut() {
                tcp.sweep(self.poll.registry(), now);
            }
            self.next_sweep = now + TCP_SWEEP_EVERY;
        }
    }

    /// Reads one connection (up to its budget) and hands every complete
    /// frame to the engine. A frame that is no WebRTC packet closes this
    /// connection only.
    fn read_tcp(&mut self, token: Token) {
        let Some(destination) = self.tcp_destination else {
            return;
        };
        for _ in 0..TcpMedia::reads_per_turn() {
            let Some(tcp) = self.tcp.as_mut() else {
                return;
            };
            let Some(peer) = tcp.peer(token) else {
                return;
            };
            match tcp.fill(token) {
                Fill::Data => {}
                Fill::WouldBlock => return,
                Fill::Closed => {
                    tcp.close(self.poll.registry(), token);
                    return;
                }
            }
            loop {
                let Some(tcp) = self.tcp.as_mut() else {
                    return;
                };
                let now = Instant::now();
                let garbage = match tcp.next_frame(token, now) {
                    Ok(None) => break,
                    Ok(Some(frame)) => {
                        match Receive::new(Protocol::Tcp, peer, destination, frame) {
                            Ok(receive) => {
                                self.sfu.handle_input(Input::Receive(now, receive));
                                false
                            }
                            Err(_) => true,
                        }
                    }
                    Err(_) => true,
                };
                if garbage {
                    debug!(%peer, "ICE-TCP: not a WebRTC packet; connection closed");
                    tcp.close(self.poll.registry(), token);
                    return;
                }
                self.flush();
            }
        }
        if let Some(tcp) = self.tcp.as_mut() {
            tcp.defer(token);
        }
    }

    /// Returns `false` when the thread should stop.
    fn take_requests(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Request::Command(command, session)) => {
                    let leaving = match (&command, session) {
                        (Command::Join(req), Some(tx))
                            if self.observer.refuse_join(&self.sfu, &req.room) =>
                        {
                            let bye = ServerMessage::Bye {
                                reason: amphi_protocol::LeaveReason::ServerShutdown,
                                message: None,
                            };
                            let _ = tx.send(ToSession::Message(bye));
                            let _ = tx.send(ToSession::Close);
                            continue;
                        }
                        (Command::Join(req), Some(tx)) => {
                            self.sessions.insert(req.participant, tx);
                            None
                        }
                        (Command::Leave { participant, .. }, _) => Some(*participant),
                        _ => None,
                    };
                    self.sfu
                        .handle_input(Input::Command(Instant::now(), command));
                    self.flush();
                    if let Some(participant) = leaving {
                        self.sessions.remove(&participant);
                    }
                }
                Ok(Request::IceServers(f)) => self.ice_servers = Some(f),
                Ok(Request::Drain) => {
                    for tx in self.sessions.values() {
                        let _ = tx.send(ToSession::Message(ServerMessage::Draining {}));
                    }
                    // The drain waits for rooms to end: give it fresh numbers.
                    self.observer.tick(&self.sfu, Instant::now(), true);
                }
                Ok(Request::Shutdown) | Err(TryRecvError::Disconnected) => {
                    // Whoever is still here is told why before the sockets close.
                    for (_, tx) in self.sessions.drain() {
                        let bye = ServerMessage::Bye {
                            reason: amphi_protocol::LeaveReason::ServerShutdown,
                            message: None,
                        };
                        let _ = tx.send(ToSession::Message(bye));
                        let _ = tx.send(ToSession::Close);
                    }
                    self.observer.tick(&self.sfu, Instant::now(), true);
                    return false;
                }
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// Reads the socket dry, a batch at a time. Between batches, timers that
    /// fell due are served: under a steady stream of input, str0m's pacer
    /// (which wants a timeout after every packet it sends) would otherwise
    /// wait until the socket is empty.
    fn read_socket(&mut self) {
        let fd = self.socket.as_raw_fd();
        loop {
            match self.receiver.recv(fd) {
                Ok(_) => {
                    for d in self.receiver.datagrams() {
                        // Read per datagram: arrival times feed the
                        // publisher's bandwidth estimate (TWCC feedback).
                        let now = Instant::now();
                        self.observer.received(d.contents.len());
                        if d.truncated {
                            debug!(source = %d.source, "oversized datagram dropped");
                            continue;
                        }
                        match Receive::new(Protocol::Udp, d.source, self.destination, d.contents) {
                            Ok(receive) => self.sfu.handle_input(Input::Receive(now, receive)),
                            Err(_) => {
                                debug!(source = %d.source, len = d.contents.len(), "unparseable datagram dropped")
                            }
                        }
                    }
                    let now = Instant::now();
                    if self.flush() <= now {
                        self.sfu.handle_input(Input::Timeout(now));
                        self.flush();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ICMP errors for earlier sends surface here on Linux: they
                // concern one remote address, not the socket.
                Err(e) => {
                    debug!("udp receive error: {e}");
                }
            }
        }
    }

    /// Carries out everything the engine asked for; returns its next timeout.
    fn flush(&mut self) -> Instant {
        let fd = self.socket.as_raw_fd();
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(t) if t.proto == Protocol::Tcp => {
                    let sent = self.tcp.as_mut().is_some_and(|tcp| {
                        tcp.send(self.poll.registry(), t.destination, &t.contents)
                    });
                    if !sent {
                        // The connection closed; ICE notices the silence.
                        debug!(destination = %t.destination, "no ICE-TCP connection: dropped");
                    }
                    str0m::net::recycle(t.contents);
                }
                Output::Transmit(t) => {
                    self.observer.sent(t.contents.len());
                    self.sender.push(fd, t, &mut send_failed);
                }
                Output::Signal {
                    participant,
                    mut message,
                } => {
                    if let (ServerMessage::Joined { ice_servers, .. }, Some(f)) =
                        (&mut message, &self.ice_servers)
                    {
                        ice_servers.extend(f(&participant.to_string()));
                    }
                    self.observer.signal(&message);
                    if let Some(tx) = self.sessions.get(&participant) {
                        let _ = tx.send(ToSession::Message(message));
                    }
                }
                Output::Close { participant } => {
                    if let Some(tx) = self.sessions.remove(&participant) {
                        let _ = tx.send(ToSession::Close);
                    } else {
                        warn!(%participant, "close for an unknown session");
                    }
                }
                // Not wired to anything yet: webhooks and metrics will.
                Output::Event(event) => self.observer.event(event),
                Output::Timeout(t) => {
                    self.sender.flush(fd, &mut send_failed);
                    return t;
                }
            }
        }
    }
}

/// A full socket buffer or an unreachable peer loses one datagram; RTP and
/// ICE recover.
fn send_failed(f: SendFailure) {
    debug!(destination = %f.destination, "udp send failed: {}", f.error);
}

//! The media thread: owns the UDP socket and one [`Sfu`], and runs the
//! engine's loop. Signalling talks to it only through [`MediaHandle`].

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Instant;

use amphi_protocol::ServerMessage;
use amphi_room::{Command, Input, Output, ParticipantId, Sfu, SfuConfig};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::net::{Protocol, Receive};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, warn};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

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
    Shutdown,
}

/// The signalling side's end of the media thread.
#[derive(Clone)]
pub struct MediaHandle {
    tx: Sender<Request>,
    waker: Arc<Waker>,
    pub udp_addr: SocketAddr,
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

    pub fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown);
        let _ = self.waker.wake();
    }
}

/// Binds the UDP socket and starts the media thread.
pub fn start(
    bind: SocketAddr,
    mut config: SfuConfig,
    advertise: impl FnOnce(SocketAddr) -> anyhow::Result<Vec<SocketAddr>>,
) -> anyhow::Result<(MediaHandle, JoinHandle<()>)> {
    let std_socket = std::net::UdpSocket::bind(bind)
        .map_err(|e| anyhow::anyhow!("cannot bind the media UDP socket to {bind}: {e}"))?;
    std_socket.set_nonblocking(true)?;
    let local = std_socket.local_addr()?;
    config.candidates = advertise(local)?;
    let mut socket = UdpSocket::from_std(std_socket);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
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
            };
            if let Err(e) = media.run() {
                error!("media thread stopped: {e}");
            }
        })?;
    Ok((
        MediaHandle {
            tx,
            waker,
            udp_addr: local,
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
}

impl MediaLoop {
    fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(64);
        // Large enough for any datagram: a jumbo packet is cut, not misread.
        let mut buf = vec![0u8; 65_536];
        loop {
            if !self.take_requests() {
                return Ok(());
            }
            self.read_socket(&mut buf);
            let timeout = self.flush();
            let now = Instant::now();
            if timeout <= now {
                self.sfu.handle_input(Input::Timeout(now));
                continue;
            }
            match self.poll.poll(&mut events, Some(timeout - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns `false` when the thread should stop.
    fn take_requests(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Request::Command(command, session)) => {
                    let leaving = match (&command, session) {
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
                Ok(Request::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn read_socket(&mut self, buf: &mut [u8]) {
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, source)) => {
                    let now = Instant::now();
                    match Receive::new(Protocol::Udp, source, self.destination, &buf[..n]) {
                        Ok(receive) => self.sfu.handle_input(Input::Receive(now, receive)),
                        Err(_) => debug!(%source, len = n, "unparseable datagram dropped"),
                    }
                    self.flush();
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
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination) {
                        // A full socket buffer or an unreachable peer loses
                        // this datagram only; RTP and ICE recover.
                        debug!(destination = %t.destination, "udp send failed: {e}");
                    }
                }
                Output::Signal {
                    participant,
                    message,
                } => {
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
                Output::Event(event) => debug!(?event, "room event"),
                Output::Timeout(t) => return t,
            }
        }
    }
}

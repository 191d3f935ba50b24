//! One participant driven from a shared `mio::Poll`: its sans-IO
//! [`Participant`], its signalling WebSocket and its two UDP sockets.

use std::io::ErrorKind;
use std::net::{IpAddr, TcpStream, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use amphi_client::tungstenite::{self, Message, WebSocket};
use amphi_client::{ClientOptions, Connection, MediaKind, Output, Participant, Phase};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tracing::debug;

use crate::arrival;

/// Largest datagram read; anything longer is cut (and then refused).
const UDP_BUF: usize = 2048;

/// Receive buffer asked for each of a peer's sockets (see `Peer::connect`).
const PEER_RCVBUF: libc::c_int = 1 << 20;

/// Why a participant could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("signalling: {0}")]
    Client(#[from] amphi_client::ClientError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Which of a peer's three event sources a `Token` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ws,
    Pub,
    Sub,
}

pub fn token(slot: usize, source: Source) -> Token {
    Token(
        slot * 3
            + match source {
                Source::Ws => 0,
                Source::Pub => 1,
                Source::Sub => 2,
            },
    )
}

pub fn from_token(t: Token) -> (usize, Source) {
    let source = match t.0 % 3 {
        0 => Source::Ws,
        1 => Source::Pub,
        _ => Source::Sub,
    };
    (t.0 / 3, source)
}

/// Counters the worker reads for progress and the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    pub gaps: u64,
    pub backwards: u64,
    /// Distinct (publisher, kind) streams with at least one packet.
    pub streams: usize,
}

pub struct Peer {
    /// Index among all participants of the run (publishers first).
    pub index: usize,
    pub participant: Participant,
    ws: WebSocket<TcpStream>,
    ws_open: bool,
    pub_sock: UdpSocket,
    sub_sock: UdpSocket,
    /// The participant's next deadline, as last polled.
    pub deadline: Instant,
    /// The earliest entry this peer has in the worker's timer heap.
    pub scheduled: Option<Instant>,
    /// Datagrams dropped because a socket's send buffer was full.
    pub udp_send_drops: u64,
    /// Streams this participant should receive when fully set up.
    pub expected_streams: usize,
    pub publishes: bool,
    pub failed_reported: bool,
}

impl Peer {
    /// Opens the WebSocket (blocking, bounded by `timeout`: a few ms on a
    /// LAN), binds the two UDP sockets and registers everything with
    /// `registry` under `slot`.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        registry: &Registry,
        slot: usize,
        index: usize,
        url: &str,
        token_jwt: &str,
        opts: ClientOptions,
        bind_ip: Option<IpAddr>,
        expected_streams: usize,
        timeout: Duration,
    ) -> Result<Peer, PeerError> {
        let publishes = opts.publish_audio || opts.publish_video;
        let mut ws = amphi_client::open_websocket(url, timeout)?;
        let ip = match bind_ip {
            Some(ip) => ip,
            None => ws.get_ref().local_addr()?.ip(),
        };
        // One socket per peer connection: the server tells connections
        // apart by the client's address and port, so sockets cannot be
        // shared (see the crate docs).
        let pub_std = StdUdpSocket::bind((ip, 0))?;
        let sub_std = StdUdpSocket::bind((ip, 0))?;
        pub_std.set_nonblocking(true)?;
        sub_std.set_nonblocking(true)?;
        arrival::enable(&pub_std)?;
        arrival::enable(&sub_std)?;
        for socket in [&pub_std, &sub_std] {
            // The default (208 KiB, about 90 datagrams with the kernel's
            // bookkeeping) overflowed in meeting-25 when keyframes of
            // several publishers came together while this one thread was
            // busy with other peers: the server's loss that was not. The
            // kernel caps the request at `net.core.rmem_max`.
            arrival::set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, PEER_RCVBUF)?;
        }
        let now = Instant::now();
        let participant = Participant::new(
            token_jwt,
            opts,
            pub_std.local_addr()?,
            sub_std.local_addr()?,
            now,
        )?;
        let tcp = ws.get_mut();
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        tcp.set_nonblocking(true)?;
        let mut pub_sock = UdpSocket::from_std(pub_std);
        let mut sub_sock = UdpSocket::from_std(sub_std);
        let fd = ws.get_ref().as_raw_fd();
        registry.register(
            &mut SourceFd(&fd),
            token(slot, Source::Ws),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        registry.register(&mut pub_sock, token(slot, Source::Pub), Interest::READABLE)?;
        registry.register(&mut sub_sock, token(slot, Source::Sub), Interest::READABLE)?;
        Ok(Peer {
            index,
            participant,
            ws,
            ws_open: true,
            pub_sock,
            sub_sock,
            deadline: now,
            scheduled: None,
            udp_send_drops: 0,
            expected_streams,
            publishes,
            failed_reported: false,
        })
    }

    /// Carries out the participant's outputs; returns its next deadline.
    pub fn drain(&mut self) -> Instant {
        let deadline = loop {
            match self.participant.poll_output() {
                Output::Transmit(t) => {
                    let sock = if t.source == self.participant.local_addr(Connection::Publisher) {
                        &self.pub_sock
                    } else {
                        &self.sub_sock
                    };
                    match sock.send_to(&t.contents, t.destination) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => self.udp_send_drops += 1,
                        Err(e) => debug!(dest = %t.destination, "udp send: {e}"),
                    }
                    str0m::net::recycle(t.contents);
                }
                Output::Signal(m) => {
                    if self.ws_open {
                        self.ws_write(Message::text(m.encode()));
                    }
                }
                Output::Timeout(t) => break t,
            }
        };
        self.flush_ws();
        self.deadline = deadline;
        deadline
    }

    fn ws_write(&mut self, m: Message) {
        match self.ws.write(m) {
            Ok(()) => {}
            // Buffered by tungstenite; flushed when the socket is writable.
            Err(e) if would_block(&e) => {}
            Err(e) => {
                debug!("websocket write: {e}");
                self.ws_closed();
            }
        }
    }

    pub fn flush_ws(&mut self) {
        if !self.ws_open {
            return;
        }
        match self.ws.flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => {
                debug!("websocket flush: {e}");
                self.ws_closed();
            }
        }
    }

    fn ws_closed(&mut self) {
        if self.ws_open {
            self.ws_open = false;
            self.participant.handle_signalling_closed();
        }
    }

    pub fn ws_open(&self) -> bool {
        self.ws_open
    }

    pub fn read_ws(&mut self) {
        while self.ws_open {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.participant.handle_signal_text(t.as_str()),
                // The server sends only text; the participant counts it as bad.
                Ok(Message::Binary(_)) => self.participant.handle_signal_text(""),
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    debug!("websocket read: {e}");
                    self.ws_closed();
                }
            }
        }
    }

    /// Reads every waiting datagram of one connection into the participant.
    /// The participant polls its `Rtc` after each one (str0m in RTP mode
    /// holds only one received packet until it is polled).
    pub fn read_udp(&mut self, source: Source, buf: &mut [u8]) {
        let conn = match source {
            Source::Pub => Connection::Publisher,
            Source::Sub => Connection::Subscriber,
            Source::Ws => return,
        };
        let local = self.participant.local_addr(conn);
        let mut n_read = 0;
        loop {
            let sock = match conn {
                Connection::Publisher => &self.pub_sock,
                Connection::Subscriber => &self.sub_sock,
            };
            match arrival::recv(sock, buf) {
                Ok((n, from, arrived)) => {
                    let data = buf.get(..n.min(UDP_BUF)).unwrap_or_default();
                    let now = Instant::now();
                    let at = arrived.map_or(now, |a| {
                        arrival::instant(a, now, amphi_client::synth::unix_micros())
                    });
                    self.participant
                        .handle_datagram_arrived(at, arrived, from, local, data);
                    n_read += 1;
                    // Send what the packet caused (RTCP, STUN answers) now
                    // and then, not only after a long burst.
                    if n_read % 16 == 0 {
                        self.drain();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ICMP errors for earlier sends: not fatal for UDP.
                Err(e) => {
                    debug!("udp recv: {e}");
                    break;
                }
            }
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let fd = self.ws.get_ref().as_raw_fd();
        let _ = registry.deregister(&mut SourceFd(&fd));
        let _ = registry.deregister(&mut self.pub_sock);
        let _ = registry.deregister(&mut self.sub_sock);
    }

    /// Closes the WebSocket if the server has not.
    pub fn close(&mut self) {
        if self.ws_open {
            let _ = self.ws.close(None);
            self.flush_ws();
        }
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for ((_, kind), r) in &self.participant.stats().received {
            c.packets += r.packets;
            c.bytes += r.bytes;
            match kind {
                MediaKind::Video => c.video_packets += r.packets,
                MediaKind::Audio => c.audio_packets += r.packets,
            }
            c.gaps += r.seq_gaps;
            c.backwards += r.seq_backwards;
            if r.packets > 0 {
                c.streams += 1;
            }
        }
        c
    }

    pub fn sent_packets(&self) -> u64 {
        let s = self.participant.stats();
        s.sent_audio.packets + s.sent_video.packets
    }

    pub fn joined(&self) -> bool {
        matches!(self.participant.phase(), Phase::Joined)
    }

    /// Set up and receiving everything it should.
    pub fn ready(&self) -> bool {
        let s = self.participant.stats();
        self.joined()
            && (!self.publishes || s.publisher_connected)
            && (self.expected_streams == 0
                || (s.subscriber_connected && self.counts().streams >= self.expected_streams))
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io)
        if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

//! A small blocking driver: one [`Participant`], its two UDP sockets and its
//! signalling WebSocket, multiplexed with `mio` on the calling thread.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amphi_protocol::{RTC_PATH, ServerMessage};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::debug;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::error::ClientError;
use crate::participant::{ClientOptions, Connection, Output, Participant, Phase};
use crate::stats::ClientStats;
use crate::tcp::FramedTcp;

const WS: Token = Token(0);
const PUB: Token = Token(1);
const SUB: Token = Token(2);
const WAKE: Token = Token(3);
/// ICE-TCP streams (publisher, subscriber), when media goes over TCP.
const TCP_PUB: Token = Token(4);
const TCP_SUB: Token = Token(5);

/// Largest datagram read; anything longer is truncated (and then refused).
const UDP_BUF: usize = 2048;

/// `http://host:port[/]` (or `ws://`) → (`ws://host:port/rtc`, resolved address).
pub fn rtc_url(url: &str) -> Result<(String, SocketAddr), ClientError> {
    let bad = |why| ClientError::BadUrl {
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| {
            if url.starts_with("https://") || url.starts_with("wss://") {
                bad("TLS is not supported by this client")
            } else {
                bad("expected http://host:port")
            }
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let addr = authority
        .to_socket_addrs()
        .map_err(|_| bad("cannot resolve host:port"))?
        .next()
        .ok_or_else(|| bad("cannot resolve host:port"))?;
    Ok((format!("ws://{authority}{RTC_PATH}"), addr))
}

/// Opens the signalling WebSocket to `url` (blocking, with `timeout` for
/// connecting and the handshake).
pub fn open_websocket(url: &str, timeout: Duration) -> Result<WebSocket<TcpStream>, ClientError> {
    let (ws_url, addr) = rtc_url(url)?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    match tungstenite::client::client(ws_url.as_str(), tcp) {
        Ok((ws, _response)) => Ok(ws),
        Err(HandshakeError::Failure(e)) => Err(e.into()),
        Err(HandshakeError::Interrupted(_)) => Err(ClientError::Timeout("websocket handshake")),
    }
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io)
        if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// A connected participant with its sockets. Call [`Client::turn`] in a
/// loop (or [`Client::run_for`]) to make it live.
pub struct Client {
    participant: Participant,
    ws: WebSocket<TcpStream>,
    ws_open: bool,
    pub_sock: UdpSocket,
    sub_sock: UdpSocket,
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    buf: Vec<u8>,
    /// Datagrams dropped because the socket buffer was full.
    pub udp_send_drops: u64,
    /// Simulated network failure: all UDP in and out is dropped.
    media_cut: bool,
    /// With [`ClientOptions::ice_tcp`]: the publisher's and the subscriber's
    /// framed TCP streams to the server (the UDP sockets then stay unused).
    tcp: Vec<FramedTcp>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("participant", &self.participant)
            .field("ws_open", &self.ws_open)
            .finish_non_exhaustive()
    }
}

/// Joins the Amphi server at `url` (`http://127.0.0.1:PORT`) with `token`.
///
/// Blocks until `joined` (or the server's refusal, returned as
/// [`ClientError::Refused`] with the server's code and message). Publishing
/// and subscribing then proceed as the returned [`Client`] is driven.
pub fn connect(url: &str, token: &str, opts: ClientOptions) -> Result<Client, ClientError> {
    let join_timeout = opts.join_timeout;
    let ws = open_websocket(url, join_timeout)?;
    let local_ip = match opts.bind_ip {
        Some(ip) => ip,
        None => ws.get_ref().local_addr()?.ip(),
    };
    let pub_std = std::net::UdpSocket::bind((local_ip, 0))?;
    let sub_std = std::net::UdpSocket::bind((local_ip, 0))?;
    pub_std.set_nonblocking(true)?;
    sub_std.set_nonblocking(true)?;
    let (pub_addr, sub_addr, tcp) = match opts.ice_tcp {
        Some(server) => {
            let p = FramedTcp::connect(server, join_timeout)?;
            let s = FramedTcp::connect(server, join_timeout)?;
            (p.local, s.local, vec![p, s])
        }
        None => (pub_std.local_addr()?, sub_std.local_addr()?, Vec::new()),
    };
    let participant = Participant::new(token, opts, pub_addr, sub_addr, Instant::now())?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let mut client = Client {
        participant,
        ws,
        ws_open: true,
        pub_sock: UdpSocket::from_std(pub_std),
        sub_sock: UdpSocket::from_std(sub_std),
        poll,
        events: Events::with_capacity(64),
        waker,
        buf: vec![0; UDP_BUF],
        udp_send_drops: 0,
        media_cut: false,
        tcp,
    };
    client.join(join_timeout)?;
    client.go_nonblocking()?;
    Ok(client)
}

impl Client {
    /// Sends `join` and reads (blocking) until the outcome.
    fn join(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        self.drain()?;
        while *self.participant.phase() == Phase::Joining {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("joined"));
            }
            self.ws.get_mut().set_read_timeout(Some(left))?;
            match self.ws.read() {
                Ok(Message::Text(t)) => self.participant.handle_signal_text(t.as_str()),
                Ok(Message::Binary(_)) => self.participant.handle_signal_text(""),
                Ok(_) => {}
                Err(e) if would_block(&e) => return Err(ClientError::Timeout("joined")),
                Err(e) => {
                    debug!("websocket closed while joining: {e}");
                    self.ws_open = false;
                    self.participant.handle_signalling_closed();
                }
            }
        }
        match self.participant.close_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn go_nonblocking(&mut self) -> Result<(), ClientError> {
        self.ws.get_mut().set_read_timeout(None)?;
        self.ws.get_mut().set_write_timeout(None)?;
        self.ws.get_mut().set_nonblocking(true)?;
        let fd = self.ws.get_ref().as_raw_fd();
        let registry = self.poll.registry();
        registry.register(
            &mut SourceFd(&fd),
            WS,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        registry.register(&mut self.pub_sock, PUB, Interest::READABLE)?;
        registry.register(&mut self.sub_sock, SUB, Interest::READABLE)?;
        for (t, token) in self.tcp.iter_mut().zip([TCP_PUB, TCP_SUB]) {
            registry.register(
                &mut t.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(())
    }

    pub fn participant(&self) -> &Participant {
        &self.participant
    }

    pub fn participant_mut(&mut self) -> &mut Participant {
        &mut self.participant
    }

    pub fn stats(&self) -> &ClientStats {
        self.participant.stats()
    }

    /// Wakes a [`Client::turn`] blocked in another thread.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Whether the signalling socket is still open.
    pub fn signalling_open(&self) -> bool {
        self.ws_open
    }

    /// Sends a raw text frame on the signalling socket (for tests of the
    /// server's input validation).
    pub fn send_raw(&mut self, message: Message) -> Result<(), ClientError> {
        self.ws_write(message)?;
        self.flush_ws();
        Ok(())
    }

    /// Simulates the media path dying (or coming back): while cut, every
    /// datagram in either direction is dropped; signalling goes on.
    pub fn set_media_cut(&mut self, cut: bool) {
        self.media_cut = cut;
    }

    /// Closes the signalling TCP connection abruptly (no `leave`).
    pub fn abort(&mut self) {
        let _ = self.ws.get_mut().shutdown(std::net::Shutdown::Both);
    }

    /// Carries out the participant's outputs; returns its next deadline.
    fn drain(&mut self) -> Result<Instant, ClientError> {
        let deadline = loop {
            match self.participant.poll_output() {
                Output::Transmit(_) if self.media_cut => {}
                Output::Transmit(t) if !self.tcp.is_empty() => {
                    match self.tcp.iter_mut().find(|s| s.local == t.source) {
                        Some(s) => s.send(&t.contents),
                        None => debug!(source = %t.source, "transmit from unknown address"),
                    }
                    str0m::net::recycle(t.contents);
                }
                Output::Transmit(t) => {
                    let sock = if t.source == self.participant.local_addr(Connection::Publisher) {
                        &self.pub_sock
                    } else if t.source == self.participant.local_addr(Connection::Subscriber) {
                        &self.sub_sock
                    } else {
                        debug!(source = %t.source, "transmit from unknown address");
                        continue;
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
                        self.ws_write(Message::text(m.encode()))?;
                    }
                }
                Output::Timeout(t) => break t,
            }
        };
        self.flush_ws();
        Ok(deadline)
    }

    fn ws_write(&mut self, m: Message) -> Result<(), ClientError> {
        match self.ws.write(m) {
            Ok(()) => Ok(()),
            Err(e) if would_block(&e) => Ok(()), // buffered; flushed later
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                self.ws_closed();
                Ok(())
            }
            Err(e @ tungstenite::Error::WriteBufferFull(_)) => Err(e.into()),
            Err(e) => {
                debug!("websocket write: {e}");
                self.ws_closed();
                Ok(())
            }
        }
    }

    fn flush_ws(&mut self) {
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
            let fd = self.ws.get_ref().as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            self.participant.handle_signalling_closed();
        }
    }

    fn read_ws(&mut self) {
        while self.ws_open {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.participant.handle_signal_text(t.as_str()),
                Ok(Message::Binary(_)) => self.participant.handle_signal_text(""),
                Ok(_) => {} // ping/pong/close: tungstenite answers them
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    debug!("websocket read: {e}");
                    self.ws_closed();
                }
            }
        }
    }

    fn read_udp(&mut self, conn: Connection) -> Result<(), ClientError> {
        let local = self.participant.local_addr(conn);
        loop {
            let sock = match conn {
                Connection::Publisher => &self.pub_sock,
                Connection::Subscriber => &self.sub_sock,
            };
            match sock.recv_from(&mut self.buf) {
                Ok(_) if self.media_cut => {}
                Ok((n, source)) => {
                    let data = &self.buf[..n];
                    self.participant
                        .handle_datagram(Instant::now(), source, local, data);
                    self.drain()?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // e.g. ECONNREFUSED from an earlier send: not fatal for UDP.
                Err(e) => {
                    debug!("udp recv: {e}");
                    return Ok(());
                }
            }
        }
    }

    fn read_tcp(&mut self) -> Result<(), ClientError> {
        for i in 0..self.tcp.len() {
            self.tcp[i].flush();
            let frames = self.tcp[i].read_frames();
            let (local, peer) = (self.tcp[i].local, self.tcp[i].peer);
            for frame in frames {
                if self.media_cut {
                    continue;
                }
                self.participant
                    .handle_datagram(Instant::now(), peer, local, &frame);
                self.drain()?;
            }
        }
        Ok(())
    }

    /// One round: carry out outputs, wait for input (at most `max_wait`),
    /// feed it in, advance time.
    pub fn turn(&mut self, max_wait: Duration) -> Result<(), ClientError> {
        let deadline = self.drain()?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(max_wait);
        if !wait.is_zero() {
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Read everything regardless of which event fired: cheap, and
        // tungstenite may hold buffered frames mio knows nothing about.
        self.read_ws();
        self.read_udp(Connection::Publisher)?;
        self.read_udp(Connection::Subscriber)?;
        self.read_tcp()?;
        self.participant.handle_timeout(Instant::now());
        self.drain()?;
        Ok(())
    }

    /// Runs for `d` (or until the session closes).
    pub fn run_for(&mut self, d: Duration) -> Result<(), ClientError> {
        let end = Instant::now() + d;
        while !self.participant.is_closed() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.turn(left)?;
        }
        Ok(())
    }

    /// Runs until `done` holds for the stats, the session closes, or
    /// `timeout` passes. Returns whether `done` held.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&ClientStats) -> bool,
    ) -> Result<bool, ClientError> {
        let end = Instant::now() + timeout;
        loop {
            if done(self.participant.stats()) {
                return Ok(true);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || self.participant.is_closed() {
                return Ok(false);
            }
            self.turn(left.min(Duration::from_millis(50)))?;
        }
    }

    /// Sends `leave` and waits (up to `timeout`) for the server to close the
    /// socket. Returns the final statistics.
    pub fn leave(mut self, timeout: Duration) -> Result<ClientStats, ClientError> {
        self.participant.leave();
        self.finish(timeout)
    }

    /// Runs until the session is closed or `timeout` passes, then closes the
    /// WebSocket if the server did not.
    pub fn finish(&mut self, timeout: Duration) -> Result<ClientStats, ClientError> {
        let end = Instant::now() + timeout;
        while !self.participant.is_closed() && self.ws_open {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.turn(left.min(Duration::from_millis(50)))?;
        }
        if self.ws_open {
            let _ = self.ws.close(None);
            self.flush_ws();
        }
        Ok(self.participant.stats().clone())
    }
}

/// A bare signalling connection, for testing how the server treats
/// malformed input. Blocking.
pub struct RawSignalling {
    ws: WebSocket<TcpStream>,
    open: bool,
}

/// What [`RawSignalling::recv`] got.
// Test plumbing, returned by value once per frame: a box would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Message(ServerMessage),
    /// A text frame that is not a server message.
    Unparsable(String),
    /// A binary frame (the server never sends one).
    Binary(Vec<u8>),
    /// The server closed the connection.
    Closed,
}

impl RawSignalling {
    /// Opens `ws://…/rtc` for the server at `url` (`http://host:port`).
    pub fn connect(url: &str) -> Result<Self, ClientError> {
        Ok(RawSignalling {
            ws: open_websocket(url, Duration::from_secs(10))?,
            open: true,
        })
    }

    pub fn send_text(&mut self, text: impl Into<String>) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::text(text.into()))?)
    }

    pub fn send_binary(&mut self, data: impl Into<Vec<u8>>) -> Result<(), ClientError> {
        Ok(self
            .ws
            .send(Message::Binary(tungstenite::Bytes::from(data.into())))?)
    }

    pub fn send(&mut self, m: &amphi_protocol::ClientMessage) -> Result<(), ClientError> {
        self.send_text(m.encode())
    }

    /// The next frame from the server, waiting at most `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Received, ClientError> {
        if !self.open {
            return Ok(Received::Closed);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout("a server message"));
            }
            self.ws.get_mut().set_read_timeout(Some(left))?;
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Ok(match ServerMessage::decode(t.as_str()) {
                        Ok(m) => Received::Message(m),
                        Err(_) => Received::Unparsable(t.as_str().to_string()),
                    });
                }
                Ok(Message::Binary(b)) => return Ok(Received::Binary(b.to_vec())),
                Ok(_) => {}
                Err(e) if would_block(&e) => {
                    return Err(ClientError::Timeout("a server message"));
                }
                Err(_) => {
                    self.open = false;
                    return Ok(Received::Closed);
                }
            }
        }
    }

    /// The next frame for which `pick` returns true (skipping others), or
    /// `Closed`.
    pub fn recv_matching(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Received) -> bool,
    ) -> Result<Received, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.recv(left)?;
            if r == Received::Closed || pick(&r) {
                return Ok(r);
            }
        }
    }

    /// Whether the server closed the connection (as far as seen).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The underlying WebSocket.
    pub fn websocket(&mut self) -> &mut WebSocket<TcpStream> {
        &mut self.ws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let (u, a) = rtc_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(u, "ws://127.0.0.1:8080/rtc");
        assert_eq!(a, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            rtc_url("http://127.0.0.1:8080/").unwrap().0,
            "ws://127.0.0.1:8080/rtc"
        );
        assert_eq!(
            rtc_url("ws://127.0.0.1:1/x").unwrap().0,
            "ws://127.0.0.1:1/rtc"
        );
        for bad in [
            "https://x:1",
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://nohostport",
        ] {
            assert!(
                matches!(rtc_url(bad), Err(ClientError::BadUrl { .. })),
                "{bad}"
            );
        }
    }
}

//! ICE over TCP for the media thread: the passive side of RFC 6544, with
//! RFC 4571 framing (each packet preceded by its length as two big-endian
//! bytes).
//!
//! Clients whose networks drop UDP connect to the server's TCP candidate;
//! each accepted connection then carries exactly what a UDP 5-tuple would
//! (STUN, DTLS, SRTP), one framed packet at a time. The engine cannot tell
//! the difference except for `Protocol::Tcp` on its inputs and outputs.
//!
//! Everything here is non-blocking and bounded, because every byte comes
//! from the network: a connection holds at most one partial frame plus one
//! read chunk, and at most [`MAX_QUEUED`] bytes waiting to be written (more
//! is dropped, as a full UDP socket would drop it). A peer that sends
//! something other than a WebRTC packet, or nothing at all for too long, is
//! disconnected; no other connection notices.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use tracing::debug;

/// Bytes read from a connection per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per connection per wake-up, so that one fast sender cannot keep the
/// media thread to itself (the rest is read on the next turn).
const READS_PER_TURN: usize = 32;
/// Bytes queued for a peer that reads slowly. Media over TCP that waits
/// longer than this is too late to be useful; newer packets are dropped
/// until the queue drains, which congestion control then notices.
pub const MAX_QUEUED: usize = 256 * 1024;
/// Open connections at most; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// A connection must deliver its first packet (a STUN binding request)
/// within this time.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent this long is closed: a live ICE peer sends consent
/// checks every few seconds.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What reading one connection gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// New bytes are buffered; take frames with [`TcpMedia::next_frame`].
    Data,
    /// Nothing more to read now.
    WouldBlock,
    /// The peer closed, or the connection failed: forget it.
    Closed,
}

/// A frame that cannot be a WebRTC packet.
#[derive(Debug, thiserror::Error)]
#[error("zero-length frame")]
pub struct BadFrame;

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Received bytes; `rbuf[rpos..]` is not yet taken as frames.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Framed packets waiting to be written; `wbuf[wpos..]` is unsent.
    wbuf: Vec<u8>,
    wpos: usize,
    opened: Instant,
    last_frame: Option<Instant>,
}

impl Conn {
    fn queued(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

/// The ICE-TCP listener and its connections. Tokens from `first_token` up
/// are this module's.
pub struct TcpMedia {
    listener: TcpListener,
    listener_token: Token,
    conns: HashMap<Token, Conn>,
    by_peer: HashMap<SocketAddr, Token>,
    next_token: usize,
    first_token: usize,
    /// Connections whose read budget ran out while data was still waiting
    /// (mio is edge-triggered: no new event would come for it).
    pending: Vec<Token>,
    /// Frames dropped because a peer's queue was full.
    pub dropped_frames: u64,
    /// Connections accepted since start (for metrics).
    pub accepted: u64,
}

impl TcpMedia {
    pub fn new(
        mut listener: TcpListener,
        registry: &Registry,
        listener_token: Token,
        first_token: usize,
    ) -> std::io::Result<Self> {
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(TcpMedia {
            listener,
            listener_token,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next_token: first_token,
            first_token,
            pending: Vec::new(),
            dropped_frames: 0,
            accepted: 0,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn is_listener(&self, token: Token) -> bool {
        token == self.listener_token
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first_token
    }

    pub fn peer(&self, token: Token) -> Option<SocketAddr> {
        self.conns.get(&token).map(|c| c.peer)
    }

    /// Accepts every waiting connection.
    pub fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        debug!(%peer, "too many ICE-TCP connections: refused");
                        continue; // dropping the stream closes it
                    }
                    // Media is latency-bound: never wait to fill a segment.
                    let _ = stream.set_nodelay(true);
                    let token = self.fresh_token();
                    if let Err(e) = registry.register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        debug!(%peer, "cannot register an ICE-TCP connection: {e}");
                        continue;
                    }
                    // A peer address is unique among open connections; a
                    // stale entry would belong to a closed one.
                    if let Some(old) = self.by_peer.insert(peer, token) {
                        self.close(registry, old);
                        self.by_peer.insert(peer, token);
                    }
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            peer,
                            rbuf: Vec::new(),
                            rpos: 0,
                            wbuf: Vec::new(),
                            wpos: 0,
                            opened: now,
                            last_frame: None,
                        },
                    );
                    self.accepted += 1;
                    debug!(%peer, "ICE-TCP connection accepted");
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // ECONNABORTED, EMFILE…: this attempt fails, the listener
                // goes on; the next event retries.
                Err(e) => {
                    debug!("ICE-TCP accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn fresh_token(&mut self) -> Token {
        loop {
            let t = Token(self.next_token);
            self.next_token = self.next_token.checked_add(1).unwrap_or(self.first_token);
            if !self.conns.contains_key(&t) {
                return t;
            }
        }
    }

    /// One `read` on `token`'s connection into its buffer.
    pub fn fill(&mut self, token: Token) -> Fill {
        let Some(c) = self.conns.get_mut(&token) else {
            return Fill::Closed;
        };
        // Keep only what is not yet taken: at most one partial frame.
        if c.rpos > 0 {
            c.rbuf.drain(..c.rpos);
            c.rpos = 0;
        }
        let start = c.rbuf.len();
        c.rbuf.resize(start + READ_CHUNK, 0);
        let result = c.stream.read(&mut c.rbuf[start..]);
        let n = match &result {
            Ok(n) => *n,
            Err(_) => 0,
        };
        c.rbuf.truncate(start + n);
        match result {
            Ok(0) => Fill::Closed,
            Ok(_) => Fill::Data,
            Err(e) if e.kind() == ErrorKind::WouldBlock => Fill::WouldBlock,
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            Err(e) => {
                debug!(peer = %c.peer, "ICE-TCP read failed: {e}");
                Fill::Closed
            }
        }
    }

    /// The next complete frame received on `token`, if any. The slice is
    /// valid until the next call on this `TcpMedia`.
    pub fn next_frame(&mut self, token: Token, now: Instant) -> Result<Option<&[u8]>, BadFrame> {
        let Some(c) = self.conns.get_mut(&token) else {
            return Ok(None);
        };
        let rest = &c.rbuf[c.rpos..];
        let [hi, lo, ..] = *rest else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            // No WebRTC packet is empty: this is not an RFC 4571 stream.
            return Err(BadFrame);
        }
        if rest.len() < 2 + len {
            return Ok(None);
        }
        let start = c.rpos + 2;
        c.rpos = start + len;
        c.last_frame = Some(now);
        Ok(Some(&c.rbuf[start..start + len]))
    }

    /// Remembers that `token` still had data when its read budget ran out.
    pub fn defer(&mut self, token: Token) {
        if !self.pending.contains(&token) {
            self.pending.push(token);
        }
    }

    /// Connections to read again without waiting for an event.
    pub fn take_pending(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub const fn reads_per_turn() -> usize {
        READS_PER_TURN
    }

    /// Frames `packet` and sends it to `peer`'s connection (queued if the
    /// socket is full). Returns `false` if there is no such connection.
    pub fn send(&mut self, registry: &Registry, peer: SocketAddr, packet: &[u8]) -> bool {
        let Some(&token) = self.by_peer.get(&peer) else {
            return false;
        };
        let Some(c) = self.conns.get_mut(&token) else {
            return false;
        };
        let Ok(len) = u16::try_from(packet.len()) else {
            debug!(%peer, len = packet.len(), "packet too large for RFC 4571: dropped");
            return true;
        };
        if c.queued() + 2 + packet.len() > MAX_QUEUED {
            self.dropped_frames += 1;
            return true;
        }
        if c.wpos > 0 && c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        }
        c.wbuf.extend_from_slice(&len.to_be_bytes());
        c.wbuf.extend_from_slice(packet);
        self.flush(registry, token);
        true
    }

    /// Writes what `token` has queued, as far as the socket takes it.
    pub fn flush(&mut self, registry: &Registry, token: Token) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let mut failed = false;
        while c.wpos < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => break,
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(peer = %c.peer, "ICE-TCP write failed: {e}");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.close(registry, token);
            return;
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
            // Give back the memory of a burst.
            if c.wbuf.capacity() > 4 * READ_CHUNK {
                c.wbuf.shrink_to(READ_CHUNK);
            }
        } else if c.wpos > MAX_QUEUED / 2 {
            c.wbuf.drain(..c.wpos);
            c.wpos = 0;
        }
    }

    pub fn close(&mut self, registry: &Registry, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = registry.deregister(&mut c.stream);
            if self.by_peer.get(&c.peer) == Some(&token) {
                self.by_peer.remove(&c.peer);
            }
            self.pending.retain(|t| *t != token);
            debug!(peer = %c.peer, "ICE-TCP connection closed");
        }
    }

    /// Closes connections that sent nothing for too long.
    pub fn sweep(&mut self, registry: &Registry, now: Instant) {
        let stale: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.last_frame {
                None => now.saturating_duration_since(c.opened) > FIRST_PACKET_TIMEOUT,
                Some(t) => now.saturating_duration_since(t) > IDLE_TIMEOUT,
            })
            .map(|(t, _)| *t)
            .collect();
        for t in stale {
            self.close(registry, t);
        }
    }
}

//! The client end of ICE-TCP (RFC 6544, active): one TCP connection per
//! peer connection, each packet framed with its length as two big-endian
//! bytes (RFC 4571).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;

/// Bytes queued for sending at most; more is dropped as UDP would drop it.
const MAX_QUEUED: usize = 1 << 20;

/// A non-blocking framed TCP stream.
pub(crate) struct FramedTcp {
    pub stream: TcpStream,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    pub open: bool,
    pub dropped: u64,
}

impl FramedTcp {
    /// Connects (blocking, up to `timeout`) to `server`.
    pub fn connect(server: SocketAddr, timeout: Duration) -> std::io::Result<Self> {
        let std_stream = std::net::TcpStream::connect_timeout(&server, timeout)?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let local = std_stream.local_addr()?;
        Ok(FramedTcp {
            stream: TcpStream::from_std(std_stream),
            local,
            peer: server,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            open: true,
            dropped: 0,
        })
    }

    /// Queues one packet and writes what the socket takes.
    pub fn send(&mut self, packet: &[u8]) {
        let Ok(len) = u16::try_from(packet.len()) else {
            self.dropped += 1;
            return;
        };
        if !self.open || self.wbuf.len() + 2 + packet.len() > MAX_QUEUED {
            self.dropped += 1;
            return;
        }
        self.wbuf.extend_from_slice(&len.to_be_bytes());
        self.wbuf.extend_from_slice(packet);
        self.flush();
    }

    pub fn flush(&mut self) {
        let mut sent = 0;
        while self.open && sent < self.wbuf.len() {
            match self.stream.write(&self.wbuf[sent..]) {
                Ok(0) => self.open = false,
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.open = false,
            }
        }
        self.wbuf.drain(..sent);
    }

    /// Reads what is there and returns the complete frames.
    pub fn read_frames(&mut self) -> Vec<Vec<u8>> {
        let mut chunk = [0u8; 16 * 1024];
        while self.open {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.open = false,
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.open = false,
            }
        }
        let mut frames = Vec::new();
        let mut pos = 0;
        while let [hi, lo, ..] = self.rbuf[pos..] {
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if self.rbuf.len() - pos < 2 + len {
                break;
            }
            frames.push(self.rbuf[pos + 2..pos + 2 + len].to_vec());
            pos += 2 + len;
        }
        self.rbuf.drain(..pos);
        frames
    }
}

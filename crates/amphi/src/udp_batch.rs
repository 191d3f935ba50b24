//! Batched UDP on Linux: one `recvmmsg` or `sendmmsg` for up to [`BATCH`]
//! datagrams.
//!
//! A lecture fans each incoming packet out to hundreds of subscribers, so
//! the media thread makes one send per outgoing copy. On this project's
//! machines a loopback `send_to` costs about 3.5 µs and `sendmmsg` in
//! batches of 32 about 2.6–3.0 µs per datagram (`docs/benchmarks.md`).
//! GSO is not used: it needs consecutive datagrams of one size to one
//! destination, and an SFU's output alternates between destinations.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

use str0m::net::Transmit;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// Room for one datagram. WebRTC keeps its datagrams under the path MTU
/// (str0m and browsers: about 1,200 bytes); anything longer than this is
/// not a packet we could use and is reported as cut.
const SLOT: usize = 2_048;

/// One received datagram.
pub struct Datagram<'a> {
    pub source: SocketAddr,
    pub contents: &'a [u8],
    /// Longer than [`SLOT`]: `contents` holds only its start.
    pub truncated: bool,
}

/// Buffers for `recvmmsg`, reused for every call.
pub struct Receiver {
    bufs: Box<[[u8; SLOT]; BATCH]>,
    names: Box<[libc::sockaddr_storage; BATCH]>,
    /// (length, name length, flags) of each datagram of the last batch.
    meta: [(usize, libc::socklen_t, libc::c_int); BATCH],
    count: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver {
            bufs: Box::new([[0; SLOT]; BATCH]),
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a
            // valid (unspecified-family) value.
            names: Box::new(unsafe { mem::zeroed() }),
            meta: [(0, 0, 0); BATCH],
            count: 0,
        }
    }
}

impl Receiver {
    /// Reads up to [`BATCH`] datagrams without blocking; returns how many.
    /// `WouldBlock` when none is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] =
            [const { MaybeUninit::uninit() }; BATCH];
        for i in 0..BATCH {
            iovecs[i].write(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: SLOT,
            });
            // SAFETY: mmsghdr is plain old data; zeroed, then the fields
            // recvmmsg reads are set.
            let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
            h.msg_hdr.msg_name = ptr::from_mut(&mut self.names[i]).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iovecs[i].as_mut_ptr();
            h.msg_hdr.msg_iovlen = 1;
            headers[i].write(h);
        }
        // SAFETY: every header was initialised above and points at buffers
        // (`bufs`, `names`, `iovecs`) that outlive the call; the kernel
        // writes at most `iov_len` and `msg_namelen` bytes into them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr().cast(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, meta) in self.meta.iter_mut().enumerate().take(n) {
            // SAFETY: initialised above; the kernel filled in the first `n`.
            let h = unsafe { headers[i].assume_init_ref() };
            *meta = (
                h.msg_len as usize,
                h.msg_hdr.msg_namelen,
                h.msg_hdr.msg_flags,
            );
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last [`Receiver::recv`]. A datagram from an
    /// address family other than IPv4 or IPv6 is skipped.
    pub fn datagrams(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.count).filter_map(|i| {
            let (len, name_len, flags) = self.meta[i];
            let source = from_sockaddr(&self.names[i], name_len)?;
            Some(Datagram {
                source,
                contents: &self.bufs[i][..len.min(SLOT)],
                truncated: flags & libc::MSG_TRUNC != 0,
            })
        })
    }
}

/// Outgoing datagrams waiting for one `sendmmsg`.
#[derive(Default)]
pub struct Sender {
    queue: Vec<Transmit>,
}

/// A datagram the kernel refused (full socket buffer, unreachable
/// network): it is lost, as a packet on the wire may be.
pub struct SendFailure {
    pub destination: SocketAddr,
    pub error: io::Error,
}

impl Sender {
    /// Queues a datagram; sends the batch once it is full.
    pub fn push(&mut self, fd: RawFd, t: Transmit, failed: &mut impl FnMut(SendFailure)) {
        self.queue.push(t);
        if self.queue.len() >= BATCH {
            self.flush(fd, failed);
        }
    }

    /// Sends everything queued.
    pub fn flush(&mut self, fd: RawFd, failed: &mut impl FnMut(SendFailure)) {
        let mut start = 0;
        while start < self.queue.len() {
            let batch = &self.queue[start..(start + BATCH).min(self.queue.len())];
            match send_batch(fd, batch) {
                Ok(sent) => start += sent,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // The first datagram of the batch failed; the ones
                    // after it may still go.
                    failed(SendFailure {
                        destination: batch[0].destination,
                        error,
                    });
                    start += 1;
                }
            }
        }
        // The buffers go back to str0m, which encrypts the next packets
        // into them instead of allocating (this is the media thread).
        for t in self.queue.drain(..) {
            str0m::net::recycle(t.contents);
        }
    }
}

/// What the media socket asks the kernel to buffer, each way.
///
/// Linux's default (about 208 KiB, a few hundred small datagrams once the
/// kernel's per-packet overhead is counted) overflowed in lecture-500: while
/// a keyframe fans out to 500 subscribers (about 120 ms of work), their RTCP
/// keeps arriving, and what does not fit is lost before the server sees it.
/// Larger is not better: when the server is overloaded for good the buffer
/// stays full and every packet waits through it (audio-500: 4 MiB made that
/// wait 0.9 s, 1 MiB 0.3 s). docs/benchmarks.md, step 12.
pub const SOCKET_BUFFER: usize = 1 << 20;

/// Asks for `bytes` of receive and send buffer on `fd`; returns what the
/// kernel granted (receive, send). Linux caps the request at
/// `net.core.rmem_max` / `wmem_max` and reports double what it keeps,
/// its bookkeeping included.
pub fn set_buffers(fd: RawFd, bytes: usize) -> io::Result<(usize, usize)> {
    let mut granted = [0; 2];
    for (i, option) in [libc::SO_RCVBUF, libc::SO_SNDBUF].into_iter().enumerate() {
        let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `want` outlives the call and `len` is its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                ptr::from_ref(&want).cast(),
                len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut got: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `got` and `len` are valid for writes of their sizes.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                ptr::from_mut(&mut got).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        granted[i] = usize::try_from(got).unwrap_or(0);
    }
    Ok((granted[0], granted[1]))
}

/// One `sendmmsg` of at most [`BATCH`] datagrams; returns how many went
/// (at least one) or the error of the first.
fn send_batch(fd: RawFd, batch: &[Transmit]) -> io::Result<usize> {
    let n = batch.len().min(BATCH);
    let mut names: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
        [const { MaybeUninit::uninit() }; BATCH];
    let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    for (i, t) in batch.iter().take(n).enumerate() {
        let name_len = to_sockaddr(t.destination, &mut names[i]);
        let contents: &[u8] = &t.contents;
        iovecs[i].write(libc::iovec {
            // sendmmsg only reads through this pointer.
            iov_base: contents.as_ptr().cast_mut().cast(),
            iov_len: contents.len(),
        });
        // SAFETY: mmsghdr is plain old data; zeroed, then the fields
        // sendmmsg reads are set.
        let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
        h.msg_hdr.msg_name = names[i].as_mut_ptr().cast();
        h.msg_hdr.msg_namelen = name_len;
        h.msg_hdr.msg_iov = iovecs[i].as_mut_ptr();
        h.msg_hdr.msg_iovlen = 1;
        headers[i].write(h);
    }
    // SAFETY: the first `n` headers are initialised and point at names,
    // iovecs and payloads that outlive the call.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            headers.as_mut_ptr().cast(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent <= 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Writes `addr` as a C socket address; returns its length.
fn to_sockaddr(addr: SocketAddr, out: &mut MaybeUninit<libc::sockaddr_storage>) -> libc::socklen_t {
    // SAFETY: all zeroes is a valid sockaddr_storage; the family-specific
    // struct written below fits inside it (that is what the type is for).
    let storage = out.write(unsafe { mem::zeroed() });
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: see above.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in>(), sin) };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: see above.
            unsafe { ptr::write(ptr::from_mut(storage).cast::<libc::sockaddr_in6>(), sin6) };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_sockaddr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // the kernel wrote all of it.
            let sin = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn transmit(from: SocketAddr, to: SocketAddr, body: &[u8]) -> Transmit {
        Transmit {
            proto: str0m::net::Protocol::Udp,
            source: from,
            destination: to,
            contents: body.to_vec().into(),
        }
    }

    /// The kernel grants the buffer asked for, up to its limit.
    #[test]
    fn socket_buffers_grow_up_to_the_kernel_limit() {
        use std::os::fd::AsRawFd;
        let limit = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (rcv, snd) = set_buffers(socket.as_raw_fd(), SOCKET_BUFFER).expect("setsockopt");
        if let (Some(rmem), Some(wmem)) = (limit("rmem_max"), limit("wmem_max")) {
            assert!(
                rcv >= SOCKET_BUFFER.min(rmem),
                "receive buffer {rcv}, limit {rmem}"
            );
            assert!(
                snd >= SOCKET_BUFFER.min(wmem),
                "send buffer {snd}, limit {wmem}"
            );
        }
        // More than Linux's default, on any machine whose limit allows it.
        assert!(rcv > 212_992 || limit("rmem_max").is_some_and(|m| m <= 212_992));
    }

    /// Over real loopback sockets: a batch larger than [`BATCH`] arrives
    /// whole and in order, with the right source, for IPv4 and IPv6.
    #[test]
    fn sends_and_receives_batches() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(a) = std::net::UdpSocket::bind(bind) else {
                // No IPv6 on this machine's loopback.
                continue;
            };
            let b = std::net::UdpSocket::bind(bind).expect("bind");
            b.set_nonblocking(true).expect("nonblocking");
            let (from, to) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
            let mut sender = Sender::default();
            let mut failures = 0;
            for i in 0..(BATCH + 5) as u32 {
                sender.push(
                    a.as_raw_fd(),
                    transmit(from, to, &i.to_be_bytes()),
                    &mut |_| failures += 1,
                );
            }
            sender.flush(a.as_raw_fd(), &mut |_| failures += 1);
            assert_eq!(failures, 0);
            let mut receiver = Receiver::default();
            let mut got = Vec::new();
            while got.len() < BATCH + 5 {
                match receiver.recv(b.as_raw_fd()) {
                    Ok(_) => {
                        for d in receiver.datagrams() {
                            assert_eq!(d.source, from);
                            assert!(!d.truncated);
                            got.push(u32::from_be_bytes(d.contents.try_into().expect("4 bytes")));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                    Err(e) => panic!("recvmmsg: {e}"),
                }
            }
            assert_eq!(got, (0..(BATCH + 5) as u32).collect::<Vec<_>>());
            assert_eq!(
                receiver.recv(b.as_raw_fd()).map_err(|e| e.kind()),
                Err(io::ErrorKind::WouldBlock)
            );
        }
    }

    #[test]
    fn an_oversized_datagram_is_reported_cut() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.send_to(&[7u8; SLOT + 100], b.local_addr().expect("addr"))
            .expect("send");
        let mut receiver = Receiver::default();
        b.set_nonblocking(false).expect("blocking");
        // A blocking socket: recvmmsg with MSG_DONTWAIT may still miss a
        // datagram in flight, so wait for it first.
        let mut peek = [0u8; 1];
        b.peek_from(&mut peek).expect("peek");
        assert_eq!(receiver.recv(b.as_raw_fd()).expect("recv"), 1);
        let d = receiver.datagrams().next().expect("one datagram");
        assert!(d.truncated);
        assert_eq!(d.contents.len(), SLOT);
    }

    /// A destination the kernel refuses loses that datagram only.
    #[test]
    fn a_refused_datagram_does_not_stop_the_batch() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (from, to) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
        // An IPv6 destination on an IPv4 socket: EAFNOSUPPORT or EINVAL.
        let bad: SocketAddr = "[::1]:9".parse().expect("addr");
        let mut sender = Sender::default();
        let mut failed = Vec::new();
        let fd = a.as_raw_fd();
        sender.push(fd, transmit(from, to, b"one"), &mut |f| {
            failed.push(f.destination)
        });
        sender.push(fd, transmit(from, bad, b"bad"), &mut |f| {
            failed.push(f.destination)
        });
        sender.push(fd, transmit(from, to, b"two"), &mut |f| {
            failed.push(f.destination)
        });
        sender.flush(fd, &mut |f| failed.push(f.destination));
        assert_eq!(failed, vec![bad]);
        let mut buf = [0u8; 16];
        let (n, _) = b.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"one");
        let (n, _) = b.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"two");
    }
}

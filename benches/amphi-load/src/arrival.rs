//! Kernel receive stamps: when a datagram reached a participant's socket.
//!
//! A subscriber stamps a packet's latency when this process gets to it, and
//! with hundreds of subscribers on one thread a packet can wait here behind
//! the rest of a fan-out. That wait is the load generator's, not the
//! server's. On loopback the kernel stamps a datagram (`SO_TIMESTAMPNS`)
//! inside the server's send call, so the stamp is when the server sent it.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Asks the kernel to stamp every datagram `socket` receives.
pub fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// `setsockopt` for an option whose value is an int.
pub fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and an int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram from a non-blocking socket: its length, its source and its
/// kernel receive stamp in Unix microseconds (`None` if the socket has no
/// stamps enabled).
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u64>)> {
    let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at a live buffer of the length
    // given, for the duration of the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote `msg_namelen` bytes of a sockaddr.
    let from = unsafe { source(name.assume_init_ref(), msg.msg_namelen) }.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram from an unknown address family",
        )
    })?;
    Ok((n as usize, from, stamp(&msg)))
}

/// The monotonic instant of a receive stamp, given the clocks read together
/// now: a browser stamps arrivals for its bandwidth feedback when its
/// network thread reads them, not when a busy main loop gets to them.
pub fn instant(stamp_unix_us: u64, now: Instant, now_unix_us: u64) -> Instant {
    now.checked_sub(Duration::from_micros(
        now_unix_us.saturating_sub(stamp_unix_us),
    ))
    .unwrap_or(now)
}

/// The `SCM_TIMESTAMPNS` control message of a received `msg`, in Unix µs.
fn stamp(msg: &libc::msghdr) -> Option<u64> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk only its
    // control buffer, within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

fn source(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say this is a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family and length say this is a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn a_stamp_becomes_the_instant_as_long_ago() {
        let now = Instant::now();
        assert_eq!(
            instant(9_000, now, 10_000),
            now - Duration::from_micros(1_000)
        );
        // A stamp ahead of the clock read after it (clock steps): now.
        assert_eq!(instant(11_000, now, 10_000), now);
    }

    fn unix_us() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    #[test]
    fn a_stamped_socket_reports_when_the_datagram_arrived() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        enable(&rx).expect("SO_TIMESTAMPNS");
        // Linux switches receive stamping on in deferred work when the
        // first socket asks: until then it stamps a datagram when it is
        // read. So try a few times; one stamp must show the arrival.
        let mut stamps = Vec::new();
        for _ in 0..10 {
            let before = unix_us();
            tx.send_to(b"hello", rx.local_addr().expect("addr"))
                .expect("send");
            std::thread::sleep(std::time::Duration::from_millis(30));
            let mut buf = [0u8; 64];
            let (n, from, at) = recv(&rx, &mut buf).expect("recv");
            let read = unix_us();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, tx.local_addr().expect("addr"));
            let at = at.expect("a stamp");
            assert!(before <= at && at <= read, "{before} <= {at} <= {read}");
            // Stamped on arrival, not when read 30 ms later.
            if at + 20_000 < read {
                return;
            }
            stamps.push((before, at, read));
        }
        panic!("every stamp was taken on reading: {stamps:?}");
    }

    #[test]
    fn an_unstamped_socket_reads_without_a_stamp_and_an_empty_one_would_block() {
        let rx = UdpSocket::bind("[::1]:0")
            .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
            .expect("bind");
        let tx = UdpSocket::bind((rx.local_addr().expect("addr").ip(), 0)).expect("bind");
        let mut buf = [0u8; 64];
        let e = recv(&rx, &mut buf).expect_err("nothing sent yet");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        tx.send_to(b"x", rx.local_addr().expect("addr"))
            .expect("send");
        std::thread::sleep(std::time::Duration::from_millis(10));
        let (n, from, at) = recv(&rx, &mut buf).expect("recv");
        assert_eq!((n, from, at), (1, tx.local_addr().expect("addr"), None));
    }
}

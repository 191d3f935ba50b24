//! The floor: what the least an SFU must do per forwarded copy costs this
//! core now. Each copy has to be encrypted (SRTP) and handed to the kernel
//! (a UDP send); everything else an SFU does is on top of that.
//!
//! This VM's speed moves by up to a half from hour to hour
//! (docs/benchmarks.md), so a number of microseconds per packet says little
//! on its own. Measured on the server's core right before a run, the floor
//! turns it into a share of what the machine could do at that moment.
//!
//! What is measured: AES-256-GCM, the SRTP profile str0m and browsers
//! negotiate with the server, through str0m's own crypto provider, over a
//! 1,200-byte RTP packet, then `sendmmsg` in batches of 32 to a socket on
//! loopback that another thread drains. Time is the sending thread's CPU
//! time, as the server's is read from /proc.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The packet a 720p stream is made of (docs/benchmarks.md).
const PACKET: usize = 1_200;
/// RTP header: what SRTP authenticates without encrypting.
const HEADER: usize = 12;
/// The AES-GCM tag SRTP appends.
const TAG: usize = 16;
/// Datagrams per `sendmmsg`, as the server sends them.
const BATCH: usize = 32;
/// Sent before the clock starts: caches, the receiver's first wake-up.
const WARMUP: Duration = Duration::from_millis(200);
/// The figure is the median of slices this long.
const SLICE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// CPU time per packet encrypted and sent.
    pub us_per_packet: f64,
    /// Packets counted.
    pub packets: u64,
    /// Of those sent, the share the receiving socket got: under 1, the
    /// kernel dropped some, which is cheaper than delivering them, and the
    /// floor reads low.
    pub delivered: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("cannot run on core {core}: {source}")]
    Pin { core: usize, source: io::Error },
    #[error("SRTP encryption failed: {0}")]
    Crypto(String),
    #[error("a measuring thread panicked")]
    Panicked,
}

/// Encrypts and sends packets for `duration` on a thread pinned to `core`
/// (any core when `None`), a receiver draining them on the calling thread.
pub fn measure(core: Option<usize>, duration: Duration) -> Result<Floor, FloorError> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    // Large enough that the receiver's scheduling hiccups drop nothing. A
    // refusal leaves the default, which `Floor::delivered` would show.
    let _ = crate::arrival::set_int_option(&rx, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20);
    rx.set_read_timeout(Some(Duration::from_millis(50)))?;
    let to = rx.local_addr()?;
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let done = done.clone();
        std::thread::Builder::new()
            .name("amphi-floor".into())
            .spawn(move || {
                let r = send(core, to, duration);
                done.store(true, Ordering::Release);
                r
            })?
    };
    let mut received = 0u64;
    let mut bufs = vec![[0u8; PACKET + TAG]; BATCH];
    while !done.load(Ordering::Acquire) {
        received += recv_batch(&rx, &mut bufs);
    }
    // What was in flight when the sender stopped.
    while let n @ 1.. = recv_batch(&rx, &mut bufs) {
        received += n;
    }
    let (us_per_packet, packets, sent) = sender.join().map_err(|_| FloorError::Panicked)??;
    Ok(Floor {
        us_per_packet,
        packets,
        delivered: if sent > 0 {
            (received as f64 / sent as f64).min(1.0)
        } else {
            0.0
        },
    })
}

/// The sending side: (µs per packet, packets counted, packets sent in all).
fn send(
    core: Option<usize>,
    to: SocketAddr,
    duration: Duration,
) -> Result<(f64, u64, u64), FloorError> {
    if let Some(core) = core {
        pin(core).map_err(|source| FloorError::Pin { core, source })?;
    }
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let provider = str0m::crypto::from_feature_flags();
    // A fixed key: the cost of AES does not depend on it.
    let mut cipher = provider
        .srtp_provider
        .aead_aes_256_gcm()
        .create_cipher([7; 32], true);
    let salt = [3u8; 12];
    let payload = vec![0x5au8; PACKET - HEADER];
    let mut out = vec![[0u8; PACKET + TAG]; BATCH];
    let mut seq: u64 = 0;
    let mut sent = 0u64;
    let start = Instant::now();
    // The median of short slices: a moment the VM lends the core elsewhere
    // costs one slice, not the figure.
    let slices = (duration.as_millis() / SLICE.as_millis()).max(1) as u32;
    let mut marks: Vec<(f64, u64)> = Vec::with_capacity(slices as usize + 1);
    loop {
        let elapsed = start.elapsed();
        let due = WARMUP + SLICE * marks.len() as u32;
        if elapsed >= due {
            marks.push((thread_cpu_seconds(), sent));
            if marks.len() > slices as usize {
                break;
            }
        }
        for buf in &mut out {
            // An RTP header with this packet's sequence number, and the IV
            // SRTP derives from it (RFC 7714 §8.1: salt XOR index).
            let mut header = [0u8; HEADER];
            header[0] = 0x80;
            header[1] = 96;
            header[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
            header[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            let mut iv = salt;
            for (b, s) in iv[6..].iter_mut().zip(seq.to_be_bytes()[2..].iter()) {
                *b ^= s;
            }
            buf[..HEADER].copy_from_slice(&header);
            cipher
                .encrypt(&iv, &header, &payload, &mut buf[HEADER..])
                .map_err(|e| FloorError::Crypto(e.to_string()))?;
            seq += 1;
        }
        sent += send_batch(&socket, to, &out)?;
    }
    let mut per_packet: Vec<f64> = marks
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| (w[1].0 - w[0].0) * 1e6 / (w[1].1 - w[0].1) as f64)
        .collect();
    per_packet.sort_by(f64::total_cmp);
    let median = per_packet.get(per_packet.len() / 2).copied().unwrap_or(0.0);
    let counted = match (marks.first(), marks.last()) {
        (Some(a), Some(b)) => b.1 - a.1,
        _ => 0,
    };
    Ok((median, counted, sent))
}

fn send_batch(socket: &UdpSocket, to: SocketAddr, bufs: &[[u8; PACKET + TAG]]) -> io::Result<u64> {
    let SocketAddr::V4(v4) = to else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv4 only"));
    };
    // SAFETY: sockaddr_in is plain old data; all zeroes is valid.
    let mut name: libc::sockaddr_in = unsafe { mem::zeroed() };
    name.sin_family = libc::AF_INET as libc::sa_family_t;
    name.sin_port = v4.port().to_be();
    name.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all zeroes is valid.
    let mut msgs: Vec<libc::mmsghdr> = (0..bufs.len()).map(|_| unsafe { mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
        m.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0usize;
    while done < msgs.len() {
        // SAFETY: every message points at `name` and at one live buffer of
        // the length given, all of which outlive the call.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs[done..].as_mut_ptr(),
                (msgs.len() - done) as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(done as u64)
}

/// Datagrams read in one `recvmmsg` (0 after the socket's read timeout).
fn recv_batch(socket: &UdpSocket, bufs: &mut [[u8; PACKET + TAG]]) -> u64 {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all zeroes is valid.
    let mut msgs: Vec<libc::mmsghdr> = (0..bufs.len()).map(|_| unsafe { mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each message points at one live buffer of the length given.
    // MSG_WAITFORONE: block (up to the read timeout) for the first only.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    n.max(0) as u64
}

/// Moves the calling thread to `core`.
fn pin(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; CPU_SET writes inside it (the
    // index is checked against its size first).
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        if core >= 8 * mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such core"));
        }
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn thread_cpu_seconds() -> f64 {
    // SAFETY: timespec is plain old data; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    // SAFETY: a valid clock id and a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_a_few_microseconds_and_everything_arrives() {
        let f = measure(None, Duration::from_millis(300)).expect("floor");
        assert!(f.packets > 1_000, "{f:?}");
        // Debug builds encrypt slower; anything from 0.1 to 1,000 µs says
        // the clock and the counting work.
        assert!(f.us_per_packet > 0.1 && f.us_per_packet < 1_000.0, "{f:?}");
        assert!(f.delivered > 0.5, "{f:?}");
    }

    #[test]
    fn a_core_that_does_not_exist_is_an_error_not_a_number() {
        let err = measure(Some(100_000), Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(err, FloorError::Pin { core: 100_000, .. }),
            "{err}"
        );
    }
}

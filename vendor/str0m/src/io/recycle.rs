//! Buffers for encrypted datagrams, handed back once sent.
//!
//! Every SRTP and SRTCP packet str0m sends is encrypted into a buffer of its
//! own, which leaves as [`DatagramSend`]. A server forwarding a packet to
//! hundreds of subscribers allocates and frees one such buffer per copy,
//! and at around 1.2 KB they are too large for the allocator's fast
//! per-thread caches. A caller that is done with a datagram (it went out on
//! the socket) can give the buffer back with [`recycle`]; the next packet
//! encrypted on the same thread is written into it.
//!
//! The free list is per thread because that is where the work is: one
//! thread polls its `Rtc`s and sends their datagrams. A buffer recycled on
//! another thread serves that thread. A caller that never recycles gets a
//! fresh buffer per packet, as before.

use std::cell::RefCell;

use super::{DATAGRAM_MTU_TARGET_MAX, DatagramSend};

/// Capacity of a fresh buffer: any packet of the largest MTU str0m aims for
/// fits, so a recycled buffer never has to grow.
const CAPACITY: usize = DATAGRAM_MTU_TARGET_MAX;

/// Buffers kept per thread at most (about 1.5 MB). A server holds a
/// fan-out's worth of datagrams between encrypting and sending them.
const MAX_FREE: usize = 1024;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// See [`with_scratch`].
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's buffer for the plaintext of the packet being
/// sent.
///
/// Each session had a buffer of its own for it. A server sending a packet
/// to hundreds of sessions in turn wrote each packet into a different
/// buffer, which the other sessions' work had pushed out of the cache by
/// then; one buffer per thread stays in it. Reentrant calls (there are none
/// in str0m) would get a buffer of their own.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH
        .try_with(|s| std::mem::take(&mut *s.borrow_mut()))
        .unwrap_or_default();
    let r = f(&mut buf);
    let _ = SCRATCH.try_with(|s| *s.borrow_mut() = buf);
    r
}

/// Gives the buffer of a datagram that was sent back to str0m, to encrypt a
/// later packet into on this thread.
///
/// Buffers smaller than a full packet are freed, but for those of STUN
/// replies, which the ICE agent keeps; so are any beyond what the thread
/// keeps.
pub fn recycle(datagram: DatagramSend) {
    put(datagram.into());
}

/// Keeps `buf` for reuse on this thread, if it is worth keeping.
pub(crate) fn put(buf: Vec<u8>) {
    if buf.capacity() < CAPACITY {
        // The ICE agent keeps the buffers of its STUN replies, which an
        // ice-lite server writes for every consent check (Amphi patch 17).
        is::recycle_reply(buf);
        return;
    }
    // Not during the thread's teardown: then the buffer is just freed.
    let _ = FREE.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < MAX_FREE {
            free.push(buf);
        }
    });
}

/// A buffer of `len` zero bytes, recycled if this thread has one.
pub(crate) fn zeroed(len: usize) -> Vec<u8> {
    let recycled = FREE.try_with(|free| free.borrow_mut().pop()).ok().flatten();
    let mut buf = recycled.unwrap_or_else(|| Vec::with_capacity(len.max(CAPACITY)));
    buf.clear();
    buf.resize(len, 0);
    buf
}

/// How many buffers this thread keeps for reuse.
#[cfg(test)]
pub(crate) fn free_len() -> usize {
    FREE.with(|free| free.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plaintext_buffer_is_one_per_thread() {
        let first = with_scratch(|buf| {
            buf.resize(1500, 0);
            buf.as_ptr()
        });
        assert_eq!(with_scratch(|buf| buf.as_ptr()), first);
        // A reentrant call gets a buffer of its own; the outer one stays.
        with_scratch(|outer| {
            with_scratch(|inner| assert_ne!(inner.as_ptr(), outer.as_ptr()));
        });
        assert_eq!(with_scratch(|buf| buf.as_ptr()), first);
    }

    #[test]
    fn a_recycled_buffer_is_reused_zeroed() {
        let mut first = zeroed(1200);
        first.fill(0xab);
        let ptr = first.as_ptr();
        let before = free_len();
        recycle(first.into());
        assert_eq!(free_len(), before + 1);

        let second = zeroed(1216);
        assert_eq!(second.as_ptr(), ptr, "the recycled buffer is reused");
        assert_eq!(second.len(), 1216);
        assert!(second.iter().all(|b| *b == 0), "no bytes of the old packet");
        assert_eq!(free_len(), before);
    }

    #[test]
    fn small_buffers_are_not_kept() {
        let before = free_len();
        recycle(vec![0_u8; 100].into());
        assert_eq!(free_len(), before);
    }

    #[test]
    fn the_free_list_is_bounded() {
        let bufs: Vec<_> = (0..MAX_FREE + 10).map(|_| zeroed(1200)).collect();
        for b in bufs {
            recycle(b.into());
        }
        assert_eq!(free_len(), MAX_FREE);
    }
}

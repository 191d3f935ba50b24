//! The payload of an RTP packet, shared by every copy that goes out.
//!
//! In RTP mode an SFU receives a packet once and writes it to every
//! subscriber, so the payload is reference counted: the copies, and the
//! retransmission history each outgoing stream keeps, share one buffer.
//! Allocating that buffer for every received packet is the one allocation
//! left on a forwarding server's packet path, so the buffers of received
//! packets come from pools on the receiving thread, one for small payloads
//! (audio) and one for large ones (video).
//!
//! A pool hands buffers out in order and takes back the oldest one once
//! nobody else holds it. Payloads leave the retransmission histories in
//! about the order they came, so the oldest buffer is the one most likely
//! free; when it is not, the pool grows by one, so it settles at the
//! buffers handed out while the longest-kept payload stays alive. A buffer
//! found still held on two turns leaves the pool to its holders (a paused
//! stream's history keeps its last packets for as long as it is paused),
//! so that it does not cost a new buffer at every turn.
//! [`release_idle_payloads`] gives back what a quieter thread no longer
//! needs.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bytes of an RTP payload, without the RTP header. Cheap to clone:
/// clones share the bytes.
#[derive(Clone)]
pub struct Payload(Repr);

#[derive(Clone)]
enum Repr {
    Shared(Arc<[u8]>),
    /// A buffer of this thread's pool (or of the pool of the thread that
    /// received the packet).
    Pooled(Arc<Vec<u8>>),
}

/// Payloads up to this size (audio, and the tail of a video frame) take a
/// buffer of this capacity; Opus with RED at a high bitrate stays under it.
const SMALL: usize = 512;

/// Larger payloads up to this size (video: browsers send RTP packets of at
/// most 1,200 bytes, header included) take a buffer of this capacity, no
/// larger than an exactly sized one; larger ones are not pooled.
///
/// Two sizes, each in a pool of its own: payloads live as long as their
/// retransmission history keeps them, which differs by kind (an SFU may
/// keep none for audio and one to three seconds of video), and in one pool a
/// short-lived small payload would wait behind the long-lived ones in a
/// large buffer.
const LARGE: usize = 1_200;

/// Buffers per pool and thread at most (about 79 MB of video alive at
/// once); beyond this, payloads are allocated as they come.
const MAX_SLOTS: usize = 1 << 16;

/// A free buffer not handed out for this long is given back by
/// [`release_idle_payloads`].
const IDLE: Duration = Duration::from_secs(10);

/// A buffer found still held at the front this many times leaves the pool:
/// each turn it stays costs a new buffer. More than one, so that a pool
/// still growing towards its traffic keeps the buffers that were only slow
/// to come free.
const HELD_TURNS: u8 = 2;

thread_local! {
    static POOLS: RefCell<[Pool; 2]> = const {
        RefCell::new([Pool::new(SMALL), Pool::new(LARGE)])
    };
}

struct Pool {
    /// The capacity of each buffer: none ever grows.
    capacity: usize,
    /// Buffers in the order they were handed out.
    slots: VecDeque<Slot>,
}

struct Slot {
    buf: Arc<Vec<u8>>,
    handed_out: Instant,
    /// Turns at the front on which it was still held, since handed out.
    held: u8,
}

impl Pool {
    const fn new(capacity: usize) -> Pool {
        Pool {
            capacity,
            slots: VecDeque::new(),
        }
    }

    fn take(&mut self, data: &[u8], now: Instant) -> Arc<Vec<u8>> {
        if let Some(mut slot) = self.slots.pop_front() {
            if let Some(buf) = Arc::get_mut(&mut slot.buf) {
                buf.clear();
                buf.extend_from_slice(data);
                slot.handed_out = now;
                slot.held = 0;
                let out = slot.buf.clone();
                self.slots.push_back(slot);
                return out;
            }
            // Still held: look at it again after everything else, unless it
            // has been held too many times round; then its holders keep it.
            slot.held += 1;
            if slot.held < HELD_TURNS {
                self.slots.push_back(slot);
            }
        }
        let mut buf = Vec::with_capacity(self.capacity);
        buf.extend_from_slice(data);
        let buf = Arc::new(buf);
        if self.slots.len() < MAX_SLOTS {
            self.slots.push_back(Slot {
                buf: buf.clone(),
                handed_out: now,
                held: 0,
            });
        }
        buf
    }

    fn release_idle(&mut self, now: Instant) {
        // The buffers ahead of the first one still held are free and older
        // than any payload alive: the traffic cycles through the ones behind
        // it. More of them than a margin (for lifetimes that grow) means the
        // pool outgrew its traffic (streams paused for a while, then
        // resumed): the surplus goes. Counting all free buffers instead
        // would cut a pool whose payloads live unequally long (video of
        // several bitrates) below what it needs, and it would grow back.
        let first_held = self
            .slots
            .iter()
            .position(|slot| Arc::strong_count(&slot.buf) > 1)
            .unwrap_or(self.slots.len());
        let surplus = first_held.saturating_sub(self.slots.len() / 8 + 16);
        self.slots.drain(..surplus);
        // And free ones not handed out for long: the traffic stopped.
        self.slots.retain(|slot| {
            Arc::strong_count(&slot.buf) > 1
                || now.saturating_duration_since(slot.handed_out) < IDLE
        });
    }
}

impl Payload {
    /// A copy of `data` in a buffer of this thread's pools, as received
    /// packets get (public since Amphi patch 20: an SFU that must change a
    /// payload for some subscribers, such as audio unwrapped from RED,
    /// makes the copy without allocating).
    pub fn pooled(data: &[u8], now: Instant) -> Payload {
        let pool = if data.len() <= SMALL {
            0
        } else if data.len() <= LARGE {
            1
        } else {
            return Payload(Repr::Shared(Arc::from(data)));
        };
        // During the thread's teardown the pools are gone: allocate.
        POOLS
            .try_with(|pools| pools.borrow_mut()[pool].take(data, now))
            .map(|slot| Payload(Repr::Pooled(slot)))
            .unwrap_or_else(|_| Payload(Repr::Shared(Arc::from(data))))
    }
}

/// Frees the pooled payload buffers of this thread that nobody holds and
/// that were not handed out in the last 10 seconds, and the free ones
/// older than any payload alive beyond a margin (an eighth of the pool,
/// and 16).
///
/// The pool grows to what the traffic through the thread needs, and to
/// more when held buffers pile up (a paused stream's history). Call
/// this now and then (every few seconds) on a thread that receives RTP, so
/// that memory goes back when the traffic drops. Without it, the pool
/// keeps its largest size.
pub fn release_idle_payloads(now: Instant) {
    let _ = POOLS.try_with(|pools| {
        for pool in pools.borrow_mut().iter_mut() {
            pool.release_idle(now);
        }
    });
}

/// Payload pools of their own, for connections that share a thread with
/// others but should not share buffers with them (Amphi patch 19).
///
/// A pool settles at what its payloads' lifetimes need when those are
/// alike; a thread that also drives connections whose payloads live much
/// shorter (the clients of a test or benchmark, on the server's thread)
/// makes it turn faster, so that the long-lived buffers are found held
/// and new ones allocated. Run those connections in
/// [`with_payload_pools`].
pub struct PayloadPools([Pool; 2]);

impl Default for PayloadPools {
    fn default() -> Self {
        PayloadPools([Pool::new(SMALL), Pool::new(LARGE)])
    }
}

impl fmt::Debug for PayloadPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buffers: usize = self.0.iter().map(|p| p.slots.len()).sum();
        f.debug_struct("PayloadPools")
            .field("buffers", &buffers)
            .finish()
    }
}

/// Runs `f` with `pools` in place of this thread's payload pools: the
/// packets received in it take their buffers from `pools`.
pub fn with_payload_pools<R>(pools: &mut PayloadPools, f: impl FnOnce() -> R) -> R {
    /// Puts the thread's own pools back, also if `f` panics.
    struct Swapped<'a>(&'a mut PayloadPools);

    impl Drop for Swapped<'_> {
        fn drop(&mut self) {
            let _ = POOLS.try_with(|own| std::mem::swap(&mut *own.borrow_mut(), &mut self.0.0));
        }
    }

    let _ = POOLS.try_with(|own| std::mem::swap(&mut *own.borrow_mut(), &mut pools.0));
    let _swapped = Swapped(pools);
    f()
}

/// How many buffers this thread's pools hold.
#[cfg(test)]
pub(crate) fn pool_len() -> usize {
    POOLS.with(|pools| pools.borrow().iter().map(|p| p.slots.len()).sum())
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Shared(bytes) => bytes,
            Repr::Pooled(buf) => buf,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload(Repr::Shared(Arc::default()))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Payload {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Payload {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<Arc<[u8]>> for Payload {
    fn from(bytes: Arc<[u8]>) -> Self {
        Payload(Repr::Shared(bytes))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload(Repr::Shared(bytes.into()))
    }
}

impl From<&Vec<u8>> for Payload {
    fn from(bytes: &Vec<u8>) -> Self {
        Payload(Repr::Shared(bytes.as_slice().into()))
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Self {
        Payload(Repr::Shared(bytes.into()))
    }
}

impl<const N: usize> From<[u8; N]> for Payload {
    fn from(bytes: [u8; N]) -> Self {
        Payload(Repr::Shared(Arc::new(bytes)))
    }
}

impl<const N: usize> From<&[u8; N]> for Payload {
    fn from(bytes: &[u8; N]) -> Self {
        Payload(Repr::Shared(Arc::new(*bytes)))
    }
}

impl From<Payload> for Arc<[u8]> {
    /// Free for a payload that was not pooled; a pooled one is copied.
    fn from(payload: Payload) -> Self {
        match payload.0 {
            Repr::Shared(bytes) => bytes,
            Repr::Pooled(buf) => Arc::from(buf.as_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(p: &Payload) -> *const u8 {
        p.as_ptr()
    }

    #[test]
    fn a_payload_nobody_holds_is_reused() {
        let now = Instant::now();
        let first = Payload::pooled(&[1, 2, 3], now);
        let at = ptr(&first);
        let copy = first.clone();
        drop(first);
        // A copy still holds it: the next packet gets a buffer of its own.
        let second = Payload::pooled(&[4, 5], now);
        assert_ne!(ptr(&second), at);
        assert_eq!(copy, [1, 2, 3]);
        drop(copy);
        drop(second);
        // The held one was looked at and put back behind; now free, it
        // comes round again after the second.
        let third = Payload::pooled(&[6], now);
        let fourth = Payload::pooled(&[7, 8, 9, 10], now);
        assert!(ptr(&third) == at || ptr(&fourth) == at);
        assert_eq!(third, [6]);
        assert_eq!(fourth, [7, 8, 9, 10]);
    }

    #[test]
    fn steady_traffic_settles_on_what_it_keeps_alive() {
        let now = Instant::now();
        let before = pool_len();
        // Each payload is held while the next 100 are received, as a
        // retransmission history would.
        let mut history = VecDeque::new();
        let mut receive = |packets: u32| {
            for i in 0..packets {
                history.push_back(Payload::pooled(&i.to_be_bytes(), now));
                if history.len() > 100 {
                    history.pop_front();
                }
            }
            pool_len() - before
        };
        let settled = receive(10_000);
        // Each new buffer is one more in the pool: a pool that stops
        // growing stops allocating.
        assert_eq!(receive(10_000), settled, "the pool still grows");
        assert!(
            (101..=202).contains(&settled),
            "{settled} buffers for 101 alive"
        );
    }

    #[test]
    fn a_buffer_held_for_good_leaves_the_pool() {
        let now = Instant::now();
        let before = pool_len();
        // Held for as long as the test runs, as a paused stream's history
        // holds its last packets.
        let kept: Vec<Payload> = (0..10u32)
            .map(|i| Payload::pooled(&i.to_be_bytes(), now))
            .collect();
        let mut history = VecDeque::new();
        let mut receive = |packets: u32| {
            for i in 0..packets {
                history.push_back(Payload::pooled(&i.to_be_bytes(), now));
                if history.len() > 100 {
                    history.pop_front();
                }
            }
            pool_len() - before
        };
        let settled = receive(10_000);
        assert_eq!(receive(10_000), settled, "held buffers still cost new ones");
        assert_eq!(kept.len(), 10);
    }

    #[test]
    fn payloads_received_with_pools_of_their_own_leave_the_thread_s_alone() {
        let now = Instant::now();
        let before = pool_len();
        let mut own = PayloadPools::default();
        let kept: Vec<Payload> = with_payload_pools(&mut own, || {
            (0..50u32)
                .map(|i| Payload::pooled(&i.to_be_bytes(), now))
                .collect()
        });
        assert_eq!(pool_len(), before, "the thread's pools handed out buffers");
        assert!(own.0.iter().map(|p| p.slots.len()).sum::<usize>() > 0);
        // The thread's own pools are back, also after a panic inside.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            with_payload_pools(&mut own, || panic!("inside"))
        }));
        assert!(result.is_err());
        let _outside = Payload::pooled(&[1], now);
        assert_eq!(pool_len(), before + 1);
        assert_eq!(kept.len(), 50);
    }

    #[test]
    fn idle_buffers_are_released_and_held_ones_kept() {
        let now = Instant::now();
        let held = Payload::pooled(&[1], now);
        let idle = Payload::pooled(&[2], now);
        drop(idle);
        let before = pool_len();
        release_idle_payloads(now + Duration::from_secs(1));
        assert_eq!(pool_len(), before, "nothing is idle after a second");
        release_idle_payloads(now + IDLE);
        assert_eq!(pool_len(), before - 1, "only the held buffer stays");
        assert_eq!(held, [1]);
    }

    #[test]
    fn a_pool_that_outgrew_its_traffic_shrinks_to_it() {
        let now = Instant::now();
        let before = pool_len();
        // 1,000 held at once (streams paused, say), then let go.
        let burst: Vec<Payload> = (0..1_000u32)
            .map(|i| Payload::pooled(&i.to_be_bytes(), now))
            .collect();
        drop(burst);
        // Then traffic that keeps 100 alive.
        let mut history = VecDeque::new();
        let mut receive = |packets: u32| {
            for i in 0..packets {
                history.push_back(Payload::pooled(&i.to_be_bytes(), now));
                if history.len() > 100 {
                    history.pop_front();
                }
            }
            pool_len() - before
        };
        // (Not all 1,000 stay: the ones found held on two turns left.)
        assert!(receive(500) > 500);
        // Nothing is idle by time: the surplus goes, a margin stays.
        release_idle_payloads(now);
        let trimmed = pool_len() - before;
        assert!(
            (101..300).contains(&trimmed),
            "{trimmed} buffers for 101 alive"
        );
        assert_eq!(receive(10_000), trimmed, "the margin was too small");
    }

    #[test]
    fn a_pool_of_unequal_lifetimes_is_not_cut_below_its_need() {
        let now = Instant::now();
        let before = pool_len();
        // A fast stream and one at a tenth of its rate, each payload held
        // while the next 100 of its own stream come: the slow ones live ten
        // times longer, so the pool needs about 1,100 buffers for 200 alive.
        let mut fast = VecDeque::new();
        let mut slow = VecDeque::new();
        let mut receive = |packets: u32| {
            for i in 0..packets {
                let history = if i % 11 == 0 { &mut slow } else { &mut fast };
                history.push_back(Payload::pooled(&i.to_be_bytes(), now));
                if history.len() > 100 {
                    history.pop_front();
                }
                if i % 1_000 == 0 {
                    release_idle_payloads(now);
                }
            }
            pool_len() - before
        };
        let settled = receive(20_000);
        assert_eq!(
            receive(20_000),
            settled,
            "trimmed below its need, it grew back"
        );
        assert!((1_000..1_500).contains(&settled), "{settled} buffers");
    }

    #[test]
    fn audio_and_video_sizes_keep_to_their_own_buffers() {
        let now = Instant::now();
        let audio = Payload::pooled(&[1; 100], now);
        let at = ptr(&audio);
        drop(audio);
        let video = Payload::pooled(&[2; 1_200], now);
        assert_ne!(ptr(&video), at, "a video payload took an audio buffer");
        let again = Payload::pooled(&[3; 160], now);
        assert_eq!(ptr(&again), at, "the free audio buffer was not reused");
        assert_eq!(video.len(), 1_200);
        assert_eq!(again, [3; 160]);
    }

    #[test]
    fn a_large_payload_is_not_pooled() {
        let now = Instant::now();
        let before = pool_len();
        let big = Payload::pooled(&vec![7; LARGE + 1], now);
        assert_eq!(pool_len(), before);
        assert_eq!(big.len(), LARGE + 1);
        let bytes: Arc<[u8]> = big.clone().into();
        assert_eq!(&*bytes, &*big);
    }
}

//! Deadlines of many things, soonest first.
//!
//! str0m's pacer asks for a timeout after every packet it sends, so with
//! hundreds of connections the engine is asked "what is due?" about once
//! per forwarded packet. Scanning every connection to answer makes the work
//! per packet grow with the room (at up to 500 participants that did not
//! yet show in the benchmarks; see docs/benchmarks.md). Here setting,
//! clearing and popping a deadline cost O(log n), and the soonest is O(1)
//! to read.
//!
//! The queue is a binary heap in which a deadline that moved stays behind
//! as a stale entry, dropped when it reaches the top or in a sweep once
//! stale entries outnumber the live ones. Unlike a tree, whose nodes are
//! allocated and freed as deadlines move, the heap allocates nothing once
//! it has grown to its working size: a deadline moves once per forwarded
//! packet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::Instant;

use crate::ids::IdMap;

/// One deadline per key; setting a key again replaces its deadline.
#[derive(Debug)]
pub struct Timers<K> {
    /// Every deadline set and not yet popped or swept, some of them stale.
    /// Invariant: the top is live (or the heap is empty).
    queue: BinaryHeap<Reverse<(Instant, K)>>,
    /// The live deadline of each key.
    at: IdMap<K, Instant>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            queue: BinaryHeap::new(),
            at: IdMap::default(),
        }
    }
}

impl<K: Copy + Ord + Hash> Timers<K> {
    /// Sets `key`'s deadline, or clears it with `None`.
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        let old = match at {
            Some(at) => self.at.insert(key, at),
            None => self.at.remove(&key),
        };
        if old == at {
            return;
        }
        if let Some(at) = at {
            self.queue.push(Reverse((at, key)));
        }
        // The old entry is stale now; it may have been the top.
        self.drop_stale_top();
        if self.queue.len() > 2 * self.at.len() + 64 {
            let at = &self.at;
            self.queue
                .retain(|Reverse((when, key))| at.get(key) == Some(when));
        }
    }

    /// The soonest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the soonest key whose deadline is at or before `now`, clearing
    /// its deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let Reverse((at, key)) = *self.queue.peek()?;
        if at > now {
            return None;
        }
        self.queue.pop();
        self.at.remove(&key);
        self.drop_stale_top();
        Some(key)
    }

    fn drop_stale_top(&mut self) {
        while let Some(Reverse((when, key))) = self.queue.peek() {
            if self.at.get(key) == Some(when) {
                break;
            }
            self.queue.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        timers.set('b', Some(t0 + ms(20)));
        timers.set('a', Some(t0 + ms(10)));
        timers.set('c', Some(t0 + ms(30)));
        assert_eq!(timers.next(), Some(t0 + ms(10)));
        assert_eq!(timers.pop_due(t0 + ms(5)), None);
        assert_eq!(timers.pop_due(t0 + ms(25)), Some('a'));
        assert_eq!(timers.pop_due(t0 + ms(25)), Some('b'));
        assert_eq!(timers.pop_due(t0 + ms(25)), None);
        assert_eq!(timers.next(), Some(t0 + ms(30)));
    }

    #[test]
    fn setting_again_moves_the_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        timers.set(1, Some(t0 + ms(10)));
        timers.set(1, Some(t0 + ms(50)));
        assert_eq!(
            timers.pop_due(t0 + ms(20)),
            None,
            "the old deadline is gone"
        );
        assert_eq!(timers.next(), Some(t0 + ms(50)));
        timers.set(1, None);
        assert_eq!(timers.next(), None);
        assert_eq!(timers.pop_due(t0 + ms(100)), None);
    }

    #[test]
    fn same_deadline_for_many_keys() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for k in 0..100 {
            timers.set(k, Some(t0));
        }
        for k in (1..100).step_by(2) {
            timers.set(k, None);
        }
        let mut popped = Vec::new();
        while let Some(k) = timers.pop_due(t0) {
            popped.push(k);
        }
        assert_eq!(popped, (0..100).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn moving_deadlines_keep_the_queue_bounded() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        // Ten keys whose deadlines move later, and back earlier, many times:
        // every move leaves a stale entry behind.
        for round in 0..10_000u64 {
            let k = round % 10;
            timers.set(k, Some(t0 + ms(1_000 + (round * 7919) % 500)));
        }
        assert!(
            timers.queue.len() <= 2 * 10 + 64 + 1,
            "stale entries are swept: {}",
            timers.queue.len()
        );
        // Each key pops once, at its last deadline, in deadline order.
        let mut popped = Vec::new();
        let mut last = t0;
        while let Some(at) = timers.next() {
            assert!(at >= last);
            last = at;
            popped.push(timers.pop_due(at).expect("due"));
        }
        popped.sort_unstable();
        assert_eq!(popped, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_key_set_back_to_an_old_deadline_pops_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        timers.set('a', Some(t0 + ms(10)));
        timers.set('a', Some(t0 + ms(20)));
        timers.set('a', Some(t0 + ms(10)));
        assert_eq!(timers.pop_due(t0 + ms(30)), Some('a'));
        assert_eq!(
            timers.pop_due(t0 + ms(30)),
            None,
            "its older entries are stale"
        );
        assert_eq!(timers.next(), None);
    }
}

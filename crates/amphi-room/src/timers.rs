//! Deadlines of many things, soonest first.
//!
//! str0m's pacer asks for a timeout after every packet it sends, so with
//! hundreds of connections the engine is asked "what is due?" about once
//! per forwarded packet. Scanning every connection to answer makes the work
//! per packet grow with the room (at up to 500 participants that did not
//! yet show in the benchmarks; see docs/benchmarks.md). Here setting,
//! clearing and popping a deadline cost O(log n), and the soonest is O(1)
//! to read.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// One deadline per key; setting a key again replaces its deadline.
#[derive(Debug)]
pub struct Timers<K> {
    queue: BTreeSet<(Instant, K)>,
    at: HashMap<K, Instant>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            queue: BTreeSet::new(),
            at: HashMap::new(),
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
        if let Some(old) = old {
            self.queue.remove(&(old, key));
        }
        if let Some(at) = at {
            self.queue.insert((at, key));
        }
    }

    /// The soonest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes the soonest key whose deadline is at or before `now`, clearing
    /// its deadline.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, key) = *self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.pop_first();
        self.at.remove(&key);
        Some(key)
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
}

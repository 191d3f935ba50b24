//! Identifiers the engine hands out. They appear in signalling as `P<n>` and
//! `T<n>`; the numbers come from the caller (participants) or the engine
//! (tracks) and are never reused within one server's lifetime.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// A map keyed by the engine's own identifiers (or keys made of them).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hashes the engine's identifiers with one multiplication per word (as
/// rustc's `FxHasher` does). They are counters the server hands out, so no
/// one outside can pick them to collide; std's SipHash, made for keys an
/// attacker chooses, cost about 1 % of a lecture's CPU in the lookups of
/// the packet path (the timers' map, the participants by id).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_spread_counters_and_tell_keys_apart() {
        let mut m: IdMap<(ParticipantId, u8), u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert((ParticipantId(i), (i % 3) as u8), i);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000u64).all(|i| m.get(&(ParticipantId(i), (i % 3) as u8)) == Some(&i)));
        assert_eq!(m.get(&(ParticipantId(1), 0)), None);
        // Counters land in different buckets' control bytes (hashbrown
        // reads the top seven bits): not all in a few.
        let tops: std::collections::HashSet<u64> = (0..1_000u64)
            .map(|i| {
                let mut h = IdHasher::default();
                h.write_u64(i);
                h.finish() >> 57
            })
            .collect();
        assert!(tops.len() > 100, "{} distinct top bits", tops.len());
    }
}

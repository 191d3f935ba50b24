//! The per-subscriber view of one published track: which packets go out, and
//! with which sequence number and timestamp.
//!
//! A subscriber's m-line keeps one SSRC for its life. Behind it the publisher
//! may stop and restart its track (new SSRC, new sequence numbers, new
//! timestamps), and the subscriber may join in the middle of a stream. The
//! forwarder hides all of that: what it emits is one continuous RTP stream
//! that starts with a keyframe (for video), whose sequence numbers never jump
//! backwards or skip, and whose timestamps advance with real time across a
//! restart.

use std::collections::VecDeque;
use std::time::Instant;

use crate::keyframe::VideoCodec;

/// Sequence-number jumps larger than this are a restart of the source, not
/// loss: browsers keep the SSRC across `replaceTrack` but an encoder reset can
/// start a new numbering.
const MAX_SEQ_JUMP: u64 = 3_000;

/// How many skipped packets are remembered to number late packets right.
const SKIP_MEMORY: usize = 512;

/// One incoming packet, as much of it as the forwarder needs.
#[derive(Debug, Clone, Copy)]
pub struct IncomingPacket {
    pub ssrc: u32,
    /// Extended (rollover-free) sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub arrival: Instant,
    /// The packet is the first of a keyframe (always `false` for audio).
    pub keyframe_start: bool,
}

/// What to do with a packet for this subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it with these header values.
    Forward { seq: u64, timestamp: u32 },
    /// Video that cannot be decoded before the next keyframe: the caller
    /// should make sure one has been requested.
    WaitForKeyframe,
    /// A late packet from before a restart, or a duplicate of the first packet.
    Late,
}

#[derive(Debug)]
pub struct Forwarder {
    video: Option<VideoCodec>,
    clock_rate: u32,
    run: Option<Run>,
    /// The last packet sent, to continue from it after a restart.
    last_out: Option<LastOut>,
    /// Packets of the current run left out on purpose (a temporal layer
    /// the subscriber does not get), as (incoming seq, offset before it):
    /// a packet that arrives late takes the offset of its time.
    skipped: VecDeque<(u64, i64)>,
}

/// One uninterrupted stretch of the source: same SSRC, no big jumps.
#[derive(Debug, Clone, Copy)]
struct Run {
    ssrc: u32,
    first_in_seq: u64,
    highest_in_seq: u64,
    seq_offset: i64,
    ts_offset: u32,
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u64,
    timestamp: u32,
    at: Instant,
}

impl Forwarder {
    /// A forwarder for audio (`video: None`) or video of the given codec.
    pub fn new(video: Option<VideoCodec>, clock_rate: u32) -> Self {
        Forwarder {
            video,
            clock_rate,
            run: None,
            last_out: None,
            skipped: VecDeque::new(),
        }
    }

    /// Tells the forwarder the codec of the packets it is about to see: a
    /// track's codec is only known once its first packets arrive.
    pub fn set_codec(&mut self, video: Option<VideoCodec>, clock_rate: u32) {
        self.video = video;
        self.clock_rate = clock_rate;
    }

    /// Whether the next forwarded packet must be a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.video.is_some() && self.run.is_none()
    }

    /// Forget the current source run: the next packet starts a new one (for
    /// video, at a keyframe), continuing the outgoing numbering.
    pub fn restart(&mut self) {
        self.run = None;
    }

    /// The packets numbered from `seq` on were dropped before they went out
    /// (str0m's `StreamTx::discard_queued`): the next run, after
    /// [`Forwarder::restart`], starts at `seq`, and the subscriber sees no
    /// gap.
    pub fn rewind(&mut self, seq: u64) {
        if let Some(last) = &mut self.last_out
            && seq <= last.seq
        {
            last.seq = seq.saturating_sub(1);
        }
    }

    pub fn forward(&mut self, p: IncomingPacket) -> Verdict {
        let continues = self.run.as_ref().is_some_and(|run| {
            run.ssrc == p.ssrc
                && p.seq + MAX_SEQ_JUMP > run.highest_in_seq
                && p.seq < run.highest_in_seq + MAX_SEQ_JUMP
        });
        if !continues {
            if self.video.is_some() && !p.keyframe_start {
                self.run = None;
                return Verdict::WaitForKeyframe;
            }
            self.run = Some(self.rebase(p));
            self.skipped.clear();
        }
        let Some(run) = self.run.as_mut() else {
            return Verdict::WaitForKeyframe;
        };
        if p.seq < run.first_in_seq {
            return Verdict::Late;
        }
        run.highest_in_seq = run.highest_in_seq.max(p.seq);
        let offset = self
            .skipped
            .iter()
            .find(|(skipped, _)| *skipped > p.seq)
            .map_or(run.seq_offset, |(_, before)| *before);
        let seq = p.seq.wrapping_add_signed(offset);
        let timestamp = p.timestamp.wrapping_add(run.ts_offset);
        if self.last_out.is_none_or(|last| seq > last.seq) {
            self.last_out = Some(LastOut {
                seq,
                timestamp,
                at: p.arrival,
            });
        }
        Verdict::Forward { seq, timestamp }
    }

    /// A packet of the current run that this subscriber does not get: the
    /// packets after it are numbered as if it had never existed, so the
    /// subscriber sees no loss to repair.
    pub fn skip(&mut self, p: IncomingPacket) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        // Only in-order packets can close their gap; a late one was already
        // counted in the numbers of those after it, and stays a hole.
        if run.ssrc != p.ssrc
            || p.seq <= run.highest_in_seq
            || p.seq >= run.highest_in_seq + MAX_SEQ_JUMP
        {
            return;
        }
        if self.skipped.len() == SKIP_MEMORY {
            self.skipped.pop_front();
        }
        self.skipped.push_back((p.seq, run.seq_offset));
        run.highest_in_seq = p.seq;
        run.seq_offset -= 1;
    }

    /// Offsets that make `p` follow the last packet sent.
    fn rebase(&self, p: IncomingPacket) -> Run {
        let (out_seq, out_ts) = match self.last_out {
            // Start low so the first sequence number has a rollover counter of
            // zero, as a receiver without out-of-band signalling assumes.
            None => (u64::from(p.seq as u16 & 0x3fff) + 1, p.timestamp),
            Some(last) => {
                let elapsed = p.arrival.saturating_duration_since(last.at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u64;
                // Timestamps must move forward even for back-to-back packets.
                let ticks = ticks.clamp(1, u64::from(u32::MAX / 2)) as u32;
                (last.seq + 1, last.timestamp.wrapping_add(ticks))
            }
        };
        Run {
            ssrc: p.ssrc,
            first_in_seq: p.seq,
            highest_in_seq: p.seq,
            seq_offset: out_seq as i64 - p.seq as i64,
            ts_offset: out_ts.wrapping_sub(p.timestamp),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn packet(ssrc: u32, seq: u64, timestamp: u32, at: Instant, key: bool) -> IncomingPacket {
        IncomingPacket {
            ssrc,
            seq,
            timestamp,
            arrival: at,
            keyframe_start: key,
        }
    }

    fn sent(v: Verdict) -> (u64, u32) {
        match v {
            Verdict::Forward { seq, timestamp } => (seq, timestamp),
            other => panic!("expected Forward, got {other:?}"),
        }
    }

    #[test]
    fn audio_is_forwarded_from_the_first_packet_with_small_start_seq() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(None, 48_000);
        let (s1, ts1) = sent(f.forward(packet(1, 70_000, 1_000, t0, false)));
        assert!(s1 < 65_536, "first seq {s1} must have ROC 0");
        let (s2, ts2) = sent(f.forward(packet(1, 70_001, 1_960, t0, false)));
        assert_eq!(s2, s1 + 1);
        assert_eq!(ts2.wrapping_sub(ts1), 960);
    }

    #[test]
    fn video_waits_for_a_keyframe_then_flows() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(Some(VideoCodec::Vp8), 90_000);
        assert!(f.waiting_for_keyframe());
        assert_eq!(
            f.forward(packet(7, 10, 0, t0, false)),
            Verdict::WaitForKeyframe
        );
        assert_eq!(
            f.forward(packet(7, 11, 0, t0, false)),
            Verdict::WaitForKeyframe
        );
        let (k, _) = sent(f.forward(packet(7, 12, 3_000, t0, true)));
        assert!(!f.waiting_for_keyframe());
        // Interframes after the keyframe pass.
        let (n, _) = sent(f.forward(packet(7, 13, 3_000, t0, false)));
        assert_eq!(n, k + 1);
        // Packets from before the keyframe that arrive late are not sent.
        assert_eq!(f.forward(packet(7, 11, 0, t0, false)), Verdict::Late);
    }

    #[test]
    fn reordering_within_a_run_keeps_relative_order() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(None, 48_000);
        let (a, _) = sent(f.forward(packet(1, 100, 0, t0, false)));
        let (c, _) = sent(f.forward(packet(1, 102, 1_920, t0, false)));
        let (b, _) = sent(f.forward(packet(1, 101, 960, t0, false)));
        assert_eq!((b, c), (a + 1, a + 2));
    }

    #[test]
    fn publisher_restart_continues_seq_and_advances_timestamp_by_wallclock() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(Some(VideoCodec::Vp8), 90_000);
        let mut last = (0, 0);
        for i in 0..30u64 {
            let at = t0 + Duration::from_millis(33 * i);
            last = sent(f.forward(packet(
                0xaaaa,
                5_000 + i,
                90_000 + 3_000 * i as u32,
                at,
                i == 0,
            )));
        }
        // The camera is turned off for two seconds and back on with a new
        // SSRC, new random seq and timestamp bases.
        let back = t0 + Duration::from_millis(33 * 29 + 2_000);
        assert_eq!(
            f.forward(packet(0xbbbb, 60_000, 7, back, false)),
            Verdict::WaitForKeyframe
        );
        let (seq, ts) = sent(f.forward(packet(0xbbbb, 60_001, 7, back, true)));
        assert_eq!(seq, last.0 + 1, "no gap and no jump in sequence numbers");
        let advanced = ts.wrapping_sub(last.1);
        assert!(
            (179_000..=181_000).contains(&advanced),
            "timestamp advanced by {advanced}, expected about 2 s at 90 kHz"
        );
        let (seq2, ts2) = sent(f.forward(packet(0xbbbb, 60_002, 3_007, back, false)));
        assert_eq!(seq2, seq + 1);
        assert_eq!(ts2.wrapping_sub(ts), 3_000);
    }

    #[test]
    fn a_big_sequence_jump_on_the_same_ssrc_is_a_restart() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(None, 48_000);
        let (a, _) = sent(f.forward(packet(1, 100, 0, t0, false)));
        let (b, _) = sent(f.forward(packet(1, 40_000, 5, t0 + Duration::from_millis(20), false)));
        assert_eq!(b, a + 1);
    }

    #[test]
    fn timestamps_wrap_like_rtp_timestamps() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(None, 48_000);
        let (_, a) = sent(f.forward(packet(1, 1, u32::MAX - 479, t0, false)));
        let (_, b) = sent(f.forward(packet(1, 2, 480, t0, false)));
        assert_eq!(b.wrapping_sub(a), 960);
    }

    #[test]
    fn sequence_numbers_cross_the_16_bit_boundary_without_a_jump() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(None, 48_000);
        let (first, _) = sent(f.forward(packet(1, 0, 0, t0, false)));
        let mut prev = first;
        for i in 1..70_000u64 {
            let (s, _) = sent(f.forward(packet(1, i, 0, t0, false)));
            assert_eq!(s, prev + 1);
            prev = s;
        }
        assert!(prev > 65_536);
    }

    #[test]
    fn a_switch_after_discarded_packets_numbers_from_the_first_of_them() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(Some(VideoCodec::Vp8), 90_000);
        let (first, ts) = sent(f.forward(packet(9, 100, 3_000, t0, true)));
        for seq in 101..110 {
            sent(f.forward(packet(
                9,
                seq,
                3_000 + 3_000 * (seq as u32 - 100),
                t0,
                false,
            )));
        }
        // 104-109 were still queued, and dropped.
        f.restart();
        f.rewind(first + 4);
        // A rewind past what was sent changes nothing.
        f.rewind(first + 50);
        let t1 = t0 + Duration::from_millis(300);
        let (seq, ts_new) = sent(f.forward(packet(5, 7_000, 0, t1, true)));
        assert_eq!(
            seq,
            first + 4,
            "the new layer takes the first dropped number"
        );
        // Timestamps keep moving forward from the last packet numbered.
        assert!(ts_new.wrapping_sub(ts) > 27_000 && ts_new.wrapping_sub(ts) < u32::MAX / 2);
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_late_packets_keep_their_place() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(Some(VideoCodec::Vp8), 90_000);
        let (a, _) = sent(f.forward(packet(9, 100, 0, t0, true)));
        f.skip(packet(9, 101, 0, t0, false));
        f.skip(packet(9, 102, 0, t0, false));
        let (d, _) = sent(f.forward(packet(9, 104, 0, t0, false)));
        assert_eq!(d, a + 2, "104 follows 100 once 101 and 102 are left out");
        // 103 was late: it goes between 100 and 104.
        let (c, _) = sent(f.forward(packet(9, 103, 0, t0, false)));
        assert_eq!(c, a + 1);
        // A skip that comes late cannot move what was already numbered.
        f.skip(packet(9, 99, 0, t0, false));
        let (e, _) = sent(f.forward(packet(9, 105, 0, t0, false)));
        assert_eq!(e, d + 1);
    }

    #[test]
    fn explicit_restart_regates_video() {
        let t0 = Instant::now();
        let mut f = Forwarder::new(Some(VideoCodec::H264), 90_000);
        let (a, _) = sent(f.forward(packet(3, 1, 0, t0, true)));
        f.restart();
        assert_eq!(
            f.forward(packet(3, 2, 0, t0, false)),
            Verdict::WaitForKeyframe
        );
        let (b, _) = sent(f.forward(packet(3, 3, 3_000, t0, true)));
        assert_eq!(b, a + 1);
    }
}

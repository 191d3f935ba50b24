use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtp_::Bitrate;

/// Time window for averaging estimate changes.
const ESTIMATE_WINDOW: Duration = Duration::from_secs(3);

type TimeBitrate = (Instant, Bitrate);

const TOLERANCE: f64 = 0.05;

/// Smooths BWE estimates by averaging over a time window.
pub struct EstimateSmoother {
    estimates: VecDeque<TimeBitrate>,
    /// Sum of the bitrates in `estimates`, kept as they come and go: the
    /// estimate can change at every timeout, one per paced packet, so the
    /// window can hold thousands of entries and `poll` runs after each.
    /// (Amphi patch: summing the window in `poll` was 20 % of an SFU's CPU.)
    total: f64,
    maybe_emit: bool,
    emitted: Option<Bitrate>,
}

impl EstimateSmoother {
    pub fn new() -> Self {
        Self {
            estimates: VecDeque::new(),
            total: 0.0,
            maybe_emit: false,
            emitted: None,
        }
    }

    /// Record a new estimate and update the smoothed average.
    pub fn record(&mut self, now: Instant, estimate: Bitrate) {
        // Did value change from previous?
        let do_update = self.estimates.back().map(|b| b.1) != Some(estimate);

        if do_update {
            self.maybe_emit = true;
            self.estimates.push_back((now, estimate));
            self.total += estimate.as_f64();
        }

        // Remove entries older than the window.
        while let Some((time, _)) = self.estimates.front() {
            if now.duration_since(*time) > ESTIMATE_WINDOW {
                // Keep last entry
                if self.estimates.len() == 1 {
                    break;
                }

                self.maybe_emit = true;
                if let Some((_, gone)) = self.estimates.pop_front() {
                    self.total -= gone.as_f64();
                }
            } else {
                break;
            }
        }

        // Subtraction leaves rounding behind; a lone entry is the exact sum.
        if self.estimates.len() == 1 {
            self.total = self.estimates.front().map_or(0.0, |b| b.1.as_f64());
        }
    }

    /// Poll for an estimate to emit. Returns Some only when there's a new value to emit.
    pub fn poll(&mut self) -> Option<Bitrate> {
        if !self.maybe_emit {
            return None;
        }

        if self.estimates.is_empty() {
            return None;
        }

        // Amphi patch: a fall is emitted as it is, not averaged. GCC lowers
        // its estimate only for delay or loss it measured, and averaged with
        // the 3 s before it, the estimate a sender follows stayed above what
        // a link that just narrowed carries for a second or more (a sender
        // using libwebrtc gets its target rate unsmoothed).
        let avg = self.total / self.estimates.len() as f64;
        let latest = self.estimates.back().map_or(avg, |b| b.1.as_f64());
        let rate: Bitrate = avg.min(latest).into();

        // This forces emitting if we have the first ever value, or a last
        // where the rest of the window is gone (estimates stop coming).
        let force = self.estimates.len() == 1 && self.emitted != Some(rate);

        // Emit if we deviate enough from previously emitted.
        let deviate = if let Some(emitted) = self.emitted {
            !in_tolerance(emitted, rate)
        } else {
            true
        };

        self.maybe_emit = false;

        // Are we not to emit?
        if !force && !deviate {
            return None;
        }

        self.emitted = Some(rate);
        Some(rate)
    }
}

fn in_tolerance(b1: Bitrate, b2: Bitrate) -> bool {
    let min = b1 * (1.0 - TOLERANCE);
    let max = b1 * (1.0 + TOLERANCE);
    b2 > min && b2 < max
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running total must give what summing the window gives.
    #[test]
    fn running_average_matches_the_window() {
        let mut s = EstimateSmoother::new();
        let start = Instant::now();
        let mut window: VecDeque<TimeBitrate> = VecDeque::new();
        for i in 0..20_000u64 {
            // A new estimate every 1 ms, so entries also leave the window.
            let now = start + Duration::from_millis(i);
            let rate = Bitrate::from(1_000_000.0 + ((i * 7919) % 500_000) as f64);
            s.record(now, rate);
            window.push_back((now, rate));
            while window.len() > 1 && now.duration_since(window[0].0) > ESTIMATE_WINDOW {
                window.pop_front();
            }
            let expected = window.iter().map(|b| b.1.as_f64()).sum::<f64>() / window.len() as f64;
            let got = s.total / s.estimates.len() as f64;
            assert_eq!(s.estimates.len(), window.len());
            assert!((got - expected).abs() < 1e-3, "{got} != {expected} at {i}");
        }
    }

    #[test]
    fn emits_the_first_value_and_then_only_a_change_over_tolerance() {
        let mut s = EstimateSmoother::new();
        let t = Instant::now();
        s.record(t, Bitrate::from(1_000_000.0));
        assert_eq!(s.poll(), Some(Bitrate::from(1_000_000.0)));
        // Average 1.01 Mbit/s: within 5 %, not emitted.
        s.record(t + Duration::from_millis(10), Bitrate::from(1_020_000.0));
        assert_eq!(s.poll(), None);
        // Average 1.5 Mbit/s: emitted.
        s.record(t + Duration::from_millis(20), Bitrate::from(2_480_000.0));
        assert_eq!(s.poll(), Some(Bitrate::from(1_500_000.0)));
        // Once the window has passed, the last estimate alone is the average.
        s.record(t + Duration::from_secs(10), Bitrate::from(2_480_000.0));
        assert_eq!(s.estimates.len(), 1);
        assert_eq!(s.poll(), Some(Bitrate::from(2_480_000.0)));
    }

    /// Amphi patch: GCC's falls reach the application at once; its rises
    /// are averaged as before.
    #[test]
    fn a_fall_is_emitted_at_once_and_a_rise_averaged() {
        let mut s = EstimateSmoother::new();
        let t = Instant::now();
        s.record(t, Bitrate::from(2_000_000.0));
        s.record(t + Duration::from_millis(20), Bitrate::from(2_400_000.0));
        assert_eq!(s.poll(), Some(Bitrate::from(2_200_000.0)));
        // Averaged, the fall would read 1.7 Mbit/s.
        s.record(t + Duration::from_millis(30), Bitrate::from(700_000.0));
        assert_eq!(s.poll(), Some(Bitrate::from(700_000.0)));
        s.record(t + Duration::from_millis(40), Bitrate::from(650_000.0));
        assert_eq!(s.poll(), Some(Bitrate::from(650_000.0)));
        // A rise from there: the average of the window.
        s.record(t + Duration::from_millis(50), Bitrate::from(1_600_000.0));
        assert_eq!(s.poll(), Some(Bitrate::from(1_470_000.0)));
    }
}

//! Connection quality: good, fair or poor, from what RTCP tells about a
//! participant's media (loss, jitter, round-trip time) and, when the
//! bandwidth estimator runs, how much of what they should receive fits.
//!
//! Sans-IO and pure: the engine adds one [`Sample`] per stream report
//! (str0m's per-stream statistics, every second) to a participant's
//! [`Scorer`], and calls [`Scorer::evaluate`] at a fixed period (every 2 s).
//!
//! The levels follow the thresholds commonly used for real-time media
//! (LiveKit's and Jitsi's indicators are in the same range): up to 2 % loss
//! is not noticed, thanks to NACK and Opus FEC; beyond 10 % video freezes
//! and speech breaks up. Jitter and round-trip time only matter when large:
//! they add delay the jitter buffer has to absorb.
//!
//! Hysteresis, so that an indicator does not flicker: a worse level shows at
//! once (the user notices a problem immediately), a better one only after
//! [`UPGRADE_AFTER`] evaluations in a row that clear the threshold with a
//! margin ([`RECOVERY_MARGIN`]).

use amphi_protocol::ConnectionQuality;

/// Loss (fraction of packets) from which a connection is fair / poor.
pub const LOSS_FAIR: f32 = 0.02;
pub const LOSS_POOR: f32 = 0.10;
/// Jitter (ms) from which a connection is fair / poor.
pub const JITTER_FAIR_MS: f32 = 30.0;
pub const JITTER_POOR_MS: f32 = 100.0;
/// Round-trip time (ms) from which a connection is fair / poor.
pub const RTT_FAIR_MS: f32 = 300.0;
pub const RTT_POOR_MS: f32 = 700.0;
/// Share of the wanted bitrate the bandwidth estimate must cover to be fair
/// / good (below the first: poor).
pub const BANDWIDTH_FAIR: f32 = 0.5;
pub const BANDWIDTH_GOOD: f32 = 0.85;
/// An estimate below this is poor whatever is wanted: not even one small
/// video next to the audio fits.
pub const BANDWIDTH_FLOOR_BPS: u64 = 64_000;
/// Fewer packets than this in a period say nothing about loss: one packet
/// lost out of five is not 20 % loss worth an alarm.
pub const MIN_PACKETS: u64 = 20;
/// To go up a level, the figures must be this much better than the
/// threshold (0.6: loss under 1.2 % to become good again).
pub const RECOVERY_MARGIN: f32 = 0.6;
/// Evaluations in a row that must allow a better level before it shows.
pub const UPGRADE_AFTER: u32 = 2;

/// One stream's report for part of a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Packets the report covers (new since the previous report); weighs
    /// `loss` against the other streams'.
    pub packets: u64,
    /// Fraction of packets lost, 0 to 1 (RTCP "fraction lost").
    pub loss: Option<f32>,
    pub jitter_ms: Option<f32>,
    pub rtt_ms: Option<f32>,
}

/// What the bandwidth estimator says about a participant's downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    /// Estimated available bits per second.
    pub estimate_bps: u64,
    /// What the participant's subscriptions would use at their best layers,
    /// when the allocator knows it.
    pub wanted_bps: Option<u64>,
}

/// The figures of one period, merged over a participant's streams.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Packets weighing the loss figure.
    pub packets: u64,
    /// Packet-weighted mean loss, 0 to 1.
    pub loss: Option<f32>,
    /// Worst jitter of any stream (ms).
    pub jitter_ms: Option<f32>,
    /// Worst round-trip time of any stream (ms).
    pub rtt_ms: Option<f32>,
    pub bandwidth: Option<Bandwidth>,
    /// A peer connection is ICE-disconnected: nothing gets through.
    pub disconnected: bool,
}

/// The level the figures call for, with the thresholds scaled by `margin`
/// (1: as they are; below 1: stricter, for going up a level).
pub fn level(f: &Figures, margin: f32) -> ConnectionQuality {
    if f.disconnected {
        return ConnectionQuality::Poor;
    }
    let mut worst = ConnectionQuality::Good;
    let mut against = |value: Option<f32>, fair: f32, poor: f32| {
        let Some(v) = value else {
            return;
        };
        let l = if v >= poor * margin {
            ConnectionQuality::Poor
        } else if v >= fair * margin {
            ConnectionQuality::Fair
        } else {
            ConnectionQuality::Good
        };
        worst = worst.min(l);
    };
    let loss = f.loss.filter(|_| f.packets >= MIN_PACKETS);
    against(loss, LOSS_FAIR, LOSS_POOR);
    against(f.jitter_ms, JITTER_FAIR_MS, JITTER_POOR_MS);
    against(f.rtt_ms, RTT_FAIR_MS, RTT_POOR_MS);
    if let Some(b) = f.bandwidth {
        if b.estimate_bps < BANDWIDTH_FLOOR_BPS {
            worst = ConnectionQuality::Poor;
        } else if let Some(wanted) = b.wanted_bps.filter(|w| *w > 0) {
            // A shortfall: how much of what is wanted does not fit. Scaled
            // like the other figures, where more is worse.
            let covered = b.estimate_bps as f32 / wanted as f32;
            let short = 1.0 - covered.min(1.0);
            against(Some(short), 1.0 - BANDWIDTH_GOOD, 1.0 - BANDWIDTH_FAIR);
        }
    }
    worst
}

/// Accumulates one participant's samples and turns each period into a
/// level, with hysteresis.
#[derive(Debug, Clone)]
pub struct Scorer {
    quality: ConnectionQuality,
    /// Evaluations in a row that allowed a better level than `quality`,
    /// and the worst level they allowed.
    better_streak: u32,
    streak_level: ConnectionQuality,
    period: Period,
}

#[derive(Debug, Clone, Copy, Default)]
struct Period {
    packets: u64,
    lost: f64,
    /// Packets of samples that carried a loss figure.
    loss_packets: u64,
    jitter_ms: Option<f32>,
    rtt_ms: Option<f32>,
    bandwidth: Option<Bandwidth>,
    disconnected: bool,
}

impl Default for Scorer {
    fn default() -> Self {
        Scorer::new()
    }
}

impl Scorer {
    /// Starts good: nothing says otherwise yet.
    pub fn new() -> Self {
        Scorer {
            quality: ConnectionQuality::Good,
            better_streak: 0,
            streak_level: ConnectionQuality::Good,
            period: Period::default(),
        }
    }

    pub fn quality(&self) -> ConnectionQuality {
        self.quality
    }

    /// One stream's report.
    pub fn add(&mut self, s: Sample) {
        let p = &mut self.period;
        p.packets += s.packets;
        if let Some(loss) = s.loss.filter(|l| l.is_finite()) {
            p.lost += f64::from(loss.clamp(0.0, 1.0)) * s.packets as f64;
            p.loss_packets += s.packets;
        }
        let worse = |a: Option<f32>, b: Option<f32>| match (a, b.filter(|v| v.is_finite())) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        p.jitter_ms = worse(p.jitter_ms, s.jitter_ms);
        p.rtt_ms = worse(p.rtt_ms, s.rtt_ms);
    }

    /// The bandwidth estimate for this period (`None`: no estimator, or no
    /// estimate yet). The latest call in a period counts.
    pub fn set_bandwidth(&mut self, bandwidth: Option<Bandwidth>) {
        self.period.bandwidth = bandwidth;
    }

    /// Whether one of the participant's connections is ICE-disconnected.
    pub fn set_disconnected(&mut self, disconnected: bool) {
        self.period.disconnected |= disconnected;
    }

    /// The figures gathered since the last evaluation.
    pub fn figures(&self) -> Figures {
        let p = &self.period;
        Figures {
            packets: p.loss_packets,
            loss: (p.loss_packets > 0).then(|| (p.lost / p.loss_packets as f64) as f32),
            jitter_ms: p.jitter_ms,
            rtt_ms: p.rtt_ms,
            bandwidth: p.bandwidth,
            disconnected: p.disconnected,
        }
    }

    /// Closes the period: the level to show from now on. A period with no
    /// report at all keeps the current level.
    pub fn evaluate(&mut self) -> ConnectionQuality {
        let f = self.figures();
        let bandwidth = self.period.bandwidth;
        let heard = self.period.packets > 0 || f.disconnected || bandwidth.is_some();
        self.period = Period::default();
        if !heard {
            self.better_streak = 0;
            return self.quality;
        }
        let now = level(&f, 1.0);
        let better = level(&f, RECOVERY_MARGIN);
        // Without a loss figure (no receiver report this period) the
        // period can show a problem but not vouch for its absence.
        let judged = f.loss.is_some() && f.packets >= MIN_PACKETS;
        if now < self.quality {
            self.quality = now;
            self.better_streak = 0;
        } else if judged && better > self.quality {
            self.streak_level = if self.better_streak == 0 {
                better
            } else {
                self.streak_level.min(better)
            };
            self.better_streak += 1;
            if self.better_streak >= UPGRADE_AFTER {
                // As good as the whole streak was, no better.
                self.quality = self.streak_level;
                self.better_streak = 0;
            }
        } else if judged {
            self.better_streak = 0;
        }
        self.quality
    }
}

/// Jitter in milliseconds from RTP timestamp units.
pub fn jitter_ms(units: u32, clock_rate: u32) -> Option<f32> {
    (clock_rate > 0).then(|| units as f32 * 1000.0 / clock_rate as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionQuality::{Fair, Good, Poor};

    fn sample(loss: f32) -> Sample {
        Sample {
            packets: 100,
            loss: Some(loss),
            jitter_ms: Some(2.0),
            rtt_ms: Some(20.0),
        }
    }

    fn run(scorer: &mut Scorer, loss: f32) -> ConnectionQuality {
        scorer.add(sample(loss));
        scorer.evaluate()
    }

    #[test]
    fn clean_network_is_good() {
        let mut s = Scorer::new();
        for _ in 0..5 {
            assert_eq!(run(&mut s, 0.0), Good);
        }
    }

    #[test]
    fn thresholds() {
        let f = |loss, jitter, rtt| Figures {
            packets: 100,
            loss: Some(loss),
            jitter_ms: Some(jitter),
            rtt_ms: Some(rtt),
            ..Figures::default()
        };
        assert_eq!(level(&f(0.01, 5.0, 30.0), 1.0), Good);
        assert_eq!(level(&f(0.05, 5.0, 30.0), 1.0), Fair);
        assert_eq!(level(&f(0.25, 5.0, 30.0), 1.0), Poor);
        assert_eq!(level(&f(0.0, 45.0, 30.0), 1.0), Fair);
        assert_eq!(level(&f(0.0, 150.0, 30.0), 1.0), Poor);
        assert_eq!(level(&f(0.0, 5.0, 400.0), 1.0), Fair);
        assert_eq!(level(&f(0.0, 5.0, 900.0), 1.0), Poor);
        // The worst figure decides.
        assert_eq!(level(&f(0.05, 150.0, 30.0), 1.0), Poor);
        let mut gone = f(0.0, 1.0, 1.0);
        gone.disconnected = true;
        assert_eq!(level(&gone, 1.0), Poor);
    }

    #[test]
    fn a_few_packets_say_nothing_about_loss() {
        let f = Figures {
            packets: 5,
            loss: Some(0.2),
            ..Figures::default()
        };
        assert_eq!(level(&f, 1.0), Good);
    }

    #[test]
    fn loss_is_weighted_by_packets() {
        let mut s = Scorer::new();
        // A video stream with 1 % loss and an audio one with 50 % over few
        // packets: 1.5 % overall, still good.
        s.add(Sample {
            packets: 990,
            loss: Some(0.01),
            ..Sample::default()
        });
        s.add(Sample {
            packets: 10,
            loss: Some(0.5),
            ..Sample::default()
        });
        let loss = s.figures().loss.unwrap();
        assert!((loss - 0.0149).abs() < 0.001, "{loss}");
        assert_eq!(s.evaluate(), Good);
    }

    #[test]
    fn drops_at_once_and_recovers_slowly() {
        let mut s = Scorer::new();
        assert_eq!(run(&mut s, 0.3), Poor, "a worse level shows at once");
        assert_eq!(run(&mut s, 0.0), Poor, "one good period is not enough");
        assert_eq!(run(&mut s, 0.0), Good, "two are");
        assert_eq!(run(&mut s, 0.05), Fair);
        // A streak that was only fair part of the time climbs to fair.
        assert_eq!(run(&mut s, 0.3), Poor);
        assert_eq!(run(&mut s, 0.0), Poor);
        assert_eq!(run(&mut s, 0.03), Fair);
        assert_eq!(run(&mut s, 0.0), Fair);
        assert_eq!(run(&mut s, 0.0), Good);
    }

    #[test]
    fn no_flicker_around_a_threshold() {
        let mut s = Scorer::new();
        assert_eq!(run(&mut s, 0.025), Fair);
        // Just under the threshold, but not by the recovery margin: the
        // indicator stays where it is instead of flipping every period.
        for loss in [0.018, 0.022, 0.019, 0.017, 0.021, 0.015] {
            assert_eq!(run(&mut s, loss), Fair, "loss {loss}");
        }
        // Clearly better: good again after the streak.
        assert_eq!(run(&mut s, 0.005), Fair);
        assert_eq!(run(&mut s, 0.005), Good);
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut s = Scorer::new();
        assert_eq!(run(&mut s, 0.05), Fair);
        assert_eq!(run(&mut s, 0.0), Fair);
        assert_eq!(
            run(&mut s, 0.019),
            Fair,
            "not clearly good: the streak ends"
        );
        assert_eq!(run(&mut s, 0.0), Fair);
        assert_eq!(run(&mut s, 0.0), Good);
    }

    #[test]
    fn silence_keeps_the_level() {
        let mut s = Scorer::new();
        assert_eq!(run(&mut s, 0.3), Poor);
        for _ in 0..5 {
            assert_eq!(s.evaluate(), Poor, "no report: nothing new to say");
        }
    }

    #[test]
    fn a_period_without_loss_figures_cannot_improve_the_level() {
        let mut s = Scorer::new();
        assert_eq!(run(&mut s, 0.3), Poor);
        // Packets, but no receiver report said anything about loss.
        for _ in 0..4 {
            s.add(Sample {
                packets: 100,
                loss: None,
                jitter_ms: Some(1.0),
                rtt_ms: Some(10.0),
            });
            assert_eq!(s.evaluate(), Poor);
        }
        // Nor does it break a streak.
        assert_eq!(run(&mut s, 0.0), Poor);
        s.add(Sample {
            packets: 100,
            ..Sample::default()
        });
        assert_eq!(s.evaluate(), Poor);
        assert_eq!(run(&mut s, 0.0), Good);
    }

    #[test]
    fn disconnection_is_poor() {
        let mut s = Scorer::new();
        s.set_disconnected(true);
        assert_eq!(s.evaluate(), Poor);
    }

    #[test]
    fn bandwidth_shortfall() {
        let with = |estimate_bps, wanted_bps| {
            let mut s = Scorer::new();
            s.add(sample(0.0));
            s.set_bandwidth(Some(Bandwidth {
                estimate_bps,
                wanted_bps,
            }));
            s.evaluate()
        };
        assert_eq!(with(2_000_000, Some(1_500_000)), Good);
        assert_eq!(with(1_400_000, Some(1_500_000)), Good);
        assert_eq!(with(1_000_000, Some(1_500_000)), Fair);
        assert_eq!(with(500_000, Some(1_500_000)), Poor);
        // Without knowing what is wanted only a tiny estimate says anything.
        assert_eq!(with(300_000, None), Good);
        assert_eq!(with(40_000, None), Poor);
    }

    #[test]
    fn nonsense_figures_are_ignored() {
        let mut s = Scorer::new();
        s.add(Sample {
            packets: 100,
            loss: Some(f32::NAN),
            jitter_ms: Some(f32::INFINITY),
            rtt_ms: None,
        });
        assert_eq!(s.evaluate(), Good);
    }

    #[test]
    fn jitter_units() {
        assert_eq!(jitter_ms(900, 90_000), Some(10.0));
        assert_eq!(jitter_ms(480, 48_000), Some(10.0));
        assert_eq!(jitter_ms(480, 0), None);
    }
}

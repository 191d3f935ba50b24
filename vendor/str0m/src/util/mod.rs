use std::time::{Duration, Instant};

mod bit_pattern;

pub(crate) use bit_pattern::BitPattern;

pub(crate) mod value_history;

mod time_tricks;
pub(crate) use time_tricks::{InstantExt, SystemTimeExt, not_happening};
pub(crate) use time_tricks::{already_happened, epoch_to_beginning};

mod average;
pub(crate) use average::MovingAverage;

pub(crate) trait Soonest {
    fn soonest(self, other: Self) -> Self;
}

impl<T: Default> Soonest for (Option<Instant>, T) {
    fn soonest(self, other: Self) -> Self {
        match (self, other) {
            ((Some(v1), s1), (Some(v2), s2)) => {
                if v1 < v2 {
                    (Some(v1), s1)
                } else {
                    (Some(v2), s2)
                }
            }
            ((None, _), (None, _)) => (None, T::default()),
            ((None, _), (v, s)) => (v, s),
            ((v, s), (None, _)) => (v, s),
        }
    }
}

/// Calculate the round trip time for a given peer as described in
/// [RFC3550 6.4.1](https://datatracker.ietf.org/doc/html/rfc3550#section-6.4.1).
///
/// ## Params
/// - `ntp_time` the offset since 1900-01-01.
/// - `delay` the delay(`DLSR`) since last sender report expressed as fractions of a second in 32 bits.
/// - `last_report` the middle 32 bits of an NTP timestamp for the most recent sender report(LSR)
///   or Receiver Report(LRR).
pub(crate) fn calculate_rtt(ntp_time: Duration, delay: u32, last_report: u32) -> Option<Duration> {
    // [10 Nov 1995 11:33:25.125 UTC]       [10 Nov 1995 11:33:36.5 UTC]
    // n                 SR(n)              A=b710:8000 (46864.500 s)
    // ---------------------------------------------------------------->
    //                    v                 ^
    // ntp_sec =0xb44db705 v               ^ dlsr=0x0005:4000 (    5.250s)
    // ntp_frac=0x20000000  v             ^  lsr =0xb705:2000 (46853.125s)
    //   (3024992005.125 s)  v           ^
    // r                      v         ^ RR(n)
    // ---------------------------------------------------------------->
    //                        |<-DLSR->|
    //                         (5.250 s)
    //
    // A     0xb710:8000 (46864.500 s)
    // DLSR -0x0005:4000 (    5.250 s)
    // LSR  -0xb705:2000 (46853.125 s)
    // -------------------------------
    // delay 0x0006:2000 (    6.125 s)

    // - we want the current middle 32 bits of an NTP timestamp for the current time.
    // We treat the seconds separately to the fractions.
    // [32 bit seconds].[32 bit fractions]
    //         [16 bit].[16 bit]

    // Amphi patch: a report that answers no earlier report has LSR (and
    // DLSR) 0 (RFC 3550 6.4.1, RFC 3611 4.5). DLSR alone is 0 when the report
    // left within 1/65536 s of the one it answers, and that is a real round
    // trip: testing DLSR threw it away and left the stream with no RTT.
    if last_report == 0 {
        return None;
    }

    let now_secs = ntp_time.as_secs();
    let now_fract_ns = ntp_time.subsec_nanos() as u64;
    // Amphi patch: scaled by 2^32, as the report's timestamp is (it was
    // u32::MAX, which put `now` a unit early at times).
    let now_fract = ((now_fract_ns << 32) / 1_000_000_000) as u32;

    // Combine the final 2x16 bits together.
    let now = (now_secs as u32) << 16 | (now_fract >> 16);

    // Amphi patch: the three terms are rounded to 1/65536 s on their own (the
    // report's timestamp through an f64), so a round trip shorter than that
    // can come out a unit or two below zero; it was dropped as if there were
    // no round trip, and on a fast path every report could be. The middle 32
    // bits of NTP wrap every 18 hours, so the difference is taken modulo.
    const ROUNDING: i32 = 2;
    let rtt = now.wrapping_sub(delay).wrapping_sub(last_report) as i32;
    if rtt < -ROUNDING {
        return None;
    }
    let rtt = rtt.max(0) as u32;
    let rtt_seconds = rtt >> 16;
    let rtt_fraction = (rtt & (u16::MAX as u32)) as f32 / (u16::MAX as u32) as f32;

    let nanos = (rtt_fraction * 1_000_000_000.0) as u32;
    Some(Duration::new(rtt_seconds as u64, nanos))
}

#[cfg(test)]
mod rtt_tests {
    use super::calculate_rtt;
    use std::time::Duration;

    /// `now` as an NTP duration from the middle 32 bits of an NTP timestamp.
    fn ntp(middle: u32) -> Duration {
        Duration::from_secs((middle >> 16) as u64)
            + Duration::from_nanos(((middle & 0xffff) as u64 * 1_000_000_000).div_ceil(65536))
    }

    #[test]
    fn rtt_of_the_rfc_3550_example() {
        // RFC 3550 figure 2: A 0xb710:8000, DLSR 0x0005:4000, LSR 0xb705:2000.
        let rtt = calculate_rtt(ntp(0xb710_8000), 0x0005_4000, 0xb705_2000).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(6125)) < Duration::from_millis(1));
    }

    #[test]
    fn no_rtt_without_an_earlier_report() {
        assert_eq!(calculate_rtt(ntp(0xb710_8000), 0, 0), None);
    }

    /// Amphi patch: a report sent the instant the one it answers arrived.
    #[test]
    fn rtt_of_a_report_sent_at_once() {
        let rtt = calculate_rtt(ntp(0xb710_8000), 0, 0xb710_7ff0).unwrap();
        assert!(rtt < Duration::from_millis(1), "{rtt:?}");
    }

    /// Amphi patch: a round trip shorter than the rounding of its terms.
    #[test]
    fn rtt_of_a_round_trip_below_the_rounding_is_zero() {
        let now = ntp(0xb710_8000);
        assert_eq!(calculate_rtt(now, 0x10, 0xb710_7ff1), Some(Duration::ZERO));
        assert_eq!(calculate_rtt(now, 0, 0xb710_8002), Some(Duration::ZERO));
        // Further below zero, the report does not fit this clock.
        assert_eq!(calculate_rtt(now, 0, 0xb710_8003), None);
        assert_eq!(calculate_rtt(now, 0x0001_0000, 0xb710_8000), None);
    }

    #[test]
    fn rtt_across_the_wrap_of_the_middle_bits() {
        let rtt = calculate_rtt(ntp(0x0000_4000), 0x4000, 0xffff_c000).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(250)) < Duration::from_millis(1));
    }
}

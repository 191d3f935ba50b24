//! Keyframes: recognising them in RTP payloads, and asking publishers for
//! them without flooding.
//!
//! A subscriber who starts receiving a video track in the middle of a group of
//! pictures can decode nothing until the next keyframe, so the forwarder only
//! starts a video stream at a keyframe and asks the publisher for one. Many
//! people joining at once must not turn into a storm of PLIs, which would make
//! the publisher's encoder produce nothing but keyframes.

use std::time::{Duration, Instant};

use crate::vp8::Vp8Info;

/// Video codecs whose keyframes we can recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// Whether `payload` (an RTP payload, header removed) starts a keyframe.
///
/// Only the first packet of a keyframe answers `true`: a subscriber must get
/// the whole frame from its beginning.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::H264 => h264_starts_keyframe(payload),
    }
}

/// RFC 7741 payload descriptor, then the VP8 payload header (RFC 6386 9.1):
/// read once, in `vp8.rs`.
fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    Vp8Info::parse(payload).is_some_and(|i| i.keyframe_start)
}

/// RFC 6184: a single NAL unit, a STAP-A aggregate or the first FU-A
/// fragment carrying an IDR slice or a sequence parameter set.
fn h264_starts_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let is_key = |nal_type: u8| nal_type == IDR || nal_type == SPS;

    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        STAP_A => {
            let mut at = 1;
            while let (Some(&hi), Some(&lo)) = (payload.get(at), payload.get(at + 1)) {
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                let Some(&nal) = payload.get(at + 2) else {
                    return false;
                };
                if is_key(nal & 0x1f) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        nal_type => is_key(nal_type),
    }
}

/// Smallest interval between two keyframe requests for one track.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Throttles keyframe requests for one published track.
///
/// A request inside the interval is not dropped but deferred to the end of
/// it, so the last of many joins still gets its keyframe.
#[derive(Debug, Default)]
pub struct KeyframeThrottle {
    last_sent: Option<Instant>,
    deferred: bool,
}

impl KeyframeThrottle {
    /// Records a need for a keyframe. Returns `true` if a request should go to
    /// the publisher now.
    pub fn request(&mut self, now: Instant) -> bool {
        if self.may_send(now) {
            self.last_sent = Some(now);
            self.deferred = false;
            true
        } else {
            self.deferred = true;
            false
        }
    }

    /// A keyframe arrived: deferred requests are satisfied by it.
    pub fn keyframe_received(&mut self) {
        self.deferred = false;
    }

    /// When a deferred request falls due, if one is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deferred, self.last_sent) {
            (true, Some(last)) => Some(last + KEYFRAME_REQUEST_INTERVAL),
            _ => None,
        }
    }

    /// Returns `true` if a deferred request should go out now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.deferred && self.may_send(now) {
            self.request(now)
        } else {
            false
        }
    }

    fn may_send(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= KEYFRAME_REQUEST_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_with_extended_descriptor() {
        // X=1 S=1 PID=0; I=1 L=1 T=1; 15-bit picture id; TL0PICIDX; TID; tag P=0.
        let key = [
            0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a,
        ];
        // Frame tag at index 6.
        assert!(starts_keyframe(VideoCodec::Vp8, &key));
        let mut inter = key;
        inter[6] = 0x11; // P=1
        assert!(!starts_keyframe(VideoCodec::Vp8, &inter));
    }

    #[test]
    fn vp8_continuation_packet_is_not_a_start() {
        // S=0: the middle of a keyframe must not start a stream.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x10]));
        // S=1 but partition 1.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x11, 0x10]));
    }

    #[test]
    fn vp8_short_descriptor_and_truncated_input() {
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x00]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        // STAP-A with SPS inside.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]
        ));
        // FU-A start of IDR, and its continuation.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
        // Truncated STAP-A.
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0x00]));
    }

    #[test]
    fn throttle_sends_first_then_defers_within_interval() {
        let t0 = Instant::now();
        let mut th = KeyframeThrottle::default();
        assert!(th.request(t0));
        // Ten joins within the same second produce no immediate request...
        for i in 1..10 {
            assert!(!th.request(t0 + Duration::from_millis(i * 50)));
        }
        // ...but exactly one deferred request when the interval ends.
        assert_eq!(th.poll_timeout(), Some(t0 + KEYFRAME_REQUEST_INTERVAL));
        assert!(!th.handle_timeout(t0 + Duration::from_millis(900)));
        assert!(th.handle_timeout(t0 + KEYFRAME_REQUEST_INTERVAL));
        assert_eq!(th.poll_timeout(), None);
        assert!(!th.handle_timeout(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn keyframe_arrival_cancels_deferred_request() {
        let t0 = Instant::now();
        let mut th = KeyframeThrottle::default();
        assert!(th.request(t0));
        assert!(!th.request(t0 + Duration::from_millis(10)));
        th.keyframe_received();
        assert_eq!(th.poll_timeout(), None);
    }

    #[test]
    fn at_most_one_request_per_interval_under_constant_joins() {
        let t0 = Instant::now();
        let mut th = KeyframeThrottle::default();
        let mut sent = 0;
        for ms in (0..10_000).step_by(20) {
            let now = t0 + Duration::from_millis(ms);
            if th.request(now) {
                sent += 1;
            }
            if th.handle_timeout(now) {
                sent += 1;
            }
        }
        assert!((9..=11).contains(&sent), "sent {sent} requests in 10 s");
    }
}

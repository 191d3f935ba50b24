//! Loss recovery: how much each connection keeps for retransmission.
//!
//! What str0m does in RTP mode, and what the engine relies on:
//! - On a publisher connection, str0m NACKs every incoming stream whose
//!   payload type has an RTX partner (VP8 and H.264 here) and turns the RTX
//!   answers back into the original packets, which `Sfu::forward` sends on
//!   late: the forwarder numbers them into the gap they left.
//! - On a subscriber connection, video is written `nackable`, so str0m keeps
//!   each packet in the stream's RTX history and answers the subscriber's
//!   NACKs from it with RTX. The history is bounded twice: by
//!   [`VIDEO_HISTORY_PACKETS`] here and by str0m's 3 s age limit.
//! - What cannot be repaired (too old, or lost upstream for good) makes the
//!   browser send a PLI; str0m surfaces it as `Event::KeyframeRequest` and
//!   the engine asks the publisher for a keyframe, throttled per layer.
//! - Audio is never retransmitted: a resent Opus frame would come too late
//!   for the jitter buffer. Opus in-band FEC (`useinbandfec=1`, which str0m
//!   puts in its Opus format both ways) lets the receiver rebuild a lost
//!   frame from the next one.

use str0m::RtcConfig;

/// Video packets kept per subscriber stream to answer NACKs: about 2 s at
/// 2 Mbit/s, several RTTs of even a slow link, and more than the largest
/// keyframe. The packets share their payloads with the publisher's, so
/// each entry costs a header and a reference, not a copy.
pub const VIDEO_HISTORY_PACKETS: usize = 512;

/// Audio send buffer per stream. Audio is not retransmitted, so nothing is
/// kept for NACKs; this only bounds what waits between a write and the
/// next poll.
pub const AUDIO_SEND_BUFFER: usize = 64;

/// The recovery part of every connection's configuration.
pub(crate) fn configure(config: RtcConfig) -> RtcConfig {
    config
        .set_send_buffer_video(VIDEO_HISTORY_PACKETS)
        .set_send_buffer_audio(AUDIO_SEND_BUFFER)
}

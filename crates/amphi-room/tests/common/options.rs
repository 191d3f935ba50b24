//! Participants shared by the engine tests and `benches/forward.rs`.

use std::time::Duration;

use amphi_client::{ClientOptions, VideoShape};

/// A teacher's camera as the allocation counts measure it: 720p at 30
/// frames of five 1,200-byte packets, a 30-packet keyframe every 3 s, and
/// audio.
pub fn publisher_720p() -> ClientOptions {
    ClientOptions {
        video: VideoShape {
            width: 1280,
            height: 720,
            packets_per_frame: 5,
            packet_size: 1_200,
        },
        keyframe_packets: Some(30),
        keyframe_interval: Duration::from_secs(3),
        ping_interval: None,
        ..ClientOptions::default()
    }
}

/// A student who only listens, and sends no pings (which would only add
/// signalling to what the counts and timings measure).
pub fn listener() -> ClientOptions {
    ClientOptions {
        ping_interval: None,
        ..ClientOptions::subscriber_only()
    }
}

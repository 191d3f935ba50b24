//! Participants shared by the engine tests and `benches/forward.rs`.

use std::time::Duration;

use amphi_client::{ClientOptions, SimulcastEncoding, VideoShape};

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

/// Three simulcast encodings as the web client sends them, lowest first:
/// packets of 500, 900 and 1,100 bytes tell the layers apart at the
/// receiver.
pub fn three_layers() -> Vec<SimulcastEncoding> {
    vec![
        SimulcastEncoding::new("q", (320, 180), 1, 500, 4),
        SimulcastEncoding::new("h", (640, 360), 2, 900, 8),
        SimulcastEncoding::new("f", (1280, 720), 4, 1_100, 16),
    ]
}

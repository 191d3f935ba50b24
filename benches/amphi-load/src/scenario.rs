//! The standard scenarios and the traffic each participant sends.

use std::time::Duration;

use amphi_client::{ClientOptions, SimulcastEncoding, VideoShape};

/// Payload bytes per video RTP packet: what browsers send (they keep
/// packets under ~1,200 bytes so SRTP and tunnels fit the MTU).
pub const VIDEO_PACKET_BYTES: usize = 1_200;
/// Packets of a frame between keyframes: 30 fps × 5 = 150 packets/s.
pub const VIDEO_PACKETS_PER_FRAME: usize = 5;
/// Packets of a keyframe (~36 KB, a 720p keyframe at this bitrate).
pub const KEYFRAME_PACKETS: usize = 30;
/// A keyframe every 3 s, as browsers do without loss; PLIs add more.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);
pub const VIDEO_FPS: u32 = 30;
/// Publishers pace their video as Chrome does: at 2.5 times its bitrate, so
/// a keyframe takes ~70 ms to leave instead of arriving as one burst.
pub const VIDEO_PACING: f64 = 2.5;
/// Opus at ~32 kbit/s: 80 bytes every 20 ms.
pub const AUDIO_PACKET_BYTES: usize = 80;
/// Packets per second of one 720p stream as defined by the issue (1.5 Mbit/s
/// of 1,200-byte packets): the unit of `streams_per_core`.
pub const PACKETS_PER_STREAM: f64 = 156.0;

/// The web client's three encodings (web-client/src/session.ts): `q`
/// 320x180 at about 150 kbit/s, `h` 640x360 at 500, `f` 1280x720 at 1.5
/// Mbit/s (the single stream's shape); keyframes 4, 5 and 6 times a frame.
pub fn simulcast_layers() -> Vec<SimulcastEncoding> {
    vec![
        SimulcastEncoding::new("q", (320, 180), 1, 625, 4),
        SimulcastEncoding::new("h", (640, 360), 2, 1_040, 10),
        SimulcastEncoding::new(
            "f",
            (1280, 720),
            VIDEO_PACKETS_PER_FRAME,
            VIDEO_PACKET_BYTES,
            KEYFRAME_PACKETS,
        ),
    ]
}

/// Video packets per second one publisher sends (without keyframe requests).
#[cfg(test)]
pub fn video_packets_per_second() -> f64 {
    let frames_per_key = f64::from(VIDEO_FPS) * KEYFRAME_INTERVAL.as_secs_f64();
    let per_period =
        (frames_per_key - 1.0) * VIDEO_PACKETS_PER_FRAME as f64 + KEYFRAME_PACKETS as f64;
    per_period / KEYFRAME_INTERVAL.as_secs_f64()
}

/// What kind of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One teacher (audio + video) and listeners.
    Lecture,
    /// Everyone publishes audio + video and receives everyone else.
    Meeting,
    /// Audio-only speakers and listeners.
    Audio,
}

/// A load: who publishes what, how many only listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    pub publishers: usize,
    /// Participants that publish nothing.
    pub listeners: usize,
    pub audio: bool,
    pub video: bool,
    /// Cameras go out as three simulcast encodings ([`simulcast_layers`]),
    /// as the web client sends them, instead of one 720p stream.
    pub simulcast: bool,
}

/// Speakers of an `audio-N` scenario.
pub const AUDIO_SPEAKERS: usize = 10;

impl Scenario {
    /// `lecture-N` (1 publisher → N listeners), `meeting-N` (N publish and
    /// subscribe), `audio-N` (10 audio-only speakers → N listeners).
    pub fn parse(s: &str) -> Result<Scenario, String> {
        let (kind, n) = s
            .rsplit_once('-')
            .ok_or_else(|| format!("{s:?}: expected lecture-N, meeting-N or audio-N"))?;
        let n: usize = n
            .parse()
            .map_err(|_| format!("{s:?}: {n:?} is not a number"))?;
        let sc = match kind {
            "lecture" => Scenario {
                name: s.into(),
                kind: Kind::Lecture,
                publishers: 1,
                listeners: n,
                audio: true,
                video: true,
                simulcast: false,
            },
            "meeting" => Scenario {
                name: s.into(),
                kind: Kind::Meeting,
                publishers: n,
                listeners: 0,
                audio: true,
                video: true,
                simulcast: false,
            },
            "audio" => Scenario {
                name: s.into(),
                kind: Kind::Audio,
                publishers: AUDIO_SPEAKERS,
                listeners: n,
                audio: true,
                video: false,
                simulcast: false,
            },
            _ => return Err(format!("{s:?}: unknown scenario kind {kind:?}")),
        };
        if sc.publishers + sc.listeners < 2 {
            return Err(format!("{s:?}: needs at least two participants"));
        }
        Ok(sc)
    }

    pub fn participants(&self) -> usize {
        self.publishers + self.listeners
    }

    /// Participants that receive media: everyone subscribes to everyone
    /// else, so all of them as soon as there are two publishers.
    pub fn subscribers(&self) -> usize {
        if self.publishers >= 2 {
            self.participants()
        } else {
            self.listeners
        }
    }

    /// Tracks each publisher sends.
    pub fn tracks_per_publisher(&self) -> usize {
        usize::from(self.audio) + usize::from(self.video)
    }

    /// Streams (tracks) participant `idx` should end up receiving.
    pub fn expected_streams(&self, idx: usize) -> usize {
        let other_publishers = self.publishers - usize::from(idx < self.publishers);
        other_publishers * self.tracks_per_publisher()
    }

    /// Options of participant `idx` (publishers come first).
    pub fn options(&self, idx: usize) -> ClientOptions {
        let publishes = idx < self.publishers;
        ClientOptions {
            client_name: concat!("amphi-load/", env!("CARGO_PKG_VERSION")).into(),
            publish_audio: publishes && self.audio,
            publish_video: publishes && self.video,
            audio_packet_size: AUDIO_PACKET_BYTES,
            video: VideoShape {
                width: 1280,
                height: 720,
                packets_per_frame: VIDEO_PACKETS_PER_FRAME,
                packet_size: VIDEO_PACKET_BYTES,
            },
            keyframe_packets: Some(KEYFRAME_PACKETS),
            simulcast: if self.simulcast {
                simulcast_layers()
            } else {
                Vec::new()
            },
            video_pacing: Some(VIDEO_PACING),
            video_fps: VIDEO_FPS,
            keyframe_interval: KEYFRAME_INTERVAL,
            // Signalling pings are background noise; one every 10 s as a
            // browser tab would.
            ping_interval: Some(Duration::from_secs(10)),
            ..ClientOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse() {
        let l = Scenario::parse("lecture-500").unwrap();
        assert_eq!((l.publishers, l.listeners, l.subscribers()), (1, 500, 500));
        assert_eq!(l.expected_streams(0), 0);
        assert_eq!(l.expected_streams(7), 2);
        let m = Scenario::parse("meeting-10").unwrap();
        assert_eq!((m.publishers, m.subscribers()), (10, 10));
        assert_eq!(m.expected_streams(3), 18);
        let a = Scenario::parse("audio-500").unwrap();
        assert_eq!((a.publishers, a.listeners, a.subscribers()), (10, 500, 510));
        assert_eq!(a.expected_streams(2), 9);
        assert_eq!(a.expected_streams(10), 10);
        for bad in ["lecture", "lecture-x", "party-3", "meeting-1"] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn video_is_about_1_5_mbit() {
        let pps = video_packets_per_second();
        assert!((150.0..165.0).contains(&pps), "{pps}");
        let mbit = pps * VIDEO_PACKET_BYTES as f64 * 8.0 / 1e6;
        assert!((1.4..1.6).contains(&mbit), "{mbit}");
    }
}

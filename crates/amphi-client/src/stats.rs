//! What a participant saw and did, as plain data that tests assert on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use amphi_protocol::{ErrorCode, LeaveReason, MediaKind, ParticipantInfo, Permissions};

/// Everything the client counted. Cheap to clone (a few small maps).
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// This participant's id, once joined.
    pub id: Option<String>,
    pub room: Option<String>,
    pub permissions: Option<Permissions>,
    /// This participant as the server describes it (from `joined`, then
    /// the echoes of its own `participant_updated`).
    pub me: Option<ParticipantInfo>,
    /// Everyone else in the room, by participant id.
    pub roster: HashMap<String, ParticipantInfo>,
    /// Every `participant_left` received, in order.
    pub left: Vec<(String, LeaveReason)>,
    /// Every `error` received, in order.
    pub errors: Vec<ServerError>,
    /// The `bye` reason, if the server ended the session.
    pub bye: Option<LeaveReason>,
    /// The signalling connection is closed (by either side).
    pub signalling_closed: bool,
    pub pongs: u64,
    /// Round trip of the latest ping/pong on the signalling socket.
    pub last_pong_rtt: Option<Duration>,

    /// ICE+DTLS of the publisher connection is up.
    pub publisher_connected: bool,
    /// ICE+DTLS of the subscriber connection is up.
    pub subscriber_connected: bool,
    pub publish_answers: u64,
    /// Publish offers the server refused (`forbidden`/`sdp_rejected`).
    pub publish_refused: u64,
    pub subscribe_offers: u64,
    /// The server's UDP candidates, from the `a=candidate` lines of the
    /// latest `publish_answer`.
    pub server_media_addrs: Vec<SocketAddr>,
    /// The mids currently mapped by the latest `subscribe_offer`.
    pub subscribed_tracks: usize,

    pub sent_audio: SentCounters,
    pub sent_video: SentCounters,
    /// Keyframe requests (PLI/FIR) the server sent to this publisher.
    pub keyframe_requests: u64,

    /// Media received, by (publishing participant id, kind).
    pub received: HashMap<(String, MediaKind), ReceivedCounters>,
    /// RTP packets on a mid that no `subscribe_offer` mapped.
    pub unmatched_packets: u64,
    /// Datagrams that no connection accepted, or that str0m refused.
    pub rejected_datagrams: u64,
    /// Errors str0m reported on input (non-fatal unless a connection died).
    pub rtc_errors: u64,
    /// Signalling messages from the server that did not parse.
    pub bad_server_messages: u64,
    /// One-way latency of every stamped packet received, from any
    /// publisher (for percentiles: the load generator reads it).
    pub latency: crate::latency::LatencyHistogram,
    /// The same, up to the datagram's arrival in this participant's socket,
    /// for packets whose driver gave an arrival stamp
    /// ([`crate::Participant::handle_datagram_arrived`]).
    pub arrival_latency: crate::latency::LatencyHistogram,
    /// Classroom messages (chat, room state, moderation), in order.
    pub classroom: Vec<amphi_protocol::ServerMessage>,
    /// Everyone's connection quality, as `connection_quality` messages
    /// told it (each lists what changed), and how many messages and
    /// entries were received.
    pub quality: HashMap<String, amphi_protocol::ConnectionQuality>,
    pub quality_updates: u64,
    pub quality_entries: u64,
    /// Every `stats` answer (to `get_stats`), in order.
    pub media_stats: Vec<amphi_protocol::ServerMessage>,
}

impl ClientStats {
    /// Counters for what `participant` sent of `kind`, or zeros.
    pub fn from(&self, participant: &str, kind: MediaKind) -> ReceivedCounters {
        self.received
            .get(&(participant.to_string(), kind))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `participant_left` was received for `participant`.
    pub fn saw_left(&self, participant: &str) -> bool {
        self.left.iter().any(|(p, _)| p == participant)
    }

    /// Whether an `error` with `code` was received.
    pub fn saw_error(&self, code: ErrorCode) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

/// An `error` message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: ErrorCode,
    pub message: String,
    /// The `type` of the client message it answers, when the server says.
    pub request: Option<String>,
}

/// Media sent on one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentCounters {
    pub packets: u64,
    /// RTP payload bytes.
    pub bytes: u64,
    /// Frames and keyframes encoded; with simulcast, each layer's count.
    pub frames: u64,
    pub keyframes: u64,
}

/// Media received from one participant, of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedCounters {
    pub packets: u64,
    /// RTP payload bytes.
    pub bytes: u64,
    /// VP8 keyframes begun (first packet of a keyframe).
    pub keyframes: u64,
    /// Video: whether the very first packet received from this participant
    /// began a keyframe. `None` before the first video packet.
    pub first_packet_was_keyframe: Option<bool>,
    /// Video: subscriber m-lines of this participant whose first packet did
    /// not begin a keyframe (the server promises it always does).
    pub streams_not_starting_with_keyframe: u64,
    /// Sequence numbers skipped (sum of the sizes of all gaps).
    pub seq_gaps: u64,
    /// Packets whose sequence number was not above the highest seen
    /// (duplicates or reordering).
    pub seq_backwards: u64,
    /// Packets whose RTP timestamp went backwards (wrapping compare) from
    /// the previous in-order packet of the same m-line.
    pub ts_backwards: u64,
    /// The longest stretch of media time (RTP timestamps) between two
    /// in-order packets of one m-line, ms: what a viewer sees frozen, or
    /// hears missing, when the server pauses or drops a stream. Frames come
    /// every 33 ms and audio every 20; the start of a stream is not a gap.
    pub longest_gap_ms: u64,
    /// Every SSRC seen, in order of first appearance.
    pub ssrcs: Vec<u32>,
    /// Every RTP payload type seen, in order of first appearance.
    pub payload_types: Vec<u8>,
    /// A mid changed SSRC while mapped to the same track.
    pub ssrc_changes: u64,
    /// Payloads carrying this client library's send stamp.
    pub stamped: u64,
    /// The send stamp of the first stamped payload received: when, on the
    /// sender's clock, what reached this client began.
    pub first_stamp_us: Option<u64>,
    /// Sum and max of one-way latency from send stamps (same clock only).
    pub latency_sum_us: u64,
    pub latency_max_us: u64,
}

impl ReceivedCounters {
    /// Mean one-way latency, from the payloads' send stamps.
    pub fn mean_latency(&self) -> Option<Duration> {
        (self.stamped > 0).then(|| Duration::from_micros(self.latency_sum_us / self.stamped))
    }
}

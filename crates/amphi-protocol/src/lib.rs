//! The signalling protocol between an Amphi client and the server.
//!
//! Every message is one JSON object in one WebSocket text frame, tagged by
//! `"type"`. `docs/protocol.md` is the normative description; this crate is
//! its Rust spelling, shared by the server and by Rust clients (tests, the
//! load generator), so that the two can never disagree on a field name.
//!
//! Each participant has two peer connections, as in LiveKit: on the
//! *publisher* connection the client offers and the server answers; on the
//! *subscriber* connection the server offers and the client answers. Each
//! side only ever makes offers on its own connection, so there is no glare.

use serde::{Deserialize, Serialize};

mod vocabulary;

pub use vocabulary::{MediaKind, Role, Source};

/// Largest signalling message the server accepts, in bytes. A participant's
/// answer carries one m-line per track it receives, 1 to 2 KiB each: in a
/// meeting of 25 with cameras on that is 49 m-lines and about 94 KiB, and
/// a room at the default cap (200, all publishing camera and microphone)
/// would need some 800 KiB. Larger is refused with `too_large`.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Path of the signalling WebSocket.
pub const RTC_PATH: &str = "/rtc";

/// Messages from the client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on every connection. The token is never in the URL.
    Join {
        token: String,
        /// The room the client means to enter (from its URL). When present it
        /// must equal the token's `room`, so a link for one room cannot be
        /// used with another room's token by mistake.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Free-form client name and version, for the server's logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// An offer on the publisher connection. `tracks` says what each sending
    /// m-line carries; m-lines not listed are not forwarded.
    PublishOffer {
        sdp: String,
        tracks: Vec<PublishTrack>,
    },
    /// The answer to the server's latest `subscribe_offer`.
    SubscribeAnswer {
        sdp: String,
    },
    /// The client muted or unmuted one of its sources.
    Mute {
        source: Source,
        muted: bool,
    },
    /// How the client shows one track it receives, so the server sends no
    /// larger video than the tile needs, and none for a hidden tile. Sent
    /// when a tile appears, is resized or hidden. `width`/`height` are in
    /// device pixels. Before the first one a track gets the best layer the
    /// bandwidth allows.
    TrackSettings {
        track: String,
        visible: bool,
        #[serde(default)]
        width: u32,
        #[serde(default)]
        height: u32,
    },
    /// Keep-alive; the server answers `pong`.
    Ping {},
    /// The participant leaves; the server closes the connection.
    Leave {},
    /// Asks for one's own media statistics, for debugging; answered by
    /// `stats`. Answered from figures the server keeps anyway, at most a few
    /// times per second (`rate_limited` beyond).
    GetStats {},

    // ----- participation (everyone, as the grants allow) -----
    /// A chat message to the room (the sender's group during breakouts), or
    /// privately to one participant (`to`: students may only write
    /// privately to moderators). Relayed, never stored.
    Chat {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    RaiseHand {},
    /// Lowers one's own hand, or (moderators) someone else's.
    LowerHand {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant: Option<String>,
    },

    // ----- moderation (the `moderate` grant) -----
    /// Stops forwarding one source of a participant and asks them to mute it.
    MuteParticipant {
        participant: String,
        source: Source,
    },
    /// Mutes every microphone but the moderators'.
    MuteAll {},
    /// Asks a participant to unmute; only they can switch it on.
    RequestUnmute {
        participant: String,
        source: Source,
    },
    /// In ask-to-speak mode, lets a student's microphone through.
    GiveFloor {
        participant: String,
    },
    TakeFloor {
        participant: String,
    },
    /// Changes a participant's role for the rest of their session.
    Promote {
        participant: String,
        to: Promotion,
    },
    /// Changes room settings; absent fields stay as they are.
    UpdateRoom {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_room: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask_to_speak: Option<bool>,
    },
    /// Lets someone in from the waiting room.
    Admit {
        participant: String,
    },
    /// Turns someone away from the waiting room.
    Deny {
        participant: String,
    },
    /// Removes a participant; their identity cannot come back to this room.
    Remove {
        participant: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Ends the meeting for everyone.
    EndRoom {},
    /// Splits the room into `groups` breakout groups. `assignments` maps
    /// participant ids to a group index (0-based); without it, everyone who
    /// does not moderate is spread at random. Moderators stay in the main
    /// room unless assigned.
    BreakoutStart {
        groups: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignments: Option<std::collections::BTreeMap<String, u32>>,
    },
    /// Moves a participant (a moderator may move themselves, to visit) to a
    /// group, or back to the main room with `group: null`.
    BreakoutMove {
        participant: String,
        group: Option<String>,
    },
    /// A message to every group at once.
    BreakoutBroadcast {
        text: String,
    },
    /// Brings everyone back to the main room.
    BreakoutEnd {},
}

/// What a moderator can make of a participant for the rest of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    /// All of a teacher's rights.
    CoTeacher,
    /// May share their screen and speak without asking.
    Presenter,
    /// Back to what their token gave them.
    Participant,
}

/// One sending m-line of a publisher offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishTrack {
    pub mid: String,
    pub source: Source,
    #[serde(default)]
    pub muted: bool,
}

/// Messages from the server to the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        room: String,
        /// This participant, as the others see it.
        participant: ParticipantInfo,
        /// Everyone else already in the room.
        participants: Vec<ParticipantInfo>,
        /// What this participant may do.
        permissions: Permissions,
        /// Settings, raised hands and breakout groups.
        #[serde(default)]
        room_state: RoomState,
        /// ICE servers for both peer connections (empty: host candidates only).
        ice_servers: Vec<IceServer>,
    },
    /// Someone entered the room.
    ParticipantJoined { participant: ParticipantInfo },
    /// Someone's tracks or mute state changed; the whole record is repeated.
    ParticipantUpdated { participant: ParticipantInfo },
    /// Several records changed at once (mute all, breakout groups): the same
    /// as a `participant_updated` for each, in one message. As one
    /// `participant_updated` per record, a change to everyone in a class of
    /// n was n² messages. The list is shared, not copied, by every member's
    /// message.
    ParticipantsUpdated {
        participants: std::sync::Arc<[ParticipantInfo]>,
    },
    /// Someone left the room.
    ParticipantLeft {
        participant: String,
        reason: LeaveReason,
    },
    /// The answer to the client's `publish_offer`.
    PublishAnswer { sdp: String },
    /// A new offer on the subscriber connection. `tracks` maps every active
    /// m-line of that connection to the participant and track it carries.
    SubscribeOffer {
        sdp: String,
        tracks: Vec<SubscribedTrack>,
    },
    /// The answer to `ping`.
    Pong {},
    /// Something the client sent was refused. Codes `unauthorized` and
    /// `forbidden` on `join` are followed by the server closing the socket.
    Error {
        code: ErrorCode,
        message: String,
        /// The `type` of the client message this answers, when the error
        /// is about one (`publish_offer`, `subscribe_answer`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// The server ends this participant's session and closes the socket.
    Bye {
        reason: LeaveReason,
        /// Free text from a moderator (the reason for a removal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The server is shutting down (SIGTERM): the call goes on, but the
    /// server takes no new rooms and will end this session with
    /// `bye` (`server_shutdown`) when its drain timeout passes. A client may
    /// tell the user, or reconnect elsewhere at a convenient moment.
    Draining {},

    /// The room's settings, raised hands and breakout groups changed.
    RoomUpdated { room: RoomState },
    /// A chat message (never stored by the server).
    Chat { message: ChatMessage },
    /// You are in the waiting room until a moderator admits you.
    Waiting {},
    /// To moderators: who is in the waiting room, oldest first.
    Lobby { waiting: Vec<LobbyEntry> },
    /// A moderator muted one of your sources: the server no longer forwards
    /// it, until you unmute it yourself (`mute` with `muted: false`).
    MuteRequested { source: Source, by: String },
    /// A moderator asks you to unmute; nothing is switched on for you.
    UnmuteRequested { source: Source, by: String },
    /// Dynacast: which layers of one of your video tracks someone needs.
    /// The client stops encoding the inactive ones (`active: false` on the
    /// matching `RTCRtpEncodingParameters`) and starts them again when told.
    /// `rid` is absent for a track sent without simulcast.
    PublishLayers {
        track: String,
        /// The track's source (a participant publishes one track per source).
        source: Source,
        layers: Vec<PublishLayer>,
    },
    /// Your role or rights changed (promotion, floor given or taken).
    PermissionsUpdated {
        role: Role,
        permissions: Permissions,
    },
    /// Who is speaking in your room (or breakout group), from the audio
    /// levels of the microphones the server forwards. The first entry is
    /// the dominant speaker (the one a speaker view shows large); the others
    /// follow, loudest first. Empty: nobody speaks. Sent only when the list
    /// of participants or their order changes; `level` is a snapshot.
    Speakers { speakers: Vec<SpeakerInfo> },
    /// How well members of your room are connected (you included), from
    /// the loss, jitter and round-trip time of their media both ways,
    /// checked every 2 s. The first one after you join lists everyone;
    /// later ones list only whose quality changed and who joined. Merge
    /// each into what you have; drop a participant on `participant_left`.
    ConnectionQuality {
        participants: Vec<ParticipantQuality>,
    },
    /// The answer to `get_stats`: your own connections, per track. Counters
    /// are totals since the stream began; loss, jitter and round-trip time
    /// are the latest reports (absent until one arrived).
    Stats {
        /// Your connection quality: the worse of `uplink` and `downlink`.
        quality: ConnectionQuality,
        /// What the server receives from you.
        uplink: ConnectionQuality,
        /// What you receive from the server.
        downlink: ConnectionQuality,
        /// Your published tracks, as the server receives them.
        publishing: Vec<TrackStats>,
        /// The tracks the server sends you.
        receiving: Vec<TrackStats>,
    },
}

/// Good, fair or poor: what a client shows next to a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionQuality {
    // Worst first, so that `min` is the worse of two.
    Poor,
    Fair,
    Good,
}

/// One participant's connection quality (see `connection_quality`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantQuality {
    pub participant: String,
    pub quality: ConnectionQuality,
}

/// One track's figures in `stats`, in one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackStats {
    /// Who publishes the track.
    pub participant: String,
    pub track: String,
    pub kind: MediaKind,
    pub source: Source,
    /// The simulcast layer, for a publisher's video sent in several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Packets and bytes the server received (`publishing`) or sent
    /// (`receiving`, retransmissions included).
    pub packets: u64,
    pub bytes: u64,
    /// Fraction of packets lost, 0 to 1, in the latest RTCP report interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f32>,
    /// NACKs: sent by the server to you (`publishing`), or by you to the
    /// server (`receiving`).
    pub nacks: u64,
    /// Keyframe requests (PLI), counted the same way.
    pub plis: u64,
}

/// One active speaker (see `speakers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerInfo {
    pub participant: String,
    /// Smoothed loudness, 0.0 (silence) to 1.0 (full scale), linear in dB.
    pub level: f32,
}

/// One encoding of a published video track (see `publish_layers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishLayer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    pub active: bool,
}

/// Room-wide state every participant sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// No new participants (moderators still enter).
    pub locked: bool,
    /// Newcomers who do not moderate wait until admitted.
    pub waiting_room: bool,
    /// Students' microphones only pass when they have the floor.
    pub ask_to_speak: bool,
    /// Participants with a raised hand, in order of raising.
    pub hands: Vec<String>,
    /// Breakout groups while they run (empty: everyone in the main room).
    pub groups: Vec<GroupInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Sender's participant id (absent for the server's own notices).
    pub from: String,
    pub from_name: String,
    pub text: String,
    /// Set on private messages: the recipient's participant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Sent to every breakout group at once.
    #[serde(default)]
    pub broadcast: bool,
    /// Server time, milliseconds since the Unix epoch.
    pub sent_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbyEntry {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

/// A participant as others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Server-assigned id, unique within the server's lifetime.
    pub id: String,
    /// `sub` of the token.
    pub identity: String,
    /// Display name (`name` of the token, or the identity).
    pub name: String,
    pub role: Role,
    pub tracks: Vec<TrackInfo>,
    #[serde(default)]
    pub hand_raised: bool,
    /// The breakout group the participant is in (absent: the main room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// In ask-to-speak mode: whether the participant has the floor.
    #[serde(default)]
    pub floor: bool,
}

/// A published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Server-assigned id, unique within the server's lifetime.
    pub id: String,
    pub kind: MediaKind,
    pub source: Source,
    pub muted: bool,
}

/// One m-line of the subscriber connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribedTrack {
    pub mid: String,
    pub participant: String,
    pub track: String,
    pub kind: MediaKind,
    pub source: Source,
}

/// What the token allows, after the role's defaults and explicit grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub publish: bool,
    pub subscribe: bool,
    pub publish_sources: Vec<Source>,
    pub chat: bool,
    pub moderate: bool,
}

/// An ICE server as `RTCPeerConnection` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Why a participant left, or was made to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The participant sent `leave`.
    Left,
    /// The signalling connection closed without `leave`.
    Disconnected,
    /// Nothing was heard from the participant (signalling or media) in time.
    Timeout,
    /// The same identity joined the same room again; the older session ends.
    Replaced,
    /// The media connection failed (ICE or DTLS).
    MediaFailed,
    /// The server is shutting down.
    ServerShutdown,
    /// A moderator removed the participant.
    Removed,
    /// A moderator turned the participant away from the waiting room.
    Denied,
    /// A moderator ended the meeting for everyone.
    RoomEnded,
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The token is missing, malformed, forged, expired or for another room.
    Unauthorized,
    /// The token is valid but does not grant what was asked.
    Forbidden,
    /// The message is not JSON, not a known type, or has bad fields.
    BadRequest,
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// A message other than `join` arrived before `join`.
    NotJoined,
    /// `join` arrived twice on one connection.
    AlreadyJoined,
    /// The SDP could not be accepted (syntax, codecs, or state).
    SdpRejected,
    /// The room has as many participants as the server allows.
    RoomFull,
    /// The client sends faster than the server allows.
    RateLimited,
    /// The room is locked: only moderators may enter.
    RoomLocked,
    /// The meeting was ended; it opens again when a moderator enters.
    RoomEnded,
    /// The named participant is not in the room.
    NotFound,
    /// The server could not do what was asked; the session may go on.
    Internal,
}

impl ErrorCode {
    /// Whether the server closes the connection after sending this error.
    /// (`forbidden` also closes it when it answers `join`, and only then.)
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::Unauthorized
                | ErrorCode::RoomFull
                | ErrorCode::RoomLocked
                | ErrorCode::RoomEnded
        )
    }
}

/// Why a text frame could not be read as a [`ClientMessage`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is over the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("not a valid message: {0}")]
    Invalid(#[from] serde_json::Error),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) => ErrorCode::TooLarge,
            DecodeError::Invalid(_) => ErrorCode::BadRequest,
        }
    }
}

impl ClientMessage {
    /// Parses one text frame, refusing oversized input before parsing it.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge(text.len()));
        }
        Ok(serde_json::from_str(text)?)
    }

    pub fn encode(&self) -> String {
        // Serializing these plain enums cannot fail: no maps with non-string keys.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerMessage {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            request: None,
        }
    }

    /// An error answering the client message whose `type` is `request`.
    pub fn error_for(request: &str, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            request: Some(request.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_spelled_as_documented() {
        let m = ClientMessage::decode(r#"{"type":"join","token":"abc"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                token: "abc".into(),
                room: None,
                client: None
            }
        );
    }

    #[test]
    fn speakers_is_spelled_as_documented() {
        let m = ServerMessage::Speakers {
            speakers: vec![SpeakerInfo {
                participant: "P4".into(),
                level: 0.75,
            }],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"type":"speakers","speakers":[{"participant":"P4","level":0.75}]}"#
        );
        assert_eq!(ServerMessage::decode(&text).unwrap(), m);
        assert_eq!(
            serde_json::to_string(&ServerMessage::Speakers { speakers: vec![] }).unwrap(),
            r#"{"type":"speakers","speakers":[]}"#
        );
    }

    #[test]
    fn participants_updated_is_spelled_as_documented() {
        let text = r#"{"type":"participants_updated","participants":[{"id":"P4","identity":"carol","name":"Carol","role":"student","tracks":[],"group":"G1"}]}"#;
        let m = ServerMessage::decode(text).unwrap();
        let ServerMessage::ParticipantsUpdated { participants } = &m else {
            panic!("{m:?}");
        };
        assert_eq!(participants.len(), 1);
        assert_eq!(participants[0].group.as_deref(), Some("G1"));
        let again = serde_json::to_string(&m).unwrap();
        assert_eq!(ServerMessage::decode(&again).unwrap(), m);
        assert!(again.starts_with(r#"{"type":"participants_updated","participants":[{"id":"P4""#));
    }

    #[test]
    fn quality_and_stats_are_spelled_as_documented() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"get_stats"}"#).unwrap(),
            ClientMessage::GetStats {}
        );
        let m = ServerMessage::ConnectionQuality {
            participants: vec![ParticipantQuality {
                participant: "P4".into(),
                quality: ConnectionQuality::Fair,
            }],
        };
        let text = m.encode();
        assert_eq!(
            text,
            r#"{"type":"connection_quality","participants":[{"participant":"P4","quality":"fair"}]}"#
        );
        assert_eq!(ServerMessage::decode(&text).unwrap(), m);
        let stats = ServerMessage::Stats {
            quality: ConnectionQuality::Poor,
            uplink: ConnectionQuality::Good,
            downlink: ConnectionQuality::Poor,
            publishing: vec![],
            receiving: vec![TrackStats {
                participant: "P1".into(),
                track: "T2".into(),
                kind: MediaKind::Video,
                source: Source::Camera,
                rid: None,
                packets: 10,
                bytes: 9000,
                loss: Some(0.25),
                jitter_ms: None,
                rtt_ms: Some(12.5),
                nacks: 3,
                plis: 1,
            }],
        };
        let text = stats.encode();
        assert_eq!(
            text,
            r#"{"type":"stats","quality":"poor","uplink":"good","downlink":"poor","publishing":[],"receiving":[{"participant":"P1","track":"T2","kind":"video","source":"camera","packets":10,"bytes":9000,"loss":0.25,"rtt_ms":12.5,"nacks":3,"plis":1}]}"#
        );
        assert_eq!(ServerMessage::decode(&text).unwrap(), stats);
        assert!(ConnectionQuality::Poor < ConnectionQuality::Good);
    }

    #[test]
    fn empty_bodied_messages_accept_bare_type() {
        assert_eq!(
            ClientMessage::decode(r#"{"type":"leave"}"#).unwrap(),
            ClientMessage::Leave {}
        );
        assert_eq!(
            ClientMessage::decode(r#"{"type":"ping"}"#).unwrap(),
            ClientMessage::Ping {}
        );
    }

    #[test]
    fn unknown_type_and_garbage_are_bad_requests() {
        for text in ["not json", r#"{"type":"dance"}"#, "[]", r#"{"token":"x"}"#] {
            let err = ClientMessage::decode(text).unwrap_err();
            assert_eq!(err.code(), ErrorCode::BadRequest, "{text}");
        }
    }

    #[test]
    fn oversized_message_is_refused_before_parsing() {
        let text = format!(
            r#"{{"type":"join","token":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(
            ClientMessage::decode(&text).unwrap_err().code(),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn server_error_round_trips() {
        let m = ServerMessage::error(ErrorCode::Unauthorized, "token expired");
        let text = m.encode();
        assert_eq!(
            text,
            r#"{"type":"error","code":"unauthorized","message":"token expired"}"#
        );
        assert_eq!(ServerMessage::decode(&text).unwrap(), m);
    }

    /// A meeting of 25 with cameras on: the answer to a subscribe offer has
    /// 49 m-lines (str0m writes about 1.9 KiB each, a browser 1 to 1.5). At
    /// 64 KiB nobody in such a meeting could receive anything.
    #[test]
    fn an_answer_for_a_meeting_of_25_fits() {
        let m_line = format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n{}",
            "a=rtcp-fb:96 nack\r\n".repeat(100)
        );
        let sdp = format!("v=0\r\n{}", m_line.repeat(49));
        assert!(sdp.len() > 90 * 1024);
        let text = ClientMessage::SubscribeAnswer { sdp: sdp.clone() }.encode();
        assert_eq!(
            ClientMessage::decode(&text).unwrap(),
            ClientMessage::SubscribeAnswer { sdp }
        );
    }

    #[test]
    fn publish_offer_carries_sources() {
        let m = ClientMessage::decode(
            r#"{"type":"publish_offer","sdp":"v=0","tracks":[{"mid":"0","source":"microphone"},{"mid":"1","source":"camera","muted":true}]}"#,
        )
        .unwrap();
        let ClientMessage::PublishOffer { tracks, .. } = m else {
            panic!("wrong variant");
        };
        assert_eq!(tracks[1].source, Source::Camera);
        assert!(tracks[1].muted);
    }
}

//! Typed errors of the client. Nothing received from the network panics: it
//! ends up here or in the counters of [`crate::ClientStats`].

use amphi_protocol::{ErrorCode, LeaveReason};

use crate::stats::ClientStats;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not `http://host:port` (or `ws://host:port`).
    #[error("bad server url {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },

    /// A socket operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// The WebSocket could not be opened or broke.
    #[error("websocket: {0}")]
    WebSocket(Box<tungstenite::Error>),

    /// The server answered with `{"type":"error",…}` where the client could
    /// not go on (during `join`, or a fatal code afterwards).
    #[error("server refused: {code:?}: {message}")]
    Refused { code: ErrorCode, message: String },

    /// The server ended the session with `bye`.
    #[error("server ended the session: {0:?}")]
    Bye(LeaveReason),

    /// The signalling connection closed before the client was done.
    #[error("signalling connection closed by the server")]
    Closed,

    /// The server sent something the protocol does not allow.
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// str0m refused an SDP or failed.
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),

    /// Setting up a connection failed (candidates, sockets).
    #[error("setup: {0}")]
    Setup(String),

    /// An SDP could not be parsed.
    #[error("sdp: {0}")]
    Sdp(String),

    /// Waiting for something timed out.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),

    /// [`crate::TestParticipant::wait_until`]'s condition did not become
    /// true in time (or the participant ended first). Carries the last
    /// statistics, so that a failing test shows what the client saw.
    #[error("condition not met in time; last stats: {0:#?}")]
    WaitTimedOut(Box<ClientStats>),

    /// The driver thread of a [`crate::TestParticipant`] panicked.
    #[error("client thread panicked")]
    ThreadPanicked,
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

impl ClientError {
    /// The server's error code, when this error is the server refusing.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

//! A real Amphi participant in Rust, for integration tests and the load
//! generator.
//!
//! It speaks the public signalling protocol (`docs/protocol.md`) over a real
//! WebSocket and real UDP, with two [str0m] connections in RTP mode: the
//! *publisher* (the client offers, and sends synthetic Opus and VP8) and the
//! *subscriber* (the server offers; received RTP is counted per publishing
//! participant, checked for sequence continuity and for starting at a
//! keyframe).
//!
//! Layers, from the bottom:
//!
//! * [`Participant`]: the sans-IO state machine (both `Rtc`s and the
//!   signalling state). It owns no socket and reads no clock, so a load
//!   generator can drive many from one thread.
//! * [`Client`] / [`connect`]: a blocking driver for one participant, with
//!   its two UDP sockets and its WebSocket multiplexed by `mio`.
//! * [`TestParticipant`]: a `Client` on its own thread, with a handle to
//!   read statistics, wait for a condition and leave.
//! * [`TestServer`]: an `amphi serve` child process for integration tests.
//!
//! Each participant needs **two** local UDP ports, one per connection: the
//! server listens on a single UDP port and tells connections apart by the
//! client's address, so the publisher and subscriber connections of one
//! client (and of different clients) cannot share a local port.
//!
//! [str0m]: https://docs.rs/str0m

mod driver;
mod error;
mod latency;
mod participant;
mod server_process;
mod stats;
pub mod synth;
mod tcp;
mod test_participant;

pub use driver::{Client, RawSignalling, Received, connect, open_websocket, rtc_url};
pub use error::ClientError;
pub use latency::LatencyHistogram;
pub use participant::{
    ClientOptions, CloseReason, Connection, Output, Participant, Phase, SimulcastEncoding,
    sdp_candidates,
};
pub use server_process::TestServer;
pub use stats::{ClientStats, ReceivedCounters, SentCounters, ServerError};
pub use synth::VideoShape;
pub use test_participant::TestParticipant;

/// The protocol crate, so users need not depend on it separately.
pub use amphi_protocol as protocol;
pub use amphi_protocol::{ErrorCode, LeaveReason, MediaKind, Source};
/// The WebSocket library, for raw frames in tests.
pub use tungstenite;

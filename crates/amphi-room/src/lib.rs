//! Amphi's room engine: the selective forwarding unit, with no I/O.
//!
//! Like str0m's `Rtc`, which it is built on, an [`Sfu`] owns no socket,
//! thread or timer. The server feeds it datagrams, signalling commands and
//! the time through [`Sfu::handle_input`], and reads back datagrams to send,
//! messages for participants and the next timeout through
//! [`Sfu::poll_output`]. One media thread owns one `Sfu` and every room in
//! it, so nothing on the packet path takes a lock.
//!
//! Each participant has two str0m connections (see `docs/protocol.md`): the
//! *publisher*, on which the client offers its tracks, and the *subscriber*,
//! on which the engine offers everyone else's. A packet arriving on a
//! publisher connection is handed to the [`forwarder`] of every subscriber of
//! its track, which decides whether it goes out and with which sequence
//! number and timestamp; the payload itself is shared, never copied.

pub mod allocator;
pub mod certificate;
mod config;
pub mod forwarder;
mod ids;
pub mod keyframe;
pub mod layer;
mod participant;
pub mod quality;
pub mod recovery;
mod room;
mod sfu;
pub mod speaker;
mod stats;
mod timers;
mod track;
pub mod vp8;

pub use config::SfuConfig;
pub use ids::{ParticipantId, TrackId};
pub use sfu::{Command, Input, JoinRequest, Output, Sfu, SfuEvent};
pub use stats::SfuStats;

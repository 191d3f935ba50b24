//! Logs: `tracing` to standard error, as text for people or JSON (one
//! object per line) for collectors.
//!
//! Personal data: the server never logs a participant's identity or display
//! name at `info` or above; participants appear by their server-assigned id
//! (`P12`). Room events at `debug` do name the identity, unless
//! `[log] hash_identities = true`, which replaces it (wherever it is logged)
//! by the first 12 hex digits of its SHA-256 (`id:1f2e…`). That is
//! pseudonymisation, not anonymity: whoever knows an identity can compute
//! its hash (`printf %s alice@uni.example | sha256sum`) and so find that
//! person's lines, which is what an operator answering a complaint needs.
//! Display names are never logged. Webhooks carry real identities: their
//! receiver is the portal that minted the tokens.

use std::fmt;

use amphi_room::SfuEvent;
use sha2::{Digest, Sha256};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Starts logging. `AMPHI_LOG`, when set, overrides `log.level`.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_env("AMPHI_LOG")
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // `try_init`: a second call (tests) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// An identity as logs show it: as is, or hashed.
pub struct Identity<'a>(pub &'a str, pub bool);

impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            let digest = Sha256::digest(self.0.as_bytes());
            f.write_str("id:")?;
            for b in &digest[..6] {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        } else {
            f.write_str(self.0)
        }
    }
}

/// A room event for a `debug` line: never the display name, and the
/// identity hashed when configured.
pub struct EventLog<'a>(pub &'a SfuEvent, pub bool);

impl fmt::Display for EventLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = self.1;
        match self.0 {
            SfuEvent::RoomStarted { room } => write!(f, "room_started room={room}"),
            SfuEvent::RoomEnded { room } => write!(f, "room_ended room={room}"),
            SfuEvent::ParticipantJoined {
                room,
                participant,
                identity,
                role,
                ..
            } => write!(
                f,
                "participant_joined room={room} participant={participant} identity={} role={role:?}",
                Identity(identity, hash)
            ),
            SfuEvent::ParticipantLeft {
                room,
                participant,
                identity,
                reason,
            } => write!(
                f,
                "participant_left room={room} participant={participant} identity={} reason={reason:?}",
                Identity(identity, hash)
            ),
            #[allow(unreachable_patterns)]
            _ => f.write_str("other room event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_identity_hides_the_identity_and_is_stable() {
        let a = Identity("alice@uni.example", true).to_string();
        assert!(!a.contains("alice"));
        assert_eq!(a, Identity("alice@uni.example", true).to_string());
        assert_eq!(a.len(), "id:".len() + 12);
        // The documented way to find someone's lines:
        // printf %s alice@uni.example | sha256sum | cut -c1-12
        assert_eq!(a, "id:4078d4c0f580");
        assert_eq!(Identity("alice", false).to_string(), "alice");
    }
}

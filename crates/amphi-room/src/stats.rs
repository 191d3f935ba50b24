use std::collections::HashMap;

use str0m::media::Mid;
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use crate::ids::ParticipantId;

/// Counters of one engine, for metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct SfuStats {
    /// Datagrams no connection would take (garbage, or from strangers).
    pub unroutable_datagrams: u64,
    /// Datagrams a connection took but could not use.
    pub rejected_datagrams: u64,
    pub datagrams_out: u64,
    /// Times a str0m connection was driven by a timeout: the engine's main
    /// cost per packet besides encryption (see `Sfu::drain`).
    pub connection_timeouts: u64,
    pub rtp_packets_in: u64,
    pub rtp_packets_out: u64,
    /// Packets not forwarded because a moderator muted the source or the
    /// participant does not have the floor.
    pub rtp_packets_held: u64,
    pub keyframe_requests: u64,
    /// Subscribers moved to another simulcast layer (at a keyframe).
    pub layer_switches: u64,
    /// Times a subscriber's video track started shedding frames because its
    /// connection's send queue backed up (`sfu/backlog.rs`).
    pub congestion_events: u64,
    /// PLIs subscribers sent us (from str0m's per-stream statistics, so
    /// up to a second late).
    pub plis_received: u64,
    /// NACKs we sent to publishers.
    pub nacks_sent: u64,
    /// NACKs subscribers sent us.
    pub nacks_received: u64,
    /// Packets subscribers report lost (RTCP receiver reports).
    pub packets_lost_downstream: u64,
    /// str0m reports cumulative counts per stream; the last ones seen, to
    /// add only what is new: (nacks, plis, lost).
    last: HashMap<(ParticipantId, bool, Mid), (u64, u64, u64)>,
}

impl SfuStats {
    /// A publisher stream's statistics (str0m's `MediaIngressStats`).
    pub(crate) fn ingress(&mut self, pid: ParticipantId, s: &MediaIngressStats) {
        let last = self.last.entry((pid, false, s.mid)).or_default();
        self.nacks_sent += s.nacks.saturating_sub(last.0);
        *last = (s.nacks.max(last.0), 0, 0);
    }

    /// A subscriber stream's statistics (str0m's `MediaEgressStats`).
    pub(crate) fn egress(&mut self, pid: ParticipantId, s: &MediaEgressStats) {
        let lost = s.remote.as_ref().map_or(0, |r| r.packets_lost);
        let last = self.last.entry((pid, true, s.mid)).or_default();
        self.nacks_received += s.nacks.saturating_sub(last.0);
        self.plis_received += s.plis.saturating_sub(last.1);
        self.packets_lost_downstream += lost.saturating_sub(last.2);
        *last = (s.nacks.max(last.0), s.plis.max(last.1), lost.max(last.2));
    }

    /// The participant left: its streams' counts are settled.
    pub(crate) fn forget(&mut self, pid: ParticipantId) {
        self.last.retain(|(p, _, _), _| *p != pid);
    }
}

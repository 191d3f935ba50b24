//! Connection quality and per-participant statistics: the `impl Sfu` part.
//!
//! str0m reports every stream once a second (`Event::MediaIngressStats`
//! for what a publisher sends us, `Event::MediaEgressStats`, from the
//! receiver reports, for what a subscriber gets). Those reports feed two
//! [`Scorer`]s per participant, uplink and downlink; every
//! [`QUALITY_PERIOD`] both are evaluated and everyone whose view of their
//! room changed gets `connection_quality`. The latest report of each stream
//! is kept so that `get_stats` is answered without asking str0m anything.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amphi_protocol::{
    ConnectionQuality, ErrorCode, MediaKind, ParticipantQuality, ServerMessage, TrackStats,
};
use str0m::media::{Mid, Rid};
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use super::{Output, Sfu, error_for};
use crate::ids::{IdMap, ParticipantId};
use crate::participant::{DownState, Participant, Pc};
use crate::quality::{Bandwidth, Sample, Scorer, jitter_ms};

/// How often qualities are evaluated (and changes sent).
pub(super) const QUALITY_PERIOD: Duration = Duration::from_secs(2);

/// `get_stats` allowance: a burst, then this many per second.
const STATS_BURST: f64 = 3.0;
const STATS_PER_SECOND: f64 = 1.0;

const GET_STATS: &str = "get_stats";

/// RTP clock rates, to turn RTCP jitter into time: Opus is always 48 kHz,
/// video codecs 90 kHz.
const AUDIO_CLOCK: u32 = 48_000;
const VIDEO_CLOCK: u32 = 90_000;

#[derive(Debug, Default)]
pub(super) struct QualityMonitor {
    peers: HashMap<ParticipantId, PeerQuality>,
    /// Per room, each member's quality as the room was last told it. A
    /// member is told the whole list once and then only what changes: a
    /// list per member, resent whole at every change, made a lecture of
    /// 500 cost 250,000 entries per change and about 70 KiB per subscriber
    /// (docs/benchmarks.md, step 23).
    told: HashMap<String, HashMap<ParticipantId, ConnectionQuality>>,
    /// The loss each subscriber stream's source had upstream, kept between
    /// evaluations so that a warm evaluation allocates nothing.
    upstream: HashMap<(ParticipantId, Mid), f32>,
    /// When qualities are next evaluated; `None`: at the next timeout.
    next_tick: Option<Instant>,
}

#[derive(Debug, Default)]
struct PeerQuality {
    /// What the server receives from them.
    uplink: Scorer,
    /// What they receive from the server.
    downlink: Scorer,
    /// The worse of the two, as of the last evaluation.
    quality: Option<ConnectionQuality>,
    /// The latest report of each stream.
    streams: HashMap<(Pc, Mid, Option<Rid>), StreamRecord>,
    /// Downlink reports not scored yet: (subscriber m-line, sample).
    pending_down: Vec<(Mid, Sample)>,
    /// Whether they have been sent their room's whole list.
    told_all: bool,
    /// `get_stats` token bucket and when it was last topped up.
    stats_allowance: Option<(f64, Instant)>,
}

impl PeerQuality {
    fn quality(&self) -> ConnectionQuality {
        self.quality
            .unwrap_or_else(|| self.uplink.quality().min(self.downlink.quality()))
    }
}

#[derive(Debug, Clone, Copy)]
struct StreamRecord {
    packets: u64,
    bytes: u64,
    nacks: u64,
    plis: u64,
    loss: Option<f32>,
    jitter_ms: Option<f32>,
    rtt_ms: Option<f32>,
    /// Egress: the latest receiver report's highest sequence number and
    /// cumulative loss, to measure loss between two reports.
    reported: Option<(u64, u64)>,
    /// The loss the network caused, before recovery (see `loss_estimate`).
    estimate: Option<f32>,
    /// Ingress: `estimate` of the last few reports, newest first.
    /// Receiver reports describe a second or two back, so a subscriber's
    /// loss is compared with what its source lost over that time.
    recent: [f32; RECENT_REPORTS],
}

/// Reports `StreamRecord::recent` spans (one a second).
const RECENT_REPORTS: usize = 3;

/// How much the network lost, as a fraction of `packets`: the larger of
/// what stayed lost (`residual`, from RTCP reports) and what had to be asked
/// for again (NACKs). On a short round trip retransmission repairs nearly
/// everything before the next report, so reports alone would call a link
/// losing a quarter of its packets clean; each NACK names a loss as it is
/// noticed. Retried NACKs make this an overestimate, batched ones an
/// underestimate; both stay within the coarse steps of the indicator.
fn loss_estimate(residual: Option<f32>, nacks: u64, packets: u64) -> Option<f32> {
    let asked = (packets > 0).then(|| (nacks as f32 / packets as f32).min(1.0));
    match (residual.filter(|l| l.is_finite()), asked) {
        (Some(r), Some(a)) => Some(r.max(a)),
        (r, a) => r.or(a),
    }
}

fn millis(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

impl Sfu {
    /// A publisher stream's report: the participant's uplink.
    pub(super) fn quality_ingress(&mut self, pid: ParticipantId, s: &MediaIngressStats) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let kind = p.publisher.conn.rtc.media(s.mid).map(|m| m.kind());
        let clock = clock_rate(kind);
        let peer = self.quality.peers.entry(pid).or_default();
        let key = (Pc::Publisher, s.mid, s.rid);
        let before = peer.streams.get(&key).copied();
        let packets = s.packets.saturating_sub(before.map_or(0, |b| b.packets));
        let nacks = s.nacks.saturating_sub(before.map_or(0, |b| b.nacks));
        // str0m repeats the figure of our latest receiver report until the
        // next one (every 5 s for audio): a repeat is old news, and would
        // keep a loss that ended on the indicator for seconds.
        let fresh = s.loss.filter(|l| before.is_none_or(|b| b.loss != Some(*l)));
        let record = StreamRecord {
            packets: s.packets,
            bytes: s.bytes,
            nacks: s.nacks,
            plis: s.plis,
            loss: s.loss,
            jitter_ms: jitter_ms(s.jitter, clock),
            rtt_ms: s.rtt.map(millis),
            reported: None,
            estimate: loss_estimate(fresh, nacks, packets),
            recent: [0.0; RECENT_REPORTS],
        };
        let mut record = record;
        record.recent = before.map_or([0.0; RECENT_REPORTS], |b| b.recent);
        record.recent.rotate_right(1);
        record.recent[0] = record.estimate.unwrap_or(0.0);
        peer.streams.insert(key, record);
        // A stream that sent nothing (a paused simulcast layer, a stopped
        // track) only repeats old figures.
        if packets == 0 {
            return;
        }
        peer.uplink.add(Sample {
            packets,
            loss: record.estimate,
            jitter_ms: record.jitter_ms.filter(|_| scores_jitter(kind)),
            rtt_ms: record.rtt_ms,
        });
    }

    /// A subscriber stream's report (from their receiver reports): the
    /// participant's downlink.
    pub(super) fn quality_egress(&mut self, pid: ParticipantId, s: &MediaEgressStats) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let kind = p.subscriber.conn.rtc.media(s.mid).map(|m| m.kind());
        let clock = clock_rate(kind);
        let peer = self.quality.peers.entry(pid).or_default();
        let key = (Pc::Subscriber, s.mid, s.rid);
        let before = peer.streams.get(&key).copied();
        let reported = s
            .remote
            .as_ref()
            .map(|r| (*r.maximum_sequence_number, r.packets_lost));
        // Loss between the previous receiver report and this one, from
        // their cumulative counts: str0m's own figure needs two reports
        // within one statistics interval.
        let loss = match (before.and_then(|b| b.reported), reported) {
            (Some((seq0, lost0)), Some((seq1, lost1))) if seq1 > seq0 => {
                let lost = lost1.saturating_sub(lost0) as f32;
                Some((lost / (seq1 - seq0) as f32).min(1.0))
            }
            _ => s.loss,
        };
        let packets = s.packets.saturating_sub(before.map_or(0, |b| b.packets));
        let nacks = s.nacks.saturating_sub(before.map_or(0, |b| b.nacks));
        let estimate = loss_estimate(loss, nacks, packets);
        let record = StreamRecord {
            packets: s.packets,
            bytes: s.bytes,
            nacks: s.nacks,
            plis: s.plis,
            // No new receiver report leaves `loss` empty; the last one still
            // describes the stream.
            loss: loss.or(before.and_then(|b| b.loss)),
            jitter_ms: s
                .remote
                .as_ref()
                .and_then(|r| jitter_ms(r.jitter, clock))
                .or(before.and_then(|b| b.jitter_ms)),
            rtt_ms: s.rtt.map(millis).or(before.and_then(|b| b.rtt_ms)),
            reported: reported.or(before.and_then(|b| b.reported)),
            estimate,
            recent: [0.0; RECENT_REPORTS],
        };
        peer.streams.insert(key, record);
        if packets == 0 {
            return;
        }
        // Scored at the next evaluation, when the source's own reports for
        // the same time have arrived too.
        peer.pending_down.push((
            s.mid,
            Sample {
                packets,
                // Only what this report says counts for this period.
                loss: estimate,
                jitter_ms: s
                    .remote
                    .as_ref()
                    .and_then(|r| jitter_ms(r.jitter, clock))
                    .filter(|_| scores_jitter(kind)),
                rtt_ms: s.rtt.map(millis),
            },
        ));
    }

    /// When qualities are next due, if anyone is there to score.
    pub(super) fn quality_deadline(&self) -> Option<Instant> {
        if self.participants.is_empty() {
            return None;
        }
        Some(self.quality.next_tick.unwrap_or(self.now))
    }

    /// Every [`QUALITY_PERIOD`]: scores everyone, and tells each member of a
    /// room the qualities that changed since the room was last told (a
    /// newcomer: all of them).
    pub(super) fn quality_timeout(&mut self, now: Instant) {
        if self.quality.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.quality.next_tick = Some(now + QUALITY_PERIOD);
        let monitor = &mut self.quality;
        monitor
            .peers
            .retain(|id, _| self.participants.contains_key(id));
        // The loss each subscriber stream's source already had upstream: the
        // forwarded stream has the same holes, which are not the
        // subscriber's fault.
        let upstream = &mut monitor.upstream;
        upstream.clear();
        for (id, peer) in &monitor.peers {
            for (mid, _) in &peer.pending_down {
                if let Some(loss) = upstream_loss(&self.participants, &monitor.peers, *id, *mid) {
                    upstream.insert((*id, *mid), loss);
                }
            }
        }
        for (id, p) in &self.participants {
            let peer = monitor.peers.entry(*id).or_default();
            for (mid, mut sample) in peer.pending_down.drain(..) {
                let up = upstream.get(&(*id, mid)).copied().unwrap_or(0.0);
                sample.loss = sample.loss.map(|l| (l - up).max(0.0));
                peer.downlink.add(sample);
            }
            // Forget the streams of m-lines that are gone, so that a long
            // session with many comings and goings keeps a bounded map.
            peer.streams.retain(|(pc, mid, _), _| match pc {
                Pc::Publisher => p.publisher.tracks.iter().any(|t| t.mid == *mid),
                Pc::Subscriber => p
                    .subscriber
                    .tracks
                    .iter()
                    .any(|t| t.state == DownState::Open(*mid)),
            });
            peer.uplink
                .set_disconnected(p.publisher.conn.disconnected_since.is_some());
            peer.downlink
                .set_disconnected(p.subscriber.conn.disconnected_since.is_some());
            // Not against what the allocator wants (`Allocation::wanted`):
            // while a subscriber receives little (small tiles, paused
            // video) its connection is application-limited and GCC's
            // estimate stays a few hundred kbit/s on a perfectly good link,
            // which would show "poor" for nothing. Only a starved estimate
            // counts; loss and delay tell the rest.
            peer.downlink
                .set_bandwidth(p.subscriber.estimate.map(|estimate_bps| Bandwidth {
                    estimate_bps,
                    wanted_bps: None,
                }));
            let up = peer.uplink.evaluate();
            let down = peer.downlink.evaluate();
            peer.quality = Some(up.min(down));
        }
        let mut messages = Vec::new();
        monitor.told.retain(|name, _| self.rooms.contains_key(name));
        for (name, room) in &self.rooms {
            // Not `entry`, which would clone the room's name every period.
            if !monitor.told.contains_key(name) {
                monitor.told.insert(name.clone(), HashMap::new());
            }
            let Some(told) = monitor.told.get_mut(name) else {
                continue;
            };
            // Leavers are not listed: `participant_left` says they went.
            told.retain(|id, _| self.participants.get(id).is_some_and(|p| p.room == *name));
            let mut changed = Vec::new();
            for id in &room.members {
                let Some(peer) = monitor.peers.get(id) else {
                    continue;
                };
                let q = peer.quality();
                if told.insert(*id, q) != Some(q) {
                    changed.push(ParticipantQuality {
                        participant: id.to_string(),
                        quality: q,
                    });
                }
            }
            let mut all = None;
            for id in &room.members {
                let Some(peer) = monitor.peers.get_mut(id) else {
                    continue;
                };
                if !peer.told_all {
                    peer.told_all = true;
                    let all = all.get_or_insert_with(|| {
                        room.members
                            .iter()
                            .filter_map(|id| {
                                Some(ParticipantQuality {
                                    participant: id.to_string(),
                                    quality: *told.get(id)?,
                                })
                            })
                            .collect::<Vec<_>>()
                    });
                    messages.push((*id, all.clone()));
                } else if !changed.is_empty() {
                    messages.push((*id, changed.clone()));
                }
            }
        }
        for (participant, participants) in messages {
            self.outputs.push_back(Output::Signal {
                participant,
                message: ServerMessage::ConnectionQuality { participants },
            });
        }
    }

    /// `get_stats`: the asker's own streams, from the latest reports.
    pub(super) fn handle_get_stats(&mut self, now: Instant, pid: ParticipantId) {
        let Some(p) = self.participants.get(&pid) else {
            return;
        };
        let peer = self.quality.peers.entry(pid).or_default();
        let (tokens, at) = peer.stats_allowance.unwrap_or((STATS_BURST, now));
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let tokens = (tokens + elapsed * STATS_PER_SECOND).min(STATS_BURST);
        if tokens < 1.0 {
            peer.stats_allowance = Some((tokens, now));
            self.signal(
                pid,
                error_for(
                    GET_STATS,
                    ErrorCode::RateLimited,
                    "statistics change once a second; ask less often",
                ),
            );
            return;
        }
        peer.stats_allowance = Some((tokens - 1.0, now));

        let me = pid.to_string();
        let mut publishing = Vec::new();
        for t in &p.publisher.tracks {
            let mut streams: Vec<_> = peer
                .streams
                .iter()
                .filter(|((pc, mid, _), _)| *pc == Pc::Publisher && *mid == t.mid)
                .collect();
            streams.sort_by_key(|((_, _, rid), _)| rid.map(|r| r.to_string()));
            for ((_, _, rid), r) in streams {
                publishing.push(track_stats(
                    &me,
                    &t.id.to_string(),
                    t.source.kind(),
                    t.source,
                    *rid,
                    r,
                ));
            }
        }
        let mut receiving = Vec::new();
        for t in &p.subscriber.tracks {
            let DownState::Open(mid) = t.state else {
                continue;
            };
            let Some(r) = peer.streams.get(&(Pc::Subscriber, mid, None)) else {
                continue;
            };
            receiving.push(track_stats(
                &t.publisher.to_string(),
                &t.track.to_string(),
                t.source.kind(),
                t.source,
                None,
                r,
            ));
        }
        let message = ServerMessage::Stats {
            quality: peer.quality(),
            uplink: peer.uplink.quality(),
            downlink: peer.downlink.quality(),
            publishing,
            receiving,
        };
        self.signal(pid, message);
    }
}

/// The loss the source of `subscriber`'s m-line `mid` had on its way to
/// the server, over the last few reports (worst simulcast layer).
fn upstream_loss(
    participants: &IdMap<ParticipantId, Participant>,
    peers: &HashMap<ParticipantId, PeerQuality>,
    subscriber: ParticipantId,
    mid: Mid,
) -> Option<f32> {
    let down = participants
        .get(&subscriber)?
        .subscriber
        .tracks
        .iter()
        .find(|t| t.state == DownState::Open(mid))?;
    let source = participants
        .get(&down.publisher)?
        .publisher
        .tracks
        .iter()
        .find(|t| t.id == down.track)?
        .mid;
    peers
        .get(&down.publisher)?
        .streams
        .iter()
        .filter(|((pc, m, _), _)| *pc == Pc::Publisher && *m == source)
        .flat_map(|(_, r)| r.recent)
        .reduce(f32::max)
}

/// Only audio jitter says something about the network. A video frame's
/// packets share one timestamp but leave the sender's pacer over tens of
/// milliseconds, so RTCP jitter of video measures the pacer; and a simulcast
/// layer that pauses and resumes reports seconds of it.
fn scores_jitter(kind: Option<str0m::media::MediaKind>) -> bool {
    kind == Some(str0m::media::MediaKind::Audio)
}

fn clock_rate(kind: Option<str0m::media::MediaKind>) -> u32 {
    match kind {
        Some(str0m::media::MediaKind::Audio) => AUDIO_CLOCK,
        _ => VIDEO_CLOCK,
    }
}

fn track_stats(
    participant: &str,
    track: &str,
    kind: MediaKind,
    source: amphi_protocol::Source,
    rid: Option<Rid>,
    r: &StreamRecord,
) -> TrackStats {
    TrackStats {
        participant: participant.to_owned(),
        track: track.to_owned(),
        kind,
        source,
        rid: rid.map(|r| r.to_string()),
        packets: r.packets,
        bytes: r.bytes,
        loss: r.loss,
        jitter_ms: r.jitter_ms,
        rtt_ms: r.rtt_ms,
        nacks: r.nacks,
        plis: r.plis,
    }
}

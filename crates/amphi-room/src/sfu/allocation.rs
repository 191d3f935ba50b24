//! The media tick: sharing each subscriber's downlink among its tracks
//! (see `allocator.rs` for the rules) and telling publishers which of their
//! layers anybody needs (dynacast).
//!
//! Allocation runs for everyone on every tick, at once for one subscriber
//! when what it shows changes (`track_settings`) or its tracks open, and
//! for a track's subscribers when a layer of it starts sending. The
//! bandwidth estimate is str0m's send-side estimate of the subscriber
//! connection (transport-wide congestion control feedback).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use amphi_protocol::{MediaKind, PublishLayer, ServerMessage, Source};
use str0m::bwe::Bitrate;
use tracing::debug;

use super::Sfu;
use crate::allocator::{Allocation, Allocator, Demand, Priority};
use crate::ids::{ParticipantId, TrackId};
use crate::layer::{Layer, MAX_SPATIAL_LAYERS};
use crate::participant::{DownState, Pc, View};
use crate::track::PublishedTrack;

/// How often layers are re-allocated and layer rates updated.
pub(super) const TICK: Duration = Duration::from_millis(500);

/// The estimate a subscriber connection starts from, bits/s: enough for a
/// medium layer and audio while str0m probes for more.
pub(super) const INITIAL_ESTIMATE: u64 = 1_000_000;

/// A layer nobody needs is stopped at the publisher after this long, so a
/// subscriber flipping between layers does not make the encoder flap.
const UNNEEDED_FOR: Duration = Duration::from_secs(3);

/// Share of the estimate the allocator may use; going up needs more room
/// than staying, so that a noisy estimate does not flip layers back and
/// forth (each spatial switch costs a keyframe).
const KEEP_SHARE: f64 = 0.95;
const RAISE_SHARE: f64 = 0.8;

/// An estimate under this share of what is sent is congestion even while
/// nothing backs up. GCC answers delay it reads with 0.85 times the acked
/// rate: on a link with room that is 0.85 times what is sent, and no
/// congestion. Under 0.7 times, what arrives is under 0.82 times what is
/// sent: the link is the limit, and it queues or drops the rest. Waiting for
/// str0m's own queue to show that (it paces at 1.1 times the estimate) took
/// 0.4-0.8 s on a link cut to three quarters of the camera, long enough for
/// the link's queue to overflow.
const HARD_DROP_SHARE: f64 = 0.7;

/// A step beyond the estimate (see `beyond_estimate`) is one GCC has not
/// seen yet: for this long after it, only an estimate under this share of
/// what is sent counts as congestion, and otherwise the queue judges it.
const STEP_BEYOND_HARD_DROP_SHARE: f64 = 0.5;
const STEP_BEYOND_JUDGED_BY_QUEUE: Duration = Duration::from_secs(5);

/// Sending less than this share of the estimate, the connection is
/// application-limited (GCC's ALR threshold): the estimate then only says
/// what has been used, not what the link can take.
const APP_LIMITED_SHARE: f64 = 0.65;

/// How long after going beyond an application-limited estimate the
/// allocator may try again; doubled after each try, up to `MAX_BACKOFF`,
/// and back to this once nothing is held back.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long after congestion the allocator does not go beyond the estimate.
/// The estimate then comes from what the link carried, not from what little
/// was sent; a step down leaves the connection using a small share of it
/// without being application-limited, and a try would be a keyframe of the
/// layer the link just refused. Should the link have room again, str0m's
/// probes and the padding toward the step held back (`padding_target`)
/// raise the estimate, and with it the layer.
const AFTER_CONGESTION: Duration = Duration::from_secs(15);

/// What an allocation run works in, kept by the engine so that a run,
/// twice a second for every subscriber, allocates nothing once warm.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    allocator: Allocator,
    /// The subscriber's tracks that take part (indices into its tracks),
    /// and what each asks for.
    slots: Vec<usize>,
    demands: Vec<Demand>,
    keep: Allocation,
    raise: Allocation,
    /// The participants of a tick.
    ids: Vec<ParticipantId>,
    /// Per track, the spatial layers subscribers need (dynacast).
    needed: HashMap<TrackId, u32>,
}

impl Sfu {
    pub(super) fn media_tick(&mut self, now: Instant) {
        let elapsed = TICK + now.saturating_duration_since(self.next_media_tick);
        self.next_media_tick = now + TICK;
        for p in self.participants.values_mut() {
            for t in &mut p.publisher.tracks {
                for l in &mut t.layers {
                    l.update_rates(elapsed);
                }
            }
        }
        self.allocate_each(now, |sfu, ids| ids.extend(sfu.participants.keys().copied()));
    }

    /// Allocates for the subscribers `pick` lists, then updates dynacast;
    /// the list is kept in the scratch space, so this allocates nothing.
    fn allocate_each(&mut self, now: Instant, pick: impl FnOnce(&Sfu, &mut Vec<ParticipantId>)) {
        let mut scratch = std::mem::take(&mut self.allocation);
        let mut ids = std::mem::take(&mut scratch.ids);
        ids.clear();
        pick(self, &mut ids);
        for &id in &ids {
            self.allocate_with(now, id, &mut scratch);
        }
        scratch.ids = ids;
        self.allocation = scratch;
        self.dynacast(now);
    }

    /// A subscriber's tile changed size or visibility.
    pub(super) fn handle_track_settings(
        &mut self,
        now: Instant,
        pid: ParticipantId,
        track: &str,
        view: View,
    ) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let Some(down) = p
            .subscriber
            .tracks
            .iter_mut()
            .find(|t| t.track.to_string() == track)
        else {
            // A track that just left: not worth an error.
            return;
        };
        if down.view == Some(view) {
            return;
        }
        down.view = Some(view);
        self.allocate_for(now, pid);
        self.dynacast(now);
    }

    /// Sets the layer of every video track `subscriber` receives.
    pub(super) fn allocate_for(&mut self, now: Instant, subscriber: ParticipantId) {
        let mut scratch = std::mem::take(&mut self.allocation);
        self.allocate_with(now, subscriber, &mut scratch);
        self.allocation = scratch;
    }

    /// Allocates for `subscriber` between ticks, as its downlink changed.
    /// A layer it is now set to that its publisher stopped (nobody needed
    /// it) is started at once: the switch waits for its first keyframe, and
    /// the next tick's dynacast would add up to half a second to that while
    /// the link's queue fills.
    pub(super) fn reallocate(&mut self, now: Instant, subscriber: ParticipantId) {
        self.allocate_for(now, subscriber);
        if self.is_set_to_a_stopped_layer(subscriber) {
            self.dynacast(now);
        }
    }

    fn is_set_to_a_stopped_layer(&self, subscriber: ParticipantId) -> bool {
        let Some(s) = self.participants.get(&subscriber) else {
            return false;
        };
        s.subscriber.tracks.iter().any(|down| {
            let Some(target) = down.selector.managed_target() else {
                return false;
            };
            self.participants
                .get(&down.publisher)
                .and_then(|p| p.publisher.track(down.track))
                .and_then(|t| t.layers.get(usize::from(target.spatial)))
                .is_some_and(|l| !l.active_at_source)
        })
    }

    /// Allocates for every subscriber of `publisher`'s `track` (a layer of
    /// it just started or came back), and updates dynacast.
    pub(super) fn allocate_for_track(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        track: TrackId,
    ) {
        self.allocate_each(now, |sfu, ids| {
            let Some(room) = sfu
                .participants
                .get(&publisher)
                .and_then(|p| sfu.rooms.get(&p.room))
            else {
                return;
            };
            ids.extend(room.members.iter().copied().filter(|sid| {
                sfu.participants.get(sid).is_some_and(|s| {
                    s.subscriber
                        .tracks
                        .iter()
                        .any(|d| d.track == track && matches!(d.state, DownState::Open(_)))
                })
            }));
        });
    }

    fn allocate_with(&mut self, now: Instant, subscriber: ParticipantId, scratch: &mut Scratch) {
        let Some(s) = self.participants.get(&subscriber) else {
            return;
        };
        let Scratch {
            allocator,
            slots,
            demands,
            keep,
            raise,
            ..
        } = scratch;
        slots.clear();
        demands.clear();
        for (i, down) in s.subscriber.tracks.iter().enumerate() {
            if !matches!(down.state, DownState::Open(_)) {
                continue;
            }
            let Some(track) = self
                .participants
                .get(&down.publisher)
                .and_then(|p| p.publisher.track(down.track))
            else {
                continue;
            };
            let priority = if track.source == Source::ScreenShare {
                Priority::ScreenShare
            } else if self.is_dominant_speaker(down.publisher) {
                Priority::Speaker
            } else {
                Priority::Normal
            };
            slots.push(i);
            demands.push(demand(now, track, priority, down.view));
        }
        let estimate = if self.config.bandwidth_estimation {
            s.subscriber.estimate.unwrap_or(INITIAL_ESTIMATE) as f64
        } else {
            // Unlimited, yet small enough for the sums not to overflow.
            (u64::MAX >> 8) as f64
        };
        let backlog = s
            .subscriber
            .tracks
            .iter()
            .any(|d| d.selector.is_congested());
        let targets = slots
            .iter()
            .map(|&slot| s.subscriber.tracks[slot].selector.managed_target());
        let sending = sending(demands, targets);
        let stepped_beyond = s
            .subscriber
            .stepped_beyond_at
            .is_some_and(|t| now < t + STEP_BEYOND_JUDGED_BY_QUEUE);
        let congested = is_congested(estimate, sending, backlog, stepped_beyond);
        allocator.allocate(keep_budget(estimate, sending, congested), demands, keep);
        allocator.allocate((estimate * RAISE_SHARE) as u64, demands, raise);
        // A subscriber that receives little (audio only, small tiles) gives
        // GCC nothing to measure: its estimate stays low on a good link, and
        // str0m has no video to pad with. Waiting for the estimate would keep
        // a single-layer video paused for good, so go one step beyond it,
        // now and then: if the link cannot take it, the pacer's queue backs
        // up (or the estimate falls far under it) and the step is taken
        // back at once or at the next tick (`keep_budget`).
        let (go, beyond) = beyond_estimate(
            s.subscriber.beyond_estimate,
            now,
            congested,
            keep.next > keep.allocated,
            self.config.bandwidth_estimation
                && (keep.allocated as f64) < estimate * APP_LIMITED_SHARE,
        );
        if go {
            let next = keep.next;
            allocator.allocate(next, demands, keep);
            raise.clone_from(keep);
        }

        let Some(s) = self.participants.get_mut(&subscriber) else {
            return;
        };
        s.subscriber.beyond_estimate = beyond;
        if go {
            s.subscriber.stepped_beyond_at = Some(now);
        }
        debug!(
            %subscriber,
            estimate = s.subscriber.estimate,
            allocated = keep.allocated,
            wanted = keep.wanted,
            targets = ?keep.targets,
            "allocation"
        );
        for (k, slot) in slots.iter().enumerate() {
            if demands[k].audio {
                continue;
            }
            let down = &mut s.subscriber.tracks[*slot];
            down.max_spatial = demands[k].max_spatial;
            let now_target = down.selector.managed_target();
            // Nothing goes up while the queue backs up: a switch up starts
            // with a keyframe, which would only queue behind it.
            // (The selector's flag is refreshed at every frame start.)
            let raise_to = if down.selector.is_congested() {
                now_target
            } else {
                raise.targets[k]
            };
            let target = settle(now_target, keep.targets[k], raise_to);
            if !down.selector.is_managed() || target != now_target {
                down.selector.set_target(target);
            }
        }
        let (sustain, wanted) = padding_target(keep);
        s.subscriber
            .conn
            .rtc
            .bwe()
            .set_bitrate(Bitrate::bps(sustain), Bitrate::bps(wanted));
        if !self.dirty.contains(&(subscriber, Pc::Subscriber)) {
            self.dirty.push((subscriber, Pc::Subscriber));
        }
    }

    /// Starts the layers somebody needs and, after a while, stops those
    /// nobody does.
    pub(super) fn dynacast(&mut self, now: Instant) {
        // Per track, the spatial layers subscribers receive or move to.
        let mut needed = std::mem::take(&mut self.allocation.needed);
        needed.clear();
        for s in self.participants.values() {
            for down in &s.subscriber.tracks {
                if down.source.kind() != MediaKind::Video {
                    continue;
                }
                let mask = needed.entry(down.track).or_default();
                match down.state {
                    DownState::Open(_) if down.selector.is_managed() => {
                        for l in [down.selector.target(), down.selector.current()]
                            .into_iter()
                            .flatten()
                        {
                            *mask |= 1 << l.spatial;
                        }
                        if let Some(s) = down.max_spatial {
                            *mask |= 1 << s;
                        }
                    }
                    // Not allocated yet: whatever comes.
                    DownState::Open(_) | DownState::Negotiating(_) | DownState::ToOpen => {
                        *mask = u32::MAX
                    }
                    DownState::ToStop(_) | DownState::Stopping(_) => {}
                }
            }
        }
        let mut messages = Vec::new();
        for p in self.participants.values_mut() {
            for t in &mut p.publisher.tracks {
                if t.kind() != MediaKind::Video {
                    continue;
                }
                let mask = needed.get(&t.id).copied().unwrap_or(0);
                let mut changed = false;
                for (i, layer) in t.layers.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        layer.unneeded_since = None;
                        if !layer.active_at_source {
                            layer.active_at_source = true;
                            layer.resumed_at = Some(now);
                            changed = true;
                        }
                    } else {
                        let since = *layer.unneeded_since.get_or_insert(now);
                        if layer.active_at_source
                            && now.saturating_duration_since(since) >= UNNEEDED_FOR
                        {
                            layer.active_at_source = false;
                            changed = true;
                        }
                    }
                }
                if changed {
                    let layers = t
                        .layers
                        .iter()
                        .map(|l| PublishLayer {
                            rid: l.rid.map(|r| r.to_string()),
                            active: l.active_at_source,
                        })
                        .collect();
                    messages.push((
                        p.id,
                        ServerMessage::PublishLayers {
                            track: t.id.to_string(),
                            source: t.source,
                            layers,
                        },
                    ));
                }
            }
        }
        self.allocation.needed = needed;
        for (pid, message) in messages {
            self.signal(pid, message);
        }
    }
}

/// What the layers a subscriber is sent now cost at today's rates, bits/s:
/// `targets` are the layers its video tracks are set to, in the order of
/// `demands` (`None`: paused or not allocated yet; audio's is not read).
///
/// Today's rates, not those of the allocation that chose the layers: an
/// encoder ramps up for seconds after it starts, so what was allocated
/// falls short of what the same layers cost a tick later, and keeping only
/// that would pause a track on a link that shows no congestion at all.
fn sending(demands: &[Demand], targets: impl IntoIterator<Item = Option<Layer>>) -> u64 {
    demands
        .iter()
        .zip(targets)
        .filter_map(|(d, target)| {
            let layer = if d.audio {
                Some(Layer::new(0, 0))
            } else {
                target
            };
            d.rate(layer?)
        })
        .sum()
}

/// What the allocator may spend to keep what a subscriber receives.
///
/// The estimate of a connection that sends without padding sinks whenever
/// GCC reads a little delay (to 0.85 times the acked rate, which is only
/// what was sent): that is not congestion, and pausing a track for it would
/// be wrong on a good link. So what is sent (`sending`) is kept until the
/// downlink shows real congestion: a queue that backs up (str0m paces at
/// 1.1 times the estimate, so an estimate under the media rate shows there
/// within a second or two), or an estimate far under it
/// (`HARD_DROP_SHARE`).
fn keep_budget(estimate: f64, sending: u64, congested: bool) -> u64 {
    let budget = estimate * KEEP_SHARE;
    if congested {
        budget as u64
    } else {
        (budget as u64).max(sending)
    }
}

/// Whether a subscriber's downlink shows congestion: its queue backs up, or
/// its estimate fell far under what it is sent (further, just after a step
/// beyond the estimate).
fn is_congested(estimate: f64, sending: u64, backlog: bool, stepped_beyond: bool) -> bool {
    let share = if stepped_beyond {
        STEP_BEYOND_HARD_DROP_SHARE
    } else {
        HARD_DROP_SHARE
    };
    backlog || estimate < sending as f64 * share
}

/// Whether to go one step beyond the estimate now, and when the next try
/// may come (`Subscriber::beyond_estimate`), given whether the downlink is
/// congested, whether a step is held back, and whether the connection
/// uses so little of its estimate that it looks application-limited.
fn beyond_estimate(
    (ready_at, backoff): (Option<Instant>, Duration),
    now: Instant,
    congested: bool,
    held_back: bool,
    app_limited: bool,
) -> (bool, (Option<Instant>, Duration)) {
    if congested {
        let hold = (now + AFTER_CONGESTION).max(ready_at.unwrap_or(now));
        return (false, (Some(hold), backoff));
    }
    if !held_back {
        // Nothing to go to; but a hold after congestion stays.
        let hold = ready_at.filter(|&t| t > now);
        return (false, (hold, FIRST_BACKOFF));
    }
    if app_limited && ready_at.is_none_or(|t| now >= t) {
        return (true, (Some(now + backoff), (backoff * 2).min(MAX_BACKOFF)));
    }
    (false, (ready_at, backoff))
}

/// The rate str0m should sustain with padding, and the rate it should
/// probe for (`Bwe::set_bitrate`).
///
/// Padding goes toward the next step up only when something is held back,
/// so the estimate can grow into it. With nothing held back there is
/// nothing to grow into, and padding up to what is sent would fill every
/// gap between video frames: 18 % more datagrams in a lecture, for
/// nothing.
///
/// Probing goes at least as far as `INITIAL_ESTIMATE`, even for a
/// subscriber that wants less now (audio only, or a camera whose first
/// packets have not come yet). str0m probes up to twice what is wanted, and
/// a probe measures no more than it sends: probes for an audio-only
/// subscriber (~100 kbit/s) took its estimate from 1 Mbit/s to 0.4 within
/// 400 ms, and str0m's three-second smoothing then held the camera that
/// came next paused for three seconds.
fn padding_target(keep: &crate::allocator::Allocation) -> (u64, u64) {
    let wanted = keep.wanted.max(keep.allocated).max(INITIAL_ESTIMATE);
    let sustain = if keep.next > keep.allocated {
        keep.next.min(wanted)
    } else {
        0
    };
    (sustain, wanted)
}

/// Between the allocation that keeps a layer and the stricter one that
/// raises it: go down as soon as the first says so, up only when the second
/// agrees.
fn settle(now: Option<Layer>, keep: Option<Layer>, raise: Option<Layer>) -> Option<Layer> {
    match (now, keep) {
        (_, None) => None,
        (None, Some(k)) => raise.or(Some(k)).map(|r| r.min(k)),
        (Some(n), Some(k)) if k < n => Some(k),
        (Some(n), Some(_)) => Some(raise.map_or(n, |r| r.max(n))),
    }
}

/// What one track asks of one subscriber's downlink.
fn demand(now: Instant, track: &PublishedTrack, priority: Priority, view: Option<View>) -> Demand {
    if track.kind() == MediaKind::Audio {
        let rate = track.layers.first().map_or(track.nominal_rate(0), |l| {
            l.cumulative_rates(track.nominal_rate(0))[2]
        });
        let mut layers = [None; MAX_SPATIAL_LAYERS];
        layers[0] = Some([rate; 3]);
        return Demand {
            priority,
            audio: true,
            layers,
            temporal_layers: 1,
            max_spatial: Some(0),
        };
    }
    let mut layers = [None; MAX_SPATIAL_LAYERS];
    debug_assert!(
        track.layers.len() <= MAX_SPATIAL_LAYERS,
        "PublishedTrack::new keeps at most MAX_SPATIAL_LAYERS"
    );
    for (s, (slot, l)) in layers.iter_mut().zip(&track.layers).enumerate() {
        *slot = l
            .available(now)
            .then(|| l.cumulative_rates(track.nominal_rate(s as u8)));
    }
    Demand {
        priority,
        audio: false,
        layers,
        temporal_layers: if track.temporal_layers { 3 } else { 1 },
        max_spatial: max_spatial(track, view),
    }
}

/// The smallest layer that fills the tile (`None`: the tile is hidden).
fn max_spatial(track: &PublishedTrack, view: Option<View>) -> Option<u8> {
    let top = track.layers.len().saturating_sub(1) as u8;
    let Some(view) = view else {
        return Some(top);
    };
    if !view.visible {
        return None;
    }
    if view.width == 0 && view.height == 0 {
        return Some(top);
    }
    // 10% smaller than the tile is not worth twice the bitrate.
    (0..=top)
        .find(|s| {
            let (w, h) = track.layer_size(*s);
            w * 10 >= view.width * 9 && h * 10 >= view.height * 9
        })
        .or(Some(top))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_go_down_at_once_and_up_only_with_room_to_spare() {
        let l = Layer::new;
        // Down: the keep allocation decides.
        assert_eq!(
            settle(Some(l(2, 2)), Some(l(1, 2)), Some(l(1, 0))),
            Some(l(1, 2))
        );
        // Up only as far as the stricter allocation allows.
        assert_eq!(
            settle(Some(l(0, 2)), Some(l(2, 2)), Some(l(1, 1))),
            Some(l(1, 1))
        );
        // Between the two: stay.
        assert_eq!(
            settle(Some(l(1, 2)), Some(l(2, 0)), Some(l(1, 0))),
            Some(l(1, 2))
        );
        // Pause when nothing fits; resume at the stricter layer.
        assert_eq!(settle(Some(l(0, 0)), None, None), None);
        assert_eq!(settle(None, Some(l(1, 0)), Some(l(0, 2))), Some(l(0, 2)));
        assert_eq!(settle(None, Some(l(1, 0)), None), Some(l(1, 0)));
    }

    #[test]
    fn an_estimate_sinking_without_congestion_keeps_what_is_sent() {
        let keep = |estimate, sending, backlog| {
            keep_budget(
                estimate,
                sending,
                is_congested(estimate, sending, backlog, false),
            )
        };
        // A 1.55 Mbit/s lecture whose unpadded estimate sank to 1.3 Mbit/s
        // (GCC's 0.85 times what was acked, on a link with room).
        assert_eq!(keep(1_300_000.0, 1_550_000, false), 1_550_000);
        // A backed-up queue is congestion: the estimate decides.
        assert_eq!(keep(1_300_000.0, 1_550_000, true), 1_235_000);
        // So is an estimate far under what is sent: a 533 kbit/s layer on a
        // link cut to 400 kbit/s, where GCC settles at 0.85 times what
        // arrives.
        assert_eq!(keep(340_000.0, 533_000, false), 323_000);
        assert_eq!(keep(200_000.0, 1_550_000, false), 190_000);
        // An estimate above what is sent is used as it is.
        assert_eq!(keep(4_000_000.0, 1_550_000, false), 3_800_000);
        // Just after a step beyond the estimate, which GCC has not seen
        // yet, the queue judges it unless the estimate is under half.
        assert!(!is_congested(1_000_000.0, 1_550_000, false, true));
        assert!(is_congested(1_000_000.0, 1_550_000, false, false));
        assert!(is_congested(700_000.0, 1_550_000, false, true));
        assert!(is_congested(1_000_000.0, 1_550_000, true, true));
    }

    #[test]
    fn no_step_beyond_the_estimate_for_a_while_after_congestion() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let fresh = (None, FIRST_BACKOFF);
        // Application-limited with a step held back: a try, then a wait
        // that doubles.
        let (go, state) = beyond_estimate(fresh, t0, false, true, true);
        assert!(go);
        assert_eq!(state, (Some(at(1)), FIRST_BACKOFF * 2));
        let (go, _) = beyond_estimate(state, t0 + Duration::from_millis(500), false, true, true);
        assert!(!go);
        let (go, state) = beyond_estimate(state, at(1), false, true, true);
        assert!(go);
        assert_eq!(state, (Some(at(3)), FIRST_BACKOFF * 4));

        // Congestion: no try, however small the share of the estimate used
        // after the step down, until AFTER_CONGESTION after it ended.
        let (go, state) = beyond_estimate(fresh, t0, true, true, true);
        assert!(!go);
        let (go, state) = beyond_estimate(state, at(2), true, true, true);
        assert!(!go);
        let ended = at(2) + AFTER_CONGESTION;
        let (go, state) =
            beyond_estimate(state, ended - Duration::from_millis(1), false, true, true);
        assert!(!go);
        // Nothing held back meanwhile does not lift the hold.
        let (go, state) = beyond_estimate(state, at(3), false, false, true);
        assert!(!go);
        assert_eq!(state, (Some(ended), FIRST_BACKOFF));
        let (go, _) = beyond_estimate(state, ended, false, true, true);
        assert!(go);

        // Not application-limited: never.
        let (go, _) = beyond_estimate(fresh, t0, false, true, false);
        assert!(!go);
        // Nothing held back: nothing to try, and the wait starts over.
        let (go, state) = beyond_estimate((Some(at(1)), MAX_BACKOFF), at(5), false, false, true);
        assert!(!go);
        assert_eq!(state, (None, FIRST_BACKOFF));
    }

    #[test]
    fn what_is_sent_is_counted_at_todays_rates() {
        let audio = Demand {
            priority: Priority::Normal,
            audio: true,
            layers: [Some([48_000; 3]), None, None, None],
            temporal_layers: 1,
            max_spatial: Some(0),
        };
        // A camera's encoder ramping up: its layers cost more than when
        // they were allocated.
        let camera = |low: u64| Demand {
            priority: Priority::Normal,
            audio: false,
            layers: [
                Some([low / 2, low * 3 / 4, low]),
                Some([600_000, 900_000, 1_200_000]),
                None,
                None,
            ],
            temporal_layers: 3,
            max_spatial: Some(1),
        };
        let l = |s, t| Some(Layer::new(s, t));
        let demands = [audio, camera(300_000), camera(650_000)];
        assert_eq!(
            sending(&demands, [None, l(0, 2), l(1, 1)]),
            48_000 + 300_000 + 900_000
        );
        assert_eq!(
            sending(&demands, [None, l(0, 2), l(0, 2)]),
            48_000 + 300_000 + 650_000
        );
        // Paused (or not allocated yet): nothing; a layer no longer
        // offered: nothing either.
        assert_eq!(sending(&demands, [None, None, l(2, 0)]), 48_000);
    }

    #[test]
    fn padding_only_toward_a_step_that_is_held_back() {
        let alloc = |allocated, next, wanted| crate::allocator::Allocation {
            targets: Vec::new(),
            allocated,
            wanted,
            next,
        };
        // Nothing held back: no padding, probe for what is wanted.
        assert_eq!(
            padding_target(&alloc(1_550_000, 1_550_000, 1_550_000)),
            (0, 1_550_000)
        );
        // The top layer held back: sustain its rate.
        assert_eq!(
            padding_target(&alloc(600_000, 1_800_000, 1_800_000)),
            (1_800_000, 1_800_000)
        );
        // Never sustain beyond what is wanted.
        assert_eq!(
            padding_target(&alloc(600_000, 2_000_000, 1_800_000)),
            (1_800_000, 1_800_000)
        );
        // Audio only: no padding, yet probe for a camera's worth.
        assert_eq!(
            padding_target(&alloc(48_000, 48_000, 48_000)),
            (0, INITIAL_ESTIMATE)
        );
    }
}

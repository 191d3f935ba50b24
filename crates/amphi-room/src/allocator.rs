//! Sharing one subscriber's downlink among the tracks it receives.
//!
//! Input: the bandwidth estimate of the subscriber's connection and, for
//! each track, its priority, the layers the publisher offers with their
//! bitrates, and the largest layer the subscriber can use (from the size of
//! its tile; nothing for a hidden tile). Output: a target layer per video
//! track, or a pause.
//!
//! The rules, in order:
//! 1. Audio is never dropped for video: every audio track's bitrate is taken
//!    off the budget first.
//! 2. Video tracks are served by priority (screen share, then the active
//!    speaker, then the others). First every track gets its lowest layer, as
//!    long as the budget lasts; a track that does not fit is paused whole
//!    rather than made to fight for bandwidth with audio.
//! 3. Then, priority class by priority class, tracks go up one step at a
//!    time, round-robin within a class, while the budget lasts.
//!
//! A track's steps are its (spatial, temporal) layers in lexicographic order,
//! so that going down drops frame rate before resolution: what a camera and,
//! even more, a screen share want.
//!
//! The allocator is a pure function of its inputs; the engine decides when
//! to run it. It runs for every subscriber twice a second, so it works in
//! vectors it keeps ([`Allocator`]) and writes into the caller's
//! [`Allocation`]: once warm, a run allocates nothing.

use std::ops::Range;

use crate::layer::{Layer, MAX_SPATIAL_LAYERS, MAX_TEMPORAL};

/// Bitrates of one spatial layer up to each temporal layer (cumulative),
/// bits/s.
pub type LayerRates = [u64; (MAX_TEMPORAL + 1) as usize];

/// Who gets bandwidth first (lower first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    ScreenShare,
    Speaker,
    Normal,
}

/// One track as the allocator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    pub priority: Priority,
    pub audio: bool,
    /// Per spatial layer (index = spatial), the bitrate in bits/s of the
    /// layer up to each temporal layer (index = temporal, cumulative), or
    /// `None` if the publisher does not offer that spatial layer. Audio: one
    /// layer whose first entry is its bitrate.
    pub layers: [Option<LayerRates>; MAX_SPATIAL_LAYERS],
    /// How many temporal layers the track has (1 without temporal layers).
    pub temporal_layers: u8,
    /// The largest spatial layer worth sending; `None`: do not send video.
    pub max_spatial: Option<u8>,
}

impl Demand {
    /// What sending `layer` of this track costs, bits/s (`None`: the
    /// publisher does not offer it now). Audio has one layer.
    pub fn rate(&self, layer: Layer) -> Option<u64> {
        let rates = self.layers.get(usize::from(layer.spatial))?.as_ref()?;
        rates.get(usize::from(layer.temporal)).copied()
    }

    /// Appends the steps this track can take to `steps`, lowest first, with
    /// their bitrates.
    fn ladder_into(&self, steps: &mut Vec<(Layer, u64)>) {
        let Some(max) = self.max_spatial else {
            return;
        };
        let top_temporal = self.temporal_layers.clamp(1, MAX_TEMPORAL + 1) - 1;
        let start = steps.len();
        for (s, rates) in self.layers.iter().enumerate().take(usize::from(max) + 1) {
            let Some(rates) = rates else { continue };
            for t in 0..=top_temporal {
                steps.push((Layer::new(s as u8, t), rates[usize::from(t)]));
            }
        }
        // If the tile wants less than the smallest layer offered, the
        // smallest layer is still better than nothing.
        if steps.len() == start
            && let Some((s, Some(rates))) =
                self.layers.iter().enumerate().find(|(_, r)| r.is_some())
        {
            for t in 0..=top_temporal {
                steps.push((Layer::new(s as u8, t), rates[usize::from(t)]));
            }
        }
    }
}

/// The result for one subscriber.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Per input track (same order): the layer to send, `None` to pause.
    /// Audio tracks always get `Some(Layer::new(0, 0))`.
    pub targets: Vec<Option<Layer>>,
    /// What the targets add up to, in bits/s.
    pub allocated: u64,
    /// What the subscriber would receive with unlimited bandwidth: the rate
    /// worth probing for.
    pub wanted: u64,
    /// The total at which the next step up would fit (`allocated` when
    /// nothing is held back): the rate worth sustaining with padding so the
    /// estimate can grow into it.
    pub next: u64,
}

impl Clone for Allocation {
    fn clone(&self) -> Self {
        Allocation {
            targets: self.targets.clone(),
            ..*self
        }
    }

    // The engine copies an allocation once per run: into the vector it has.
    fn clone_from(&mut self, source: &Self) {
        // Destructured so that a new field cannot be forgotten here.
        let Allocation {
            targets,
            allocated,
            wanted,
            next,
        } = source;
        self.targets.clone_from(targets);
        self.allocated = *allocated;
        self.wanted = *wanted;
        self.next = *next;
    }
}

/// The allocator's working memory, kept between runs.
#[derive(Debug, Default)]
pub struct Allocator {
    /// Every track's steps, one after the other; `ladders[i]` is where
    /// track `i`'s are.
    steps: Vec<(Layer, u64)>,
    ladders: Vec<Range<usize>>,
    /// Video tracks in the order they are served.
    order: Vec<usize>,
    /// Step index on each ladder (`None`: paused).
    step: Vec<Option<usize>>,
}

/// [`Allocator::allocate`] with fresh working memory.
pub fn allocate(budget: u64, demands: &[Demand]) -> Allocation {
    let mut out = Allocation::default();
    Allocator::default().allocate(budget, demands, &mut out);
    out
}

impl Allocator {
    /// Shares `budget` (bits/s) among `demands`, into `out`.
    pub fn allocate(&mut self, budget: u64, demands: &[Demand], out: &mut Allocation) {
        let Allocator {
            steps,
            ladders,
            order,
            step,
        } = self;
        steps.clear();
        ladders.clear();
        out.targets.clear();
        out.targets.resize(demands.len(), None);
        let targets = &mut out.targets;
        let mut wanted = 0u64;
        let mut used = 0u64;
        for (i, d) in demands.iter().enumerate() {
            let start = steps.len();
            if d.audio {
                let rate = d.layers[0].map_or(0, |r| r[0]);
                used += rate;
                wanted += rate;
                targets[i] = Some(Layer::new(0, 0));
            } else {
                d.ladder_into(steps);
                wanted += steps[start..].last().map_or(0, |(_, r)| *r);
            }
            ladders.push(start..steps.len());
        }
        let ladder = |i: usize| &steps[ladders[i].clone()];
        order.clear();
        order.extend((0..demands.len()).filter(|i| !demands[*i].audio));
        // Unstable is enough (the index makes keys unique) and never
        // allocates.
        order.sort_unstable_by_key(|i| (demands[*i].priority, *i));

        step.clear();
        step.resize(demands.len(), None);
        for &i in order.iter() {
            if let Some((_, rate)) = ladder(i).first()
                && used + rate <= budget
            {
                used += rate;
                step[i] = Some(0);
            }
        }
        let mut start = 0;
        while start < order.len() {
            let class = demands[order[start]].priority;
            let end = order[start..]
                .iter()
                .position(|i| demands[*i].priority != class)
                .map_or(order.len(), |n| start + n);
            loop {
                let mut moved = false;
                for &i in &order[start..end] {
                    let Some(at) = step[i] else { continue };
                    let Some((_, next)) = ladder(i).get(at + 1) else {
                        continue;
                    };
                    let now = ladder(i)[at].1;
                    let extra = next.saturating_sub(now);
                    if used + extra <= budget {
                        used += extra;
                        step[i] = Some(at + 1);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            start = end;
        }
        // The cheapest step that did not fit, by priority.
        let mut next = used;
        for &i in order.iter() {
            let extra = match step[i] {
                None => ladder(i).first().map(|(_, r)| *r),
                Some(at) => ladder(i)
                    .get(at + 1)
                    .map(|(_, r)| r.saturating_sub(ladder(i)[at].1)),
            };
            if let Some(extra) = extra {
                next = used + extra;
                break;
            }
        }
        for &i in order.iter() {
            targets[i] = step[i].map(|at| ladder(i)[at].0);
        }
        out.allocated = used;
        out.wanted = wanted;
        out.next = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1_000;

    /// A camera in three simulcast layers with three temporal layers each.
    fn camera(priority: Priority, max_spatial: Option<u8>) -> Demand {
        let layer = |total: u64| Some([total / 2, total * 3 / 4, total]);
        Demand {
            priority,
            audio: false,
            layers: [layer(150 * K), layer(500 * K), layer(1_500 * K), None],
            temporal_layers: 3,
            max_spatial,
        }
    }

    fn screen() -> Demand {
        Demand {
            priority: Priority::ScreenShare,
            audio: false,
            layers: [Some([400 * K, 600 * K, 800 * K]), None, None, None],
            temporal_layers: 3,
            max_spatial: Some(0),
        }
    }

    fn audio() -> Demand {
        Demand {
            priority: Priority::Normal,
            audio: true,
            layers: [Some([40 * K, 40 * K, 40 * K]), None, None, None],
            temporal_layers: 1,
            max_spatial: Some(0),
        }
    }

    #[test]
    fn plenty_of_bandwidth_gives_everyone_what_their_tile_can_show() {
        let a = allocate(
            10_000 * K,
            &[
                camera(Priority::Normal, Some(2)),
                camera(Priority::Normal, Some(0)),
                audio(),
            ],
        );
        assert_eq!(a.targets[0], Some(Layer::new(2, 2)));
        assert_eq!(a.targets[1], Some(Layer::new(0, 2)));
        assert_eq!(a.targets[2], Some(Layer::new(0, 0)));
        assert_eq!(a.allocated, 1_500 * K + 150 * K + 40 * K);
        assert_eq!(a.wanted, a.allocated);
        assert_eq!(a.next, a.allocated, "nothing held back");
    }

    #[test]
    fn a_reused_allocator_gives_what_a_fresh_one_does() {
        use Priority::{Normal, Speaker};
        let cases = [
            (
                2_500 * K,
                vec![
                    camera(Normal, Some(2)),
                    camera(Speaker, Some(2)),
                    screen(),
                    audio(),
                ],
            ),
            (100 * K, vec![camera(Speaker, Some(2)), audio(), audio()]),
            (10_000 * K, vec![camera(Normal, None)]),
            (700 * K, vec![camera(Normal, Some(2))]),
            (
                1_000 * K,
                vec![camera(Normal, Some(2)), camera(Normal, Some(1))],
            ),
        ];
        // More tracks, then fewer, then more again: nothing may carry over.
        let mut allocator = Allocator::default();
        let mut out = Allocation::default();
        for (budget, demands) in cases.iter().chain(cases.iter().rev()) {
            allocator.allocate(*budget, demands, &mut out);
            assert_eq!(out, allocate(*budget, demands), "{budget}");
        }
        let mut copy = allocate(10_000 * K, &[audio(), audio(), audio()]);
        copy.clone_from(&out);
        assert_eq!(copy, out);
    }

    #[test]
    fn hidden_tiles_get_nothing() {
        let a = allocate(10_000 * K, &[camera(Priority::Normal, None)]);
        assert_eq!(a.targets, vec![None]);
        assert_eq!(a.allocated, 0);
    }

    #[test]
    fn audio_is_served_before_any_video_even_when_nothing_else_fits() {
        let a = allocate(
            100 * K,
            &[camera(Priority::Speaker, Some(2)), audio(), audio()],
        );
        assert_eq!(
            a.targets,
            vec![None, Some(Layer::new(0, 0)), Some(Layer::new(0, 0))]
        );
        assert_eq!(a.allocated, 80 * K);
        assert!(a.wanted > a.allocated);
        // Sustaining the lowest video layer is the next step.
        assert_eq!(a.next, 80 * K + 75 * K);
    }

    #[test]
    fn frame_rate_goes_before_resolution() {
        // Enough for the middle layer at full rate, not for the top one:
        // the top layer's base frame rate (750k) wins over 500k at 30 fps.
        let a = allocate(800 * K, &[camera(Priority::Normal, Some(2))]);
        assert_eq!(a.targets[0], Some(Layer::new(2, 0)));
        let a = allocate(700 * K, &[camera(Priority::Normal, Some(2))]);
        assert_eq!(a.targets[0], Some(Layer::new(1, 2)));
        let a = allocate(300 * K, &[camera(Priority::Normal, Some(2))]);
        assert_eq!(a.targets[0], Some(Layer::new(1, 0)));
    }

    #[test]
    fn screen_share_then_speaker_then_the_rest() {
        let demands = [
            camera(Priority::Normal, Some(2)),
            camera(Priority::Speaker, Some(2)),
            screen(),
            audio(),
        ];
        // 40k audio + 800k screen + 1500k speaker + the low layer for the other.
        let a = allocate(2_500 * K, &demands);
        assert_eq!(a.targets[2], Some(Layer::new(0, 2)), "screen share first");
        assert_eq!(a.targets[1], Some(Layer::new(2, 2)), "then the speaker");
        assert!(
            a.targets[0].is_some_and(|l| l.spatial == 0),
            "the rest gets what is left: {:?}",
            a.targets[0]
        );
        assert!(a.allocated <= 2_500 * K);
        // Less: the speaker steps down, the screen keeps its resolution.
        let a = allocate(1_000 * K, &demands);
        assert_eq!(a.targets[2].map(|l| l.spatial), Some(0));
        assert!(a.targets[2].is_some());
        assert!(a.targets[1].is_some_and(|l| l.spatial <= 1));
        assert!(a.allocated <= 1_000 * K);
    }

    #[test]
    fn equals_share_in_turns() {
        let demands = [
            camera(Priority::Normal, Some(2)),
            camera(Priority::Normal, Some(2)),
        ];
        let a = allocate(1_000 * K, &demands);
        let (x, y) = (a.targets[0].unwrap(), a.targets[1].unwrap());
        assert!(x.spatial.abs_diff(y.spatial) <= 1, "{x:?} vs {y:?}");
        assert!(a.allocated <= 1_000 * K);
    }

    #[test]
    fn a_tile_smaller_than_every_layer_still_gets_the_smallest() {
        let mut d = camera(Priority::Normal, Some(0));
        d.layers[0] = None;
        let a = allocate(10_000 * K, &[d]);
        assert_eq!(a.targets[0], Some(Layer::new(1, 2)));
    }

    #[test]
    fn without_temporal_layers_there_is_one_step_per_spatial_layer() {
        let mut d = camera(Priority::Normal, Some(2));
        d.temporal_layers = 1;
        // Without temporal layering every packet counts as base layer.
        d.layers = [
            Some([150 * K; 3]),
            Some([500 * K; 3]),
            Some([1_500 * K; 3]),
            None,
        ];
        let a = allocate(600 * K, &[d]);
        assert_eq!(a.targets[0], Some(Layer::new(1, 0)));
        assert_eq!(a.allocated, 500 * K);
    }
}

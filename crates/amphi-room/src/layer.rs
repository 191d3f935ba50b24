//! Which simulcast layer of a video track one subscriber receives.
//!
//! A publisher sends up to three spatial layers (simulcast encodings, by
//! `rid`), each possibly with temporal layers (VP8 TID). The allocator sets a
//! target per subscriber and track; the [`LayerSelector`] moves towards it
//! without ever breaking the picture:
//!
//! - a spatial switch happens only at a keyframe of the target layer; until
//!   it arrives the current layer keeps flowing, and the caller asks the
//!   publisher for that keyframe;
//! - a temporal step down happens at the next frame; a step up waits for a
//!   frame the decoder can start from (base layer, or a layer-sync frame);
//! - pausing stops at once; resuming waits for a keyframe.
//!
//! While the subscriber's connection is congested (its send queue backs
//! up, see `sfu::backlog`), the selector sheds what it can without breaking
//! the picture: the temporal enhancement frames, and the old layer of a
//! pending switch down, whose frames would only delay the new keyframe.

/// A spatial (simulcast encoding) and temporal layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Layer {
    pub spatial: u8,
    pub temporal: u8,
}

impl Layer {
    pub const fn new(spatial: u8, temporal: u8) -> Self {
        Layer { spatial, temporal }
    }
}

/// The most temporal layers we expect (VP8 L1T3).
pub const MAX_TEMPORAL: u8 = 2;

/// The most spatial layers (simulcast encodings) a track may have. Browsers
/// send three; the rids of an offer beyond this are not used.
pub const MAX_SPATIAL_LAYERS: usize = 4;
// Layer sets are bit masks: dynacast's in a `u32`, keyframe waits' in a `u8`.
const _: () = assert!(MAX_SPATIAL_LAYERS <= 8);

/// One packet, as the selector sees it.
#[derive(Debug, Clone, Copy)]
pub struct LayerPacket {
    pub spatial: u8,
    /// VP8 TID; `None` for codecs or encoders without temporal layers.
    pub temporal: Option<u8>,
    pub layer_sync: bool,
    pub frame_start: bool,
    pub keyframe_start: bool,
}

/// What to do with a packet for this subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Forward it.
    Forward,
    /// Forward it: it is the keyframe that starts a new spatial layer (the
    /// numbering must continue from the last packet sent).
    Switch,
    /// Not for this subscriber, but from the layer being forwarded: the
    /// outgoing numbering must close the gap it leaves.
    Skip,
    /// Not from the layer being forwarded: ignore.
    Ignore,
    /// The target layer is needed and this is not its keyframe: ignore, and
    /// make sure a keyframe of `spatial` is on its way.
    NeedKeyframe { spatial: u8 },
}

#[derive(Debug, Default)]
pub struct LayerSelector {
    /// What the allocator wants; `None`: paused.
    target: Option<Layer>,
    /// What is being forwarded; `None` until the first keyframe, and while
    /// paused.
    current: Option<Layer>,
    /// Set once a target has been given (before that, everything passes).
    managed: bool,
    /// The connection's send queue backs up.
    congested: bool,
}

impl LayerSelector {
    pub fn target(&self) -> Option<Layer> {
        self.target
    }

    /// The target, once the allocator has set one (`None` before, and
    /// while paused).
    pub fn managed_target(&self) -> Option<Layer> {
        self.target.filter(|_| self.managed)
    }

    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// Whether the allocator has set a target yet.
    pub fn is_managed(&self) -> bool {
        self.managed
    }

    /// Whether anything of this track is sent to this subscriber.
    pub fn is_paused(&self) -> bool {
        self.managed && self.target.is_none()
    }

    pub fn set_target(&mut self, target: Option<Layer>) {
        self.managed = true;
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
    }

    /// Whether the connection this track goes out on backs up. Takes effect
    /// at the next frame; enhancement frames come back at the next frame a
    /// decoder can step up at once it is cleared.
    pub fn set_congested(&mut self, congested: bool) {
        self.congested = congested;
    }

    pub fn is_congested(&self) -> bool {
        self.congested
    }

    /// Forget what is being forwarded: the next packet must be a keyframe
    /// of the target (after a publisher restart, for instance).
    pub fn reset(&mut self) {
        self.current = None;
    }

    pub fn select(&mut self, p: LayerPacket) -> Selection {
        if !self.managed {
            return self.select_unmanaged(p);
        }
        let Some(target) = self.target else {
            return Selection::Ignore;
        };
        match self.current {
            // Congested, with a lower layer to go to: whatever more of this
            // one is sent only queues in front of the new keyframe.
            Some(cur)
                if self.congested
                    && p.frame_start
                    && cur.spatial == p.spatial
                    && target.spatial < cur.spatial =>
            {
                self.current = None;
                Selection::NeedKeyframe {
                    spatial: target.spatial,
                }
            }
            Some(mut cur) if cur.spatial == p.spatial => {
                let tid = p.temporal.unwrap_or(0);
                if p.frame_start {
                    let wanted = if self.congested { 0 } else { target.temporal };
                    let up = wanted > cur.temporal && (tid == 0 || p.layer_sync) && tid <= wanted;
                    if wanted < cur.temporal || up {
                        cur.temporal = wanted;
                        self.current = Some(cur);
                    }
                }
                if tid > cur.temporal {
                    Selection::Skip
                } else {
                    Selection::Forward
                }
            }
            _ if p.spatial == target.spatial => {
                if p.keyframe_start {
                    self.current = Some(Layer::new(p.spatial, target.temporal));
                    Selection::Switch
                } else {
                    Selection::NeedKeyframe { spatial: p.spatial }
                }
            }
            None => Selection::NeedKeyframe {
                spatial: target.spatial,
            },
            Some(_) => Selection::Ignore,
        }
    }

    /// Before the first allocation: start at whichever keyframe comes
    /// first, move up at a higher layer's keyframe, drop no temporal layer.
    fn select_unmanaged(&mut self, p: LayerPacket) -> Selection {
        match self.current {
            Some(cur) if cur.spatial == p.spatial => Selection::Forward,
            Some(cur) if p.spatial > cur.spatial && p.keyframe_start => {
                self.current = Some(Layer::new(p.spatial, MAX_TEMPORAL));
                Selection::Switch
            }
            Some(_) => Selection::Ignore,
            None if p.keyframe_start => {
                self.current = Some(Layer::new(p.spatial, MAX_TEMPORAL));
                Selection::Switch
            }
            None => Selection::NeedKeyframe { spatial: p.spatial },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(spatial: u8, temporal: u8, key: bool) -> LayerPacket {
        LayerPacket {
            spatial,
            temporal: Some(temporal),
            layer_sync: false,
            frame_start: true,
            keyframe_start: key,
        }
    }

    #[test]
    fn starts_at_a_keyframe_of_the_target() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(0, 2)));
        assert_eq!(
            s.select(pkt(0, 0, false)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(
            s.select(pkt(1, 0, true)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
        assert_eq!(s.select(pkt(0, 1, false)), Selection::Forward);
        assert_eq!(s.select(pkt(1, 0, false)), Selection::Ignore);
    }

    #[test]
    fn switching_up_keeps_the_old_layer_until_the_new_keyframe() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(0, 2)));
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
        s.set_target(Some(Layer::new(2, 2)));
        // Still the low layer: no gap for the viewer.
        assert_eq!(s.select(pkt(0, 1, false)), Selection::Forward);
        assert_eq!(
            s.select(pkt(2, 1, false)),
            Selection::NeedKeyframe { spatial: 2 }
        );
        assert_eq!(s.select(pkt(0, 0, false)), Selection::Forward);
        assert_eq!(s.select(pkt(2, 0, true)), Selection::Switch);
        assert_eq!(s.current(), Some(Layer::new(2, 2)));
        // From now on the low layer is someone else's.
        assert_eq!(s.select(pkt(0, 0, false)), Selection::Ignore);
        assert_eq!(s.select(pkt(2, 2, false)), Selection::Forward);
    }

    #[test]
    fn temporal_steps_down_at_once_and_up_at_a_base_frame() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(1, 2)));
        assert_eq!(s.select(pkt(1, 0, true)), Selection::Switch);
        s.set_target(Some(Layer::new(1, 0)));
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Skip);
        assert_eq!(s.select(pkt(1, 1, false)), Selection::Skip);
        assert_eq!(s.select(pkt(1, 0, false)), Selection::Forward);
        s.set_target(Some(Layer::new(1, 2)));
        // A TID 2 frame that is no sync point cannot be decoded yet.
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Skip);
        assert_eq!(s.select(pkt(1, 0, false)), Selection::Forward);
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Forward);
        // Continuation packets of a frame follow the frame's decision.
        let mut middle = pkt(1, 2, false);
        middle.frame_start = false;
        assert_eq!(s.select(middle), Selection::Forward);
    }

    #[test]
    fn congestion_sheds_enhancement_frames_until_cleared() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(1, 2)));
        assert_eq!(s.select(pkt(1, 0, true)), Selection::Switch);
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Forward);
        s.set_congested(true);
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Skip);
        assert_eq!(s.select(pkt(1, 1, false)), Selection::Skip);
        assert_eq!(s.select(pkt(1, 0, false)), Selection::Forward);
        let mut sync = pkt(1, 1, false);
        sync.layer_sync = true;
        assert_eq!(s.select(sync), Selection::Skip);
        // The target is untouched: the allocator still wants the full rate.
        assert_eq!(s.target(), Some(Layer::new(1, 2)));
        s.set_congested(false);
        // Back at the next frame a decoder can start from.
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Skip);
        assert_eq!(s.select(sync), Selection::Forward);
        assert_eq!(s.select(pkt(1, 2, false)), Selection::Forward);
    }

    #[test]
    fn congestion_drops_the_old_layer_of_a_switch_down() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(2, 2)));
        assert_eq!(s.select(pkt(2, 0, true)), Selection::Switch);
        s.set_target(Some(Layer::new(0, 2)));
        // Not congested: the old layer flows until the new keyframe.
        assert_eq!(s.select(pkt(2, 1, false)), Selection::Forward);
        s.set_congested(true);
        assert_eq!(
            s.select(pkt(2, 0, false)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(
            s.select(pkt(2, 0, false)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(
            s.select(pkt(0, 0, false)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
        // Still congested on the new layer: its base layer only.
        assert_eq!(s.select(pkt(0, 2, false)), Selection::Skip);
        assert_eq!(s.select(pkt(0, 0, false)), Selection::Forward);
    }

    #[test]
    fn congestion_keeps_a_switch_up_pending_layer_flowing() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(0, 2)));
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
        s.set_target(Some(Layer::new(1, 2)));
        s.set_congested(true);
        // Dropping the only layer there is would freeze the picture.
        assert_eq!(s.select(pkt(0, 0, false)), Selection::Forward);
        assert_eq!(s.select(pkt(0, 2, false)), Selection::Skip);
    }

    #[test]
    fn pause_stops_at_once_and_resume_waits_for_a_keyframe() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(0, 2)));
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
        s.set_target(None);
        assert!(s.is_paused());
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Ignore);
        s.set_target(Some(Layer::new(0, 2)));
        assert_eq!(
            s.select(pkt(0, 1, false)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
    }

    #[test]
    fn without_allocation_the_first_keyframe_of_any_layer_starts_and_higher_ones_win() {
        let mut s = LayerSelector::default();
        assert_eq!(
            s.select(pkt(0, 0, false)),
            Selection::NeedKeyframe { spatial: 0 }
        );
        assert_eq!(s.select(pkt(0, 0, true)), Selection::Switch);
        assert_eq!(s.select(pkt(0, 2, false)), Selection::Forward);
        assert_eq!(s.select(pkt(1, 0, true)), Selection::Switch);
        assert_eq!(s.select(pkt(0, 0, false)), Selection::Ignore);
    }

    #[test]
    fn a_stream_without_temporal_layers_passes_whole() {
        let mut s = LayerSelector::default();
        s.set_target(Some(Layer::new(0, 0)));
        let mut p = pkt(0, 0, true);
        p.temporal = None;
        assert_eq!(s.select(p), Selection::Switch);
        p.keyframe_start = false;
        assert_eq!(s.select(p), Selection::Forward);
    }
}

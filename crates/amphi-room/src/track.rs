//! A published track: one sending m-line of a publisher connection, and
//! its simulcast layers.

use std::time::{Duration, Instant};

use amphi_protocol::{MediaKind, Source, TrackInfo};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Mid, Pt, Rid};

use crate::ids::TrackId;
use crate::keyframe::{KeyframeThrottle, VideoCodec};
use crate::layer::{MAX_SPATIAL_LAYERS, MAX_TEMPORAL};

/// A layer that sent nothing for this long is gone (the encoder dropped it,
/// or the camera is off), unless we paused it ourselves.
const LAYER_SILENT_AFTER: Duration = Duration::from_millis(1_500);

/// How long a layer we asked the publisher to start again gets to show up.
const LAYER_STARTUP: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub(crate) struct PublishedTrack {
    pub id: TrackId,
    pub mid: Mid,
    pub source: Source,
    pub muted: bool,
    /// Index = spatial layer, lowest first (the order of the offer's
    /// `a=simulcast` line); one entry without simulcast.
    pub layers: Vec<SpatialLayer>,
    /// Whether packets ever carried a VP8 temporal layer index.
    pub temporal_layers: bool,
}

/// One simulcast encoding of a track.
#[derive(Debug)]
pub(crate) struct SpatialLayer {
    pub rid: Option<Rid>,
    pub keyframes: KeyframeThrottle,
    pub last_packet: Option<Instant>,
    /// Frame size, from the last keyframe.
    pub size: Option<(u16, u16)>,
    /// Bytes per temporal layer since the last rate update.
    bytes: [u64; (MAX_TEMPORAL + 1) as usize],
    /// Smoothed bits/s per temporal layer (not cumulative).
    rates: [f64; (MAX_TEMPORAL + 1) as usize],
    measured: bool,
    /// What we last told the publisher (dynacast); a new encoding is on.
    pub active_at_source: bool,
    /// When we last asked for it to be started again.
    pub resumed_at: Option<Instant>,
    /// Since when no subscriber needs it.
    pub unneeded_since: Option<Instant>,
}

impl SpatialLayer {
    pub fn new(rid: Option<Rid>) -> Self {
        SpatialLayer {
            rid,
            keyframes: KeyframeThrottle::default(),
            last_packet: None,
            size: None,
            bytes: [0; (MAX_TEMPORAL + 1) as usize],
            rates: [0.0; (MAX_TEMPORAL + 1) as usize],
            measured: false,
            active_at_source: true,
            resumed_at: None,
            unneeded_since: None,
        }
    }

    /// Counts a packet of this layer; `true` if the layer was not
    /// `available` before it (its first packet, or the first after a
    /// silence), so that subscribers need not wait for the next allocation.
    pub fn observe(&mut self, now: Instant, bytes: usize, temporal: Option<u8>) -> bool {
        let came = !self.available(now);
        self.last_packet = Some(now);
        let t = usize::from(temporal.unwrap_or(0).min(MAX_TEMPORAL));
        self.bytes[t] += bytes as u64;
        came
    }

    /// Folds the bytes seen over `elapsed` into the smoothed rates.
    pub fn update_rates(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let flowing = self.bytes.iter().any(|b| *b > 0);
        for (rate, bytes) in self.rates.iter_mut().zip(self.bytes.iter_mut()) {
            let now = *bytes as f64 * 8.0 / secs;
            *bytes = 0;
            if flowing {
                // Fast enough to follow an encoder ramping up, slow enough
                // not to react to one large keyframe.
                *rate = if self.measured {
                    0.7 * *rate + 0.3 * now
                } else {
                    now
                };
            }
        }
        // A paused layer keeps its last rate: what it will cost to resume.
        self.measured |= flowing;
    }

    /// Whether a subscriber can be given this layer.
    pub fn available(&self, now: Instant) -> bool {
        !self.active_at_source
            || self
                .resumed_at
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_STARTUP)
            || self
                .last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_SILENT_AFTER)
    }

    /// Bits/s up to each temporal layer, measured or, before any
    /// measurement, `nominal`.
    pub fn cumulative_rates(&self, nominal: u64) -> [u64; (MAX_TEMPORAL + 1) as usize] {
        if !self.measured {
            return [nominal / 2, nominal * 3 / 4, nominal];
        }
        let mut out = [0u64; (MAX_TEMPORAL + 1) as usize];
        let mut sum = 0.0;
        for (o, r) in out.iter_mut().zip(self.rates.iter()) {
            sum += r;
            *o = sum as u64;
        }
        out
    }
}

impl PublishedTrack {
    pub fn new(id: TrackId, mid: Mid, source: Source, muted: bool, rids: &[Rid]) -> Self {
        let layers = if rids.is_empty() {
            vec![SpatialLayer::new(None)]
        } else {
            // What the allocator and dynacast can track; a publisher
            // offering more gets the first ones used.
            rids.iter()
                .take(MAX_SPATIAL_LAYERS)
                .map(|r| SpatialLayer::new(Some(*r)))
                .collect()
        };
        PublishedTrack {
            id,
            mid,
            source,
            muted,
            layers,
            temporal_layers: false,
        }
    }

    pub fn kind(&self) -> MediaKind {
        self.source.kind()
    }

    /// The spatial layer of packets with this rid (no rid: the first).
    pub fn spatial_of(&self, rid: Option<Rid>) -> Option<u8> {
        match rid {
            None => Some(0),
            Some(r) => self
                .layers
                .iter()
                .position(|l| l.rid == Some(r))
                .map(|i| i as u8),
        }
    }

    /// What a layer is expected to cost before it has been measured.
    pub fn nominal_rate(&self, spatial: u8) -> u64 {
        const LADDER: [u64; 3] = [150_000, 500_000, 1_500_000];
        if self.kind() == MediaKind::Audio {
            return 48_000;
        }
        let from_top = self.layers.len().saturating_sub(usize::from(spatial) + 1);
        LADDER[LADDER.len() - 1 - from_top.min(LADDER.len() - 1)]
    }

    /// A layer's frame size, measured or assumed (720p at the top, halved
    /// per layer below).
    pub fn layer_size(&self, spatial: u8) -> (u32, u32) {
        if let Some((w, h)) = self.layers.get(usize::from(spatial)).and_then(|l| l.size) {
            return (u32::from(w), u32::from(h));
        }
        let below_top = self.layers.len().saturating_sub(usize::from(spatial) + 1) as u32;
        (1280 >> below_top, 720 >> below_top)
    }

    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id.to_string(),
            kind: self.kind(),
            source: self.source,
            muted: self.muted,
        }
    }
}

/// What the forwarding path needs to know about an incoming packet's codec.
#[derive(Debug, Clone)]
pub(crate) struct CodecInfo {
    pub params: PayloadParams,
    pub video: Option<VideoCodec>,
    pub clock_rate: u32,
}

impl CodecInfo {
    /// The codec behind payload type `pt`, if it is one we forward.
    pub fn find(params: &[PayloadParams], pt: Pt) -> Option<CodecInfo> {
        let p = params.iter().find(|p| p.pt() == pt)?;
        let spec = p.spec();
        let video = match spec.codec {
            Codec::Vp8 => Some(VideoCodec::Vp8),
            Codec::H264 => Some(VideoCodec::H264),
            Codec::Opus => None,
            _ => return None,
        };
        Some(CodecInfo {
            params: *p,
            video,
            clock_rate: spec.clock_rate.get(),
        })
    }
}

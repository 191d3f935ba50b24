//! A published track: one sending m-line of a publisher connection.

use amphi_protocol::{MediaKind, Source, TrackInfo};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Mid, Pt};

use crate::ids::TrackId;
use crate::keyframe::{KeyframeThrottle, VideoCodec};

#[derive(Debug)]
pub(crate) struct PublishedTrack {
    pub id: TrackId,
    pub mid: Mid,
    pub source: Source,
    pub muted: bool,
    pub keyframes: KeyframeThrottle,
}

impl PublishedTrack {
    pub fn kind(&self) -> MediaKind {
        self.source.kind()
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

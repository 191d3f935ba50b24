//! A participant: who they are, what they may do, and their two peer
//! connections.

use std::collections::HashMap;
use std::time::Instant;

use amphi_protocol::{MediaKind, ParticipantInfo, Permissions, Role, Source};
use str0m::Rtc;
use str0m::change::SdpPendingOffer;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::Ssrc;

use crate::forwarder::Forwarder;
use crate::ids::{ParticipantId, TrackId};
use crate::keyframe::VideoCodec;
use crate::layer::LayerSelector;
use crate::track::PublishedTrack;
use crate::vp8::PictureNumbering;

#[derive(Debug)]
pub(crate) struct Participant {
    pub id: ParticipantId,
    pub room: String,
    pub identity: String,
    pub name: String,
    /// Current role and rights: the token's, unless a moderator promoted them.
    pub role: Role,
    pub permissions: Permissions,
    /// What the token gave, to return to after a promotion is withdrawn.
    pub token_role: Role,
    pub token_permissions: Permissions,
    pub publisher: Publisher,
    pub subscriber: Subscriber,
    /// Order in which the hand was raised (lower first), if it is.
    pub hand: Option<u64>,
    /// Breakout group (None: the main room).
    pub group: Option<String>,
    /// In ask-to-speak mode, the microphone passes.
    pub floor: bool,
    /// Sources a moderator muted: not forwarded until the participant
    /// unmutes them themselves.
    pub blocked: Vec<Source>,
    /// Chat allowance (token bucket) and when it was last topped up.
    pub chat_allowance: (f64, Instant),
}

impl Participant {
    pub fn info(&self, ask_to_speak: bool) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.to_string(),
            identity: self.identity.clone(),
            name: self.name.clone(),
            role: self.role,
            tracks: self
                .publisher
                .tracks
                .iter()
                .map(|t| {
                    let mut info = t.info();
                    info.muted |= self.silenced(t.source, ask_to_speak);
                    info
                })
                .collect(),
            hand_raised: self.hand.is_some(),
            group: self.group.clone(),
            floor: self.floor,
        }
    }

    /// Whether the server holds back this source, whatever the client sends.
    pub fn silenced(&self, source: Source, ask_to_speak: bool) -> bool {
        self.blocked.contains(&source)
            || !self.permissions.publish_sources.contains(&source)
            || (ask_to_speak
                && source == Source::Microphone
                && !self.permissions.moderate
                && !self.floor)
    }

    pub fn connection(&mut self, which: Pc) -> &mut Connection {
        match which {
            Pc::Publisher => &mut self.publisher.conn,
            Pc::Subscriber => &mut self.subscriber.conn,
        }
    }
}

/// Which of a participant's two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Pc {
    Publisher,
    Subscriber,
}

/// One str0m peer connection and what the engine tracks about it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub rtc: Rtc,
    /// Since when ICE has been disconnected, if it is.
    pub disconnected_since: Option<Instant>,
}

impl Connection {
    pub fn new(rtc: Rtc) -> Self {
        Connection {
            rtc,
            disconnected_since: None,
        }
    }
}

/// The connection on which the client offers and sends its own media.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub conn: Connection,
    pub tracks: Vec<PublishedTrack>,
    /// Which m-line each incoming SSRC belongs to. Browsers stop sending the
    /// MID header extension once the stream is established, so we remember.
    pub ssrc_mids: HashMap<Ssrc, (Mid, Option<Rid>)>,
}

impl Publisher {
    pub fn track_by_mid(&mut self, mid: Mid) -> Option<&mut PublishedTrack> {
        self.tracks.iter_mut().find(|t| t.mid == mid)
    }

    pub fn track(&self, id: TrackId) -> Option<&PublishedTrack> {
        self.tracks.iter().find(|t| t.id == id)
    }

    pub fn track_mut(&mut self, id: TrackId) -> Option<&mut PublishedTrack> {
        self.tracks.iter_mut().find(|t| t.id == id)
    }
}

/// The connection on which the server offers and sends everyone else's media.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub conn: Connection,
    pub tracks: Vec<DownTrack>,
    /// The offer we sent and whose answer we wait for.
    pub pending: Option<SdpPendingOffer>,
    /// The first m-line is an inactive audio m-line that carries nothing and
    /// is never removed. Browsers tie the bundled transport to the first
    /// m-line of the BUNDLE group; stopping that m-line (because its track's
    /// publisher left) would make them tear down the whole connection.
    pub anchored: bool,
    /// The downlink bandwidth estimate (str0m's send-side BWE), bits/s.
    pub estimate: Option<u64>,
    /// When the allocator may next go one step beyond the estimate while
    /// the connection is application-limited, and the wait after that.
    pub beyond_estimate: (Option<Instant>, std::time::Duration),
    /// When the allocator last went one step beyond the estimate.
    pub stepped_beyond_at: Option<Instant>,
    /// Packets were written to it since the last drain (`Sfu::forwarded`).
    pub forwarded: bool,
    /// Its next offer waits for the next turn (`Sfu::negotiate`).
    pub offer_queued: bool,
}

impl Subscriber {
    /// A track to start receiving. It is offered with the next negotiation.
    pub fn add(&mut self, publisher: ParticipantId, track: TrackId, source: Source) {
        for t in self.tracks.iter_mut().filter(|t| t.track == track) {
            match t.state {
                // Wanted again before the stop was offered: keep it.
                DownState::ToStop(mid) => {
                    t.state = DownState::Open(mid);
                    return;
                }
                DownState::Negotiating(_) => {
                    t.remove_when_open = false;
                    return;
                }
                DownState::ToOpen | DownState::Open(_) => return,
                // Its m-line is going away; a new one is offered below.
                DownState::Stopping(_) => {}
            }
        }
        // The codec is not known until packets arrive; the forwarder learns
        // it from them. Video waits for a keyframe whatever the codec.
        let forwarder = match source.kind() {
            MediaKind::Video => Forwarder::new(Some(VideoCodec::Vp8), 90_000),
            MediaKind::Audio => Forwarder::new(None, 48_000),
        };
        self.tracks.push(DownTrack {
            publisher,
            track,
            source,
            state: DownState::ToOpen,
            remove_when_open: false,
            forwarder,
            pt_map: None,
            selector: LayerSelector::default(),
            pictures: PictureNumbering::default(),
            view: None,
            max_spatial: None,
        });
    }

    /// A track to stop receiving: its m-line is stopped with the next
    /// negotiation, or at once if it was never offered.
    pub fn remove(&mut self, track: TrackId) {
        self.tracks.retain_mut(|t| {
            if t.track != track {
                return true;
            }
            match t.state {
                DownState::ToOpen => return false,
                DownState::Negotiating(_) => t.remove_when_open = true,
                DownState::Open(mid) => t.state = DownState::ToStop(mid),
                DownState::ToStop(_) | DownState::Stopping(_) => {}
            }
            true
        });
    }

    /// The tracks this subscriber receives or is about to.
    pub fn wanted(&self) -> impl Iterator<Item = TrackId> + '_ {
        self.tracks
            .iter()
            .filter(|t| match t.state {
                DownState::ToOpen | DownState::Open(_) => true,
                DownState::Negotiating(_) => !t.remove_when_open,
                DownState::ToStop(_) | DownState::Stopping(_) => false,
            })
            .map(|t| t.track)
    }

    pub fn needs_negotiation(&self) -> bool {
        self.pending.is_none()
            && self
                .tracks
                .iter()
                .any(|t| matches!(t.state, DownState::ToOpen | DownState::ToStop(_)))
    }
}

/// One remote track as seen by one subscriber.
#[derive(Debug)]
pub(crate) struct DownTrack {
    pub publisher: ParticipantId,
    pub track: TrackId,
    pub source: Source,
    pub state: DownState,
    /// The publisher went away while this m-line was being offered.
    pub remove_when_open: bool,
    pub forwarder: Forwarder,
    /// The last incoming payload type and the outgoing one it maps to.
    pub pt_map: Option<(Pt, Pt)>,
    /// Video: which simulcast/temporal layer goes out.
    pub selector: LayerSelector,
    /// Video (VP8): the picture numbering this subscriber sees.
    pub pictures: PictureNumbering,
    /// How the subscriber shows it (`track_settings`); `None` until told.
    pub view: Option<View>,
    /// The largest spatial layer the view can use, from the last
    /// allocation: dynacast keeps it encoded even while the bandwidth
    /// estimate catches up, so an enlarged tile does not also wait for the
    /// publisher's encoder to start.
    pub max_spatial: Option<u8>,
}

/// A subscriber's tile for one video track, in device pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub visible: bool,
    pub width: u32,
    pub height: u32,
}

/// The life of a subscriber m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DownState {
    /// To be added in the next offer.
    ToOpen,
    /// Offered; waiting for the answer.
    Negotiating(Mid),
    /// Answered: media flows.
    Open(Mid),
    /// To be stopped in the next offer.
    ToStop(Mid),
    /// Stop offered; waiting for the answer, then forgotten.
    Stopping(Mid),
}

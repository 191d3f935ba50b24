//! The engine: every room, participant and peer connection of one media
//! thread, driven by [`Sfu::handle_input`] and read out by
//! [`Sfu::poll_output`], exactly as a str0m `Rtc` is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use amphi_protocol::{
    ClientMessage, ErrorCode, LeaveReason, ParticipantInfo, Permissions, PublishTrack, Role,
    ServerMessage, Source, SubscribedTrack,
};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Rids};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Vp8Descriptor};
use str0m::{Candidate, Event, IceConnectionState, Rtc, RtcConfig};
use tracing::{debug, info, warn};

use crate::certificate::Certificate;
use crate::config::SfuConfig;
use crate::forwarder::{IncomingPacket, Verdict};
use crate::ids::{IdMap, ParticipantId, TrackId};
use crate::keyframe::{VideoCodec, starts_keyframe};
use crate::layer::{LayerPacket, Selection};
use crate::participant::{self, Connection, DownState, Participant, Pc, Publisher, Subscriber};
use crate::room::Room;
use crate::stats::SfuStats;
use crate::timers::Timers;
use crate::track::PublishedTrack;
use crate::vp8::{PictureNumbering, Vp8Info};

mod allocation;
mod backlog;
mod classroom;
mod quality;
mod speaker;

use classroom::CHAT_BURST;

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Timeouts one [`Sfu::drain`] serves before leaving the rest to the
/// timers, so one busy connection cannot hold up the others.
const MAX_TURNS: u32 = 64;

/// Something that happened, for the engine to act on.
// Inputs are handed over by value and never stored, so the size of the
// datagram variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram arrived on the media socket.
    Receive(Instant, Receive<'a>),
    /// Time passed. Feed it when the last [`Output::Timeout`] falls due.
    Timeout(Instant),
    /// The signalling side has something for the engine.
    Command(Instant, Command),
}

/// What the signalling side tells the engine.
#[derive(Debug)]
pub enum Command {
    /// A participant whose token was verified enters a room.
    Join(JoinRequest),
    /// A message from a joined participant (anything but `join`).
    Message {
        participant: ParticipantId,
        message: ClientMessage,
    },
    /// The participant's signalling ended; forget them.
    Leave {
        participant: ParticipantId,
        reason: LeaveReason,
    },
}

/// Everything the engine needs to know about a newcomer. The token has been
/// checked by then; the engine never sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub participant: ParticipantId,
    pub room: String,
    pub identity: String,
    pub name: String,
    pub role: Role,
    pub permissions: Permissions,
}

/// Something the engine wants done.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram.
    Transmit(Transmit),
    /// Send this message to the participant's signalling connection.
    Signal {
        participant: ParticipantId,
        message: ServerMessage,
    },
    /// Close the participant's signalling connection; the engine has already
    /// forgotten them.
    Close { participant: ParticipantId },
    /// Something happened that the outside world may want to know about
    /// (webhooks, metrics, audit logs).
    Event(SfuEvent),
    /// Call [`Sfu::handle_input`] with [`Input::Timeout`] at this time.
    Timeout(Instant),
}

/// Room and participant lifecycle, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    RoomStarted {
        room: String,
    },
    RoomEnded {
        room: String,
    },
    ParticipantJoined {
        room: String,
        participant: ParticipantId,
        identity: String,
        name: String,
        role: Role,
    },
    ParticipantLeft {
        room: String,
        participant: ParticipantId,
        identity: String,
        reason: LeaveReason,
    },
}

/// Something the engine must do at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Deadline {
    /// str0m wants `handle_input(Timeout)` on this connection.
    Connection(ParticipantId, Pc),
    /// This connection has been disconnected for `media_timeout`.
    MediaTimeout(ParticipantId, Pc),
    /// A deferred keyframe request of this publisher falls due.
    Keyframe(ParticipantId),
}

/// All rooms of one media thread.
pub struct Sfu {
    config: SfuConfig,
    participants: IdMap<ParticipantId, Participant>,
    rooms: HashMap<String, Room>,
    /// Which connection a remote address talks to, learnt from ICE.
    // Keyed by protocol too: a NAT may give one client's UDP and another's
    // TCP connection the same address and port.
    routes: HashMap<(Protocol, SocketAddr), (ParticipantId, Pc)>,
    outputs: VecDeque<Output>,
    /// Connections written to since they were last polled.
    dirty: Vec<(ParticipantId, Pc)>,
    /// Subscriber connections that forwarded packets were written to since
    /// the last `poll_output` (each flagged `Subscriber::forwarded`). They are
    /// drained there, once per batch of input: str0m makes a written packet
    /// sendable only in a timeout, and one with any other deadline due walks
    /// every stream of the connection, so one drain per batch instead of one
    /// per packet saves most of that on a connection receiving many tracks.
    forwarded: Vec<ParticipantId>,
    next_track: u64,
    /// Rooms a moderator ended: closed to everyone else until a moderator
    /// comes back.
    ended_rooms: HashSet<String>,
    /// Identities removed from a room, until when.
    banned: HashMap<(String, String), Instant>,
    /// Wall-clock time (ms since the epoch) at `wall_base.0`, for stamping
    /// chat messages without reading the clock on every message.
    wall_base: (Instant, u64),
    stats: SfuStats,
    /// Who speaks in each room and group (sfu/speaker.rs).
    speakers: speaker::Speakers,
    /// Connection quality and per-stream figures (sfu/quality.rs).
    quality: quality::QualityMonitor,
    /// When layers are next re-allocated and dynacast re-evaluated.
    next_media_tick: Instant,
    /// Per-connection and per-publisher deadlines (timers.rs).
    timers: Timers<Deadline>,
    /// Reused by `handle_timeout` for the deadlines that fell due.
    due: Vec<Deadline>,
    /// Reused by every allocation run (sfu/allocation.rs).
    allocation: allocation::Scratch,
    /// Audio in RED as each kind of subscriber gets it, per packet.
    red_copies: crate::recovery::RedCopies,
    /// The time of the latest input: the engine reads no clock of its own.
    now: Instant,
    /// Subscribers whose new offer waits for the next turn, and the offers
    /// this turn may still make (see `negotiate`).
    offers_queued: VecDeque<ParticipantId>,
    offers_left: usize,
    /// Rooms whose doors opened while some waited, until all are let in
    /// (`admit_through_open_doors`).
    admitting: VecDeque<String>,
    /// The DTLS certificate new connections present (certificate.rs).
    certificate: Certificate,
}

/// Subscribe offers made in one turn of the media thread (one timeout)
/// before the rest wait for the next. Someone who starts publishing in a
/// room of 375 changes 376 subscriptions; made in one go, their offers kept
/// the media thread from everyone's packets for 22 ms (benches/forward.rs,
/// `AMPHI_PUBLISH_PROBE`).
const OFFERS_PER_TURN: usize = 16;

impl Sfu {
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        Sfu {
            config,
            participants: IdMap::default(),
            rooms: HashMap::new(),
            routes: HashMap::new(),
            outputs: VecDeque::new(),
            dirty: Vec::new(),
            forwarded: Vec::new(),
            next_track: 1,
            ended_rooms: HashSet::new(),
            banned: HashMap::new(),
            wall_base: (now, unix_millis()),
            stats: SfuStats::default(),
            speakers: speaker::Speakers::default(),
            quality: quality::QualityMonitor::default(),
            next_media_tick: now + allocation::TICK,
            timers: Timers::default(),
            due: Vec::new(),
            offers_queued: VecDeque::new(),
            offers_left: OFFERS_PER_TURN,
            admitting: VecDeque::new(),
            allocation: allocation::Scratch::default(),
            red_copies: Default::default(),
            certificate: Certificate::default(),
            now,
        }
    }

    pub fn stats(&self) -> &SfuStats {
        &self.stats
    }

    /// Number of participants in `room` (0 if there is no such room).
    pub fn room_size(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// Number of rooms with at least one participant.
    pub fn room_count(&self) -> usize {
        self.rooms
            .values()
            .filter(|r| !r.members.is_empty())
            .count()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// (published tracks, tracks forwarded to subscribers), for metrics.
    pub fn track_counts(&self) -> (usize, usize) {
        let published = self.participants.values().map(|p| p.publisher.tracks.len());
        let open = |p: &Participant| {
            let t = &p.subscriber.tracks;
            t.iter()
                .filter(|t| matches!(t.state, DownState::Open(_)))
                .count()
        };
        (published.sum(), self.participants.values().map(open).sum())
    }

    /// Each subscriber connection's downlink bandwidth estimate (str0m's
    /// send-side BWE), bits/s, for metrics; subscribers without an
    /// estimate yet are left out rather than counted as 0.
    pub fn downlink_estimates(&self) -> impl Iterator<Item = u64> + '_ {
        self.participants
            .values()
            .filter_map(|p| p.subscriber.estimate)
    }

    pub fn handle_input(&mut self, input: Input<'_>) {
        let now = match &input {
            Input::Receive(t, _) | Input::Timeout(t) | Input::Command(t, _) => *t,
        };
        self.now = self.now.max(now);
        match input {
            Input::Receive(now, receive) => self.handle_receive(now, receive),
            Input::Timeout(now) => self.handle_timeout(now),
            Input::Command(now, Command::Join(req)) => self.handle_join(now, req),
            Input::Command(
                now,
                Command::Message {
                    participant,
                    message,
                },
            ) => self.handle_message(now, participant, message),
            Input::Command(
                _,
                Command::Leave {
                    participant,
                    reason,
                },
            ) => self.remove_participant(participant, reason, false),
        }
        self.flush_dirty();
    }

    /// The next thing to do. Ends with [`Output::Timeout`] when nothing is
    /// left.
    pub fn poll_output(&mut self) -> Output {
        // One subscriber at a time, so that the caller sends each one's
        // datagrams before the next are encrypted: a fan-out encrypted
        // whole before any of it left wrote every copy into a buffer of its
        // own (hundreds of kilobytes, out of the cache by the time the
        // kernel read them), and the first subscribers waited for the last.
        loop {
            if let Some(o) = self.outputs.pop_front() {
                return o;
            }
            if !self.flush_forwarded_one() {
                break;
            }
        }
        // Emptied, the queue starts again at the front of its buffer: a
        // fan-out queues a datagram per subscriber, and going round the
        // whole buffer would write each into memory the cache had dropped.
        self.outputs.clear();
        Output::Timeout(self.next_timeout())
    }

    // ----- signalling ---------------------------------------------------

    fn handle_join(&mut self, now: Instant, req: JoinRequest) {
        let pid = req.participant;
        if self.participants.contains_key(&pid) {
            self.signal(pid, error(ErrorCode::AlreadyJoined, "already joined"));
            return;
        }
        let moderates = req.permissions.moderate;
        if let Some(refusal) = self.refusal(now, &req) {
            self.signal(pid, refusal);
            self.outputs.push_back(Output::Close { participant: pid });
            return;
        }
        if moderates {
            // A moderator reopens a meeting that was ended.
            self.ended_rooms.remove(&req.room);
        }
        // The same person in the same room again: a reloaded tab or a second
        // device. The newest one wins, as in LiveKit.
        let previous = self.rooms.get(&req.room).and_then(|room| {
            room.members.iter().copied().find(|id| {
                self.participants
                    .get(id)
                    .is_some_and(|p| p.identity == req.identity)
            })
        });
        if let Some(old) = previous {
            self.remove_participant(old, LeaveReason::Replaced, true);
        }
        let waits = !moderates
            && self
                .rooms
                .get(&req.room)
                .is_some_and(|r| r.waiting_room && !r.members.is_empty());
        if waits {
            self.wait_in_lobby(req);
            return;
        }
        self.admit(now, req);
    }

    /// Why `req` may not enter its room at all, if it may not.
    fn refusal(&mut self, now: Instant, req: &JoinRequest) -> Option<ServerMessage> {
        let key = (req.room.clone(), req.identity.clone());
        self.banned.retain(|_, until| now < *until);
        if self.banned.contains_key(&key) {
            return Some(error(
                ErrorCode::Forbidden,
                "a moderator removed you from this meeting",
            ));
        }
        if req.permissions.moderate {
            return None;
        }
        if self.ended_rooms.contains(&req.room) {
            return Some(error(
                ErrorCode::RoomEnded,
                "the meeting has ended; it opens again when a teacher enters",
            ));
        }
        if self.rooms.get(&req.room).is_some_and(|r| r.locked) {
            return Some(error(
                ErrorCode::RoomLocked,
                "the room is locked: no new participants",
            ));
        }
        if self.room_size(&req.room) >= self.config.max_participants_per_room {
            return Some(error(
                ErrorCode::RoomFull,
                "the room has reached its participant limit",
            ));
        }
        None
    }

    /// Lets `req` into its room: connections, roster, subscriptions.
    fn admit(&mut self, now: Instant, req: JoinRequest) {
        let pid = req.participant;
        let participant = Participant {
            id: pid,
            room: req.room.clone(),
            identity: req.identity,
            name: req.name,
            role: req.role,
            permissions: req.permissions.clone(),
            token_role: req.role,
            token_permissions: req.permissions,
            publisher: Publisher {
                conn: Connection::new(self.new_rtc(now, false)),
                tracks: Vec::new(),
                ssrc_mids: HashMap::new(),
            },
            subscriber: Subscriber {
                conn: Connection::new(self.new_rtc(now, true)),
                tracks: Vec::new(),
                pending: None,
                anchored: false,
                estimate: None,
                beyond_estimate: (None, allocation::FIRST_BACKOFF),
                stepped_beyond_at: None,
                forwarded: false,
                offer_queued: false,
            },
            hand: None,
            group: None,
            floor: false,
            blocked: Vec::new(),
            chat_allowance: (CHAT_BURST, now),
        };
        let permissions = participant.permissions.clone();
        self.participants.insert(pid, participant);
        for pc in [Pc::Publisher, Pc::Subscriber] {
            self.timers.set(Deadline::Connection(pid, pc), Some(now));
        }
        // A room nobody is in may still be kept for those who wait.
        if self
            .rooms
            .get(&req.room)
            .is_none_or(|r| r.members.is_empty())
        {
            self.event(SfuEvent::RoomStarted {
                room: req.room.clone(),
            });
        }
        let room = self.rooms.entry(req.room.clone()).or_default();
        let others: Vec<ParticipantId> = room.members.clone();
        room.members.push(pid);
        let ask = room.ask_to_speak;
        let Some(info) = self.participants.get(&pid).map(|p| p.info(ask)) else {
            return;
        };
        info!(participant = %pid, room = %req.room, "participant joined");
        self.event(SfuEvent::ParticipantJoined {
            room: req.room.clone(),
            participant: pid,
            identity: info.identity.clone(),
            name: info.name.clone(),
            role: info.role,
        });

        let infos: Vec<ParticipantInfo> = others
            .iter()
            .filter_map(|id| self.participants.get(id).map(|p| p.info(ask)))
            .collect();
        let room_state = self.room_state(&req.room);
        self.signal(
            pid,
            ServerMessage::Joined {
                room: req.room.clone(),
                participant: info.clone(),
                participants: infos,
                permissions,
                room_state,
                ice_servers: self.config.ice_servers.clone(),
            },
        );
        self.broadcast(
            &others,
            &ServerMessage::ParticipantJoined { participant: info },
        );
        let someone_waits = self
            .rooms
            .get(&req.room)
            .is_some_and(|r| !r.lobby.is_empty());
        if someone_waits
            && self
                .participants
                .get(&pid)
                .is_some_and(|p| p.permissions.moderate)
        {
            self.send_lobby(&req.room);
        }
        self.sync_subscriptions(pid);
    }

    fn handle_message(&mut self, now: Instant, pid: ParticipantId, message: ClientMessage) {
        if !self.participants.contains_key(&pid) {
            if self.in_lobby(pid) {
                match message {
                    ClientMessage::Ping {} => self.signal(pid, ServerMessage::Pong {}),
                    ClientMessage::Leave {} => {
                        self.leave_lobby(pid);
                        self.outputs.push_back(Output::Close { participant: pid });
                    }
                    _ => self.signal(
                        pid,
                        error(ErrorCode::NotJoined, "you are waiting to be admitted"),
                    ),
                }
                return;
            }
            self.signal(pid, error(ErrorCode::NotJoined, "join first"));
            return;
        }
        match message {
            ClientMessage::Join { .. } => {
                self.signal(pid, error(ErrorCode::AlreadyJoined, "already joined"));
            }
            ClientMessage::PublishOffer { sdp, tracks } => {
                self.handle_publish_offer(pid, &sdp, tracks)
            }
            ClientMessage::SubscribeAnswer { sdp } => self.handle_subscribe_answer(now, pid, &sdp),
            ClientMessage::Mute { source, muted } => self.handle_mute(pid, source, muted),
            ClientMessage::TrackSettings {
                track,
                visible,
                width,
                height,
            } => {
                let view = participant::View {
                    visible,
                    width,
                    height,
                };
                self.handle_track_settings(now, pid, &track, view)
            }
            ClientMessage::Ping {} => self.signal(pid, ServerMessage::Pong {}),
            ClientMessage::GetStats {} => self.handle_get_stats(now, pid),
            ClientMessage::Leave {} => {
                self.remove_participant(pid, LeaveReason::Left, false);
                self.outputs.push_back(Output::Close { participant: pid });
            }
            classroom => self.handle_classroom(now, pid, classroom),
        }
    }

    fn handle_publish_offer(&mut self, pid: ParticipantId, sdp: &str, tracks: Vec<PublishTrack>) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        if let Err((code, msg)) = check_publish_tracks(&p.permissions, &tracks) {
            self.signal(pid, error_for(PUBLISH_OFFER, code, msg));
            return;
        }
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                self.signal(
                    pid,
                    error_for(
                        PUBLISH_OFFER,
                        ErrorCode::SdpRejected,
                        format!("unreadable SDP offer: {e}"),
                    ),
                );
                return;
            }
        };
        let answer = match p.publisher.conn.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                self.signal(
                    pid,
                    error_for(
                        PUBLISH_OFFER,
                        ErrorCode::SdpRejected,
                        format!("offer not accepted: {e}"),
                    ),
                );
                return;
            }
        };
        self.dirty.push((pid, Pc::Publisher));
        self.signal(
            pid,
            ServerMessage::PublishAnswer {
                // RED first, or browsers do not send it (recovery.rs).
                sdp: crate::recovery::prefer_red(&answer.to_sdp_string()),
            },
        );
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };

        // Reconcile what is published with what the offer now says.
        let mut problems = Vec::new();
        let mut wanted: Vec<(Mid, Source, bool, Vec<Rid>)> = Vec::new();
        for t in &tracks {
            let mid = Mid::from(t.mid.as_str());
            let media = p.publisher.conn.rtc.media(mid);
            match media {
                None => problems.push(format!("no m-line with mid {:?}", t.mid)),
                Some(m) if !kind_matches(m.kind(), t.source) => problems.push(format!(
                    "m-line {:?} is {} but {} is not",
                    t.mid,
                    kind_name(m.kind()),
                    t.source
                )),
                Some(m) if !m.direction().is_receiving() => {
                    // The client stopped sending on this m-line: unpublished.
                }
                Some(m) => {
                    // Simulcast: the offer's rids, lowest layer first.
                    let rids = match m.rids_rx() {
                        Rids::Specific(r) => r.clone(),
                        _ => Vec::new(),
                    };
                    wanted.push((mid, t.source, t.muted, rids))
                }
            }
        }
        let mut removed = Vec::new();
        p.publisher.tracks.retain(|t| {
            let keep = wanted
                .iter()
                .any(|(mid, source, _, _)| *mid == t.mid && *source == t.source);
            if !keep {
                removed.push(t.id);
            }
            keep
        });
        let mut added = Vec::new();
        for (mid, source, muted, rids) in wanted {
            if let Some(t) = p.publisher.track_by_mid(mid) {
                t.muted = muted;
                continue;
            }
            let id = TrackId(self.next_track);
            self.next_track += 1;
            p.publisher
                .tracks
                .push(PublishedTrack::new(id, mid, source, muted, &rids));
            added.push((id, source));
        }
        if !problems.is_empty() {
            self.signal(
                pid,
                error_for(PUBLISH_OFFER, ErrorCode::BadRequest, problems.join("; ")),
            );
        }
        for other in self.members_of(pid) {
            if other != pid {
                self.resubscribe_to(other, pid);
            }
        }
        debug!(participant = %pid, added = added.len(), removed = removed.len(), "publish offer applied");
        self.announce(pid);
    }

    fn handle_subscribe_answer(&mut self, now: Instant, pid: ParticipantId, sdp: &str) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let Some(pending) = p.subscriber.pending.take() else {
            self.signal(
                pid,
                error(
                    ErrorCode::SdpRejected,
                    "no subscribe offer is waiting for an answer",
                ),
            );
            return;
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                p.subscriber.pending = Some(pending);
                self.signal(
                    pid,
                    error(
                        ErrorCode::SdpRejected,
                        format!("unreadable SDP answer: {e}"),
                    ),
                );
                return;
            }
        };
        let accepted = p
            .subscriber
            .conn
            .rtc
            .sdp_api()
            .accept_answer(pending, answer);
        self.dirty.push((pid, Pc::Subscriber));
        if let Err(e) = accepted {
            // The negotiation is spent; offer what is missing again.
            for t in &mut p.subscriber.tracks {
                match t.state {
                    DownState::Negotiating(_) => t.state = DownState::ToOpen,
                    DownState::Stopping(m) => t.state = DownState::ToStop(m),
                    _ => {}
                }
            }
            self.signal(
                pid,
                error_for(
                    SUBSCRIBE_ANSWER,
                    ErrorCode::SdpRejected,
                    format!("answer not accepted: {e}"),
                ),
            );
            self.negotiate(pid);
            return;
        }
        let mut opened = Vec::new();
        let rtc = &mut p.subscriber.conn.rtc;
        p.subscriber.tracks.retain_mut(|t| match t.state {
            DownState::Negotiating(mid) => {
                if t.remove_when_open {
                    t.state = DownState::ToStop(mid);
                } else {
                    t.state = DownState::Open(mid);
                    opened.push((t.publisher, t.track));
                    if t.source.kind() == amphi_protocol::MediaKind::Video
                        && let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None)
                    {
                        crate::recovery::configure_video_stream(tx);
                    }
                }
                true
            }
            DownState::Stopping(_) => false,
            _ => true,
        });
        // Choose layers now rather than at the next tick: the first frame
        // waits for this.
        self.allocate_for(now, pid);
        self.dynacast(now);
        for (publisher, track) in opened {
            let spatial = self
                .participants
                .get(&pid)
                .and_then(|p| p.subscriber.tracks.iter().find(|t| t.track == track))
                .and_then(|t| t.selector.target())
                .map_or(0, |l| l.spatial);
            self.request_keyframe(now, publisher, track, spatial);
        }
        self.negotiate(pid);
    }

    fn handle_mute(&mut self, pid: ParticipantId, source: Source, muted: bool) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let mut changed = false;
        if !muted && p.blocked.contains(&source) {
            // Only the participant can switch their own source back on.
            p.blocked.retain(|s| *s != source);
            changed = true;
        }
        for t in p.publisher.tracks.iter_mut().filter(|t| t.source == source) {
            changed |= t.muted != muted;
            t.muted = muted;
        }
        if changed {
            self.announce(pid);
        }
    }

    /// Tells everyone in `room` the records of `pids`, members of it, in
    /// one message each. A change to many at once (mute all, breakout
    /// groups) told as a `participant_updated` per record and member was
    /// the square of the class in messages, each a copy: in a lecture of
    /// 375, 140,000 of them and 50 ms of the media thread for one click.
    fn announce_many(&mut self, room: &str, pids: &[ParticipantId]) {
        let ask = self.rooms.get(room).is_some_and(|r| r.ask_to_speak);
        let participants: Arc<[ParticipantInfo]> = pids
            .iter()
            .filter_map(|id| self.participants.get(id))
            .map(|p| p.info(ask))
            .collect();
        if participants.is_empty() {
            return;
        }
        let members = self
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        self.broadcast(
            &members,
            &ServerMessage::ParticipantsUpdated { participants },
        );
    }

    /// Tells everyone in the participant's room (themselves included) their
    /// current record.
    fn announce(&mut self, pid: ParticipantId) {
        let ask = self.ask_to_speak_of(pid);
        let Some(info) = self.participants.get(&pid).map(|p| p.info(ask)) else {
            return;
        };
        let members = self.members_of(pid);
        self.broadcast(
            &members,
            &ServerMessage::ParticipantUpdated { participant: info },
        );
    }

    fn remove_participant(&mut self, pid: ParticipantId, reason: LeaveReason, tell_them: bool) {
        let Some(p) = self.participants.remove(&pid) else {
            self.leave_lobby(pid);
            return;
        };
        self.stats.forget(pid);
        info!(participant = %pid, room = %p.room, ?reason, "participant left");
        self.routes.retain(|_, (id, _)| *id != pid);
        self.dirty.retain(|(id, _)| *id != pid);
        for pc in [Pc::Publisher, Pc::Subscriber] {
            self.timers.set(Deadline::Connection(pid, pc), None);
            self.timers.set(Deadline::MediaTimeout(pid, pc), None);
        }
        self.timers.set(Deadline::Keyframe(pid), None);
        if tell_them {
            self.signal(
                pid,
                ServerMessage::Bye {
                    reason,
                    message: None,
                },
            );
            self.outputs.push_back(Output::Close { participant: pid });
        }
        self.event(SfuEvent::ParticipantLeft {
            room: p.room.clone(),
            participant: pid,
            identity: p.identity.clone(),
            reason,
        });
        let Some(room) = self.rooms.get_mut(&p.room) else {
            return;
        };
        room.members.retain(|id| *id != pid);
        let others = room.members.clone();
        if others.is_empty() {
            // Those still waiting keep the room, its doors and its settings,
            // for a teacher who comes back (a reloaded tab) or, if the doors
            // were just opened, to be let in: dropped, they waited for good.
            if room.lobby.is_empty() {
                self.rooms.remove(&p.room);
            } else {
                room.groups.clear();
            }
            self.event(SfuEvent::RoomEnded {
                room: p.room.clone(),
            });
        }
        self.broadcast(
            &others,
            &ServerMessage::ParticipantLeft {
                participant: pid.to_string(),
                reason,
            },
        );
        for &other in &others {
            self.unsubscribe_from(other, pid);
        }
        if p.hand.is_some() {
            self.announce_room(&p.room);
        }
    }

    /// Stops what `subscriber` receives from `publisher`, who left: all a
    /// departure changes for those who stay. `sync_subscriptions` would get
    /// there too, but it walks the whole room for each member, so a class of
    /// hundreds ending cost the cube of its size on the media thread every
    /// room shares.
    fn unsubscribe_from(&mut self, subscriber: ParticipantId, publisher: ParticipantId) {
        self.receive_from(subscriber, publisher, Vec::new());
    }

    /// Makes what `subscriber` receives from `publisher` match what
    /// `publisher` publishes now: all a publish offer changes for the
    /// others. `sync_subscriptions` would get there too, but it walks the
    /// whole room for each member: someone starting to publish in a room of
    /// hundreds cost the square of its size.
    fn resubscribe_to(&mut self, subscriber: ParticipantId, publisher: ParticipantId) {
        let (Some(s), Some(p)) = (
            self.participants.get(&subscriber),
            self.participants.get(&publisher),
        ) else {
            return;
        };
        let tracks: Vec<(TrackId, Source)> =
            if s.permissions.subscribe && s.room == p.room && s.group == p.group {
                p.publisher
                    .tracks
                    .iter()
                    .map(|t| (t.id, t.source))
                    .collect()
            } else {
                Vec::new()
            };
        self.receive_from(subscriber, publisher, tracks);
    }

    /// Makes `subscriber` receive exactly `tracks` of `publisher`'s, and
    /// offers the difference.
    fn receive_from(
        &mut self,
        subscriber: ParticipantId,
        publisher: ParticipantId,
        tracks: Vec<(TrackId, Source)>,
    ) {
        let Some(s) = self.participants.get_mut(&subscriber) else {
            return;
        };
        let stale: Vec<TrackId> = s
            .subscriber
            .tracks
            .iter()
            .filter(|t| t.publisher == publisher && !tracks.iter().any(|(id, _)| *id == t.track))
            .map(|t| t.track)
            .collect();
        for track in stale {
            s.subscriber.remove(track);
        }
        for (track, source) in tracks {
            s.subscriber.add(publisher, track, source);
        }
        self.negotiate(subscriber);
    }

    /// Makes what `subscriber` receives match who is with them: every track
    /// of everyone else in the same room and breakout group, if they may
    /// subscribe at all. Then offers the difference.
    fn sync_subscriptions(&mut self, subscriber: ParticipantId) {
        let Some(s) = self.participants.get(&subscriber) else {
            return;
        };
        let mut wanted: Vec<(ParticipantId, TrackId, Source)> = Vec::new();
        if s.permissions.subscribe
            && let Some(room) = self.rooms.get(&s.room)
        {
            for other in room.members.iter().filter(|id| **id != subscriber) {
                let Some(o) = self.participants.get(other) else {
                    continue;
                };
                if o.group != s.group {
                    continue;
                }
                wanted.extend(o.publisher.tracks.iter().map(|t| (o.id, t.id, t.source)));
            }
        }
        let Some(s) = self.participants.get_mut(&subscriber) else {
            return;
        };
        let stale: Vec<TrackId> = s
            .subscriber
            .wanted()
            .filter(|t| !wanted.iter().any(|(_, w, _)| w == t))
            .collect();
        for track in stale {
            s.subscriber.remove(track);
        }
        for (publisher, track, source) in wanted {
            s.subscriber.add(publisher, track, source);
        }
        self.negotiate(subscriber);
    }

    /// Sends a new subscribe offer if something changed and none is
    /// pending: now, or at the next turn if this one made its share
    /// (`OFFERS_PER_TURN`). Each offer is a new SDP to build; the media
    /// thread goes back to its sockets in between.
    fn negotiate(&mut self, pid: ParticipantId) {
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let sub = &mut p.subscriber;
        if self.offers_left == 0 {
            if sub.needs_negotiation() && !sub.offer_queued {
                sub.offer_queued = true;
                self.offers_queued.push_back(pid);
            }
            return;
        }
        sub.offer_queued = false;
        if !sub.needs_negotiation() {
            return;
        }
        self.offers_left -= 1;
        let mut change = sub.conn.rtc.sdp_api();
        if !sub.anchored {
            // An inactive m-line, not a data channel: a data channel would
            // bring an SCTP association that str0m visits on every poll of
            // the connection (6 % of the server's CPU in a lecture), for a
            // channel nobody uses.
            change.add_media(MediaKind::Audio, Direction::Inactive, None, None, None);
            sub.anchored = true;
        }
        for t in &mut sub.tracks {
            match t.state {
                DownState::ToOpen => {
                    let kind = match t.source.kind() {
                        amphi_protocol::MediaKind::Audio => MediaKind::Audio,
                        amphi_protocol::MediaKind::Video => MediaKind::Video,
                    };
                    let mid = change.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(t.publisher.to_string()),
                        Some(t.track.to_string()),
                        None,
                    );
                    t.state = DownState::Negotiating(mid);
                }
                DownState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = DownState::Stopping(mid);
                }
                _ => {}
            }
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        sub.pending = Some(pending);
        let tracks = sub
            .tracks
            .iter()
            .filter_map(|t| {
                let mid = match t.state {
                    DownState::Negotiating(m) | DownState::Open(m) => m,
                    _ => return None,
                };
                Some(SubscribedTrack {
                    mid: mid.to_string(),
                    participant: t.publisher.to_string(),
                    track: t.track.to_string(),
                    kind: t.source.kind(),
                    source: t.source,
                })
            })
            .collect();
        self.dirty.push((pid, Pc::Subscriber));
        self.signal(
            pid,
            ServerMessage::SubscribeOffer {
                sdp: offer.to_sdp_string(),
                tracks,
            },
        );
    }

    // ----- media --------------------------------------------------------

    fn handle_receive(&mut self, now: Instant, receive: Receive<'_>) {
        let source = (receive.proto, receive.source);
        let input = str0m::Input::Receive(now, receive);
        let known = self.routes.get(&source).copied().filter(|(pid, pc)| {
            self.participants
                .get_mut(pid)
                .is_some_and(|p| p.connection(*pc).rtc.accepts(&input))
        });
        let target = known.or_else(|| {
            // A new address: only a STUN request with a known ufrag, or a
            // packet from a candidate ICE already validated, is accepted.
            let found = self.participants.iter_mut().find_map(|(id, p)| {
                for pc in [Pc::Publisher, Pc::Subscriber] {
                    if p.connection(pc).rtc.accepts(&input) {
                        return Some((*id, pc));
                    }
                }
                None
            });
            if let Some(t) = found {
                self.routes.insert(source, t);
            }
            found
        });
        let Some((pid, pc)) = target else {
            self.stats.unroutable_datagrams += 1;
            return;
        };
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        if let Err(e) = p.connection(pc).rtc.handle_input(input) {
            // A bad packet only concerns the connection it was meant for.
            self.stats.rejected_datagrams += 1;
            debug!(participant = %pid, ?pc, "datagram rejected: {e}");
        }
        self.drain(now, pid, pc);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.offers_left = OFFERS_PER_TURN;
        while self.offers_left > 0
            && let Some(pid) = self.offers_queued.pop_front()
        {
            self.negotiate(pid);
        }
        self.admit_through_open_doors(now);
        // Taken all at once: a connection is driven once per timeout even
        // if it asks again for a time already past.
        let mut due = std::mem::take(&mut self.due);
        while let Some(d) = self.timers.pop_due(now) {
            due.push(d);
        }
        for d in due.drain(..) {
            match d {
                // `drain` serves the timeout str0m asks for, now due.
                Deadline::Connection(pid, pc) => self.drain(now, pid, pc),
                Deadline::MediaTimeout(pid, _) => {
                    self.remove_participant(pid, LeaveReason::MediaFailed, true);
                }
                Deadline::Keyframe(pid) => {
                    let mut requests = Vec::new();
                    if let Some(p) = self.participants.get_mut(&pid) {
                        for t in &mut p.publisher.tracks {
                            for layer in &mut t.layers {
                                if layer.keyframes.handle_timeout(now) {
                                    requests.push((t.mid, layer.rid));
                                }
                            }
                        }
                    }
                    for (mid, rid) in requests {
                        self.send_keyframe_request(pid, mid, rid);
                    }
                    self.schedule_keyframes(pid);
                }
            }
        }
        self.due = due;
        if now >= self.next_media_tick {
            self.media_tick(now);
        }
        self.handle_speakers_timeout(now);
        self.quality_timeout(now);
    }

    /// Puts the publisher's next deferred keyframe request on the timers.
    fn schedule_keyframes(&mut self, pid: ParticipantId) {
        let at = self.participants.get(&pid).and_then(|p| {
            p.publisher
                .tracks
                .iter()
                .flat_map(|t| &t.layers)
                .filter_map(|l| l.keyframes.poll_timeout())
                .min()
        });
        self.timers.set(Deadline::Keyframe(pid), at);
    }

    /// Polls one connection until it has nothing more to say, acting on its
    /// events.
    ///
    /// str0m takes a packet written to a connection only at its next
    /// timeout, and while it probes or pads its pacer wants another timeout
    /// after each packet (otherwise our copy of str0m lets a whole burst
    /// out: vendor/str0m/AMPHI.md). Timeouts already due are served here, so
    /// a connection sends what it may at once instead of one packet per turn
    /// of the server's loop; under steady input its queue grew without
    /// bound (audio-500 in docs/benchmarks.md).
    fn drain(&mut self, now: Instant, pid: ParticipantId, pc: Pc) {
        let mut turns = 0;
        loop {
            let Some(p) = self.participants.get_mut(&pid) else {
                return;
            };
            let conn = p.connection(pc);
            if !conn.rtc.is_alive() {
                self.remove_participant(pid, LeaveReason::MediaFailed, true);
                return;
            }
            let output = match conn.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    warn!(participant = %pid, ?pc, "peer connection failed: {e}");
                    conn.rtc.disconnect();
                    self.remove_participant(pid, LeaveReason::MediaFailed, true);
                    return;
                }
            };
            match output {
                str0m::Output::Timeout(t) if t <= now && turns < MAX_TURNS => {
                    turns += 1;
                    self.stats.connection_timeouts += 1;
                    // A timeout cannot fail in a way that concerns other inputs.
                    let _ = conn.rtc.handle_input(str0m::Input::Timeout(now));
                }
                str0m::Output::Timeout(t) => {
                    self.timers.set(Deadline::Connection(pid, pc), Some(t));
                    return;
                }
                str0m::Output::Transmit(t) => {
                    self.stats.datagrams_out += 1;
                    self.outputs.push_back(Output::Transmit(t));
                }
                str0m::Output::Event(e) => self.handle_event(now, pid, pc, e),
            }
        }
    }

    fn handle_event(&mut self, now: Instant, pid: ParticipantId, pc: Pc, event: Event) {
        match event {
            Event::RtpPacket(packet) if pc == Pc::Publisher => self.forward(now, pid, packet),
            Event::KeyframeRequest(req) if pc == Pc::Subscriber => {
                let track = self.participants.get(&pid).and_then(|p| {
                    p.subscriber
                        .tracks
                        .iter()
                        .find(|t| t.state == DownState::Open(req.mid))
                        .map(|t| {
                            let layer = t.selector.current().or(t.selector.target());
                            (t.publisher, t.track, layer.map_or(0, |l| l.spatial))
                        })
                });
                if let Some((publisher, track, spatial)) = track {
                    self.request_keyframe(now, publisher, track, spatial);
                }
            }
            Event::IceConnectionStateChange(state) => {
                if let Some(p) = self.participants.get_mut(&pid) {
                    let conn = p.connection(pc);
                    let failing_at = if state == IceConnectionState::Disconnected {
                        let since = *conn.disconnected_since.get_or_insert(now);
                        Some(since + self.config.media_timeout)
                    } else {
                        conn.disconnected_since = None;
                        None
                    };
                    self.timers.set(Deadline::MediaTimeout(pid, pc), failing_at);
                }
                debug!(participant = %pid, ?pc, ?state, "ice state");
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. })
                if pc == Pc::Subscriber =>
            {
                if let Some(p) = self.participants.get_mut(&pid) {
                    let before = p.subscriber.estimate.replace(estimate.as_u64());
                    // GCC lowers its estimate only for delay or loss it
                    // reads: act on that now, not at the next tick, while
                    // the link's queue may still take what was sent.
                    if before.is_some_and(|b| estimate.as_u64() < b) {
                        self.reallocate(now, pid);
                    }
                }
            }
            Event::MediaIngressStats(s) => {
                self.stats.ingress(pid, &s);
                self.quality_ingress(pid, &s);
            }
            Event::MediaEgressStats(s) => {
                self.stats.egress(pid, &s);
                self.quality_egress(pid, &s);
            }
            _ => {}
        }
    }

    /// Sends one publisher's packet to every subscriber of its track, as
    /// each one's layer selection allows.
    fn forward(&mut self, now: Instant, pid: ParticipantId, packet: RtpPacket) {
        self.stats.rtp_packets_in += 1;
        let Some(p) = self.participants.get_mut(&pid) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let (mid, rid) = match p.publisher.ssrc_mids.get(&ssrc) {
            Some(known) => *known,
            None => {
                let Some(known) = p
                    .publisher
                    .conn
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    return;
                };
                p.publisher.ssrc_mids.insert(ssrc, known);
                known
            }
        };
        // RED-wrapped audio has a payload type of its own (recovery.rs).
        let Some((codec, red)) = crate::recovery::codec_of(
            p.publisher.conn.rtc.codec_config().params(),
            packet.header.payload_type,
        ) else {
            return;
        };
        let ask = self.rooms.get(&p.room).is_some_and(|r| r.ask_to_speak);
        let Some(track) = p.publisher.tracks.iter().find(|t| t.mid == mid) else {
            return;
        };
        if p.silenced(track.source, ask) {
            // Muted by a moderator, or no floor: nothing leaves the server.
            self.stats.rtp_packets_held += 1;
            return;
        }
        // Only what is forwarded can count as speaking.
        self.speakers
            .observe(p, track, &packet.header.ext_vals, now);
        let Some(track) = p.publisher.track_by_mid(mid) else {
            return;
        };
        let Some(spatial) = track.spatial_of(rid) else {
            return;
        };
        let track_id = track.id;
        let vp8 = match codec.video {
            Some(VideoCodec::Vp8) => Vp8Info::parse(&packet.payload),
            _ => None,
        };
        let keyframe_start = match (codec.video, &vp8) {
            (Some(VideoCodec::Vp8), Some(info)) => info.keyframe_start,
            (Some(c), _) => starts_keyframe(c, &packet.payload),
            (None, _) => false,
        };
        // str0m's own parse, for patching each copy's picture numbers.
        let descriptor = vp8
            .as_ref()
            .and_then(|_| Vp8Descriptor::parse(&packet.payload).ok());
        let temporal = vp8.as_ref().and_then(|i| i.temporal);
        track.temporal_layers |= temporal.is_some();
        let mut layer_came = false;
        if let Some(layer) = track.layers.get_mut(usize::from(spatial)) {
            layer_came = layer.observe(now, packet.payload.len(), temporal);
            if keyframe_start {
                // The deferred request's deadline, if any, finds nothing to do.
                layer.keyframes.keyframe_received();
                if let Some(size) = vp8.as_ref().and_then(|i| i.size) {
                    layer.size = Some(size);
                }
            }
        }
        let layer_packet = LayerPacket {
            spatial,
            temporal,
            layer_sync: vp8.as_ref().is_some_and(|i| i.layer_sync),
            frame_start: vp8.as_ref().is_none_or(|i| i.frame_start),
            keyframe_start,
        };
        let incoming = IncomingPacket {
            ssrc: *ssrc,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            arrival: packet.timestamp,
            keyframe_start,
        };
        let ext = ExtensionValues {
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            ..Default::default()
        };

        if layer_came && codec.video.is_some() {
            // Its subscribers' allocations left it out: allocated now, the
            // keyframe this packet may begin reaches them, where waiting for
            // the media tick made them wait for the next keyframe too.
            self.allocate_for_track(now, pid, track_id);
        }
        let Some(p) = self.participants.get(&pid) else {
            return;
        };

        // Spatial layers some subscriber waits for a keyframe of.
        let mut wants_keyframe: u8 = 0;
        let Some(room) = self.rooms.get(&p.room) else {
            return;
        };
        self.red_copies.clear();
        for sid in &room.members {
            if *sid == pid {
                continue;
            }
            let Some(s) = self.participants.get_mut(sid) else {
                continue;
            };
            let Some(down) = s
                .subscriber
                .tracks
                .iter_mut()
                .find(|t| t.track == track_id && matches!(t.state, DownState::Open(_)))
            else {
                continue;
            };
            let DownState::Open(out_mid) = down.state else {
                continue;
            };
            down.forwarder.set_codec(codec.video, codec.clock_rate);
            let mut switched = false;
            if codec.video.is_some() {
                if layer_packet.frame_start && down.selector.is_managed() {
                    let congested = backlog::congested(
                        &mut s.subscriber.conn.rtc,
                        out_mid,
                        down.selector.is_congested(),
                    );
                    if congested && !down.selector.is_congested() {
                        self.stats.congestion_events += 1;
                    }
                    down.selector.set_congested(congested);
                }
                match down.selector.select(layer_packet) {
                    Selection::Forward => {}
                    Selection::Switch => {
                        // The new layer is another encoder: its numbering
                        // starts over from the last packet sent.
                        down.forwarder.restart();
                        // On a backed-up link what is queued of the old
                        // layer would hold this keyframe back for as long
                        // (seconds, on a link that just got much slower),
                        // and it needs none of it.
                        if down.selector.is_congested()
                            && let Some(first) = s
                                .subscriber
                                .conn
                                .rtc
                                .direct_api()
                                .stream_tx_by_mid(out_mid, None)
                                .and_then(|stream| stream.discard_queued())
                        {
                            down.forwarder.rewind(*first);
                        }
                        switched = true;
                        self.stats.layer_switches += 1;
                    }
                    Selection::Skip => {
                        down.forwarder.skip(incoming);
                        if let Some(info) = &vp8 {
                            down.pictures.drop_frame(info);
                        }
                        continue;
                    }
                    Selection::Ignore => continue,
                    Selection::NeedKeyframe { spatial } => {
                        wants_keyframe |= 1 << spatial.min(7);
                        continue;
                    }
                }
            }
            let (seq, timestamp) = match down.forwarder.forward(incoming) {
                Verdict::Forward { seq, timestamp } => (seq, timestamp),
                Verdict::WaitForKeyframe => {
                    down.selector.reset();
                    wants_keyframe |= 1 << spatial.min(7);
                    continue;
                }
                Verdict::Late => continue,
            };
            let in_pt = packet.header.payload_type;
            let out_pt = match down.pt_map {
                Some((i, o)) if i == in_pt => o,
                _ => {
                    let Some(o) = s
                        .subscriber
                        .conn
                        .rtc
                        .codec_config()
                        .match_params(codec.params)
                        .map(|p| p.pt())
                    else {
                        // The subscriber's browser cannot decode this codec.
                        continue;
                    };
                    down.pt_map = Some((in_pt, o));
                    o
                }
            };
            let (out_pt, payload) = if red {
                // Passed on as RED, relabelled, or unwrapped (recovery.rs).
                let Some(out) = self.red_copies.for_subscriber(
                    s.subscriber.conn.rtc.codec_config(),
                    codec.params.pt(),
                    out_pt,
                    &packet.payload,
                    now,
                ) else {
                    continue;
                };
                out
            } else {
                (out_pt, packet.payload.clone())
            };
            let patch = vp8.as_ref().and_then(|info| {
                let values = down.pictures.forward(info, switched);
                PictureNumbering::patch(descriptor.as_ref(), info, values)
            });
            let mut api = s.subscriber.conn.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            let mut write = RtpWrite::new(out_pt, seq.into(), timestamp, packet.timestamp, payload)
                .marker(packet.header.marker)
                .ext_vals(ext.clone())
                .nackable(codec.video.is_some());
            if let Some(patch) = patch {
                write = write.vp8_patch(patch);
            }
            stream.write_rtp(write);
            self.stats.rtp_packets_out += 1;
            if !s.subscriber.forwarded {
                s.subscriber.forwarded = true;
                self.forwarded.push(*sid);
            }
        }
        self.red_copies.clear();
        for spatial in 0..8u8 {
            if wants_keyframe & (1 << spatial) != 0 {
                self.request_keyframe(now, pid, track_id, spatial);
            }
        }
    }

    /// Asks the publisher of `track` for a keyframe of one spatial layer,
    /// throttled.
    fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        track: TrackId,
        spatial: u8,
    ) {
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let Some(t) = p.publisher.track_mut(track) else {
            return;
        };
        if t.kind() != amphi_protocol::MediaKind::Video {
            return;
        }
        let mid = t.mid;
        let Some(layer) = t.layers.get_mut(usize::from(spatial)) else {
            return;
        };
        if layer.keyframes.request(now) {
            let rid = layer.rid;
            self.send_keyframe_request(publisher, mid, rid);
        }
        self.schedule_keyframes(publisher);
    }

    fn send_keyframe_request(&mut self, publisher: ParticipantId, mid: Mid, rid: Option<Rid>) {
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let mut api = p.publisher.conn.rtc.direct_api();
        // Before the first packet there is no stream to ask; the first
        // packets of a new stream are a keyframe anyway.
        if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests += 1;
            self.dirty.push((publisher, Pc::Publisher));
        }
    }

    /// Drains one subscriber that was forwarded to; false if none was.
    fn flush_forwarded_one(&mut self) -> bool {
        let Some(sid) = self.forwarded.pop() else {
            return false;
        };
        if let Some(s) = self.participants.get_mut(&sid) {
            s.subscriber.forwarded = false;
            self.drain(self.now, sid, Pc::Subscriber);
            // Draining a subscriber can dirty a publisher (a keyframe
            // request), whose drain can forward again.
            self.flush_dirty();
        }
        true
    }

    fn flush_dirty(&mut self) {
        // Draining may forward (dirtying subscribers) or renegotiate.
        let now = self.now;
        while let Some((pid, pc)) = self.dirty.pop() {
            self.drain(now, pid, pc);
        }
    }

    // ----- helpers ------------------------------------------------------

    /// A str0m connection. `bwe`: estimate the bandwidth towards the peer
    /// (subscriber connections, whose downlink the allocator shares).
    fn new_rtc(&mut self, now: Instant, bwe: bool) -> Rtc {
        let mut config = RtcConfig::new();
        if let Some(cert) = self.certificate.for_connection(now) {
            config = config.set_dtls_cert(cert);
        }
        if bwe && self.config.bandwidth_estimation {
            config = config.enable_bwe(Some(Bitrate::bps(allocation::INITIAL_ESTIMATE)));
        }
        // Bounded retransmission history (recovery.rs).
        let mut rtc = crate::recovery::configure(config)
            .set_ice_lite(true)
            .set_rtp_mode(true)
            // Per-stream NACK, PLI and loss counts for metrics (SfuStats).
            .set_stats_interval(Some(std::time::Duration::from_secs(1)))
            .clear_codecs()
            .enable_opus(true, crate::recovery::AUDIO_RED)
            .enable_vp8(true)
            .enable_h264(true)
            .build(now);
        for addr in &self.config.candidates {
            match Candidate::host(*addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(%addr, "unusable candidate address: {e}"),
            }
        }
        // ICE-TCP (RFC 6544): the server only accepts connections, so its
        // TCP candidates are passive; clients connect to them (active).
        for addr in &self.config.tcp_candidates {
            match Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
            {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(%addr, "unusable TCP candidate address: {e}"),
            }
        }
        rtc
    }

    fn ask_to_speak_of(&self, pid: ParticipantId) -> bool {
        self.participants
            .get(&pid)
            .and_then(|p| self.rooms.get(&p.room))
            .is_some_and(|r| r.ask_to_speak)
    }

    fn members_of(&self, pid: ParticipantId) -> Vec<ParticipantId> {
        self.participants
            .get(&pid)
            .and_then(|p| self.rooms.get(&p.room))
            .map(|r| r.members.clone())
            .unwrap_or_default()
    }

    fn signal(&mut self, participant: ParticipantId, message: ServerMessage) {
        self.outputs.push_back(Output::Signal {
            participant,
            message,
        });
    }

    fn event(&mut self, event: SfuEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn broadcast(&mut self, to: &[ParticipantId], message: &ServerMessage) {
        for id in to {
            self.signal(*id, message.clone());
        }
    }

    fn next_timeout(&self) -> Instant {
        if !self.offers_queued.is_empty() || !self.admitting.is_empty() {
            return self.now;
        }
        let mut next = self.next_media_tick;
        for at in [
            self.timers.next(),
            self.speakers.poll_timeout(),
            self.quality_deadline(),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(at);
        }
        next
    }
}

const PUBLISH_OFFER: &str = "publish_offer";
const SUBSCRIBE_ANSWER: &str = "subscribe_answer";

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::error(code, message)
}

fn error_for(request: &str, code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::error_for(request, code, message)
}

fn kind_matches(kind: MediaKind, source: Source) -> bool {
    match source.kind() {
        amphi_protocol::MediaKind::Audio => kind == MediaKind::Audio,
        amphi_protocol::MediaKind::Video => kind == MediaKind::Video,
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// Refuses an offer that publishes what the token does not allow, before
/// anything of it is applied.
fn check_publish_tracks(
    permissions: &Permissions,
    tracks: &[PublishTrack],
) -> Result<(), (ErrorCode, String)> {
    for t in tracks {
        if !permissions.publish || !permissions.publish_sources.contains(&t.source) {
            return Err((
                ErrorCode::Forbidden,
                format!("your token does not allow publishing {}", t.source),
            ));
        }
    }
    for (i, t) in tracks.iter().enumerate() {
        if tracks[..i].iter().any(|o| o.mid == t.mid) {
            return Err((
                ErrorCode::BadRequest,
                format!("mid {:?} is listed twice", t.mid),
            ));
        }
        if tracks[..i].iter().any(|o| o.source == t.source) {
            return Err((
                ErrorCode::BadRequest,
                format!("source {} is listed twice", t.source),
            ));
        }
    }
    Ok(())
}

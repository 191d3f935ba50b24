//! The sans-IO participant: two str0m [`Rtc`]s in RTP mode plus the
//! signalling state. It never touches a socket or a clock: the driver feeds
//! it datagrams, server messages and time, and carries out its [`Output`].

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amphi_protocol::{
    ClientMessage, ErrorCode, LeaveReason, MediaKind, ParticipantInfo, PublishTrack, ServerMessage,
    Source, SubscribedTrack,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::crypto::dtls::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequest, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, TcpType, Transmit};
use str0m::rtp::{ExtensionValues, RedEncoder, RedundantBlock, RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Rtc};
use tracing::{debug, info, warn};

use crate::error::ClientError;
use crate::stats::{ClientStats, ReceivedCounters, ServerError};
use crate::synth::{self, VideoShape};

/// How a participant behaves. `Default` publishes Opus and ~30 fps VP8.
#[derive(Clone)]
pub struct ClientOptions {
    /// Sent as `join.room` when set (must equal the token's room).
    pub room: Option<String>,
    /// Sent as `join.client`.
    pub client_name: String,
    /// Publish a microphone track (if the permissions allow it).
    pub publish_audio: bool,
    /// Publish a camera track (if the permissions allow it).
    pub publish_video: bool,
    /// Opus packet payload size in bytes (one packet per 20 ms).
    pub audio_packet_size: usize,
    pub video: VideoShape,
    /// RTP packets of a keyframe; `None`: as many as any other frame
    /// (`video.packets_per_frame`). Real encoders make keyframes several
    /// times larger than the frames between them.
    pub keyframe_packets: Option<usize>,
    pub video_fps: u32,
    /// A keyframe at least this often, besides those asked for.
    pub keyframe_interval: Duration,
    /// Send `{"type":"ping"}` this often after joining.
    pub ping_interval: Option<Duration>,
    /// How long `connect` waits for `joined`.
    pub join_timeout: Duration,
    /// IP for the UDP sockets (and host candidates). Default: the local IP of
    /// the signalling connection, which routes to the server.
    pub bind_ip: Option<std::net::IpAddr>,
    /// Offer the sources above even when `joined.permissions` does not allow
    /// them (to test that the server refuses with `forbidden`).
    pub ignore_permissions: bool,
    /// A DTLS certificate to share between many `Rtc`s (generating one per
    /// connection is the most expensive part of setting up; a load
    /// generator should generate one and share it).
    pub dtls_cert: Option<DtlsCert>,
    /// Carry media over ICE-TCP instead of UDP: connect to the server's
    /// passive TCP candidate at this address (RFC 6544/4571), one TCP
    /// connection per peer connection. `None`: UDP.
    pub ice_tcp: Option<SocketAddr>,
    /// Offer and accept Opus with RED (RFC 2198), and send the microphone
    /// RED-wrapped (each packet repeats the previous frame), as a browser
    /// does when the answer prefers RED.
    pub audio_red: bool,
    /// Spread each video frame's packets at this multiple of the video's
    /// average bitrate, as a browser's pacer does (Chrome paces at 2.5
    /// times its target bitrate), and stamp each packet when it leaves.
    /// `None`: a frame leaves as one burst.
    pub video_pacing: Option<f64>,
    /// Send the camera as these simulcast encodings, lowest first, each
    /// with its own rid, SSRC, sequence numbers and frame shape, instead of
    /// one stream of `video` (`keyframe_packets` then does not apply). A
    /// layer the server says nobody needs (`publish_layers`) is paused, as
    /// a browser pauses it.
    pub simulcast: Vec<SimulcastEncoding>,
}

/// One simulcast encoding of the camera ([`ClientOptions::simulcast`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastEncoding {
    pub rid: String,
    pub video: VideoShape,
    /// RTP packets of its keyframes; `None`: as many as its other frames.
    pub keyframe_packets: Option<usize>,
}

impl SimulcastEncoding {
    /// `(width, height)` frames of `packets` packets of `packet_size`
    /// payload bytes, and keyframes of `keyframe_packets`.
    pub fn new(
        rid: &str,
        (width, height): (u16, u16),
        packets: usize,
        packet_size: usize,
        keyframe_packets: usize,
    ) -> Self {
        SimulcastEncoding {
            rid: rid.into(),
            video: VideoShape {
                width,
                height,
                packets_per_frame: packets,
                packet_size,
            },
            keyframe_packets: Some(keyframe_packets),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("room", &self.room)
            .field("client_name", &self.client_name)
            .field("publish_audio", &self.publish_audio)
            .field("publish_video", &self.publish_video)
            .field("audio_packet_size", &self.audio_packet_size)
            .field("video", &self.video)
            .field("keyframe_packets", &self.keyframe_packets)
            .field("video_fps", &self.video_fps)
            .field("keyframe_interval", &self.keyframe_interval)
            .field("ping_interval", &self.ping_interval)
            .field("join_timeout", &self.join_timeout)
            .field("bind_ip", &self.bind_ip)
            .field("ignore_permissions", &self.ignore_permissions)
            .field("dtls_cert", &self.dtls_cert.as_ref().map(|_| "…"))
            .field("ice_tcp", &self.ice_tcp)
            .field("audio_red", &self.audio_red)
            .field("video_pacing", &self.video_pacing)
            .field("simulcast", &self.simulcast)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            room: None,
            client_name: concat!("amphi-client/", env!("CARGO_PKG_VERSION")).to_string(),
            publish_audio: true,
            publish_video: true,
            audio_packet_size: 80,
            video: VideoShape {
                width: 320,
                height: 180,
                packets_per_frame: 3,
                packet_size: 900,
            },
            keyframe_packets: None,
            video_fps: 30,
            keyframe_interval: Duration::from_secs(2),
            ping_interval: Some(Duration::from_secs(5)),
            join_timeout: Duration::from_secs(10),
            bind_ip: None,
            ignore_permissions: false,
            dtls_cert: None,
            ice_tcp: None,
            audio_red: false,
            video_pacing: None,
            simulcast: Vec::new(),
        }
    }
}

impl ClientOptions {
    /// Receive only: publish nothing.
    pub fn subscriber_only() -> Self {
        ClientOptions {
            publish_audio: false,
            publish_video: false,
            ..Default::default()
        }
    }
}

/// Where the session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// `join` sent (or about to be), no `joined` yet.
    Joining,
    Joined,
    /// `leave` queued; waiting for the server to close.
    Leaving,
    /// Over; why.
    Closed(CloseReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The server sent an `error` that ends the session (or any error
    /// before `joined`).
    Refused {
        code: ErrorCode,
        message: String,
    },
    Bye(LeaveReason),
    /// The signalling socket closed while joined (or before `joined`).
    SignallingClosed,
    /// This client left.
    Left,
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram from the socket bound to `transmit.source`.
    Transmit(Transmit),
    /// Send this message on the signalling WebSocket.
    Signal(ClientMessage),
    /// Nothing to do before this instant (call [`Participant::handle_timeout`]).
    Timeout(Instant),
}

/// Which of the two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Publisher,
    Subscriber,
}

#[derive(Debug)]
struct RtcPoll {
    /// Input happened since `poll_output` last returned a timeout.
    dirty: bool,
    timeout: Instant,
}

#[derive(Debug)]
struct AudioTx {
    mid: Mid,
    pt: Pt,
    /// The negotiated RED payload type, when sending RED; then the
    /// previous frame, which the next packet repeats.
    red: Option<Pt>,
    previous: Option<Vec<u8>>,
    seq: u64,
    ts: u32,
    next: Instant,
}

/// One encoding of the camera: the only one, or a simulcast layer.
#[derive(Debug)]
struct VideoTx {
    mid: Mid,
    rid: Option<Rid>,
    shape: VideoShape,
    keyframe_packets: Option<usize>,
    /// Dynacast: the server needs this layer (`publish_layers`).
    active: bool,
    pt: Pt,
    seq: u64,
    ts: u32,
    picture_id: u16,
    next: Instant,
    last_keyframe: Option<Instant>,
    force_keyframe: bool,
    /// Packets written to the encoder's output but not yet sent (paced).
    paced: VecDeque<PacedPacket>,
    /// When the pacer may send its next packet.
    pacer_free_at: Instant,
}

/// A video packet waiting for its turn in the publisher's pacer.
#[derive(Debug)]
struct PacedPacket {
    at: Instant,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
}

/// One m-line of the subscriber connection.
#[derive(Debug)]
struct SubStream {
    /// (publishing participant, kind): the key of `ClientStats::received`.
    key: (String, MediaKind),
    track: String,
    ssrc: Option<u32>,
    highest_seq: Option<u64>,
    last_ts: Option<u32>,
    seen_first: bool,
}

/// Which SDP exchange an `error` may be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastSdp {
    PublishOffer,
    SubscribeAnswer,
}

const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const AUDIO_TS_STEP: u32 = synth::OPUS_CLOCK / 50;
/// Beyond this much lateness the media clock skips instead of bursting.
const MAX_CATCH_UP: Duration = Duration::from_millis(200);
const FAR_FUTURE: Duration = Duration::from_secs(3600);

/// An Amphi participant without I/O.
///
/// Drive it like a str0m `Rtc`: feed [`Participant::handle_signal`],
/// [`Participant::handle_datagram`] and [`Participant::handle_timeout`], then
/// call [`Participant::poll_output`] until it returns [`Output::Timeout`].
///
/// Unlike a bare str0m `Rtc` in RTP mode (which holds only one received
/// packet until the next `poll_output`), a `Participant` polls its `Rtc`s
/// right after every input and queues the results, so a driver may feed a
/// batch of datagrams before draining [`Participant::poll_output`].
///
/// The publisher and subscriber connections must use **different** local UDP
/// addresses: the server has one UDP port, so two connections from one
/// client address would be indistinguishable to it (and to `Rtc::accepts`).
pub struct Participant {
    opts: ClientOptions,
    token: String,
    phase: Phase,
    publisher: Rtc,
    subscriber: Rtc,
    pub_addr: SocketAddr,
    sub_addr: SocketAddr,
    pub_poll: RtcPoll,
    sub_poll: RtcPoll,
    pending_publish: Option<SdpPendingOffer>,
    /// Mids of the publisher's m-lines, in offer order.
    offered: Vec<Mid>,
    last_sdp: Option<LastSdp>,
    outbox: VecDeque<ClientMessage>,
    /// Datagrams polled from the `Rtc`s, not yet handed to the driver.
    transmits: VecDeque<Transmit>,
    audio: Option<AudioTx>,
    /// RFC 6464 level (-dBov, 0 loudest .. 127 silence) put on every audio
    /// packet, as a browser does; `None`: no audio level extension.
    audio_level: Option<u8>,
    /// The camera's encodings (one, or a simulcast layer each).
    video: Vec<VideoTx>,
    /// Media clocks run once the publisher connection is up.
    media_started: bool,
    subscribed: HashMap<Mid, SubStream>,
    stats: ClientStats,
    next_ping: Option<Instant>,
    ping_sent: Option<Instant>,
    now: Instant,
    /// When the datagram being handled reached its socket (the kernel's
    /// receive stamp, Unix µs), if the driver knows.
    arrived_unix_us: Option<u64>,
    seed: RandomState,
}

impl fmt::Debug for Participant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.stats.id)
            .field("phase", &self.phase)
            .field("pub_addr", &self.pub_addr)
            .field("sub_addr", &self.sub_addr)
            .finish_non_exhaustive()
    }
}

fn random_u64(seed: &RandomState, salt: u64) -> u64 {
    let mut h = seed.build_hasher();
    h.write_u64(salt);
    h.finish()
}

impl Participant {
    /// A participant about to join with `token`, whose publisher connection
    /// uses the local UDP address `pub_addr` and subscriber `sub_addr`.
    /// The first output is the `join` message.
    pub fn new(
        token: impl Into<String>,
        opts: ClientOptions,
        pub_addr: SocketAddr,
        sub_addr: SocketAddr,
        now: Instant,
    ) -> Result<Self, ClientError> {
        let build = |codecs_for_publishing: bool| {
            let mut cfg = Rtc::builder().set_rtp_mode(true);
            if codecs_for_publishing {
                // Offer only what is sent, so the server cannot pick H.264.
                cfg = cfg
                    .clear_codecs()
                    .enable_opus(true, opts.audio_red)
                    .enable_vp8(true);
            } else if opts.audio_red {
                cfg = cfg.enable_opus(true, true);
            }
            if let Some(cert) = &opts.dtls_cert {
                cfg = cfg.set_dtls_cert(cert.clone());
            }
            cfg.build(now)
        };
        let mut publisher = build(true);
        let mut subscriber = build(false);
        for (rtc, addr) in [(&mut publisher, pub_addr), (&mut subscriber, sub_addr)] {
            // Over ICE-TCP the address is that of an already connected
            // stream: an active candidate, paired with the server's passive one.
            let c = match opts.ice_tcp {
                Some(_) => Candidate::builder()
                    .tcp()
                    .host(addr)
                    .tcptype(TcpType::Active)
                    .build(),
                None => Candidate::host(addr, "udp"),
            }
            .map_err(|e| ClientError::Setup(format!("host candidate {addr}: {e}")))?;
            rtc.add_local_candidate(c)
                .ok_or_else(|| ClientError::Setup(format!("candidate {addr} refused")))?;
        }
        let join = ClientMessage::Join {
            token: token.into(),
            room: opts.room.clone(),
            client: Some(opts.client_name.clone()),
        };
        Ok(Participant {
            token: String::new(),
            opts,
            phase: Phase::Joining,
            publisher,
            subscriber,
            pub_addr,
            sub_addr,
            pub_poll: RtcPoll {
                dirty: true,
                timeout: now,
            },
            sub_poll: RtcPoll {
                dirty: true,
                timeout: now,
            },
            pending_publish: None,
            offered: Vec::new(),
            last_sdp: None,
            outbox: VecDeque::from([join]),
            transmits: VecDeque::new(),
            audio: None,
            audio_level: None,
            video: Vec::new(),
            media_started: false,
            subscribed: HashMap::new(),
            stats: ClientStats::default(),
            next_ping: None,
            ping_sent: None,
            now,
            arrived_unix_us: None,
            seed: RandomState::new(),
        })
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// This participant's id (after `joined`).
    pub fn id(&self) -> Option<&str> {
        self.stats.id.as_deref()
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub fn local_addr(&self, conn: Connection) -> SocketAddr {
        match conn {
            Connection::Publisher => self.pub_addr,
            Connection::Subscriber => self.sub_addr,
        }
    }

    /// The error matching how the session closed, if it did.
    pub fn close_error(&self) -> Option<ClientError> {
        match &self.phase {
            Phase::Closed(CloseReason::Refused { code, message }) => Some(ClientError::Refused {
                code: *code,
                message: message.clone(),
            }),
            Phase::Closed(CloseReason::Bye(r)) => Some(ClientError::Bye(*r)),
            Phase::Closed(CloseReason::SignallingClosed) => Some(ClientError::Closed),
            _ => None,
        }
    }

    /// Whether `datagram` from `source` to `destination` belongs to this
    /// participant (for demultiplexing a shared socket).
    pub fn accepts(&self, source: SocketAddr, destination: SocketAddr, datagram: &[u8]) -> bool {
        let Ok(contents) = datagram.try_into() else {
            return false;
        };
        let input = Input::Receive(
            self.now,
            Receive {
                proto: self.proto(),
                source,
                destination,
                contents,
            },
        );
        self.route(destination)
            .is_some_and(|c| self.rtc(c).accepts(&input))
    }

    /// The transport media uses (see [`ClientOptions::ice_tcp`]).
    pub fn proto(&self) -> Protocol {
        match self.opts.ice_tcp {
            Some(_) => Protocol::Tcp,
            None => Protocol::Udp,
        }
    }

    fn route(&self, destination: SocketAddr) -> Option<Connection> {
        if destination == self.pub_addr {
            Some(Connection::Publisher)
        } else if destination == self.sub_addr {
            Some(Connection::Subscriber)
        } else {
            None
        }
    }

    fn rtc(&self, c: Connection) -> &Rtc {
        match c {
            Connection::Publisher => &self.publisher,
            Connection::Subscriber => &self.subscriber,
        }
    }

    /// A datagram arrived on the socket bound to `destination`. Returns
    /// whether a connection took it; garbage is counted and dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.handle_datagram_arrived(now, None, source, destination, datagram)
    }

    /// [`Self::handle_datagram`], for a driver that knows when the datagram
    /// reached its socket (`arrived_unix_us`, the kernel's receive stamp).
    /// `now` may then be that moment, earlier than the last one given: str0m
    /// takes it as the packet's arrival for the bandwidth feedback, as a
    /// browser stamps packets when its network thread reads them.
    /// A stamped packet's latency up to that moment also goes to
    /// [`ClientStats::arrival_latency`]: the path through the server,
    /// without the time the datagram then waited for this process.
    pub fn handle_datagram_arrived(
        &mut self,
        now: Instant,
        arrived_unix_us: Option<u64>,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.arrived_unix_us = arrived_unix_us;
        let taken = self.handle_one_datagram(now, source, destination, datagram);
        self.arrived_unix_us = None;
        taken
    }

    fn handle_one_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.now = self.now.max(now);
        let Ok(contents) = datagram.try_into() else {
            self.stats.rejected_datagrams += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: self.proto(),
                source,
                destination,
                contents,
            },
        );
        let Some(conn) = self.route(destination) else {
            self.stats.rejected_datagrams += 1;
            return false;
        };
        let (rtc, poll) = match conn {
            Connection::Publisher => (&mut self.publisher, &mut self.pub_poll),
            Connection::Subscriber => (&mut self.subscriber, &mut self.sub_poll),
        };
        if !rtc.is_alive() || !rtc.accepts(&input) {
            self.stats.rejected_datagrams += 1;
            return false;
        }
        poll.dirty = true;
        if let Err(e) = rtc.handle_input(input) {
            debug!(?conn, "str0m refused input: {e}");
            self.stats.rtc_errors += 1;
        }
        self.pump(conn);
        true
    }

    /// Time passed: drive both connections, the media clocks and pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.media_started && self.phase == Phase::Joined {
            self.send_due_media(now);
        }
        if self.phase == Phase::Joined
            && let (Some(next), Some(interval)) = (self.next_ping, self.opts.ping_interval)
            && next <= now
        {
            self.outbox.push_back(ClientMessage::Ping {});
            self.ping_sent = Some(now);
            self.next_ping = Some(now + interval);
        }
        for (rtc, poll) in [
            (&mut self.publisher, &mut self.pub_poll),
            (&mut self.subscriber, &mut self.sub_poll),
        ] {
            if rtc.is_alive() {
                if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
                    debug!("str0m timeout error: {e}");
                    self.stats.rtc_errors += 1;
                }
                poll.dirty = true;
            }
        }
        self.pump(Connection::Publisher);
        self.pump(Connection::Subscriber);
    }

    /// The next thing to do. Call until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(m) = self.outbox.pop_front() {
                return Output::Signal(m);
            }
            if let Some(t) = self.transmits.pop_front() {
                return Output::Transmit(t);
            }
            if self.pub_poll.dirty {
                self.pump(Connection::Publisher);
                continue;
            }
            if self.sub_poll.dirty {
                self.pump(Connection::Subscriber);
                continue;
            }
            let mut t = self.pub_poll.timeout.min(self.sub_poll.timeout);
            if self.media_started && self.phase == Phase::Joined {
                if let Some(a) = &self.audio {
                    t = t.min(a.next);
                }
                for v in &self.video {
                    t = t.min(v.next);
                    if let Some(p) = v.paced.front() {
                        t = t.min(p.at);
                    }
                }
            }
            if self.phase == Phase::Joined
                && let Some(p) = self.next_ping
            {
                t = t.min(p);
            }
            return Output::Timeout(t);
        }
    }

    /// Polls one `Rtc` until its timeout, queueing transmits and handling
    /// events. This must follow every input at once: in RTP mode str0m holds
    /// a single received packet for the next `poll_output`, so a second
    /// input before polling would silently drop the first packet.
    fn pump(&mut self, conn: Connection) {
        loop {
            let polled = match conn {
                Connection::Publisher => {
                    poll_rtc(&mut self.publisher, &mut self.pub_poll, self.now)
                }
                Connection::Subscriber => {
                    poll_rtc(&mut self.subscriber, &mut self.sub_poll, self.now)
                }
            };
            match polled {
                Polled::Transmit(t) => self.transmits.push_back(t),
                Polled::Event(e) => match conn {
                    Connection::Publisher => self.on_publisher_event(e),
                    Connection::Subscriber => self.on_subscriber_event(e),
                },
                Polled::Error => {
                    self.stats.rtc_errors += 1;
                    return;
                }
                Polled::Done => return,
            }
        }
    }

    /// Queue `leave`. The driver should send it and wait for the server to
    /// close the socket.
    pub fn leave(&mut self) {
        if matches!(self.phase, Phase::Joined | Phase::Joining) {
            self.outbox.push_back(ClientMessage::Leave {});
            self.phase = Phase::Leaving;
        }
    }

    /// Puts this audio level (-dBov, 0..=127) on the audio packets sent
    /// from now on, with the voice activity flag set; `None` stops it.
    pub fn set_audio_level(&mut self, dbov: Option<u8>) {
        self.audio_level = dbov.map(|l| l.min(127));
    }

    /// Asks the server for a keyframe of `participant`'s video with an RTCP
    /// PLI, as a browser does when loss recovery failed and it cannot
    /// decode. Returns whether there was a stream to ask on.
    pub fn request_keyframe(&mut self, participant: &str) -> bool {
        let mid = self
            .subscribed
            .iter()
            .find(|(_, s)| s.key.0 == participant && s.key.1 == MediaKind::Video)
            .map(|(mid, _)| *mid);
        let Some(mid) = mid else {
            return false;
        };
        let mut api = self.subscriber.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        self.sub_poll.dirty = true;
        true
    }

    /// Queue `mute`.
    pub fn mute(&mut self, source: Source, muted: bool) {
        self.outbox.push_back(ClientMessage::Mute { source, muted });
    }

    /// Queue a `ping` now.
    pub fn ping(&mut self) {
        self.outbox.push_back(ClientMessage::Ping {});
        self.ping_sent = Some(self.now);
    }

    /// The signalling socket closed.
    pub fn handle_signalling_closed(&mut self) {
        self.stats.signalling_closed = true;
        let reason = match &self.phase {
            Phase::Closed(_) => return,
            Phase::Leaving => CloseReason::Left,
            _ => CloseReason::SignallingClosed,
        };
        self.close(reason);
    }

    fn close(&mut self, reason: CloseReason) {
        info!(id = ?self.stats.id, ?reason, "session over");
        self.phase = Phase::Closed(reason);
        self.media_started = false;
        self.publisher.disconnect();
        self.subscriber.disconnect();
    }

    /// Someone's record, new or changed: ours, or one in the roster.
    fn update_roster(&mut self, participant: ParticipantInfo) {
        if Some(&participant.id) == self.stats.id.as_ref() {
            self.stats.me = Some(participant);
        } else {
            self.stats
                .roster
                .insert(participant.id.clone(), participant);
        }
    }

    /// A text frame from the server.
    pub fn handle_signal_text(&mut self, text: &str) {
        match ServerMessage::decode(text) {
            Ok(m) => self.handle_signal(m),
            Err(e) => {
                warn!("unparsable server message: {e}");
                self.stats.bad_server_messages += 1;
            }
        }
    }

    /// A message from the server.
    pub fn handle_signal(&mut self, msg: ServerMessage) {
        if self.is_closed() {
            return;
        }
        match msg {
            ServerMessage::Joined {
                room,
                participant,
                participants,
                permissions,
                ..
            } => {
                if self.phase != Phase::Joining {
                    self.stats.bad_server_messages += 1;
                    return;
                }
                info!(id = %participant.id, %room, "joined");
                self.token.clear();
                self.stats.id = Some(participant.id.clone());
                self.stats.me = Some(participant);
                self.stats.room = Some(room);
                self.stats.roster = participants
                    .into_iter()
                    .map(|p| (p.id.clone(), p))
                    .collect();
                self.stats.permissions = Some(permissions);
                self.phase = Phase::Joined;
                self.next_ping = self.opts.ping_interval.map(|i| self.now + i);
                self.offer_publish();
            }
            ServerMessage::ParticipantJoined { participant }
            | ServerMessage::ParticipantUpdated { participant } => self.update_roster(participant),
            ServerMessage::ParticipantsUpdated { participants } => {
                for participant in participants.iter() {
                    self.update_roster(participant.clone());
                }
            }
            ServerMessage::ParticipantLeft {
                participant,
                reason,
            } => {
                self.stats.roster.remove(&participant);
                self.stats.quality.remove(&participant);
                self.stats.left.push((participant, reason));
            }
            ServerMessage::PublishAnswer { sdp } => self.on_publish_answer(&sdp),
            ServerMessage::SubscribeOffer { sdp, tracks } => self.on_subscribe_offer(&sdp, tracks),
            ServerMessage::Pong {} => {
                self.stats.pongs += 1;
                if let Some(sent) = self.ping_sent.take() {
                    self.stats.last_pong_rtt = Some(self.now.saturating_duration_since(sent));
                }
            }
            ServerMessage::Error {
                code,
                message,
                request,
            } => {
                warn!(?code, %message, ?request, "server error");
                self.stats.errors.push(ServerError {
                    code,
                    message: message.clone(),
                    request: request.clone(),
                });
                let about_publish = self.pending_publish.is_some()
                    && match request.as_deref() {
                        Some(r) => r == "publish_offer",
                        // No `request`: guess from the code and what was
                        // sent last.
                        None => match code {
                            ErrorCode::Forbidden => true,
                            ErrorCode::SdpRejected => self.last_sdp == Some(LastSdp::PublishOffer),
                            _ => false,
                        },
                    };
                if about_publish {
                    // The offer will not be answered: publish nothing.
                    self.pending_publish = None;
                    self.stats.publish_refused += 1;
                }
                // `forbidden` closes the session only on `join`
                // (docs/protocol.md); `ErrorCode::is_fatal` counts it always.
                let fatal = matches!(code, ErrorCode::Unauthorized | ErrorCode::RoomFull);
                if self.phase == Phase::Joining || fatal {
                    self.close(CloseReason::Refused { code, message });
                }
            }
            ServerMessage::ConnectionQuality { participants } => {
                self.stats.quality_updates += 1;
                self.stats.quality_entries += participants.len() as u64;
                for p in participants {
                    self.stats.quality.insert(p.participant, p.quality);
                }
            }
            m @ ServerMessage::Stats { .. } => self.stats.media_stats.push(m),
            ServerMessage::Bye { reason, .. } => {
                self.stats.bye = Some(reason);
                self.close(CloseReason::Bye(reason));
            }
            // Dynacast: which simulcast layers anybody needs. Like the web
            // client, stop encoding the others; a single stream goes out
            // regardless. Kept for tests that look at it, too.
            ServerMessage::PublishLayers {
                track,
                source,
                layers,
            } => {
                if source == Source::Camera {
                    for l in &layers {
                        let Some(rid) = l.rid.as_deref().map(Rid::from) else {
                            continue;
                        };
                        for v in self.video.iter_mut().filter(|v| v.rid == Some(rid)) {
                            // A layer that comes back starts with a keyframe,
                            // as an encoder restarting does.
                            v.force_keyframe |= l.active && !v.active;
                            v.active = l.active;
                        }
                    }
                }
                self.stats.classroom.push(ServerMessage::PublishLayers {
                    track,
                    source,
                    layers,
                });
            }
            // Classroom messages: kept for tests that look at them.
            other @ (ServerMessage::RoomUpdated { .. }
            | ServerMessage::Chat { .. }
            | ServerMessage::Waiting {}
            | ServerMessage::Lobby { .. }
            | ServerMessage::MuteRequested { .. }
            | ServerMessage::UnmuteRequested { .. }
            | ServerMessage::PermissionsUpdated { .. }
            // Active speakers.
            | ServerMessage::Speakers { .. }
            // The server drains (SIGTERM); the call goes on.
            | ServerMessage::Draining {}) => self.stats.classroom.push(other),
        }
    }

    fn offer_publish(&mut self) {
        let Some(perm) = self.stats.permissions.clone() else {
            return;
        };
        let ignore = self.opts.ignore_permissions;
        let allowed = |s: Source| ignore || (perm.publish && perm.publish_sources.contains(&s));
        let want_audio = self.opts.publish_audio && allowed(Source::Microphone);
        let want_video = self.opts.publish_video && allowed(Source::Camera);
        if !want_audio && !want_video {
            return;
        }
        let stream_id = self.stats.id.clone();
        let mut api = self.publisher.sdp_api();
        let mut tracks = Vec::new();
        if want_audio {
            let mid = api.add_media(
                str0m::media::MediaKind::Audio,
                Direction::SendOnly,
                stream_id.clone(),
                Some("microphone".into()),
                None,
            );
            self.offered.push(mid);
            tracks.push(PublishTrack {
                mid: mid.to_string(),
                source: Source::Microphone,
                muted: false,
            });
        }
        if want_video {
            let simulcast = (!self.opts.simulcast.is_empty()).then(|| {
                let mut s = Simulcast::new();
                for e in &self.opts.simulcast {
                    s.add_send_layer(SimulcastLayer::new(&e.rid));
                }
                s
            });
            let mid = api.add_media(
                str0m::media::MediaKind::Video,
                Direction::SendOnly,
                stream_id,
                Some("camera".into()),
                simulcast,
            );
            self.offered.push(mid);
            tracks.push(PublishTrack {
                mid: mid.to_string(),
                source: Source::Camera,
                muted: false,
            });
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        self.pub_poll.dirty = true;
        self.pending_publish = Some(pending);
        self.last_sdp = Some(LastSdp::PublishOffer);
        self.outbox.push_back(ClientMessage::PublishOffer {
            sdp: offer.to_sdp_string(),
            tracks,
        });
    }

    fn on_publish_answer(&mut self, sdp: &str) {
        let Some(pending) = self.pending_publish.take() else {
            warn!("publish_answer without a pending offer");
            self.stats.bad_server_messages += 1;
            return;
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                warn!("unparsable publish_answer: {e}");
                self.stats.bad_server_messages += 1;
                return;
            }
        };
        if let Err(e) = self.publisher.sdp_api().accept_answer(pending, answer) {
            warn!("publish_answer refused: {e}");
            self.stats.rtc_errors += 1;
            return;
        }
        self.pub_poll.dirty = true;
        self.stats.publish_answers += 1;
        self.stats.server_media_addrs = sdp_candidates(sdp);
        self.setup_senders();
    }

    /// After the publish answer: find each sending mid's negotiated PT.
    fn setup_senders(&mut self) {
        let mids: Vec<(Mid, str0m::media::MediaKind)> = self
            .offered
            .iter()
            .filter_map(|mid| self.publisher.media(*mid))
            .filter(|m| !m.disabled() && m.direction().is_sending())
            .map(|m| (m.mid(), m.kind()))
            .collect();
        let now = self.now;
        for (mid, kind) in mids {
            let codec = if kind.is_audio() {
                Codec::Opus
            } else {
                Codec::Vp8
            };
            let Some(pt) = negotiated_pt(&self.publisher, mid, codec) else {
                warn!(%mid, ?codec, "no negotiated payload type: not sending");
                continue;
            };
            let seq = random_u64(&self.seed, 1 + u64::from(kind.is_video())) % 30_000;
            let ts = random_u64(&self.seed, 3 + u64::from(kind.is_video())) as u32;
            if kind.is_audio() {
                let red = self
                    .opts
                    .audio_red
                    .then(|| negotiated_red(&self.publisher, pt))
                    .flatten();
                self.audio.get_or_insert(AudioTx {
                    mid,
                    pt,
                    red,
                    previous: None,
                    seq,
                    ts,
                    next: now,
                });
            } else if self.video.is_empty() {
                let single = [(None, self.opts.video, self.opts.keyframe_packets)];
                let mut encodings: Vec<_> = if self.opts.simulcast.is_empty() {
                    single.to_vec()
                } else {
                    self.opts
                        .simulcast
                        .iter()
                        .map(|e| (Some(Rid::from(e.rid.as_str())), e.video, e.keyframe_packets))
                        .collect()
                };
                // Rids that come out the same (str0m keeps 8 characters)
                // would be one stream: the first one sends.
                let mut seen = Vec::new();
                encodings.retain(|(rid, _, _)| {
                    let new = !seen.contains(rid);
                    seen.push(*rid);
                    new
                });
                for (i, (rid, shape, keyframe_packets)) in encodings.into_iter().enumerate() {
                    // Each encoding numbers its packets and pictures on its own.
                    let seq = (seq + 7_919 * i as u64) % 30_000;
                    self.video.push(VideoTx {
                        mid,
                        rid,
                        shape,
                        keyframe_packets,
                        active: true,
                        pt,
                        seq,
                        ts,
                        picture_id: (seq as u16) & 0x7fff,
                        next: now,
                        last_keyframe: None,
                        force_keyframe: true,
                        paced: VecDeque::new(),
                        pacer_free_at: now,
                    });
                }
            }
        }
    }

    fn on_subscribe_offer(&mut self, sdp: &str, tracks: Vec<SubscribedTrack>) {
        self.stats.subscribe_offers += 1;
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(o) => o,
            Err(e) => {
                warn!("unparsable subscribe_offer: {e}");
                self.stats.bad_server_messages += 1;
                return;
            }
        };
        let answer = match self.subscriber.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                warn!("subscribe_offer refused: {e}");
                self.stats.rtc_errors += 1;
                return;
            }
        };
        self.sub_poll.dirty = true;
        // `tracks` lists every active m-line: replace the map, keeping the
        // sequence state of m-lines that still carry the same track.
        let mut old = std::mem::take(&mut self.subscribed);
        for t in tracks {
            let mid = Mid::from(t.mid.as_str());
            let stream = match old.remove(&mid) {
                Some(s) if s.track == t.track && s.key.0 == t.participant && s.key.1 == t.kind => s,
                _ => SubStream {
                    key: (t.participant, t.kind),
                    track: t.track,
                    ssrc: None,
                    highest_seq: None,
                    last_ts: None,
                    seen_first: false,
                },
            };
            self.subscribed.insert(mid, stream);
        }
        self.stats.subscribed_tracks = self.subscribed.len();
        self.last_sdp = Some(LastSdp::SubscribeAnswer);
        self.outbox.push_back(ClientMessage::SubscribeAnswer {
            sdp: answer.to_sdp_string(),
        });
    }

    fn on_publisher_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                info!(id = ?self.stats.id, "publisher connected");
                self.stats.publisher_connected = true;
                if !self.media_started {
                    self.media_started = true;
                    let now = self.now;
                    if let Some(a) = &mut self.audio {
                        a.next = now;
                    }
                    for v in &mut self.video {
                        v.next = now;
                    }
                }
            }
            Event::IceConnectionStateChange(s) => {
                debug!(?s, "publisher ice");
                if s == IceConnectionState::Disconnected {
                    self.stats.publisher_connected = false;
                }
            }
            Event::KeyframeRequest(KeyframeRequest { mid, rid, .. }) => {
                self.stats.keyframe_requests += 1;
                for v in &mut self.video {
                    if v.mid == mid && (rid.is_none() || v.rid == rid) {
                        v.force_keyframe = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_subscriber_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                info!(id = ?self.stats.id, "subscriber connected");
                self.stats.subscriber_connected = true;
            }
            Event::IceConnectionStateChange(s) => {
                debug!(?s, "subscriber ice");
                if s == IceConnectionState::Disconnected {
                    self.stats.subscriber_connected = false;
                }
            }
            Event::RtpPacket(p) => self.on_rtp(p),
            _ => {}
        }
    }

    fn on_rtp(&mut self, p: RtpPacket) {
        let ssrc = p.header.ssrc;
        let mid = self
            .subscriber
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| s.mid())
            .or(p.header.ext_vals.mid);
        let Some(stream) = mid.and_then(|m| self.subscribed.get_mut(&m)) else {
            self.stats.unmatched_packets += 1;
            return;
        };
        // No allocation per packet: the key is built once per m-line.
        let received = &mut self.stats.received;
        if !received.contains_key(&stream.key) {
            received.insert(stream.key.clone(), ReceivedCounters::default());
        }
        let Some(c) = received.get_mut(&stream.key) else {
            return;
        };
        c.packets += 1;
        c.bytes += p.payload.len() as u64;
        let ssrc = *ssrc;
        let pt = *p.header.payload_type;
        if !c.payload_types.contains(&pt) {
            c.payload_types.push(pt);
        }
        if !c.ssrcs.contains(&ssrc) {
            c.ssrcs.push(ssrc);
        }
        if stream.ssrc.is_some_and(|s| s != ssrc) {
            c.ssrc_changes += 1;
            stream.highest_seq = None;
            stream.last_ts = None;
        }
        stream.ssrc = Some(ssrc);
        let seq = *p.seq_no;
        match stream.highest_seq {
            Some(h) if seq <= h => c.seq_backwards += 1,
            Some(h) => {
                c.seq_gaps += seq - h - 1;
                stream.highest_seq = Some(seq);
                let ts = p.header.timestamp;
                if let Some(last) = stream.last_ts {
                    let step = ts.wrapping_sub(last) as i32;
                    if step < 0 {
                        c.ts_backwards += 1;
                    } else {
                        let clock = match stream.key.1 {
                            MediaKind::Audio => synth::OPUS_CLOCK,
                            MediaKind::Video => synth::VIDEO_CLOCK,
                        };
                        let ms = u64::from(step.unsigned_abs()) * 1000 / u64::from(clock);
                        c.longest_gap_ms = c.longest_gap_ms.max(ms);
                    }
                }
                stream.last_ts = Some(ts);
            }
            None => {
                stream.highest_seq = Some(seq);
                stream.last_ts = Some(p.header.timestamp);
            }
        }
        if stream.key.1 == MediaKind::Video {
            let key = synth::parse_vp8(&p.payload).is_some_and(|i| i.keyframe);
            if key {
                c.keyframes += 1;
            }
            if !stream.seen_first {
                stream.seen_first = true;
                c.first_packet_was_keyframe.get_or_insert(key);
                if !key {
                    c.streams_not_starting_with_keyframe += 1;
                }
            }
        }
        if let Some(stamp) = synth::read_stamp(&p.payload) {
            let lat = synth::unix_micros().saturating_sub(stamp);
            c.stamped += 1;
            c.first_stamp_us.get_or_insert(stamp);
            c.latency_sum_us += lat;
            c.latency_max_us = c.latency_max_us.max(lat);
            self.stats.latency.record(lat);
            if let Some(arrived) = self.arrived_unix_us {
                self.stats
                    .arrival_latency
                    .record(arrived.saturating_sub(stamp));
            }
        }
    }

    fn send_due_media(&mut self, now: Instant) {
        let stamp = synth::unix_micros();
        if let Some(a) = &mut self.audio {
            skip_if_late(&mut a.next, &mut a.ts, AUDIO_INTERVAL, AUDIO_TS_STEP, now);
            while a.next <= now {
                let mut payload = synth::opus_payload(self.opts.audio_packet_size, stamp);
                let mut pt = a.pt;
                if let Some(red) = a.red {
                    let previous = a.previous.replace(payload.clone());
                    let blocks: Vec<RedundantBlock> = previous
                        .map(|p| RedundantBlock {
                            pt: *a.pt,
                            timestamp_offset: AUDIO_TS_STEP,
                            payload: p,
                        })
                        .into_iter()
                        .collect();
                    payload = RedEncoder::encode(*a.pt, &payload, &blocks);
                    pt = red;
                }
                let len = payload.len() as u64;
                let mut direct = self.publisher.direct_api();
                if let Some(tx) = direct.stream_tx_by_mid(a.mid, None) {
                    let mut write = RtpWrite::new(pt, a.seq.into(), a.ts, now, payload);
                    if let Some(level) = self.audio_level {
                        // `min(127)` above keeps the cast in range.
                        write = write.ext_vals(ExtensionValues {
                            audio_level: Some(-(level as i8)),
                            voice_activity: Some(true),
                            ..Default::default()
                        });
                    }
                    tx.write_rtp(write);
                    a.seq += 1;
                    self.stats.sent_audio.packets += 1;
                    self.stats.sent_audio.bytes += len;
                    self.stats.sent_audio.frames += 1;
                }
                a.ts = a.ts.wrapping_add(AUDIO_TS_STEP);
                a.next += AUDIO_INTERVAL;
            }
        }
        let fps = self.opts.video_fps.clamp(1, 120);
        let interval = Duration::from_secs(1) / fps;
        let step = synth::VIDEO_CLOCK / fps;
        for v in &mut self.video {
            // The pacer's rate: a multiple of the encoding's average bitrate
            // (frames of the usual size), as a browser sets it from its
            // target.
            let average = (v.shape.packets_per_frame.max(1) * v.shape.packet_size * 8) as f64
                * f64::from(fps);
            let pacing_bps = self
                .opts
                .video_pacing
                .map(|factor| factor * average)
                .filter(|rate| rate.is_finite() && *rate > 0.0);
            skip_if_late(&mut v.next, &mut v.ts, interval, step, now);
            while v.next <= now {
                let key = v.force_keyframe
                    || v.last_keyframe.is_none_or(|k| {
                        now.saturating_duration_since(k) >= self.opts.keyframe_interval
                    });
                let mut shape = v.shape;
                if key && let Some(n) = v.keyframe_packets {
                    shape.packets_per_frame = n;
                }
                if !v.active
                    || self
                        .publisher
                        .direct_api()
                        .stream_tx_by_mid(v.mid, v.rid)
                        .is_none()
                {
                    v.next += interval;
                    continue;
                }
                let packets = synth::vp8_frame(&shape, key, v.picture_id, stamp);
                let n = packets.len();
                for (i, payload) in packets.into_iter().enumerate() {
                    let at = match pacing_bps {
                        Some(rate) => {
                            let at = v.pacer_free_at.max(v.next);
                            let bits = (payload.len() * 8) as f64;
                            v.pacer_free_at = at + Duration::from_secs_f64(bits / rate);
                            at
                        }
                        None => v.next,
                    };
                    v.paced.push_back(PacedPacket {
                        at,
                        ts: v.ts,
                        marker: i + 1 == n,
                        payload,
                    });
                }
                self.stats.sent_video.frames += 1;
                if key {
                    self.stats.sent_video.keyframes += 1;
                    v.last_keyframe = Some(now);
                    v.force_keyframe = false;
                }
                v.picture_id = v.picture_id.wrapping_add(1) & 0x7fff;
                v.ts = v.ts.wrapping_add(step);
                v.next += interval;
            }
            let mut direct = self.publisher.direct_api();
            let Some(tx) = direct.stream_tx_by_mid(v.mid, v.rid) else {
                v.paced.clear();
                continue;
            };
            while v.paced.front().is_some_and(|p| p.at <= now) {
                let Some(mut p) = v.paced.pop_front() else {
                    break;
                };
                if pacing_bps.is_some() {
                    // The send time, not the frame's: what the network and
                    // the server add is what is measured.
                    synth::restamp(&mut p.payload, synth::unix_micros());
                }
                self.stats.sent_video.packets += 1;
                self.stats.sent_video.bytes += p.payload.len() as u64;
                tx.write_rtp(
                    RtpWrite::new(v.pt, v.seq.into(), p.ts, now, p.payload)
                        .marker(p.marker)
                        .nackable(true),
                );
                v.seq += 1;
            }
        }
    }
}

/// When the clock is far behind (a stalled thread), jump ahead, advancing
/// the RTP time as real time passed (sequence numbers stay contiguous).
fn skip_if_late(next: &mut Instant, ts: &mut u32, interval: Duration, step: u32, now: Instant) {
    let late = now.saturating_duration_since(*next);
    if late > MAX_CATCH_UP {
        let skipped = (late.as_micros() / interval.as_micros().max(1)) as u32;
        *ts = ts.wrapping_add(step.wrapping_mul(skipped));
        *next += interval * skipped;
    }
}

#[allow(clippy::large_enum_variant)] // as str0m::Output; lives on the stack briefly
enum Polled {
    Transmit(Transmit),
    Event(Event),
    Error,
    Done,
}

fn poll_rtc(rtc: &mut Rtc, poll: &mut RtcPoll, now: Instant) -> Polled {
    if !rtc.is_alive() {
        poll.dirty = false;
        poll.timeout = now + FAR_FUTURE;
        return Polled::Done;
    }
    match rtc.poll_output() {
        Ok(str0m::Output::Transmit(t)) => Polled::Transmit(t),
        Ok(str0m::Output::Event(e)) => Polled::Event(e),
        Ok(str0m::Output::Timeout(t)) => {
            poll.dirty = false;
            poll.timeout = t;
            Polled::Done
        }
        Err(e) => {
            warn!("str0m poll_output: {e}");
            poll.dirty = false;
            poll.timeout = now + Duration::from_millis(100);
            Polled::Error
        }
    }
}

/// The negotiated payload type of `codec` on `mid`: the first of the
/// remote's PTs for that m-line that maps to `codec` in our config.
fn negotiated_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let cfg = rtc.codec_config();
    media.remote_pts().iter().copied().find(|pt| {
        cfg.find(|p| p.pt() == *pt && p.spec().codec == codec)
            .is_some()
    })
}

/// The RED payload type wrapping `primary`, if negotiated: str0m folds RED
/// onto its primary codec's parameters and drops it when the answer lacks
/// it (`remote_pts` lists primary payload types only).
fn negotiated_red(rtc: &Rtc, primary: Pt) -> Option<Pt> {
    rtc.codec_config()
        .find(|p| p.pt() == primary)
        .and_then(|p| p.red())
}

/// UDP addresses of the `a=candidate` lines of an SDP.
pub fn sdp_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        let Some(rest) = line.trim().strip_prefix("a=candidate:") else {
            continue;
        };
        // foundation component transport priority address port typ …
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
            continue;
        }
        let Ok(ip) = f[4].parse::<std::net::IpAddr>() else {
            continue;
        };
        let Ok(port) = f[5].parse::<u16>() else {
            continue;
        };
        let addr = SocketAddr::new(ip, port);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_read_from_sdp() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
            a=candidate:2 1 UDP 2130706431 ::1 40001 typ host\r\n\
            a=candidate:3 1 tcp 2130706431 127.0.0.1 9 typ host tcptype active\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n\
            a=candidate:bad\r\n\
            a=candidate:4 1 udp x 127.0.0.1 notaport typ host\r\n";
        assert_eq!(
            sdp_candidates(sdp),
            vec![
                "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
                "[::1]:40001".parse().unwrap()
            ]
        );
    }

    fn participant() -> Participant {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        Participant::new("t", ClientOptions::default(), a, b, Instant::now()).unwrap()
    }

    #[test]
    fn first_output_is_join_and_errors_before_joined_close() {
        let mut p = participant();
        match p.poll_output() {
            Output::Signal(ClientMessage::Join { token, .. }) => assert_eq!(token, "t"),
            o => panic!("{o:?}"),
        }
        p.handle_signal_text(r#"{"type":"error","code":"unauthorized","message":"nope"}"#);
        assert!(p.is_closed());
        assert_eq!(
            p.close_error().and_then(|e| e.server_code()),
            Some(ErrorCode::Unauthorized)
        );
    }

    #[test]
    fn garbage_from_the_server_is_counted_not_fatal() {
        let mut p = participant();
        let _ = p.poll_output();
        for text in [
            "",
            "{",
            r#"{"type":"dance"}"#,
            r#"{"type":"publish_answer","sdp":"v=0"}"#,
        ] {
            p.handle_signal_text(text);
        }
        // An offer that is no SDP, and one with no m-lines.
        p.handle_signal_text(r#"{"type":"subscribe_offer","sdp":"garbage","tracks":[]}"#);
        p.handle_signal_text(r#"{"type":"subscribe_offer","sdp":"v=0\r\n","tracks":[]}"#);
        assert!(!p.is_closed());
        assert!(p.stats().bad_server_messages >= 4, "{:?}", p.stats());
        // Datagrams on an unknown local address, or unparsable, are refused.
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(!p.handle_datagram(Instant::now(), from, from, &[1, 2, 3]));
        assert!(!p.handle_datagram(Instant::now(), from, p.pub_addr, &[]));
        assert!(!p.handle_datagram(Instant::now(), from, p.sub_addr, &[0x80; 40]));
    }

    #[test]
    fn forbidden_after_join_does_not_close() {
        let mut p = participant();
        let _ = p.poll_output();
        p.handle_signal_text(
            r#"{"type":"joined","room":"r","participant":{"id":"P1","identity":"a","name":"A","role":"guest","tracks":[]},"participants":[],"permissions":{"publish":false,"subscribe":true,"publish_sources":[],"chat":false,"moderate":false},"ice_servers":[]}"#,
        );
        assert_eq!(*p.phase(), Phase::Joined);
        // A guest offers nothing.
        while let Output::Signal(m) = p.poll_output() {
            assert!(!matches!(m, ClientMessage::PublishOffer { .. }), "{m:?}");
        }
        p.handle_signal_text(r#"{"type":"error","code":"forbidden","message":"no"}"#);
        assert_eq!(*p.phase(), Phase::Joined);
        p.handle_signal_text(r#"{"type":"bye","reason":"replaced"}"#);
        assert_eq!(
            *p.phase(),
            Phase::Closed(CloseReason::Bye(LeaveReason::Replaced))
        );
    }
}

//! Health, readiness and Prometheus metrics.
//!
//! The media thread keeps its counters in plain integers (the engine's
//! [`SfuStats`] and the socket counts of [`MediaObserver`]) and copies them
//! into [`Ops`] about once a second; HTTP handlers only ever read that copy.
//! So the packet path takes no lock and touches no atomic for metrics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amphi_protocol::{ErrorCode, ServerMessage};
use amphi_room::{Sfu, SfuEvent};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc::UnboundedSender;

/// How often the media thread publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Why a join was refused, as the `reason` label of
/// `amphi_join_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinFailure {
    /// The token was refused (`unauthorized`).
    Unauthorized,
    /// The token grants neither publishing nor subscribing (`forbidden`).
    Forbidden,
    /// No `join` within the deadline.
    NoJoin,
    /// The room was at its participant limit (`room_full`).
    RoomFull,
    /// The server is draining and the room did not exist.
    Draining,
}

impl JoinFailure {
    const ALL: [JoinFailure; 5] = [
        JoinFailure::Unauthorized,
        JoinFailure::Forbidden,
        JoinFailure::NoJoin,
        JoinFailure::RoomFull,
        JoinFailure::Draining,
    ];

    fn label(self) -> &'static str {
        match self {
            JoinFailure::Unauthorized => "unauthorized",
            JoinFailure::Forbidden => "forbidden",
            JoinFailure::NoJoin => "no_join",
            JoinFailure::RoomFull => "room_full",
            JoinFailure::Draining => "draining",
        }
    }
}

/// The media thread's counters, as last published.
#[derive(Debug, Clone, Default)]
pub struct MediaSnapshot {
    pub rooms: usize,
    pub participants: usize,
    pub published_tracks: usize,
    pub subscribed_tracks: usize,
    pub datagrams_in: u64,
    pub bytes_in: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub unroutable_datagrams: u64,
    pub rejected_datagrams: u64,
    pub rtp_packets_in: u64,
    pub rtp_packets_out: u64,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_received: u64,
    pub nacks_sent: u64,
    pub nacks_received: u64,
    pub packets_lost_downstream: u64,
}

/// What the HTTP side knows about the server's health; shared by every
/// handler and the media thread.
pub struct Ops {
    /// The media thread is running (set by it, cleared when it stops).
    media_running: AtomicBool,
    draining: AtomicBool,
    snapshot: Mutex<MediaSnapshot>,
    join_failures: [AtomicU64; JoinFailure::ALL.len()],
    pub webhooks_delivered: AtomicU64,
    pub webhooks_retried: AtomicU64,
    pub webhooks_failed: AtomicU64,
    started: std::time::SystemTime,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            media_running: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            snapshot: Mutex::new(MediaSnapshot::default()),
            join_failures: Default::default(),
            webhooks_delivered: AtomicU64::new(0),
            webhooks_retried: AtomicU64::new(0),
            webhooks_failed: AtomicU64::new(0),
            started: std::time::SystemTime::now(),
        }
    }
}

impl Ops {
    pub fn join_failed(&self, why: JoinFailure) {
        let i = JoinFailure::ALL.iter().position(|w| *w == why).unwrap_or(0);
        self.join_failures[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_media_running(&self, running: bool) {
        self.media_running.store(running, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready for new rooms: the media thread runs and the server is not
    /// draining.
    pub fn is_ready(&self) -> bool {
        self.media_running.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn snapshot(&self) -> MediaSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, s: MediaSnapshot) {
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        };
        metric(
            "amphi_build_info",
            "gauge",
            "Always 1; the label says which version runs.",
            &[(concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""), 1)],
        );
        let start = self
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        metric(
            "process_start_time_seconds",
            "gauge",
            "When the server started, in seconds since 1970.",
            &[("", start)],
        );
        metric(
            "amphi_ready",
            "gauge",
            "1 when the server takes new rooms (media thread up, not draining).",
            &[("", u64::from(self.is_ready()))],
        );
        metric(
            "amphi_draining",
            "gauge",
            "1 after SIGTERM: no new rooms, existing rooms go on until they end or drain_timeout.",
            &[("", u64::from(self.is_draining()))],
        );
        metric(
            "amphi_rooms",
            "gauge",
            "Rooms with at least one participant.",
            &[("", s.rooms as u64)],
        );
        metric(
            "amphi_participants",
            "gauge",
            "Participants in all rooms.",
            &[("", s.participants as u64)],
        );
        metric(
            "amphi_published_tracks",
            "gauge",
            "Tracks participants publish (audio and video).",
            &[("", s.published_tracks as u64)],
        );
        metric(
            "amphi_subscribed_tracks",
            "gauge",
            "Tracks forwarded to subscribers (one per subscriber and track).",
            &[("", s.subscribed_tracks as u64)],
        );
        metric(
            "amphi_udp_datagrams_total",
            "counter",
            "Datagrams through the media socket (STUN, DTLS, RTP and RTCP).",
            &[
                ("direction=\"in\"", s.datagrams_in),
                ("direction=\"out\"", s.datagrams_out),
            ],
        );
        metric(
            "amphi_udp_bytes_total",
            "counter",
            "Bytes through the media socket (UDP payloads).",
            &[
                ("direction=\"in\"", s.bytes_in),
                ("direction=\"out\"", s.bytes_out),
            ],
        );
        metric(
            "amphi_rtp_packets_total",
            "counter",
            "RTP packets received from publishers (in) and forwarded to subscribers (out).",
            &[
                ("direction=\"in\"", s.rtp_packets_in),
                ("direction=\"out\"", s.rtp_packets_out),
            ],
        );
        metric(
            "amphi_datagrams_dropped_total",
            "counter",
            "Datagrams dropped: from no known peer (unroutable) or unusable by their peer connection (rejected).",
            &[
                ("reason=\"unroutable\"", s.unroutable_datagrams),
                ("reason=\"rejected\"", s.rejected_datagrams),
            ],
        );
        metric(
            "amphi_keyframe_requests_total",
            "counter",
            "PLIs: sent to publishers (sent) and received from subscribers (received).",
            &[
                ("direction=\"sent\"", s.keyframe_requests_sent),
                ("direction=\"received\"", s.keyframe_requests_received),
            ],
        );
        metric(
            "amphi_nacks_total",
            "counter",
            "NACKs (retransmission requests): sent to publishers and received from subscribers.",
            &[
                ("direction=\"sent\"", s.nacks_sent),
                ("direction=\"received\"", s.nacks_received),
            ],
        );
        metric(
            "amphi_packets_lost_total",
            "counter",
            "Packets subscribers report lost in their RTCP receiver reports (downstream). Upstream loss is not measured yet.",
            &[("direction=\"downstream\"", s.packets_lost_downstream)],
        );
        // Said here rather than exported as a made-up number.
        out.push_str(
            "# amphi_bandwidth_estimate_bps is not exported: the engine does not run \
             bandwidth estimation yet (see docs/operations.md).\n",
        );
        let failures: Vec<(String, u64)> = JoinFailure::ALL
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    format!("reason=\"{}\"", w.label()),
                    self.join_failures[i].load(Ordering::Relaxed),
                )
            })
            .collect();
        let failures: Vec<(&str, u64)> = failures.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
        metric(
            "amphi_join_failures_total",
            "counter",
            "Joins refused, by reason.",
            &failures,
        );
        metric(
            "amphi_webhook_deliveries_total",
            "counter",
            "Webhook requests: delivered (2xx), retried after a failure, abandoned after the last retry.",
            &[
                (
                    "result=\"delivered\"",
                    self.webhooks_delivered.load(Ordering::Relaxed),
                ),
                (
                    "result=\"retried\"",
                    self.webhooks_retried.load(Ordering::Relaxed),
                ),
                (
                    "result=\"failed\"",
                    self.webhooks_failed.load(Ordering::Relaxed),
                ),
            ],
        );
        out
    }
}

/// `/healthz`: the process answers. `/readyz`: it takes new rooms.
pub fn health_routes<S: Clone + Send + Sync + 'static>(ops: Arc<Ops>) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ops)
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    if ops.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if ops.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "media thread not running\n",
        )
            .into_response()
    }
}

/// The metrics listener's routes: `/metrics`, `/healthz`, `/readyz`.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(ops.clone())
        .merge(health_routes(ops))
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.render(),
    )
        .into_response()
}

/// The media thread's side: counts datagrams, forwards room events, and
/// publishes a snapshot once a second. Owned by the media thread alone.
pub struct MediaObserver {
    ops: Arc<Ops>,
    /// To the webhook task: an unbounded tokio channel never blocks the
    /// media thread.
    events: Option<UnboundedSender<SfuEvent>>,
    hash_identities: bool,
    last_publish: Option<Instant>,
    datagrams_in: u64,
    bytes_in: u64,
    datagrams_out: u64,
    bytes_out: u64,
}

impl MediaObserver {
    pub fn new(
        ops: Arc<Ops>,
        events: Option<UnboundedSender<SfuEvent>>,
        hash_identities: bool,
    ) -> Self {
        MediaObserver {
            ops,
            events,
            hash_identities,
            last_publish: None,
            datagrams_in: 0,
            bytes_in: 0,
            datagrams_out: 0,
            bytes_out: 0,
        }
    }

    pub fn started(&self) {
        self.ops.set_media_running(true);
    }

    pub fn stopped(&self) {
        self.ops.set_media_running(false);
    }

    #[inline]
    pub fn received(&mut self, len: usize) {
        self.datagrams_in += 1;
        self.bytes_in += len as u64;
    }

    #[inline]
    pub fn sent(&mut self, len: usize) {
        self.datagrams_out += 1;
        self.bytes_out += len as u64;
    }

    /// A message the engine sends a participant: counts refusals.
    pub fn signal(&self, message: &ServerMessage) {
        if let ServerMessage::Error {
            code: ErrorCode::RoomFull,
            ..
        } = message
        {
            self.ops.join_failed(JoinFailure::RoomFull);
        }
    }

    /// Whether a join to `room` must be refused: while draining, only
    /// rooms that exist take newcomers.
    pub fn refuse_join(&self, sfu: &Sfu, room: &str) -> bool {
        let refuse = self.ops.is_draining() && sfu.room_size(room) == 0;
        if refuse {
            self.ops.join_failed(JoinFailure::Draining);
        }
        refuse
    }

    pub fn event(&self, event: SfuEvent) {
        tracing::debug!(event = %crate::logging::EventLog(&event, self.hash_identities), "room event");
        if let Some(tx) = &self.events {
            // The webhook task gone (shutting down) loses nothing we need.
            let _ = tx.send(event);
        }
    }

    /// Publishes the counters if a second has passed (or `force`).
    pub fn tick(&mut self, sfu: &Sfu, now: Instant, force: bool) {
        if !force
            && self
                .last_publish
                .is_some_and(|t| now.duration_since(t) < PUBLISH_EVERY)
        {
            return;
        }
        self.last_publish = Some(now);
        let st = sfu.stats();
        let (published_tracks, subscribed_tracks) = sfu.track_counts();
        self.ops.publish(MediaSnapshot {
            rooms: sfu.room_count(),
            participants: sfu.participant_count(),
            published_tracks,
            subscribed_tracks,
            datagrams_in: self.datagrams_in,
            bytes_in: self.bytes_in,
            datagrams_out: self.datagrams_out,
            bytes_out: self.bytes_out,
            unroutable_datagrams: st.unroutable_datagrams,
            rejected_datagrams: st.rejected_datagrams,
            rtp_packets_in: st.rtp_packets_in,
            rtp_packets_out: st.rtp_packets_out,
            keyframe_requests_sent: st.keyframe_requests,
            keyframe_requests_received: st.plis_received,
            nacks_sent: st.nacks_sent,
            nacks_received: st.nacks_received,
            packets_lost_downstream: st.packets_lost_downstream,
        });
    }
}

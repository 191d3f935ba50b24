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

/// Upper bounds (bits/s) of the buckets of subscribers by downlink
/// estimate: from below one small video layer to more than any call here
/// needs, so that "how many people are starved" is one bucket read.
pub const ESTIMATE_BUCKETS: [u64; 8] = [
    150_000, 300_000, 500_000, 1_000_000, 1_500_000, 2_500_000, 5_000_000, 10_000_000,
];

/// The subscribers' downlink bandwidth estimates at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EstimateSummary {
    /// Subscribers with an estimate.
    pub count: usize,
    pub sum: u64,
    pub min: u64,
    /// The lower median (an actual subscriber's estimate).
    pub median: u64,
    /// Subscribers whose estimate is at most `ESTIMATE_BUCKETS[i]`
    /// (cumulative, as Prometheus buckets are).
    pub buckets: [usize; ESTIMATE_BUCKETS.len()],
}

impl EstimateSummary {
    pub fn of(estimates: impl Iterator<Item = u64>) -> Self {
        let mut all: Vec<u64> = estimates.collect();
        all.sort_unstable();
        let mut buckets = [0; ESTIMATE_BUCKETS.len()];
        for (b, bound) in buckets.iter_mut().zip(ESTIMATE_BUCKETS) {
            *b = all.partition_point(|e| *e <= bound);
        }
        EstimateSummary {
            count: all.len(),
            sum: all.iter().fold(0u64, |a, e| a.saturating_add(*e)),
            min: all.first().copied().unwrap_or(0),
            median: all
                .get(all.len().saturating_sub(1) / 2)
                .copied()
                .unwrap_or(0),
            buckets,
        }
    }
}

/// How a TURN client reaches the server, as the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnTransport {
    Udp,
    Tcp,
    Tls,
}

impl TurnTransport {
    const ALL: [TurnTransport; 3] = [TurnTransport::Udp, TurnTransport::Tcp, TurnTransport::Tls];

    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            TurnTransport::Udp => "udp",
            TurnTransport::Tcp => "tcp",
            TurnTransport::Tls => "tls",
        }
    }
}

/// Held by a TURN allocation: counts it while it lives, whichever of its
/// several ends (expiry, refresh to 0, the client's connection closing)
/// removes it.
pub struct TurnAllocationGauge {
    ops: Arc<Ops>,
    transport: TurnTransport,
}

impl Drop for TurnAllocationGauge {
    fn drop(&mut self) {
        self.ops.turn_open[self.transport.index()].fetch_sub(1, Ordering::Relaxed);
    }
}

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
    pub layer_switches: u64,
    pub congestion_events: u64,
    pub downlink: EstimateSummary,
    /// ICE-TCP connections accepted since start, and open now.
    pub ice_tcp_accepted: u64,
    pub ice_tcp_open: usize,
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
    /// TURN allocations created, and alive now, by `TurnTransport`. The
    /// TURN server runs on tokio tasks, not the media thread, so these are
    /// atomics like the webhook counters.
    turn_created: [AtomicU64; TurnTransport::ALL.len()],
    turn_open: [AtomicU64; TurnTransport::ALL.len()],
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
            turn_created: Default::default(),
            turn_open: Default::default(),
            started: std::time::SystemTime::now(),
        }
    }
}

impl Ops {
    pub fn join_failed(&self, why: JoinFailure) {
        let i = JoinFailure::ALL.iter().position(|w| *w == why).unwrap_or(0);
        self.join_failures[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A TURN allocation was created; it counts as open until the
    /// returned gauge is dropped.
    pub fn turn_allocated(self: &Arc<Self>, transport: TurnTransport) -> TurnAllocationGauge {
        self.turn_created[transport.index()].fetch_add(1, Ordering::Relaxed);
        self.turn_open[transport.index()].fetch_add(1, Ordering::Relaxed);
        TurnAllocationGauge {
            ops: self.clone(),
            transport,
        }
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
        metric(
            "amphi_layer_switches_total",
            "counter",
            "Subscribers moved to another simulcast layer (at a keyframe).",
            &[("", s.layer_switches)],
        );
        metric(
            "amphi_downlink_congestion_events_total",
            "counter",
            "Times a subscriber's video started shedding frames because its connection's send queue backed up (a downlink slower than its estimate).",
            &[("", s.congestion_events)],
        );
        let d = &s.downlink;
        metric(
            "amphi_downlink_estimate_sum_bits_per_second",
            "gauge",
            "Sum of the subscribers' downlink bandwidth estimates (send-side BWE).",
            &[("", d.sum)],
        );
        // Min and median only when someone has an estimate: a made-up 0
        // would fire every "starved subscriber" alert on an idle server.
        let some = |v: u64| if d.count > 0 { vec![("", v)] } else { vec![] };
        metric(
            "amphi_downlink_estimate_min_bits_per_second",
            "gauge",
            "The lowest subscriber downlink bandwidth estimate (absent without subscribers).",
            &some(d.min),
        );
        metric(
            "amphi_downlink_estimate_median_bits_per_second",
            "gauge",
            "The median subscriber downlink bandwidth estimate (absent without subscribers).",
            &some(d.median),
        );
        // Buckets of a distribution at one moment (a "gauge histogram"):
        // gauges with `le`, so histogram_quantile() works on them while
        // nothing pretends to be a counter that can go down.
        let bounds: Vec<String> = ESTIMATE_BUCKETS
            .iter()
            .map(|b| format!("le=\"{b}\""))
            .chain(std::iter::once("le=\"+Inf\"".to_owned()))
            .collect();
        let counts = d.buckets.iter().copied().chain(std::iter::once(d.count));
        let buckets: Vec<(&str, u64)> = bounds
            .iter()
            .map(String::as_str)
            .zip(counts.map(|c| c as u64))
            .collect();
        metric(
            "amphi_downlink_estimate_subscribers",
            "gauge",
            "Subscribers whose downlink bandwidth estimate is at most le bits/s (cumulative).",
            &buckets,
        );
        metric(
            "amphi_ice_tcp_connections_total",
            "counter",
            "ICE-TCP connections accepted on media.tcp_port.",
            &[("", s.ice_tcp_accepted)],
        );
        metric(
            "amphi_ice_tcp_connections",
            "gauge",
            "ICE-TCP connections open.",
            &[("", s.ice_tcp_open as u64)],
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
        let turn = |counters: &[AtomicU64; 3]| -> Vec<(String, u64)> {
            TurnTransport::ALL
                .iter()
                .map(|t| {
                    (
                        format!("transport=\"{}\"", t.label()),
                        counters[t.index()].load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        let (created, open) = (turn(&self.turn_created), turn(&self.turn_open));
        let created: Vec<(&str, u64)> = created.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        let open: Vec<(&str, u64)> = open.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            "amphi_turn_allocations_total",
            "counter",
            "TURN allocations created, by how the client reached the TURN server.",
            &created,
        );
        metric(
            "amphi_turn_allocations",
            "gauge",
            "TURN allocations alive, by how the client reached the TURN server.",
            &open,
        );
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
    ice_tcp_accepted: u64,
    ice_tcp_open: usize,
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
            ice_tcp_accepted: 0,
            ice_tcp_open: 0,
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

    /// The ICE-TCP listener's counts (connections accepted, open now).
    #[inline]
    pub fn ice_tcp(&mut self, accepted: u64, open: usize) {
        self.ice_tcp_accepted = accepted;
        self.ice_tcp_open = open;
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
            layer_switches: st.layer_switches,
            congestion_events: st.congestion_events,
            downlink: EstimateSummary::of(sfu.downlink_estimates()),
            ice_tcp_accepted: self.ice_tcp_accepted,
            ice_tcp_open: self.ice_tcp_open,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_summary_counts_buckets_cumulatively() {
        let s = EstimateSummary::of([2_000_000, 100_000, 800_000, 40_000_000].into_iter());
        assert_eq!(s.count, 4);
        assert_eq!(s.sum, 42_900_000);
        assert_eq!(s.min, 100_000);
        assert_eq!(s.median, 800_000, "the lower median");
        // <=150k: 1, <=300k: 1, <=500k: 1, <=1M: 2, <=1.5M: 2, <=2.5M: 3, ...
        assert_eq!(s.buckets, [1, 1, 1, 2, 2, 3, 3, 3]);
        assert_eq!(
            EstimateSummary::of(std::iter::empty()),
            EstimateSummary::default()
        );
    }

    #[test]
    fn turn_allocations_count_while_alive() {
        let ops = Arc::new(Ops::default());
        let a = ops.turn_allocated(TurnTransport::Tls);
        let b = ops.turn_allocated(TurnTransport::Tcp);
        drop(a);
        let text = ops.render();
        assert!(text.contains("amphi_turn_allocations_total{transport=\"tls\"} 1\n"));
        assert!(text.contains("amphi_turn_allocations{transport=\"tls\"} 0\n"));
        assert!(text.contains("amphi_turn_allocations{transport=\"tcp\"} 1\n"));
        drop(b);
    }
}

//! A worker thread: many participants on one `mio::Poll`, a timer heap for
//! their deadlines, and a command channel from the main thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use amphi_client::{ClientOptions, Connection, LatencyHistogram};
use mio::{Events, Poll, Token, Waker};
use tracing::warn;

use crate::peer::{Peer, Source, from_token};

/// The token of the worker's waker (peers use `slot * 3 + 0..3`).
pub const WAKE: Token = Token(usize::MAX);
/// How often a worker refreshes the shared progress counters.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long to wait for the server to close the sockets after `leave`.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// One participant to start, at `at`.
pub struct Plan {
    pub index: usize,
    pub at: Instant,
    pub token: String,
    pub opts: ClientOptions,
    pub expected_streams: usize,
}

pub struct WorkerConfig {
    pub url: String,
    pub bind_ip: Option<IpAddr>,
    pub connect_timeout: Duration,
    /// Sorted by `at`.
    pub plans: Vec<Plan>,
}

/// Live counters, summed over all workers by the main thread.
#[derive(Debug, Default)]
pub struct Progress {
    pub started: AtomicU64,
    pub joined: AtomicU64,
    pub ready: AtomicU64,
    pub failed: AtomicU64,
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    pub gaps: AtomicU64,
}

pub enum Command {
    /// Send back a snapshot of every counter.
    Snapshot(Sender<Snapshot>),
    /// Leave the room and stop.
    Stop,
}

/// Counters of one worker at one instant.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_video: u64,
    pub rx_audio: u64,
    pub gaps: u64,
    pub backwards: u64,
    pub tx_packets: u64,
    pub udp_send_drops: u64,
    pub latency: LatencyHistogram,
    pub arrival_latency: LatencyHistogram,
    /// Packets received so far by each participant that should receive
    /// media, by participant index.
    pub per_receiver: Vec<(usize, u64)>,
    pub ready: usize,
    pub failed: usize,
    /// Participants whose setup (WebSocket, sockets) failed.
    pub connect_errors: usize,
    pub keyframe_requests: u64,
    /// Local UDP ports of the participants, and the server's media port.
    pub local_ports: Vec<u16>,
    pub server_port: Option<u16>,
}

impl Snapshot {
    pub fn add(&mut self, o: &Snapshot) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_video += o.rx_video;
        self.rx_audio += o.rx_audio;
        self.gaps += o.gaps;
        self.backwards += o.backwards;
        self.tx_packets += o.tx_packets;
        self.udp_send_drops += o.udp_send_drops;
        self.latency.merge(&o.latency);
        self.arrival_latency.merge(&o.arrival_latency);
        self.per_receiver.extend_from_slice(&o.per_receiver);
        self.ready += o.ready;
        self.failed += o.failed;
        self.connect_errors += o.connect_errors;
        self.keyframe_requests += o.keyframe_requests;
        self.local_ports.extend_from_slice(&o.local_ports);
        self.server_port = self.server_port.or(o.server_port);
    }
}

pub struct Worker {
    cfg: WorkerConfig,
    poll: Poll,
    peers: Vec<Peer>,
    /// (deadline, slot); stale entries are skipped (see `Peer::scheduled`).
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    next_plan: usize,
    commands: Receiver<Command>,
    progress: Arc<Progress>,
    connect_errors: usize,
}

impl Worker {
    /// A worker and the waker that interrupts its poll for a command.
    pub fn new(
        cfg: WorkerConfig,
        commands: Receiver<Command>,
        progress: Arc<Progress>,
    ) -> std::io::Result<(Worker, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        Ok((
            Worker {
                cfg,
                poll,
                peers: Vec::new(),
                timers: BinaryHeap::new(),
                next_plan: 0,
                commands,
                progress,
                connect_errors: 0,
            },
            waker,
        ))
    }

    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        let mut next_progress = Instant::now();
        let mut due: Vec<usize> = Vec::new();
        loop {
            match self.commands.try_recv() {
                Ok(Command::Snapshot(reply)) => {
                    let _ = reply.send(self.snapshot());
                }
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    self.leave_all(&mut events, &mut buf);
                    return Ok(());
                }
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            // At most one new participant per round: the WebSocket handshake
            // blocks, and everyone else's media must keep flowing.
            if let Some(plan) = self.cfg.plans.get(self.next_plan)
                && plan.at <= now
            {
                self.start_next();
                continue;
            }
            if now >= next_progress {
                self.update_progress();
                next_progress = now + PROGRESS_EVERY;
            }

            let mut wake_at = next_progress;
            if let Some(Reverse((t, _))) = self.timers.peek() {
                wake_at = wake_at.min(*t);
            }
            if let Some(plan) = self.cfg.plans.get(self.next_plan) {
                wake_at = wake_at.min(plan.at);
            }
            let wait = wake_at.saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                let (slot, source) = from_token(ev.token());
                let Some(peer) = self.peers.get_mut(slot) else {
                    continue;
                };
                match source {
                    // Writable: tungstenite may hold unsent frames.
                    Source::Ws => {
                        peer.read_ws();
                        peer.flush_ws();
                    }
                    s => peer.read_udp(s, &mut buf),
                }
                let d = peer.drain();
                schedule(&mut self.timers, peer, slot, d);
            }

            // Timers: take everything due now, then handle each once (a
            // deadline still in the past afterwards waits for the next round).
            let now = Instant::now();
            due.clear();
            while let Some(Reverse((t, slot))) = self.timers.peek().copied() {
                if t > now {
                    break;
                }
                self.timers.pop();
                let Some(peer) = self.peers.get_mut(slot) else {
                    continue;
                };
                if peer.scheduled == Some(t) {
                    peer.scheduled = None;
                    due.push(slot);
                }
            }
            for &slot in &due {
                let Some(peer) = self.peers.get_mut(slot) else {
                    continue;
                };
                if peer.deadline <= now {
                    peer.participant.handle_timeout(now);
                }
                let d = peer.drain();
                schedule(&mut self.timers, peer, slot, d);
            }
        }
    }

    fn start_next(&mut self) {
        let Some(plan) = self.cfg.plans.get(self.next_plan) else {
            return;
        };
        self.next_plan += 1;
        self.progress.started.fetch_add(1, Ordering::Relaxed);
        let slot = self.peers.len();
        match Peer::connect(
            self.poll.registry(),
            slot,
            plan.index,
            &self.cfg.url,
            &plan.token,
            plan.opts.clone(),
            self.cfg.bind_ip,
            plan.expected_streams,
            self.cfg.connect_timeout,
        ) {
            Ok(mut peer) => {
                let d = peer.drain();
                schedule(&mut self.timers, &mut peer, slot, d);
                self.peers.push(peer);
            }
            Err(e) => {
                warn!(participant = plan.index, "cannot connect: {e}");
                self.connect_errors += 1;
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn update_progress(&mut self) {
        let (mut joined, mut ready, mut rx, mut tx, mut gaps) = (0, 0, 0, 0, 0);
        let mut newly_failed = 0;
        for p in &mut self.peers {
            let c = p.counts();
            rx += c.packets;
            gaps += c.gaps;
            tx += p.sent_packets();
            if p.joined() {
                joined += 1;
            }
            if p.ready() {
                ready += 1;
            }
            if p.participant.is_closed() && !p.failed_reported {
                p.failed_reported = true;
                newly_failed += 1;
                warn!(
                    participant = p.index,
                    phase = ?p.participant.phase(),
                    "session ended during the run"
                );
            }
        }
        let pr = &self.progress;
        pr.failed.fetch_add(newly_failed, Ordering::Relaxed);
        // Each worker owns a share; the main thread sums the workers'
        // `Progress`, so plain stores are right here.
        pr.joined.store(joined, Ordering::Relaxed);
        pr.ready.store(ready, Ordering::Relaxed);
        pr.rx_packets.store(rx, Ordering::Relaxed);
        pr.tx_packets.store(tx, Ordering::Relaxed);
        pr.gaps.store(gaps, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            connect_errors: self.connect_errors,
            ..Snapshot::default()
        };
        for p in &self.peers {
            let c = p.counts();
            s.rx_packets += c.packets;
            s.rx_bytes += c.bytes;
            s.rx_video += c.video_packets;
            s.rx_audio += c.audio_packets;
            s.gaps += c.gaps;
            s.backwards += c.backwards;
            s.tx_packets += p.sent_packets();
            s.udp_send_drops += p.udp_send_drops;
            s.latency.merge(&p.participant.stats().latency);
            s.arrival_latency
                .merge(&p.participant.stats().arrival_latency);
            s.keyframe_requests += p.participant.stats().keyframe_requests;
            for conn in [Connection::Publisher, Connection::Subscriber] {
                s.local_ports.push(p.participant.local_addr(conn).port());
            }
            if s.server_port.is_none() {
                s.server_port = p
                    .participant
                    .stats()
                    .server_media_addrs
                    .first()
                    .map(|a| a.port());
            }
            if p.expected_streams > 0 {
                s.per_receiver.push((p.index, c.packets));
            }
            if p.ready() {
                s.ready += 1;
            }
            if p.participant.is_closed() {
                s.failed += 1;
            }
        }
        s
    }

    /// Everyone sends `leave`; the loop runs until the server has closed
    /// the signalling sockets or the grace period is over.
    fn leave_all(&mut self, events: &mut Events, buf: &mut [u8]) {
        for p in &mut self.peers {
            p.participant.leave();
            p.drain();
        }
        let end = Instant::now() + LEAVE_GRACE;
        while self
            .peers
            .iter()
            .any(|p| p.ws_open() && !p.participant.is_closed())
        {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if self
                .poll
                .poll(events, Some(left.min(Duration::from_millis(50))))
                .is_err()
            {
                break;
            }
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                let (slot, source) = from_token(ev.token());
                if let Some(peer) = self.peers.get_mut(slot) {
                    match source {
                        Source::Ws => peer.read_ws(),
                        s => peer.read_udp(s, buf),
                    }
                    peer.drain();
                }
            }
        }
        let registry = self.poll.registry();
        for p in &mut self.peers {
            p.close();
            p.deregister(registry);
        }
    }
}

/// Makes sure the heap holds an entry for `peer` no later than `deadline`.
fn schedule(
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    peer: &mut Peer,
    slot: usize,
    deadline: Instant,
) {
    // An earlier entry already in the heap will fire first and reschedule;
    // pushing only earlier deadlines keeps the heap about one entry per peer.
    if peer.scheduled.is_none_or(|s| deadline < s) {
        peer.scheduled = Some(deadline);
        timers.push(Reverse((deadline, slot)));
    }
}

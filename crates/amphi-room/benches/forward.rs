//! The engine's packet path, in memory: one publisher (amphi-client's real
//! str0m participant: SRTP, RTCP) sending 720p-sized VP8 and Opus to 1, 10
//! and 100 subscribers through [`Sfu`], on a simulated clock, as
//! `tests/call.rs` drives it.
//!
//! Only the engine's own work is timed: every `Sfu::handle_input` and the
//! `poll_output` loop after it (decrypting, forwarding, encrypting each
//! copy, RTCP from subscribers, timers). The clients' work is not.
//! Criterion reports time per *incoming* packet, with the fan-out as the
//! throughput, so "elements/s" is forwarded packets per second; time per
//! forwarded packet is the time divided by the fan-out.
//!
//! Before the timings, it prints heap allocations per forwarded packet on
//! the steady path (a counting global allocator). The target is zero.
//!
//! `cargo bench -p amphi-room --bench forward`

use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amphi_client::protocol::{ClientMessage, Permissions, Role, Source};
use amphi_client::{ClientOptions, Connection, Output as ClientOutput, Participant};
use amphi_room::{Command, Input, JoinRequest, Output, ParticipantId, Sfu, SfuConfig};
use criterion::{BenchmarkId, Criterion, Throughput};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{PayloadPools, with_payload_pools};

// ----- counting allocator ------------------------------------------------

#[path = "../tests/common/counting.rs"]
mod counting;
use counting::Counting;
#[path = "../tests/common/options.rs"]
mod options;
use options::publisher_720p;

/// `AMPHI_ALLOC_TRACE=1`: also keep the call stack of every 16th counted
/// allocation, and print the most frequent after the counts.
static TRACING: AtomicBool = AtomicBool::new(false);
static SAMPLES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while a stack is being captured: its own allocations are neither
    /// counted nor sampled.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

fn counted() {
    if CAPTURING.with(Cell::get) {
        return;
    }
    let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    if TRACING.load(Ordering::Relaxed) && n.is_multiple_of(16) {
        CAPTURING.with(|c| c.set(true));
        let bt = Backtrace::force_capture();
        if let Ok(mut s) = SAMPLES.lock() {
            s.push(bt);
        }
        CAPTURING.with(|c| c.set(false));
    }
}

/// The sampled stacks grouped by their first four frames outside the
/// standard library and this file, most frequent first.
fn print_samples() {
    let samples = std::mem::take(&mut *SAMPLES.lock().expect("samples"));
    let mut by_site: std::collections::HashMap<String, usize> = Default::default();
    for bt in &samples {
        let text = bt.to_string();
        // Frames come as "N: function" and then "at file:line"; keep the
        // first few that are neither the standard library nor this file.
        let mut frames = Vec::new();
        let mut function = "";
        for line in text.lines().map(str::trim) {
            if let Some(at) = line.strip_prefix("at ") {
                // `/rust/deps/`: the standard library's own dependencies
                // (hashbrown), which say nothing about who allocated.
                if !at.starts_with("/rustc/")
                    && !at.starts_with("/rust/deps/")
                    && !at.contains("benches/forward.rs")
                {
                    let short = at.rsplit_once("/src/").map_or(at, |(_, f)| f);
                    frames.push(format!("{function} ({short})"));
                }
            } else if let Some((_, f)) = line.split_once(": ") {
                function = f;
            }
            if frames.len() == 4 {
                break;
            }
        }
        *by_site.entry(frames.join("\n    <- ")).or_default() += 1;
    }
    let mut sites: Vec<_> = by_site.into_iter().collect();
    sites.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (site, n) in sites.iter().take(30) {
        println!(
            "  {:5.1} %  {site}",
            100.0 * *n as f64 / samples.len().max(1) as f64
        );
    }
}

/// Count only while the engine runs (the clients allocate freely).
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn on_alloc() {
    if COUNTING.load(Ordering::Relaxed) {
        counted();
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting { on_alloc };

// ----- an in-memory call -------------------------------------------------

const SERVER: &str = "127.0.0.1:5000";
const TICK: Duration = Duration::from_millis(1);

struct Client {
    pid: ParticipantId,
    p: Participant,
}

struct World {
    sfu: Sfu,
    clients: Vec<Client>,
    now: Instant,
    server: SocketAddr,
    wire: VecDeque<Transmit>,
    /// The clients' own payload pools (tests/common/mod.rs).
    client_pools: PayloadPools,
    /// Time spent inside the engine.
    engine: Duration,
}

impl World {
    /// One publisher and `subscribers` receivers, connected and flowing.
    fn new(subscribers: usize) -> World {
        let server: SocketAddr = SERVER.parse().expect("address");
        let now = Instant::now();
        let sfu = Sfu::new(
            SfuConfig {
                candidates: vec![server],
                max_participants_per_room: subscribers + 1,
                ..SfuConfig::default()
            },
            now,
        );
        let mut w = World {
            sfu,
            clients: Vec::new(),
            now,
            server,
            wire: VecDeque::new(),
            client_pools: PayloadPools::default(),
            engine: Duration::ZERO,
        };
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        for i in 0..=subscribers {
            let mut opts = if i == 0 {
                publisher_720p()
            } else {
                ClientOptions {
                    ping_interval: None,
                    ..ClientOptions::subscriber_only()
                }
            };
            opts.dtls_cert = cert.clone();
            let port = 6000 + 2 * i as u16;
            let a: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let b: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().expect("address");
            let p = Participant::new("unchecked", opts, a, b, w.now).expect("participant");
            w.clients.push(Client {
                pid: ParticipantId(100 + i as u64),
                p,
            });
        }
        // Connect, then run until the last subscriber gets video.
        for _ in 0..20_000 {
            w.tick();
            let flowing = w.clients[1..].iter().all(|c| {
                c.p.stats()
                    .received
                    .values()
                    .map(|r| r.packets)
                    .sum::<u64>()
                    > 100
            });
            if flowing {
                break;
            }
        }
        assert!(
            w.sfu.stats().rtp_packets_out > 0,
            "the call did not start: {:?}",
            w.sfu.stats()
        );
        // Steady state first, so that what grows once has grown: buffers to
        // their size, and str0m's pool of received payloads to what the
        // retransmission histories keep alive (256 packets per video
        // stream), which takes several seconds.
        for _ in 0..15_000 {
            w.tick();
        }
        w
    }

    fn timed<T>(&mut self, f: impl FnOnce(&mut Sfu) -> T) -> T {
        // Allocations are counted (when asked) inside the engine only.
        COUNTING.store(
            COUNTING_IN_ENGINE.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let t = Instant::now();
        let out = f(&mut self.sfu);
        self.engine += t.elapsed();
        COUNTING.store(false, Ordering::Relaxed);
        out
    }

    /// One millisecond of the call.
    fn tick(&mut self) {
        self.now += TICK;
        let now = self.now;
        self.timed(|s| s.handle_input(Input::Timeout(now)));
        self.drain_server();
        for c in &mut self.clients {
            with_payload_pools(&mut self.client_pools, || c.p.handle_timeout(now));
        }
        for i in 0..self.clients.len() {
            self.drain_client(i);
        }
        // Deliver one datagram at a time, draining the receiver after each:
        // str0m in RTP mode hands out one packet per input.
        while let Some(t) = self.wire.pop_front() {
            if t.destination == self.server {
                let Ok(r) = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                else {
                    continue;
                };
                self.timed(|s| s.handle_input(Input::Receive(now, r)));
                // What the server sends for it goes out first, as its
                // sender flushes a batch at a time (tests/common/mod.rs).
                let queued = self.wire.len();
                self.drain_server();
                self.wire.rotate_right(self.wire.len() - queued);
                str0m::net::recycle(t.contents);
                continue;
            }
            let Some(i) = self.clients.iter().position(|c| {
                c.p.local_addr(Connection::Publisher) == t.destination
                    || c.p.local_addr(Connection::Subscriber) == t.destination
            }) else {
                continue;
            };
            let c = &mut self.clients[i];
            with_payload_pools(&mut self.client_pools, || {
                c.p.handle_datagram(now, t.source, t.destination, &t.contents);
            });
            // As the server's sender does once a datagram is out.
            str0m::net::recycle(t.contents);
            self.drain_client(i);
        }
    }

    fn drain_client(&mut self, i: usize) {
        let now = self.now;
        loop {
            let c = &mut self.clients[i];
            match with_payload_pools(&mut self.client_pools, || c.p.poll_output()) {
                ClientOutput::Timeout(_) => return,
                ClientOutput::Transmit(t) => self.wire.push_back(t),
                ClientOutput::Signal(m) => {
                    let pid = c.pid;
                    let cmd = match m {
                        ClientMessage::Join { .. } => Command::Join(JoinRequest {
                            participant: pid,
                            room: "bench".into(),
                            identity: format!("user-{}", pid.0),
                            name: format!("User {}", pid.0),
                            role: Role::Teacher,
                            permissions: Permissions {
                                publish: true,
                                subscribe: true,
                                publish_sources: Source::ALL.to_vec(),
                                chat: true,
                                moderate: true,
                            },
                        }),
                        message => Command::Message {
                            participant: pid,
                            message,
                        },
                    };
                    self.timed(|s| s.handle_input(Input::Command(now, cmd)));
                    self.drain_server();
                }
            }
        }
    }

    fn drain_server(&mut self) {
        loop {
            match self.timed(|s| s.poll_output()) {
                Output::Timeout(_) => return,
                Output::Transmit(t) => self.wire.push_back(t),
                Output::Signal {
                    participant,
                    message,
                } => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.pid == participant) {
                        c.p.handle_signal(message);
                    }
                }
                Output::Close { participant } => {
                    if let Some(c) = self.clients.iter_mut().find(|c| c.pid == participant) {
                        c.p.handle_signalling_closed();
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs until at least `packets` more publisher packets entered the
    /// engine; returns (engine time, packets in, packets out).
    fn run_packets(&mut self, packets: u64) -> (Duration, u64, u64) {
        let (in0, out0) = (
            self.sfu.stats().rtp_packets_in,
            self.sfu.stats().rtp_packets_out,
        );
        self.engine = Duration::ZERO;
        while self.sfu.stats().rtp_packets_in - in0 < packets {
            self.tick();
        }
        let s = self.sfu.stats();
        (
            self.engine,
            s.rtp_packets_in - in0,
            s.rtp_packets_out - out0,
        )
    }
}

/// Set while `allocations` runs: `World::timed` then counts.
static COUNTING_IN_ENGINE: AtomicBool = AtomicBool::new(false);

/// Allocations per forwarded packet on the steady path, printed.
fn allocations(fanout: usize) {
    let mut w = World::new(fanout);
    // The allocator counts while the engine runs only: wrap the engine.
    let (in0, out0) = (w.sfu.stats().rtp_packets_in, w.sfu.stats().rtp_packets_out);
    let timeouts0 = w.sfu.stats().connection_timeouts;
    let datagrams0 = w.sfu.stats().datagrams_out;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    let mut spent = Duration::ZERO;
    while w.sfu.stats().rtp_packets_in - in0 < 2_000 {
        w.engine = Duration::ZERO;
        COUNTING_IN_ENGINE.store(true, Ordering::Relaxed);
        w.tick();
        COUNTING_IN_ENGINE.store(false, Ordering::Relaxed);
        spent += w.engine;
    }
    let allocs = ALLOCATIONS.load(Ordering::Relaxed);
    let s = w.sfu.stats();
    let (pin, pout) = (s.rtp_packets_in - in0, s.rtp_packets_out - out0);
    let timeouts = s.connection_timeouts - timeouts0;
    let datagrams = s.datagrams_out - datagrams0;
    println!(
        "allocations 1 -> {fanout:>3}: {:.2} per forwarded packet, {:.1} per incoming packet \
         ({allocs} allocations, {pin} packets in, {pout} out, {:.0} ns engine time per forwarded packet, \
         {:.2} connection timeouts and {:.2} datagrams sent per forwarded packet)",
        allocs as f64 / pout.max(1) as f64,
        allocs as f64 / pin.max(1) as f64,
        spent.as_nanos() as f64 / pout.max(1) as f64,
        timeouts as f64 / pout.max(1) as f64,
        datagrams as f64 / pout.max(1) as f64,
    );
    if TRACING.load(Ordering::Relaxed) {
        print_samples();
    }
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for fanout in [1usize, 10, 100] {
        let mut w = World::new(fanout);
        group.throughput(Throughput::Elements(fanout as u64));
        group.bench_function(BenchmarkId::new("fanout", fanout), |b| {
            b.iter_custom(|iters| {
                let (t, pin, _) = w.run_packets(iters);
                black_box(pin);
                // Scale to exactly `iters` packets (a tick may carry more).
                t.mul_f64(iters as f64 / pin.max(1) as f64)
            })
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    // `--profile-time N` (for a profiler, see docs/benchmarks.md) runs the
    // timed loop only.
    TRACING.store(
        std::env::var_os("AMPHI_ALLOC_TRACE").is_some(),
        Ordering::Relaxed,
    );
    if !std::env::args().any(|a| a == "--profile-time") {
        for fanout in [1, 10, 100] {
            allocations(fanout);
        }
    }
    forward(&mut c);
    c.final_summary();
}

//! The engine's packet path, in memory: one publisher (amphi-client's real
//! str0m participant: SRTP, RTCP) sending 720p-sized VP8 and Opus to 1, 10
//! and 100 subscribers through [`Sfu`], on a simulated clock, over the
//! engine tests' in-memory network (`tests/common/mod.rs`).
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
//!
//! `AMPHI_CACHE_PROBE=N` instead sets up a call of 1 -> N and forwards 1,000
//! incoming packets, untimed, for a cache simulator to count what the engine
//! misses (docs/benchmarks.md, step 34).

use std::backtrace::Backtrace;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use amphi_room::SfuConfig;
use criterion::{BenchmarkId, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;
use common::counting::Counting;
use common::options::{listener, publisher_720p};
use common::{IN_ENGINE, World, take_engine_time, take_longest_call, take_longest_join};

// ----- counting allocator ------------------------------------------------

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
        // first few that are neither the standard library nor this
        // benchmark's harness.
        let mut frames = Vec::new();
        let mut function = "";
        for line in text.lines().map(str::trim) {
            if let Some(at) = line.strip_prefix("at ") {
                // `/rust/deps/`: the standard library's own dependencies
                // (hashbrown), which say nothing about who allocated.
                if !at.starts_with("/rustc/")
                    && !at.starts_with("/rust/deps/")
                    && !at.contains("benches/forward.rs")
                    && !at.contains("tests/common/")
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

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Counts only while `allocations` counts and the engine runs (the clients
/// allocate freely).
fn on_alloc() {
    if COUNTING.load(Ordering::Relaxed) && IN_ENGINE.try_with(Cell::get).unwrap_or(false) {
        counted();
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting { on_alloc };

// ----- an in-memory call -------------------------------------------------

/// Simulated time per turn of the network.
const TICK: Duration = Duration::from_millis(1);

/// One publisher and `subscribers` receivers, connected and flowing, on
/// the tests' in-memory network (tests/common/mod.rs), with bandwidth
/// estimation on as a server runs it.
fn call(subscribers: usize) -> World {
    let mut w = World::with_config(SfuConfig {
        max_participants_per_room: subscribers + 1,
        ..SfuConfig::default()
    });
    w.tick = TICK;
    w.add(publisher_720p());
    for _ in 0..subscribers {
        w.add(listener());
    }
    // Connect, then run until the last subscriber gets video.
    for _ in 0..20_000 {
        w.run(TICK);
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
    // retransmission histories keep alive (256 packets per video stream),
    // which takes several seconds.
    w.run(Duration::from_secs(15));
    w
}

/// Runs `w` until at least `packets` more publisher packets entered the
/// engine; returns (engine time, packets in, packets out).
fn run_packets(w: &mut World, packets: u64) -> (Duration, u64, u64) {
    let (in0, out0) = (w.sfu.stats().rtp_packets_in, w.sfu.stats().rtp_packets_out);
    take_engine_time();
    while w.sfu.stats().rtp_packets_in - in0 < packets {
        w.run(TICK);
    }
    let s = w.sfu.stats();
    (
        take_engine_time(),
        s.rtp_packets_in - in0,
        s.rtp_packets_out - out0,
    )
}

/// Set while `allocations` counts: allocations inside the engine
/// (`common::IN_ENGINE`) are then counted.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Allocations per forwarded packet on the steady path, printed.
fn allocations(fanout: usize) {
    let mut w = call(fanout);
    let timeouts0 = w.sfu.stats().connection_timeouts;
    let datagrams0 = w.sfu.stats().datagrams_out;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let (spent, pin, pout) = run_packets(&mut w, 2_000);
    COUNTING.store(false, Ordering::Relaxed);
    let allocs = ALLOCATIONS.load(Ordering::Relaxed);
    let s = w.sfu.stats();
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
        let mut w = call(fanout);
        group.throughput(Throughput::Elements(fanout as u64));
        group.bench_function(BenchmarkId::new("fanout", fanout), |b| {
            b.iter_custom(|iters| {
                let (t, pin, _) = run_packets(&mut w, iters);
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
    if let Some(n) = std::env::var("AMPHI_CACHE_PROBE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let mut w = call(n);
        let (t, pin, pout) = run_packets(&mut w, 1_000);
        println!("probe 1 -> {n}: {pin} in, {pout} out, {t:?}");
        return;
    }
    if let Some(n) = std::env::var("AMPHI_PUBLISH_PROBE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let mut w = call(n);
        take_longest_call();
        w.run(Duration::from_secs(1));
        let steady = take_longest_call();
        // Joins, one at a time.
        take_longest_join();
        for _ in 0..5 {
            w.add(listener());
            w.run(Duration::from_millis(200));
        }
        println!(
            "join probe {n} -> {}: longest join {:?}",
            n + 5,
            take_longest_join()
        );
        take_longest_call();
        let offers = w.offers.len();
        w.add(publisher_720p());
        w.run(Duration::from_secs(2));
        println!(
            "publish probe 1 -> {n}: longest engine call {:?} when someone starts publishing \
             ({} subscribe offers), {steady:?} before",
            take_longest_call(),
            w.offers.len() - offers,
        );
        return;
    }
    if !std::env::args().any(|a| a == "--profile-time") {
        for fanout in [1, 10, 100] {
            allocations(fanout);
        }
    }
    forward(&mut c);
    c.final_summary();
}

//! A warm call allocates nothing per packet, nor for its periodic control
//! work.
//!
//! Counted by the engine's calls only (the clients allocate freely), on the
//! simulated clock, so the counts do not depend on the machine. What is
//! left is rare: each publisher's CNAME as its reports bring it (about one
//! per published stream per second), and the pool of received payloads
//! growing when the clients, which share it on this thread, hold their
//! buffers longer (docs/benchmarks.md, step 26). The control work of each
//! connection (RTCP reports, consent checks, statistics) used to make about
//! ten a second, 0.10 per packet at 1 -> 1; one allocation per packet
//! received or per copy sent would be ten times that.

mod common;

use std::cell::Cell;
use std::time::Duration;

use amphi_client::ClientOptions;
use common::counting::Counting;
use common::options::publisher_720p;
use common::{IN_ENGINE, World};

thread_local! {
    /// Per thread, so that tests running side by side do not add up.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: not during the thread's teardown.
    if IN_ENGINE.try_with(|c| c.get()).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting { on_alloc: count };

/// Allocations by the engine per packet received and per copy sent, over
/// `measure` of a warm call from one publisher (720p video, audio) to
/// `subscribers`.
fn allocations(subscribers: usize, measure: Duration) -> (f64, f64) {
    let mut w = World::with_bandwidth_estimation(true);
    w.add(publisher_720p());
    for _ in 0..subscribers {
        w.add(ClientOptions {
            ping_interval: None,
            ..ClientOptions::subscriber_only()
        });
    }
    // Warm: what grows once has grown, including str0m's pool of received
    // payloads, which settles on what the retransmission histories keep
    // alive (256 packets per video stream). The clients draw their
    // received payloads from the same pool on this thread; when they grow
    // it, that is not counted.
    w.run(Duration::from_secs(15));
    let (in0, out0) = (w.sfu.stats().rtp_packets_in, w.sfu.stats().rtp_packets_out);
    ALLOCATIONS.with(|n| n.set(0));
    w.run(measure);
    let allocations = ALLOCATIONS.with(Cell::get) as f64;
    let packets_in = (w.sfu.stats().rtp_packets_in - in0) as f64;
    let packets_out = (w.sfu.stats().rtp_packets_out - out0) as f64;
    assert!(
        packets_in > 1_000.0 && packets_out >= packets_in * subscribers as f64 * 0.9,
        "the call did not flow: {packets_in} in, {packets_out} out"
    );
    println!(
        "1 -> {subscribers}: {allocations} allocations, {packets_in} packets in, {packets_out} out"
    );
    (allocations / packets_in, allocations / packets_out)
}

#[test]
fn forwarding_allocates_nothing_per_packet_once_warm() {
    // One subscriber: a received packet's payload, or anything else per
    // packet, would be one or more per packet in; the control work of the
    // two connections, 0.1 (0.006 now).
    let (per_in, _) = allocations(1, Duration::from_secs(8));
    assert!(per_in < 0.03, "{per_in:.3} allocations per packet received");
    // Ten: anything per copy would be one or more per copy; the control
    // work of the subscribers, 0.07 (0.014 now).
    let (_, per_out) = allocations(10, Duration::from_secs(8));
    assert!(per_out < 0.03, "{per_out:.3} allocations per packet sent");
}

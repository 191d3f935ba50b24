//! A warm call allocates nothing: not per packet received, not per copy
//! sent, not for its periodic control work (RTCP reports sent and received,
//! consent checks, statistics).
//!
//! Counted by the engine's calls only (the clients allocate freely, from
//! payload pools of their own), on the simulated clock, so the counts
//! repeat. One allocation per packet received or per copy sent would be
//! thousands here; the control work of each connection used to make about
//! ten a second, and each CNAME a publisher's reports bring one
//! (docs/benchmarks.md, steps 26 and 27).

mod common;

use std::cell::Cell;
use std::time::Duration;

use amphi_client::ClientOptions;
use common::counting::Counting;
use common::options::{listener, publisher_720p};
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

/// Allocations by the engine over `measure` of a warm call from one
/// publisher (720p video, and audio in RED if `red`) to `subscribers`
/// that did not negotiate RED.
fn allocations(subscribers: usize, red: bool, measure: Duration) -> u64 {
    fill_datagram_pool();
    let mut w = World::with_bandwidth_estimation(true);
    w.add(ClientOptions {
        audio_red: red,
        ..publisher_720p()
    });
    for _ in 0..subscribers {
        w.add(listener());
    }
    // Warm: what grows once has grown, including str0m's pool of received
    // payloads, which settles on what the retransmission histories keep
    // alive (256 packets per video stream).
    w.run(Duration::from_secs(15));
    let (in0, out0) = (w.sfu.stats().rtp_packets_in, w.sfu.stats().rtp_packets_out);
    ALLOCATIONS.with(|n| n.set(0));
    w.run(measure);
    let allocations = ALLOCATIONS.with(Cell::get);
    let packets_in = w.sfu.stats().rtp_packets_in - in0;
    let packets_out = w.sfu.stats().rtp_packets_out - out0;
    assert!(
        packets_in > 1_000 && packets_out * 10 >= packets_in * subscribers as u64 * 9,
        "the call did not flow: {packets_in} in, {packets_out} out"
    );
    println!(
        "1 -> {subscribers} (RED {red}): {allocations} allocations, \
         {packets_in} packets in, {packets_out} out"
    );
    allocations
}

/// Fills this thread's pool of datagram buffers (str0m's `recycle`) to
/// what str0m keeps at most, 1,024.
///
/// The pool grows to the most datagrams in flight at once, here what the
/// pacers let out in one tick of this network: that depends on where the
/// estimates stand when keyframes come, and a warm-up of any length may
/// not have met the largest such burst (letting a camera's first keyframe
/// through, instead of one asked for a second later, moved such growth
/// into the measured window). Filled up front, growth to a burst cannot
/// pass for a cost per packet, and a packet path that stopped recycling
/// still shows: it would drain the pool within the first thousand of the
/// measured copies.
fn fill_datagram_pool() {
    for _ in 0..1024 {
        let buf = Vec::with_capacity(str0m::DATAGRAM_MTU_TARGET_MAX);
        str0m::net::recycle(buf.into());
    }
}

#[test]
fn a_warm_call_allocates_nothing() {
    // One subscriber: what each packet received costs, and the control
    // work of two connections.
    assert_eq!(allocations(1, false, Duration::from_secs(8)), 0, "1 -> 1");
    // Ten: what each copy costs, and the control work of many subscribers.
    assert_eq!(allocations(10, false, Duration::from_secs(8)), 0, "1 -> 10");
    // Audio in RED, to subscribers without it: unwrapped once per packet
    // into a pooled buffer (recovery.rs), not copied per subscriber.
    assert_eq!(
        allocations(10, true, Duration::from_secs(8)),
        0,
        "1 -> 10, RED"
    );
}

//! Connection quality through the engine: what `connection_quality` tells
//! each participant on a clean network, when one participant's link loses
//! packets, and after it recovers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use amphi_client::protocol::ConnectionQuality;
use amphi_client::{ClientOptions, Connection};
use common::World;

/// Client `i`'s latest view: participant id -> quality.
fn view(w: &World, i: usize) -> HashMap<String, ConnectionQuality> {
    w.clients[i].p.stats().quality.clone()
}

fn quality_messages(w: &World, i: usize) -> u64 {
    w.clients[i].p.stats().quality_updates
}

/// (messages, entries over all of them) client `i` received.
fn quality_entries(w: &World, i: usize) -> (u64, u64) {
    let s = w.clients[i].p.stats();
    (s.quality_updates, s.quality_entries)
}

#[test]
fn a_lossy_link_shows_as_poor_to_everyone_and_recovers() {
    use ConnectionQuality::{Good, Poor};
    let mut w = World::new();
    for _ in 0..3 {
        w.add(ClientOptions::default());
    }
    w.run(Duration::from_secs(6));
    let ids: Vec<String> = (0..3).map(|i| w.id(i)).collect();
    for i in 0..3 {
        let v = view(&w, i);
        assert_eq!(v.len(), 3, "client {i} sees {v:?}");
        assert!(v.values().all(|q| *q == Good), "client {i} sees {v:?}");
    }
    // Sent when something changed, not every period.
    let sent = quality_messages(&w, 0);
    w.run(Duration::from_secs(6));
    assert_eq!(quality_messages(&w, 0), sent, "resent with nothing new");

    let (messages, entries) = quality_entries(&w, 0);

    // Client 2's network loses one datagram in four, both ways.
    let mine = [
        w.clients[2].p.local_addr(Connection::Publisher),
        w.clients[2].p.local_addr(Connection::Subscriber),
    ];
    let mut n = 0u64;
    w.loss = Some(Box::new(move |t| {
        if !mine.contains(&t.source) && !mine.contains(&t.destination) {
            return false;
        }
        n += 1;
        n.is_multiple_of(4)
    }));
    w.run(Duration::from_secs(6));
    for i in 0..3 {
        let v = view(&w, i);
        assert_eq!(v.get(&ids[2]), Some(&Poor), "client {i} sees {v:?}");
    }
    // Told as a change (client 2's entry), not as the room's whole list of
    // three each time.
    let (m, e) = quality_entries(&w, 0);
    assert!(m > messages, "no message about the change");
    assert!(
        e - entries < 3 * (m - messages),
        "{} entries in {} messages",
        e - entries,
        m - messages
    );
    // The others are not blamed for the holes client 2's uplink put into
    // what they receive.
    let v = view(&w, 0);
    assert_eq!(
        (v.get(&ids[0]), v.get(&ids[1])),
        (Some(&Good), Some(&Good)),
        "{v:?}"
    );

    w.loss = None;
    w.run(Duration::from_secs(12));
    for i in 0..3 {
        let v = view(&w, i);
        assert!(
            v.values().all(|q| *q == Good),
            "client {i} still sees {v:?}"
        );
    }
}

#[test]
fn a_newcomer_is_told_everyones_quality_and_a_leaver_drops_out() {
    let mut w = World::new();
    w.add(ClientOptions::default());
    w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    let late = w.add(ClientOptions::default());
    w.run(Duration::from_secs(3));
    assert_eq!(view(&w, late).len(), 3, "{:?}", view(&w, late));
    assert_eq!(view(&w, 0).len(), 3);
    let gone = w.id(1);
    w.leave_signalling(1, amphi_client::protocol::LeaveReason::Left);
    w.run(Duration::from_secs(3));
    let v = view(&w, 0);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(!v.contains_key(&gone));
}

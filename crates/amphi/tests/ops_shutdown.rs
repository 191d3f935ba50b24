//! Draining on SIGTERM, with a real process and real signals: clients are
//! told, `/readyz` turns 503, existing rooms go on and take newcomers, new
//! rooms are refused, and the process exits when the rooms are empty or the
//! drain timeout passes.

mod ops_common;

use std::time::{Duration, Instant};

use amphi_client::protocol::ServerMessage;
use amphi_client::{LeaveReason, TestParticipant, TestServer};
use ops_common::*;

const WAIT: Duration = Duration::from_secs(20);

fn join(srv: &TestServer, room: &str, who: &str) -> TestParticipant {
    let token = srv.dev_token(room, who, who).expect("a token");
    TestParticipant::spawn(srv.url(), &token)
        .unwrap_or_else(|e| panic!("{who} cannot join: {e}\n{}", srv.log()))
}

fn wait_exit(srv: &mut TestServer, within: Duration) -> Duration {
    let start = Instant::now();
    while srv.is_running() {
        assert!(
            start.elapsed() < within,
            "still running after {within:?}; log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

#[test]
fn sigterm_drains_then_exits_when_rooms_are_empty() {
    let dir = TempDir::new("drain");
    let config = dir.write("amphi.toml", "[server]\ndrain_timeout = \"60s\"\n");
    let mut srv = start_dev_with_config(&config);
    let addr = http_addr(&srv);
    let alice = join(&srv, "lecture", "alice");
    assert_eq!(http_get(addr, "/readyz").unwrap().0, 200);

    signal(srv.pid(), "TERM");
    alice
        .wait_until(
            |s| {
                s.classroom
                    .iter()
                    .any(|m| matches!(m, ServerMessage::Draining {}))
            },
            WAIT,
        )
        .expect("alice is told the server drains");
    assert_eq!(http_get(addr, "/readyz").unwrap().0, 503);
    assert_eq!(
        http_get(addr, "/healthz").unwrap().0,
        200,
        "alive while draining"
    );

    // The existing room takes a newcomer; a new room does not.
    let bob = join(&srv, "lecture", "bob");
    assert!(bob.stats().bye.is_none(), "bob joined an existing room");
    let token = srv.dev_token("new-room", "carol", "carol").unwrap();
    match TestParticipant::spawn(srv.url(), &token) {
        Err(_) => {}
        Ok(carol) => {
            let s = carol
                .wait_until(|s| s.bye.is_some() || s.signalling_closed, WAIT)
                .expect("carol is turned away");
            assert_eq!(s.bye, Some(LeaveReason::ServerShutdown), "{s:?}");
        }
    }
    assert!(srv.is_running(), "a room is still going on");

    bob.leave().expect("bob leaves");
    alice.leave().expect("alice leaves");
    wait_exit(&mut srv, Duration::from_secs(10));
    assert!(srv.log().contains("every room has ended"), "{}", srv.log());
}

#[test]
fn drain_timeout_ends_remaining_rooms() {
    let dir = TempDir::new("drain-timeout");
    let config = dir.write("amphi.toml", "[server]\ndrain_timeout = \"2s\"\n");
    let mut srv = start_dev_with_config(&config);
    let alice = join(&srv, "seminar", "alice");
    alice
        .wait_until(|s| s.subscriber_connected || s.publisher_connected, WAIT)
        .expect("alice is connected");
    signal(srv.pid(), "TERM");
    let s = alice
        .wait_until(|s| s.bye.is_some(), Duration::from_secs(10))
        .expect("alice gets bye at the drain timeout");
    assert_eq!(s.bye, Some(LeaveReason::ServerShutdown));
    let took = wait_exit(&mut srv, Duration::from_secs(10));
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(srv.log().contains("drain timeout"), "{}", srv.log());
}

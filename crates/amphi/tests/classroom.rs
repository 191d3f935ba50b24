//! Classroom authorization over the real signalling connection: for each
//! moderation command, a student's attempt is refused and changes nothing;
//! a teacher's attempt works and the target is told.

use std::time::Duration;

use amphi_client::protocol::{ClientMessage, Promotion, ServerMessage};
use amphi_client::tungstenite::Message;
use amphi_client::{
    ClientStats, ErrorCode, LeaveReason, MediaKind, Source, TestParticipant, TestServer,
};

const ROOM: &str = "maths-6b";
const WAIT: Duration = Duration::from_secs(30);

fn join(srv: &TestServer, identity: &str, role: &str) -> TestParticipant {
    let token = srv
        .token(&[
            "--dev",
            "--room",
            ROOM,
            "--identity",
            identity,
            "--name",
            identity,
            "--role",
            role,
        ])
        .expect("a token");
    TestParticipant::spawn(srv.url(), &token)
        .unwrap_or_else(|e| panic!("{identity} cannot join: {e}\n{}", srv.log()))
}

fn send(p: &TestParticipant, m: ClientMessage) {
    p.send_raw(Message::Text(m.encode().into()));
}

fn wait(srv: &TestServer, p: &TestParticipant, what: &str, cond: impl FnMut(&ClientStats) -> bool) {
    if let Err(e) = p.wait_until(cond, WAIT) {
        panic!("{}: {what}: {e}\nserver log:\n{}", p.id(), srv.log());
    }
}

fn forbidden_for(s: &ClientStats, request: &str) -> bool {
    s.errors
        .iter()
        .any(|e| e.code == ErrorCode::Forbidden && e.request.as_deref() == Some(request))
}

fn got(s: &ClientStats, pred: impl Fn(&ServerMessage) -> bool) -> bool {
    s.classroom.iter().any(pred)
}

/// Classroom messages other than room state, which everyone gets.
fn notices(s: &ClientStats) -> usize {
    s.classroom
        .iter()
        .filter(|m| !matches!(m, ServerMessage::RoomUpdated { .. }))
        .count()
}

#[test]
fn moderation_needs_the_grant_and_reaches_its_target() {
    let srv = TestServer::start_dev(env!("CARGO_BIN_EXE_amphi")).expect("server");
    let teacher = join(&srv, "teacher", "teacher");
    let alice = join(&srv, "alice", "student");
    let bob = join(&srv, "bob", "student");
    for p in [&teacher, &alice, &bob] {
        wait(&srv, p, "hears the two others", |s| {
            s.received
                .iter()
                .filter(|((_, k), c)| *k == MediaKind::Audio && c.packets > 20)
                .count()
                == 2
        });
    }
    let (a, b) = (alice.id().to_string(), bob.id().to_string());

    // Every moderation command, first from a student.
    let commands: Vec<(&str, ClientMessage)> = vec![
        (
            "mute_participant",
            ClientMessage::MuteParticipant {
                participant: b.clone(),
                source: Source::Microphone,
            },
        ),
        ("mute_all", ClientMessage::MuteAll {}),
        (
            "request_unmute",
            ClientMessage::RequestUnmute {
                participant: b.clone(),
                source: Source::Camera,
            },
        ),
        (
            "give_floor",
            ClientMessage::GiveFloor {
                participant: b.clone(),
            },
        ),
        (
            "take_floor",
            ClientMessage::TakeFloor {
                participant: b.clone(),
            },
        ),
        (
            "promote",
            ClientMessage::Promote {
                participant: a.clone(),
                to: Promotion::CoTeacher,
            },
        ),
        (
            "update_room",
            ClientMessage::UpdateRoom {
                locked: Some(true),
                waiting_room: None,
                ask_to_speak: None,
            },
        ),
        (
            "admit",
            ClientMessage::Admit {
                participant: b.clone(),
            },
        ),
        (
            "deny",
            ClientMessage::Deny {
                participant: b.clone(),
            },
        ),
        (
            "remove",
            ClientMessage::Remove {
                participant: b.clone(),
                reason: None,
            },
        ),
        ("end_room", ClientMessage::EndRoom {}),
        (
            "breakout_start",
            ClientMessage::BreakoutStart {
                groups: 2,
                assignments: None,
            },
        ),
        (
            "breakout_move",
            ClientMessage::BreakoutMove {
                participant: b.clone(),
                group: None,
            },
        ),
        (
            "breakout_broadcast",
            ClientMessage::BreakoutBroadcast { text: "hi".into() },
        ),
        ("breakout_end", ClientMessage::BreakoutEnd {}),
        (
            "lower_hand",
            ClientMessage::LowerHand {
                participant: Some(b.clone()),
            },
        ),
    ];
    for (_, c) in &commands {
        send(&alice, c.clone());
    }
    wait(&srv, &alice, "every command refused as forbidden", |s| {
        commands.iter().all(|(t, _)| forbidden_for(s, t))
    });
    // Nothing happened to anyone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(notices(&bob.stats()), 0, "{:?}", bob.stats().classroom);
    assert_eq!(
        notices(&teacher.stats()),
        0,
        "{:?}",
        teacher.stats().classroom
    );
    let before = teacher.stats().from(&b, MediaKind::Audio).packets;
    wait(&srv, &teacher, "still hears Bob", |s| {
        s.from(&b, MediaKind::Audio).packets > before + 25
    });

    // The teacher mutes Bob: Bob is told, and the teacher stops hearing him
    // although Bob's client goes on sending.
    send(
        &teacher,
        ClientMessage::MuteParticipant {
            participant: b.clone(),
            source: Source::Microphone,
        },
    );
    wait(&srv, &bob, "told he was muted", |s| {
        got(s, |m| {
            matches!(
                m,
                ServerMessage::MuteRequested {
                    source: Source::Microphone,
                    ..
                }
            )
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let held = teacher.stats().from(&b, MediaKind::Audio).packets;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        teacher.stats().from(&b, MediaKind::Audio).packets,
        held,
        "Bob is still heard"
    );
    assert!(bob.stats().sent_audio.packets > 0);

    send(
        &teacher,
        ClientMessage::RequestUnmute {
            participant: b.clone(),
            source: Source::Microphone,
        },
    );
    wait(&srv, &bob, "asked to unmute", |s| {
        got(s, |m| matches!(m, ServerMessage::UnmuteRequested { .. }))
    });
    // Asking switched nothing on.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(teacher.stats().from(&b, MediaKind::Audio).packets, held);
    // Bob answers by unmuting himself.
    bob.mute(Source::Microphone, false);
    wait(&srv, &teacher, "hears Bob again", |s| {
        s.from(&b, MediaKind::Audio).packets > held + 25
    });

    send(
        &teacher,
        ClientMessage::Promote {
            participant: a.clone(),
            to: Promotion::Presenter,
        },
    );
    wait(&srv, &alice, "told of her new rights", |s| {
        got(s, |m| {
            matches!(m, ServerMessage::PermissionsUpdated { permissions, .. }
            if permissions.publish_sources.contains(&Source::ScreenShare))
        })
    });

    send(
        &teacher,
        ClientMessage::UpdateRoom {
            locked: None,
            waiting_room: None,
            ask_to_speak: Some(true),
        },
    );
    wait(&srv, &alice, "sees the room in ask-to-speak mode", |s| {
        got(
            s,
            |m| matches!(m, ServerMessage::RoomUpdated { room } if room.ask_to_speak),
        )
    });

    send(
        &teacher,
        ClientMessage::Remove {
            participant: b.clone(),
            reason: Some("please rejoin later".into()),
        },
    );
    wait(&srv, &bob, "removed", |s| {
        s.bye == Some(LeaveReason::Removed)
    });
    wait(&srv, &alice, "sees Bob go", |s| s.saw_left(&b));
    // Bob cannot come back with the same identity.
    let token = srv
        .token(&[
            "--dev",
            "--room",
            ROOM,
            "--identity",
            "bob",
            "--role",
            "student",
        ])
        .expect("token");
    match TestParticipant::spawn(srv.url(), &token) {
        Err(e) => assert_eq!(e.server_code(), Some(ErrorCode::Forbidden), "{e}"),
        Ok(p) => panic!("a removed identity joined again as {}", p.id()),
    }

    send(&teacher, ClientMessage::EndRoom {});
    wait(&srv, &alice, "the meeting ended", |s| {
        s.bye == Some(LeaveReason::RoomEnded)
    });
    wait(&srv, &teacher, "the meeting ended", |s| {
        s.bye == Some(LeaveReason::RoomEnded)
    });
}

//! Classroom rules, enforced by the engine: moderation, the waiting room,
//! ask-to-speak, hands, chat and breakout groups.

mod common;

use std::time::Duration;

use amphi_client::protocol::{
    ClientMessage, ErrorCode, LeaveReason, LobbyEntry, Promotion, Role, ServerMessage, Source,
};
use amphi_client::{ClientOptions, MediaKind};
use amphi_room::SfuEvent;
use common::options::listener;
use common::{World, student, teacher};

const SETTLE: Duration = Duration::from_secs(2);

/// A teacher (client 0) and two students (1, 2), all connected.
fn class() -> World {
    let mut w = World::new();
    w.add_as(ClientOptions::default(), Role::Teacher, teacher());
    w.add_as(ClientOptions::default(), Role::Student, student());
    w.add_as(ClientOptions::default(), Role::Student, student());
    w.run(SETTLE);
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            assert!(w.packets_from(i, j, MediaKind::Audio) > 20, "{i} hears {j}");
        }
    }
    w
}

/// Audio packets client `i` gets from `from` during `d`.
fn audio_during(w: &mut World, i: usize, from: usize, d: Duration) -> u64 {
    let before = w.packets_from(i, from, MediaKind::Audio);
    w.run(d);
    w.packets_from(i, from, MediaKind::Audio) - before
}

/// Client `i` was let into the room (got `joined`).
fn assert_in_room(w: &World, i: usize) {
    assert_eq!(
        w.clients[i].p.stats().room.as_deref(),
        Some("lecture"),
        "{i} is in"
    );
}

/// The waiting room as client `i` was last told it, if it was.
fn last_lobby(w: &World, i: usize) -> Option<Vec<LobbyEntry>> {
    w.inbox(i).into_iter().rev().find_map(|m| match m {
        ServerMessage::Lobby { waiting } => Some(waiting),
        _ => None,
    })
}

fn got(w: &World, i: usize, pred: impl Fn(&ServerMessage) -> bool) -> bool {
    w.inbox(i).iter().any(pred)
}

#[test]
fn a_students_moderation_commands_are_refused_and_change_nothing() {
    let mut w = class();
    let teacher_id = w.id(0);
    let other = w.id(2);
    let commands = [
        ClientMessage::MuteParticipant {
            participant: teacher_id.clone(),
            source: Source::Microphone,
        },
        ClientMessage::MuteAll {},
        ClientMessage::RequestUnmute {
            participant: other.clone(),
            source: Source::Camera,
        },
        ClientMessage::GiveFloor {
            participant: other.clone(),
        },
        ClientMessage::TakeFloor {
            participant: other.clone(),
        },
        ClientMessage::Promote {
            participant: w.id(1),
            to: Promotion::CoTeacher,
        },
        ClientMessage::UpdateRoom {
            locked: Some(true),
            waiting_room: Some(true),
            ask_to_speak: Some(true),
        },
        ClientMessage::Admit {
            participant: "P1".into(),
        },
        ClientMessage::Deny {
            participant: "P1".into(),
        },
        ClientMessage::Remove {
            participant: other.clone(),
            reason: None,
        },
        ClientMessage::EndRoom {},
        ClientMessage::BreakoutStart {
            groups: 2,
            assignments: None,
        },
        ClientMessage::BreakoutMove {
            participant: other.clone(),
            group: Some("G1".into()),
        },
        ClientMessage::BreakoutBroadcast { text: "hi".into() },
        ClientMessage::BreakoutEnd {},
        ClientMessage::LowerHand {
            participant: Some(other.clone()),
        },
    ];
    let n = commands.len();
    for c in commands {
        w.send(1, c);
    }
    w.run(Duration::from_millis(500));
    let refused = w
        .errors(1)
        .iter()
        .filter(|c| **c == ErrorCode::Forbidden)
        .count();
    assert_eq!(refused, n, "every command is refused: {:?}", w.errors(1));
    // Nothing changed: nobody was told anything, everyone still hears everyone.
    for i in [0, 2] {
        assert!(
            !got(&w, i, |m| !matches!(m, ServerMessage::RoomUpdated { .. })),
            "{i} received {:?}",
            w.inbox(i)
        );
    }
    assert_eq!(w.sfu.room_size("lecture"), 3);
    assert!(audio_during(&mut w, 1, 0, Duration::from_secs(1)) > 30);
    assert!(audio_during(&mut w, 0, 2, Duration::from_secs(1)) > 30);
}

#[test]
fn a_muted_student_is_not_heard_even_if_the_client_keeps_sending() {
    let mut w = class();
    let s = w.id(1);
    w.send(
        0,
        ClientMessage::MuteParticipant {
            participant: s.clone(),
            source: Source::Microphone,
        },
    );
    assert!(got(&w, 1, |m| matches!(
        m,
        ServerMessage::MuteRequested {
            source: Source::Microphone,
            ..
        }
    )));
    w.run(Duration::from_millis(200));
    // The test client does not obey: it keeps sending its microphone.
    assert_eq!(audio_during(&mut w, 2, 1, Duration::from_secs(1)), 0);
    assert_eq!(audio_during(&mut w, 0, 1, Duration::from_secs(1)), 0);
    // The student's camera is untouched.
    let v = w.packets_from(2, 1, MediaKind::Video);
    w.run(Duration::from_millis(500));
    assert!(w.packets_from(2, 1, MediaKind::Video) > v);
    // Only the student can switch it back on.
    w.send(
        1,
        ClientMessage::Mute {
            source: Source::Microphone,
            muted: false,
        },
    );
    assert!(audio_during(&mut w, 2, 1, Duration::from_secs(1)) > 30);
}

#[test]
fn a_teacher_asks_to_unmute_but_cannot_switch_anything_on() {
    let mut w = class();
    let s = w.id(1);
    w.send(
        0,
        ClientMessage::MuteParticipant {
            participant: s.clone(),
            source: Source::Microphone,
        },
    );
    w.send(
        0,
        ClientMessage::RequestUnmute {
            participant: s,
            source: Source::Microphone,
        },
    );
    assert!(got(&w, 1, |m| matches!(
        m,
        ServerMessage::UnmuteRequested {
            source: Source::Microphone,
            ..
        }
    )));
    assert_eq!(audio_during(&mut w, 2, 1, Duration::from_secs(1)), 0);
}

#[test]
fn ask_to_speak_holds_students_until_given_the_floor() {
    let mut w = class();
    w.send(
        0,
        ClientMessage::UpdateRoom {
            locked: None,
            waiting_room: None,
            ask_to_speak: Some(true),
        },
    );
    w.run(Duration::from_millis(200));
    assert_eq!(audio_during(&mut w, 0, 1, Duration::from_secs(1)), 0);
    // The teacher is always heard.
    assert!(audio_during(&mut w, 1, 0, Duration::from_secs(1)) > 30);

    w.send(1, ClientMessage::RaiseHand {});
    w.send(2, ClientMessage::RaiseHand {});
    let hands = |w: &World| {
        w.inbox(0)
            .iter()
            .rev()
            .find_map(|m| match m {
                ServerMessage::RoomUpdated { room } => Some(room.hands.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    assert_eq!(
        hands(&w),
        vec![w.id(1), w.id(2)],
        "hands in order of raising"
    );

    w.send(
        0,
        ClientMessage::GiveFloor {
            participant: w.id(2),
        },
    );
    assert!(audio_during(&mut w, 0, 2, Duration::from_secs(1)) > 30);
    assert_eq!(audio_during(&mut w, 0, 1, Duration::from_secs(1)), 0);
    assert_eq!(hands(&w), vec![w.id(1)], "the floor answers the hand");

    w.send(
        0,
        ClientMessage::TakeFloor {
            participant: w.id(2),
        },
    );
    w.run(Duration::from_millis(200));
    assert_eq!(audio_during(&mut w, 0, 2, Duration::from_secs(1)), 0);
}

/// Participants the engine let in so far.
fn joined(w: &World) -> usize {
    w.events
        .iter()
        .filter(|e| matches!(e, SfuEvent::ParticipantJoined { .. }))
        .count()
}

#[test]
fn opening_the_doors_lets_a_big_waiting_room_in_a_share_per_turn() {
    const WAITING: usize = 40;
    let mut w = World::new();
    w.tick = Duration::from_millis(1);
    w.add_as(ClientOptions::default(), Role::Teacher, teacher());
    w.run(Duration::from_secs(1));
    let doors = |w: &mut World, waiting_room: bool| {
        w.send(
            0,
            ClientMessage::UpdateRoom {
                locked: None,
                waiting_room: Some(waiting_room),
                ask_to_speak: None,
            },
        );
    };
    doors(&mut w, true);
    for _ in 0..WAITING {
        w.add_as(listener(), Role::Student, student());
    }
    w.run(Duration::from_secs(1));
    assert_eq!(joined(&w), 1, "only the teacher is in");

    // Opened: a share per turn, never all at once.
    doors(&mut w, false);
    let mut most_in_a_turn = joined(&w) - 1;
    w.run(w.tick);
    most_in_a_turn = most_in_a_turn.max(joined(&w) - 1);
    // Closed again after the first turn: the rest keep waiting.
    doors(&mut w, true);
    let let_in = joined(&w) - 1;
    assert!(let_in > 0 && let_in < WAITING, "{let_in} let in");
    w.run(Duration::from_millis(200));
    assert_eq!(joined(&w) - 1, let_in, "let in through closed doors");
    let lobby = last_lobby(&w, 0);
    assert_eq!(lobby.map(|l| l.len()), Some(WAITING - let_in));

    doors(&mut w, false);
    for _ in 0..200 {
        let before = joined(&w);
        w.run(w.tick);
        most_in_a_turn = most_in_a_turn.max(joined(&w) - before);
    }
    assert_eq!(joined(&w), WAITING + 1);
    assert!(most_in_a_turn <= 4, "{most_in_a_turn} let in at once");
    w.run(Duration::from_secs(2));
    for i in 1..=WAITING {
        assert!(
            w.packets_from(i, 0, MediaKind::Audio) > 20,
            "{i} hears the teacher"
        );
    }
    let lobby = last_lobby(&w, 0);
    assert_eq!(lobby.map(|l| l.len()), Some(0));
}

/// A teacher (0) in a room with its doors closed, and two students (1, 2)
/// waiting.
fn two_waiting() -> World {
    let mut w = World::new();
    w.add_as(ClientOptions::default(), Role::Teacher, teacher());
    w.run(Duration::from_secs(1));
    w.send(
        0,
        ClientMessage::UpdateRoom {
            locked: None,
            waiting_room: Some(true),
            ask_to_speak: None,
        },
    );
    for _ in 0..2 {
        w.add_as(listener(), Role::Student, student());
    }
    w.run(Duration::from_secs(1));
    assert_eq!(joined(&w), 1);
    w
}

#[test]
fn those_waiting_are_let_in_when_the_teacher_opens_the_doors_and_leaves_at_once() {
    let mut w = two_waiting();
    w.send(
        0,
        ClientMessage::UpdateRoom {
            locked: None,
            waiting_room: Some(false),
            ask_to_speak: None,
        },
    );
    w.leave_signalling(0, LeaveReason::Left);
    w.run(Duration::from_secs(1));
    assert_eq!(joined(&w), 3);
    assert_eq!(w.sfu.room_size("lecture"), 2);
    for i in [1, 2] {
        assert_in_room(&w, i);
    }
}

#[test]
fn those_waiting_still_wait_for_a_teacher_who_comes_back() {
    let mut w = two_waiting();
    // The teacher's tab is reloaded: gone for a moment.
    w.leave_signalling(0, LeaveReason::Disconnected);
    w.run(Duration::from_secs(1));
    assert_eq!(w.sfu.room_count(), 0, "nobody is in the room");
    let back = w.add_as(ClientOptions::default(), Role::Teacher, teacher());
    w.run(Duration::from_secs(1));
    let lobby = last_lobby(&w, back);
    let lobby: Vec<String> = lobby
        .expect("the teacher sees who waits")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(lobby, [w.id(1), w.id(2)]);
    w.send(
        back,
        ClientMessage::Admit {
            participant: w.id(1),
        },
    );
    w.run(Duration::from_secs(2));
    assert!(
        w.packets_from(1, back, MediaKind::Audio) > 20,
        "the admitted student hears the teacher"
    );
    assert_eq!(w.sfu.room_size("lecture"), 2);

    // The last one waiting gives up while nobody is in: the room goes.
    w.leave_signalling(back, LeaveReason::Left);
    w.leave_signalling(1, LeaveReason::Left);
    assert_eq!(w.sfu.room_count(), 0);
    w.leave_signalling(2, LeaveReason::Left);
    // So the room starts afresh, its doors open: the second newcomer is not
    // kept waiting.
    let fresh = w.add_as(listener(), Role::Student, student());
    w.run(Duration::from_secs(1));
    let second = w.add_as(listener(), Role::Student, student());
    w.run(Duration::from_secs(1));
    for i in [fresh, second] {
        assert_in_room(&w, i);
    }
}

#[test]
fn waiting_room_admit_and_deny() {
    let mut w = class();
    w.send(
        0,
        ClientMessage::UpdateRoom {
            locked: None,
            waiting_room: Some(true),
            ask_to_speak: None,
        },
    );
    let newcomer = w.add_as(ClientOptions::default(), Role::Student, student());
    let refused = w.add_as(ClientOptions::default(), Role::Student, student());
    w.run(Duration::from_secs(1));
    assert!(got(&w, newcomer, |m| matches!(
        m,
        ServerMessage::Waiting {}
    )));
    assert_eq!(w.packets_from(newcomer, 0, MediaKind::Audio), 0);
    let lobby = last_lobby(&w, 0);
    let lobby = lobby.expect("the teacher sees the waiting room");
    assert_eq!(lobby.len(), 2);
    assert_eq!(lobby[0].id, w.id(newcomer));
    // Students are not told who waits.
    assert!(!got(&w, 1, |m| matches!(m, ServerMessage::Lobby { .. })));
    // A student cannot admit.
    w.send(
        1,
        ClientMessage::Admit {
            participant: w.id(newcomer),
        },
    );
    assert!(w.errors(1).contains(&ErrorCode::Forbidden));

    w.send(
        0,
        ClientMessage::Admit {
            participant: w.id(newcomer),
        },
    );
    w.send(
        0,
        ClientMessage::Deny {
            participant: w.id(refused),
        },
    );
    w.run(SETTLE);
    assert!(w.packets_from(newcomer, 0, MediaKind::Audio) > 20);
    assert!(w.packets_from(0, newcomer, MediaKind::Audio) > 20);
    assert_eq!(w.clients[refused].p.stats().bye, Some(LeaveReason::Denied));
    assert_eq!(w.sfu.room_size("lecture"), 4);
}

#[test]
fn a_removed_identity_cannot_come_back() {
    let mut w = class();
    w.send(
        0,
        ClientMessage::Remove {
            participant: w.id(2),
            reason: Some("disruptive".into()),
        },
    );
    w.run(Duration::from_millis(300));
    assert_eq!(w.clients[2].p.stats().bye, Some(LeaveReason::Removed));
    assert!(w.clients[1].p.stats().saw_left(&w.id(2)));
    // Same identity, same room, new connection.
    let again = w.add_as(ClientOptions::default(), Role::Student, student());
    w.clients[again].identity = w.clients[2].identity.clone();
    w.run(Duration::from_secs(1));
    assert!(w.errors(again).contains(&ErrorCode::Forbidden));
    assert_eq!(w.sfu.room_size("lecture"), 2);
}

#[test]
fn locked_and_ended_rooms_keep_students_out_but_not_teachers() {
    let mut w = class();
    w.send(
        0,
        ClientMessage::UpdateRoom {
            locked: Some(true),
            waiting_room: None,
            ask_to_speak: None,
        },
    );
    let late = w.add_as(ClientOptions::default(), Role::Student, student());
    let co = w.add_as(ClientOptions::default(), Role::Teacher, teacher());
    w.run(Duration::from_secs(1));
    assert!(w.errors(late).contains(&ErrorCode::RoomLocked));
    assert!(w.errors(co).is_empty());
    assert_eq!(w.sfu.room_size("lecture"), 4);

    w.send(0, ClientMessage::EndRoom {});
    w.run(Duration::from_millis(300));
    for i in [0, 1, 2, co] {
        assert_eq!(
            w.clients[i].p.stats().bye,
            Some(LeaveReason::RoomEnded),
            "{i}"
        );
    }
    assert_eq!(w.sfu.room_size("lecture"), 0);
    let back = w.add_as(ClientOptions::default(), Role::Student, student());
    w.run(Duration::from_millis(500));
    assert!(w.errors(back).contains(&ErrorCode::RoomEnded));
}

#[test]
fn chat_is_relayed_literally_privately_and_with_limits() {
    let mut w = class();
    let html = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    w.send(
        1,
        ClientMessage::Chat {
            text: html.into(),
            to: None,
        },
    );
    for i in 0..3 {
        assert!(
            got(
                &w,
                i,
                |m| matches!(m, ServerMessage::Chat { message } if message.text == html)
            ),
            "{i} got the message unchanged"
        );
    }
    // Private to the teacher: only the teacher (and the sender's echo).
    w.send(
        2,
        ClientMessage::Chat {
            text: "question".into(),
            to: Some(w.id(0)),
        },
    );
    assert!(got(
        &w,
        0,
        |m| matches!(m, ServerMessage::Chat { message } if message.text == "question")
    ));
    assert!(!got(
        &w,
        1,
        |m| matches!(m, ServerMessage::Chat { message } if message.text == "question")
    ));
    // Students cannot write privately to each other.
    w.send(
        2,
        ClientMessage::Chat {
            text: "psst".into(),
            to: Some(w.id(1)),
        },
    );
    assert!(w.errors(2).contains(&ErrorCode::Forbidden));
    // Too long, and too fast.
    w.send(
        1,
        ClientMessage::Chat {
            text: "x".repeat(amphi_client::protocol::MAX_CHAT_CHARS + 1),
            to: None,
        },
    );
    assert!(w.errors(1).contains(&ErrorCode::TooLarge));
    for n in 0..10 {
        w.send(
            1,
            ClientMessage::Chat {
                text: format!("spam {n}"),
                to: None,
            },
        );
    }
    assert!(w.errors(1).contains(&ErrorCode::RateLimited));
}

#[test]
fn breakout_groups_separate_media_and_recall_brings_it_back() {
    let mut w = class();
    let mut assignments = std::collections::BTreeMap::new();
    assignments.insert(w.id(1), 0);
    assignments.insert(w.id(2), 1);
    w.send(
        0,
        ClientMessage::BreakoutStart {
            groups: 2,
            assignments: Some(assignments),
        },
    );
    w.run(SETTLE);
    assert_eq!(audio_during(&mut w, 1, 2, Duration::from_secs(1)), 0);
    assert_eq!(audio_during(&mut w, 2, 1, Duration::from_secs(1)), 0);
    // The teacher stays in the main room: nobody hears them, they hear nobody.
    assert_eq!(audio_during(&mut w, 0, 1, Duration::from_secs(1)), 0);

    // The teacher visits group 1.
    w.send(
        0,
        ClientMessage::BreakoutMove {
            participant: w.id(0),
            group: Some("G1".into()),
        },
    );
    w.run(SETTLE);
    assert!(audio_during(&mut w, 0, 1, Duration::from_secs(1)) > 30);
    assert!(audio_during(&mut w, 1, 0, Duration::from_secs(1)) > 30);
    assert_eq!(audio_during(&mut w, 0, 2, Duration::from_secs(1)), 0);

    // A broadcast reaches every group.
    w.send(
        0,
        ClientMessage::BreakoutBroadcast {
            text: "five minutes left".into(),
        },
    );
    assert!(got(
        &w,
        2,
        |m| matches!(m, ServerMessage::Chat { message } if message.broadcast)
    ));

    w.send(0, ClientMessage::BreakoutEnd {});
    w.run(SETTLE);
    assert!(audio_during(&mut w, 1, 2, Duration::from_secs(1)) > 30);
    assert!(audio_during(&mut w, 2, 1, Duration::from_secs(1)) > 30);
    for i in 0..3 {
        assert!(
            w.clients[i].p.stats().errors.is_empty(),
            "{i}: {:?}",
            w.errors(i)
        );
    }
}

/// A teacher (0) and twelve students.
fn big_class() -> World {
    let mut w = World::new();
    w.add_as(ClientOptions::default(), Role::Teacher, teacher());
    for _ in 0..12 {
        w.add_as(ClientOptions::default(), Role::Student, student());
    }
    w.run(SETTLE);
    w
}

/// The updates sent since `seen`: one message to each member, each about
/// exactly `about`.
fn one_update_each(w: &World, seen: usize, about: &[usize]) {
    let updates = &w.updates[seen..];
    let mut to: Vec<_> = updates.iter().map(|(to, _)| *to).collect();
    to.sort();
    let members: Vec<_> = w.clients.iter().map(|c| c.pid).collect();
    assert_eq!(to, members, "one message to each member: {updates:?}");
    let mut want: Vec<String> = about.iter().map(|i| w.id(*i)).collect();
    want.sort();
    for (_, got) in updates {
        let mut got = got.clone();
        got.sort();
        assert_eq!(got, want, "{updates:?}");
    }
}

#[test]
fn mute_all_and_breakout_groups_tell_each_member_once() {
    let mut w = big_class();
    let students: Vec<usize> = (1..=12).collect();
    let everyone: Vec<usize> = (0..=12).collect();

    let seen = w.updates.len();
    w.send(0, ClientMessage::MuteAll {});
    one_update_each(&w, seen, &students);
    w.run(SETTLE);
    for i in [1, 7, 12] {
        assert_eq!(
            audio_during(&mut w, 0, i, Duration::from_secs(1)),
            0,
            "{i} is held back"
        );
    }

    let seen = w.updates.len();
    w.send(
        0,
        ClientMessage::BreakoutStart {
            groups: 3,
            assignments: None,
        },
    );
    one_update_each(&w, seen, &everyone);
    // Everyone knows every student's group.
    let roster = &w.clients[5].p.stats().roster;
    assert_eq!(roster.values().filter(|p| p.group.is_some()).count(), 11);

    let seen = w.updates.len();
    w.send(0, ClientMessage::BreakoutEnd {});
    one_update_each(&w, seen, &everyone);
    let roster = &w.clients[5].p.stats().roster;
    assert!(roster.values().all(|p| p.group.is_none()));
}

#[test]
fn moving_one_student_tells_each_member_about_that_student_only() {
    // Students 1-6 in G1, 7-12 in G2.
    let mut w = big_class();
    let assignments = (1..=12).map(|i| (w.id(i), u32::from(i > 6))).collect();
    w.send(
        0,
        ClientMessage::BreakoutStart {
            groups: 2,
            assignments: Some(assignments),
        },
    );
    w.run(SETTLE);
    assert_eq!(audio_during(&mut w, 1, 7, Duration::from_secs(1)), 0);

    let seen = w.updates.len();
    w.send(
        0,
        ClientMessage::BreakoutMove {
            participant: w.id(1),
            group: Some("G2".into()),
        },
    );
    // Each of the thirteen learns of the move, once; nobody else changed.
    let updates = &w.updates[seen..];
    assert_eq!(updates.len(), 13, "{updates:?}");
    assert!(
        updates.iter().all(|(_, about)| *about == [w.id(1)]),
        "{updates:?}"
    );

    w.run(SETTLE);
    // The mover hears the new group and is heard there, and has left the old one.
    assert!(audio_during(&mut w, 1, 7, Duration::from_secs(1)) > 30);
    assert!(audio_during(&mut w, 12, 1, Duration::from_secs(1)) > 30);
    assert_eq!(audio_during(&mut w, 1, 2, Duration::from_secs(1)), 0);
    assert_eq!(audio_during(&mut w, 6, 1, Duration::from_secs(1)), 0);
    // The others' groups are as they were.
    assert!(audio_during(&mut w, 2, 6, Duration::from_secs(1)) > 30);
    assert_eq!(audio_during(&mut w, 2, 7, Duration::from_secs(1)), 0);
    for i in 0..13 {
        assert!(w.errors(i).is_empty(), "{i}: {:?}", w.errors(i));
    }
}

#[test]
fn a_promoted_student_can_moderate_and_share_a_screen() {
    let mut w = class();
    w.send(
        0,
        ClientMessage::Promote {
            participant: w.id(1),
            to: Promotion::CoTeacher,
        },
    );
    assert!(got(&w, 1, |m| matches!(
        m,
        ServerMessage::PermissionsUpdated { role: Role::Teacher, permissions } if permissions.moderate
            && permissions.publish_sources.contains(&Source::ScreenShare)
    )));
    w.send(
        1,
        ClientMessage::MuteParticipant {
            participant: w.id(2),
            source: Source::Microphone,
        },
    );
    assert!(w.errors(1).is_empty());
    assert!(got(&w, 2, |m| matches!(
        m,
        ServerMessage::MuteRequested { .. }
    )));
}

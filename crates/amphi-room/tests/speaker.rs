//! Active speakers through the engine: real str0m participants send audio
//! with the RFC 6464 audio level extension, and everyone in the room (or
//! breakout group) is told who speaks, only when that changes, never
//! counting a source the server holds back.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use amphi_client::ClientOptions;
use amphi_client::protocol::{ClientMessage, Role, ServerMessage, Source};
use amphi_room::ParticipantId;
use common::{World, student, teacher};

const SETTLE: Duration = Duration::from_secs(2);
const LOUD: u8 = 20;
const QUIET: u8 = 40;
const SILENT: u8 = 127;

/// A teacher (0) and two students (1, 2), audio only, connected.
fn class() -> World {
    let audio_only = || ClientOptions {
        publish_video: false,
        ..ClientOptions::default()
    };
    let mut w = World::new();
    w.add_as(audio_only(), Role::Teacher, teacher());
    w.add_as(audio_only(), Role::Student, student());
    w.add_as(audio_only(), Role::Student, student());
    w.run(SETTLE);
    w
}

fn set_level(w: &mut World, i: usize, dbov: Option<u8>) {
    w.clients[i].p.set_audio_level(dbov);
}

/// Every `speakers` list client `i` got, in order, as participant ids.
fn lists(w: &World, i: usize) -> Vec<Vec<String>> {
    w.inbox(i)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Speakers { speakers } => {
                Some(speakers.into_iter().map(|s| s.participant).collect())
            }
            _ => None,
        })
        .collect()
}

fn last(w: &World, i: usize) -> Vec<String> {
    lists(w, i).pop().unwrap_or_default()
}

fn pid(w: &World, i: usize) -> ParticipantId {
    w.clients[i].pid
}

#[test]
fn everyone_is_told_who_speaks_loudest_first_and_only_on_change() {
    let mut w = class();
    assert!(lists(&w, 0).is_empty(), "nobody has spoken yet");
    set_level(&mut w, 1, Some(LOUD));
    set_level(&mut w, 2, Some(QUIET));
    w.run(SETTLE);
    let (p1, p2) = (w.id(1), w.id(2));
    for i in 0..3 {
        assert_eq!(last(&w, i), vec![p1.clone(), p2.clone()], "client {i}");
    }
    assert_eq!(w.sfu.dominant_speaker(pid(&w, 0)), Some(pid(&w, 1)));
    // Levels are on the 0..1 scale, the louder first.
    let levels: Vec<f32> = w
        .inbox(0)
        .into_iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Speakers { speakers } => {
                Some(speakers.iter().map(|s| s.level).collect())
            }
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        levels[0] > levels[1] && levels[0] <= 1.0 && levels[1] > 0.0,
        "{levels:?}"
    );
    // -20 dBov and -40 dBov are 50/70 and 30/70 on the 0..1 scale (-70 dBov
    // is 0). The levels are a snapshot taken while both were still rising
    // from silence together, so their ratio is what can be checked: it
    // shows the level went through str0m's extension parsing right.
    let ratio = levels[0] / levels[1];
    assert!((ratio - 50.0 / 30.0).abs() < 0.15, "{levels:?}");

    // Nothing changes: nothing is sent.
    let sent = lists(&w, 0).len();
    w.run(Duration::from_secs(3));
    assert_eq!(lists(&w, 0).len(), sent, "no message without a change");

    // The loudness swaps: the other takes over within two seconds, and the
    // list never goes back in between.
    set_level(&mut w, 1, Some(QUIET));
    set_level(&mut w, 2, Some(LOUD));
    w.run(Duration::from_secs(2));
    assert_eq!(last(&w, 0), vec![p2.clone(), p1.clone()]);
    assert_eq!(lists(&w, 0).len(), sent + 1, "one change, one message");

    // Silence clears the list.
    set_level(&mut w, 1, Some(SILENT));
    set_level(&mut w, 2, Some(SILENT));
    w.run(SETTLE);
    for i in 0..3 {
        assert!(last(&w, i).is_empty(), "client {i}: {:?}", last(&w, i));
    }
    assert_eq!(w.sfu.dominant_speaker(pid(&w, 0)), None);
    // The teacher's client sends no audio level at all: never listed.
    assert!(lists(&w, 1).iter().flatten().all(|p| *p != w.id(0)));
}

#[test]
fn a_participant_held_back_by_a_moderator_is_not_speaking() {
    let mut w = class();
    set_level(&mut w, 1, Some(LOUD));
    set_level(&mut w, 2, Some(QUIET));
    w.run(SETTLE);
    assert_eq!(last(&w, 0), vec![w.id(1), w.id(2)]);
    let before = lists(&w, 0).len();
    w.send(
        0,
        ClientMessage::MuteParticipant {
            participant: w.id(1),
            source: Source::Microphone,
        },
    );
    // The test client does not obey and keeps sending loud packets; the
    // server holds them back, and they stop counting at the next evaluation.
    w.run(Duration::from_millis(400));
    for i in 0..3 {
        assert_eq!(last(&w, i), vec![w.id(2)], "client {i}");
    }
    w.run(Duration::from_secs(2));
    assert!(lists(&w, 0)[before..].iter().all(|l| !l.contains(&w.id(1))));
    assert_eq!(last(&w, 0), vec![w.id(2)]);

    // Ask-to-speak holds students without the floor back too.
    w.send(
        0,
        ClientMessage::UpdateRoom {
            locked: None,
            waiting_room: None,
            ask_to_speak: Some(true),
        },
    );
    w.run(Duration::from_millis(400));
    assert!(last(&w, 0).is_empty(), "{:?}", last(&w, 0));
    w.send(
        0,
        ClientMessage::GiveFloor {
            participant: w.id(2),
        },
    );
    w.run(SETTLE);
    assert_eq!(last(&w, 0), vec![w.id(2)]);
}

#[test]
fn a_participant_who_mutes_stops_speaking_at_once() {
    let mut w = class();
    set_level(&mut w, 1, Some(LOUD));
    w.run(SETTLE);
    assert_eq!(last(&w, 2), vec![w.id(1)]);
    w.send(
        1,
        ClientMessage::Mute {
            source: Source::Microphone,
            muted: true,
        },
    );
    w.run(Duration::from_millis(400));
    assert!(last(&w, 2).is_empty());
}

#[test]
fn breakout_groups_have_their_own_speakers() {
    let mut w = class();
    let mut assignments = BTreeMap::new();
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
    set_level(&mut w, 1, Some(QUIET));
    set_level(&mut w, 2, Some(LOUD));
    w.run(SETTLE);
    assert_eq!(last(&w, 1), vec![w.id(1)], "group 1 hears only itself");
    assert_eq!(last(&w, 2), vec![w.id(2)], "group 2 hears only itself");
    assert!(lists(&w, 0).is_empty(), "the main room is silent");
    assert_eq!(w.sfu.dominant_speaker(pid(&w, 1)), Some(pid(&w, 1)));
    assert_eq!(w.sfu.dominant_speaker(pid(&w, 0)), None);

    // The teacher visits group 2 and is told who speaks there.
    w.send(
        0,
        ClientMessage::BreakoutMove {
            participant: w.id(0),
            group: Some("G2".into()),
        },
    );
    w.run(Duration::from_millis(500));
    assert_eq!(last(&w, 0), vec![w.id(2)]);

    // Back together: one list for everyone, the louder first.
    w.send(0, ClientMessage::BreakoutEnd {});
    w.run(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(last(&w, i), vec![w.id(2), w.id(1)], "client {i}");
    }
}

//! Active speakers in the engine: feeding the detector ([`crate::speaker`])
//! from the packet path, evaluating it on the engine's clock, and telling
//! each participant who speaks in their room or breakout group.
//!
//! The rule that matters: a source the server holds back never counts.
//! [`Sfu::forward`] observes a microphone packet only after its silenced
//! check, and every evaluation first drops whoever is no longer heard (left,
//! moved, muted, held back by a moderator or by ask-to-speak), so a muted
//! participant disappears from the list at the next evaluation rather than
//! after their level has decayed.

use std::collections::HashMap;
use std::time::Instant;

use amphi_protocol::{ServerMessage, Source, SpeakerInfo};
use str0m::rtp::ExtensionValues;

use super::Sfu;
use crate::ids::ParticipantId;
use crate::participant::Participant;
use crate::speaker::{SpeakerConfig, SpeakerDetector};
use crate::track::PublishedTrack;

/// Where levels may be compared: a room, and a breakout group in it (`None`
/// for the main room). Groups are separate calls, so they have separate
/// speakers.
type Scope = (String, Option<String>);

/// The engine's speaker state.
#[derive(Debug)]
pub(crate) struct Speakers {
    detector: SpeakerDetector<Scope, ParticipantId>,
    /// The scope each observed participant was last seen in, kept so that
    /// the packet path builds no key (two `String`s) per packet.
    scopes: HashMap<ParticipantId, Scope>,
    /// The speakers (in order) each participant was last told about; absent
    /// means nobody.
    told: HashMap<ParticipantId, Vec<ParticipantId>>,
}

impl Default for Speakers {
    fn default() -> Self {
        Speakers {
            detector: SpeakerDetector::new(SpeakerConfig::default()),
            scopes: HashMap::new(),
            told: HashMap::new(),
        }
    }
}

impl Speakers {
    /// One audio packet that the engine forwards (the caller has checked
    /// that the source is not held back). Only microphones count: a shared
    /// screen's sound is not someone speaking.
    pub(crate) fn observe(
        &mut self,
        p: &Participant,
        track: &PublishedTrack,
        ext: &ExtensionValues,
        now: Instant,
    ) {
        if track.source != Source::Microphone || track.muted {
            return;
        }
        // Without the extension (a client that does not send it) there is
        // nothing to go on.
        let Some(level) = ext.audio_level else {
            return;
        };
        // str0m gives -dBov as a negative number; clamp what a broken
        // sender could put there (-128) into RFC 6464's range.
        let dbov = u8::try_from(i16::from(level).unsigned_abs().min(127)).unwrap_or(127);
        if self.current_scope(p).is_none() {
            self.scopes.insert(p.id, (p.room.clone(), p.group.clone()));
        }
        let Some(scope) = self.scopes.get(&p.id) else {
            return;
        };
        self.detector
            .observe(scope, p.id, dbov, ext.voice_activity, now);
    }

    /// The scope `p` was last heard in, if that is where they are now.
    fn current_scope(&self, p: &Participant) -> Option<&Scope> {
        self.scopes
            .get(&p.id)
            .filter(|(room, group)| *room == p.room && *group == p.group)
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.detector.poll_timeout()
    }
}

impl Sfu {
    /// Evaluates the speakers when due and tells whoever's list changed.
    pub(super) fn handle_speakers_timeout(&mut self, now: Instant) {
        if self.speakers.poll_timeout().is_none_or(|t| now < t) {
            return;
        }
        let gone: Vec<ParticipantId> = self
            .speakers
            .detector
            .tracked()
            .filter(|(pid, scope)| !self.heard_in(*pid, scope))
            .map(|(pid, _)| pid)
            .collect();
        for pid in gone {
            self.speakers.detector.remove(pid);
        }
        self.speakers.detector.handle_timeout(now);
        self.send_speakers();
    }

    /// Whether `pid`'s microphone still reaches the others in `scope`.
    fn heard_in(&self, pid: ParticipantId, scope: &Scope) -> bool {
        let Some(p) = self.participants.get(&pid) else {
            return false;
        };
        let ask = self.rooms.get(&p.room).is_some_and(|r| r.ask_to_speak);
        p.room == scope.0
            && p.group == scope.1
            && !p.silenced(Source::Microphone, ask)
            && p.publisher
                .tracks
                .iter()
                .any(|t| t.source == Source::Microphone && !t.muted)
    }

    /// Sends `speakers` to everyone whose room's or group's list is not the
    /// one they were last told.
    fn send_speakers(&mut self) {
        let mut messages = Vec::new();
        for (pid, p) in &self.participants {
            let scope = (p.room.clone(), p.group.clone());
            let list = self.speakers.detector.speakers(&scope);
            let ids: Vec<ParticipantId> = list.iter().map(|s| s.participant).collect();
            let known = self
                .speakers
                .told
                .get(pid)
                .map_or(&[][..], |t| t.as_slice());
            if known == ids.as_slice() {
                continue;
            }
            let speakers = list
                .iter()
                .map(|s| SpeakerInfo {
                    participant: s.participant.to_string(),
                    // Two decimals are all a level meter shows.
                    level: (s.level * 100.0).round() / 100.0,
                })
                .collect();
            messages.push((*pid, ServerMessage::Speakers { speakers }));
            if ids.is_empty() {
                self.speakers.told.remove(pid);
            } else {
                self.speakers.told.insert(*pid, ids);
            }
        }
        let participants = &self.participants;
        self.speakers
            .told
            .retain(|pid, _| participants.contains_key(pid));
        self.speakers
            .scopes
            .retain(|pid, _| participants.contains_key(pid));
        for (pid, message) in messages {
            self.signal(pid, message);
        }
    }

    /// The dominant speaker where `participant` is (their room, or their
    /// breakout group), if anyone speaks there.
    pub fn dominant_speaker(&self, participant: ParticipantId) -> Option<ParticipantId> {
        let p = self.participants.get(&participant)?;
        match self.speakers.current_scope(p) {
            Some(scope) => self.speakers.detector.dominant(scope),
            None => self
                .speakers
                .detector
                .dominant(&(p.room.clone(), p.group.clone())),
        }
    }

    /// Whether `pid` is the dominant speaker where they are. Asked for every
    /// track at every allocation run, so it builds no key: someone who has
    /// not been heard where they are now cannot be dominant there.
    pub(super) fn is_dominant_speaker(&self, pid: ParticipantId) -> bool {
        self.participants
            .get(&pid)
            .and_then(|p| self.speakers.current_scope(p))
            .is_some_and(|scope| self.speakers.detector.dominant(scope) == Some(pid))
    }
}

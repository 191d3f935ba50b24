//! The classroom: waiting room, hands, chat, moderation and breakout groups.
//!
//! Every rule here is enforced by the server: a client that sends a
//! moderation command without the `moderate` grant gets `forbidden` and
//! nothing changes; a muted or floorless source is held back in
//! [`Sfu::forward`] whatever the client sends. One privacy rule shapes the
//! moderation commands: a moderator can stop someone's microphone or camera,
//! never switch it on; switching on is a request the participant answers.

use std::collections::BTreeMap;
use std::time::Instant;

use amphi_protocol::{
    ChatMessage, ClientMessage, ErrorCode, GroupInfo, LeaveReason, LobbyEntry, MAX_CHAT_CHARS,
    Permissions, Promotion, Role, RoomState, ServerMessage, Source,
};
use rand::seq::SliceRandom;
use tracing::info;

use super::{Output, Sfu, error_for};
use crate::ids::ParticipantId;
use crate::sfu::JoinRequest;

/// Chat messages a participant may send in a burst, and per second after.
pub(crate) const CHAT_BURST: f64 = 5.0;
const CHAT_PER_SECOND: f64 = 1.0;
/// Participants let in per turn of the media thread when a room's doors
/// open on a waiting room.
const ADMITS_PER_TURN: usize = 4;

/// Most breakout groups at once.
const MAX_GROUPS: u32 = 50;

impl Sfu {
    pub(super) fn handle_classroom(
        &mut self,
        now: Instant,
        pid: ParticipantId,
        msg: ClientMessage,
    ) {
        let request = message_type(&msg);
        if needs_moderation(&msg) && !self.moderates(pid) {
            self.signal(
                pid,
                error_for(
                    request,
                    ErrorCode::Forbidden,
                    "only a moderator (a teacher) can do this",
                ),
            );
            return;
        }
        let result = match msg {
            ClientMessage::Chat { text, to } => self.chat(now, pid, text, to),
            ClientMessage::RaiseHand {} => self.raise_hand(pid),
            ClientMessage::LowerHand { participant } => self.lower_hand(pid, participant),
            ClientMessage::MuteParticipant {
                participant,
                source,
            } => self
                .target(pid, &participant)
                .map(|t| self.mute(pid, t, source)),
            ClientMessage::MuteAll {} => {
                self.mute_all(pid);
                Ok(())
            }
            ClientMessage::RequestUnmute {
                participant,
                source,
            } => self.target(pid, &participant).map(|t| {
                let by = self.name_of(pid);
                self.signal(t, ServerMessage::UnmuteRequested { source, by });
            }),
            ClientMessage::GiveFloor { participant } => self
                .target(pid, &participant)
                .map(|t| self.set_floor(pid, t, true)),
            ClientMessage::TakeFloor { participant } => self
                .target(pid, &participant)
                .map(|t| self.set_floor(pid, t, false)),
            ClientMessage::Promote { participant, to } => {
                self.target(pid, &participant).map(|t| self.promote(t, to))
            }
            ClientMessage::UpdateRoom {
                locked,
                waiting_room,
                ask_to_speak,
            } => {
                self.update_room(pid, locked, waiting_room, ask_to_speak);
                Ok(())
            }
            ClientMessage::Admit { participant } => self.admit_waiting(now, pid, &participant),
            ClientMessage::Deny { participant } => self.deny_waiting(pid, &participant),
            ClientMessage::Remove {
                participant,
                reason,
            } => self.remove_by_moderator(now, pid, &participant, reason),
            ClientMessage::EndRoom {} => {
                self.end_room(pid);
                Ok(())
            }
            ClientMessage::BreakoutStart {
                groups,
                assignments,
            } => self.breakout_start(pid, groups, assignments),
            ClientMessage::BreakoutMove { participant, group } => {
                self.breakout_move(pid, &participant, group)
            }
            ClientMessage::BreakoutBroadcast { text } => self.broadcast_to_groups(pid, text),
            ClientMessage::BreakoutEnd {} => {
                self.breakout_end(pid);
                Ok(())
            }
            // Handled by `handle_message` before it gets here.
            ClientMessage::Join { .. }
            | ClientMessage::PublishOffer { .. }
            | ClientMessage::SubscribeAnswer { .. }
            | ClientMessage::Mute { .. }
            | ClientMessage::TrackSettings { .. }
            | ClientMessage::GetStats {}
            | ClientMessage::Ping {}
            | ClientMessage::Leave {} => Ok(()),
        };
        if let Err((code, message)) = result {
            self.signal(pid, error_for(request, code, message));
        }
    }

    // ----- waiting room ---------------------------------------------------

    pub(super) fn wait_in_lobby(&mut self, req: JoinRequest) {
        let room = req.room.clone();
        let pid = req.participant;
        info!(participant = %pid, room = %room, "participant waiting to be admitted");
        if let Some(r) = self.rooms.get_mut(&room) {
            r.lobby.push(req);
        }
        self.signal(pid, ServerMessage::Waiting {});
        self.send_lobby(&room);
    }

    pub(super) fn in_lobby(&self, pid: ParticipantId) -> bool {
        self.rooms
            .values()
            .any(|r| r.lobby.iter().any(|w| w.participant == pid))
    }

    /// Takes `pid` out of whichever waiting room holds them.
    fn take_from_lobby(&mut self, pid: ParticipantId) -> Option<JoinRequest> {
        for room in self.rooms.values_mut() {
            if let Some(i) = room.lobby.iter().position(|w| w.participant == pid) {
                return Some(room.lobby.remove(i));
            }
        }
        None
    }

    pub(super) fn leave_lobby(&mut self, pid: ParticipantId) {
        if let Some(req) = self.take_from_lobby(pid) {
            // The last one waiting in a room nobody is in.
            if self
                .rooms
                .get(&req.room)
                .is_some_and(|r| r.members.is_empty() && r.lobby.is_empty())
            {
                self.rooms.remove(&req.room);
            }
            self.send_lobby(&req.room);
        }
    }

    /// Tells the room's moderators who is waiting.
    pub(super) fn send_lobby(&mut self, room: &str) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let waiting: Vec<LobbyEntry> = r
            .lobby
            .iter()
            .map(|w| LobbyEntry {
                id: w.participant.to_string(),
                name: w.name.clone(),
                role: w.role,
            })
            .collect();
        let moderators: Vec<ParticipantId> = r
            .members
            .iter()
            .copied()
            .filter(|id| self.moderates(*id))
            .collect();
        self.broadcast(&moderators, &ServerMessage::Lobby { waiting });
    }

    fn waiting_in(&self, moderator: ParticipantId, target: &str) -> Result<ParticipantId, Failure> {
        let room = self.room_of(moderator);
        self.rooms
            .get(&room)
            .and_then(|r| {
                r.lobby
                    .iter()
                    .find(|w| w.participant.to_string() == target)
                    .map(|w| w.participant)
            })
            .ok_or((
                ErrorCode::NotFound,
                format!("nobody with id {target:?} is waiting"),
            ))
    }

    fn admit_waiting(&mut self, now: Instant, moderator: ParticipantId, target: &str) -> Outcome {
        let pid = self.waiting_in(moderator, target)?;
        if let Some(req) = self.take_from_lobby(pid) {
            let room = req.room.clone();
            self.admit(now, req);
            self.send_lobby(&room);
        }
        Ok(())
    }

    /// Lets in up to `ADMITS_PER_TURN` of those waiting in rooms whose
    /// doors were opened, and asks for the next turn while any wait. Each
    /// admission makes two connections, tells the newcomer who is there and
    /// everyone of the newcomer: opening the doors to a lecture of 375 at
    /// once kept the media thread 70 ms from everyone's packets.
    pub(super) fn admit_through_open_doors(&mut self, now: Instant) {
        let mut left = ADMITS_PER_TURN;
        while left > 0
            && let Some(room) = self.admitting.pop_front()
        {
            // Closed again, or gone: whoever is left waits.
            let Some(r) = self.rooms.get_mut(&room).filter(|r| !r.waiting_room) else {
                continue;
            };
            let n = left.min(r.lobby.len());
            let share: Vec<JoinRequest> = r.lobby.drain(..n).collect();
            if !r.lobby.is_empty() {
                self.admitting.push_back(room.clone());
            }
            left -= n;
            for req in share {
                self.admit(now, req);
            }
            self.send_lobby(&room);
        }
    }

    fn deny_waiting(&mut self, moderator: ParticipantId, target: &str) -> Outcome {
        let pid = self.waiting_in(moderator, target)?;
        self.leave_lobby(pid);
        self.say_bye(pid, LeaveReason::Denied, None);
        Ok(())
    }

    // ----- hands and chat ---------------------------------------------------

    fn raise_hand(&mut self, pid: ParticipantId) -> Outcome {
        let room = self.room_of(pid);
        let Some(r) = self.rooms.get_mut(&room) else {
            return Ok(());
        };
        let Some(p) = self.participants.get_mut(&pid) else {
            return Ok(());
        };
        if p.hand.is_none() {
            p.hand = Some(r.next_hand);
            r.next_hand += 1;
            self.announce(pid);
            self.announce_room(&room);
        }
        Ok(())
    }

    fn lower_hand(&mut self, pid: ParticipantId, whose: Option<String>) -> Outcome {
        let target = match whose {
            Some(t) if t != pid.to_string() => {
                if !self.moderates(pid) {
                    return Err((
                        ErrorCode::Forbidden,
                        "only a moderator can lower someone else's hand".into(),
                    ));
                }
                self.target(pid, &t)?
            }
            _ => pid,
        };
        if let Some(p) = self.participants.get_mut(&target)
            && p.hand.take().is_some()
        {
            let room = p.room.clone();
            self.announce(target);
            self.announce_room(&room);
        }
        Ok(())
    }

    fn chat(
        &mut self,
        now: Instant,
        pid: ParticipantId,
        text: String,
        to: Option<String>,
    ) -> Outcome {
        let Some(p) = self.participants.get_mut(&pid) else {
            return Ok(());
        };
        if !p.permissions.chat {
            return Err((
                ErrorCode::Forbidden,
                "your token does not allow chat".into(),
            ));
        }
        if text.trim().is_empty() {
            return Err((ErrorCode::BadRequest, "empty message".into()));
        }
        if text.chars().count() > MAX_CHAT_CHARS {
            return Err((
                ErrorCode::TooLarge,
                format!("chat messages are at most {MAX_CHAT_CHARS} characters"),
            ));
        }
        let (allowance, at) = p.chat_allowance;
        let allowance = (allowance
            + now.saturating_duration_since(at).as_secs_f64() * CHAT_PER_SECOND)
            .min(CHAT_BURST);
        if allowance < 1.0 {
            p.chat_allowance = (allowance, now);
            return Err((
                ErrorCode::RateLimited,
                "you are sending messages too fast".into(),
            ));
        }
        p.chat_allowance = (allowance - 1.0, now);
        let message = ChatMessage {
            from: pid.to_string(),
            from_name: p.name.clone(),
            text,
            to: None,
            broadcast: false,
            sent_at: self.wall_millis(now),
        };
        match to {
            Some(to) => {
                let target = self.target(pid, &to)?;
                if !self.moderates(pid) && !self.moderates(target) {
                    return Err((
                        ErrorCode::Forbidden,
                        "private messages go to a teacher".into(),
                    ));
                }
                let message = ChatMessage {
                    to: Some(target.to_string()),
                    ..message
                };
                let chat = ServerMessage::Chat { message };
                self.signal(target, chat.clone());
                self.signal(pid, chat);
            }
            None => {
                // The room chat of a breakout group stays in the group.
                let group = self.participants.get(&pid).and_then(|p| p.group.clone());
                let to: Vec<ParticipantId> = self
                    .members_of(pid)
                    .into_iter()
                    .filter(|id| self.participants.get(id).is_some_and(|p| p.group == group))
                    .collect();
                self.broadcast(&to, &ServerMessage::Chat { message });
            }
        }
        Ok(())
    }

    // ----- moderation ---------------------------------------------------------

    fn mute(&mut self, moderator: ParticipantId, target: ParticipantId, source: Source) {
        self.hold_back(moderator, target, source);
        self.announce(target);
    }

    /// Holds `target`'s `source` back and asks their client to mute it; the
    /// others are told by the caller.
    fn hold_back(&mut self, moderator: ParticipantId, target: ParticipantId, source: Source) {
        let Some(p) = self.participants.get_mut(&target) else {
            return;
        };
        if !p.blocked.contains(&source) {
            p.blocked.push(source);
        }
        let by = self.name_of(moderator);
        self.signal(target, ServerMessage::MuteRequested { source, by });
    }

    fn mute_all(&mut self, moderator: ParticipantId) {
        let students: Vec<ParticipantId> = self
            .members_of(moderator)
            .into_iter()
            .filter(|pid| *pid != moderator && !self.moderates(*pid))
            .collect();
        for pid in &students {
            self.hold_back(moderator, *pid, Source::Microphone);
        }
        let room = self.room_of(moderator);
        self.announce_many(&room, &students);
    }

    fn set_floor(&mut self, moderator: ParticipantId, target: ParticipantId, floor: bool) {
        let Some(p) = self.participants.get_mut(&target) else {
            return;
        };
        if p.floor == floor {
            return;
        }
        p.floor = floor;
        let by = self.name_of(moderator);
        if floor {
            // Having the floor answers a raised hand.
            let lowered = self
                .participants
                .get_mut(&target)
                .is_some_and(|p| p.hand.take().is_some());
            if let Some(p) = self.participants.get_mut(&target) {
                p.blocked.retain(|s| *s != Source::Microphone);
            }
            self.signal(
                target,
                ServerMessage::UnmuteRequested {
                    source: Source::Microphone,
                    by,
                },
            );
            if lowered {
                let room = self.room_of(target);
                self.announce_room(&room);
            }
        } else {
            self.signal(
                target,
                ServerMessage::MuteRequested {
                    source: Source::Microphone,
                    by,
                },
            );
        }
        self.announce(target);
    }

    fn promote(&mut self, target: ParticipantId, to: Promotion) {
        let Some(p) = self.participants.get_mut(&target) else {
            return;
        };
        match to {
            Promotion::CoTeacher => {
                p.role = Role::Teacher;
                p.permissions = Permissions {
                    publish: true,
                    subscribe: true,
                    publish_sources: Source::ALL.to_vec(),
                    chat: true,
                    moderate: true,
                };
            }
            Promotion::Presenter => {
                p.role = p.token_role;
                let mut perms = p.token_permissions.clone();
                perms.publish = true;
                perms.subscribe = true;
                for s in [
                    Source::Camera,
                    Source::Microphone,
                    Source::ScreenShare,
                    Source::ScreenShareAudio,
                ] {
                    if !perms.publish_sources.contains(&s) {
                        perms.publish_sources.push(s);
                    }
                }
                p.permissions = perms;
                p.floor = true;
            }
            Promotion::Participant => {
                p.role = p.token_role;
                p.permissions = p.token_permissions.clone();
                p.floor = false;
            }
        }
        let message = ServerMessage::PermissionsUpdated {
            role: p.role,
            permissions: p.permissions.clone(),
        };
        let room = p.room.clone();
        self.signal(target, message);
        self.announce(target);
        self.sync_subscriptions(target);
        self.send_lobby(&room);
    }

    fn update_room(
        &mut self,
        moderator: ParticipantId,
        locked: Option<bool>,
        waiting_room: Option<bool>,
        ask_to_speak: Option<bool>,
    ) {
        let room = self.room_of(moderator);
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let asked_before = r.ask_to_speak;
        if let Some(v) = locked {
            r.locked = v;
        }
        if let Some(v) = ask_to_speak {
            r.ask_to_speak = v;
        }
        if let Some(v) = waiting_room {
            r.waiting_room = v;
        }
        // Opening the doors lets in whoever was waiting, a share per turn
        // (`admit_through_open_doors`).
        let opened = waiting_room == Some(false) && !r.lobby.is_empty();
        let ask_changed = asked_before != r.ask_to_speak;
        info!(%room, ?locked, ?waiting_room, ?ask_to_speak, "room settings changed");
        if opened && !self.admitting.contains(&room) {
            self.admitting.push_back(room.clone());
        }
        if ask_changed {
            // Everyone's effective microphone state may have changed.
            let members = self.members_of(moderator);
            self.announce_many(&room, &members);
        }
        self.announce_room(&room);
        self.send_lobby(&room);
    }

    fn remove_by_moderator(
        &mut self,
        now: Instant,
        moderator: ParticipantId,
        target: &str,
        reason: Option<String>,
    ) -> Outcome {
        let target = self.target(moderator, target)?;
        if target == moderator {
            return Err((ErrorCode::BadRequest, "use leave to leave".into()));
        }
        let Some(p) = self.participants.get(&target) else {
            return Ok(());
        };
        // Until every token the identity could hold has expired.
        let until = now + BAN_DURATION;
        self.banned
            .insert((p.room.clone(), p.identity.clone()), until);
        let reason = reason.map(|r| r.chars().take(MAX_REASON_CHARS).collect());
        self.say_bye(target, LeaveReason::Removed, reason);
        self.remove_participant(target, LeaveReason::Removed, false);
        Ok(())
    }

    fn end_room(&mut self, moderator: ParticipantId) {
        let room = self.room_of(moderator);
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let waiting: Vec<ParticipantId> = r.lobby.drain(..).map(|w| w.participant).collect();
        for pid in waiting {
            self.say_bye(pid, LeaveReason::RoomEnded, None);
        }
        for pid in self.members_of(moderator) {
            self.say_bye(pid, LeaveReason::RoomEnded, None);
            self.remove_participant(pid, LeaveReason::RoomEnded, false);
        }
        info!(%room, "meeting ended by a moderator");
        self.ended_rooms.insert(room);
    }

    // ----- breakout groups ------------------------------------------------------

    fn breakout_start(
        &mut self,
        moderator: ParticipantId,
        groups: u32,
        assignments: Option<BTreeMap<String, u32>>,
    ) -> Outcome {
        if groups == 0 || groups > MAX_GROUPS {
            return Err((
                ErrorCode::BadRequest,
                format!("between 1 and {MAX_GROUPS} groups"),
            ));
        }
        let members = self.members_of(moderator);
        let mut placement: Vec<(ParticipantId, u32)> = Vec::new();
        match assignments {
            Some(map) => {
                for (who, group) in map {
                    if group >= groups {
                        return Err((
                            ErrorCode::BadRequest,
                            format!("group index {group} for {who:?}: there are {groups} groups"),
                        ));
                    }
                    let pid = self.target(moderator, &who)?;
                    placement.push((pid, group));
                }
            }
            None => {
                let mut students: Vec<ParticipantId> = members
                    .iter()
                    .copied()
                    .filter(|id| !self.moderates(*id))
                    .collect();
                students.shuffle(&mut rand::rng());
                placement.extend(
                    students
                        .into_iter()
                        .enumerate()
                        .map(|(i, pid)| (pid, (i as u32) % groups)),
                );
            }
        }
        let room = self.room_of(moderator);
        let infos: Vec<GroupInfo> = (1..=groups)
            .map(|n| GroupInfo {
                id: format!("G{n}"),
                name: format!("Group {n}"),
            })
            .collect();
        if let Some(r) = self.rooms.get_mut(&room) {
            r.groups = infos.clone();
        }
        for pid in &members {
            let group = placement
                .iter()
                .find(|(p, _)| p == pid)
                .map(|(_, g)| infos[*g as usize].id.clone());
            if let Some(p) = self.participants.get_mut(pid) {
                p.group = group;
            }
        }
        info!(%room, groups, "breakout groups started");
        self.regroup(&room, &members);
        Ok(())
    }

    fn breakout_move(
        &mut self,
        moderator: ParticipantId,
        target: &str,
        group: Option<String>,
    ) -> Outcome {
        let target = self.target(moderator, target)?;
        let room = self.room_of(moderator);
        if let Some(g) = &group
            && !self
                .rooms
                .get(&room)
                .is_some_and(|r| r.groups.iter().any(|i| &i.id == g))
        {
            return Err((ErrorCode::NotFound, format!("no breakout group {g:?}")));
        }
        if let Some(p) = self.participants.get_mut(&target) {
            p.group = group;
        }
        // Only the moved participant's place changed: their own
        // subscriptions, what the others get of them, and one update each.
        // `regroup` would redo everyone's and announce everyone to
        // everyone: the square of the class in messages, for one move.
        self.sync_subscriptions(target);
        for other in self.members_of(moderator) {
            if other != target {
                self.resubscribe_to(other, target);
            }
        }
        self.announce(target);
        self.announce_room(&room);
        Ok(())
    }

    fn broadcast_to_groups(&mut self, moderator: ParticipantId, text: String) -> Outcome {
        if text.trim().is_empty() || text.chars().count() > MAX_CHAT_CHARS {
            return Err((
                ErrorCode::BadRequest,
                format!("a broadcast is 1 to {MAX_CHAT_CHARS} characters"),
            ));
        }
        let message = ChatMessage {
            from: moderator.to_string(),
            from_name: self.name_of(moderator),
            text,
            to: None,
            broadcast: true,
            sent_at: self.wall_millis(self.now),
        };
        let members = self.members_of(moderator);
        self.broadcast(&members, &ServerMessage::Chat { message });
        Ok(())
    }

    fn breakout_end(&mut self, moderator: ParticipantId) {
        let room = self.room_of(moderator);
        if let Some(r) = self.rooms.get_mut(&room) {
            r.groups.clear();
        }
        let members = self.members_of(moderator);
        for pid in &members {
            if let Some(p) = self.participants.get_mut(pid) {
                p.group = None;
            }
        }
        info!(%room, "breakout groups ended");
        self.regroup(&room, &members);
    }

    /// After group changes: everyone's subscriptions, records and the room.
    fn regroup(&mut self, room: &str, members: &[ParticipantId]) {
        for pid in members {
            self.sync_subscriptions(*pid);
        }
        self.announce_many(room, members);
        self.announce_room(room);
    }

    // ----- helpers ------------------------------------------------------------

    pub(super) fn room_state(&self, room: &str) -> RoomState {
        let Some(r) = self.rooms.get(room) else {
            return RoomState::default();
        };
        let mut hands: Vec<(u64, ParticipantId)> = r
            .members
            .iter()
            .filter_map(|id| self.participants.get(id))
            .filter_map(|p| p.hand.map(|h| (h, p.id)))
            .collect();
        hands.sort();
        RoomState {
            locked: r.locked,
            waiting_room: r.waiting_room,
            ask_to_speak: r.ask_to_speak,
            hands: hands.into_iter().map(|(_, id)| id.to_string()).collect(),
            groups: r.groups.clone(),
        }
    }

    pub(super) fn announce_room(&mut self, room: &str) {
        let state = self.room_state(room);
        let members = self
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        self.broadcast(&members, &ServerMessage::RoomUpdated { room: state });
    }

    fn moderates(&self, pid: ParticipantId) -> bool {
        self.participants
            .get(&pid)
            .is_some_and(|p| p.permissions.moderate)
    }

    fn name_of(&self, pid: ParticipantId) -> String {
        self.participants
            .get(&pid)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    fn room_of(&self, pid: ParticipantId) -> String {
        self.participants
            .get(&pid)
            .map(|p| p.room.clone())
            .unwrap_or_default()
    }

    /// The participant `id` names, if they are in `actor`'s room.
    fn target(&self, actor: ParticipantId, id: &str) -> Result<ParticipantId, Failure> {
        let room = self.room_of(actor);
        self.rooms
            .get(&room)
            .and_then(|r| r.members.iter().copied().find(|m| m.to_string() == id))
            .ok_or((
                ErrorCode::NotFound,
                format!("nobody with id {id:?} is in this room"),
            ))
    }

    fn say_bye(&mut self, pid: ParticipantId, reason: LeaveReason, message: Option<String>) {
        self.signal(pid, ServerMessage::Bye { reason, message });
        self.outputs.push_back(Output::Close { participant: pid });
    }

    fn wall_millis(&self, now: Instant) -> u64 {
        let (base, millis) = self.wall_base;
        millis + now.saturating_duration_since(base).as_millis() as u64
    }
}

type Failure = (ErrorCode, String);
type Outcome = Result<(), Failure>;

/// How long a removed identity stays out: longer than any token lives.
const BAN_DURATION: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
const MAX_REASON_CHARS: usize = 500;

fn needs_moderation(msg: &ClientMessage) -> bool {
    matches!(
        msg,
        ClientMessage::MuteParticipant { .. }
            | ClientMessage::MuteAll {}
            | ClientMessage::RequestUnmute { .. }
            | ClientMessage::GiveFloor { .. }
            | ClientMessage::TakeFloor { .. }
            | ClientMessage::Promote { .. }
            | ClientMessage::UpdateRoom { .. }
            | ClientMessage::Admit { .. }
            | ClientMessage::Deny { .. }
            | ClientMessage::Remove { .. }
            | ClientMessage::EndRoom {}
            | ClientMessage::BreakoutStart { .. }
            | ClientMessage::BreakoutMove { .. }
            | ClientMessage::BreakoutBroadcast { .. }
            | ClientMessage::BreakoutEnd {}
    )
}

/// The message's `type`, as errors name it.
fn message_type(msg: &ClientMessage) -> &'static str {
    match msg {
        ClientMessage::Join { .. } => "join",
        ClientMessage::PublishOffer { .. } => "publish_offer",
        ClientMessage::SubscribeAnswer { .. } => "subscribe_answer",
        ClientMessage::Mute { .. } => "mute",
        ClientMessage::TrackSettings { .. } => "track_settings",
        ClientMessage::GetStats {} => "get_stats",
        ClientMessage::Ping {} => "ping",
        ClientMessage::Leave {} => "leave",
        ClientMessage::Chat { .. } => "chat",
        ClientMessage::RaiseHand {} => "raise_hand",
        ClientMessage::LowerHand { .. } => "lower_hand",
        ClientMessage::MuteParticipant { .. } => "mute_participant",
        ClientMessage::MuteAll {} => "mute_all",
        ClientMessage::RequestUnmute { .. } => "request_unmute",
        ClientMessage::GiveFloor { .. } => "give_floor",
        ClientMessage::TakeFloor { .. } => "take_floor",
        ClientMessage::Promote { .. } => "promote",
        ClientMessage::UpdateRoom { .. } => "update_room",
        ClientMessage::Admit { .. } => "admit",
        ClientMessage::Deny { .. } => "deny",
        ClientMessage::Remove { .. } => "remove",
        ClientMessage::EndRoom {} => "end_room",
        ClientMessage::BreakoutStart { .. } => "breakout_start",
        ClientMessage::BreakoutMove { .. } => "breakout_move",
        ClientMessage::BreakoutBroadcast { .. } => "breakout_broadcast",
        ClientMessage::BreakoutEnd {} => "breakout_end",
    }
}

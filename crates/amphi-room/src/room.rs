use amphi_protocol::GroupInfo;

use crate::ids::ParticipantId;
use crate::sfu::JoinRequest;

/// A room: who is in it, in order of arrival, who waits to get in, and its
/// classroom settings. Tracks live with the participants who publish them.
#[derive(Debug, Default)]
pub(crate) struct Room {
    pub members: Vec<ParticipantId>,
    /// People in the waiting room, oldest first. They have no connections
    /// yet: they get them when admitted.
    pub lobby: Vec<JoinRequest>,
    pub locked: bool,
    pub waiting_room: bool,
    pub ask_to_speak: bool,
    /// Breakout groups while they run.
    pub groups: Vec<GroupInfo>,
    /// Hands are numbered in order of raising.
    pub next_hand: u64,
}

use crate::ids::ParticipantId;

/// A room: who is in it, in order of arrival. Tracks live with the
/// participants who publish them.
#[derive(Debug, Default)]
pub(crate) struct Room {
    pub members: Vec<ParticipantId>,
}

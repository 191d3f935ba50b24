use std::sync::Arc;

use amphi_auth::KeySet;

use crate::media::MediaHandle;
use crate::metrics::Ops;

/// What every HTTP and WebSocket handler shares.
#[derive(Clone)]
pub struct AppState {
    pub keys: Arc<KeySet>,
    pub media: MediaHandle,
    /// The open development mode (`--dev`): the landing page may mint tokens.
    pub dev: bool,
    /// Health, draining and counters (crate::metrics).
    pub ops: Arc<Ops>,
}

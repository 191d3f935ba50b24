use std::net::SocketAddr;
use std::time::Duration;

use amphi_protocol::IceServer;

/// How an [`Sfu`][crate::Sfu] behaves. The server fills it from its own
/// configuration file.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP addresses advertised as host candidates, in order of preference.
    /// Every datagram handed to the engine must name one of them as its
    /// destination.
    pub candidates: Vec<SocketAddr>,
    /// TCP addresses advertised as passive host candidates (ICE-TCP, RFC
    /// 6544), for clients whose networks block UDP. Datagrams that came over
    /// TCP are handed in with `Protocol::Tcp` and one of these as their
    /// destination; transmits with `Protocol::Tcp` go back on the connection
    /// from their destination address.
    pub tcp_candidates: Vec<SocketAddr>,
    /// ICE servers handed to clients in `joined`.
    pub ice_servers: Vec<IceServer>,
    /// Participants per room; the next join gets `room_full`.
    pub max_participants_per_room: usize,
    /// How long a peer connection may stay ICE-disconnected before its
    /// participant is removed with `media_failed`.
    pub media_timeout: Duration,
    /// Estimate each subscriber's downlink (transport-wide congestion
    /// control) and fit its layers into it. Without it, every subscriber
    /// gets the layers its tiles ask for.
    pub bandwidth_estimation: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            ice_servers: Vec::new(),
            max_participants_per_room: 200,
            media_timeout: Duration::from_secs(15),
            bandwidth_estimation: true,
        }
    }
}

/// Counters of one engine, for metrics and tests.
#[derive(Debug, Default, Clone)]
pub struct SfuStats {
    /// Datagrams no connection would take (garbage, or from strangers).
    pub unroutable_datagrams: u64,
    /// Datagrams a connection took but could not use.
    pub rejected_datagrams: u64,
    pub datagrams_out: u64,
    pub rtp_packets_in: u64,
    pub rtp_packets_out: u64,
    pub keyframe_requests: u64,
}

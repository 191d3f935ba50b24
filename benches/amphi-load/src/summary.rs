//! The result of a run: printed for people, written as JSON for the
//! benchmark suite (`benches/run`, `benches/report`).

use amphi_client::LatencyHistogram;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    /// Largest over the whole run (not only the window).
    pub max: Option<f64>,
    pub samples: u64,
}

impl Latency {
    /// Percentiles of what `b` recorded after `a` (two snapshots of one
    /// growing histogram); `max` is `b`'s.
    pub fn between(a: &LatencyHistogram, b: &LatencyHistogram) -> Latency {
        let window = b.since(a);
        let ms = |q: f64| window.quantile_us(q).map(|us| us as f64 / 1000.0);
        Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: (b.count() > 0).then(|| b.max_us() as f64 / 1000.0),
            samples: window.count(),
        }
    }
}

/// Field names and meanings are documented in docs/benchmarks.md.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    /// Cameras were sent as three simulcast encodings (`--simulcast`).
    pub simulcast: bool,
    pub git_revision: Option<String>,
    pub url: String,
    /// Unix seconds at the end of the run.
    pub finished_at: u64,
    pub publishers: usize,
    pub subscribers: usize,
    pub participants: usize,
    pub participants_ready: usize,
    pub participants_failed: usize,
    /// Receivers that got no packet during the measurement window.
    pub subscribers_without_media: usize,
    /// Length of the measurement window.
    pub duration_s: f64,
    /// Time from the first join to everyone receiving everything.
    pub ramp_s: f64,
    /// Packets the publishers sent during the window.
    pub sent_packets: u64,
    /// Packets the subscribers received during the window (what the SFU
    /// forwarded and the network delivered).
    pub forwarded_packets: u64,
    pub forwarded_video_packets: u64,
    pub forwarded_audio_packets: u64,
    pub forwarded_bytes: u64,
    pub forwarded_packets_per_second: f64,
    /// Received / (sent × receivers per publisher): about 1 when nothing is
    /// lost (window edges make it differ by a fraction of a percent).
    pub delivery_ratio: Option<f64>,
    /// Packets still missing: sequence gaps seen by subscribers during the
    /// window, less the packets that arrived late (retransmissions after a
    /// NACK fill gaps).
    pub lost_packets: u64,
    /// lost / (distinct packets received + lost).
    pub loss_ratio: f64,
    /// Sequence gaps before any repair: what was lost on the way at first.
    pub sequence_gaps: u64,
    /// Packets at or below the highest sequence number already seen
    /// (retransmissions, reordering, duplicates).
    pub out_of_order_packets: u64,
    /// Datagrams the kernel dropped at the server's UDP socket (its receive
    /// buffer was full) during the window, from /proc/net/udp.
    pub sfu_udp_receive_drops: Option<u64>,
    /// The same at the load generator's sockets.
    pub loadgen_udp_receive_drops: u64,
    /// One-way, publisher send → subscriber receive, in milliseconds
    /// (both ends on this machine's clock).
    pub latency_ms: Latency,
    /// One-way, publisher send → arrival in the subscriber's socket (the
    /// kernel's receive stamp): what the server adds on a zero-latency
    /// network, without the time a datagram then waits for the load
    /// generator. This is the latency the target is about.
    pub arrival_latency_ms: Latency,
    pub sfu_pid: Option<u32>,
    pub sfu_cpu_seconds: Option<f64>,
    /// Fraction of one core the server used during the window.
    pub sfu_cpu_utilisation: Option<f64>,
    pub sfu_cpu_us_per_forwarded_packet: Option<f64>,
    pub forwarded_packets_per_cpu_second: Option<f64>,
    /// forwarded_packets_per_cpu_second / 156 (one 720p stream at
    /// 1.5 Mbit/s), extrapolated linearly to a full core.
    pub streams_per_core: Option<f64>,
    /// `--floor-core`: CPU time per packet for the least forwarding costs
    /// (SRTP-encrypting a 1,200-byte packet and sending it), on the
    /// server's core just before the run (benches/amphi-load/src/floor.rs).
    pub floor_us_per_packet: Option<f64>,
    /// The physical limit at that moment: 1,000,000 / floor / 156.
    pub floor_streams_per_core: Option<f64>,
    /// floor / sfu_cpu_us_per_forwarded_packet: the share of the physical
    /// limit the server reached. Unlike µs per packet it does not move with
    /// the machine's speed.
    pub share_of_floor: Option<f64>,
    /// Peak resident memory of the server during the run.
    pub sfu_rss_bytes: Option<u64>,
    pub sfu_rss_idle_bytes: Option<u64>,
    /// (peak − idle) / subscribers.
    pub bytes_per_subscriber: Option<f64>,
    pub loadgen_cpu_seconds: Option<f64>,
    pub loadgen_cpu_utilisation: Option<f64>,
    /// The load generator used over 90 % of a core per thread: its own
    /// delays are then in the latency, and the load may be lower than meant.
    pub loadgen_saturated: bool,
    pub loadgen_threads: usize,
    pub udp_send_drops: u64,
    pub keyframe_requests: u64,
}

impl Summary {
    pub fn print(&self) {
        let opt = |v: Option<f64>, unit: &str| match v {
            Some(v) => format!("{v:.3}{unit}"),
            None => "n/a".into(),
        };
        let simulcast = if self.simulcast { ", simulcast" } else { "" };
        println!("== amphi-load: {}{simulcast} ==", self.scenario);
        println!(
            "participants   {} ({} publishing, {} receiving), ready {}, failed {}, ramp {:.1} s",
            self.participants,
            self.publishers,
            self.subscribers,
            self.participants_ready,
            self.participants_failed,
            self.ramp_s
        );
        println!(
            "window         {:.1} s: sent {} packets, received {} ({:.0}/s, {:.1} Mbit/s)",
            self.duration_s,
            self.sent_packets,
            self.forwarded_packets,
            self.forwarded_packets_per_second,
            self.forwarded_bytes as f64 * 8.0 / self.duration_s.max(1e-9) / 1e6
        );
        println!(
            "loss           {} lost ({:.5} %), {} out of order, delivery {}, {} receivers without media",
            self.lost_packets,
            self.loss_ratio * 100.0,
            self.out_of_order_packets,
            opt(self.delivery_ratio, ""),
            self.subscribers_without_media
        );
        println!(
            "               {} sequence gaps at first; kernel receive-buffer drops: server {}, load generator {}",
            self.sequence_gaps,
            self.sfu_udp_receive_drops
                .map_or_else(|| "n/a".to_string(), |d| d.to_string()),
            self.loadgen_udp_receive_drops
        );
        for (label, l) in [
            ("latency     ", &self.latency_ms),
            ("  at socket ", &self.arrival_latency_ms),
        ] {
            println!(
                "{label}   p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)",
                opt(l.p50, " ms"),
                opt(l.p90, " ms"),
                opt(l.p99, " ms"),
                opt(l.p999, " ms"),
                opt(l.max, " ms"),
                l.samples
            );
        }
        if self.sfu_pid.is_some() {
            println!(
                "server         cpu {} ({} of a core), {} per packet, {} packets/cpu-s = {} streams/core",
                opt(self.sfu_cpu_seconds, " s"),
                opt(self.sfu_cpu_utilisation.map(|u| u * 100.0), " %"),
                opt(self.sfu_cpu_us_per_forwarded_packet, " µs"),
                opt(self.forwarded_packets_per_cpu_second, ""),
                opt(self.streams_per_core, "")
            );
            if let Some(floor) = self.floor_us_per_packet {
                println!(
                    "floor          {floor:.3} µs per packet encrypted and sent = {} streams/core; the server reached {} of it",
                    opt(self.floor_streams_per_core, ""),
                    opt(self.share_of_floor.map(|s| s * 100.0), " %")
                );
            }
            println!(
                "server memory  peak {} MiB (idle {} MiB), {} KiB per subscriber",
                opt(self.sfu_rss_bytes.map(|b| b as f64 / 1048576.0), ""),
                opt(self.sfu_rss_idle_bytes.map(|b| b as f64 / 1048576.0), ""),
                opt(self.bytes_per_subscriber.map(|b| b / 1024.0), "")
            );
        }
        println!(
            "load generator cpu {} ({}{}), udp send drops {}",
            opt(self.loadgen_cpu_seconds, " s"),
            opt(self.loadgen_cpu_utilisation.map(|u| u * 100.0), " %"),
            if self.loadgen_saturated {
                ", SATURATED: results understate the server"
            } else {
                ""
            },
            self.udp_send_drops
        );
    }
}

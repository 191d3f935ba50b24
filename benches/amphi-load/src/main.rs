//! `amphi-load`: loads a running Amphi server with many real WebRTC
//! participants and measures what they receive.
//!
//! Each participant is an [`amphi_client::Participant`]: two str0m `Rtc`s
//! in RTP mode (ICE, DTLS, SRTP, RTCP receiver reports, NACK and TWCC
//! feedback as a browser sends them), joined through the public signalling
//! protocol (`/rtc` WebSocket) with a token this tool mints itself from the
//! server's key. Many participants share one thread (`mio`); all of them
//! share one DTLS certificate (generating one per connection would cost
//! more than the rest of the setup).
//!
//! **One UDP socket per peer connection is necessary**: the server listens
//! on a single UDP port and tells connections apart by the client's address
//! and port, so each participant binds two sockets (publisher and
//! subscriber). Ask for enough file descriptors (`ulimit -n`, three per
//! participant with the WebSocket).
//!
//! Publishers send VP8 at 30 fps shaped like 720p at ~1.5 Mbit/s (frames of
//! 5 × 1,200-byte packets, a 30-packet keyframe every 3 s: ~158 packets/s)
//! and Opus at 50 packets/s. Every payload ends with its send time, so
//! subscribers measure one-way latency (both ends must share a clock: run
//! it on the server's machine, or with synchronised clocks): once up to the
//! moment this process handles the packet, once up to its arrival in the
//! socket (the kernel's receive stamp, which is also the arrival str0m puts
//! in the TWCC feedback, see `arrival.rs`).
//!
//! Time line: participants join in batches (`--ramp-batch` every
//! `--ramp-interval`), then once everyone receives everything (or
//! `--ready-timeout`) a `--warmup`, then the measurement window
//! (`--duration`), then everyone leaves. Only the window is counted.

mod arrival;
mod floor;
mod peer;
mod procfs;
mod scenario;
mod summary;
mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amphi_auth::{Claims, KeySet};
use amphi_protocol::Role;
use anyhow::{Context, bail};
use clap::Parser;
use mio::Waker;

use crate::procfs::Target;
use crate::scenario::{PACKETS_PER_STREAM, Scenario};
use crate::summary::{Latency, Summary};
use crate::worker::{Command, Plan, Progress, Snapshot, Worker, WorkerConfig};

#[derive(Parser, Debug)]
#[command(
    name = "amphi-load",
    version,
    about = "Load an Amphi server with real WebRTC participants and measure loss, latency and server cost",
    after_help = "Scenarios: lecture-N (1 teacher with audio+video -> N listeners), \
meeting-N (N participants, each publishing audio+video and receiving all others), \
audio-N (10 audio-only speakers -> N listeners).\n\n\
Example: amphi-load --dev --url http://127.0.0.1:7880 --scenario lecture-200 --duration 30s"
)]
struct Cli {
    /// The server: http://host:port, as `amphi serve` prints it.
    #[arg(long, default_value = "http://127.0.0.1:7880")]
    url: String,
    /// Sign tokens with the public development key (a server run with --dev).
    #[arg(long, conflicts_with_all = ["key_id", "secret"])]
    dev: bool,
    /// Id (`kid`) of one of the server's signing keys (auth.keys[].id).
    #[arg(long, requires = "secret")]
    key_id: Option<String>,
    /// That key's secret. Prefer the environment variable: arguments show in `ps`.
    #[arg(
        long,
        env = "AMPHI_LOAD_SECRET",
        hide_env_values = true,
        requires = "key_id"
    )]
    secret: Option<String>,
    /// lecture-N, meeting-N or audio-N.
    #[arg(long, default_value = "lecture-20", value_parser = Scenario::parse)]
    scenario: Scenario,
    /// Publish cameras as three simulcast encodings (q/h/f), as the web
    /// client does, instead of one 720p stream. Subscribers say nothing of
    /// their tiles, so the server sends each the top layer its downlink
    /// estimate allows.
    #[arg(long)]
    simulcast: bool,
    /// Room name (default: a fresh one per run).
    #[arg(long)]
    room: Option<String>,
    /// Length of the measurement window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between everyone being ready and the window.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Participants that join together.
    #[arg(long, default_value_t = 25)]
    ramp_batch: usize,
    /// Time between two batches.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    ramp_interval: Duration,
    /// Start the window anyway when not everyone receives everything by then.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    /// Worker threads (participants are spread round-robin).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Local IP for the UDP sockets (default: the one that reaches the server).
    #[arg(long)]
    bind_ip: Option<IpAddr>,
    /// Measure this server process's CPU and memory (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Recorded in the JSON as `git_revision`.
    #[arg(long)]
    git_revision: Option<String>,
    /// Before the run, measure the floor on this core (the server's, while
    /// it is still idle): the CPU time encrypting and sending one 1,200-byte
    /// packet takes there now. The result then also says how close to that
    /// the server came. For a server on this machine only.
    #[arg(long)]
    floor_core: Option<usize>,
    /// Progress line interval (0 for none).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    progress: Duration,
}

struct WorkerHandle {
    tx: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    progress: Arc<Progress>,
    thread: JoinHandle<std::io::Result<()>>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AMPHI_LOAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,str0m=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let summary = run(&cli)?;
    summary.print();
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if summary.participants_failed > 0 {
        bail!("{} participants failed", summary.participants_failed);
    }
    Ok(())
}

fn keys(cli: &Cli) -> anyhow::Result<KeySet> {
    match (&cli.key_id, &cli.secret) {
        _ if cli.dev => Ok(KeySet::dev()),
        (Some(kid), Some(secret)) => {
            let mut keys = KeySet::new(Duration::from_secs(24 * 3600));
            keys.insert(kid.clone(), secret.as_bytes().to_vec())
                .context("--key-id/--secret")?;
            Ok(keys)
        }
        _ => bail!("say how to sign tokens: --dev, or --key-id with --secret"),
    }
}

fn run(cli: &Cli) -> anyhow::Result<Summary> {
    let sc = &Scenario {
        simulcast: cli.simulcast && cli.scenario.video,
        ..cli.scenario.clone()
    };
    let keys = keys(cli)?;
    let run_id = amphi_auth::now_unix();
    let room = cli
        .room
        .clone()
        .unwrap_or_else(|| format!("load-{run_id}-{}", std::process::id()));
    let threads = cli.threads.max(1);
    let server = cli.server_pid.map(Target::Pid);
    if let Some(Target::Pid(pid)) = server
        && Target::Pid(pid).cpu_seconds().is_none()
    {
        bail!("--server-pid {pid}: no such process (or /proc is not readable)");
    }

    // One certificate for every connection: generating an ECDSA key per
    // `Rtc` dominates setup otherwise. The server cannot tell.
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .context("the crypto provider cannot generate a DTLS certificate")?;

    let start = Instant::now();
    let mut plans: Vec<Vec<Plan>> = (0..threads).map(|_| Vec::new()).collect();
    let batch = cli.ramp_batch.max(1);
    for idx in 0..sc.participants() {
        let publishes = idx < sc.publishers;
        let (identity, role) = if publishes {
            (format!("load-speaker-{idx}"), Role::Teacher)
        } else {
            (format!("load-listener-{idx}"), Role::Guest)
        };
        let claims = Claims::new(
            &room,
            &identity,
            Duration::from_secs(2 * 3600),
            amphi_auth::now_unix(),
        )
        .with_name(identity.clone())
        .with_role(role);
        let token = keys.mint(None, &claims).context("minting a token")?;
        let mut opts = sc.options(idx);
        opts.dtls_cert = Some(cert.clone());
        opts.join_timeout = Duration::from_secs(30);
        plans[idx % threads].push(Plan {
            index: idx,
            at: start + cli.ramp_interval * (idx / batch) as u32,
            token,
            opts,
            expected_streams: sc.expected_streams(idx),
        });
    }

    // Before anyone joins: the server's core is idle now.
    let floor = match cli.floor_core {
        Some(core) => {
            let f = floor::measure(Some(core), FLOOR_DURATION)
                .with_context(|| format!("measuring the floor on core {core}"))?;
            if f.delivered < 0.99 {
                eprintln!(
                    "amphi-load: the floor's receiver got {:.1} % of its packets; the floor reads low",
                    f.delivered * 100.0
                );
            }
            Some(f)
        }
        None => None,
    };

    let rss_idle = server.and_then(|s| s.rss_bytes());
    let mut rss_peak = rss_idle;
    let mut workers = Vec::new();
    for (i, plans) in plans.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let (worker, waker) = Worker::new(
            WorkerConfig {
                url: cli.url.clone(),
                bind_ip: cli.bind_ip,
                connect_timeout: Duration::from_secs(10),
                plans,
            },
            rx,
            progress.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name(format!("amphi-load-{i}"))
            .spawn(move || worker.run())?;
        workers.push(WorkerHandle {
            tx,
            waker,
            progress,
            thread,
        });
    }

    let total = sc.participants() as u64;
    let mut reporter = Reporter::new(cli.progress, start);
    // Ramp: until everyone receives everything.
    let ready_deadline =
        start + cli.ramp_interval * (sc.participants() / batch) as u32 + cli.ready_timeout;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        sample_peak(server, &mut rss_peak);
        let ready = sum(&workers, |p| p.ready.load(Ordering::Relaxed));
        let failed = sum(&workers, |p| p.failed.load(Ordering::Relaxed));
        reporter.tick(&workers, "ramp", total);
        if ready + failed >= total {
            break;
        }
        if Instant::now() >= ready_deadline {
            eprintln!(
                "amphi-load: only {ready} of {total} participants ready after the ramp; measuring anyway"
            );
            break;
        }
        if workers.iter().any(|w| w.thread.is_finished()) {
            break;
        }
    }
    let ramp_s = start.elapsed().as_secs_f64();
    wait(
        cli.warmup,
        &workers,
        &mut reporter,
        "warmup",
        total,
        server,
        &mut rss_peak,
    );

    let a = snapshot(&workers)?;
    let drops_a = procfs::udp_drops_by_port();
    let t_a = Instant::now();
    let cpu_a = server.and_then(|s| s.cpu_seconds());
    let self_a = Target::Myself.cpu_seconds();
    wait(
        cli.duration,
        &workers,
        &mut reporter,
        "measure",
        total,
        server,
        &mut rss_peak,
    );
    let b = snapshot(&workers)?;
    let drops_b = procfs::udp_drops_by_port();
    let window = t_a.elapsed().as_secs_f64();
    let cpu_b = server.and_then(|s| s.cpu_seconds());
    let self_b = Target::Myself.cpu_seconds();
    sample_peak(server, &mut rss_peak);

    for w in &workers {
        let _ = w.tx.send(Command::Stop);
        let _ = w.waker.wake();
    }
    for w in workers {
        match w.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("amphi-load: a worker failed: {e}"),
            Err(_) => eprintln!("amphi-load: a worker panicked"),
        }
    }

    let rx = b.rx_packets.saturating_sub(a.rx_packets);
    let gaps = b.gaps.saturating_sub(a.gaps);
    let backwards = b.backwards.saturating_sub(a.backwards);
    // A packet repaired by a retransmission (NACK) arrives late: it left a
    // gap and then came in "backwards". What stays missing is the rest.
    let lost = gaps.saturating_sub(backwards);
    let unique = rx.saturating_sub(backwards);
    let port_drops = |ports: &mut dyn Iterator<Item = u16>| -> u64 {
        ports
            .map(|p| {
                let at = |m: &std::collections::HashMap<u16, u64>| m.get(&p).copied().unwrap_or(0);
                at(&drops_b).saturating_sub(at(&drops_a))
            })
            .sum()
    };
    let sfu_drops = b.server_port.map(|p| port_drops(&mut std::iter::once(p)));
    let load_drops = port_drops(&mut b.local_ports.iter().copied());
    let sent = b.tx_packets.saturating_sub(a.tx_packets);
    let sfu_cpu = match (cpu_a, cpu_b) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let per_cpu = sfu_cpu.filter(|c| *c > 0.0).map(|c| rx as f64 / c);
    let us_per_packet = sfu_cpu.filter(|_| rx > 0).map(|c| c * 1e6 / rx as f64);
    let self_cpu = match (self_a, self_b) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let self_util = self_cpu.map(|c| c / window);
    let before: std::collections::HashMap<usize, u64> = a.per_receiver.iter().copied().collect();
    let without_media = b
        .per_receiver
        .iter()
        .filter(|(i, n)| n.saturating_sub(before.get(i).copied().unwrap_or(0)) == 0)
        .count();
    // Every participant receives every other's tracks.
    let fanout = (sc.participants() - 1) as f64;
    let subscribers = sc.subscribers();
    Ok(Summary {
        scenario: sc.name.clone(),
        simulcast: sc.simulcast,
        git_revision: cli.git_revision.clone(),
        url: cli.url.clone(),
        finished_at: amphi_auth::now_unix(),
        publishers: sc.publishers,
        subscribers,
        participants: sc.participants(),
        participants_ready: a.ready,
        participants_failed: b.failed + b.connect_errors,
        subscribers_without_media: without_media,
        duration_s: window,
        ramp_s,
        sent_packets: sent,
        forwarded_packets: rx,
        forwarded_video_packets: b.rx_video.saturating_sub(a.rx_video),
        forwarded_audio_packets: b.rx_audio.saturating_sub(a.rx_audio),
        forwarded_bytes: b.rx_bytes.saturating_sub(a.rx_bytes),
        forwarded_packets_per_second: rx as f64 / window,
        // With simulcast a subscriber receives one of the three layers
        // sent: received over sent says nothing then.
        delivery_ratio: (sent > 0 && !sc.simulcast).then(|| rx as f64 / (sent as f64 * fanout)),
        lost_packets: lost,
        loss_ratio: if unique + lost > 0 {
            lost as f64 / (unique + lost) as f64
        } else {
            0.0
        },
        sequence_gaps: gaps,
        out_of_order_packets: backwards,
        sfu_udp_receive_drops: sfu_drops,
        loadgen_udp_receive_drops: load_drops,
        latency_ms: Latency::between(&a.latency, &b.latency),
        arrival_latency_ms: Latency::between(&a.arrival_latency, &b.arrival_latency),
        sfu_pid: cli.server_pid,
        sfu_cpu_seconds: sfu_cpu,
        sfu_cpu_utilisation: sfu_cpu.map(|c| c / window),
        sfu_cpu_us_per_forwarded_packet: us_per_packet,
        forwarded_packets_per_cpu_second: per_cpu,
        streams_per_core: per_cpu.map(|p| p / PACKETS_PER_STREAM),
        floor_us_per_packet: floor.map(|f| f.us_per_packet),
        floor_streams_per_core: floor
            .filter(|f| f.us_per_packet > 0.0)
            .map(|f| 1e6 / f.us_per_packet / PACKETS_PER_STREAM),
        share_of_floor: match (floor, us_per_packet) {
            (Some(f), Some(us)) if us > 0.0 => Some(f.us_per_packet / us),
            _ => None,
        },
        sfu_rss_bytes: rss_peak,
        sfu_rss_idle_bytes: rss_idle,
        bytes_per_subscriber: match (rss_peak, rss_idle) {
            (Some(p), Some(i)) if subscribers > 0 => {
                Some(p.saturating_sub(i) as f64 / subscribers as f64)
            }
            _ => None,
        },
        loadgen_cpu_seconds: self_cpu,
        loadgen_cpu_utilisation: self_util,
        loadgen_saturated: self_util.is_some_and(|u| u > 0.9 * threads as f64),
        loadgen_threads: threads,
        udp_send_drops: b.udp_send_drops,
        keyframe_requests: b.keyframe_requests.saturating_sub(a.keyframe_requests),
    })
}

/// Long enough for a steady figure, short next to a run.
const FLOOR_DURATION: Duration = Duration::from_secs(2);

fn sum(workers: &[WorkerHandle], f: impl Fn(&Progress) -> u64) -> u64 {
    workers.iter().map(|w| f(&w.progress)).sum()
}

fn sample_peak(server: Option<Target>, peak: &mut Option<u64>) {
    if let Some(rss) = server.and_then(|s| s.rss_bytes()) {
        *peak = Some(peak.map_or(rss, |p| p.max(rss)));
    }
}

fn snapshot(workers: &[WorkerHandle]) -> anyhow::Result<Snapshot> {
    let mut total = Snapshot::default();
    let mut replies = Vec::new();
    for w in workers {
        let (tx, rx) = mpsc::channel();
        w.tx.send(Command::Snapshot(tx))
            .context("a worker stopped early")?;
        let _ = w.waker.wake();
        replies.push(rx);
    }
    for rx in replies {
        let s = rx
            .recv_timeout(Duration::from_secs(10))
            .context("a worker did not answer")?;
        total.add(&s);
    }
    Ok(total)
}

#[allow(clippy::too_many_arguments)]
fn wait(
    d: Duration,
    workers: &[WorkerHandle],
    reporter: &mut Reporter,
    phase: &str,
    total: u64,
    server: Option<Target>,
    rss_peak: &mut Option<u64>,
) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
        sample_peak(server, rss_peak);
        reporter.tick(workers, phase, total);
    }
}

/// Prints a progress line every `every`.
struct Reporter {
    every: Duration,
    start: Instant,
    last: Instant,
    last_rx: u64,
    last_tx: u64,
}

impl Reporter {
    fn new(every: Duration, start: Instant) -> Self {
        Reporter {
            every,
            start,
            last: start,
            last_rx: 0,
            last_tx: 0,
        }
    }

    fn tick(&mut self, workers: &[WorkerHandle], phase: &str, total: u64) {
        let now = Instant::now();
        if self.every.is_zero() || now < self.last + self.every {
            return;
        }
        let dt = (now - self.last).as_secs_f64();
        let rx = sum(workers, |p| p.rx_packets.load(Ordering::Relaxed));
        let tx = sum(workers, |p| p.tx_packets.load(Ordering::Relaxed));
        eprintln!(
            "[{:6.1}s] {phase:7} started {}/{total} joined {} ready {} failed {} | rx {:.0} pkt/s tx {:.0} pkt/s | gaps {}",
            (now - self.start).as_secs_f64(),
            sum(workers, |p| p.started.load(Ordering::Relaxed)),
            sum(workers, |p| p.joined.load(Ordering::Relaxed)),
            sum(workers, |p| p.ready.load(Ordering::Relaxed)),
            sum(workers, |p| p.failed.load(Ordering::Relaxed)),
            rx.saturating_sub(self.last_rx) as f64 / dt,
            tx.saturating_sub(self.last_tx) as f64 / dt,
            sum(workers, |p| p.gaps.load(Ordering::Relaxed)),
        );
        self.last = now;
        self.last_rx = rx;
        self.last_tx = tx;
    }
}

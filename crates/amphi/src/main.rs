//! `amphi`: the server binary. `amphi serve` runs everything (web client,
//! signalling, media); `amphi token` mints a room token; `amphi config
//! check` validates a configuration.

mod config;
mod config_env;
mod logging;
mod media;
mod metrics;
mod signalling;
mod state;
mod tcp;
mod tls;
mod turn;
mod udp_batch;
mod web;
mod webhooks;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amphi_auth::{Claims, KeySet};
use amphi_protocol::Role;
use amphi_room::SfuConfig;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, ConfigError, DEV_LISTEN};
use crate::metrics::{MediaObserver, Ops};
use crate::state::AppState;

#[derive(Parser)]
#[command(
    name = "amphi",
    version,
    about = "Self-hosted video conferencing for teaching"
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Run the server: web client, signalling and media.
    Serve(ServeArgs),
    /// Print a room token (JWT) on standard output.
    Token(TokenArgs),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate FILE, with the AMPHI_* environment variables applied as
    /// `amphi serve` would: prints each problem with its key and exits with
    /// status 1, or prints "OK".
    Check {
        file: PathBuf,
        /// Check as for `amphi serve --dev` (no signing key needed).
        #[arg(long)]
        dev: bool,
    },
    /// List every key with its default and its environment variable.
    Keys,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML). See deploy/amphi.example.toml.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Local trial mode: a fixed, public development key, HTTP on 127.0.0.1
    /// only, and an open landing page where anyone can create a room.
    #[arg(long)]
    dev: bool,
    /// HTTP address (web client, signalling, API). Overrides http.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// UDP port for all media. 0 picks a free one. Overrides media.udp_port.
    #[arg(long)]
    udp_port: Option<u16>,
    /// TCP port for ICE-TCP. 0 picks a free one. Overrides media.tcp_port.
    #[arg(long)]
    tcp_port: Option<u16>,
    /// Address advertised to clients for media (repeatable). Overrides
    /// media.public_ips.
    #[arg(long)]
    public_ip: Vec<IpAddr>,
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long)]
    room: String,
    /// Stable identifier of the person (the token's `sub`).
    #[arg(long)]
    identity: String,
    /// Display name shown to others.
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// Lifetime, e.g. 2h, 90m, 30s.
    #[arg(long, default_value = "2h")]
    ttl: String,
    /// Sign with the development key (for `amphi serve --dev`).
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Sign with a key from this configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Which key of the configuration file (its id); default: the first.
    #[arg(long)]
    kid: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        CliCommand::Serve(args) => serve(args),
        CliCommand::Token(args) => token(args),
        CliCommand::Config(ConfigCommand::Check { file, dev }) => config_check(&file, dev),
        CliCommand::Config(ConfigCommand::Keys) => {
            config_keys();
            Ok(())
        }
    }
}

fn config_check(file: &Path, dev: bool) -> anyhow::Result<()> {
    match Config::load_checked(Some(file), std::env::vars(), dev) {
        Ok(_) => {
            println!("{}: OK", file.display());
            Ok(())
        }
        Err(e) => {
            // One line per problem, each naming its key.
            eprintln!("{e}");
            if let ConfigError::Invalid { issues, .. } = &e {
                eprintln!(
                    "{} problem{} found",
                    issues.len(),
                    if issues.len() == 1 { "" } else { "s" }
                );
            }
            std::process::exit(1);
        }
    }
}

fn config_keys() {
    for (path, _, default) in config_env::keys() {
        let default = default.map_or_else(|| "(unset)".to_owned(), |v| v.to_string());
        println!("{path} = {default}    # {}", config_env::var_name(&path));
    }
    for (path, fields) in config_env::TABLE_ARRAYS {
        for f in *fields {
            let var = config_env::var_name(&format!("{path}.N.{f}"));
            println!("{path}[N].{f}    # {var}");
        }
    }
}

/// The file's text, or nothing when there is no file.
fn read_config(path: Option<&Path>, env: bool) -> anyhow::Result<Config> {
    let shown = path.unwrap_or(Path::new("(no file)"));
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_owned(),
            source,
        })?,
        None => String::new(),
    };
    let vars: Vec<(String, String)> = if env {
        std::env::vars().collect()
    } else {
        Vec::new()
    };
    Ok(Config::parse_with_env(&text, shown, vars)?)
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let keys = match (&args.config, args.dev) {
        (Some(path), _) => read_config(Some(path), true)?.key_set()?,
        (None, true) => KeySet::dev(),
        (None, false) => bail!("say which key signs the token: --dev or --config FILE"),
    };
    let ttl = amphi_auth::parse_ttl(&args.ttl).context("--ttl")?;
    let mut claims = Claims::new(&args.room, &args.identity, ttl, amphi_auth::now_unix());
    claims.name = args.name;
    claims.role = args.role;
    let jwt = keys.mint(args.kid.as_deref(), &claims)?;
    println!("{jwt}");
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = read_config(args.config.as_deref(), true)?;
    logging::init(&config.log);
    let keys = if args.dev {
        let listen = args.listen.unwrap_or(DEV_LISTEN);
        if !listen.ip().is_loopback() {
            bail!(
                "--dev uses a public development key and must stay on this machine: \
                 it refuses to listen on {listen}. Use a loopback address (127.0.0.1), \
                 or run without --dev with keys in a config file."
            );
        }
        config.http.listen = listen;
        if config.media.public_ips.is_empty() && config.media.bind_ip.is_unspecified() {
            config.media.bind_ip = listen.ip();
        }
        KeySet::dev()
    } else {
        if let Some(listen) = args.listen {
            config.http.listen = listen;
        }
        // Checked with every other key below; a placeholder until then.
        KeySet::dev()
    };
    if let Some(port) = args.udp_port {
        config.media.udp_port = port;
    }
    if let Some(port) = args.tcp_port {
        config.media.tcp_port = Some(port);
    }
    if !args.public_ip.is_empty() {
        config.media.public_ips = args.public_ip.clone();
    }
    // The same checks as `amphi config check`, after the command line's
    // overrides: the server refuses to start on any of them.
    let issues = config.issues(args.dev);
    if !issues.is_empty() {
        let file = args.config.as_deref().unwrap_or(Path::new("(no file)"));
        return Err(ConfigError::Invalid {
            path: file.to_owned(),
            issues,
        }
        .into());
    }
    let keys = if args.dev { keys } else { config.key_set()? };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, keys, args.dev))
}

async fn run(config: Config, keys: KeySet, dev: bool) -> anyhow::Result<()> {
    let ops = Arc::new(Ops::default());
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let certs = if config.http.tls.enabled() {
        Some(tls::CertStore::load(
            &config.http.tls.cert,
            &config.http.tls.key,
        )?)
    } else {
        None
    };
    let metrics_listener = match config.metrics.addr()? {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let (events, webhook_task) = match webhooks::start(&config.webhooks, ops.clone())? {
        Some((tx, task)) => (Some(tx), Some(task)),
        None => (None, None),
    };

    let sfu_config = SfuConfig {
        max_participants_per_room: config.rooms.max_participants,
        ..SfuConfig::default()
    };
    let udp_bind = SocketAddr::new(config.media.bind_ip, config.media.udp_port);
    let observer = MediaObserver::new(ops.clone(), events, config.log.hash_identities);
    let (media, media_thread) = media::start(
        udp_bind,
        config.tcp_bind(),
        sfu_config,
        |bound| Ok(config.candidate_addrs(bound)?),
        observer,
    )?;
    if config.turn.enabled {
        let sfu = turn::SfuTarget {
            advertised: config.candidate_addrs(media.udp_addr)?,
            bound: media.udp_addr,
        };
        let acceptor = match &certs {
            Some(c) => Some(c.acceptor()?),
            None => None,
        };
        let public_ip = config.media.public_ips.first().copied();
        let turn = turn::start(
            &config.turn,
            config.media.bind_ip,
            public_ip,
            sfu,
            acceptor,
            ops.clone(),
        )
        .await?;
        let minter = turn.minter.clone();
        media.set_ice_servers(Arc::new(move |participant| minter.ice_servers(participant)));
    }

    let state = AppState {
        keys: Arc::new(keys),
        media: media.clone(),
        dev,
        ops: ops.clone(),
    };
    let scheme = if certs.is_some() { "https" } else { "http" };
    // The first line on stdout is the contract for scripts and tests.
    println!("Amphi listening on {scheme}://{http_addr}/");
    std::io::stdout().flush()?;
    info!(http = %http_addr, udp = %media.udp_addr, tcp = ?media.tcp_addr, tls = certs.is_some(), dev, "amphi started");
    if dev {
        info!("development mode: open {scheme}://{http_addr}/ in a browser");
    }

    // `stop` turns true when the HTTP listeners should close: after
    // draining, or at once on a second signal.
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(l) = metrics_listener {
        info!(metrics = %l.local_addr()?, "metrics listening");
        let stop = stopped(stop_rx.clone());
        let router = metrics::router(ops.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).with_graceful_shutdown(stop).await {
                warn!("metrics listener failed: {e}");
            }
        });
    }
    tokio::spawn(signals(
        ops.clone(),
        media.clone(),
        certs.clone(),
        config.server.drain_timeout,
        stop_tx,
    ));

    let router = web::router(state);
    match &certs {
        Some(certs) => tls::serve(listener, certs.acceptor()?, router, stopped(stop_rx)).await,
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped(stop_rx))
                .await?
        }
    }
    media.shutdown();
    // The media thread ends within one loop turn; joined off the runtime.
    let _ = tokio::task::spawn_blocking(move || media_thread.join()).await;
    if let Some(task) = webhook_task {
        // The media thread's end closed the event channel: the dispatcher
        // delivers what is queued (the rooms' ends) and stops.
        if tokio::time::timeout(WEBHOOK_FLUSH, task).await.is_err() {
            warn!("webhooks: undelivered events dropped at exit");
        }
    }
    info!("amphi stopped");
    Ok(())
}

/// How long the exit waits for the last webhooks.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = rx.wait_for(|s| *s).await;
}

/// SIGHUP reloads the TLS certificate. The first SIGTERM (or Ctrl-C)
/// drains: no new rooms, clients are told, `/readyz` answers 503, and the
/// server stops once every room has ended or `drain_timeout` has passed. A
/// second one stops at once.
async fn signals(
    ops: Arc<Ops>,
    media: media::MediaHandle,
    certs: Option<Arc<tls::CertStore>>,
    drain_timeout: Duration,
    stop: watch::Sender<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("cannot install signal handlers; stop with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
        return;
    };
    let reload = |certs: &Option<Arc<tls::CertStore>>| match certs {
        Some(c) => match c.reload() {
            Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => warn!("SIGHUP: TLS certificate not reloaded, the old one stays: {e}"),
        },
        None => info!("SIGHUP: nothing to reload (no [http.tls])"),
    };
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&certs),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    info!(timeout = ?drain_timeout, "draining: no new rooms; stopping when every room has ended");
    ops.start_draining();
    media.drain();
    let deadline = tokio::time::Instant::now() + drain_timeout;
    let mut check = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(200),
        Duration::from_millis(200),
    );
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&certs),
            _ = term.recv() => { info!("second signal: stopping now"); break; }
            _ = tokio::signal::ctrl_c() => { info!("second signal: stopping now"); break; }
            _ = tokio::time::sleep_until(deadline) => {
                info!("drain timeout: ending the remaining rooms");
                break;
            }
            _ = check.tick() => {
                // The snapshot is at most a second old, and the media thread
                // published a fresh one when the drain began.
                if ops.snapshot().rooms == 0 {
                    info!("every room has ended");
                    break;
                }
            }
        }
    }
    let _ = stop.send(true);
}

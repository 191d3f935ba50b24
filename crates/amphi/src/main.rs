//! `amphi`: the server binary. `amphi serve` runs everything (web client,
//! signalling, media); `amphi token` mints a room token.

mod config;
mod media;
mod signalling;
mod state;
mod web;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use amphi_auth::{Claims, KeySet};
use amphi_protocol::Role;
use amphi_room::SfuConfig;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, DEV_LISTEN};
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
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("AMPHI_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,str0m=warn,is=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let keys = match (&args.config, args.dev) {
        (Some(path), _) => Config::load(path)?.key_set()?,
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
    init_logging();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
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
        config.key_set()?
    };
    if let Some(port) = args.udp_port {
        config.media.udp_port = port;
    }
    if !args.public_ip.is_empty() {
        config.media.public_ips = args.public_ip.clone();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config, keys, args.dev))
}

async fn run(config: Config, keys: KeySet, dev: bool) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;

    let sfu_config = SfuConfig {
        max_participants_per_room: config.rooms.max_participants,
        ..SfuConfig::default()
    };
    let udp_bind = SocketAddr::new(config.media.bind_ip, config.media.udp_port);
    let (media, media_thread) = media::start(udp_bind, sfu_config, |bound| {
        Ok(config.candidate_addrs(bound)?)
    })?;

    let state = AppState {
        keys: Arc::new(keys),
        media: media.clone(),
        dev,
    };
    // The first line on stdout is the contract for scripts and tests.
    println!("Amphi listening on http://{http_addr}/");
    std::io::stdout().flush()?;
    info!(http = %http_addr, udp = %media.udp_addr, dev, "amphi started");
    if dev {
        info!("development mode: open http://{http_addr}/ in a browser");
    }

    axum::serve(listener, web::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    media.shutdown();
    let _ = media_thread.join();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

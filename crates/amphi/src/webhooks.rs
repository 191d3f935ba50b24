//! Webhooks: room started/ended and participant joined/left, POSTed as JSON
//! to each `[[webhooks]]` URL, signed, retried, in order per room.
//!
//! The media thread hands events to [`start`]'s channel (unbounded, so it
//! never waits). A dispatcher task gives each (receiver, room) its own
//! worker task, which delivers that room's events one after the other:
//! a receiver that is down delays only its own deliveries, and a room's
//! `participant_left` never overtakes its `participant_joined`. When a room
//! ends and starts again, the new worker first waits for the old one.
//!
//! Signature (see docs/operations.md): `Amphi-Timestamp: <unix seconds>`
//! and `Amphi-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! Signing the timestamp with the body lets a receiver refuse replays
//! (timestamps older than a few minutes) without trusting an unsigned header.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amphi_room::SfuEvent;
use axum::http::Uri;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::config::WebhookConfig;
use crate::metrics::Ops;

/// Attempts per event before it is given up (about a minute in all).
const MAX_ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Per attempt: connect, TLS, request and response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub const SIGNATURE_HEADER: &str = "Amphi-Signature";
pub const TIMESTAMP_HEADER: &str = "Amphi-Timestamp";

/// One receiver.
pub struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    target: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.target)
    }
}

impl Endpoint {
    /// Checks a URL: `http` or `https`, a host, no user name or password.
    pub fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?}: use an http:// or https:// URL")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{url:?}: no user or password in the URL; requests are signed instead"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let target = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let target = if target.is_empty() {
            "/".into()
        } else {
            target
        };
        Ok((https, host.to_owned(), port, target))
    }

    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let (https, host, port, target) =
            Self::parse_url(&config.url).map_err(|e| anyhow::anyhow!("webhooks: {e}"))?;
        let secret = config
            .secret()
            .map_err(|e| anyhow::anyhow!("webhooks ({}): {e}", config.url))?;
        Ok(Endpoint {
            https,
            host,
            port,
            target,
            secret,
        })
    }
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The JSON body of one event.
pub fn body(event: &SfuEvent, created_at: u64) -> (String, &'static str, Vec<u8>) {
    let id = format!("{:016x}", rand::random::<u64>());
    let (kind, value) = match event {
        SfuEvent::RoomStarted { room } => ("room_started", json!({ "room": room })),
        SfuEvent::RoomEnded { room } => ("room_ended", json!({ "room": room })),
        SfuEvent::ParticipantJoined {
            room,
            participant,
            identity,
            name,
            role,
        } => (
            "participant_joined",
            json!({ "room": room, "participant": {
                "id": participant.to_string(), "identity": identity, "name": name, "role": role,
            }}),
        ),
        SfuEvent::ParticipantLeft {
            room,
            participant,
            identity,
            reason,
        } => (
            "participant_left",
            json!({ "room": room, "reason": reason, "participant": {
                "id": participant.to_string(), "identity": identity,
            }}),
        ),
        #[allow(unreachable_patterns)]
        _ => ("other", json!({})),
    };
    let mut value = value;
    if let Some(o) = value.as_object_mut() {
        o.insert("id".into(), json!(id));
        o.insert("event".into(), json!(kind));
        o.insert("created_at".into(), json!(created_at));
    }
    (id, kind, value.to_string().into_bytes())
}

fn room_of(event: &SfuEvent) -> Option<&str> {
    match event {
        SfuEvent::RoomStarted { room }
        | SfuEvent::RoomEnded { room }
        | SfuEvent::ParticipantJoined { room, .. }
        | SfuEvent::ParticipantLeft { room, .. } => Some(room),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Starts the dispatcher. `None` when no webhook is configured. The task
/// ends (after delivering what is queued) when the sender is dropped.
pub fn start(
    configs: &[WebhookConfig],
    ops: Arc<Ops>,
) -> anyhow::Result<Option<(UnboundedSender<SfuEvent>, JoinHandle<()>)>> {
    if configs.is_empty() {
        return Ok(None);
    }
    let endpoints: Vec<Arc<Endpoint>> = configs
        .iter()
        .map(|c| Endpoint::new(c).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    let tls = if endpoints.iter().any(|e| e.https) {
        Some(tls_connector()?)
    } else {
        None
    };
    let (tx, rx) = unbounded_channel();
    let task = tokio::spawn(dispatch(rx, endpoints, tls, ops));
    Ok(Some((tx, task)))
}

fn tls_connector() -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // One unreadable certificate in the system store spoils nothing else.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        warn!("webhooks: no CA certificates found in the system store; https receivers will fail");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

struct Worker {
    tx: UnboundedSender<SfuEvent>,
    handle: JoinHandle<()>,
}

async fn dispatch(
    mut rx: UnboundedReceiver<SfuEvent>,
    endpoints: Vec<Arc<Endpoint>>,
    tls: Option<tokio_rustls::TlsConnector>,
    ops: Arc<Ops>,
) {
    let mut workers: HashMap<(usize, String), Worker> = HashMap::new();
    // Workers of ended rooms still delivering; a restarted room's new worker
    // waits for its predecessor.
    let mut finishing: HashMap<(usize, String), JoinHandle<()>> = HashMap::new();
    while let Some(event) = rx.recv().await {
        let Some(room) = room_of(&event).map(str::to_owned) else {
            continue;
        };
        let ended = matches!(event, SfuEvent::RoomEnded { .. });
        finishing.retain(|_, h| !h.is_finished());
        for (i, endpoint) in endpoints.iter().enumerate() {
            let key = (i, room.clone());
            let worker = workers.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = unbounded_channel();
                let before = finishing.remove(&key);
                let handle = tokio::spawn(deliver_in_order(
                    rx,
                    endpoint.clone(),
                    tls.clone(),
                    ops.clone(),
                    before,
                ));
                Worker { tx, handle }
            });
            let _ = worker.tx.send(event.clone());
            if ended && let Some(w) = workers.remove(&key) {
                // Dropping the sender lets the worker end after this event.
                finishing.insert(key, w.handle);
            }
        }
    }
    // Shutting down: let every worker finish what it has.
    let handles = workers
        .into_values()
        .map(|w| w.handle)
        .chain(finishing.into_values());
    for h in handles {
        let _ = h.await;
    }
}

async fn deliver_in_order(
    mut rx: UnboundedReceiver<SfuEvent>,
    endpoint: Arc<Endpoint>,
    tls: Option<tokio_rustls::TlsConnector>,
    ops: Arc<Ops>,
    before: Option<JoinHandle<()>>,
) {
    if let Some(h) = before {
        let _ = h.await;
    }
    while let Some(event) = rx.recv().await {
        let (id, kind, body) = body(&event, amphi_auth::now_unix());
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                post(&endpoint, tls.as_ref(), kind, &id, &body),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            match result {
                Ok(()) => {
                    ops.webhooks_delivered
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(?endpoint, kind, id, attempt, "webhook delivered");
                    break;
                }
                Err(e) if attempt < MAX_ATTEMPTS => {
                    ops.webhooks_retried
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(
                        ?endpoint,
                        kind, id, attempt, "webhook failed, retrying in {backoff:?}: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    ops.webhooks_failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(
                        ?endpoint,
                        kind, id, "webhook given up after {MAX_ATTEMPTS} attempts: {e}"
                    );
                }
            }
        }
    }
}

/// One POST; `Ok` on a 2xx answer.
async fn post(
    endpoint: &Endpoint,
    tls: Option<&tokio_rustls::TlsConnector>,
    kind: &str,
    id: &str,
    body: &[u8],
) -> Result<(), String> {
    let timestamp = amphi_auth::now_unix();
    let signature = signature(&endpoint.secret, timestamp, body);
    let host_header = if endpoint.host.contains(':') {
        format!("[{}]:{}", endpoint.host, endpoint.port)
    } else {
        format!("{}:{}", endpoint.host, endpoint.port)
    };
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: amphi/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\
         Amphi-Event: {kind}\r\nAmphi-Delivery: {id}\r\n\
         {TIMESTAMP_HEADER}: {timestamp}\r\n{SIGNATURE_HEADER}: {signature}\r\n\r\n",
        endpoint.target,
        env!("CARGO_PKG_VERSION"),
        body.len(),
    )
    .into_bytes();
    request.extend_from_slice(body);
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let status = if endpoint.https {
        let tls = tls.ok_or("no TLS client")?;
        let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
            .map_err(|e| format!("bad host name: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(stream, &request).await?
    } else {
        exchange(tcp, &request).await?
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("answered HTTP {status}"))
    }
}

/// Sends the request, reads the status line.
async fn exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &[u8],
) -> Result<u16, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 || head.len() > 8192 {
            return Err("no HTTP answer".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Endpoint::parse_url("https://lms.example/hooks/amphi?x=1").unwrap(),
            (true, "lms.example".into(), 443, "/hooks/amphi?x=1".into())
        );
        assert_eq!(
            Endpoint::parse_url("http://127.0.0.1:8080").unwrap(),
            (false, "127.0.0.1".into(), 8080, "/".into())
        );
        assert!(Endpoint::parse_url("ftp://x/").is_err());
        assert!(Endpoint::parse_url("https://user:pw@x/").is_err());
        assert!(Endpoint::parse_url("not a url").is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}

//! Helpers shared by the operations tests (`ops_*.rs`): a real `amphi`
//! process with a configuration file, plain HTTP requests, signals.
#![allow(dead_code)] // Each test file uses a different subset.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use amphi_client::TestServer;

pub const BIN: &str = env!("CARGO_BIN_EXE_amphi");

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "amphi-{tag}-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// `amphi serve --dev --config FILE --listen 127.0.0.1:0 --udp-port 0`.
pub fn start_dev_with_config(config: &Path) -> TestServer {
    let config = config.to_str().expect("utf-8 path");
    TestServer::start(
        BIN,
        &[
            "serve",
            "--dev",
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--udp-port",
            "0",
        ],
    )
    .expect("the server starts")
}

/// Waits until the server's log contains `needle`; returns the line.
pub fn wait_for_log(srv: &TestServer, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = srv.log().lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?} in {timeout:?}; log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metrics listener's address, from the `metrics listening` log line.
pub fn metrics_addr(srv: &TestServer) -> SocketAddr {
    let line = wait_for_log(srv, "metrics listening", Duration::from_secs(10));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("metrics="))
        .unwrap_or_else(|| panic!("no metrics= in {line:?}"));
    addr.parse().expect("an address")
}

/// `http://127.0.0.1:PORT` → the address.
pub fn http_addr(srv: &TestServer) -> SocketAddr {
    let url = srv.url();
    let host = url.split("://").nth(1).expect("a URL");
    host.trim_end_matches('/').parse().expect("an address")
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(parse_response(&raw))
}

/// (status, body) of a raw HTTP/1.1 response (identity or chunked).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sends a signal with kill(1) (no libc binding needed).
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Polls `f` until it returns `Some`, or panics with `what`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One sample of `/metrics` at `addr`, by its exact series
/// (`name{labels}`), or `None` if absent. A plain line scan: the strict
/// format check is `ops_metrics`'s.
pub fn metric_sample(addr: SocketAddr, series: &str) -> Option<f64> {
    let (status, body) = http_get(addr, "/metrics").ok()?;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

//! Running a real `amphi` server process for tests.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::ClientError;

/// Keep at most this much of the server's stderr.
const MAX_LOG: usize = 4 << 20;

/// An `amphi serve` child process, killed on drop.
///
/// Its stderr is collected (see [`TestServer::log`]) and echoed to the
/// test's stderr when `AMPHI_TEST_ECHO` is set.
pub struct TestServer {
    child: Child,
    bin: PathBuf,
    url: String,
    log: Arc<Mutex<String>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("bin", &self.bin)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// `amphi serve --dev --listen 127.0.0.1:0 --udp-port 0`.
    pub fn start_dev(bin: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::start(
            bin,
            &[
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--udp-port",
                "0",
            ],
        )
    }

    /// Runs `bin args…` and waits (up to 60 s) for its first stdout line,
    /// `Amphi listening on http://HOST:PORT/`.
    pub fn start(bin: impl AsRef<Path>, args: &[&str]) -> Result<Self, ClientError> {
        let bin = bin.as_ref().to_path_buf();
        let mut child = Command::new(&bin)
            .args(args)
            .env(
                "AMPHI_LOG",
                std::env::var("AMPHI_LOG").unwrap_or_else(|_| "info,str0m=warn,is=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(String::new()));
        let echo = std::env::var_os("AMPHI_TEST_ECHO").is_some();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || collect(stderr, &log, echo));
        }
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                if let Some(Ok(first)) = lines.next() {
                    let _ = tx.send(first);
                }
                // Keep draining so the server never blocks on a full pipe.
                for line in lines.map_while(Result::ok) {
                    if echo {
                        eprintln!("[amphi stdout] {line}");
                    }
                }
            });
        }
        let mut server = TestServer {
            child,
            bin,
            url: String::new(),
            log,
        };
        let first = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                return Err(ClientError::Setup(format!(
                    "the server printed no listening line; stderr:\n{}",
                    server.log()
                )));
            }
        };
        let url = first
            .strip_prefix("Amphi listening on ")
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .ok_or_else(|| ClientError::Setup(format!("unexpected first line {first:?}")))?;
        server.url = url;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `amphi token --dev --room ROOM --identity ID --name NAME` and
    /// returns the JWT.
    pub fn dev_token(&self, room: &str, identity: &str, name: &str) -> Result<String, ClientError> {
        self.token(&[
            "--dev",
            "--room",
            room,
            "--identity",
            identity,
            "--name",
            name,
        ])
    }

    /// Runs `amphi token ARGS…` and returns the JWT.
    pub fn token(&self, args: &[&str]) -> Result<String, ClientError> {
        let out = Command::new(&self.bin).arg("token").args(args).output()?;
        if !out.status.success() {
            return Err(ClientError::Setup(format!(
                "amphi token {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let jwt = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if jwt.is_empty() {
            return Err(ClientError::Setup("amphi token printed nothing".into()));
        }
        Ok(jwt)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stderr: impl Read, log: &Mutex<String>, echo: bool) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if echo {
            eprintln!("[amphi] {line}");
        }
        if let Ok(mut l) = log.lock()
            && l.len() < MAX_LOG
        {
            l.push_str(&line);
            l.push('\n');
        }
    }
}

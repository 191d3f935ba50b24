//! A participant running on its own thread, with a blocking handle for
//! tests: look at its statistics, wait for a condition, leave.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amphi_protocol::{ParticipantInfo, Source};
use mio::Waker;
use tracing::debug;

use crate::driver::{Client, connect};
use crate::error::ClientError;
use crate::participant::ClientOptions;
use crate::stats::ClientStats;

/// How often the driver thread publishes a statistics snapshot.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// How long `leave` waits for the server to close the socket.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

enum Command {
    Leave,
    Abort,
    Mute(Source, bool),
    Ping,
    CutMedia(bool),
    Raw(tungstenite::Message),
}

#[derive(Default)]
struct Snapshot {
    stats: ClientStats,
    /// The driver thread is over.
    finished: bool,
}

struct Shared {
    snap: Mutex<Snapshot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        // A panicking driver thread must not take the test's handle down
        // with a poisoned lock: the data is plain counters.
        self.snap.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, stats: &ClientStats, finished: bool) {
        let mut s = self.lock();
        s.stats = stats.clone();
        s.finished |= finished;
        self.changed.notify_all();
    }
}

/// A participant on its own thread.
///
/// ```no_run
/// # use std::time::Duration;
/// # use amphi_client::TestParticipant;
/// # use amphi_protocol::MediaKind;
/// let alice = TestParticipant::spawn("http://127.0.0.1:8080", "eyJ…")?;
/// let stats = alice.wait_until(|s| s.from("P2", MediaKind::Audio).packets > 50, Duration::from_secs(10))?;
/// alice.leave()?;
/// # Ok::<(), amphi_client::ClientError>(())
/// ```
///
/// Dropping it leaves the room and joins the thread.
pub struct TestParticipant {
    id: String,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<Result<(), ClientError>>>,
}

impl std::fmt::Debug for TestParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestParticipant")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TestParticipant {
    /// Joins with default options (publish audio and video). Returns once
    /// joined, or with the server's refusal.
    pub fn spawn(url: &str, token: &str) -> Result<Self, ClientError> {
        Self::spawn_with(url, token, ClientOptions::default())
    }

    pub fn spawn_with(url: &str, token: &str, opts: ClientOptions) -> Result<Self, ClientError> {
        let client = connect(url, token, opts)?;
        let id = client.participant().id().unwrap_or_default().to_string();
        let shared = Arc::new(Shared {
            snap: Mutex::new(Snapshot {
                stats: client.stats().clone(),
                finished: false,
            }),
            changed: Condvar::new(),
        });
        let waker = client.waker();
        let (tx, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("amphi-client-{id}"))
            .spawn(move || {
                let r = run(client, &rx, &thread_shared);
                // Whatever happened, let waiters go.
                let mut s = thread_shared.lock();
                s.finished = true;
                thread_shared.changed.notify_all();
                drop(s);
                r
            })?;
        Ok(TestParticipant {
            id,
            shared,
            commands: tx,
            waker,
            thread: Some(thread),
        })
    }

    /// This participant's server-assigned id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A snapshot of the statistics (at most ~20 ms old).
    pub fn stats(&self) -> ClientStats {
        self.shared.lock().stats.clone()
    }

    /// Everyone else in the room, by id.
    pub fn roster(&self) -> HashMap<String, ParticipantInfo> {
        self.shared.lock().stats.roster.clone()
    }

    /// Whether the driver thread is over (session closed).
    pub fn is_finished(&self) -> bool {
        self.shared.lock().finished
    }

    /// Waits until `cond` holds for the statistics. On timeout (or if the
    /// session ends first) returns [`ClientError::WaitTimedOut`] with the
    /// last statistics, for the test's failure message.
    pub fn wait_until(
        &self,
        mut cond: impl FnMut(&ClientStats) -> bool,
        timeout: Duration,
    ) -> Result<ClientStats, ClientError> {
        let end = Instant::now() + timeout;
        let mut snap = self.shared.lock();
        loop {
            if cond(&snap.stats) {
                return Ok(snap.stats.clone());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || snap.finished {
                return Err(ClientError::WaitTimedOut(Box::new(snap.stats.clone())));
            }
            snap = self
                .shared
                .changed
                .wait_timeout(snap, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn command(&self, c: Command) {
        // If the thread is gone, there is nothing to command.
        if self.commands.send(c).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Sends `mute`.
    pub fn mute(&self, source: Source, muted: bool) {
        self.command(Command::Mute(source, muted));
    }

    /// Sends `ping`.
    pub fn ping(&self) {
        self.command(Command::Ping);
    }

    /// Simulates the media path dying (`true`) or recovering (`false`):
    /// UDP is dropped both ways while signalling goes on.
    pub fn cut_media(&self, cut: bool) {
        self.command(Command::CutMedia(cut));
    }

    /// Sends a raw WebSocket message on the signalling connection.
    pub fn send_raw(&self, m: tungstenite::Message) {
        self.command(Command::Raw(m));
    }

    /// Closes the signalling connection without `leave` (as a crashed tab
    /// would), then waits for the thread. Returns the final statistics.
    pub fn abort(mut self) -> Result<ClientStats, ClientError> {
        self.command(Command::Abort);
        self.join()
    }

    /// Sends `leave`, waits for the server to close the connection, joins
    /// the thread. Returns the final statistics.
    pub fn leave(mut self) -> Result<ClientStats, ClientError> {
        self.command(Command::Leave);
        self.join()
    }

    fn join(&mut self) -> Result<ClientStats, ClientError> {
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r?,
                Err(_) => return Err(ClientError::ThreadPanicked),
            }
        }
        Ok(self.stats())
    }
}

impl Drop for TestParticipant {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.command(Command::Leave);
            if let Err(e) = self.join() {
                debug!(id = %self.id, "client ended with {e}");
            }
        }
    }
}

fn run(mut client: Client, rx: &Receiver<Command>, shared: &Shared) -> Result<(), ClientError> {
    let mut last_publish = Instant::now();
    let mut leave_deadline: Option<Instant> = None;
    let result = loop {
        if let Err(e) = client.turn(PUBLISH_EVERY) {
            break Err(e);
        }
        loop {
            match rx.try_recv() {
                Ok(Command::Leave) => {
                    client.participant_mut().leave();
                    leave_deadline.get_or_insert(Instant::now() + LEAVE_TIMEOUT);
                }
                Ok(Command::Abort) => {
                    client.abort();
                    leave_deadline.get_or_insert(Instant::now() + LEAVE_TIMEOUT);
                }
                Ok(Command::Mute(s, m)) => client.participant_mut().mute(s, m),
                Ok(Command::Ping) => client.participant_mut().ping(),
                Ok(Command::CutMedia(cut)) => client.set_media_cut(cut),
                Ok(Command::Raw(m)) => {
                    if let Err(e) = client.send_raw(m) {
                        debug!("raw send: {e}");
                    }
                }
                // The handle is gone without leaving: leave.
                Err(mpsc::TryRecvError::Disconnected) => {
                    client.participant_mut().leave();
                    leave_deadline.get_or_insert(Instant::now() + LEAVE_TIMEOUT);
                    break;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if now.duration_since(last_publish) >= PUBLISH_EVERY {
            shared.publish(client.stats(), false);
            last_publish = now;
        }
        if client.participant().is_closed() || !client.signalling_open() {
            break Ok(());
        }
        if leave_deadline.is_some_and(|d| now >= d) {
            break Ok(());
        }
    };
    let _ = client.finish(Duration::from_millis(200));
    shared.publish(client.stats(), true);
    result
}

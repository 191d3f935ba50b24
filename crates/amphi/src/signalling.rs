//! The `/rtc` WebSocket: one task per participant that checks the token,
//! relays messages between the client and the media thread, and watches the
//! connection's liveness.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amphi_protocol::{ClientMessage, ErrorCode, LeaveReason, MAX_MESSAGE_BYTES, ServerMessage};
use amphi_room::{Command, JoinRequest, ParticipantId};
use axum::extract::ws::{Message, WebSocket};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::media::ToSession;
use crate::metrics::JoinFailure;
use crate::state::AppState;

/// The server pings this often; browsers answer by themselves.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A connection silent for this long is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(15);
/// A client must say `join` within this time.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// Frames over this size close the connection without reading them; between
/// [`MAX_MESSAGE_BYTES`] and this, the client gets `too_large`.
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// Bytes a signalling connection reads at a time. tungstenite allocates its
/// 128 KiB default up front, for every connection: in a lecture of 200 that
/// was a fifth of the server's memory. Most signalling messages are a few
/// KiB; a larger one (an answer with many m-lines) grows the buffer, which
/// keeps that capacity for the rest of the connection.
pub const WS_READ_BUFFER: usize = 4 * 1024;
/// Messages per second a client may send on average, and in a burst.
const RATE_PER_SECOND: f64 = 20.0;
const RATE_BURST: f64 = 60.0;

static NEXT_PARTICIPANT: AtomicU64 = AtomicU64::new(1);

pub async fn session(mut socket: WebSocket, state: AppState) {
    let Some(joined) = wait_for_join(&mut socket, &state).await else {
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    let Joined {
        participant,
        mut from_media,
    } = joined;
    let reason = relay(&mut socket, &state, participant, &mut from_media).await;
    state.media.send(
        Command::Leave {
            participant,
            reason,
        },
        None,
    );
    let _ = socket.send(Message::Close(None)).await;
    debug!(%participant, ?reason, "signalling closed");
}

struct Joined {
    participant: ParticipantId,
    from_media: mpsc::UnboundedReceiver<ToSession>,
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> bool {
    socket
        .send(Message::Text(message.encode().into()))
        .await
        .is_ok()
}

/// Reads messages until a valid `join`; answers everything else with an
/// error. Returns `None` when the connection should close.
async fn wait_for_join(socket: &mut WebSocket, state: &AppState) -> Option<Joined> {
    let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.recv()).await;
        let text = match frame {
            Err(_) => {
                state.ops.join_failed(JoinFailure::NoJoin);
                send(
                    socket,
                    &ServerMessage::error(ErrorCode::Unauthorized, "no join message in time"),
                )
                .await;
                return None;
            }
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Binary(_)))) => {
                send(socket, &binary_refused()).await;
                continue;
            }
            Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        let message = match ClientMessage::decode(&text) {
            Ok(m) => m,
            Err(e) => {
                send(socket, &ServerMessage::error(e.code(), e.to_string())).await;
                continue;
            }
        };
        let ClientMessage::Join {
            token,
            room,
            client,
        } = message
        else {
            send(
                socket,
                &ServerMessage::error(ErrorCode::NotJoined, "the first message must be join"),
            )
            .await;
            continue;
        };
        let verified = match state
            .keys
            .verify(&token, room.as_deref(), amphi_auth::now_unix())
        {
            Ok(v) => v,
            Err(e) => {
                info!(reason = %e, "join refused");
                state.ops.join_failed(JoinFailure::Unauthorized);
                send(
                    socket,
                    &ServerMessage::error(ErrorCode::Unauthorized, e.to_string()),
                )
                .await;
                return None;
            }
        };
        let p = &verified.permissions;
        if !p.subscribe && !p.publish {
            state.ops.join_failed(JoinFailure::Forbidden);
            send(
                socket,
                &ServerMessage::error(
                    ErrorCode::Forbidden,
                    "your token allows neither receiving nor sending media",
                ),
            )
            .await;
            return None;
        }
        let participant = ParticipantId(NEXT_PARTICIPANT.fetch_add(1, Ordering::Relaxed));
        debug!(%participant, client = client.as_deref().unwrap_or("-"), "join accepted");
        let (tx, rx) = mpsc::unbounded_channel();
        state.media.send(
            Command::Join(JoinRequest {
                participant,
                room: verified.room,
                identity: verified.identity,
                name: verified.name,
                role: verified.role,
                permissions: verified.permissions,
            }),
            Some(tx),
        );
        return Some(Joined {
            participant,
            from_media: rx,
        });
    }
}

/// Relays until either side ends; returns why the participant leaves.
async fn relay(
    socket: &mut WebSocket,
    state: &AppState,
    participant: ParticipantId,
    from_media: &mut mpsc::UnboundedReceiver<ToSession>,
) -> LeaveReason {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut bucket = RATE_BURST;
    let mut bucket_at = Instant::now();
    loop {
        tokio::select! {
            frame = socket.recv() => {
                last_heard = Instant::now();
                let text = match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                        return LeaveReason::Disconnected;
                    }
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        if !send(socket, &binary_refused()).await {
                            return LeaveReason::Disconnected;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue, // ping/pong
                };
                let now = Instant::now();
                bucket = (bucket + now.duration_since(bucket_at).as_secs_f64() * RATE_PER_SECOND)
                    .min(RATE_BURST);
                bucket_at = now;
                if bucket < 1.0 {
                    let refused = ServerMessage::error(ErrorCode::RateLimited, "too many messages; slow down");
                    if !send(socket, &refused).await {
                        return LeaveReason::Disconnected;
                    }
                    continue;
                }
                bucket -= 1.0;
                match ClientMessage::decode(&text) {
                    Ok(ClientMessage::Join { .. }) => {
                        let refused = ServerMessage::error(ErrorCode::AlreadyJoined, "already joined");
                        if !send(socket, &refused).await {
                            return LeaveReason::Disconnected;
                        }
                    }
                    Ok(message) => state.media.send(Command::Message { participant, message }, None),
                    Err(e) => {
                        if !send(socket, &ServerMessage::error(e.code(), e.to_string())).await {
                            return LeaveReason::Disconnected;
                        }
                    }
                }
            }
            out = from_media.recv() => {
                match out {
                    Some(ToSession::Message(message)) => {
                        let bye = matches!(message, ServerMessage::Bye { .. });
                        let fatal = matches!(&message, ServerMessage::Error { code, .. } if code.is_fatal());
                        if !send(socket, &message).await {
                            return LeaveReason::Disconnected;
                        }
                        if bye || fatal {
                            return LeaveReason::Left;
                        }
                    }
                    // The engine is done with this participant.
                    Some(ToSession::Close) | None => return LeaveReason::Left,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return LeaveReason::Timeout;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return LeaveReason::Disconnected;
                }
            }
        }
    }
}

fn binary_refused() -> ServerMessage {
    ServerMessage::error(
        ErrorCode::BadRequest,
        "binary frames are not part of the protocol; send JSON text",
    )
}

// The limit on frames is larger than the limit on messages so that a client
// that sends a little too much learns why.
const _: () = assert!(MAX_FRAME_BYTES > MAX_MESSAGE_BYTES);

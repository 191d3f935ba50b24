// TypeScript spelling of the signalling protocol (docs/protocol.md, whose Rust
// spelling is crates/amphi-protocol). Keep the three in step.

export type Role = 'teacher' | 'student' | 'guest';
export type Source = 'camera' | 'microphone' | 'screen_share' | 'screen_share_audio';
export type MediaKind = 'audio' | 'video';

export type LeaveReason =
  | 'left'
  | 'disconnected'
  | 'timeout'
  | 'replaced'
  | 'media_failed'
  | 'server_shutdown';

export type ErrorCode =
  | 'unauthorized'
  | 'forbidden'
  | 'bad_request'
  | 'too_large'
  | 'not_joined'
  | 'already_joined'
  | 'sdp_rejected'
  | 'room_full'
  | 'rate_limited'
  | 'internal';

/** Codes after which the server closes the socket (ErrorCode::is_fatal). */
export const FATAL_ERRORS: readonly ErrorCode[] = ['unauthorized', 'forbidden', 'room_full'];

export interface TrackInfo {
  id: string;
  kind: MediaKind;
  source: Source;
  muted: boolean;
}

export interface ParticipantInfo {
  id: string;
  identity: string;
  name: string;
  role: Role;
  tracks: TrackInfo[];
}

export interface Permissions {
  publish: boolean;
  subscribe: boolean;
  publish_sources: Source[];
  chat: boolean;
  moderate: boolean;
}

export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface PublishTrack {
  mid: string;
  source: Source;
  muted: boolean;
}

export interface SubscribedTrack {
  mid: string;
  participant: string;
  track: string;
  kind: MediaKind;
  source: Source;
}

export type ClientMessage =
  | { type: 'join'; token: string; room?: string; client?: string }
  | { type: 'publish_offer'; sdp: string; tracks: PublishTrack[] }
  | { type: 'subscribe_answer'; sdp: string }
  | { type: 'mute'; source: Source; muted: boolean }
  | { type: 'ping' }
  | { type: 'leave' };

export interface JoinedMessage {
  type: 'joined';
  room: string;
  participant: ParticipantInfo;
  participants: ParticipantInfo[];
  permissions: Permissions;
  ice_servers: IceServer[];
}

export type ServerMessage =
  | JoinedMessage
  | { type: 'participant_joined'; participant: ParticipantInfo }
  | { type: 'participant_updated'; participant: ParticipantInfo }
  | { type: 'participant_left'; participant: string; reason: LeaveReason }
  | { type: 'publish_answer'; sdp: string }
  | { type: 'subscribe_offer'; sdp: string; tracks: SubscribedTrack[] }
  | { type: 'pong' }
  | {
      type: 'error';
      code: ErrorCode;
      message: string;
      /** The `type` of the client message this answers, when it is about one. */
      request?: string;
    }
  | { type: 'bye'; reason: LeaveReason };

export const SOURCE_KIND: Record<Source, MediaKind> = {
  camera: 'video',
  microphone: 'audio',
  screen_share: 'video',
  screen_share_audio: 'audio',
};

/** Loose check that a parsed frame is a server message we know. */
export function parseServerMessage(text: string): ServerMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') return null;
  return value as ServerMessage;
}

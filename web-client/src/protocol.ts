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
  | 'server_shutdown'
  | 'removed'
  | 'denied'
  | 'room_ended';

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
  | 'room_locked'
  | 'room_ended'
  | 'not_found'
  | 'internal';

/** Codes after which the server closes the socket (ErrorCode::is_fatal). */
export const FATAL_ERRORS: readonly ErrorCode[] = ['unauthorized', 'forbidden', 'room_full', 'room_locked', 'room_ended'];

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
  hand_raised?: boolean;
  /** Absent in the main room. */
  group?: string | null;
  floor?: boolean;
}

export interface GroupInfo {
  id: string;
  name: string;
}

export interface RoomState {
  locked: boolean;
  waiting_room: boolean;
  ask_to_speak: boolean;
  /** Raised hands, in the order they were raised. */
  hands: string[];
  groups: GroupInfo[];
}

export const EMPTY_ROOM_STATE: RoomState = { locked: false, waiting_room: false, ask_to_speak: false, hands: [], groups: [] };

export interface ChatMessage {
  from: string;
  from_name: string;
  text: string;
  to?: string;
  broadcast?: boolean;
  sent_at: number;
}

export interface LobbyEntry {
  id: string;
  name: string;
  role: Role;
}

export type Promotion = 'co_teacher' | 'presenter' | 'participant';

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

/** One encoding of a published video track (`publish_layers`, dynacast). */
export interface PublishLayer {
  rid?: string;
  active: boolean;
}

/** One active speaker (`speakers`): the first of the list is the dominant one. */
export interface SpeakerInfo {
  participant: string;
  /** Smoothed loudness, 0 (silence) to 1 (full scale). */
  level: number;
}

/** How well a participant is connected (`connection_quality`). */
export type ConnectionQuality = 'good' | 'fair' | 'poor';

export interface ParticipantQuality {
  participant: string;
  quality: ConnectionQuality;
}

/** One track's figures in `stats` (docs/protocol.md). */
export interface TrackStats {
  participant: string;
  track: string;
  kind: MediaKind;
  source: Source;
  rid?: string;
  packets: number;
  bytes: number;
  /** Fraction lost, 0 to 1, in the latest RTCP report interval. */
  loss?: number;
  jitter_ms?: number;
  rtt_ms?: number;
  nacks: number;
  plis: number;
}

export interface StatsMessage {
  type: 'stats';
  quality: ConnectionQuality;
  uplink: ConnectionQuality;
  downlink: ConnectionQuality;
  publishing: TrackStats[];
  receiving: TrackStats[];
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
  | { type: 'track_settings'; track: string; visible: boolean; width: number; height: number }
  | { type: 'mute'; source: Source; muted: boolean }
  | { type: 'ping' }
  | { type: 'leave' }
  | { type: 'get_stats' }
  | { type: 'chat'; text: string; to?: string }
  | { type: 'raise_hand' }
  | { type: 'lower_hand'; participant?: string }
  | { type: 'mute_participant'; participant: string; source: Source }
  | { type: 'mute_all' }
  | { type: 'request_unmute'; participant: string; source: Source }
  | { type: 'give_floor'; participant: string }
  | { type: 'take_floor'; participant: string }
  | { type: 'promote'; participant: string; to: Promotion }
  | { type: 'update_room'; locked?: boolean; waiting_room?: boolean; ask_to_speak?: boolean }
  | { type: 'admit'; participant: string }
  | { type: 'deny'; participant: string }
  | { type: 'remove'; participant: string; reason?: string }
  | { type: 'end_room' }
  | { type: 'breakout_start'; groups: number; assignments?: Record<string, number> }
  | { type: 'breakout_move'; participant: string; group: string | null }
  | { type: 'breakout_broadcast'; text: string }
  | { type: 'breakout_end' };

/** Client messages a view may send through the session (not the connection's own). */
export type ClassroomMessage = Exclude<
  ClientMessage,
  { type: 'join' | 'publish_offer' | 'subscribe_answer' | 'mute' | 'ping' | 'leave' }
>;

export interface JoinedMessage {
  type: 'joined';
  room: string;
  participant: ParticipantInfo;
  participants: ParticipantInfo[];
  permissions: Permissions;
  /** Settings, raised hands and breakout groups (absent from older servers). */
  room_state?: RoomState;
  ice_servers: IceServer[];
}

export type ServerMessage =
  | JoinedMessage
  | { type: 'participant_joined'; participant: ParticipantInfo }
  | { type: 'participant_updated'; participant: ParticipantInfo }
  /** Several records at once (mute all, breakout groups). */
  | { type: 'participants_updated'; participants: ParticipantInfo[] }
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
  | { type: 'bye'; reason: LeaveReason; message?: string }
  | { type: 'draining' }
  | { type: 'room_updated'; room: RoomState }
  | { type: 'chat'; message: ChatMessage }
  | { type: 'waiting' }
  | { type: 'lobby'; waiting: LobbyEntry[] }
  | { type: 'mute_requested'; source: Source; by: string }
  | { type: 'unmute_requested'; source: Source; by: string }
  | { type: 'permissions_updated'; role: Role; permissions: Permissions }
  | { type: 'speakers'; speakers: SpeakerInfo[] }
  | { type: 'connection_quality'; participants: ParticipantQuality[] }
  | StatsMessage
  | { type: 'publish_layers'; track: string; source: Source; layers: PublishLayer[] };

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

// One participant's session with the server: the signalling WebSocket, the
// publisher and subscriber peer connections (docs/protocol.md), keepalive and
// automatic reconnection. It knows nothing about the DOM: the room view gives
// it handlers and local tracks.

import { signallingUrl } from './api';
import {
  FATAL_ERRORS,
  type ChatMessage,
  type ClassroomMessage,
  type ClientMessage,
  type LobbyEntry,
  type Role,
  type RoomState,
  type ErrorCode,
  type JoinedMessage,
  type LeaveReason,
  type MediaKind,
  type ParticipantInfo,
  type Permissions,
  type ServerMessage,
  type Source,
  type SpeakerInfo,
  type ParticipantQuality,
  type StatsMessage,
  type PublishLayer,
  type SubscribedTrack,
  parseServerMessage,
} from './protocol';

export const CLIENT_NAME = 'amphi-web/0.1.0';

/** Keepalive: a ping every 5 s; the link is lost after 10 s of silence. */
export const PING_INTERVAL_MS = 5_000;
export const SILENCE_LIMIT_MS = 10_000;
/** Reconnection backoff: 1 s, 2 s, 4 s, … at most 10 s. */
export const BACKOFF_MAX_MS = 10_000;

export type PublishedSource = 'microphone' | 'camera' | 'screen_share' | 'screen_share_audio';

export interface LocalSource {
  track: MediaStreamTrack | null;
  muted: boolean;
}

export interface RemoteTrack {
  mid: string;
  participant: string;
  trackId: string;
  kind: MediaKind;
  source: Source;
  track: MediaStreamTrack;
}

export type SessionEnd =
  | { kind: 'left' }
  | { kind: 'error'; code: ErrorCode; message: string }
  | { kind: 'bye'; reason: LeaveReason; message?: string };

export type ConnState =
  | { state: 'connecting' }
  | { state: 'joined' }
  | { state: 'waiting' }
  | { state: 'reconnecting'; attempt: number; delayMs: number };

export interface SessionHandlers {
  state(s: ConnState): void;
  joined(msg: JoinedMessage): void;
  participantJoined(p: ParticipantInfo): void;
  participantUpdated(p: ParticipantInfo): void;
  /** Several records at once: drawn once, not once per record. */
  participantsUpdated(ps: ParticipantInfo[]): void;
  participantLeft(id: string, reason: LeaveReason): void;
  remoteTracks(tracks: RemoteTrack[]): void;
  /** A non-fatal problem to show briefly. */
  notice(code: ErrorCode | 'publish', message: string, request?: string): void;
  /** Classroom events (docs/protocol.md, "The classroom"). */
  roomUpdated(room: RoomState): void;
  chat(message: ChatMessage): void;
  lobby(waiting: LobbyEntry[]): void;
  muteRequested(source: Source, by: string): void;
  unmuteRequested(source: Source, by: string): void;
  permissionsUpdated(role: Role, permissions: Permissions): void;
  /** Who speaks (`speakers`): the dominant speaker first; empty: nobody. */
  speakers?(list: SpeakerInfo[]): void;
  /** Connection qualities (`connection_quality`): everyone's, oneself
   *  included, in the first message; what changed in later ones. */
  connectionQuality?(list: ParticipantQuality[]): void;
  /** The answer to `get_stats` (for debugging). */
  stats?(msg: StatsMessage): void;
  draining(): void;
  /** The session is over for good (no reconnection). */
  ended(end: SessionEnd): void;
  /** The local tracks to publish, read at every (re)join. */
  local(source: PublishedSource): LocalSource;
}

class Stale extends Error {}

export class Session {
  private ws: WebSocket | null = null;
  /** Bumped at every teardown: callbacks of an older connection are ignored. */
  private epoch = 0;
  private isJoined = false;
  private over = false;
  private attempt = 0;
  private retryTimer: number | undefined;
  private keepaliveTimer: number | undefined;
  private lastHeard = 0;
  private lastPing = 0;
  /** When the first ping not followed by any message went out (0: none). */
  private unansweredSince = 0;
  private joinedAt = 0;

  private permissions: Permissions | null = null;
  private rtcConfig: RTCConfiguration = {};

  private pub: RTCPeerConnection | null = null;
  private pubStream: MediaStream | null = null;
  private readonly pubTransceivers = new Map<PublishedSource, RTCRtpTransceiver>();
  private readonly pubMuted = new Map<PublishedSource, boolean>();
  /** Mute state as last told to the server (in publish_offer or mute). */
  private readonly announcedMuted = new Map<PublishedSource, boolean>();
  private negotiating = false;
  private negotiateAgain = false;
  private pendingAnswer: { resolve(sdp: string): void; reject(err: Error): void } | null = null;

  private sub: RTCPeerConnection | null = null;
  private subQueue: Promise<void> = Promise.resolve();
  private subMap = new Map<string, SubscribedTrack>();

  constructor(
    private readonly token: string,
    private readonly room: string,
    private readonly h: SessionHandlers,
  ) {}

  start(): void {
    this.connect();
  }

  get joined(): boolean {
    return this.isJoined;
  }

  get ended(): boolean {
    return this.over;
  }

  /** Whether this participant may moderate (token or promotion). */
  get moderator(): boolean {
    return !!this.permissions?.moderate;
  }

  /** Sends a classroom message (chat, hand, moderation); false when not joined. */
  sendMessage(msg: ClassroomMessage): boolean {
    if (!this.isJoined || this.over || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.send(msg);
    return true;
  }

  /** Whether the token lets this participant publish `source`. */
  mayPublish(source: Source): boolean {
    const p = this.permissions;
    return !!p && p.publish && p.publish_sources.includes(source);
  }

  /** Sends `leave` and closes everything. */
  leave(): void {
    if (this.over) return;
    this.send({ type: 'leave' });
    this.finish({ kind: 'left' });
  }

  /** Stops without telling the handlers (the page is going away). */
  close(): void {
    if (this.over) return;
    this.send({ type: 'leave' });
    this.over = true;
    this.teardown();
  }

  /**
   * The local track or mute state of `source` changed. The room view has
   * already updated what `local()` returns; this brings the server in step.
   */
  async updateSource(source: PublishedSource): Promise<void> {
    if (!this.isJoined || this.over) return;
    const { track, muted } = this.h.local(source);
    const tr = this.pubTransceivers.get(source);
    if (tr) {
      if (tr.sender.track !== track) {
        try {
          await tr.sender.replaceTrack(track);
        } catch (err) {
          console.warn('replaceTrack failed', err);
        }
      }
      this.pubMuted.set(source, muted || !track);
      this.syncMute();
    } else if (track && this.mayPublish(source)) {
      this.addPublished(source, track, muted);
      void this.negotiate();
    }
  }

  // ---- connection -------------------------------------------------------

  private connect(): void {
    const epoch = this.epoch;
    this.h.state(this.attempt === 0 ? { state: 'connecting' } : { state: 'reconnecting', attempt: this.attempt, delayMs: 0 });
    let ws: WebSocket;
    try {
      ws = new WebSocket(signallingUrl());
    } catch (err) {
      console.warn('WebSocket failed', err);
      this.lost();
      return;
    }
    this.ws = ws;
    this.lastHeard = Date.now();
    this.unansweredSince = 0;
    ws.onopen = () => {
      if (epoch !== this.epoch) return;
      const join: ClientMessage = { type: 'join', token: this.token, room: this.room, client: CLIENT_NAME };
      this.send(join);
      this.lastHeard = this.lastPing = Date.now();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (epoch !== this.epoch) return;
      this.lastHeard = Date.now();
      this.unansweredSince = 0;
      if (typeof ev.data !== 'string') return;
      const msg = parseServerMessage(ev.data);
      if (msg) this.onMessage(msg);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (epoch !== this.epoch) return;
      console.info('signalling closed', ev.code, ev.reason);
      this.lost();
    };
    ws.onerror = () => {
      // A close event follows.
    };
    this.keepaliveTimer = window.setInterval(() => this.keepalive(epoch), 1_000);
  }

  /**
   * Runs every second: a ping every 5 s, and the link counts as lost when a
   * ping got no answer (nor any other message) within 10 s. Measuring from
   * the ping rather than from the last message keeps a background tab, whose
   * timers the browser slows down to once a minute, from losing its link.
   */
  private keepalive(epoch: number): void {
    if (epoch !== this.epoch) return;
    const now = Date.now();
    const open = this.ws?.readyState === WebSocket.OPEN;
    if (!open) {
      // Still opening: give up after the same delay.
      if (now - this.lastHeard > SILENCE_LIMIT_MS) {
        console.warn('the signalling socket did not open in time');
        this.lost();
      }
      return;
    }
    if (this.unansweredSince && now - this.unansweredSince >= SILENCE_LIMIT_MS) {
      console.warn('no answer from the server for', now - this.unansweredSince, 'ms');
      this.lost();
      return;
    }
    if (now - this.lastPing >= PING_INTERVAL_MS) {
      this.lastPing = now;
      if (!this.unansweredSince) this.unansweredSince = now;
      this.send({ type: 'ping' });
    }
  }

  private send(msg: ClientMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** The connection dropped: tear down and try again after a backoff. */
  private lost(): void {
    if (this.over) return;
    this.teardown();
    // A session that had been up for a while starts the backoff afresh; one
    // that keeps failing right after joining keeps backing off.
    if (this.joinedAt && Date.now() - this.joinedAt > 30_000) this.attempt = 0;
    this.joinedAt = 0;
    const delayMs = Math.min(1_000 * 2 ** this.attempt, BACKOFF_MAX_MS);
    this.attempt += 1;
    this.h.state({ state: 'reconnecting', attempt: this.attempt, delayMs });
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.over) this.connect();
    }, delayMs);
  }

  private finish(end: SessionEnd): void {
    if (this.over) return;
    this.over = true;
    this.teardown();
    this.h.ended(end);
  }

  private teardown(): void {
    this.epoch += 1;
    this.isJoined = false;
    window.clearInterval(this.keepaliveTimer);
    window.clearTimeout(this.retryTimer);
    this.keepaliveTimer = this.retryTimer = undefined;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      // Let a queued `leave` go out before the close frame.
      try {
        ws.close(1000);
      } catch {
        // Already closed.
      }
    }
    this.pendingAnswer?.reject(new Stale());
    this.pendingAnswer = null;
    this.negotiating = this.negotiateAgain = false;
    this.pub?.close();
    this.sub?.close();
    this.pub = this.sub = null;
    this.pubStream = null;
    this.pubTransceivers.clear();
    this.pubMuted.clear();
    this.announcedMuted.clear();
    this.subMap.clear();
    this.subQueue = Promise.resolve();
    this.h.remoteTracks([]);
  }

  // ---- messages ----------------------------------------------------------

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'joined':
        this.onJoined(msg);
        break;
      case 'participant_joined':
        this.h.participantJoined(msg.participant);
        break;
      case 'participant_updated':
        this.h.participantUpdated(msg.participant);
        break;
      case 'participants_updated':
        this.h.participantsUpdated(msg.participants);
        break;
      case 'participant_left':
        this.h.participantLeft(msg.participant, msg.reason);
        break;
      case 'publish_answer': {
        const pending = this.pendingAnswer;
        this.pendingAnswer = null;
        if (pending) pending.resolve(msg.sdp);
        else console.warn('publish_answer without a pending offer');
        break;
      }
      case 'subscribe_offer':
        this.onSubscribeOffer(msg.sdp, msg.tracks);
        break;
      case 'pong':
        break;
      case 'error':
        this.onError(msg.code, msg.message, msg.request);
        break;
      case 'bye':
        this.onBye(msg.reason, msg.message);
        break;
      case 'waiting':
        // Admitted later with `joined`; until then only ping/pong.
        this.h.state({ state: 'waiting' });
        break;
      case 'draining':
        this.h.draining();
        break;
      case 'room_updated':
        this.h.roomUpdated(msg.room);
        break;
      case 'chat':
        this.h.chat(msg.message);
        break;
      case 'lobby':
        this.h.lobby(msg.waiting);
        break;
      case 'mute_requested':
        this.h.muteRequested(msg.source, msg.by);
        break;
      case 'unmute_requested':
        this.h.unmuteRequested(msg.source, msg.by);
        break;
      case 'permissions_updated':
        this.permissions = msg.permissions;
        this.h.permissionsUpdated(msg.role, msg.permissions);
        break;
      case 'speakers':
        this.h.speakers?.(msg.speakers);
        break;
      case 'connection_quality':
        this.h.connectionQuality?.(msg.participants);
        break;
      case 'stats':
        this.h.stats?.(msg);
        break;
      case 'publish_layers':
        void this.applyLayers(msg.source, msg.layers);
        break;
      default:
        console.warn('unknown server message', msg);
    }
  }

  private onError(code: ErrorCode, message: string, request?: string): void {
    console.warn('server error', code, message, request ?? '');
    // Refusals of the token or the room end the session for good. Any other
    // error before `joined` ends this attempt (the next one may work); after
    // `joined` the session goes on (`forbidden` then refers to an offer).
    if (code === 'unauthorized' || code === 'room_full' || code === 'room_locked' || code === 'room_ended' || (!this.isJoined && FATAL_ERRORS.includes(code))) {
      this.finish({ kind: 'error', code, message });
      return;
    }
    if (!this.isJoined) {
      this.lost();
      return;
    }
    // An error with `request: "publish_offer"` refuses the pending offer (no
    // publish_answer follows). Without `request` (older servers), an error
    // arriving while an offer waits is taken as its refusal.
    const aboutOffer =
      request !== undefined
        ? request === 'publish_offer'
        : code === 'sdp_rejected' || code === 'forbidden' || code === 'internal' || code === 'bad_request';
    if (this.pendingAnswer && aboutOffer) {
      const pending = this.pendingAnswer;
      this.pendingAnswer = null;
      pending.reject(new Error(message || code));
      return;
    }
    this.h.notice(code, message, request);
  }

  private onBye(reason: LeaveReason, message?: string): void {
    console.info('bye from the server:', reason);
    switch (reason) {
      case 'replaced':
      case 'left':
      case 'removed':
      case 'denied':
      case 'room_ended':
        this.finish(message !== undefined ? { kind: 'bye', reason, message } : { kind: 'bye', reason });
        break;
      default:
        // timeout, disconnected, media_failed, server_shutdown: try again.
        this.lost();
    }
  }

  private onJoined(msg: JoinedMessage): void {
    if (this.isJoined) return;
    this.isJoined = true;
    this.joinedAt = Date.now();
    this.permissions = msg.permissions;
    this.rtcConfig = {
      iceServers: msg.ice_servers.map((s) => {
        const server: RTCIceServer = { urls: s.urls };
        if (s.username !== undefined) server.username = s.username;
        if (s.credential !== undefined) server.credential = s.credential;
        return server;
      }),
      bundlePolicy: 'max-bundle',
      rtcpMuxPolicy: 'require',
    };
    const epoch = this.epoch;
    // Not max-bundle on the subscriber: an offer whose m-lines are all
    // stopped has no BUNDLE group, which Chromium refuses under max-bundle.
    // Amphi's offers always start with an inactive m-line that keeps the
    // group alive (docs/protocol.md), so this is only a safety net; the offers
    // bundle everything, so it costs nothing.
    const sub = new RTCPeerConnection({ ...this.rtcConfig, bundlePolicy: 'balanced' });
    this.sub = sub;
    sub.onconnectionstatechange = () => {
      if (epoch !== this.epoch) return;
      console.info('subscriber connection', sub.connectionState);
      if (sub.connectionState === 'failed') {
        console.warn('subscriber connection failed');
        this.lost();
      }
    };
    sub.ontrack = () => {
      if (epoch === this.epoch) this.emitRemoteTracks();
    };
    this.h.state({ state: 'joined' });
    this.h.joined(msg);
    if (this.over || epoch !== this.epoch) return;

    let any = false;
    for (const source of ['microphone', 'camera', 'screen_share', 'screen_share_audio'] as const) {
      const { track, muted } = this.h.local(source);
      if (track && this.mayPublish(source)) {
        this.addPublished(source, track, muted);
        any = true;
      }
    }
    if (any) void this.negotiate();
  }

  // ---- publisher -----------------------------------------------------------

  private ensurePublisher(): RTCPeerConnection {
    if (this.pub) return this.pub;
    const epoch = this.epoch;
    const pc = new RTCPeerConnection(this.rtcConfig);
    pc.onconnectionstatechange = () => {
      if (epoch !== this.epoch) return;
      console.info('publisher connection', pc.connectionState);
      if (pc.connectionState === 'failed') {
        console.warn('publisher connection failed');
        this.lost();
      }
    };
    this.pub = pc;
    this.pubStream = new MediaStream();
    return pc;
  }

  private addPublished(source: PublishedSource, track: MediaStreamTrack, muted: boolean): void {
    const pc = this.ensurePublisher();
    const init: RTCRtpTransceiverInit = { direction: 'sendonly', streams: [this.pubStream!] };
    if (source === 'camera') init.sendEncodings = cameraEncodings(track);
    if (source === 'screen_share') {
      // Text must stay sharp: under pressure, fewer frames, same resolution.
      track.contentHint = 'detail';
      init.sendEncodings = [{ maxBitrate: 2_500_000, scalabilityMode: 'L1T3' } as RTCRtpEncodingParameters];
    }
    const tr = pc.addTransceiver(track, init);
    if (source === 'screen_share') {
      const params = tr.sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      tr.sender.setParameters(params).catch((err) => console.warn('screen share parameters', err));
    }
    this.pubTransceivers.set(source, tr);
    this.pubMuted.set(source, muted);
  }

  /**
   * Dynacast: the server says which encodings of one of our tracks anybody
   * needs; the browser stops encoding the others.
   */
  private async applyLayers(source: Source, layers: PublishLayer[]): Promise<void> {
    const tr = this.pubTransceivers.get(source as PublishedSource);
    if (!tr) return;
    const params = tr.sender.getParameters();
    let changed = false;
    for (const enc of params.encodings) {
      const want = layers.find((l) => (l.rid ?? null) === (enc.rid ?? null));
      if (want && enc.active !== want.active) {
        enc.active = want.active;
        changed = true;
      }
    }
    if (!changed) return;
    try {
      await tr.sender.setParameters(params);
    } catch (err) {
      console.warn('could not change the encodings', err);
    }
  }

  /**
   * How we show a track we receive (device pixels), so the server sends no
   * larger layer than that, and nothing for a hidden tile.
   */
  trackSettings(track: string, visible: boolean, width: number, height: number): void {
    if (!this.isJoined || this.over) return;
    this.send({ type: 'track_settings', track, visible, width: Math.round(width), height: Math.round(height) });
  }

  /** Offers the publisher connection again; one offer at a time. */
  private async negotiate(): Promise<void> {
    if (this.negotiating) {
      this.negotiateAgain = true;
      return;
    }
    const pc = this.pub;
    if (!pc) return;
    const epoch = this.epoch;
    this.negotiating = true;
    try {
      do {
        this.negotiateAgain = false;
        const offer = await pc.createOffer();
        if (epoch !== this.epoch) throw new Stale();
        await pc.setLocalDescription(offer);
        if (epoch !== this.epoch) throw new Stale();
        const tracks = [];
        for (const [source, tr] of this.pubTransceivers) {
          if (!tr.mid || tr.currentDirection === 'stopped') continue;
          const muted = this.pubMuted.get(source) ?? false;
          tracks.push({ mid: tr.mid, source, muted });
          this.announcedMuted.set(source, muted);
        }
        const answer = new Promise<string>((resolve, reject) => {
          this.pendingAnswer = { resolve, reject };
        });
        this.send({ type: 'publish_offer', sdp: pc.localDescription!.sdp, tracks });
        const sdp = await answer;
        if (epoch !== this.epoch) throw new Stale();
        await pc.setRemoteDescription({ type: 'answer', sdp });
      } while (this.negotiateAgain && epoch === this.epoch);
    } catch (err) {
      if (err instanceof Stale || epoch !== this.epoch) return;
      console.warn('publishing failed', err);
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => undefined);
      }
      this.h.notice('publish', err instanceof Error ? err.message : String(err));
    } finally {
      if (epoch === this.epoch) this.negotiating = false;
    }
    if (epoch === this.epoch) this.syncMute();
  }

  /** Tells the server about mute changes it does not know yet. */
  private syncMute(): void {
    if (this.negotiating) return; // sent after the answer
    for (const [source, muted] of this.pubMuted) {
      if (this.announcedMuted.get(source) !== muted) {
        this.announcedMuted.set(source, muted);
        this.send({ type: 'mute', source, muted });
      }
    }
  }

  // ---- subscriber ----------------------------------------------------------

  private onSubscribeOffer(sdp: string, tracks: SubscribedTrack[]): void {
    const epoch = this.epoch;
    this.subQueue = this.subQueue
      .then(async () => {
        const pc = this.sub;
        if (epoch !== this.epoch || !pc) return;
        this.subMap = new Map(tracks.map((t) => [t.mid, t]));
        await pc.setRemoteDescription({ type: 'offer', sdp });
        const answer = await pc.createAnswer();
        if (epoch !== this.epoch) return;
        await pc.setLocalDescription(answer);
        if (epoch !== this.epoch) return;
        this.send({ type: 'subscribe_answer', sdp: pc.localDescription!.sdp });
        this.emitRemoteTracks();
      })
      .catch((err: unknown) => {
        if (epoch !== this.epoch) return;
        console.error('subscribe offer failed', err, JSON.stringify({ sdp, tracks }));
        // The server waits for an answer we cannot give: start afresh.
        this.lost();
      });
  }

  private emitRemoteTracks(): void {
    const pc = this.sub;
    if (!pc) return;
    const out: RemoteTrack[] = [];
    for (const tr of pc.getTransceivers()) {
      if (!tr.mid || tr.currentDirection === 'stopped') continue;
      const info = this.subMap.get(tr.mid);
      const track = tr.receiver.track;
      if (!info || !track || track.kind !== info.kind) continue;
      out.push({
        mid: tr.mid,
        participant: info.participant,
        trackId: info.track,
        kind: info.kind,
        source: info.source,
        track,
      });
    }
    this.h.remoteTracks(out);
  }
}

/**
 * The camera in three simulcast layers (RFC 8853), lowest first: the
 * server forwards to each subscriber the one its tile and its bandwidth
 * allow, and tells us to stop encoding those nobody needs (so a call of two
 * encodes one layer). A camera smaller than 720p gets fewer layers: a layer
 * below about 160 pixels wide is not worth encoding.
 */
function cameraEncodings(track: MediaStreamTrack): RTCRtpEncodingParameters[] {
  const width = track.getSettings().width ?? 1280;
  const layers = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
    { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
  ].filter((l) => width / l.scaleResolutionDownBy >= 160);
  return layers.map((l) => ({ ...l, scalabilityMode: 'L1T3' }) as RTCRtpEncodingParameters);
}

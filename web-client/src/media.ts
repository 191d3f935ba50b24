// Local camera and microphone: acquiring them, and explaining failures.

export type MediaIssue = 'denied' | 'missing' | 'busy' | 'insecure';

/** What the user brings into the room. Owned by the join page, then the room. */
export interface LocalMedia {
  /** Microphone track; kept while muted (muting sets `enabled = false`). */
  mic: MediaStreamTrack | null;
  micMuted: boolean;
  /** Live camera track; null while the camera is off (the device is released). */
  cam: MediaStreamTrack | null;
  micDeviceId: string | null;
  camDeviceId: string | null;
}

// 720p, sent in three simulcast layers (session.ts): each receiver gets the
// layer its tile and its bandwidth call for, and the server has the
// publisher stop encoding layers nobody needs.
export const VIDEO_CONSTRAINTS: MediaTrackConstraints = {
  width: { ideal: 1280 },
  height: { ideal: 720 },
  frameRate: { ideal: 30, max: 30 },
};

export const AUDIO_CONSTRAINTS: MediaTrackConstraints = {
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
};

const DEVICE_KEYS = { audio: 'amphi.microphone', video: 'amphi.camera' } as const;

export function rememberedDevice(kind: 'audio' | 'video'): string | null {
  try {
    return localStorage.getItem(DEVICE_KEYS[kind]);
  } catch {
    return null;
  }
}

export function rememberDevice(kind: 'audio' | 'video', deviceId: string | null): void {
  try {
    if (deviceId) localStorage.setItem(DEVICE_KEYS[kind], deviceId);
    else localStorage.removeItem(DEVICE_KEYS[kind]);
  } catch {
    // Not remembered: fine.
  }
}

export function mediaAvailable(): boolean {
  return !!navigator.mediaDevices?.getUserMedia;
}

export function classify(err: unknown): MediaIssue {
  const name = err instanceof Error || err instanceof DOMException ? err.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
    case 'PermissionDeniedError':
      return 'denied';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'missing';
    default:
      return 'busy';
  }
}

function constraints(kind: 'audio' | 'video', deviceId: string | null): MediaTrackConstraints {
  const base = kind === 'audio' ? AUDIO_CONSTRAINTS : VIDEO_CONSTRAINTS;
  return deviceId ? { ...base, deviceId: { exact: deviceId } } : { ...base };
}

/** One track of `kind`, from `deviceId` if it still exists, else the default device. */
export async function getTrack(
  kind: 'audio' | 'video',
  deviceId: string | null,
): Promise<MediaStreamTrack> {
  if (!mediaAvailable()) throw new DOMException('no mediaDevices', 'SecurityError');
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints(kind, deviceId) });
    return firstTrack(stream, kind);
  } catch (err) {
    // A remembered device that is gone: fall back to the default one.
    if (deviceId && classify(err) === 'missing') {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints(kind, null) });
      return firstTrack(stream, kind);
    }
    throw err;
  }
}

function firstTrack(stream: MediaStream, kind: 'audio' | 'video'): MediaStreamTrack {
  const track = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
  for (const other of stream.getTracks()) if (other !== track) other.stop();
  if (!track) throw new DOMException('no track', 'NotFoundError');
  return track;
}

export interface Acquired {
  mic: MediaStreamTrack | null;
  cam: MediaStreamTrack | null;
  micIssue: MediaIssue | null;
  camIssue: MediaIssue | null;
}

/**
 * Asks for the microphone and/or camera, in one prompt when both are wanted.
 * If that fails, asks for each alone, to tell which one is refused or missing.
 */
export async function acquire(
  wantMic: boolean,
  wantCam: boolean,
  micId: string | null,
  camId: string | null,
): Promise<Acquired> {
  const out: Acquired = { mic: null, cam: null, micIssue: null, camIssue: null };
  if (!wantMic && !wantCam) return out;
  if (!mediaAvailable()) {
    if (wantMic) out.micIssue = 'insecure';
    if (wantCam) out.camIssue = 'insecure';
    return out;
  }
  if (wantMic && wantCam) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: constraints('audio', micId),
        video: constraints('video', camId),
      });
      out.mic = stream.getAudioTracks()[0] ?? null;
      out.cam = stream.getVideoTracks()[0] ?? null;
      if (out.mic && out.cam) return out;
      out.mic?.stop();
      out.cam?.stop();
      out.mic = out.cam = null;
    } catch {
      // Find out which one fails, below.
    }
  }
  if (wantMic) {
    try {
      out.mic = await getTrack('audio', micId);
    } catch (err) {
      out.micIssue = classify(err);
    }
  }
  if (wantCam) {
    try {
      out.cam = await getTrack('video', camId);
    } catch (err) {
      out.camIssue = classify(err);
    }
  }
  return out;
}

export function stopAll(media: LocalMedia): void {
  media.mic?.stop();
  media.cam?.stop();
  media.mic = null;
  media.cam = null;
}

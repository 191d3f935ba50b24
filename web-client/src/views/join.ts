// Join page (/room/<ROOM>#token=…, before entering): camera and microphone
// preview, device choice, on/off toggles, and the Join button.
import { h, icon, initials, mount } from '../dom';
import { t, type MessageKey } from '../i18n';
import {
  acquire,
  getTrack,
  classify,
  mediaAvailable,
  rememberDevice,
  rememberedDevice,
  type LocalMedia,
  type MediaIssue,
} from '../media';
import type { TokenClaims } from '../token';

export interface RoomContext {
  room: string;
  token: string;
  claims: TokenClaims | null;
}

const ISSUE_KEYS: Record<'audio' | 'video', Record<MediaIssue, MessageKey>> = {
  audio: { denied: 'join.micDenied', missing: 'join.micMissing', busy: 'join.micBusy', insecure: 'join.insecure' },
  video: { denied: 'join.cameraDenied', missing: 'join.cameraMissing', busy: 'join.cameraBusy', insecure: 'join.insecure' },
};

export function displayName(claims: TokenClaims | null): string {
  return claims?.name || claims?.sub || '';
}

/** Whether the token's role publishes nothing by default (a guest). */
export function receiveOnly(claims: TokenClaims | null): boolean {
  return claims?.role === 'guest';
}

export function showJoin(ctx: RoomContext, enter: (media: LocalMedia) => void): void {
  const media: LocalMedia = {
    mic: null,
    micMuted: false,
    cam: null,
    micDeviceId: rememberedDevice('audio'),
    camDeviceId: rememberedDevice('video'),
  };
  const issues: { audio: MediaIssue | null; video: MediaIssue | null } = { audio: null, video: null };
  let entered = false;
  let busy = false;
  const guest = receiveOnly(ctx.claims);
  const name = displayName(ctx.claims);

  // -- elements
  const video = h('video', { class: 'mirror', attrs: { autoplay: true, playsinline: true, muted: true, 'aria-hidden': 'true' } });
  video.muted = true;
  const placeholder = h(
    'div',
    { class: 'placeholder' },
    h('span', { class: 'avatar', text: initials(name || '?'), attrs: { 'aria-hidden': 'true' } }),
    h('span', { class: 'placeholder-text', text: t('join.previewOff') }),
  );
  const micBtn = h('button', { class: 'round', attrs: { type: 'button', 'data-testid': 'preview-toggle-mic' } });
  const camBtn = h('button', { class: 'round', attrs: { type: 'button', 'data-testid': 'preview-toggle-camera' } });
  const preview = h(
    'div',
    { class: 'preview' },
    video,
    placeholder,
    h('div', { class: 'preview-controls' }, micBtn, camBtn),
  );

  const camSelect = h('select', { attrs: { id: 'camera-select', 'data-testid': 'camera-select' } });
  const micSelect = h('select', { attrs: { id: 'mic-select', 'data-testid': 'mic-select' } });
  const nameInput = h('input', {
    attrs: { id: 'display-name', type: 'text', readonly: true, 'aria-describedby': 'name-hint', 'data-testid': 'display-name' },
  });
  nameInput.value = name;
  const status = h('div', { class: 'issues', attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'media-issues' } });
  const joinBtn = h('button', {
    class: 'btn primary big',
    text: t('join.join'),
    attrs: { type: 'button', 'data-testid': 'join' },
  });

  const devices = h(
    'div',
    { class: 'devices' },
    h('label', { text: t('join.camera'), attrs: { for: 'camera-select' } }),
    camSelect,
    h('label', { text: t('join.microphone'), attrs: { for: 'mic-select' } }),
    micSelect,
  );

  mount(
    h(
      'main',
      { class: 'page join' },
      h(
        'div',
        { class: 'join-layout' },
        guest ? null : preview,
        h(
          'div',
          { class: 'join-side' },
          h('p', { class: 'brand', text: t('app.name') }),
          h('h1', { text: t('join.title') }),
          h('p', { class: 'muted room-name', text: t('join.room', { room: ctx.room }) }),
          h('label', { text: t('join.name'), attrs: { for: 'display-name' } }),
          nameInput,
          h('p', { class: 'hint', text: t('join.nameHint'), attrs: { id: 'name-hint' } }),
          guest ? null : devices,
          status,
          h('div', { class: 'actions' }, joinBtn),
        ),
      ),
    ),
  );

  // -- rendering
  function render(): void {
    const camOn = !!media.cam;
    if (camOn) {
      const cur = video.srcObject instanceof MediaStream ? video.srcObject.getVideoTracks()[0] : null;
      if (cur !== media.cam) video.srcObject = new MediaStream([media.cam!]);
    } else {
      video.srcObject = null;
    }
    preview.classList.toggle('cam-off', !camOn);
    const micOn = !!media.mic && !media.micMuted;
    micBtn.replaceChildren(icon(micOn ? 'mic' : 'micOff'));
    micBtn.classList.toggle('off', !micOn);
    micBtn.setAttribute('aria-label', micOn ? t('room.micOn') : t('room.micOff'));
    micBtn.title = micBtn.getAttribute('aria-label')!;
    micBtn.dataset.state = micOn ? 'on' : 'off';
    camBtn.replaceChildren(icon(camOn ? 'cam' : 'camOff'));
    camBtn.classList.toggle('off', !camOn);
    camBtn.setAttribute('aria-label', camOn ? t('room.camOn') : t('room.camOff'));
    camBtn.title = camBtn.getAttribute('aria-label')!;
    camBtn.dataset.state = camOn ? 'on' : 'off';
    const lines: string[] = [];
    if (guest) lines.push(t('join.receiveOnly'));
    if (issues.video) lines.push(t(ISSUE_KEYS.video[issues.video]));
    if (issues.audio && !(issues.audio === 'insecure' && issues.video === 'insecure')) {
      lines.push(t(ISSUE_KEYS.audio[issues.audio]));
    }
    status.replaceChildren(...lines.map((l) => h('p', { text: l })));
    status.classList.toggle('has-issues', lines.length > 0 && !guest);
  }

  async function fillDevices(): Promise<void> {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    let list: MediaDeviceInfo[] = [];
    try {
      list = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    if (entered) return;
    fill(camSelect, list.filter((d) => d.kind === 'videoinput'), media.cam, 'join.camera');
    fill(micSelect, list.filter((d) => d.kind === 'audioinput'), media.mic, 'join.microphone');
  }

  function fill(select: HTMLSelectElement, list: MediaDeviceInfo[], track: MediaStreamTrack | null, kindKey: MessageKey): void {
    // Without permission, browsers list devices with empty ids and labels.
    const usable = list.filter((d) => d.deviceId);
    if (usable.length === 0) {
      select.replaceChildren(h('option', { text: list.length ? t('join.deviceDefault') : t('join.noDevice'), attrs: { value: '' } }));
      select.disabled = true;
      return;
    }
    select.disabled = false;
    select.replaceChildren(
      ...usable.map((d, i) =>
        h('option', {
          text: d.label || t('join.deviceUnnamed', { kind: t(kindKey), n: i + 1 }),
          attrs: { value: d.deviceId },
        }),
      ),
    );
    const current = track?.getSettings().deviceId;
    if (current && usable.some((d) => d.deviceId === current)) select.value = current;
  }

  async function startCamera(deviceId: string | null): Promise<void> {
    try {
      const track = await getTrack('video', deviceId);
      if (entered) {
        track.stop();
        return;
      }
      media.cam?.stop();
      media.cam = track;
      media.camDeviceId = track.getSettings().deviceId ?? deviceId;
      issues.video = null;
    } catch (err) {
      issues.video = classify(err);
    }
  }

  async function startMic(deviceId: string | null): Promise<void> {
    try {
      const track = await getTrack('audio', deviceId);
      if (entered) {
        track.stop();
        return;
      }
      media.mic?.stop();
      media.mic = track;
      track.enabled = !media.micMuted;
      media.micDeviceId = track.getSettings().deviceId ?? deviceId;
      issues.audio = null;
    } catch (err) {
      issues.audio = classify(err);
    }
  }

  async function withBusy(fn: () => Promise<void>): Promise<void> {
    if (busy || entered) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
      if (!entered) {
        render();
        void fillDevices();
      }
    }
  }

  // -- events
  camBtn.addEventListener('click', () =>
    withBusy(async () => {
      if (media.cam) {
        media.cam.stop();
        media.cam = null;
      } else {
        await startCamera(media.camDeviceId);
      }
    }),
  );
  micBtn.addEventListener('click', () =>
    withBusy(async () => {
      if (media.mic) {
        media.micMuted = !media.micMuted;
        media.mic.enabled = !media.micMuted;
      } else {
        media.micMuted = false;
        await startMic(media.micDeviceId);
      }
    }),
  );
  camSelect.addEventListener('change', () =>
    withBusy(async () => {
      rememberDevice('video', camSelect.value || null);
      media.camDeviceId = camSelect.value || null;
      await startCamera(media.camDeviceId);
    }),
  );
  micSelect.addEventListener('change', () =>
    withBusy(async () => {
      rememberDevice('audio', micSelect.value || null);
      media.micDeviceId = micSelect.value || null;
      await startMic(media.micDeviceId);
    }),
  );
  const onDeviceChange = () => void fillDevices();
  navigator.mediaDevices?.addEventListener?.('devicechange', onDeviceChange);

  joinBtn.addEventListener('click', () => {
    if (entered) return;
    entered = true;
    joinBtn.disabled = true;
    joinBtn.textContent = t('join.joining');
    navigator.mediaDevices?.removeEventListener?.('devicechange', onDeviceChange);
    video.srcObject = null;
    enter(media);
  });

  // -- start
  render();
  if (guest) return;
  if (!mediaAvailable()) {
    issues.audio = issues.video = 'insecure';
    render();
    return;
  }
  status.replaceChildren(h('p', { class: 'muted', text: t('join.requesting') }));
  void withBusy(async () => {
    const got = await acquire(true, true, media.micDeviceId, media.camDeviceId);
    if (entered) {
      got.mic?.stop();
      got.cam?.stop();
      return;
    }
    media.mic = got.mic;
    media.cam = got.cam;
    issues.audio = got.micIssue;
    issues.video = got.camIssue;
    if (got.mic) media.micDeviceId = got.mic.getSettings().deviceId ?? media.micDeviceId;
    if (got.cam) media.camDeviceId = got.cam.getSettings().deviceId ?? media.camDeviceId;
  });
}

/** Autojoin (#autojoin=1): default devices, both on, no join page. */
export async function defaultMedia(claims: TokenClaims | null): Promise<LocalMedia> {
  const media: LocalMedia = {
    mic: null,
    micMuted: false,
    cam: null,
    micDeviceId: rememberedDevice('audio'),
    camDeviceId: rememberedDevice('video'),
  };
  if (receiveOnly(claims)) return media;
  const got = await acquire(true, true, media.micDeviceId, media.camDeviceId);
  media.mic = got.mic;
  media.cam = got.cam;
  return media;
}

// One participant's tile: video (or initials when the camera is off), the
// name, a muted-microphone badge, and hidden <audio> elements for their sound.
//
// Test hooks: the tile is `data-testid="tile"` (a screen share is
// `data-testid="screen-tile"`) with `data-participant-id` and
// `data-participant-name`; `data-mic` / `data-camera` are "on" or "off";
// a raised hand is a `data-testid="hand"` element inside the tile;
// `data-speaking="true"` marks the dominant speaker (views/speakers.ts) and
// `data-stage="true"` the tile a speaker view shows large.
import { h, icon, initials } from '../dom';
import { t } from '../i18n';
import type { ConnectionQuality } from '../protocol';
import { qualityBadge, showQuality } from './quality';

export class Tile {
  readonly el: HTMLElement;
  private readonly video: HTMLVideoElement;
  private readonly avatar: HTMLElement;
  private readonly label: HTMLElement;
  private readonly micBadge: HTMLElement;
  private readonly camBadge: HTMLElement;
  private readonly audioBox: HTMLElement;
  private readonly caption: HTMLElement;
  private hand: HTMLElement | null = null;
  private pinBtn: HTMLButtonElement | null = null;
  private quality: { badge: HTMLElement; level: ConnectionQuality } | null = null;
  private readonly audios = new Map<MediaStreamTrack, HTMLAudioElement>();
  private videoTrack: MediaStreamTrack | null = null;

  constructor(
    testid: 'tile' | 'screen-tile',
    private readonly self: boolean,
    private readonly onAudioBlocked: () => void = () => undefined,
  ) {
    this.video = h('video', { attrs: { autoplay: true, playsinline: true, muted: true } });
    this.video.muted = true; // sound goes through the <audio> elements
    if (self) this.video.classList.add('mirror');
    this.avatar = h('span', { class: 'avatar', attrs: { 'aria-hidden': 'true' } });
    this.label = h('span', { class: 'name' });
    this.micBadge = h('span', { class: 'badge mic-off', attrs: { role: 'img', 'aria-label': t('room.micMuted'), title: t('room.micMuted') } }, icon('micOff'));
    this.camBadge = h('span', { class: 'badge cam-off', attrs: { role: 'img', 'aria-label': t('room.camOffLabel'), title: t('room.camOffLabel') } }, icon('camOff'));
    this.audioBox = h('div', { class: 'audio-box', attrs: { hidden: true } });
    this.caption = h('div', { class: 'caption' }, this.micBadge, this.camBadge, this.label);
    this.el = h(
      'div',
      { class: 'tile', attrs: { 'data-testid': testid, role: 'group' } },
      this.video,
      h('div', { class: 'placeholder' }, this.avatar),
      this.caption,
      this.audioBox,
    );
    this.setMicMuted(false);
    this.setVideo(null, false);
  }

  setIdentity(id: string | null, name: string, label: string = name): void {
    if (id) this.el.dataset.participantId = id;
    else delete this.el.dataset.participantId;
    if (this.el.dataset.participantName !== name) this.el.dataset.participantName = name;
    if (this.label.textContent !== label) {
      this.label.textContent = label;
      this.el.setAttribute('aria-label', label);
    }
    const ini = initials(name);
    if (this.avatar.textContent !== ini) this.avatar.textContent = ini;
  }

  /**
   * Adds a button that pins this tile: shown across the whole grid, so the
   * server sends its largest layer.
   */
  enablePin(onToggle: () => void): void {
    if (this.pinBtn) return;
    this.pinBtn = h('button', { class: 'pin', attrs: { type: 'button', 'data-testid': 'pin', 'aria-pressed': 'false' } }, icon('pin'));
    this.pinBtn.addEventListener('click', onToggle);
    this.el.appendChild(this.pinBtn);
    this.setPinned(false);
  }

  setPinned(on: boolean): void {
    this.el.classList.toggle('pinned', on);
    this.el.dataset.pinned = on ? 'true' : 'false';
    if (!this.pinBtn) return;
    const name = this.el.dataset.participantName ?? '';
    const label = on ? t('tile.unpin', { name }) : t('tile.pin', { name });
    this.pinBtn.setAttribute('aria-pressed', String(on));
    this.pinBtn.setAttribute('aria-label', label);
    this.pinBtn.title = label;
  }

  /** The element the video plays in (its size is what the server fits). */
  get videoElement(): HTMLVideoElement {
    return this.video;
  }

  /** Shows `track` when `show`, else the initials placeholder. */
  setVideo(track: MediaStreamTrack | null, show: boolean): void {
    if (track !== this.videoTrack) {
      this.videoTrack = track;
      this.video.srcObject = track ? new MediaStream([track]) : null;
      if (track) this.video.play().catch(() => undefined);
    }
    const on = !!track && show;
    this.el.classList.toggle('cam-off', !on);
    this.el.dataset.camera = on ? 'on' : 'off';
    this.camBadge.hidden = on;
  }

  setMicMuted(muted: boolean): void {
    this.micBadge.hidden = !muted;
    this.el.dataset.mic = muted ? 'off' : 'on';
  }

  /** `dominant`: the one speaking now (a strong border); `active`: also speaking. */
  setSpeaking(state: 'dominant' | 'active' | 'none'): void {
    const speaking = state === 'dominant' ? 'true' : 'false';
    if (this.el.dataset.speaking !== speaking) this.el.dataset.speaking = speaking;
    this.el.classList.toggle('speaking', state === 'dominant');
    this.el.classList.toggle('voice', state === 'active');
  }

  /** The large tile of the speaker view. */
  setStage(on: boolean): void {
    const stage = on ? 'true' : 'false';
    if (this.el.dataset.stage !== stage) this.el.dataset.stage = stage;
    this.el.classList.toggle('stage', on);
  }

  /** Shows a raised hand (`position`: 1 for the first raised). */
  setHand(raised: boolean, position = 0): void {
    if (!raised) {
      this.hand?.remove();
      this.hand = null;
      return;
    }
    if (!this.hand) {
      this.hand = h('span', { class: 'badge hand', attrs: { 'data-testid': 'hand', role: 'img' } });
      this.caption.insertBefore(this.hand, this.caption.firstChild);
    }
    const label = t('hand.raised');
    this.hand.replaceChildren(icon('hand'), position > 0 ? h('span', { class: 'hand-pos', text: String(position) }) : '');
    this.hand.setAttribute('aria-label', label);
    this.hand.title = label;
  }

  /** Connection quality (quality.ts); `null` hides the indicator. */
  setQuality(level: ConnectionQuality | null): void {
    if (!level) {
      this.quality?.badge.remove();
      this.quality = null;
      delete this.el.dataset.quality;
      return;
    }
    if (this.quality?.level === level) return;
    const badge = this.quality?.badge ?? qualityBadge();
    if (!badge.isConnected) this.caption.appendChild(badge);
    this.quality = { badge, level };
    this.el.dataset.quality = level;
    showQuality(badge, level);
  }

  /** Texts again in the current language. */
  relabel(): void {
    if (this.quality) showQuality(this.quality.badge, this.quality.level);
    for (const [el, key] of [
      [this.micBadge, 'room.micMuted'],
      [this.camBadge, 'room.camOffLabel'],
    ] as const) {
      el.setAttribute('aria-label', t(key));
      el.title = t(key);
    }
    if (this.hand) {
      this.hand.setAttribute('aria-label', t('hand.raised'));
      this.hand.title = t('hand.raised');
    }
  }

  /** Plays exactly these remote audio tracks. */
  setAudio(tracks: MediaStreamTrack[]): void {
    if (this.self) return;
    for (const [track, el] of this.audios) {
      if (!tracks.includes(track)) {
        el.srcObject = null;
        el.remove();
        this.audios.delete(track);
      }
    }
    for (const track of tracks) {
      if (this.audios.has(track)) continue;
      const el = h('audio', { attrs: { autoplay: true } });
      el.srcObject = new MediaStream([track]);
      this.audioBox.appendChild(el);
      this.audios.set(track, el);
      el.play().catch((err: unknown) => {
        if (err instanceof DOMException && err.name === 'NotAllowedError') this.onAudioBlocked();
      });
    }
  }

  /** Retries playback after a user gesture (autoplay policy). */
  resumeAudio(): void {
    for (const el of this.audios.values()) el.play().catch(() => undefined);
  }

  destroy(): void {
    this.video.srcObject = null;
    for (const el of this.audios.values()) el.srcObject = null;
    this.audios.clear();
    this.el.remove();
  }
}

// One participant's tile: video (or initials when the camera is off), the
// name, a muted-microphone badge, and hidden <audio> elements for their sound.
//
// Test hooks: the tile is `data-testid="tile"` (a screen share is
// `data-testid="screen-tile"`) with `data-participant-id` and
// `data-participant-name`; `data-mic` / `data-camera` are "on" or "off";
// a raised hand is a `data-testid="hand"` element inside the tile.
import { h, icon, initials } from '../dom';
import { t } from '../i18n';

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

  /** Texts again in the current language. */
  relabel(): void {
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

// The room: a grid of participant tiles (self first) and the controls.
//
// Test hooks: tiles (see tile.ts); `data-testid="toggle-mic"`,
// `"toggle-camera"` (with `data-state="on"|"off"`), `"leave"`; the
// connection banner is `data-testid="conn-status"`.
import { h, icon, mount } from '../dom';
import { t } from '../i18n';
import { getTrack, stopAll, type LocalMedia } from '../media';
import type { ParticipantInfo } from '../protocol';
import { Session, type ConnState, type PublishedSource, type RemoteTrack, type SessionEnd } from '../session';
import { displayName, type RoomContext } from './join';
import { goHome, showError, showLeft } from './screens';
import { Tile } from './tile';

export function enterRoom(ctx: RoomContext, media: LocalMedia, rejoin: () => void): void {
  new RoomView(ctx, media, rejoin).start();
}

class RoomView {
  private readonly session: Session;
  private readonly grid: HTMLElement;
  private readonly banner: HTMLElement;
  private readonly toasts: HTMLElement;
  private readonly count: HTMLElement;
  private readonly micBtn: HTMLButtonElement;
  private readonly camBtn: HTMLButtonElement;
  private readonly leaveBtn: HTMLButtonElement;
  private readonly soundBtn: HTMLButtonElement;
  private readonly selfTile: Tile;
  private readonly tiles = new Map<string, Tile>();
  private readonly screenTiles = new Map<string, Tile>();
  private participants = new Map<string, ParticipantInfo>();
  private remote: RemoteTrack[] = [];
  private selfId: string | null = null;
  private selfName: string;
  private busy = false;
  private countdown: number | undefined;
  private done = false;
  private readonly onPageHide = () => this.session.close();

  constructor(
    ctx: RoomContext,
    private readonly media: LocalMedia,
    private readonly rejoin: () => void,
  ) {
    this.selfName = displayName(ctx.claims) || t('common.you');
    this.session = new Session(ctx.token, ctx.room, {
      state: (s) => this.onState(s),
      joined: (msg) => {
        this.selfId = msg.participant.id;
        this.selfName = msg.participant.name;
        this.participants = new Map(msg.participants.filter((p) => p.id !== this.selfId).map((p) => [p.id, p]));
        // Release what the token does not let us publish.
        if (!this.session.mayPublish('microphone') && media.mic) {
          media.mic.stop();
          media.mic = null;
        }
        if (!this.session.mayPublish('camera') && media.cam) {
          media.cam.stop();
          media.cam = null;
        }
        this.render();
      },
      participantJoined: (p) => this.upsert(p),
      participantUpdated: (p) => this.upsert(p),
      participantLeft: (id) => {
        this.participants.delete(id);
        this.render();
      },
      remoteTracks: (list) => {
        this.remote = list;
        this.render();
      },
      notice: (code, message) => {
        if (code === 'publish') this.toast(t('room.publishFailed', { message }));
        else this.toast(t('room.serverError', { message: message || code }));
      },
      ended: (end) => this.onEnded(end),
      local: (source) => this.local(source),
    });

    this.selfTile = new Tile('tile', true);
    this.grid = h('main', { class: 'grid', attrs: { 'aria-label': t('room.grid'), 'data-testid': 'grid' } }, this.selfTile.el);
    this.banner = h('div', { class: 'banner', attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'conn-status' } });
    this.toasts = h('div', { class: 'toasts', attrs: { role: 'status', 'aria-live': 'polite' } });
    this.count = h('span', { class: 'count', attrs: { 'data-testid': 'participant-count' } });
    this.micBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'toggle-mic' } });
    this.camBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'toggle-camera' } });
    this.leaveBtn = h(
      'button',
      { class: 'ctl leave', attrs: { type: 'button', 'data-testid': 'leave', 'aria-label': t('room.leaveLong'), title: t('room.leaveLong') } },
      icon('leave'),
      h('span', { class: 'ctl-label', text: t('room.leave') }),
    );
    this.soundBtn = h(
      'button',
      { class: 'btn sound', attrs: { type: 'button', hidden: true, 'data-testid': 'enable-sound' } },
      icon('sound'),
      h('span', { text: t('room.enableSound') }),
    );
    this.micBtn.addEventListener('click', () => void this.toggleMic());
    this.camBtn.addEventListener('click', () => void this.toggleCamera());
    this.leaveBtn.addEventListener('click', () => this.session.leave());
    this.soundBtn.addEventListener('click', () => {
      this.soundBtn.hidden = true;
      for (const tile of this.tiles.values()) tile.resumeAudio();
      for (const tile of this.screenTiles.values()) tile.resumeAudio();
    });

    mount(
      h(
        'div',
        { class: 'room' },
        h(
          'header',
          { class: 'room-header' },
          h('span', { class: 'brand', text: t('app.name') }),
          h('span', { class: 'room-title', text: ctx.room }),
          this.count,
        ),
        this.banner,
        this.grid,
        this.soundBtn,
        this.toasts,
        h(
          'footer',
          { class: 'controls', attrs: { role: 'toolbar', 'aria-label': t('room.controls') } },
          this.micBtn,
          this.camBtn,
          this.leaveBtn,
        ),
      ),
    );
  }

  start(): void {
    window.addEventListener('pagehide', this.onPageHide);
    this.watchCamera();
    this.render();
    this.session.start();
  }

  private local(source: PublishedSource): { track: MediaStreamTrack | null; muted: boolean } {
    if (source === 'microphone') return { track: this.media.mic, muted: this.media.micMuted };
    return { track: this.media.cam, muted: !this.media.cam };
  }

  private upsert(p: ParticipantInfo): void {
    if (p.id === this.selfId) return; // our own echo: local state is authoritative
    this.participants.set(p.id, p);
    this.render();
  }

  // ---- rendering -------------------------------------------------------------

  private render(): void {
    if (this.done) return;
    // Self.
    const m = this.media;
    this.selfTile.setIdentity(this.selfId, this.selfName, t('room.selfName', { name: this.selfName }));
    this.selfTile.setVideo(m.cam, !!m.cam);
    this.selfTile.setMicMuted(!m.mic || m.micMuted);

    // Others, in join order.
    for (const [id, p] of this.participants) {
      let tile = this.tiles.get(id);
      if (!tile) {
        tile = new Tile('tile', false, () => (this.soundBtn.hidden = false));
        this.tiles.set(id, tile);
        this.grid.appendChild(tile.el);
      }
      const mine = this.remote.filter((r) => r.participant === id);
      const cam = mine.find((r) => r.source === 'camera');
      const camInfo = p.tracks.find((tr) => tr.source === 'camera');
      const micInfo = p.tracks.find((tr) => tr.source === 'microphone');
      tile.setIdentity(id, p.name);
      tile.setVideo(cam?.track ?? null, !!cam && !(camInfo?.muted ?? false));
      tile.setMicMuted(!micInfo || micInfo.muted);
      tile.setAudio(mine.filter((r) => r.kind === 'audio').map((r) => r.track));

      const screen = mine.find((r) => r.source === 'screen_share');
      let st = this.screenTiles.get(id);
      if (screen) {
        if (!st) {
          st = new Tile('screen-tile', false);
          st.el.classList.add('screen');
          this.screenTiles.set(id, st);
          this.grid.insertBefore(st.el, this.grid.firstChild);
        }
        st.setIdentity(id, p.name);
        st.setVideo(screen.track, true);
        st.setMicMuted(false);
      } else if (st) {
        st.destroy();
        this.screenTiles.delete(id);
      }
    }
    for (const [id, tile] of this.tiles) {
      if (!this.participants.has(id)) {
        tile.destroy();
        this.tiles.delete(id);
        this.screenTiles.get(id)?.destroy();
        this.screenTiles.delete(id);
      }
    }
    const n = this.participants.size + 1;
    this.grid.dataset.count = String(Math.min(n, 10));
    this.count.textContent = n === 1 ? t('room.participantsOne') : t('room.participants', { n });
    this.renderControls();
  }

  private renderControls(): void {
    const m = this.media;
    const joined = this.session.joined;
    const micOn = !!m.mic && !m.micMuted;
    const camOn = !!m.cam;
    setToggle(this.micBtn, micOn, micOn ? 'mic' : 'micOff', micOn ? t('room.micOn') : t('room.micOff'));
    setToggle(this.camBtn, camOn, camOn ? 'cam' : 'camOff', camOn ? t('room.camOn') : t('room.camOff'));
    this.micBtn.disabled = joined && !this.session.mayPublish('microphone');
    this.camBtn.disabled = joined && !this.session.mayPublish('camera');
  }

  private onState(s: ConnState): void {
    window.clearInterval(this.countdown);
    this.countdown = undefined;
    if (s.state === 'joined') {
      this.banner.textContent = '';
      this.banner.hidden = true;
      this.render();
      return;
    }
    this.banner.hidden = false;
    this.banner.dataset.state = s.state;
    if (s.state === 'connecting') {
      this.banner.textContent = t('room.connecting');
      return;
    }
    const until = Date.now() + s.delayMs;
    const show = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      this.banner.textContent = left > 0 ? t('room.reconnectingIn', { s: left }) : t('room.reconnecting');
    };
    show();
    if (s.delayMs > 0) this.countdown = window.setInterval(show, 500);
  }

  private toast(text: string): void {
    const el = h('p', { class: 'toast', text });
    this.toasts.appendChild(el);
    window.setTimeout(() => el.remove(), 6_000);
  }

  // ---- controls ----------------------------------------------------------------

  private async toggleMic(): Promise<void> {
    if (this.busy || this.done) return;
    const m = this.media;
    if (m.mic) {
      m.micMuted = !m.micMuted;
      m.mic.enabled = !m.micMuted;
    } else {
      this.busy = true;
      try {
        const track = await getTrack('audio', m.micDeviceId);
        if (this.done) {
          track.stop();
          return;
        }
        m.mic = track;
        m.micMuted = false;
      } catch (err) {
        console.warn('microphone failed', err);
        this.toast(t('room.micFailed'));
      } finally {
        this.busy = false;
      }
    }
    this.render();
    await this.session.updateSource('microphone');
  }

  private async toggleCamera(): Promise<void> {
    if (this.busy || this.done) return;
    const m = this.media;
    if (m.cam) {
      m.cam.stop(); // release the device: the camera light goes off
      m.cam = null;
    } else {
      this.busy = true;
      try {
        const track = await getTrack('video', m.camDeviceId);
        if (this.done) {
          track.stop();
          return;
        }
        m.cam = track;
        this.watchCamera();
      } catch (err) {
        console.warn('camera failed', err);
        this.toast(t('room.cameraFailed'));
      } finally {
        this.busy = false;
      }
    }
    this.render();
    await this.session.updateSource('camera');
  }

  /** A camera unplugged (or stopped by the system) counts as turned off. */
  private watchCamera(): void {
    const cam = this.media.cam;
    if (!cam) return;
    cam.addEventListener('ended', () => {
      if (this.media.cam !== cam || this.done) return;
      this.media.cam = null;
      this.render();
      void this.session.updateSource('camera');
    });
  }

  // ---- the end -------------------------------------------------------------------

  private onEnded(end: SessionEnd): void {
    this.done = true;
    window.removeEventListener('pagehide', this.onPageHide);
    window.clearInterval(this.countdown);
    stopAll(this.media);
    this.selfTile.destroy();
    for (const tile of this.tiles.values()) tile.destroy();
    for (const tile of this.screenTiles.values()) tile.destroy();
    const again = { label: t('error.tryAgain'), run: this.rejoin, primary: true };
    switch (end.kind) {
      case 'left':
        showLeft(this.rejoin);
        return;
      case 'bye':
        if (end.reason === 'replaced') {
          showError(t('error.replacedTitle'), t('error.replaced'), undefined, [
            { label: t('error.replacedRejoin'), run: this.rejoin, primary: true },
          ]);
        } else {
          showLeft(this.rejoin);
        }
        return;
      case 'error':
        switch (end.code) {
          case 'unauthorized':
            showError(t('error.title'), t('error.unauthorized'), end.message, [goHome]);
            return;
          case 'forbidden':
            showError(t('error.title'), t('error.forbidden'), end.message, [goHome]);
            return;
          case 'room_full':
            showError(t('error.title'), t('error.roomFull'), end.message, [again, goHome]);
            return;
          default:
            showError(t('error.title'), t('error.other'), end.message, [again, goHome]);
        }
    }
  }
}

function setToggle(btn: HTMLButtonElement, on: boolean, iconName: 'mic' | 'micOff' | 'cam' | 'camOff', label: string): void {
  btn.replaceChildren(icon(iconName), h('span', { class: 'ctl-label', text: label }));
  btn.classList.toggle('off', !on);
  btn.dataset.state = on ? 'on' : 'off';
  btn.setAttribute('aria-label', label);
  btn.title = label;
}

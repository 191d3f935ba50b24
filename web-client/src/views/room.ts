// The room: a grid of participant tiles (self first) and the controls.
//
// Test hooks: tiles (see tile.ts); `data-testid="toggle-mic"`,
// `"toggle-camera"` (with `data-state="on"|"off"`), `"leave"`; the
// connection banner is `data-testid="conn-status"`.
//
// Classroom hooks: listed in main.ts ("classroom").
import { h, icon, mount } from '../dom';
import { language, setLanguage, t, type MessageKey } from '../i18n';
import { getTrack, stopAll, type LocalMedia } from '../media';
import {
  EMPTY_ROOM_STATE,
  type ChatMessage,
  type ClassroomMessage,
  type LobbyEntry,
  type ParticipantInfo,
  type Promotion,
  type RoomState,
  type Source,
  type ConnectionQuality,
} from '../protocol';

/** Longest chat message (amphi_protocol::MAX_CHAT_CHARS). */
const MAX_CHAT_CHARS = 2000;
import { Session, type ConnState, type PublishedSource, type RemoteTrack, type SessionEnd } from '../session';
import { displayName, type RoomContext } from './join';
import { goHome, showError, showLeft } from './screens';
import { closeAllDialogs, dialogOpen, modal, type ModalOptions } from './dialog';
import { SpeakerLayout } from './speakers';
import { Tile } from './tile';
import { mergeQualities } from './quality';
import { TrackViews } from './track-views';

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
  private readonly handBtn: HTMLButtonElement;
  private readonly screenBtn: HTMLButtonElement;
  /** Our screen share, while it runs. */
  private screen: MediaStreamTrack | null = null;
  /** The shared screen's sound, when the browser gave one. */
  private screenAudio: MediaStreamTrack | null = null;
  private readonly chatBtn: HTMLButtonElement;
  private readonly peopleBtn: HTMLButtonElement;
  private readonly langBtn: HTMLButtonElement;
  private readonly groupLabel: HTMLElement;
  private readonly roomBody: HTMLElement;
  private readonly waitingEl: HTMLElement;
  private readonly footer: HTMLElement;
  private readonly hint: HTMLElement;
  // Chat.
  private readonly chatPanel: HTMLElement;
  private readonly chatList: HTMLElement;
  private readonly chatEmpty: HTMLElement;
  private readonly chatTo: HTMLSelectElement;
  private readonly chatInput: HTMLTextAreaElement;
  private readonly chatSend: HTMLButtonElement;
  private readonly chatError: HTMLElement;
  private readonly chatCount: HTMLElement;
  private unread = 0;
  // Participants and moderation.
  private readonly peoplePanel: HTMLElement;
  private readonly handsList: HTMLElement;
  private readonly peopleList: HTMLElement;
  private readonly modBox: HTMLElement;
  private readonly setWaiting: HTMLInputElement;
  private readonly setLock: HTMLInputElement;
  private readonly setAsk: HTMLInputElement;
  private readonly breakoutStart: HTMLButtonElement;
  private readonly breakoutEnd: HTMLButtonElement;
  private readonly breakoutStatus: HTMLElement;
  private readonly breakoutVisit: HTMLElement;
  private readonly breakoutCast: HTMLElement;
  private readonly lobbyBadge: HTMLElement;
  private readonly helpBtn: HTMLButtonElement;
  private readonly lobbyBox: HTMLElement;
  private readonly lobbyList: HTMLElement;
  private readonly lobbyNotice: HTMLElement;
  private readonly prompt: HTMLElement;
  private readonly promptText: HTMLElement;
  private promptSource: Source | null = null;
  private roomState: RoomState = EMPTY_ROOM_STATE;
  private selfInfo: ParticipantInfo | null = null;
  private waiting: LobbyEntry[] = [];
  private waitingSeen = new Set<string>();
  private wasModerator = false;
  /** Static texts, redone when the language changes. */
  private readonly labels: (() => void)[] = [];
  private readonly selfTile: Tile;
  /** Speaking highlight and speaker view (speakers.ts). */
  private readonly speakerLayout: SpeakerLayout;
  private readonly tiles = new Map<string, Tile>();
  private readonly screenTiles = new Map<string, Tile>();
  private participants = new Map<string, ParticipantInfo>();
  private remote: RemoteTrack[] = [];
  private selfId: string | null = null;
  private selfName: string;
  private busy = false;
  private countdown: number | undefined;
  private done = false;
  /** The participant whose tile is pinned (shown across the grid). */
  private pinned: string | null = null;
  /** Everyone's connection quality, from the latest `connection_quality`. */
  private qualities = new Map<string, ConnectionQuality>();
  private readonly onPageHide = () => this.session.close();
  /** Reports each received video's size and visibility to the server. */
  private readonly views = new TrackViews((track, visible, w, hh) => this.session.trackSettings(track, visible, w, hh));

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
        this.selfInfo = msg.participant;
        this.wasModerator = msg.permissions.moderate;
        this.speakerLayout.reset();
        this.views.resend();
        this.roomState = msg.room_state ?? EMPTY_ROOM_STATE;
        this.participants = new Map(msg.participants.filter((p) => p.id !== this.selfId).map((p) => [p.id, p]));
        this.setWaitingPage(false);
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
        this.renderPeople();
      },
      participantJoined: (p) => this.upsert([p]),
      participantUpdated: (p) => this.upsert([p]),
      participantsUpdated: (ps) => this.upsert(ps),
      participantLeft: (id) => {
        this.participants.delete(id);
        this.qualities.delete(id);
        this.render();
        this.renderPeople();
      },
      remoteTracks: (list) => {
        this.remote = list;
        this.render();
      },
      notice: (code, message, request) => {
        if (code === 'publish') this.toast(t('room.publishFailed', { message }));
        else if (request === 'chat' || code === 'rate_limited' || code === 'too_large') this.chatFailed(code, message);
        else this.toast(t('room.serverError', { message: message || code }));
      },
      roomUpdated: (room) => {
        this.roomState = room;
        this.render();
        this.renderPeople();
      },
      chat: (m) => this.addChat(m),
      lobby: (list) => this.onLobby(list),
      muteRequested: (source, by) => void this.onMuteRequested(source, by),
      unmuteRequested: (source, by) => this.onUnmuteRequested(source, by),
      permissionsUpdated: (role, perms) => {
        // The session already holds the new permissions.
        if (this.selfInfo) this.selfInfo = { ...this.selfInfo, role };
        if (perms.moderate !== this.wasModerator) this.toast(perms.moderate ? t('mod.nowModerator') : t('mod.noLongerModerator'));
        this.wasModerator = perms.moderate;
        if (this.screen && !perms.publish_sources.includes('screen_share')) this.stopScreen();
        this.render();
        this.renderPeople();
        this.renderLobby();
      },
      draining: () => this.toast(t('mod.draining')),
      speakers: (list) => this.speakerLayout.setSpeakers(list),
      connectionQuality: (list) => {
        mergeQualities(this.qualities, list);
        this.applyQuality();
      },
      // Answers to `amphiStats()` in the browser console (debugging).
      stats: (msg) => console.info('amphi stats', msg),
      ended: (end) => this.onEnded(end),
      local: (source) => this.local(source),
    });

    this.selfTile = new Tile('tile', true);
    this.grid = h('main', { class: 'grid', attrs: { 'aria-label': t('room.grid'), 'data-testid': 'grid' } }, this.selfTile.el);
    this.speakerLayout = new SpeakerLayout(this.grid, () => this.applySpeakers());
    this.banner = h('div', { class: 'banner', attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'conn-status' } });
    this.toasts = h('div', { class: 'toasts', attrs: { role: 'status', 'aria-live': 'polite' } });
    this.count = h('span', { class: 'count', attrs: { 'data-testid': 'participant-count' } });
    this.micBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'toggle-mic', 'aria-keyshortcuts': 'M' } });
    this.camBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'toggle-camera', 'aria-keyshortcuts': 'V' } });
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

    const label = (fn: () => void) => {
      this.labels.push(fn);
      fn();
    };
    const text = (el: HTMLElement, key: MessageKey) => label(() => (el.textContent = t(key)));
    const ariaLabel = (el: HTMLElement, key: MessageKey) =>
      label(() => el.setAttribute('aria-label', t(key)));
    label(() => this.soundBtn.lastElementChild && (this.soundBtn.lastElementChild.textContent = t('room.enableSound')));
    label(() => {
      this.leaveBtn.setAttribute('aria-label', t('room.leaveLong'));
      this.leaveBtn.title = t('room.leaveLong');
      this.leaveBtn.lastElementChild!.textContent = t('room.leave');
    });
    ariaLabel(this.grid, 'room.grid');
    label(() => this.speakerLayout.relabel());

    // Header: language, breakout group.
    this.langBtn = h('button', { class: 'btn small', attrs: { type: 'button', 'data-testid': 'lang-toggle', lang: language() === 'en' ? 'fr' : 'en' } });
    label(() => {
      this.langBtn.textContent = t('lang.toggle');
      this.langBtn.setAttribute('aria-label', t('lang.toggleLabel'));
      this.langBtn.title = t('lang.toggleLabel');
      this.langBtn.lang = language() === 'en' ? 'fr' : 'en';
    });
    this.langBtn.addEventListener('click', () => this.switchLanguage());
    this.groupLabel = h('span', { class: 'group-name', attrs: { 'data-testid': 'group-name', hidden: true } });

    // Controls.
    this.handBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'toggle-hand', 'aria-keyshortcuts': 'H' } });
    this.handBtn.addEventListener('click', () => {
      const raised = !!this.selfInfo?.hand_raised;
      this.send(raised ? { type: 'lower_hand' } : { type: 'raise_hand' });
    });
    // Screen sharing, for whoever may publish it (teachers, presenters).
    this.screenBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'toggle-screen', hidden: true } });
    this.screenBtn.addEventListener('click', () => void this.toggleScreen());
    this.chatBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'chat-toggle', 'aria-expanded': 'false', 'aria-controls': 'chat-panel' } });
    this.peopleBtn = h('button', { class: 'ctl', attrs: { type: 'button', 'data-testid': 'participants-toggle', 'aria-expanded': 'false', 'aria-controls': 'people-panel' } });
    this.chatBtn.addEventListener('click', () => this.togglePanel('chat'));
    this.peopleBtn.addEventListener('click', () => this.togglePanel('people'));

    // Chat panel.
    const chatHeading = h('h2', { attrs: { id: 'chat-heading' } });
    text(chatHeading, 'chat.title');
    this.chatList = h('ol', { class: 'chat-list', attrs: { role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'chat-heading' } });
    this.chatEmpty = h('p', { class: 'muted' });
    text(this.chatEmpty, 'chat.empty');
    this.chatError = h('p', { class: 'chat-error', attrs: { role: 'alert', 'data-testid': 'chat-error', hidden: true } });
    this.chatTo = h('select', { attrs: { 'data-testid': 'chat-to', id: 'chat-to' } });
    const chatToLabel = h('label', { attrs: { for: 'chat-to' } });
    text(chatToLabel, 'chat.to');
    this.chatInput = h('textarea', { attrs: { 'data-testid': 'chat-input', rows: 2, maxlength: MAX_CHAT_CHARS } });
    label(() => {
      this.chatInput.placeholder = t('chat.placeholder');
      this.chatInput.setAttribute('aria-label', t('chat.placeholder'));
    });
    this.chatSend = h('button', { class: 'btn primary', attrs: { type: 'submit', 'data-testid': 'chat-send' } });
    text(this.chatSend, 'chat.send');
    this.chatCount = h('span', { class: 'chat-count muted', attrs: { 'data-testid': 'chat-count', id: 'chat-count' } });
    this.chatInput.setAttribute('aria-describedby', 'chat-count');
    const updateCount = () => (this.chatCount.textContent = t('chat.count', { n: this.chatInput.value.length, max: MAX_CHAT_CHARS }));
    label(updateCount);
    this.chatInput.addEventListener('input', updateCount);
    const chatForm = h(
      'form',
      { class: 'chat-form' },
      h('div', { class: 'chat-to' }, chatToLabel, this.chatTo),
      this.chatInput,
      this.chatError,
      h('div', { class: 'row spread' }, this.chatCount, this.chatSend),
    );
    chatForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.sendChat();
    });
    this.chatInput.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.sendChat();
      }
    });
    this.chatPanel = h(
      'section',
      { class: 'panel chat', attrs: { id: 'chat-panel', 'data-testid': 'chat-panel', hidden: true, 'aria-labelledby': 'chat-heading' } },
      chatHeading,
      this.chatEmpty,
      this.chatList,
      chatForm,
    );

    // Participants panel.
    const peopleHeading = h('h2', { attrs: { id: 'people-heading' } });
    text(peopleHeading, 'people.title');
    const handsHeading = h('h3');
    text(handsHeading, 'people.hands');
    this.handsList = h('ol', { class: 'hands', attrs: { 'data-testid': 'hands-list' } });
    const everyoneHeading = h('h3');
    text(everyoneHeading, 'people.everyone');
    this.peopleList = h('ul', { class: 'people' });
    const toggle = (testid: string, key: MessageKey, field: 'waiting_room' | 'locked' | 'ask_to_speak') => {
      const input = h('input', { attrs: { type: 'checkbox', 'data-testid': testid } });
      const span = h('span');
      text(span, key);
      input.addEventListener('change', () => {
        this.send({ type: 'update_room', [field]: input.checked });
      });
      return { input, el: h('label', { class: 'setting' }, input, span) };
    };
    const w = toggle('setting-waiting-room', 'settings.waitingRoom', 'waiting_room');
    const l = toggle('setting-lock', 'settings.lock', 'locked');
    const a = toggle('setting-ask-to-speak', 'settings.askToSpeak', 'ask_to_speak');
    this.setWaiting = w.input;
    this.setLock = l.input;
    this.setAsk = a.input;
    const muteAll = h('button', { class: 'btn', attrs: { type: 'button', 'data-testid': 'mute-all' } });
    text(muteAll, 'settings.muteAll');
    muteAll.addEventListener('click', () => this.send({ type: 'mute_all' }));
    const endRoom = h('button', { class: 'btn danger', attrs: { type: 'button', 'data-testid': 'end-room' } });
    text(endRoom, 'settings.end');
    endRoom.addEventListener('click', () =>
      this.dialog({
        testid: 'end-dialog',
        title: t('settings.endTitle'),
        body: [h('p', { text: t('settings.endConfirm') })],
        confirm: t('settings.end'),
        danger: true,
        onConfirm: () => void this.send({ type: 'end_room' }),
      }),
    );
    this.breakoutStart = h('button', { class: 'btn', attrs: { type: 'button', 'data-testid': 'breakout-start', 'aria-haspopup': 'dialog' } });
    text(this.breakoutStart, 'breakout.start');
    this.breakoutStart.addEventListener('click', () => this.openBreakoutDialog());
    this.breakoutEnd = h('button', { class: 'btn', attrs: { type: 'button', 'data-testid': 'breakout-end' } });
    text(this.breakoutEnd, 'breakout.end');
    this.breakoutEnd.addEventListener('click', () => this.send({ type: 'breakout_end' }));
    this.breakoutStatus = h('p', { class: 'muted' });
    this.breakoutVisit = h('div', { class: 'row' });
    // A message to every group at once.
    const castInput = h('input', { attrs: { type: 'text', id: 'breakout-message', 'data-testid': 'breakout-message', maxlength: MAX_CHAT_CHARS } });
    const castLabel = h('label', { attrs: { for: 'breakout-message' } });
    text(castLabel, 'breakout.message');
    const castBtn = h('button', { class: 'btn small', attrs: { type: 'submit', 'data-testid': 'breakout-broadcast' } });
    text(castBtn, 'breakout.broadcast');
    this.breakoutCast = h('form', { class: 'cast' }, castLabel, h('div', { class: 'row' }, castInput, castBtn));
    this.breakoutCast.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const msg = castInput.value.trim();
      if (msg && this.send({ type: 'breakout_broadcast', text: msg })) castInput.value = '';
    });
    const settingsHeading = h('h3');
    text(settingsHeading, 'settings.title');
    const breakoutHeading = h('h3');
    text(breakoutHeading, 'breakout.title');
    this.modBox = h(
      'div',
      { class: 'mod', attrs: { hidden: true } },
      settingsHeading,
      w.el,
      l.el,
      a.el,
      h('div', { class: 'row' }, muteAll, endRoom),
      breakoutHeading,
      this.breakoutStatus,
      h('div', { class: 'row' }, this.breakoutStart, this.breakoutEnd),
      this.breakoutVisit,
      this.breakoutCast,
    );
    this.peoplePanel = h(
      'section',
      { class: 'panel people-panel', attrs: { id: 'people-panel', 'data-testid': 'participants', hidden: true, 'aria-labelledby': 'people-heading' } },
      peopleHeading,
      handsHeading,
      this.handsList,
      everyoneHeading,
      this.peopleList,
      this.modBox,
    );

    // Waiting list (moderators), always in view when someone waits.
    const lobbyHeading = h('h2');
    text(lobbyHeading, 'lobby.title');
    this.lobbyList = h('ul', { class: 'lobby-list' });
    this.lobbyBox = h('section', { class: 'lobby', attrs: { 'data-testid': 'lobby', hidden: true } }, lobbyHeading, this.lobbyList);
    this.lobbyNotice = h('div', { class: 'sr-only', attrs: { role: 'status', 'aria-live': 'assertive', 'data-testid': 'lobby-notice' } });
    this.lobbyBadge = h('span', { class: 'count-badge', attrs: { 'data-testid': 'lobby-badge', 'aria-hidden': 'true' } });

    // Help: the keyboard shortcuts.
    this.helpBtn = h('button', { class: 'btn small', text: '?', attrs: { type: 'button', 'data-testid': 'help', 'aria-haspopup': 'dialog', 'aria-keyshortcuts': 'Shift+?' } });
    label(() => {
      this.helpBtn.setAttribute('aria-label', t('shortcuts.title'));
      this.helpBtn.title = t('shortcuts.title');
    });
    this.helpBtn.addEventListener('click', () => this.openHelp());

    // A moderator's request to unmute: never switches anything on by itself.
    this.promptText = h('p');
    const accept = h('button', { class: 'btn primary', attrs: { type: 'button', 'data-testid': 'unmute-accept' } });
    text(accept, 'mod.accept');
    const dismiss = h('button', { class: 'btn', attrs: { type: 'button', 'data-testid': 'unmute-dismiss' } });
    text(dismiss, 'mod.dismiss');
    accept.addEventListener('click', () => void this.acceptUnmute());
    dismiss.addEventListener('click', () => this.closePrompt());
    this.prompt = h('div', { class: 'prompt', attrs: { role: 'alertdialog', 'aria-live': 'assertive', 'data-testid': 'unmute-prompt', hidden: true } }, this.promptText, h('div', { class: 'row' }, accept, dismiss));

    // Waiting page.
    const waitingHeading = h('h1', { attrs: { tabindex: -1 } });
    text(waitingHeading, 'waiting.title');
    const waitingText = h('p');
    text(waitingText, 'waiting.text');
    this.waitingEl = h('section', { class: 'waiting card', attrs: { 'data-testid': 'waiting', hidden: true, role: 'status' } }, waitingHeading, waitingText);

    this.hint = h('p', { class: 'hint-bar', attrs: { hidden: true, role: 'status' } });
    this.roomBody = h('div', { class: 'room-body' }, this.grid, this.chatPanel, this.peoplePanel);
    this.footer = h(
      'footer',
      { class: 'controls', attrs: { role: 'toolbar' } },
      this.micBtn,
      this.camBtn,
      this.handBtn,
      this.screenBtn,
      this.chatBtn,
      this.peopleBtn,
      this.leaveBtn,
    );
    ariaLabel(this.footer, 'room.controls');

    mount(
      h(
        'div',
        { class: 'room' },
        h(
          'header',
          { class: 'room-header' },
          h('span', { class: 'brand', text: t('app.name') }),
          h('span', { class: 'room-title', text: ctx.room }),
          this.groupLabel,
          this.count,
          this.speakerLayout.button,
          this.helpBtn,
          this.langBtn,
        ),
        this.banner,
        this.lobbyBox,
        this.lobbyNotice,
        this.prompt,
        this.hint,
        this.waitingEl,
        this.roomBody,
        this.soundBtn,
        this.toasts,
        this.footer,
      ),
    );
  }

  private get moderator(): boolean {
    return this.session.moderator;
  }

  private dialog(o: ModalOptions): void {
    if (this.done) return;
    modal(o);
  }

  /** Keyboard shortcuts: M microphone, V camera, H hand, ? help. Never while typing. */
  private readonly onKey = (ev: KeyboardEvent): void => {
    if (this.done || ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || dialogOpen()) return;
    const target = ev.target as HTMLElement | null;
    if (target?.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]')) return;
    if (!this.session.joined) return;
    const key = ev.key.toLowerCase();
    if (key === 'm' && !this.micBtn.disabled) void this.toggleMic();
    else if (key === 'v' && !this.camBtn.disabled) void this.toggleCamera();
    else if (key === 'h') this.handBtn.click();
    else if (ev.key === '?') this.openHelp();
    else return;
    ev.preventDefault();
  };

  private openHelp(): void {
    const rows: [string, MessageKey][] = [
      ['M', 'shortcuts.mic'],
      ['V', 'shortcuts.camera'],
      ['H', 'shortcuts.hand'],
      ['?', 'shortcuts.help'],
      ['Esc', 'shortcuts.close'],
    ];
    this.dialog({
      testid: 'help-dialog',
      title: t('shortcuts.title'),
      body: [
        h('dl', { class: 'shortcuts' }, ...rows.flatMap(([k, key]) => [h('dt', {}, h('kbd', { text: k })), h('dd', { text: t(key) })])),
        h('p', { class: 'muted', text: t('shortcuts.typing') }),
      ],
      confirm: t('common.ok'),
      onConfirm: () => undefined,
    });
  }

  /** Breakout groups: how many, and who goes where (at random or by hand). */
  private openBreakoutDialog(): void {
    const students = [...this.participants.values()].filter((p) => p.role !== 'teacher');
    const count = h('input', { attrs: { type: 'number', id: 'breakout-count', 'data-testid': 'breakout-count', min: 1, max: 50, value: 2, required: true } });
    const random = h('input', { attrs: { type: 'radio', name: 'breakout-mode', value: 'random', checked: true, 'data-testid': 'breakout-random' } });
    const manual = h('input', { attrs: { type: 'radio', name: 'breakout-mode', value: 'manual', 'data-testid': 'breakout-manual' } });
    const list = h('ul', { class: 'assign', attrs: { hidden: true } });
    const selects = new Map<string, HTMLSelectElement>();
    const fill = () => {
      const n = Math.max(1, Math.min(50, Number(count.value) || 1));
      list.replaceChildren(
        ...students.map((p, i) => {
          const prev = selects.get(p.id)?.value;
          const sel = h('select', { attrs: { id: `assign-${p.id}`, 'data-testid': `breakout-assign-${p.id}` } });
          sel.append(h('option', { text: t('breakout.mainRoom'), attrs: { value: '' } }));
          for (let g = 0; g < n; g++) sel.append(h('option', { text: t('breakout.groupN', { n: g + 1 }), attrs: { value: g } }));
          sel.value = prev !== undefined && (prev === '' || Number(prev) < n) ? prev : String(i % n);
          selects.set(p.id, sel);
          return h('li', { class: 'row' }, h('label', { text: p.name, attrs: { for: `assign-${p.id}` } }), sel);
        }),
      );
    };
    fill();
    count.addEventListener('input', fill);
    const mode = () => (list.hidden = !manual.checked);
    random.addEventListener('change', mode);
    manual.addEventListener('change', mode);
    const error = h('p', { class: 'chat-error', attrs: { role: 'alert' } });
    this.dialog({
      testid: 'breakout-dialog',
      title: t('breakout.title'),
      body: [
        h('label', { text: t('breakout.count'), attrs: { for: 'breakout-count' } }),
        count,
        h(
          'fieldset',
          { class: 'choice' },
          h('legend', { text: t('breakout.assignment') }),
          h('label', {}, random, h('span', { text: t('breakout.random') })),
          h('label', {}, manual, h('span', { text: t('breakout.manual') })),
        ),
        list,
        error,
      ],
      confirm: t('breakout.go'),
      onConfirm: () => {
        const groups = Math.floor(Number(count.value));
        if (!(groups >= 1 && groups <= 50)) {
          error.textContent = t('breakout.countInvalid');
          return false;
        }
        if (manual.checked) {
          const assignments: Record<string, number> = {};
          for (const [id, sel] of selects) if (sel.value !== '') assignments[id] = Number(sel.value);
          this.send({ type: 'breakout_start', groups, assignments });
        } else {
          this.send({ type: 'breakout_start', groups });
        }
      },
    });
  }

  private openRemoveDialog(p: ParticipantInfo): void {
    const reason = h('input', { attrs: { type: 'text', id: 'remove-reason', 'data-testid': 'remove-reason', maxlength: 500 } });
    this.dialog({
      testid: 'remove-dialog',
      title: t('people.removeLabel', { name: p.name }),
      body: [
        h('p', { text: t('people.removeConfirm', { name: p.name }) }),
        h('label', { text: t('people.removeReason'), attrs: { for: 'remove-reason' } }),
        reason,
      ],
      confirm: t('people.remove'),
      danger: true,
      onConfirm: () => {
        const why = reason.value.trim();
        this.send(why ? { type: 'remove', participant: p.id, reason: why } : { type: 'remove', participant: p.id });
      },
    });
  }

  private send(msg: ClassroomMessage): boolean {
    const ok = this.session.sendMessage(msg);
    if (!ok) this.toast(t('chat.offline'));
    return ok;
  }

  private switchLanguage(): void {
    setLanguage(language() === 'en' ? 'fr' : 'en');
    document.title = t('app.name');
    for (const fn of this.labels) fn();
    this.selfTile.relabel();
    for (const tile of this.tiles.values()) tile.relabel();
    this.render();
    this.renderPeople();
    this.renderLobby();
  }

  private togglePanel(which: 'chat' | 'people'): void {
    const panel = which === 'chat' ? this.chatPanel : this.peoplePanel;
    const other = which === 'chat' ? this.peoplePanel : this.chatPanel;
    const open = panel.hidden;
    panel.hidden = !open;
    if (open) other.hidden = true;
    if (!this.chatPanel.hidden) {
      this.unread = 0;
      this.chatInput.focus();
    }
    this.renderControls();
  }

  private setWaitingPage(on: boolean): void {
    this.waitingEl.hidden = !on;
    this.roomBody.hidden = on;
    this.count.hidden = on;
    for (const b of [this.micBtn, this.camBtn, this.handBtn, this.chatBtn, this.peopleBtn]) b.hidden = on;
    if (on) (this.waitingEl.querySelector('h1') as HTMLElement | null)?.focus();
  }

  // ---- chat --------------------------------------------------------------------

  private sendChat(): void {
    const text = this.chatInput.value;
    if (!text.trim()) return;
    if (text.length > 2000) {
      this.chatFailed('too_large', '');
      return;
    }
    const to = this.chatTo.value;
    const msg: ClassroomMessage = to ? { type: 'chat', text, to } : { type: 'chat', text };
    if (!this.send(msg)) return;
    this.chatInput.value = '';
    this.chatInput.dispatchEvent(new Event('input'));
    this.chatError.hidden = true;
    this.chatError.textContent = '';
  }

  private chatFailed(code: string, message: string): void {
    const text =
      code === 'rate_limited' ? t('chat.rateLimited') : code === 'too_large' ? t('chat.tooLarge') : t('chat.notSent', { message: message || code });
    this.chatError.textContent = text;
    this.chatError.hidden = false;
    if (this.chatPanel.hidden) this.toast(text);
  }

  private nameOf(id: string): string {
    if (id === this.selfId) return this.selfName;
    return this.participants.get(id)?.name ?? id;
  }

  private addChat(m: ChatMessage): void {
    // Everything from the message is set as text, never parsed as HTML.
    const meta: string[] = [];
    if (m.broadcast) meta.push(t('chat.broadcast'));
    else if (m.to) meta.push(m.from === this.selfId ? t('chat.privateTo', { name: this.nameOf(m.to) }) : t('chat.privateFrom'));
    const time = new Date(m.sent_at);
    const item = h(
      'li',
      { class: m.to ? 'chat-message private' : 'chat-message', attrs: { 'data-testid': 'chat-message', 'data-from': m.from } },
      h(
        'div',
        { class: 'chat-meta' },
        h('span', { class: 'chat-from', text: m.from === this.selfId ? t('room.selfName', { name: m.from_name }) : m.from_name }),
        meta.length ? h('span', { class: 'chat-kind', text: meta.join(' · ') }) : null,
        Number.isFinite(time.getTime())
          ? h('time', { text: time.toLocaleTimeString(language(), { hour: '2-digit', minute: '2-digit' }), attrs: { datetime: time.toISOString() } })
          : null,
      ),
      h('p', { class: 'chat-text', text: m.text, attrs: { 'data-testid': 'chat-text' } }),
    );
    this.chatList.appendChild(item);
    while (this.chatList.childElementCount > 500) this.chatList.firstElementChild?.remove();
    this.chatEmpty.hidden = true;
    item.scrollIntoView?.({ block: 'nearest' });
    if (this.chatPanel.hidden && m.from !== this.selfId) {
      this.unread += 1;
      this.renderControls();
    }
  }

  // ---- moderation ------------------------------------------------------------------

  private onLobby(list: LobbyEntry[]): void {
    const fresh = list.filter((e) => !this.waitingSeen.has(e.id));
    this.waiting = list;
    this.waitingSeen = new Set(list.map((e) => e.id));
    if (fresh.length && this.moderator) {
      const notice = fresh.length === 1 ? t('lobby.one', { name: fresh[0]!.name }) : t('lobby.many', { n: fresh.length });
      this.lobbyNotice.textContent = notice;
      this.toast(notice);
    }
    this.renderLobby();
  }

  private renderLobby(): void {
    const show = this.moderator && this.waiting.length > 0 && !this.done;
    this.lobbyBadge.textContent = show ? String(this.waiting.length) : '';
    this.renderControls();
    this.lobbyBox.hidden = !show;
    this.lobbyList.replaceChildren(
      ...(show ? this.waiting : []).map((e) => {
        const admit = h('button', {
          class: 'btn primary small',
          text: t('lobby.admit'),
          attrs: { type: 'button', 'data-testid': `admit-${e.id}`, 'aria-label': t('lobby.admitLabel', { name: e.name }) },
          on: { click: () => this.send({ type: 'admit', participant: e.id }) },
        });
        const deny = h('button', {
          class: 'btn small',
          text: t('lobby.deny'),
          attrs: { type: 'button', 'data-testid': `deny-${e.id}`, 'aria-label': t('lobby.denyLabel', { name: e.name }) },
          on: { click: () => this.send({ type: 'deny', participant: e.id }) },
        });
        return h('li', { attrs: { 'data-participant-id': e.id } }, h('span', { class: 'name', text: t('lobby.entry', { name: e.name, role: t(`role.${e.role}`) }) }), admit, deny);
      }),
    );
  }

  private async onMuteRequested(source: Source, by: string): Promise<void> {
    if (source === 'microphone') {
      this.toast(t('mod.micMutedBy', { by }));
      const m = this.media;
      m.micMuted = true;
      if (m.mic) m.mic.enabled = false;
      this.render();
      await this.session.updateSource('microphone');
    } else if (source === 'camera') {
      this.toast(t('mod.camMutedBy', { by }));
      if (this.media.cam) {
        this.media.cam.stop();
        this.media.cam = null;
        this.render();
        await this.session.updateSource('camera');
      }
    }
    if (this.promptSource === source) this.closePrompt();
  }

  private onUnmuteRequested(source: Source, by: string): void {
    if (source !== 'microphone' && source !== 'camera') return;
    this.promptSource = source;
    this.promptText.textContent = source === 'microphone' ? t('mod.unmuteMic', { by }) : t('mod.unmuteCam', { by });
    this.prompt.hidden = false;
    // Bring the choice to the keyboard, unless the user is typing.
    if (!document.activeElement?.closest('input, textarea, select') && !dialogOpen()) {
      this.prompt.querySelector<HTMLElement>('[data-testid="unmute-accept"]')?.focus();
    }
  }

  private closePrompt(): void {
    this.prompt.hidden = true;
    this.promptSource = null;
  }

  private async acceptUnmute(): Promise<void> {
    const source = this.promptSource;
    this.closePrompt();
    if (source === 'microphone' && (!this.media.mic || this.media.micMuted)) await this.toggleMic();
    else if (source === 'camera' && !this.media.cam) await this.toggleCamera();
  }

  /** The participants panel: raised hands in order, everyone, moderation. */
  private renderPeople(): void {
    if (this.done) return;
    // The lists are rebuilt: keep the keyboard focus on the same control.
    const focused = document.activeElement instanceof HTMLElement && this.peoplePanel.contains(document.activeElement) ? document.activeElement.dataset.testid : undefined;
    this.buildPeople();
    if (focused && !this.peoplePanel.contains(document.activeElement)) {
      this.peoplePanel.querySelector<HTMLElement>(`[data-testid="${CSS.escape(focused)}"]`)?.focus();
    }
  }

  private buildPeople(): void {
    const mod = this.moderator;
    const rs = this.roomState;
    const groupName = (id: string | null | undefined) => (id ? rs.groups.find((g) => g.id === id)?.name ?? id : null);

    this.handsList.replaceChildren(
      ...(rs.hands.length
        ? rs.hands.map((id) => {
            const li = h('li', { text: this.nameOf(id), attrs: { 'data-participant-id': id } });
            if (mod && id !== this.selfId) {
              li.append(' ', this.modButton(`lower-hand-${id}`, t('hand.lower'), t('people.lowerHandLabel', { name: this.nameOf(id) }), { type: 'lower_hand', participant: id }));
            }
            return li;
          })
        : [h('li', { class: 'muted', text: t('people.noHands') })]),
    );

    const everyone: ParticipantInfo[] = [];
    if (this.selfInfo) everyone.push(this.selfInfo);
    everyone.push(...this.participants.values());
    this.peopleList.replaceChildren(
      ...everyone.map((p) => {
        const self = p.id === this.selfId;
        const mic = p.tracks.find((tr) => tr.source === 'microphone');
        const micOn = self ? !!this.media.mic && !this.media.micMuted : !!mic && !mic.muted;
        const bits = [t(`role.${p.role}`), micOn ? t('people.micOn') : t('people.micOff')];
        if (p.hand_raised) bits.push(t('hand.raised'));
        if (p.floor && rs.ask_to_speak) bits.push(t('people.floor'));
        const g = groupName(p.group);
        if (g) bits.push(t('people.inGroup', { group: g }));
        const li = h(
          'li',
          { class: 'person', attrs: { 'data-testid': 'person', 'data-participant-id': p.id, 'data-hand': p.hand_raised ? 'raised' : 'down', 'data-mic': micOn ? 'on' : 'off' } },
          h('span', { class: 'name', text: self ? t('room.selfName', { name: p.name }) : p.name }),
          h('span', { class: 'muted', text: bits.join(' · ') }),
        );
        if (mod && !self) li.append(this.personActions(p, micOn));
        return li;
      }),
    );

    this.modBox.hidden = !mod;
    this.setWaiting.checked = rs.waiting_room;
    this.setLock.checked = rs.locked;
    this.setAsk.checked = rs.ask_to_speak;
    const running = rs.groups.length > 0;
    this.breakoutStart.disabled = running;
    this.breakoutEnd.disabled = !running;
    this.breakoutStatus.textContent = running ? t('breakout.running', { n: rs.groups.length }) : '';
    this.breakoutStatus.hidden = !running;
    // A moderator may visit a group, and come back to the main room.
    const here = this.selfInfo?.group ?? null;
    const visits: HTMLButtonElement[] = [];
    if (mod && running && this.selfId) {
      for (const g of rs.groups) {
        if (g.id === here) continue;
        visits.push(this.modButton(`visit-${g.id}`, t('breakout.visit', { group: g.name }), t('breakout.visit', { group: g.name }), { type: 'breakout_move', participant: this.selfId, group: g.id }));
      }
      if (here) visits.push(this.modButton('visit-main', t('breakout.back'), t('breakout.back'), { type: 'breakout_move', participant: this.selfId, group: null }));
    }
    this.breakoutVisit.replaceChildren(...visits);

    // Private recipients: moderators for students (teachers here), anyone for moderators.
    const prev = this.chatTo.value;
    const inGroup = !!this.selfInfo?.group;
    const options = [h('option', { text: inGroup ? t('chat.myGroup') : t('chat.everyone'), attrs: { value: '' } })];
    for (const p of this.participants.values()) {
      if (mod || p.role === 'teacher') options.push(h('option', { text: t('chat.privately', { name: p.name }), attrs: { value: p.id } }));
    }
    this.chatTo.replaceChildren(...options);
    this.chatTo.value = options.some((o) => o.value === prev) ? prev : '';
  }

  /** A moderator's actions on one participant (not themselves). */
  private personActions(p: ParticipantInfo, micOn: boolean): HTMLElement {
    const rs = this.roomState;
    const name = p.name;
    const actions = h('div', { class: 'row actions-row' });
    const mic = p.tracks.find((tr) => tr.source === 'microphone');
    const cam = p.tracks.find((tr) => tr.source === 'camera');
    if (micOn) {
      actions.append(this.modButton(`mute-${p.id}`, t('people.mute'), t('people.muteLabel', { name }), { type: 'mute_participant', participant: p.id, source: 'microphone' }));
    } else if (mic) {
      actions.append(this.modButton(`ask-unmute-${p.id}`, t('people.askUnmute'), t('people.askUnmuteLabel', { name }), { type: 'request_unmute', participant: p.id, source: 'microphone' }));
    }
    if (cam && !cam.muted) {
      actions.append(this.modButton(`stop-camera-${p.id}`, t('people.stopCamera'), t('people.stopCameraLabel', { name }), { type: 'mute_participant', participant: p.id, source: 'camera' }));
    } else if (cam) {
      actions.append(this.modButton(`ask-camera-${p.id}`, t('people.askCamera'), t('people.askCameraLabel', { name }), { type: 'request_unmute', participant: p.id, source: 'camera' }));
    }
    if (rs.ask_to_speak && p.role !== 'teacher') {
      actions.append(
        p.floor
          ? this.modButton(`floor-${p.id}`, t('people.takeFloor'), t('people.takeFloorLabel', { name }), { type: 'take_floor', participant: p.id })
          : this.modButton(`floor-${p.id}`, t('people.giveFloor'), t('people.giveFloorLabel', { name }), { type: 'give_floor', participant: p.id }),
      );
    }
    // Role for the rest of the session.
    const promote = h('select', { class: 'small-select', attrs: { 'data-testid': `promote-${p.id}`, 'aria-label': t('people.roleLabel', { name }) } });
    promote.append(
      h('option', { text: t('people.changeRole'), attrs: { value: '', disabled: true, selected: true } }),
      h('option', { text: t('promote.co_teacher'), attrs: { value: 'co_teacher' } }),
      h('option', { text: t('promote.presenter'), attrs: { value: 'presenter' } }),
      h('option', { text: t('promote.participant'), attrs: { value: 'participant' } }),
    );
    promote.addEventListener('change', () => {
      const to = promote.value as Promotion;
      promote.value = '';
      if (to) this.send({ type: 'promote', participant: p.id, to });
    });
    actions.append(promote);
    // Group, while breakout groups run.
    if (rs.groups.length) {
      const move = h('select', { class: 'small-select', attrs: { 'data-testid': `move-${p.id}`, 'aria-label': t('people.moveLabel', { name }) } });
      move.append(h('option', { text: t('breakout.mainRoom'), attrs: { value: '' } }), ...rs.groups.map((g) => h('option', { text: g.name, attrs: { value: g.id } })));
      move.value = p.group ?? '';
      move.addEventListener('change', () => this.send({ type: 'breakout_move', participant: p.id, group: move.value || null }));
      actions.append(move);
    }
    actions.append(
      h('button', {
        class: 'btn small danger',
        text: t('people.remove'),
        attrs: { type: 'button', 'data-testid': `remove-${p.id}`, 'aria-label': t('people.removeLabel', { name }), 'aria-haspopup': 'dialog' },
        on: { click: () => this.openRemoveDialog(p) },
      }),
    );
    return actions;
  }

  private modButton(testid: string, text: string, aria: string, msg: ClassroomMessage): HTMLButtonElement {
    return h('button', {
      class: 'btn small',
      text,
      attrs: { type: 'button', 'data-testid': testid, 'aria-label': aria, title: aria },
      on: { click: () => this.send(msg) },
    });
  }

  start(): void {
    window.addEventListener('pagehide', this.onPageHide);
    document.addEventListener('keydown', this.onKey);
    this.watchCamera();
    this.render();
    this.session.start();
    // Debugging: `amphiStats()` in the console asks the server for this
    // participant's media statistics (logged by the `stats` handler).
    Object.assign(window, { amphiStats: () => this.session.sendMessage({ type: 'get_stats' }) });
  }

  private local(source: PublishedSource): { track: MediaStreamTrack | null; muted: boolean } {
    if (source === 'screen_share') return { track: this.screen, muted: !this.screen };
    if (source === 'screen_share_audio') return { track: this.screenAudio, muted: !this.screenAudio };
    if (source === 'microphone') return { track: this.media.mic, muted: this.media.micMuted };
    return { track: this.media.cam, muted: !this.media.cam };
  }

  private upsert(ps: ParticipantInfo[]): void {
    for (const p of ps) {
      // Our own echo: local media state stays authoritative; hand, group and
      // floor come from the server.
      if (p.id === this.selfId) this.selfInfo = p;
      else this.participants.set(p.id, p);
    }
    this.render();
    this.renderPeople();
  }

  /** Whether `p` is in our breakout group (or, like us, in the main room). */
  private sameGroup(p: ParticipantInfo): boolean {
    return (p.group ?? null) === (this.selfInfo?.group ?? null);
  }

  // ---- rendering -------------------------------------------------------------

  private render(): void {
    if (this.done) return;
    // Self.
    const m = this.media;
    this.selfTile.setIdentity(this.selfId, this.selfName, t('room.selfName', { name: this.selfName }));
    this.selfTile.setVideo(m.cam, !!m.cam);
    this.selfTile.setMicMuted(!m.mic || m.micMuted);
    const hands = this.roomState.hands;
    this.selfTile.setHand(!!this.selfInfo?.hand_raised, this.selfId ? hands.indexOf(this.selfId) + 1 : 0);

    // Breakout: only the tiles of our group.
    const groupId = this.selfInfo?.group ?? null;
    const group = groupId ? this.roomState.groups.find((g) => g.id === groupId)?.name ?? groupId : null;
    this.groupLabel.hidden = !group;
    this.groupLabel.textContent = group ? t('breakout.inGroup', { group }) : '';
    const visible = new Map([...this.participants].filter(([, p]) => this.sameGroup(p)));

    // Others, in join order.
    for (const [id, p] of visible) {
      let tile = this.tiles.get(id);
      if (!tile) {
        tile = new Tile('tile', false, () => (this.soundBtn.hidden = false));
        tile.enablePin(() => {
          this.pinned = this.pinned === id ? null : id;
          this.render();
        });
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
      tile.setHand(!!p.hand_raised, hands.indexOf(id) + 1);
      tile.setPinned(this.pinned === id);

      const screenInfo = p.tracks.find((tr) => tr.source === 'screen_share');
      const screen = screenInfo && !screenInfo.muted ? mine.find((r) => r.source === 'screen_share') : undefined;
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
      if (!visible.has(id)) {
        if (this.pinned === id) this.pinned = null;
        tile.destroy();
        this.tiles.delete(id);
        this.screenTiles.get(id)?.destroy();
        this.screenTiles.delete(id);
      }
    }
    const n = this.participants.size + 1;
    this.grid.dataset.count = String(Math.min(visible.size + 1, 10));
    this.count.textContent = n === 1 ? t('room.participantsOne') : t('room.participants', { n });
    this.renderControls();
    this.applySpeakers();
    this.applyQuality();
    this.syncViews(visible);
  }

  /** Binds every shown remote video to its server track id (track-views.ts). */
  private syncViews(visible: Map<string, ParticipantInfo>): void {
    const views = new Map<string, { el: HTMLElement; shown: () => boolean }>();
    for (const r of this.remote) {
      if (r.kind !== 'video' || !visible.has(r.participant)) continue;
      const tile = r.source === 'screen_share' ? this.screenTiles.get(r.participant) : this.tiles.get(r.participant);
      if (!tile) continue;
      views.set(r.trackId, { el: tile.videoElement, shown: () => tile.el.dataset.camera === 'on' });
    }
    this.views.sync(views);
  }

  /** Each tile's connection quality indicator (quality.ts). */
  private applyQuality(): void {
    if (this.done) return;
    this.selfTile.setQuality((this.selfId && this.qualities.get(this.selfId)) || null);
    for (const [id, tile] of this.tiles) tile.setQuality(this.qualities.get(id) ?? null);
  }

  /** Speaking highlight and layout, after the tiles changed or the speakers did. */
  private applySpeakers(): void {
    if (this.done) return;
    this.speakerLayout.apply(this.selfId, this.selfTile, this.tiles, this.screenTiles, this.pinned);
  }

  private renderControls(): void {
    const m = this.media;
    const joined = this.session.joined;
    const micOn = !!m.mic && !m.micMuted;
    const camOn = !!m.cam;
    setToggle(this.micBtn, micOn, micOn ? 'mic' : 'micOff', t('room.mic'), shortcut(micOn ? t('room.micOn') : t('room.micOff'), 'M'));
    setToggle(this.camBtn, camOn, camOn ? 'cam' : 'camOff', t('room.camera'), shortcut(camOn ? t('room.camOn') : t('room.camOff'), 'V'));
    this.micBtn.disabled = joined && !this.session.mayPublish('microphone');
    this.camBtn.disabled = joined && !this.session.mayPublish('camera');

    const sharing = !!this.screen;
    this.screenBtn.hidden = !joined || !this.session.mayPublish('screen_share') || !navigator.mediaDevices?.getDisplayMedia;
    this.screenBtn.replaceChildren(icon('screen'), h('span', { class: 'ctl-label', text: t('screen.share') }));
    this.screenBtn.classList.toggle('active', sharing);
    this.screenBtn.dataset.state = sharing ? 'on' : 'off';
    this.screenBtn.setAttribute('aria-label', t('screen.share'));
    this.screenBtn.setAttribute('aria-pressed', String(sharing));
    this.screenBtn.title = sharing ? t('screen.stop') : t('screen.start');

    const raised = !!this.selfInfo?.hand_raised;
    this.handBtn.replaceChildren(icon('hand'), h('span', { class: 'ctl-label', text: t('hand.raise') }));
    this.handBtn.classList.toggle('active', raised);
    this.handBtn.dataset.state = raised ? 'raised' : 'down';
    this.handBtn.setAttribute('aria-label', t('hand.raise'));
    this.handBtn.setAttribute('aria-pressed', String(raised));
    this.handBtn.title = shortcut(raised ? t('hand.lower') : t('hand.raise'), 'H');
    this.handBtn.disabled = !joined;

    const chatLabel = this.unread ? t('chat.toggleUnread', { n: this.unread }) : t('chat.toggle');
    this.chatBtn.replaceChildren(icon('chat'), h('span', { class: 'ctl-label', text: chatLabel }));
    this.chatBtn.setAttribute('aria-label', chatLabel);
    this.chatBtn.setAttribute('aria-expanded', String(!this.chatPanel.hidden));
    this.chatBtn.classList.toggle('active', !this.chatPanel.hidden);
    this.chatBtn.dataset.unread = String(this.unread);
    const waiting = this.moderator ? this.waiting.length : 0;
    const peopleLabel = waiting ? t('people.toggleWaiting', { n: waiting }) : t('people.toggle');
    this.peopleBtn.replaceChildren(icon('people'), h('span', { class: 'ctl-label', text: t('people.toggle') }), this.lobbyBadge);
    this.lobbyBadge.hidden = !waiting;
    this.peopleBtn.setAttribute('aria-label', peopleLabel);
    this.peopleBtn.setAttribute('aria-expanded', String(!this.peoplePanel.hidden));
    this.peopleBtn.classList.toggle('active', !this.peoplePanel.hidden);

    // Ask-to-speak: a student without the floor is told how to speak.
    const held = joined && this.roomState.ask_to_speak && !this.moderator && !this.selfInfo?.floor;
    this.hint.hidden = !held;
    this.hint.textContent = held ? t('mod.askToSpeak') : '';
  }

  private onState(s: ConnState): void {
    window.clearInterval(this.countdown);
    this.countdown = undefined;
    if (s.state === 'waiting') {
      this.banner.textContent = '';
      this.banner.hidden = true;
      this.setWaitingPage(true);
      return;
    }
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

  private async toggleScreen(): Promise<void> {
    if (this.busy || this.done) return;
    if (this.screen) {
      this.stopScreen();
      return;
    }
    this.busy = true;
    try {
      // The shared tab's or system's sound, where the browser offers it
      // (Chromium: a tab, or the whole screen on some systems).
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
      const track = stream.getVideoTracks()[0] ?? null;
      const sound = stream.getAudioTracks()[0] ?? null;
      if (!track || this.done || !this.session.mayPublish('screen_share')) {
        for (const t of stream.getTracks()) t.stop();
        return;
      }
      this.screen = track;
      if (sound && this.session.mayPublish('screen_share_audio')) this.screenAudio = sound;
      else sound?.stop();
      track.addEventListener('ended', () => {
        if (this.screen === track) this.stopScreen();
      });
    } catch (err) {
      // The user chose not to share: nothing to say.
      if (!(err instanceof DOMException && err.name === 'NotAllowedError')) this.toast(t('screen.failed'));
      console.warn('screen sharing failed', err);
    } finally {
      this.busy = false;
    }
    this.render();
    await this.session.updateSource('screen_share');
    await this.session.updateSource('screen_share_audio');
  }

  private stopScreen(): void {
    if (!this.screen) return;
    this.screen.stop();
    this.screen = null;
    this.screenAudio?.stop();
    this.screenAudio = null;
    this.render();
    void this.session.updateSource('screen_share');
    void this.session.updateSource('screen_share_audio');
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
    document.removeEventListener('keydown', this.onKey);
    closeAllDialogs();
    window.clearInterval(this.countdown);
    stopAll(this.media);
    this.screen?.stop();
    this.screen = null;
    this.views.destroy();
    this.selfTile.destroy();
    for (const tile of this.tiles.values()) tile.destroy();
    for (const tile of this.screenTiles.values()) tile.destroy();
    const again = { label: t('error.tryAgain'), run: this.rejoin, primary: true };
    switch (end.kind) {
      case 'left':
        showLeft(this.rejoin);
        return;
      case 'bye':
        if (end.reason === 'removed') {
          showError(t('bye.removedTitle'), t('bye.removed'), end.message, [goHome], 'bye.reason');
        } else if (end.reason === 'denied') {
          showError(t('bye.deniedTitle'), t('bye.denied'), end.message, [goHome]);
        } else if (end.reason === 'room_ended') {
          showError(t('bye.endedTitle'), t('bye.ended'), end.message, [goHome]);
        } else if (end.reason === 'replaced') {
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
          case 'room_locked':
            showError(t('error.title'), t('error.roomLocked'), end.message, [again, goHome]);
            return;
          case 'room_ended':
            showError(t('error.title'), t('error.roomEnded'), end.message, [again, goHome]);
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

/** A toggle button: a stable name, its state in aria-pressed, the action in the tooltip. */
function setToggle(btn: HTMLButtonElement, on: boolean, iconName: 'mic' | 'micOff' | 'cam' | 'camOff', name: string, tip: string): void {
  btn.replaceChildren(icon(iconName), h('span', { class: 'ctl-label', text: name }));
  btn.classList.toggle('off', !on);
  btn.dataset.state = on ? 'on' : 'off';
  btn.setAttribute('aria-label', name);
  btn.setAttribute('aria-pressed', String(on));
  btn.title = tip;
}

/** "Mute microphone (M)". */
function shortcut(action: string, key: string): string {
  return t('shortcuts.tip', { action, key });
}

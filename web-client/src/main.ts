// Entry point: routes on location.pathname (the server serves this same page
// at / and at /room/<ROOM>, the token being in the fragment).
//
//   /                               landing page (dev: form; else a pointer)
//   /room/<ROOM>#token=<JWT>        join page, then the room
//   /room/<ROOM>#token=<JWT>&autojoin=1   straight into the room (automation)
//
// Stable test hooks (tests/*.test.mjs rely on them; keep them):
//   landing:  data-testid="room-input", "name-input", "landing-submit", "landing-error"
//   join:     data-testid="join", "display-name", "camera-select", "mic-select",
//             "preview-toggle-mic", "preview-toggle-camera", "media-issues"
//   room:     each tile data-testid="tile" with data-participant-id,
//             data-participant-name, data-mic="on|off", data-camera="on|off"
//             (a screen share: data-testid="screen-tile");
//             data-quality="good|fair|poor" (connection quality; its badge
//             is data-testid="quality" with the level as aria-label);
//             data-testid="toggle-mic", "toggle-camera" (data-state="on|off"),
//             "leave", "conn-status" (connection banner), "participant-count",
//             "enable-sound" (shown when autoplay blocked remote audio)
//   classroom (room.ts header lists them all):
//             controls: "toggle-hand" (aria-pressed; data-state="raised|down"),
//             "toggle-screen" (shown with the screen_share right), "chat-toggle",
//             "participants-toggle" with its "lobby-badge", "help" (shortcuts
//             dialog "help-dialog"), "lang-toggle" (English / French);
//             tiles: a raised hand is the tile's "hand" (its text: the order);
//             chat: "chat-panel", "chat-to", "chat-input", "chat-count",
//             "chat-send", "chat-error", each "chat-message" with "chat-text";
//             people: "participants" (panel), "hands-list" (in order), each
//             "person" (data-participant-id, data-hand, data-mic);
//             moderators: "mute-<id>", "ask-unmute-<id>", "stop-camera-<id>",
//             "ask-camera-<id>", "floor-<id>", "lower-hand-<id>", "promote-<id>"
//             (select), "move-<id>" (select, during breakouts), "remove-<id>"
//             (dialog "remove-dialog": "remove-reason", "remove-dialog-confirm"),
//             "setting-waiting-room", "setting-lock", "setting-ask-to-speak",
//             "mute-all", "end-room" (dialog "end-dialog"), "breakout-start"
//             (dialog "breakout-dialog": "breakout-count", "breakout-random",
//             "breakout-manual", "breakout-assign-<id>", "breakout-dialog-confirm"),
//             "breakout-end", "visit-<group id>", "visit-main", "breakout-message",
//             "breakout-broadcast"; waiting list "lobby" with "admit-<id>",
//             "deny-<id>" and the live region "lobby-notice";
//             students: "waiting" (waiting page), "unmute-prompt" with
//             "unmute-accept" / "unmute-dismiss", "group-name".
//             Every dialog's buttons: "<dialog>-confirm", "<dialog>-cancel".
//             Shortcuts (not while typing): M microphone, V camera, H hand, ? help.
//   speakers (views/speakers.ts): tiles data-speaking="true" (the dominant
//             speaker, from the server's `speakers`), data-stage="true" (the large
//             tile of the speaker view); "layout-toggle" (aria-pressed) and the
//             "grid"'s data-layout="grid|speaker".
//   screens:  data-testid="error" (with "error-detail": the server's message),
//             "left" and its "rejoin" button
import './styles.css';
import { t } from './i18n';
import { decodeClaims, readFragment } from './token';
import { defaultMedia, showJoin, type RoomContext } from './views/join';
import { showLanding } from './views/landing';
import { enterRoom } from './views/room';
import { goHome, showError, showLoading, showNotFound } from './views/screens';

function roomFromPath(path: string): string | null {
  const m = /^\/room\/([^/]+)\/?$/.exec(path);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
}

function startRoom(room: string): void {
  const { token, autojoin } = readFragment();
  if (!token) {
    showError(t('error.title'), t('join.noToken'), undefined, [goHome]);
    return;
  }
  const ctx: RoomContext = { room, token, claims: decodeClaims(token) };
  const join = () => showJoin(ctx, (media) => enterRoom(ctx, media, join));
  if (autojoin) {
    showLoading();
    void defaultMedia(ctx.claims).then((media) => enterRoom(ctx, media, join));
  } else {
    join();
  }
}

function route(): void {
  const path = location.pathname;
  if (path === '/' || path === '/index.html') {
    void showLanding();
    return;
  }
  const room = roomFromPath(path);
  if (room !== null) startRoom(room);
  else showNotFound();
}

// A different link pasted into the address bar of an open page: start over.
window.addEventListener('hashchange', () => location.reload());
// Back from the browser's page cache: the session was closed on pagehide.
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) location.reload();
});
document.title = t('app.name');
route();

// Landing page "/": in development, a form that mints a token and opens the
// room; otherwise a pointer to the institution's link.
import { devToken, fetchInfo } from '../api';
import { h, mount } from '../dom';
import { t } from '../i18n';
import { roomPath } from '../token';
import { page, showError } from './screens';

// Kept in step with what the server accepts for a room name.
export const ROOM_PATTERN = '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}';
const ROOM_RE = new RegExp(`^${ROOM_PATTERN}$`);
const NAME_KEY = 'amphi.name';

export async function showLanding(): Promise<void> {
  let dev: boolean;
  try {
    dev = (await fetchInfo()).dev;
  } catch (err) {
    console.warn('/api/info failed', err);
    showError(t('app.name'), t('landing.infoFailed'), undefined, [
      { label: t('error.tryAgain'), run: () => location.reload(), primary: true },
    ]);
    return;
  }
  if (!dev) {
    mount(
      page(
        h('h1', { text: t('landing.notDevTitle') }),
        h('p', { text: t('landing.notDev') }),
      ),
    );
    return;
  }
  mount(page(h('h1', { text: t('landing.title') }), h('p', { class: 'muted', text: t('landing.devNotice') }), form()));
  document.querySelector<HTMLInputElement>('[data-testid="room-input"]')?.focus();
}

function form(): HTMLFormElement {
  const room = h('input', {
    attrs: {
      id: 'room', name: 'room', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false',
      maxlength: 64, pattern: ROOM_PATTERN, 'aria-describedby': 'room-hint', 'data-testid': 'room-input',
    },
  });
  let savedName = '';
  try {
    savedName = localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    // No storage.
  }
  const name = h('input', {
    attrs: { id: 'name', name: 'name', type: 'text', required: true, autocomplete: 'name', maxlength: 256, 'data-testid': 'name-input' },
  });
  name.value = savedName;
  const status = h('p', { class: 'form-error', attrs: { role: 'alert', 'data-testid': 'landing-error' } });
  const submit = h('button', {
    class: 'btn primary',
    text: t('landing.submit'),
    attrs: { type: 'submit', 'data-testid': 'landing-submit' },
  });
  const f = h(
    'form',
    { class: 'form', attrs: { novalidate: true } },
    h('label', { text: t('landing.room'), attrs: { for: 'room' } }),
    room,
    h('p', { class: 'hint', text: t('landing.roomHint'), attrs: { id: 'room-hint' } }),
    h('label', { text: t('landing.name'), attrs: { for: 'name' } }),
    name,
    status,
    h('div', { class: 'actions' }, submit),
  );
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const roomName = room.value.trim();
    const displayName = name.value.trim();
    status.textContent = '';
    room.removeAttribute('aria-invalid');
    name.removeAttribute('aria-invalid');
    if (!ROOM_RE.test(roomName)) {
      status.textContent = t('landing.roomInvalid');
      room.setAttribute('aria-invalid', 'true');
      room.focus();
      return;
    }
    if (!displayName) {
      status.textContent = t('landing.nameRequired');
      name.setAttribute('aria-invalid', 'true');
      name.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = t('landing.submitting');
    devToken(roomName, displayName)
      .then((token) => {
        try {
          localStorage.setItem(NAME_KEY, displayName);
        } catch {
          // Not remembered.
        }
        // The token goes in the fragment only: never sent to a server in a URL.
        location.assign(`${roomPath(roomName)}#token=${encodeURIComponent(token)}`);
      })
      .catch((err: unknown) => {
        status.textContent = t('landing.tokenFailed', { message: err instanceof Error ? err.message : String(err) });
        submit.disabled = false;
        submit.textContent = t('landing.submit');
      });
  });
  return f;
}

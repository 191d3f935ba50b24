// Full-page messages: errors, "you left", not found.
import { h, mount } from '../dom';
import { t } from '../i18n';

export interface ScreenAction {
  label: string;
  run: () => void;
  primary?: boolean;
  testid?: string;
}

function page(...children: (Node | null)[]): HTMLElement {
  return h(
    'main',
    { class: 'page' },
    h('div', { class: 'card' }, h('p', { class: 'brand', text: t('app.name') }), ...children),
  );
}

function actions(list: ScreenAction[]): HTMLElement | null {
  if (list.length === 0) return null;
  return h(
    'div',
    { class: 'actions' },
    ...list.map((a) =>
      h('button', {
        class: a.primary ? 'btn primary' : 'btn',
        text: a.label,
        attrs: { type: 'button', 'data-testid': a.testid },
        on: { click: a.run },
      }),
    ),
  );
}

export const goHome: ScreenAction = {
  // A getter: the language may change after this module loads.
  get label() {
    return t('common.home');
  },
  run: () => location.assign('/'),
};

/**
 * The error screen (test hook: data-testid="error"; the server's own words,
 * when there are some, are in data-testid="error-detail").
 */
export function showError(
  title: string,
  message: string,
  detail?: string,
  acts: ScreenAction[] = [],
  detailKey: 'error.serverSaid' | 'bye.reason' = 'error.serverSaid',
): void {
  const heading = h('h1', { text: title, attrs: { tabindex: -1 } });
  mount(
    page(
      h(
        'section',
        { class: 'error', attrs: { 'data-testid': 'error', role: 'alert' } },
        heading,
        h('p', { text: message }),
        detail ? h('p', { class: 'detail', text: t(detailKey, { message: detail }), attrs: { 'data-testid': 'error-detail' } }) : null,
      ),
      actions(acts),
    ),
  );
  heading.focus();
}

export function showLeft(rejoin: () => void): void {
  const heading = h('h1', { text: t('left.title'), attrs: { tabindex: -1 } });
  mount(
    page(
      h('section', { attrs: { 'data-testid': 'left' } }, heading, h('p', { text: t('left.text') })),
      actions([{ label: t('left.rejoin'), run: rejoin, primary: true, testid: 'rejoin' }]),
    ),
  );
  heading.focus();
}

export function showNotFound(): void {
  mount(
    page(
      h('h1', { text: t('notFound.title') }),
      h('p', { text: t('notFound.text') }),
      actions([goHome]),
    ),
  );
}

export function showLoading(): void {
  mount(page(h('p', { class: 'muted', text: t('common.loading'), attrs: { role: 'status' } })));
}

export { page, actions };

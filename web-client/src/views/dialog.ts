// A modal dialog (<dialog> with showModal: focus stays inside, Escape
// cancels, focus returns to the opener on close). Everything in it is built
// with h(), so every text is set as text.
//
// Test hooks: the dialog is `data-testid=<testid>`; its buttons are
// `<testid>-confirm` and `<testid>-cancel`.
import { h } from '../dom';
import { t } from '../i18n';

export interface ModalOptions {
  testid: string;
  title: string;
  body: (Node | null)[];
  confirm: string;
  danger?: boolean;
  /** Return false to keep the dialog open (e.g. invalid input). */
  onConfirm: () => boolean | void;
}

let counter = 0;

export interface Modal {
  el: HTMLDialogElement;
  close(): void;
}

const open = new Set<Modal>();

export function modal(o: ModalOptions): Modal {
  const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const id = `dialog-title-${++counter}`;
  const confirm = h('button', {
    class: o.danger ? 'btn danger' : 'btn primary',
    text: o.confirm,
    attrs: { type: 'submit', 'data-testid': `${o.testid}-confirm` },
  });
  const cancel = h('button', {
    class: 'btn',
    text: t('common.cancel'),
    attrs: { type: 'button', 'data-testid': `${o.testid}-cancel` },
  });
  const form = h(
    'form',
    { class: 'dialog-form' },
    h('h2', { text: o.title, attrs: { id } }),
    ...o.body,
    h('div', { class: 'actions' }, cancel, confirm),
  );
  const el = h('dialog', { class: 'dialog', attrs: { 'aria-labelledby': id, 'data-testid': o.testid } }, form);
  const m: Modal = {
    el,
    close() {
      if (!open.delete(m)) return;
      if (el.open) el.close();
      el.remove();
      if (opener?.isConnected) opener.focus();
    },
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (o.onConfirm() === false) return;
    m.close();
  });
  cancel.addEventListener('click', () => m.close());
  el.addEventListener('close', () => m.close());
  document.body.appendChild(el);
  open.add(m);
  el.showModal();
  const first = form.querySelector<HTMLElement>('[autofocus], input, select, textarea');
  (first ?? cancel).focus();
  return m;
}

/** Whether a dialog is open (keyboard shortcuts stay quiet then). */
export function dialogOpen(): boolean {
  return open.size > 0;
}

/** Closes every dialog (the session ended). */
export function closeAllDialogs(): void {
  for (const m of [...open]) m.close();
}

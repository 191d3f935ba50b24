// Connection quality: three bars on each tile, lit as the server's
// `connection_quality` allows (3 good, 2 fair, 1 poor), colour-coded, with
// the level in words as the accessible name (never colour alone).
//
// Test hook: the tile carries `data-quality="good"|"fair"|"poor"`; the badge
// is `data-testid="quality"`.
import { h } from '../dom';
import { t } from '../i18n';
import type { ConnectionQuality, ParticipantQuality } from '../protocol';

const SVG_NS = 'http://www.w3.org/2000/svg';
const LIT: Record<ConnectionQuality, number> = { good: 3, fair: 2, poor: 1 };

export function qualityBadge(): HTMLElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 12 12');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', 'icon bars');
  for (let i = 0; i < 3; i++) {
    const bar = document.createElementNS(SVG_NS, 'rect');
    const height = 4 + 3 * i;
    bar.setAttribute('x', String(1 + 4 * i));
    bar.setAttribute('y', String(12 - height));
    bar.setAttribute('width', '2.5');
    bar.setAttribute('height', String(height));
    bar.setAttribute('rx', '0.6');
    svg.appendChild(bar);
  }
  return h('span', { class: 'badge quality', attrs: { role: 'img', 'data-testid': 'quality' } }, svg);
}

/** Shows `quality` on a badge made by `qualityBadge`, in the current language. */
export function showQuality(badge: HTMLElement, quality: ConnectionQuality): void {
  badge.dataset.quality = quality;
  const label = t(`quality.${quality}`);
  badge.setAttribute('aria-label', label);
  badge.title = label;
  badge.querySelectorAll('rect').forEach((bar, i) => bar.classList.toggle('lit', i < LIT[quality]));
}

/** Merges a `connection_quality` message (the first after joining lists
 *  everyone, later ones what changed) into the qualities by participant id. */
export function mergeQualities(into: Map<string, ConnectionQuality>, list: ParticipantQuality[]): void {
  for (const p of list) {
    // A level this client does not know shows no badge rather than an old one.
    if (p.quality in LIT) into.set(p.participant, p.quality);
    else into.delete(p.participant);
  }
}

// Active speakers in the room view: the tile of whoever speaks is
// highlighted (from the server's `speakers` messages, docs/protocol.md: the
// server detects speech from audio levels, so every participant sees the same
// speaker), and a speaker view shows one tile large — the tile the user
// pinned, else a screen share if there is one, else the dominant speaker —
// with the others as a strip.
//
// Test hooks: the toggle is `data-testid="layout-toggle"` (with
// aria-pressed); the grid has `data-layout="grid"|"speaker"`; tiles carry
// `data-speaking` and `data-stage` (tile.ts).
import { h } from '../dom';
import { t } from '../i18n';
import type { SpeakerInfo } from '../protocol';
import type { Tile } from './tile';

export class SpeakerLayout {
  readonly button: HTMLButtonElement;
  private speakers: SpeakerInfo[] = [];
  private speakerView = false;
  /** The remote participant shown large. Kept while we ourselves or nobody
   * speaks, so that the large tile does not jump to our own camera or back
   * and forth between pauses. */
  private staged: string | null = null;

  constructor(
    private readonly grid: HTMLElement,
    private readonly changed: () => void,
  ) {
    this.button = h('button', { class: 'btn small', attrs: { type: 'button', 'data-testid': 'layout-toggle', 'aria-pressed': 'false' } });
    this.button.addEventListener('click', () => {
      this.speakerView = !this.speakerView;
      this.changed();
    });
    this.relabel();
  }

  /** The server's latest list: the dominant speaker first; empty: nobody. */
  setSpeakers(list: SpeakerInfo[]): void {
    this.speakers = list;
    this.changed();
  }

  /** Forgets the speakers (a new session: ids from the old one mean nothing). */
  reset(): void {
    this.speakers = [];
    this.staged = null;
  }

  relabel(): void {
    this.button.textContent = t('layout.speaker');
    this.button.setAttribute('aria-pressed', String(this.speakerView));
    this.button.title = this.speakerView ? t('layout.toGrid') : t('layout.toSpeaker');
  }

  /** Marks the speaking tiles and, in the speaker view, the large one. */
  apply(
    selfId: string | null,
    self: Tile,
    tiles: ReadonlyMap<string, Tile>,
    screens: ReadonlyMap<string, Tile>,
    pinned: string | null = null,
  ): void {
    const dominant = this.speakers[0]?.participant ?? null;
    const active = new Set(this.speakers.map((s) => s.participant));
    const state = (id: string | null) => (id === null ? 'none' : id === dominant ? 'dominant' : active.has(id) ? 'active' : 'none');
    self.setSpeaking(state(selfId));
    for (const [id, tile] of tiles) tile.setSpeaking(state(id));

    if (dominant && dominant !== selfId && tiles.has(dominant)) this.staged = dominant;
    if (this.staged && !tiles.has(this.staged)) this.staged = null;
    this.staged ??= [...tiles.keys()][0] ?? null;
    let stage: Tile | null = null;
    if (this.speakerView) {
      // The user's own choice first, then what is being shown, then who speaks.
      stage = (pinned ? tiles.get(pinned) : undefined) ?? [...screens.values()][0] ?? (this.staged ? tiles.get(this.staged) : undefined) ?? self;
    }
    self.setStage(stage === self);
    for (const tile of tiles.values()) tile.setStage(tile === stage);
    for (const tile of screens.values()) tile.setStage(tile === stage);
    this.grid.dataset.layout = this.speakerView ? 'speaker' : 'grid';
    this.relabel();
  }
}

// Tells the server how each received video is shown (`track_settings`): its
// size on screen in device pixels, and whether it can be seen at all. The
// server then sends no larger simulcast layer than the tile needs, and no
// video for a tile that is scrolled away, covered by the initials (camera
// off), or in a tab in the background.
//
// Changes are coalesced (a window being resized fires many) and only sent
// when they matter: visibility, or a size change of more than 10%.

export type SendView = (track: string, visible: boolean, width: number, height: number) => void;

interface Bound {
  el: HTMLElement;
  /** Whether the tile shows the video (false while it shows initials). */
  shown: () => boolean;
  inView: boolean;
}

const SETTLE_MS = 200;

export class TrackViews {
  private readonly bound = new Map<string, Bound>();
  private readonly sent = new Map<string, { visible: boolean; width: number; height: number }>();
  private readonly resize: ResizeObserver;
  private readonly intersect: IntersectionObserver;
  private timer: number | null = null;
  private readonly onVisibility = () => this.schedule();

  constructor(private readonly send: SendView) {
    this.resize = new ResizeObserver(() => this.schedule());
    this.intersect = new IntersectionObserver((entries) => {
      for (const e of entries) {
        for (const b of this.bound.values()) if (b.el === e.target) b.inView = e.isIntersecting;
      }
      this.schedule();
    });
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  /** The video elements that now show received tracks, by server track id. */
  sync(views: Map<string, { el: HTMLElement; shown: () => boolean }>): void {
    for (const [track, b] of this.bound) {
      const now = views.get(track);
      if (!now || now.el !== b.el) {
        this.resize.unobserve(b.el);
        this.intersect.unobserve(b.el);
        this.bound.delete(track);
        if (!now) this.sent.delete(track);
      }
    }
    for (const [track, v] of views) {
      if (this.bound.has(track)) {
        this.bound.get(track)!.shown = v.shown;
        continue;
      }
      this.bound.set(track, { el: v.el, shown: v.shown, inView: true });
      this.resize.observe(v.el);
      this.intersect.observe(v.el);
    }
    this.schedule();
  }

  /** Sends every view again (after a reconnection the server knows none). */
  resend(): void {
    this.sent.clear();
    this.schedule();
  }

  destroy(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.resize.disconnect();
    this.intersect.disconnect();
    document.removeEventListener('visibilitychange', this.onVisibility);
    this.bound.clear();
  }

  private schedule(): void {
    if (this.timer !== null) return;
    this.timer = window.setTimeout(() => {
      this.timer = null;
      this.flush();
    }, SETTLE_MS);
  }

  private flush(): void {
    const dpr = window.devicePixelRatio || 1;
    const pageVisible = document.visibilityState === 'visible';
    for (const [track, b] of this.bound) {
      const rect = b.el.getBoundingClientRect();
      const visible = pageVisible && b.inView && b.shown() && rect.width > 0 && rect.height > 0;
      const width = visible ? Math.round(rect.width * dpr) : 0;
      const height = visible ? Math.round(rect.height * dpr) : 0;
      const last = this.sent.get(track);
      const resized =
        !last || Math.abs(width - last.width) > last.width * 0.1 || Math.abs(height - last.height) > last.height * 0.1;
      if (last && last.visible === visible && !resized) continue;
      this.sent.set(track, { visible, width, height });
      this.send(track, visible, width, height);
    }
  }
}

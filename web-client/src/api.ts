// The few HTTP endpoints beside the WebSocket (same origin only).

export interface ServerInfo {
  version: string;
  dev: boolean;
}

export async function fetchInfo(): Promise<ServerInfo> {
  const res = await fetch('/api/info', { cache: 'no-store', credentials: 'same-origin' });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const body = (await res.json()) as Partial<ServerInfo>;
  return { version: String(body.version ?? ''), dev: body.dev === true };
}

/** Development only: asks the server for a token (POST body, never the URL). */
export async function devToken(room: string, name: string): Promise<string> {
  const res = await fetch('/api/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ room, name }),
    cache: 'no-store',
    credentials: 'same-origin',
  });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: report the text below.
  }
  if (!res.ok) {
    // The server answers {"error": "…"}.
    const o = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
    const said = o.error ?? o.message;
    const msg = typeof said === 'string' && said ? said : text.trim() || `HTTP ${res.status}`;
    throw new Error(msg);
  }
  const token = body && typeof body === 'object' ? (body as { token?: unknown }).token : undefined;
  if (typeof token !== 'string' || !token) throw new Error('no token in the answer');
  return token;
}

/** ws:// or wss:// URL of the signalling socket on this origin. */
export function signallingUrl(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/rtc`;
}

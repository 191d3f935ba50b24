// The join link is /room/<ROOM>#token=<JWT>[&autojoin=1]. The token lives only
// in the fragment (never sent in a request URL) and in the `join` message.

export interface LinkParams {
  token: string | null;
  autojoin: boolean;
}

export function readFragment(hash: string = location.hash): LinkParams {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const token = params.get('token');
  return {
    token: token && token.trim() ? token.trim() : null,
    autojoin: params.get('autojoin') === '1',
  };
}

export interface TokenClaims {
  sub?: string;
  name?: string;
  room?: string;
  role?: string;
  exp?: number;
}

/**
 * The token's payload, decoded for display only (the name on the join page).
 * The signature is not checked here: the server decides what the token allows.
 */
export function decodeClaims(token: string): TokenClaims | null {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const json: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof json !== 'object' || json === null) return null;
    const o = json as Record<string, unknown>;
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    return {
      sub: str(o.sub),
      name: str(o.name),
      room: str(o.room),
      role: str(o.role),
      exp: typeof o.exp === 'number' ? o.exp : undefined,
    };
  } catch {
    return null;
  }
}

/** The path of a room's page. */
export function roomPath(room: string): string {
  return `/room/${encodeURIComponent(room)}`;
}

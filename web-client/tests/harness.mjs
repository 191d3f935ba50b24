// Test harness for the browser tests: an `amphi serve --dev` on ephemeral
// ports, tokens from `amphi token --dev`, and ONE headless Debian Chromium
// (playwright-core, no downloaded browser) whose pages are the participants.
//
// Environment:
//   AMPHI_BIN       the server binary (default ../target/debug/amphi)
//   CHROMIUM_BIN    the browser (default /usr/bin/chromium)
//   AMPHI_TEST_LOG  if set, a file to which server and page logs are appended
//
// Run inside a loopback-only namespace, as CI does:
//   unshare -n bash -c 'ip link set lo up && cd web-client && npm test'
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm, mkdir, appendFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const WEB_CLIENT_DIR = path.resolve(here, '..');
export const AMPHI_BIN = process.env.AMPHI_BIN || path.resolve(WEB_CLIENT_DIR, '../target/debug/amphi');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// From shared/testing-webrtc.md. No --disable-features: playwright passes one.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A log kept in memory (printed when a test fails) and optionally on disk. */
export class Log {
  lines = [];
  add(source, text) {
    const line = `${new Date().toISOString().slice(11, 23)} [${source}] ${String(text).trimEnd()}`;
    this.lines.push(line);
    if (this.lines.length > 4000) this.lines.splice(0, 1000);
    if (process.env.AMPHI_TEST_LOG) appendFile(process.env.AMPHI_TEST_LOG, line + '\n').catch(() => {});
  }
  tail(n = 200) {
    return this.lines.slice(-n).join('\n');
  }
}

export function requireBinaries() {
  const missing = [];
  if (!existsSync(AMPHI_BIN)) missing.push(`server binary ${AMPHI_BIN} (cargo build -p amphi, or set AMPHI_BIN)`);
  if (!existsSync(CHROMIUM_BIN)) missing.push(`browser ${CHROMIUM_BIN} (apt-get install -y chromium)`);
  if (!existsSync(path.join(WEB_CLIENT_DIR, 'dist', 'index.html'))) missing.push('web-client/dist (npm run build)');
  if (missing.length) throw new Error(`missing: ${missing.join('; ')}`);
}

/** Starts `amphi serve --dev` on ephemeral ports; resolves once it listens. */
export async function startServer(log, { timeoutMs = 20_000, extraArgs = [] } = {}) {
  const args = ['serve', '--dev', '--listen', '127.0.0.1:0', '--udp-port', '0', ...extraArgs];
  const proc = spawn(AMPHI_BIN, args, {
    cwd: path.resolve(WEB_CLIENT_DIR, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  let exited = null;
  const exitPromise = new Promise((resolve) => proc.once('exit', (code, signal) => resolve((exited = { code, signal }))));
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`server did not print its listening line in ${timeoutMs} ms`)), timeoutMs);
    const onLine = (source) => (chunk) => {
      const text = chunk.toString();
      for (const line of text.split('\n')) if (line.trim()) log.add(source, line);
      if (source === 'server') {
        buf += text;
        const m = /listening on (https?:\/\/\S+)/.exec(buf);
        if (m) {
          clearTimeout(timer);
          resolve(m[1].replace(/\/?$/, '/'));
        }
      }
    };
    proc.stdout.on('data', onLine('server'));
    proc.stderr.on('data', onLine('server-err'));
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    exitPromise.then((e) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (${JSON.stringify(e)})\n${log.tail(40)}`));
    });
  });
  return {
    url,
    origin: new URL(url).origin,
    proc,
    async stop() {
      if (exited) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3_000);
      await exitPromise;
      clearTimeout(t);
    },
  };
}

/** `amphi token --dev …`: one JWT. */
export function mintToken({ room, identity, name, role, ttl }) {
  const args = ['token', '--dev', '--room', room, '--identity', identity, '--name', name];
  if (role) args.push('--role', role);
  if (ttl) args.push('--ttl', ttl);
  return new Promise((resolve, reject) => {
    execFile(AMPHI_BIN, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`amphi token failed: ${err.message}\n${stderr}`));
      const token = stdout.trim().split('\n').pop()?.trim();
      if (!token || token.split('.').length !== 3) return reject(new Error(`amphi token printed no JWT: ${stdout}`));
      resolve(token);
    });
  });
}

/**
 * Runs in every page before its own scripts: collects the page's
 * RTCPeerConnections (for getStats) and WebSockets (so a test can cut the
 * signalling link), and lets a test make sockets "deaf" (incoming messages
 * dropped, as if the server went silent) with `window.__amphiDeaf = true`.
 */
function instrumentPage() {
  if (window.__amphiPCs) return;
  window.__amphiPCs = [];
  window.__amphiSockets = [];
  window.__amphiDeaf = false;
  const OrigPC = window.RTCPeerConnection;
  if (OrigPC) {
    window.RTCPeerConnection = class extends OrigPC {
      constructor(...args) {
        super(...args);
        window.__amphiPCs.push(this);
      }
    };
  }
  const OrigWS = window.WebSocket;
  const desc = Object.getOwnPropertyDescriptor(OrigWS.prototype, 'onmessage');
  window.WebSocket = class extends OrigWS {
    constructor(...args) {
      super(...args);
      window.__amphiSockets.push(this);
    }
    get onmessage() {
      return desc.get.call(this);
    }
    set onmessage(fn) {
      desc.set.call(this, fn && ((ev) => (window.__amphiDeaf ? undefined : fn.call(this, ev))));
    }
  };
}

/** Makes getUserMedia refuse the camera in `page` (as a user clicking "Block"). */
export function denyCamera(page) {
  return page.addInitScript(() => {
    const md = navigator.mediaDevices;
    const orig = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => {
      if (c && c.video) throw new DOMException('Permission denied', 'NotAllowedError');
      return orig(c);
    };
  });
}

/** One Chromium, with HOME and XDG_* in a temporary folder. */
export async function launchBrowser(log, { extraArgs = [] } = {}) {
  const root = await mkdtemp(path.join(tmpdir(), 'amphi-chromium-'));
  const home = path.join(root, 'home');
  const profile = path.join(root, 'profile');
  const runtime = path.join(root, 'run');
  await mkdir(home, { recursive: true });
  await mkdir(runtime, { recursive: true, mode: 0o700 });
  const env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    XDG_DATA_HOME: path.join(home, '.local/share'),
    XDG_STATE_HOME: path.join(home, '.local/state'),
    XDG_RUNTIME_DIR: runtime,
  };
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_BIN,
    headless: true,
    permissions: ['camera', 'microphone'],
    args: [...CHROMIUM_ARGS, ...extraArgs],
    env,
    locale: 'en-US',
    viewport: { width: 800, height: 600 },
    timeout: 30_000,
  });
  await context.addInitScript(instrumentPage);
  return {
    context,
    async stop() {
      await context.close().catch((err) => log.add('harness', `closing the browser: ${err}`));
      await rm(root, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/**
 * A new page (tab), whose console and network are watched: `watch.urls` gets
 * every request and WebSocket URL, `watch.pageErrors` uncaught exceptions,
 * `watch.consoleErrors` console.error lines.
 */
export async function openPage(context, label, log, watch) {
  const page = await context.newPage();
  page.on('console', (msg) => {
    log.add(label, `${msg.type()}: ${msg.text()}`);
    if (msg.type() === 'error') (watch.consoleErrors ??= []).push(`${label}: ${msg.text().slice(0, 300)}`);
  });
  page.on('pageerror', (err) => {
    log.add(label, `PAGE ERROR: ${err.message}`);
    watch.pageErrors.push(`${label}: ${err.message}`);
  });
  page.on('request', (req) => watch.urls.push(req.url()));
  page.on('websocket', (ws) => watch.urls.push(ws.url()));
  return page;
}

/** inbound-rtp entries of all the page's peer connections. */
export async function inboundStats(page) {
  return page.evaluate(async () => {
    const out = [];
    const pcs = window.__amphiPCs || [];
    for (let i = 0; i < pcs.length; i++) {
      let report;
      try {
        report = await pcs[i].getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        out.push({
          key: `${i}/${s.id}`,
          kind: s.kind,
          mid: s.mid,
          ssrc: s.ssrc,
          framesDecoded: s.framesDecoded ?? 0,
          packetsReceived: s.packetsReceived ?? 0,
        });
      });
    }
    return out;
  });
}

/**
 * How many remote video streams decode frames and how many audio streams
 * receive packets, between two samples `gapMs` apart.
 */
export async function flowingStreams(page, gapMs = 1_500) {
  const before = new Map((await inboundStats(page)).map((s) => [s.key, s]));
  await sleep(gapMs);
  const after = await inboundStats(page);
  let video = 0;
  let audio = 0;
  for (const s of after) {
    const b = before.get(s.key);
    if (s.kind === 'video' && s.framesDecoded > 0 && s.framesDecoded > (b?.framesDecoded ?? 0)) video++;
    if (s.kind === 'audio' && s.packetsReceived > 0 && s.packetsReceived > (b?.packetsReceived ?? 0)) audio++;
  }
  return { video, audio, streams: after };
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor(what, fn, { timeoutMs = 20_000, intervalMs = 250 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await sleep(intervalMs);
  }
}

/** The participant id of the page's own tile (once joined). */
export function selfId(page) {
  return page
    .locator('[data-testid="tile"] video.mirror')
    .evaluate((v) => v.closest('[data-testid="tile"]').getAttribute('data-participant-id'));
}

/**
 * What `page` decodes of `participant`'s camera tile, from the inbound-rtp
 * stats of the track the tile plays: frame size and count, the tile's width
 * in CSS pixels, the local UDP port of the connection it comes on, and all
 * audio packets the page received. `null` before the tile plays a track.
 */
export async function decodedVideo(page, participant) {
  return page.evaluate(async (id) => {
    const video = document.querySelector(`[data-testid="tile"][data-participant-id="${id}"] video`);
    const track = video?.srcObject?.getVideoTracks?.()[0];
    if (!track) return null;
    let out = null;
    let audio = 0;
    for (const pc of window.__amphiPCs || []) {
      let report;
      try {
        report = await pc.getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') audio += s.packetsReceived ?? 0;
        if (s.type !== 'inbound-rtp' || s.kind !== 'video' || s.trackIdentifier !== track.id) return;
        out = { width: s.frameWidth ?? 0, height: s.frameHeight ?? 0, frames: s.framesDecoded ?? 0, bytes: s.bytesReceived ?? 0, lost: s.packetsLost ?? 0, nacks: s.nackCount ?? 0, freezes: s.totalFreezesDuration ?? 0, at: s.timestamp, port: 0 };
        out.tile = Math.round(video.getBoundingClientRect().width);
        report.forEach((t) => {
          if (t.type !== 'transport' || !t.selectedCandidatePairId) return;
          const pair = report.get(t.selectedCandidatePairId);
          const local = pair && report.get(pair.localCandidateId);
          if (local) out.port = local.port;
        });
      });
    }
    return out && { ...out, audio };
  }, participant);
}

/** The tiles the page shows: [{id, name, camera, mic}]. */
export function tiles(page) {
  return page.$$eval('[data-testid="tile"]', (els) =>
    els.map((el) => ({
      id: el.getAttribute('data-participant-id'),
      name: el.getAttribute('data-participant-name'),
      camera: el.getAttribute('data-camera'),
      mic: el.getAttribute('data-mic'),
    })),
  );
}

/** Remote tiles whose <video> really shows a picture (non-zero size, advancing). */
export function playingRemoteVideos(page) {
  return page.$$eval('[data-testid="tile"]', (els) =>
    els.filter((el) => {
      const v = el.querySelector('video');
      return v && !v.classList.contains('mirror') && v.videoWidth > 0 && !v.paused && el.getAttribute('data-camera') === 'on';
    }).length,
  );
}

/** How many signalling sockets the page has opened (1 = never reconnected). */
export function socketCount(page) {
  return page.evaluate(() => window.__amphiSockets.length);
}

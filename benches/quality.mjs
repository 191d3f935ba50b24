#!/usr/bin/env node
// Media-quality benchmark in real headless Chromium (issue 3): how long a
// student waits for the teacher's picture after joining, and how long a
// layer switch takes when a tile is enlarged (small layer -> 1280x720) or
// made small again (-> 320 wide or less).
//
//   node benches/quality.mjs [--runs N] [--out FILE] [--smoke]
//
// Each run is a fresh room: a teacher with the fake 720p camera, then a
// student whose window is small. Times are measured by polling the
// student's getStats() every 20 ms, so they are accurate to about that.
// Needs the server binary (AMPHI_BIN or target/debug/amphi; use a release
// build for numbers worth comparing) and Debian's chromium; run inside
// `unshare -n` like the browser tests. Writes benches/results/quality.json
// (or --out) and prints a summary. --smoke: one run, no file unless --out.
import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AMPHI_BIN,
  Log,
  decodedVideo as seen,
  selfId,
  launchBrowser,
  mintToken,
  openPage,
  requireBinaries,
  startServer,
  waitFor,
} from '../web-client/tests/harness.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const smoke = args.includes('--smoke');
const runs = Number(opt('--runs', smoke ? 1 : 10));
const out = opt('--out', smoke ? null : path.join(root, 'benches/results/quality.json'));

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, min: s[0], p50: q(0.5), p90: q(0.9), max: s[s.length - 1] };
};

const log = new Log();
requireBinaries();
const server = await startServer(log);
const browser = await launchBrowser(log);
const samples = { first_frame_ms: [], switch_up_ms: [], switch_down_ms: [] };
try {
  for (let i = 0; i < runs; i++) {
    const room = `bench-${Date.now().toString(36)}-${i}`;
    const link = (tok) => `${server.url}room/${room}#token=${tok}&autojoin=1`;
    const [tokT, tokS] = await Promise.all([
      mintToken({ room, identity: 'teacher', name: 'Teacher', role: 'teacher' }),
      mintToken({ room, identity: 'student', name: 'Student', role: 'student' }),
    ]);
    const watch = { urls: [], pageErrors: [] };
    const T = await openPage(browser.context, 'T', log, watch);
    await T.goto(link(tokT));
    const idT = await waitFor('the teacher to join', () => selfId(T).catch(() => null));
    const S = await openPage(browser.context, 'S', log, watch);
    await S.setViewportSize({ width: 360, height: 640 });
    // From opening the link to the first decoded frame of the teacher.
    const t0 = performance.now();
    await S.goto(link(tokS));
    await waitFor('the first frame', async () => (await seen(S, idT))?.frames > 0, { timeoutMs: 30_000, intervalMs: 20 });
    samples.first_frame_ms.push(Math.round(performance.now() - t0));

    await waitFor('the small layer', async () => {
      const v = await seen(S, idT);
      return v && v.width > 0 && v.width <= 320;
    }, { timeoutMs: 30_000 });
    // Up: the student maximises the window and pins the teacher's tile.
    const tile = S.locator(`[data-testid="tile"][data-participant-id="${idT}"]`);
    let t1 = performance.now();
    await S.setViewportSize({ width: 1920, height: 1080 });
    await tile.hover();
    await tile.getByTestId('pin').click();
    await waitFor('1280x720', async () => (await seen(S, idT))?.width === 1280, { timeoutMs: 30_000, intervalMs: 20 });
    samples.switch_up_ms.push(Math.round(performance.now() - t1));
    // Down: back to the phone-sized window, unpinned.
    t1 = performance.now();
    await S.setViewportSize({ width: 360, height: 640 });
    await tile.getByTestId('pin').click();
    await waitFor('320 wide or less', async () => {
      const v = await seen(S, idT);
      return v && v.width > 0 && v.width <= 320;
    }, { timeoutMs: 30_000, intervalMs: 20 });
    samples.switch_down_ms.push(Math.round(performance.now() - t1));
    await S.close();
    await T.close();
    process.stderr.write(`run ${i + 1}/${runs}: first frame ${samples.first_frame_ms.at(-1)} ms, up ${samples.switch_up_ms.at(-1)} ms, down ${samples.switch_down_ms.at(-1)} ms\n`);
  }
} finally {
  await browser.stop();
  await server.stop();
}

let revision = 'unknown';
try {
  revision = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root }).toString().trim();
} catch {
  // not a git checkout
}
const result = {
  benchmark: 'quality',
  revision,
  server: path.relative(root, AMPHI_BIN),
  runs,
  first_frame_ms: stats(samples.first_frame_ms),
  switch_up_ms: stats(samples.switch_up_ms),
  switch_down_ms: stats(samples.switch_down_ms),
  samples,
};
console.log(JSON.stringify(result, null, 2));
if (out) writeFileSync(out, JSON.stringify(result, null, 2) + '\n');

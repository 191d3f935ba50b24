// The rest of a meeting's life, through the web client: camera and
// microphone toggles as others see them, a refused camera, a receive-only
// guest, a cut or silent signalling link (automatic reconnection), a second
// tab taking over, and a token that expired before a reconnection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Log,
  denyCamera,
  flowingStreams,
  launchBrowser,
  mintToken,
  openPage,
  playingRemoteVideos,
  requireBinaries,
  sleep,
  socketCount,
  startServer,
  tiles,
  waitFor,
} from './harness.mjs';

const log = new Log();
let server = null;
let browser = null;
let failed = false;
const watch = { urls: [], pageErrors: [] };
const room = `lab-${Date.now().toString(36)}`;
let base;
let P, Q; // the two participants present throughout
let tokenP;

before(async () => {
  requireBinaries();
  server = await startServer(log);
  browser = await launchBrowser(log);
  base = server.url;
});

after(async () => {
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

/** Runs a test body, remembering failures so the log gets printed. */
function body(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      failed = true;
      throw err;
    }
  };
}

async function join(label, identity, name, { autojoin = true, role, ttl, deny = false } = {}) {
  const token = await mintToken({ room, identity, name, role, ttl });
  const page = await openPage(browser.context, label, log, watch);
  if (deny) await denyCamera(page);
  await page.goto(`${base}room/${room}#token=${token}${autojoin ? '&autojoin=1' : ''}`);
  return { page, token };
}

async function tileOf(page, name) {
  return (await tiles(page)).find((x) => x.name === name);
}

async function waitNames(page, label, names, timeoutMs = 15_000) {
  const want = [...names].sort();
  await waitFor(
    `${label} to show tiles ${want.join(', ')}`,
    async () => {
      const got = (await tiles(page)).map((x) => x.name).sort();
      return JSON.stringify(got) === JSON.stringify(want);
    },
    { timeoutMs },
  );
}

async function bannerText(page) {
  return page.getByTestId('conn-status').evaluate((el) => (el.hidden ? '' : el.textContent));
}

test('camera and microphone toggles are seen by the others', { timeout: 60_000 }, body(async () => {
  ({ page: P, token: tokenP } = await join('P', 'paul', 'Paul'));
  ({ page: Q } = await join('Q', 'quinn', 'Quinn'));
  await waitNames(P, 'P', ['Paul', 'Quinn']);
  await waitNames(Q, 'Q', ['Paul', 'Quinn']);
  await waitFor('Q to decode P', async () => (await flowingStreams(Q)).video >= 1, { timeoutMs: 20_000, intervalMs: 0 });

  // Camera off: P's button, P's own tile and Q's view of P all say so.
  await P.getByTestId('toggle-camera').click();
  await waitFor('P camera button off', async () => (await P.getByTestId('toggle-camera').getAttribute('data-state')) === 'off', { timeoutMs: 5_000 });
  await waitFor('Q to see P camera off', async () => (await tileOf(Q, 'Paul'))?.camera === 'off', { timeoutMs: 5_000 });
  assert.equal((await tileOf(P, 'Paul')).camera, 'off');
  // The device is released, not just blanked.
  const liveCams = await P.evaluate(() =>
    window.__amphiPCs.flatMap((pc) => (pc.signalingState === 'closed' ? [] : pc.getSenders()))
      .filter((s) => s.track && s.track.kind === 'video' && s.track.readyState === 'live').length,
  );
  assert.equal(liveCams, 0, 'no live camera track is sent while the camera is off');

  // Camera on again: Q sees a picture again.
  await P.getByTestId('toggle-camera').click();
  await waitFor('Q to see P camera on', async () => (await tileOf(Q, 'Paul'))?.camera === 'on', { timeoutMs: 10_000 });
  await waitFor('Q to decode P again', async () => (await flowingStreams(Q, 1_000)).video >= 1, { timeoutMs: 10_000, intervalMs: 0 });
  await waitFor('Q to play P video', async () => (await playingRemoteVideos(Q)) >= 1, { timeoutMs: 10_000 });

  // Microphone mute and unmute.
  await P.getByTestId('toggle-mic').click();
  await waitFor('Q to see P muted', async () => (await tileOf(Q, 'Paul'))?.mic === 'off', { timeoutMs: 5_000 });
  assert.equal((await tileOf(P, 'Paul')).mic, 'off');
  await P.getByTestId('toggle-mic').click();
  await waitFor('Q to see P unmuted', async () => (await tileOf(Q, 'Paul'))?.mic === 'on', { timeoutMs: 5_000 });
}));

test('a refused camera still joins with sound; a guest only watches', { timeout: 60_000 }, body(async () => {
  // R refuses the camera on the join page.
  const { page: R } = await join('R', 'rita', 'Rita', { autojoin: false, deny: true });
  const issues = R.getByTestId('media-issues');
  await waitFor('R to explain the refused camera', async () => /camera was refused/i.test(await issues.innerText()), { timeoutMs: 10_000 });
  await R.getByTestId('join').click();

  // G is a guest: no devices asked for, receive-only.
  const { page: G } = await join('G', 'gus', 'Gus', { autojoin: false, role: 'guest' });
  await waitFor('G to say it only watches', async () => /watch and listen/i.test(await G.getByTestId('media-issues').innerText()), { timeoutMs: 10_000 });
  assert.equal(await G.locator('.preview').count(), 0, 'no camera preview for a guest');
  await G.getByTestId('join').click();

  const everyone = ['Paul', 'Quinn', 'Rita', 'Gus'];
  for (const [label, page] of [['P', P], ['Q', Q], ['R', R], ['G', G]]) await waitNames(page, label, everyone);
  await waitFor('Q to see Rita without camera', async () => (await tileOf(Q, 'Rita'))?.camera === 'off', { timeoutMs: 5_000 });
  assert.equal((await tileOf(Q, 'Rita')).mic, 'on', 'Rita is heard');
  assert.equal((await tileOf(Q, 'Gus')).camera, 'off');
  assert.equal((await tileOf(Q, 'Gus')).mic, 'off');

  // Q hears P and R (R sends sound only); G sees P and Q and hears P, Q, R.
  await waitFor('Q to receive 2 audio streams', async () => (await flowingStreams(Q, 1_000)).audio >= 2, { timeoutMs: 20_000, intervalMs: 0 });
  const g = await waitFor('G to decode 2 videos and 3 audios', async () => {
    const f = await flowingStreams(G, 1_000);
    return f.video >= 2 && f.audio >= 3 ? f : false;
  }, { timeoutMs: 20_000, intervalMs: 0 });
  assert.equal(g.video, 2, 'nobody sends video but P and Q');
  assert.equal(await G.evaluate(() => window.__amphiPCs.length), 1, 'a guest opens no publisher connection');

  // Closing a tab leaves the meeting.
  await R.close({ runBeforeUnload: true });
  await G.close({ runBeforeUnload: true });
  await waitNames(Q, 'Q', ['Paul', 'Quinn'], 8_000);
}));

test('a cut signalling link reconnects with the same token', { timeout: 45_000 }, body(async () => {
  await P.evaluate(() => window.__amphiSockets.at(-1).close());
  await waitFor('P to show it is reconnecting', async () => /reconnect/i.test(await bannerText(P)), { timeoutMs: 3_000, intervalMs: 50 });
  await waitFor('P to be back', async () => (await bannerText(P)) === '', { timeoutMs: 15_000 });
  await waitNames(P, 'P', ['Paul', 'Quinn']);
  await waitNames(Q, 'Q', ['Paul', 'Quinn']);
  await waitFor('P and Q to exchange media again', async () => {
    const [fp, fq] = await Promise.all([flowingStreams(P, 1_000), flowingStreams(Q, 1_000)]);
    return fp.video >= 1 && fp.audio >= 1 && fq.video >= 1 && fq.audio >= 1;
  }, { timeoutMs: 20_000, intervalMs: 0 });
}));

test('a silent server is noticed by the keepalive within 10 to 17 s', { timeout: 45_000 }, body(async () => {
  await P.evaluate(() => (window.__amphiDeaf = true));
  const from = Date.now();
  await waitFor('P to notice the silence', async () => /reconnect/i.test(await bannerText(P)), { timeoutMs: 19_000, intervalMs: 100 });
  const took = Date.now() - from;
  await P.evaluate(() => (window.__amphiDeaf = false));
  assert.ok(took >= 9_000, `lost after ${took} ms: too early (pings must keep a live link up)`);
  assert.ok(took <= 17_000, `lost after ${took} ms: too late`);
  await waitFor('P to be back', async () => (await bannerText(P)) === '', { timeoutMs: 15_000 });
  await waitNames(Q, 'Q', ['Paul', 'Quinn']);
  await waitFor('Q to decode P again', async () => (await flowingStreams(Q, 1_000)).video >= 1, { timeoutMs: 20_000, intervalMs: 0 });
}));

test('joining from another tab replaces the first one', { timeout: 30_000 }, body(async () => {
  const P2 = await openPage(browser.context, 'P2', log, watch);
  await P2.goto(`${base}room/${room}#token=${tokenP}&autojoin=1`);
  const error = P.getByTestId('error');
  await error.waitFor({ timeout: 10_000 });
  assert.match(await error.innerText(), /another tab/i);
  await waitNames(P2, 'P2', ['Paul', 'Quinn']);
  await waitNames(Q, 'Q', ['Paul', 'Quinn']);
  // The first tab stays put: no reconnection fight.
  await sleep(2_500);
  assert.equal(await P.getByTestId('error').count(), 1);
  await waitNames(P2, 'P2', ['Paul', 'Quinn'], 1_000);
  await P2.getByTestId('leave').click();
  await waitNames(Q, 'Q', ['Quinn'], 5_000);
}));

test('a token expired before a reconnection ends with a clear message', { timeout: 30_000 }, body(async () => {
  const minted = Date.now();
  const { page: E } = await join('E', 'eve', 'Eve', { ttl: '5s' });
  await waitNames(E, 'E', ['Eve', 'Quinn']);
  await sleep(Math.max(0, minted + 6_500 - Date.now()));
  await E.evaluate(() => window.__amphiSockets.at(-1).close());
  const error = E.getByTestId('error');
  await error.waitFor({ timeout: 10_000 });
  assert.match(await error.innerText(), /invalid or has expired/i);
  await waitNames(Q, 'Q', ['Quinn'], 5_000);
}));

test('nothing was loaded from elsewhere and no page failed', body(async () => {
  for (const u of watch.urls) assert.equal(new URL(u).host, new URL(base).host, `request to another origin: ${u}`);
  assert.deepEqual(watch.pageErrors, []);
  assert.deepEqual(watch.consoleErrors ?? [], [], 'no errors in the pages\' consoles');
  // Q stayed through everything (others leaving, reconnecting, replacing).
  assert.equal(await socketCount(Q), 1, 'Q stayed connected throughout (number of signalling sockets it opened)');
}));

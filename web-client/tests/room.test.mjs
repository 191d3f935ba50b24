// Three people meet through the web client, exactly as users do; one leaves;
// a fourth arrives with an expired link. Everything is asserted on what the
// pages show and on what their peer connections actually receive.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Log,
  flowingStreams,
  inboundStats,
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

after(async () => {
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

test('three participants see and hear each other; leave and expired link', { timeout: 115_000 }, async (t) => {
  try {
    requireBinaries();
    server = await startServer(log);
    browser = await launchBrowser(log);
    const { context } = browser;
    const base = server.url;
    const room = `physics-${Date.now().toString(36)}`;
    const watch = { urls: [], pageErrors: [] };
    const tokensSeen = [];

    const names = { a: 'Alice Martin', b: 'Bob Dupont', c: 'Chloé Ünal-SSø' };

    // A: through the landing page, then the join page.
    const pageA = await openPage(context, 'A', log, watch);
    await pageA.goto(base);
    // A room name the server would refuse is caught on the form.
    await pageA.getByTestId('room-input').fill('bad room!');
    await pageA.getByTestId('name-input').fill(names.a);
    await pageA.getByTestId('landing-submit').click();
    await waitFor('the landing form to refuse the room name', async () => /letters, digits/i.test(await pageA.getByTestId('landing-error').innerText()), { timeoutMs: 5_000 });
    assert.equal(new URL(pageA.url()).pathname, '/');
    await pageA.getByTestId('room-input').fill(room);
    await pageA.getByTestId('name-input').fill(names.a);
    await pageA.getByTestId('landing-submit').click();
    await pageA.waitForURL((u) => u.pathname === `/room/${room}` && u.hash.startsWith('#token='), { timeout: 15_000 });
    tokensSeen.push(new URLSearchParams(new URL(pageA.url()).hash.slice(1)).get('token'));
    assert.equal(new URL(pageA.url()).search, '', 'no query string on the room URL');
    await assert.doesNotReject(
      pageA.getByTestId('display-name').evaluate((el) => el.value).then((v) => assert.equal(v, names.a)),
      'the join page shows the name from the token',
    );
    // Join once the preview has the camera (the button works before too).
    await pageA.locator('.preview:not(.cam-off) video').waitFor({ timeout: 10_000 });
    await pageA.getByTestId('join').click();

    // B: a join link from `amphi token`, through the join page.
    const tokenB = await mintToken({ room, identity: 'bob@uni.example', name: names.b, role: 'student' });
    tokensSeen.push(tokenB);
    const pageB = await openPage(context, 'B', log, watch);
    await pageB.goto(`${base}room/${room}#token=${tokenB}`);
    await pageB.getByTestId('join').click();

    // C: a join link straight into the room (autojoin hook).
    const tokenC = await mintToken({ room, identity: 'chloe', name: names.c });
    tokensSeen.push(tokenC);
    const pageC = await openPage(context, 'C', log, watch);
    await pageC.goto(`${base}room/${room}#token=${tokenC}&autojoin=1`);

    const pages = { A: pageA, B: pageB, C: pageC };
    const expectedNames = [names.a, names.b, names.c].sort();

    // Everyone shows three tiles with the right names.
    for (const [label, page] of Object.entries(pages)) {
      await waitFor(`${label} to show 3 tiles with the right names`, async () => {
        const list = await tiles(page);
        const got = list.map((x) => x.name).sort();
        return list.length === 3 && list.every((x) => x.id) && JSON.stringify(got) === JSON.stringify(expectedNames) ? list : false;
      });
    }

    // Everyone decodes video from both others and receives audio from both.
    for (const [label, page] of Object.entries(pages)) {
      const flow = await waitFor(
        `${label} to decode 2 remote videos and receive 2 remote audios`,
        async () => {
          const f = await flowingStreams(page);
          return f.video >= 2 && f.audio >= 2 ? f : false;
        },
        { timeoutMs: 25_000, intervalMs: 0 },
      );
      t.diagnostic(`${label}: ${flow.video} video streams decoding, ${flow.audio} audio streams receiving`);
      await waitFor(`${label} to play 2 remote videos in their tiles`, async () => (await playingRemoteVideos(page)) >= 2, { timeoutMs: 10_000 });
    }

    // A leaves: its tile disappears from B and C within 5 seconds.
    const idA = await pageA.locator('[data-testid="tile"] video.mirror').evaluate((v) => v.closest('[data-testid="tile"]').getAttribute('data-participant-id'));
    assert.ok(idA, 'A knows its participant id');
    await pageA.getByTestId('leave').click();
    const leftAt = Date.now();
    await pageA.getByTestId('left').waitFor({ timeout: 5_000 });
    for (const [label, page] of [['B', pageB], ['C', pageC]]) {
      await waitFor(
        `A's tile to disappear from ${label}`,
        async () => {
          const list = await tiles(page);
          return list.length === 2 && !list.some((x) => x.id === idA || x.name === names.a);
        },
        { timeoutMs: Math.max(500, 5_000 - (Date.now() - leftAt)), intervalMs: 100 },
      );
    }
    t.diagnostic(`A's tile gone from B and C after ${Date.now() - leftAt} ms`);
    const statsAfterLeave = await inboundStats(pageA).catch(() => []);
    assert.ok(Array.isArray(statsAfterLeave));

    // D: an expired link (ttl 1 s, 2 s ago) gets the error and no media.
    const tokenD = await mintToken({ room, identity: 'dave', name: 'Dave Late', role: 'student', ttl: '1s' });
    tokensSeen.push(tokenD);
    await sleep(2_000);
    const pageD = await openPage(context, 'D', log, watch);
    await pageD.goto(`${base}room/${room}#token=${tokenD}`);
    await pageD.getByTestId('join').click();
    const error = pageD.getByTestId('error');
    await error.waitFor({ timeout: 10_000 });
    const errorText = await error.innerText();
    assert.match(errorText, /invalid or has expired/i, 'the error screen explains the link');
    const detail = await pageD.getByTestId('error-detail').innerText();
    assert.match(detail, /expir/i, `the server's message is shown (${detail})`);
    await sleep(1_500);
    assert.deepEqual(await inboundStats(pageD), [], 'the expired page receives no media');
    assert.equal((await tiles(pageD)).length, 0, 'the expired page shows no tiles');
    for (const [label, page] of [['B', pageB], ['C', pageC]]) {
      const names2 = (await tiles(page)).map((x) => x.name);
      assert.ok(!names2.includes('Dave Late'), `${label} never shows Dave`);
      assert.equal(names2.length, 2, `${label} still shows 2 tiles`);
    }

    // A rejoins from the "you left" page, through the join page again.
    await pageA.getByTestId('rejoin').click();
    await pageA.getByTestId('join').click();
    for (const [label, page] of Object.entries(pages)) {
      await waitFor(`${label} to show A again`, async () => (await tiles(page)).length === 3, { timeoutMs: 15_000 });
    }

    // Privacy: nothing left the origin, and no token was ever in a request URL.
    for (const u of watch.urls) {
      const url = new URL(u);
      assert.equal(url.host, new URL(base).host, `request to another origin: ${u}`);
      for (const tok of tokensSeen) assert.ok(tok && !u.includes(tok), `token in a request URL: ${u}`);
    }
    assert.deepEqual(watch.pageErrors, [], 'no uncaught page errors');
    assert.deepEqual(watch.consoleErrors ?? [], [], 'no errors in the pages\' consoles');
    for (const [label, page] of Object.entries(pages)) {
      // A: one socket before leaving, one after rejoining.
      assert.equal(await socketCount(page), label === 'A' ? 2 : 1, `${label} stayed connected (number of signalling sockets it opened)`);
    }
  } catch (err) {
    failed = true;
    throw err;
  }
});

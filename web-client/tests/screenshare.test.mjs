// Screen sharing, end to end: a teacher shares a screen (headless Chromium's
// getDisplayMedia, accepted by --use-fake-ui-for-media-stream, captures a
// fake, moving desktop with --use-fake-device-for-media-stream), and both
// students receive it: their pages show it in a screen tile, decode new
// frames of it, and show it large (at least twice the area of any camera
// tile). When the teacher stops, the screen tile goes away everywhere.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Log, flowingStreams, launchBrowser, mintToken, openPage, requireBinaries, sleep, startServer, tiles, waitFor } from './harness.mjs';

const log = new Log();
let server = null;
let browser = null;
let failed = false;

after(async () => {
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

/** The screen tile's video: size, frames shown so far, and the tile's box. */
function screenTile(page) {
  return page.evaluate(() => {
    const el = document.querySelector('[data-testid="screen-tile"]');
    const video = el?.querySelector('video');
    if (!el || !video) return null;
    const box = el.getBoundingClientRect();
    return {
      id: el.getAttribute('data-participant-id'),
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
      frames: video.getVideoPlaybackQuality().totalVideoFrames,
      playing: !video.paused,
      area: box.width * box.height,
      width: box.width,
      height: box.height,
    };
  });
}

/** The rendered area of every camera tile (the participants' own tiles). */
function cameraTileAreas(page) {
  return page.$$eval('[data-testid="tile"]', (els) =>
    els.map((el) => {
      const box = el.getBoundingClientRect();
      return { id: el.getAttribute('data-participant-id'), area: box.width * box.height, width: box.width, height: box.height };
    }),
  );
}

test('a shared screen reaches every other participant and is shown large', { timeout: 120_000 }, async (t) => {
  try {
    requireBinaries();
    server = await startServer(log);
    browser = await launchBrowser(log);
    const room = `screen-${Date.now().toString(36)}`;
    const watch = { urls: [], pageErrors: [] };
    const pages = {};
    for (const [label, name, role] of [['T', 'Ms Martin', 'teacher'], ['S1', 'Sam', 'student'], ['S2', 'Sasha', 'student']]) {
      const token = await mintToken({ room, identity: label.toLowerCase(), name, role });
      const page = await openPage(browser.context, label, log, watch);
      await page.goto(`${server.url}room/${room}#token=${token}&autojoin=1`);
      pages[label] = page;
    }
    for (const [label, page] of Object.entries(pages)) {
      await waitFor(`${label} to show 3 tiles and decode 2 cameras`, async () => {
        if ((await tiles(page)).length !== 3) return false;
        return (await flowingStreams(page)).video >= 2;
      }, { timeoutMs: 30_000, intervalMs: 0 });
    }
    const teacherId = await pages.T.locator('[data-testid="tile"] video.mirror').evaluate((v) => v.closest('[data-testid="tile"]').getAttribute('data-participant-id'));
    assert.ok(teacherId);
    // Students may not share; the teacher may.
    assert.equal(await pages.S1.getByTestId('toggle-screen').isVisible(), false, 'a student has no screen sharing button');
    await pages.T.getByTestId('toggle-screen').click();
    await waitFor('the teacher to be sharing', async () => (await pages.T.getByTestId('toggle-screen').getAttribute('data-state')) === 'on', { timeoutMs: 10_000 });
    const sharedAt = Date.now();

    for (const label of ['S1', 'S2']) {
      const page = pages[label];
      const first = await waitFor(`${label} to play the teacher's screen`, async () => {
        const s = await screenTile(page);
        return s && s.videoWidth > 0 && s.playing && s.frames > 0 ? s : false;
      }, { timeoutMs: 15_000 });
      t.diagnostic(`${label}: screen ${first.videoWidth}x${first.videoHeight} after ${Date.now() - sharedAt} ms`);
      assert.equal(first.id, teacherId, `${label}: the screen tile is the teacher's`);
      // New frames keep being decoded and shown.
      await sleep(2_000);
      const later = await screenTile(page);
      assert.ok(later.frames > first.frames, `${label}: the screen shows no new frame (${first.frames} -> ${later.frames})`);
      // The cameras and the screen all decode: 2 cameras + 1 screen.
      const flow = await flowingStreams(page);
      assert.ok(flow.video >= 3, `${label}: ${flow.video} videos decoding, want the 2 cameras and the screen`);

      // Shown large: at least twice the area of any camera tile.
      const cams = await cameraTileAreas(page);
      const biggest = Math.max(...cams.map((c) => c.area));
      t.diagnostic(`${label}: screen tile ${Math.round(later.width)}x${Math.round(later.height)}, camera tiles ${cams.map((c) => `${Math.round(c.width)}x${Math.round(c.height)}`).join(', ')}`);
      assert.ok(later.area >= 2 * biggest, `${label}: the screen tile (${Math.round(later.area)} px²) is not twice the largest camera tile (${Math.round(biggest)} px²)`);
    }
    // The teacher does not receive their own screen back.
    assert.equal(await pages.T.getByTestId('screen-tile').count(), 0, 'the sharer gets no screen tile of their own');

    await pages.T.getByTestId('toggle-screen').click();
    for (const label of ['S1', 'S2']) {
      await waitFor(`the screen tile to leave ${label}`, async () => (await pages[label].getByTestId('screen-tile').count()) === 0, { timeoutMs: 10_000 });
    }
    assert.deepEqual(watch.pageErrors, [], 'no uncaught page errors');
  } catch (err) {
    failed = true;
    throw err;
  }
});

// Simulcast through the web client: a teacher's 720p camera goes out in
// three layers; a student whose tile is small receives the small layer, and
// the full 1280x720 once the window (and so the tile) is large. Layers that
// nobody needs are switched off in the teacher's browser (dynacast) and back
// on when someone needs them. Asserted on the sizes the students' decoders
// produce and on what the teacher's encoder sends.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Log, decodedVideo as decodedFrom, launchBrowser, mintToken, openPage, requireBinaries, selfId, sleep, startServer, waitFor } from './harness.mjs';

const log = new Log();
let server = null;
let browser = null;
let failed = false;

after(async () => {
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

/** The teacher's camera encodings: rid -> { active, frames, width }. */
async function encodings(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const pc of window.__amphiPCs || []) {
      let report;
      try {
        report = await pc.getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
          out[s.rid] = { active: s.active !== false, frames: s.framesEncoded ?? 0, width: s.frameWidth ?? 0 };
        }
      });
    }
    return out;
  });
}

test('simulcast: the layer follows the tile, unused layers stop at the source', { timeout: 150_000 }, async (t) => {
  try {
    requireBinaries();
    server = await startServer(log);
    browser = await launchBrowser(log);
    const { context } = browser;
    const room = `layers-${Date.now().toString(36)}`;
    const watch = { urls: [], pageErrors: [] };
    const link = (token) => `${server.url}room/${room}#token=${token}&autojoin=1`;
    const [tokT, tokA, tokB] = await Promise.all([
      mintToken({ room, identity: 'teacher', name: 'Teacher', role: 'teacher' }),
      mintToken({ room, identity: 'ana', name: 'Ana', role: 'student' }),
      mintToken({ room, identity: 'ben', name: 'Ben', role: 'student' }),
    ]);

    const T = await openPage(context, 'T', log, watch);
    await T.goto(link(tokT));
    const idT = await waitFor('the teacher to join', () => selfId(T).catch(() => null));
    // The students' windows are small: three tiles in 480x360.
    const A = await openPage(context, 'A', log, watch);
    await A.setViewportSize({ width: 480, height: 360 });
    await A.goto(link(tokA));
    const B = await openPage(context, 'B', log, watch);
    await B.setViewportSize({ width: 480, height: 360 });
    await B.goto(link(tokB));

    await t.test('the teacher publishes three layers', async () => {
      await waitFor('three encodings to be sent', async () => {
        const e = await encodings(T);
        return ['q', 'h', 'f'].every((r) => r in e);
      }, { timeoutMs: 20_000 });
      const e = await encodings(T);
      t.diagnostic(`encodings: ${JSON.stringify(e)}`);
    });

    await t.test('a small tile receives the small layer', async () => {
      const small = await waitFor('A to decode the teacher at 320 pixels or less', async () => {
        const d = await decodedFrom(A, idT);
        return d && d.frames > 0 && d.width > 0 && d.width <= 320 ? d : null;
      }, { timeoutMs: 20_000 });
      t.diagnostic(`A's tile ${small.tile} px wide shows ${small.width}x${small.height}`);
      assert.ok(small.tile < 320, `the tile is small (${small.tile} px)`);
      const before = (await decodedFrom(A, idT)).frames;
      await sleep(3_000);
      const later = await decodedFrom(A, idT);
      assert.ok(later.frames >= before + 10, `frames keep coming (${before} -> ${later.frames})`);
      assert.ok(later.width <= 320, `still the small layer (${later.width})`);
    });

    await t.test('nobody needs the top layer: the teacher stops encoding it', async () => {
      await waitFor('the teacher\'s f encoding to be switched off', async () => (await encodings(T)).f?.active === false, { timeoutMs: 15_000 });
      const f1 = (await encodings(T)).f.frames;
      await sleep(1_500);
      const f2 = (await encodings(T)).f.frames;
      assert.ok(f2 - f1 <= 2, `no frames encoded for f (${f1} -> ${f2})`);
      assert.equal((await encodings(T)).q.active, true, 'the small layer goes on');
    });

    await t.test('enlarged to full size, the tile receives 1280x720', async () => {
      // A maximises the window and pins the teacher's tile.
      await A.setViewportSize({ width: 1920, height: 1080 });
      const tileT = A.locator(`[data-testid="tile"][data-participant-id="${idT}"]`);
      await tileT.hover();
      await tileT.getByTestId('pin').click();
      assert.equal(await tileT.getByTestId('pin').getAttribute('aria-pressed'), 'true');
      await waitFor('the teacher to encode f again', async () => (await encodings(T)).f?.active === true, { timeoutMs: 5_000 });
      const big = await waitFor('A to decode the teacher at 1280x720', async () => {
        const d = await decodedFrom(A, idT);
        return d && d.width === 1280 && d.height === 720 ? d : null;
      }, { timeoutMs: 20_000 });
      t.diagnostic(`A's tile ${big.tile} px wide shows ${big.width}x${big.height}`);
      const before = big.frames;
      await sleep(3_000);
      const later = await decodedFrom(A, idT);
      // The top layer may start at a low temporal layer while the estimate grows.
      assert.ok(later.frames >= before + 10, `frames keep coming after the switch (${before} -> ${later.frames})`);
      // B's tile is still small: B still gets the small layer.
      const b = await decodedFrom(B, idT);
      assert.ok(b.width <= 320 && b.frames > 0, `B still receives the small layer (${b.width})`);
    });

    await t.test('a hidden tile receives nothing', async () => {
      // B's camera tile of the teacher is scrolled out of sight.
      await B.evaluate((id) => {
        const tile = document.querySelector(`[data-testid="tile"][data-participant-id="${id}"]`);
        tile.style.position = 'fixed';
        tile.style.top = '5000px';
      }, idT);
      await sleep(1_500);
      const b1 = await decodedFrom(B, idT);
      await sleep(2_000);
      const b2 = await decodedFrom(B, idT);
      assert.ok(b2.frames - b1.frames <= 2, `no frames for a hidden tile (${b1.frames} -> ${b2.frames})`);
      await B.evaluate((id) => {
        const tile = document.querySelector(`[data-testid="tile"][data-participant-id="${id}"]`);
        tile.style.position = '';
        tile.style.top = '';
      }, idT);
      await waitFor('B to decode the teacher again', async () => (await decodedFrom(B, idT)).frames > b2.frames + 10, { timeoutMs: 10_000 });
    });

    assert.deepEqual(watch.pageErrors, []);
  } catch (err) {
    failed = true;
    throw err;
  }
});

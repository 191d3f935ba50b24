// Active speaker, end to end: two participants send a tone of different
// loudness (a WebAudio oscillator instead of the fake microphone, so the test
// sets the level), and a third participant's page highlights the louder one,
// then the other when the loudness swaps; its speaker view shows the
// dominant speaker large. What is asserted comes from the server: the
// highlight is driven only by its `speakers` messages, which the server
// derives from the RFC 6464 audio levels in the publishers' RTP packets. No
// audio is analysed in the browser.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Log, launchBrowser, mintToken, openPage, requireBinaries, sleep, startServer, tiles, waitFor } from './harness.mjs';

const log = new Log();
let server = null;
let browser = null;
let failed = false;

after(async () => {
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

/**
 * Runs in the page before its scripts: the microphone is a 220 Hz tone whose
 * gain `window.__amphiSetGain(g)` sets; the camera is refused (no video: the
 * test is about audio, and three encoders would only load the machine).
 * Also records every `speakers` message the page receives.
 */
function fakeMicrophone(initialGain) {
  window.__amphiGain = initialGain;
  window.__amphiGainNodes = [];
  window.__amphiSetGain = (g) => {
    window.__amphiGain = g;
    for (const node of window.__amphiGainNodes) node.gain.value = g;
  };
  const md = navigator.mediaDevices;
  md.getUserMedia = async (c) => {
    if (c && c.video) throw new DOMException('Permission denied', 'NotAllowedError');
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = 220;
    const gain = ctx.createGain();
    gain.gain.value = window.__amphiGain;
    window.__amphiGainNodes.push(gain);
    const dest = ctx.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    await ctx.resume().catch(() => undefined);
    return dest.stream;
  };
  window.__amphiSpeakers = [];
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        try {
          const m = JSON.parse(ev.data);
          if (m.type === 'speakers') window.__amphiSpeakers.push({ at: Date.now(), speakers: m.speakers });
        } catch {
          // Not ours to judge.
        }
      });
    }
  };
}

const LOUD = 0.5; // a sine at 0.5 of full scale: about -9 dBov
const QUIET = 0.03; // about -33 dBov: speech, but much quieter

/** The tile ids that `page` marks as speaking (data-speaking="true"). */
function speaking(page) {
  return page.$$eval('[data-testid="tile"][data-speaking="true"]', (els) => els.map((el) => el.getAttribute('data-participant-id')));
}

/** Id and size of the tile shown large in the speaker view, and the largest other one. */
function stage(page) {
  return page.$$eval('[data-testid="tile"]', (els) => {
    const big = els.filter((el) => el.getAttribute('data-stage') === 'true');
    const area = (el) => {
      const r = el.getBoundingClientRect();
      return r.width * r.height;
    };
    return {
      staged: big.map((el) => el.getAttribute('data-participant-id')),
      stageArea: big[0] ? area(big[0]) : 0,
      otherMax: Math.max(0, ...els.filter((el) => el.getAttribute('data-stage') !== 'true').map(area)),
    };
  });
}

test('the active-speaker indication follows the louder participant', { timeout: 110_000 }, async (t) => {
  try {
    requireBinaries();
    server = await startServer(log);
    browser = await launchBrowser(log);
    const { context } = browser;
    const room = `speaker-${Date.now().toString(36)}`;
    const watch = { urls: [], pageErrors: [] };
    const names = { a: 'Ada Loud', b: 'Ben Quiet', c: 'Cleo Listener' };

    const join = async (label, identity, name, gain) => {
      const token = await mintToken({ room, identity, name, role: 'student' });
      const page = await openPage(context, label, log, watch);
      await page.addInitScript(fakeMicrophone, gain);
      await page.goto(`${server.url}room/${room}#token=${token}&autojoin=1`);
      return page;
    };
    const pageA = await join('A', 'ada', names.a, LOUD);
    const pageB = await join('B', 'ben', names.b, QUIET);
    // C listens; its tone is silent.
    const pageC = await join('C', 'cleo', names.c, 0);

    const ids = {};
    await waitFor('C to show the three tiles', async () => {
      const list = await tiles(pageC);
      if (list.length !== 3 || !list.every((x) => x.id)) return false;
      for (const x of list) ids[x.name] = x.id;
      return true;
    });
    const [idA, idB] = [ids[names.a], ids[names.b]];

    // The audio level extension is negotiated on each publisher connection
    // (the one the page offered on): the server's answer keeps it.
    for (const [label, page] of [['A', pageA], ['B', pageB]]) {
      const answers = await waitFor(`${label}'s publisher connection to be answered`, () =>
        page.evaluate(() =>
          window.__amphiPCs.filter((pc) => pc.localDescription?.type === 'offer' && pc.remoteDescription).map((pc) => pc.remoteDescription.sdp),
        ).then((list) => (list.length ? list : false)),
      );
      const audio = answers[0].split(/\r?\nm=/).find((s) => s.startsWith('audio'));
      assert.ok(audio, `${label}: the answer has an audio m-line`);
      assert.match(audio, /a=extmap:\d+ urn:ietf:params:rtp-hdrext:ssrc-audio-level/, `${label}: audio level extension in the answer`);
    }

    // A is louder: C highlights A, and only A.
    const t0 = Date.now();
    await waitFor('C to highlight A', async () => JSON.stringify(await speaking(pageC)) === JSON.stringify([idA]), { timeoutMs: 20_000, intervalMs: 100 });
    t.diagnostic(`C highlights A ${Date.now() - t0} ms after the three tiles appeared`);
    // The server's list: A first (dominant), B also speaking, A louder.
    const lastList = async (page) => page.evaluate(() => window.__amphiSpeakers.at(-1)?.speakers ?? []);
    await waitFor('the server to list A then B', async () => {
      const l = await lastList(pageC);
      return l.length === 2 && l[0].participant === idA && l[1].participant === idB;
    });
    const levels = await lastList(pageC);
    t.diagnostic(`the server's list on C: ${JSON.stringify(levels)}`);
    assert.ok(levels[0].level > levels[1].level, `A is louder: ${JSON.stringify(levels)}`);
    assert.ok(!levels.some((s) => s.participant === ids[names.c]), 'the silent listener is not speaking');
    // Everyone sees the same: A highlights itself too.
    await waitFor('A to highlight itself', async () => JSON.stringify(await speaking(pageA)) === JSON.stringify([idA]));

    // No flicker: for three seconds the highlight stays on A, and the server
    // sends nothing new (the list did not change).
    const sentBefore = await pageC.evaluate(() => window.__amphiSpeakers.length);
    for (let i = 0; i < 30; i++) {
      assert.deepEqual(await speaking(pageC), [idA], `steady at sample ${i}`);
      await sleep(100);
    }
    const sentDuring = (await pageC.evaluate(() => window.__amphiSpeakers.length)) - sentBefore;
    assert.ok(sentDuring <= 1, `the list did not keep changing (${sentDuring} messages in 3 s)`);

    // Speaker view, switched on from the keyboard: A large, the others a strip.
    const toggle = pageC.getByTestId('layout-toggle');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    await toggle.focus();
    await pageC.keyboard.press('Enter');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
    assert.equal(await pageC.getByTestId('grid').getAttribute('data-layout'), 'speaker');
    await waitFor('A on the stage of C', async () => {
      const s = await stage(pageC);
      return s.staged.length === 1 && s.staged[0] === idA && s.stageArea > 3 * s.otherMax ? s : false;
    }, { timeoutMs: 5_000 });

    // The loudness swaps: the highlight and the stage follow B.
    await pageA.evaluate((g) => window.__amphiSetGain(g), QUIET);
    await pageB.evaluate((g) => window.__amphiSetGain(g), LOUD);
    const swapped = Date.now();
    await waitFor('C to highlight B', async () => JSON.stringify(await speaking(pageC)) === JSON.stringify([idB]), { timeoutMs: 10_000, intervalMs: 100 });
    const took = Date.now() - swapped;
    t.diagnostic(`the highlight moved to B ${took} ms after the swap`);
    assert.ok(took >= 500, `not at once (${took} ms): a change of speaker is smoothed`);
    await waitFor('B on the stage of C', async () => {
      const s = await stage(pageC);
      return s.staged.length === 1 && s.staged[0] === idB && s.stageArea > 3 * s.otherMax ? s : false;
    }, { timeoutMs: 5_000 });
    const after = await lastList(pageC);
    assert.equal(after[0]?.participant, idB, `the server names B dominant: ${JSON.stringify(after)}`);

    // Back to the grid: tiles the same size again.
    await toggle.click();
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    const grid = await stage(pageC);
    assert.deepEqual(grid.staged, []);

    // Silence: nobody is highlighted.
    await pageA.evaluate(() => window.__amphiSetGain(0));
    await pageB.evaluate(() => window.__amphiSetGain(0));
    await waitFor('C to highlight nobody', async () => (await speaking(pageC)).length === 0, { timeoutMs: 10_000, intervalMs: 100 });

    assert.deepEqual(watch.pageErrors, [], 'no uncaught page errors');
  } catch (err) {
    failed = true;
    throw err;
  }
});

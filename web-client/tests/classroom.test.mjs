// The classroom through the web client: a teacher and two students.
// Waiting room, mute enforcement (even against a client that switches its
// track back on), raised hands, chat shown as text only, breakout groups
// separating media, and the language switch. Asserted on what the pages show
// and on what their peer connections actually receive.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  Log,
  flowingStreams,
  inboundStats,
  launchBrowser,
  mintToken,
  openPage,
  requireBinaries,
  selfId,
  sleep,
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


/** packetsReceived of the inbound stream carrying the remote track `trackId` (0 when gone). */
async function packetsOf(page, trackId) {
  return page.evaluate(async (id) => {
    let n = 0;
    for (const pc of window.__amphiPCs || []) {
      if (pc.connectionState === 'closed') continue;
      const report = await pc.getStats().catch(() => null);
      report?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.trackIdentifier === id) n += s.packetsReceived ?? 0;
      });
    }
    return n;
  }, trackId);
}

/** The ids of the remote audio tracks the page plays in `participant`'s tile. */
const audioTrackIds = (page, participant) =>
  page.$$eval(`[data-testid="tile"][data-participant-id="${participant}"] audio`, (els) =>
    els.flatMap((el) => (el.srcObject ? el.srcObject.getAudioTracks().map((t) => t.id) : [])),
  );

test('classroom through the web client', { timeout: 150_000 }, async (t) => {
  let broken = null;
  /** One numbered scenario; after a failure the rest are skipped (they build on each other). */
  const step = (name, fn) =>
    broken
      ? t.test(name, { skip: `an earlier step failed (${broken})` })
      : t.test(name, { timeout: 60_000 }, async (st) => {
          try {
            await fn(st);
          } catch (err) {
            broken = name;
            failed = true;
            throw err;
          }
        });

  requireBinaries();
  server = await startServer(log);
  browser = await launchBrowser(log);
  const { context } = browser;
  const base = server.url;
  const room = `class-${Date.now().toString(36)}`;
  const watch = { urls: [], pageErrors: [] };
  const dialogs = [];
  const link = (token) => `${base}room/${room}#token=${token}&autojoin=1`;
  const [tokT, tokA, tokB] = await Promise.all([
    mintToken({ room, identity: 'martin', name: 'Ms Martin', role: 'teacher' }),
    mintToken({ room, identity: 'sam', name: 'Sam Student', role: 'student' }),
    mintToken({ room, identity: 'zoe', name: 'Zoé Student', role: 'student' }),
  ]);
  const open = async (label) => {
    const page = await openPage(context, label, log, watch);
    page.on('dialog', (d) => {
      dialogs.push(`${label}: ${d.type()} ${d.message()}`);
      void d.dismiss();
    });
    return page;
  };
  let T, A, B, idT, idA, idB;

  await step('1. waiting room: the student waits without media, the teacher is notified and admits', async () => {
    T = await open('T');
    await T.goto(link(tokT));
    idT = await waitFor('the teacher to join', () => selfId(T).catch(() => null));
    await T.getByTestId('participants-toggle').click();
    await T.getByTestId('setting-waiting-room').check();
    await sleep(500); // the server's room_updated

    A = await open('A');
    await A.goto(link(tokA));
    await A.getByTestId('waiting').waitFor({ timeout: 10_000 });
    assert.match(await A.getByTestId('waiting').innerText(), /waiting for the teacher/i);
    await sleep(1_000);
    assert.equal(await A.evaluate(() => window.__amphiPCs.length), 0, 'no peer connection while waiting');
    assert.deepEqual(await inboundStats(A), [], 'no media while waiting');
    assert.equal((await tiles(A)).filter((x) => x.id).length, 0, 'no roster while waiting');
    await waitFor('the teacher to be told someone waits', async () => /Sam Student/.test(await T.getByTestId('lobby-notice').textContent()), { timeoutMs: 5_000 });
    assert.equal(await T.getByTestId('lobby-badge').textContent(), '1', 'a badge counts who waits');
    assert.match(await T.getByTestId('participants-toggle').getAttribute('aria-label'), /1 waiting/);
    const admit = T.locator('[data-testid^="admit-"]');
    await admit.waitFor({ timeout: 5_000 });
    assert.match(await T.getByTestId('lobby').innerText(), /Sam Student/);
    idA = (await admit.getAttribute('data-testid')).slice('admit-'.length);
    await admit.click();
    await A.getByTestId('waiting').waitFor({ state: 'hidden', timeout: 10_000 });
    await waitFor('the admitted student to decode the teacher\'s video', async () => (await flowingStreams(A)).video >= 1, { timeoutMs: 20_000, intervalMs: 0 });
    await waitFor('the teacher to decode the admitted student\'s video', async () => (await flowingStreams(T)).video >= 1, { timeoutMs: 20_000, intervalMs: 0 });
    assert.equal(await selfId(A), idA);
    await T.getByTestId('lobby').waitFor({ state: 'hidden', timeout: 5_000 });

    // The waiting room off: the second student comes straight in.
    await T.getByTestId('setting-waiting-room').uncheck();
    await sleep(500);
    B = await open('B');
    await B.goto(link(tokB));
    idB = await waitFor('the second student to join', () => selfId(B).catch(() => null));
    for (const [label, page] of [['T', T], ['A', A], ['B', B]]) {
      await waitFor(`${label} to show 3 tiles`, async () => (await tiles(page)).length === 3);
      await waitFor(`${label} to decode the two others`, async () => (await flowingStreams(page, 1_000)).video >= 2, { timeoutMs: 20_000, intervalMs: 0 });
    }
  });

  await step('2. mute enforcement: a muted student is not heard even if the page keeps sending', async () => {
    const trackA = await waitFor('B to play A\'s audio', async () => (await audioTrackIds(B, idA))[0]);
    const p0 = await packetsOf(B, trackA);
    await waitFor('B to receive A\'s audio before the mute', async () => (await packetsOf(B, trackA)) > p0, { timeoutMs: 10_000 });
    await T.locator(`[data-testid="mute-${idA}"]`).click();
    await waitFor('A\'s microphone to show muted', async () => (await A.getByTestId('toggle-mic').getAttribute('data-state')) === 'off', { timeoutMs: 5_000 });
    assert.equal(await A.getByTestId('toggle-mic').getAttribute('aria-pressed'), 'false');
    await waitFor('the teacher to see A muted', async () => (await T.locator(`[data-testid="tile"][data-participant-id="${idA}"]`).getAttribute('data-mic')) === 'off', { timeoutMs: 5_000 });
    assert.deepEqual(
      await A.evaluate(() => window.__amphiPCs.flatMap((pc) => pc.getSenders()).filter((s) => s.track?.kind === 'audio').map((s) => s.track.enabled)),
      [false],
      'the muted page disabled its microphone track',
    );
    // Behind the client's back, the page sends its microphone again.
    const forced = await A.evaluate(() => {
      let n = 0;
      for (const pc of window.__amphiPCs) for (const s of pc.getSenders()) if (s.track?.kind === 'audio') (s.track.enabled = true), n++;
      return n;
    });
    assert.equal(forced, 1);
    await sleep(1_000); // let what was in flight arrive
    const sent1 = await A.evaluate(async () => {
      let n = 0;
      for (const pc of window.__amphiPCs) (await pc.getStats()).forEach((s) => s.type === 'outbound-rtp' && s.kind === 'audio' && (n += s.packetsSent));
      return n;
    });
    const [b1, t1] = [await packetsOf(B, trackA), await packetsOf(T, (await audioTrackIds(T, idA))[0])];
    await sleep(2_000);
    const sent2 = await A.evaluate(async () => {
      let n = 0;
      for (const pc of window.__amphiPCs) (await pc.getStats()).forEach((s) => s.type === 'outbound-rtp' && s.kind === 'audio' && (n += s.packetsSent));
      return n;
    });
    const [b2, t2] = [await packetsOf(B, trackA), await packetsOf(T, (await audioTrackIds(T, idA))[0])];
    assert.ok(sent2 - sent1 > 50, `A's page keeps sending audio (${sent2 - sent1} packets in 2 s)`);
    assert.equal(b2, b1, `B receives nothing from muted A (${b1} then ${b2} packets)`);
    assert.equal(t2, t1, `the teacher receives nothing from muted A (${t1} then ${t2} packets)`);
    assert.ok((await flowingStreams(B)).audio >= 1, 'B still hears the teacher');

    // The teacher asks A to unmute: a prompt, nothing switched on until A accepts.
    await T.getByTestId(`ask-unmute-${idA}`).click();
    await A.getByTestId('unmute-prompt').waitFor({ timeout: 5_000 });
    await sleep(500);
    assert.equal(await A.getByTestId('toggle-mic').getAttribute('data-state'), 'off', 'a request does not unmute');
    assert.equal(await packetsOf(B, trackA), b2, 'still nothing from A');
    await A.getByTestId('unmute-accept').click();
    await waitFor('A\'s microphone to show on', async () => (await A.getByTestId('toggle-mic').getAttribute('data-state')) === 'on', { timeoutMs: 5_000 });
    await waitFor('B to hear A again', async () => (await packetsOf(B, trackA)) > b2 + 20, { timeoutMs: 10_000 });
  });

  await step('3. a raised hand shows on the teacher\'s page, in order', async () => {
    await B.getByTestId('toggle-hand').click();
    await T.locator(`[data-testid="tile"][data-participant-id="${idB}"] [data-testid="hand"]`).waitFor({ timeout: 5_000 });
    await A.getByTestId('toggle-hand').click();
    await T.locator(`[data-testid="tile"][data-participant-id="${idA}"] [data-testid="hand"]`).waitFor({ timeout: 5_000 });
    await T.locator(`[data-testid="participants"] [data-testid="person"][data-participant-id="${idA}"][data-hand="raised"]`).waitFor({ timeout: 5_000 });
    // A's own page learns of its hand from the same broadcast; it may come after the teacher's.
    await waitFor('A\'s hand button to show raised', async () => (await A.getByTestId('toggle-hand').getAttribute('aria-pressed')) === 'true', { timeoutMs: 5_000 });
    // The list comes with the room's state, a message after the participant's own update.
    const hands = () => T.$$eval('[data-testid="hands-list"] li[data-participant-id]', (els) => els.map((el) => el.getAttribute('data-participant-id')));
    await waitFor('both hands in the teacher\'s list', async () => (await hands()).length === 2, { timeoutMs: 5_000 });
    assert.deepEqual(await hands(), [idB, idA], 'hands in the order they were raised');
    assert.match(await T.getByTestId('hands-list').innerText(), /Zoé Student[\s\S]*Sam Student/);
    assert.equal(await T.locator(`[data-testid="tile"][data-participant-id="${idB}"] [data-testid="hand"]`).innerText(), '1');
    // The teacher lowers B's hand; A lowers their own.
    await T.getByTestId(`lower-hand-${idB}`).click();
    await A.getByTestId('toggle-hand').click();
    await waitFor('no hands left', async () => (await T.locator('[data-testid="tile"] [data-testid="hand"]').count()) === 0, { timeoutMs: 5_000 });
  });

  await step('4. chat: HTML is shown literally; private messages; shortcuts stay quiet while typing', async () => {
    const payload = '<script>alert(1)</script><img src=x onerror=alert(1)>';
    await B.getByTestId('chat-toggle').click();
    // Typing "m" in the chat does not toggle the microphone.
    const micBefore = await B.getByTestId('toggle-mic').getAttribute('data-state');
    await B.getByTestId('chat-input').press('m');
    assert.equal(await B.getByTestId('toggle-mic').getAttribute('data-state'), micBefore, 'M while typing does nothing');
    assert.match(await B.getByTestId('chat-count').textContent(), /^1 \/ 2000/);
    await B.getByTestId('chat-input').fill(payload);
    await B.getByTestId('chat-send').click();
    for (const [label, page] of [['T', T], ['A', A]]) {
      await page.getByTestId('chat-toggle').click();
      const text = page.locator('[data-testid="chat-message"] [data-testid="chat-text"]').first();
      await text.waitFor({ timeout: 5_000 });
      assert.equal(await text.evaluate((el) => el.textContent), payload, `${label} shows the message as text`);
      assert.equal(await text.evaluate((el) => el.childElementCount), 0, `${label}: the text has no child element`);
      assert.equal(await page.evaluate(() => document.querySelectorAll('img, script:not([src]):not([type])').length), 0, `${label}: no element made from the text`);
    }
    // A private question to the teacher: B does not see it.
    await A.getByTestId('chat-to').selectOption(idT);
    await A.getByTestId('chat-input').fill('a private question');
    await A.getByTestId('chat-send').click();
    await waitFor('the teacher to get the private question', async () => (await T.getByTestId('chat-text').allTextContents()).includes('a private question'), { timeoutMs: 5_000 });
    await sleep(300);
    assert.ok(!(await B.getByTestId('chat-text').allTextContents()).includes('a private question'), 'B does not see a private message');
    // Outside a text field, M toggles the microphone (and back).
    await B.getByTestId('chat-toggle').click();
    await B.locator('body').press('m');
    await waitFor('M to mute B', async () => (await B.getByTestId('toggle-mic').getAttribute('data-state')) !== micBefore, { timeoutMs: 3_000 });
    await B.locator('body').press('m');
    await waitFor('M to unmute B', async () => (await B.getByTestId('toggle-mic').getAttribute('data-state')) === micBefore, { timeoutMs: 3_000 });
    assert.deepEqual(dialogs, [], 'no dialog (no script ran from the chat)');
  });

  await step('5. breakout: two students in two groups get nothing from each other, and do after recall', async () => {
    await T.getByTestId('participants-toggle').click();
    await T.getByTestId('breakout-start').click();
    await T.getByTestId('breakout-dialog').waitFor({ timeout: 5_000 });
    await T.getByTestId('breakout-count').fill('2');
    await T.getByTestId('breakout-manual').check();
    await T.getByTestId(`breakout-assign-${idA}`).selectOption('0');
    await T.getByTestId(`breakout-assign-${idB}`).selectOption('1');
    await T.getByTestId('breakout-dialog-confirm').click();
    for (const [label, page] of [['A', A], ['B', B]]) {
      await page.getByTestId('group-name').waitFor({ timeout: 5_000 });
      await waitFor(`${label} to show only its own tile`, async () => (await tiles(page)).length === 1, { timeoutMs: 5_000 });
    }
    assert.match(await A.getByTestId('group-name').textContent(), /Group 1/);
    assert.match(await B.getByTestId('group-name').textContent(), /Group 2/);
    for (const [label, page] of [['A', A], ['B', B]]) {
      // Settled once a second passes without anything new, then watched for 3 s.
      await waitFor(`${label} to settle in its group`, async () => {
        const f = await flowingStreams(page, 1_000);
        return f.video === 0 && f.audio === 0;
      }, { timeoutMs: 10_000, intervalMs: 0 });
      const f = await flowingStreams(page, 3_000);
      assert.equal(f.video + f.audio, 0, `${label} receives no frames or packets in its group (${JSON.stringify(f.streams)})`);
    }
    // A message to all groups.
    await T.getByTestId('breakout-message').fill('five minutes left');
    await T.getByTestId('breakout-broadcast').click();
    for (const page of [A, B]) {
      await waitFor('the broadcast to reach every group', async () => (await page.getByTestId('chat-text').allTextContents()).includes('five minutes left'), { timeoutMs: 5_000 });
    }
    // The teacher visits group 1 and sees A there.
    await T.getByTestId('visit-G1').click();
    await waitFor('the teacher to see group 1', async () => (await tiles(T)).map((x) => x.id).sort().join() === [idT, idA].sort().join(), { timeoutMs: 5_000 });
    await T.getByTestId('breakout-end').click();
    for (const [label, page] of [['A', A], ['B', B]]) {
      await waitFor(`${label} to decode both others again after recall`, async () => (await flowingStreams(page)).video >= 2, { timeoutMs: 20_000, intervalMs: 0 });
      assert.equal(await page.getByTestId('group-name').isVisible(), false);
      assert.equal((await tiles(page)).length, 3);
    }
  });

  await step('6. the interface switches to French, and the choice is remembered', async () => {
    assert.equal(await T.getByTestId('leave').innerText(), 'Leave');
    assert.equal(await T.getByTestId('leave').getAttribute('aria-label'), 'Leave the meeting');
    await T.getByTestId('lang-toggle').click();
    assert.equal(await T.getByTestId('leave').innerText(), 'Quitter');
    assert.equal(await T.getByTestId('leave').getAttribute('aria-label'), 'Quitter la réunion');
    assert.match(await T.getByTestId('chat-toggle').textContent(), /Discussion/);
    assert.equal(await T.getByTestId('toggle-mic').getAttribute('aria-label'), 'Micro');
    assert.match(await T.getByTestId('breakout-start').textContent(), /Répartir/);
    assert.equal(await T.evaluate(() => document.documentElement.lang), 'fr');
    assert.equal(await T.evaluate(() => localStorage.getItem('amphi.lang')), 'fr');
    // The help dialog, from the keyboard, in French.
    await T.locator('body').press('?');
    await T.getByTestId('help-dialog').waitFor({ timeout: 3_000 });
    assert.match(await T.getByTestId('help-dialog').innerText(), /Raccourcis clavier/);
    await T.keyboard.press('Escape');
    await T.getByTestId('help-dialog').waitFor({ state: 'detached', timeout: 3_000 });
    const L = await open('L');
    await L.goto(base);
    assert.equal(await L.evaluate(() => document.documentElement.lang), 'fr', 'the choice is remembered');
    await L.close();
    await T.getByTestId('lang-toggle').click();
    assert.equal(await T.getByTestId('leave').innerText(), 'Leave');
  });

  await step('7. promotion, removal with a reason, and the end of the meeting', async () => {
    // A presenter may share a screen; back to student, the button goes.
    assert.equal(await A.getByTestId('toggle-screen').isVisible(), false, 'a student has no screen sharing');
    await T.getByTestId(`promote-${idA}`).selectOption('presenter');
    await A.getByTestId('toggle-screen').waitFor({ timeout: 5_000 });
    assert.equal(await B.getByTestId('toggle-screen').isVisible(), false);
    await A.getByTestId('toggle-screen').click();
    await waitFor('the teacher to play A\'s screen', async () => (await T.getByTestId('screen-tile').count()) === 1 && (await T.getByTestId('screen-tile').locator('video').evaluate((v) => v.videoWidth > 0 && !v.paused)), { timeoutMs: 8_000 });
    assert.equal(await T.getByTestId('screen-tile').getAttribute('data-participant-id'), idA);
    await T.getByTestId(`promote-${idA}`).selectOption('participant');
    await A.getByTestId('toggle-screen').waitFor({ state: 'hidden', timeout: 5_000 });
    await waitFor('the screen tile to go', async () => (await T.getByTestId('screen-tile').count()) === 0, { timeoutMs: 5_000 });

    // Removal: B is told why, and is gone from the others' pages.
    await T.getByTestId(`remove-${idB}`).click();
    await T.getByTestId('remove-reason').fill('please use your own account');
    await T.getByTestId('remove-dialog-confirm').click();
    await B.getByTestId('error').waitFor({ timeout: 5_000 });
    assert.match(await B.getByTestId('error').innerText(), /removed/i);
    assert.equal(await B.getByTestId('error-detail').innerText(), 'Reason: please use your own account');
    await waitFor('B to leave the others\' pages', async () => (await tiles(T)).length === 2 && (await tiles(A)).length === 2, { timeoutMs: 5_000 });

    // The end of the meeting, confirmed in a dialog.
    await T.getByTestId('end-room').click();
    await T.getByTestId('end-dialog').waitFor({ timeout: 3_000 });
    await T.getByTestId('end-dialog-confirm').click();
    for (const page of [A, T]) {
      await page.getByTestId('error').waitFor({ timeout: 5_000 });
      assert.match(await page.getByTestId('error').innerText(), /meeting has ended/i);
    }
    assert.deepEqual(watch.pageErrors, [], 'no uncaught page errors');
    assert.deepEqual(dialogs, [], 'no browser dialog ever opened');
  });
});

// A student's downlink is capped: the server's bandwidth estimate for that
// student falls, and the allocator moves the teacher's camera to a lower
// simulcast layer. The picture keeps going (frames keep being decoded), the
// teacher's voice is unaffected, and the full layer comes back once the cap
// is lifted.
//
// The cap is a tbf queue under an htb class of the loopback interface that
// only packets towards the student's subscriber connection (its local UDP
// port) go through, so the teacher's uplink and the other connections keep
// the whole loopback. Needs root in a network namespace of its own, as
// scripts/test runs the browser tests; skipped otherwise.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Log, decodedVideo, launchBrowser, mintToken, openPage, requireBinaries, selfId, sleep, startServer, waitFor } from './harness.mjs';

const log = new Log();
let server = null;
let browser = null;
let failed = false;
let shaped = false;

const tc = (...args) => execFileSync('tc', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

function cap(port, rate) {
  tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10');
  tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit', 'quantum', '60000');
  tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '10gbit', 'quantum', '60000');
  tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:20', 'handle', '20:', 'tbf', 'rate', rate, 'burst', '32kbit', 'latency', '300ms');
  tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'dport', String(port), '0xffff', 'flowid', '1:20');
  shaped = true;
}

function uncap() {
  if (!shaped) return;
  shaped = false;
  tc('qdisc', 'del', 'dev', 'lo', 'root');
}

function canShape() {
  try {
    // Only inside a namespace of our own: never shape the machine's loopback.
    const own = execFileSync('ip', ['-o', 'link', 'show']).toString().trim().split('\n').length === 1;
    tc('qdisc', 'show', 'dev', 'lo');
    return own && process.getuid?.() === 0;
  } catch {
    return false;
  }
}

after(async () => {
  try {
    uncap();
  } catch {
    // the namespace goes away with the test anyway
  }
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

/**
 * A teacher and a student in a fresh room, the student pinning the
 * teacher's camera on a large screen: returns once the student decodes the
 * top layer.
 */
async function teacherPinnedByStudent(watch) {
  requireBinaries();
  server ??= await startServer(log);
  browser ??= await launchBrowser(log);
  const { context } = browser;
  const room = `bwe-${Date.now().toString(36)}`;
  const link = (token) => `${server.url}room/${room}#token=${token}&autojoin=1`;
  const [tokT, tokA] = await Promise.all([
    mintToken({ room, identity: 'teacher', name: 'Teacher', role: 'teacher' }),
    mintToken({ room, identity: 'ana', name: 'Ana', role: 'student' }),
  ]);
  const T = await openPage(context, 'T', log, watch);
  await T.goto(link(tokT));
  const idT = await waitFor('the teacher to join', () => selfId(T).catch(() => null));
  const A = await openPage(context, 'A', log, watch);
  await A.setViewportSize({ width: 1920, height: 1080 });
  await A.goto(link(tokA));
  const tileT = A.locator(`[data-testid="tile"][data-participant-id="${idT}"]`);
  await tileT.waitFor({ timeout: 20_000 });
  await tileT.hover();
  await tileT.getByTestId('pin').click();
  const full = await waitFor('A to decode the teacher at 1280x720', async () => {
    const r = await decodedVideo(A, idT);
    return r?.width === 1280 && r.port ? r : null;
  }, { timeoutMs: 30_000 });
  return { pages: [T, A], A, idT, full };
}

/**
 * A test that shapes the student's link, run with the teacher pinned: skipped
 * where links cannot be shaped, and whatever happens, its cap is lifted and
 * its pages closed so the next test starts clean.
 */
function shapedTest(name, timeout, body) {
  test(name, { timeout }, async (t) => {
    if (!canShape()) {
      t.skip('needs root in a network namespace of its own (scripts/test runs the browser tests so)');
      return;
    }
    const watch = { urls: [], pageErrors: [] };
    let pages = [];
    try {
      const start = await teacherPinnedByStudent(watch);
      pages = start.pages;
      await body(t, start);
      assert.deepEqual(watch.pageErrors, []);
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      uncap();
      await Promise.all(pages.map((p) => p.close()));
    }
  });
}

shapedTest('a capped downlink gets a lower layer, keeps decoding and hearing, and recovers', 170_000, async (t, { A, idT, full }) => {
  t.diagnostic(`uncapped: ${full.width}x${full.height}, subscriber port ${full.port}`);

  cap(full.port, '250kbit');
  const low = await waitFor('the layer to drop under the cap', async () => {
    const r = await decodedVideo(A, idT);
    return r && r.width > 0 && r.width <= 640 ? r : null;
  }, { timeoutMs: 30_000, intervalMs: 500 });
  t.diagnostic(`capped at 250 kbit/s: ${low.width}x${low.height}`);
  // Under the cap: frames keep coming and so does the teacher's voice.
  // The server sheds frames rather than let its send queue grow, and
  // repairs the bursts of loss the cap makes, so no freeze lasts long
  // (before it did both, they lasted 4-6 s).
  const a = await decodedVideo(A, idT);
  let b = a;
  let frozenSince = Date.now();
  let longestFreeze = 0;
  for (let i = 0; i < 8; i++) {
    await sleep(500);
    const r = await decodedVideo(A, idT);
    if (r.frames > b.frames) frozenSince = Date.now();
    longestFreeze = Math.max(longestFreeze, Date.now() - frozenSince);
    b = r;
  }
  t.diagnostic(`under the cap: ${b.frames - a.frames} frames in 4 s, longest freeze ${longestFreeze} ms`);
  assert.ok(longestFreeze < 3_000, `no freeze of 3 s or more under the cap (${longestFreeze} ms)`);
  assert.ok(b.width <= 640, `still a low layer (${b.width})`);
  // Continuity, not a frame rate: under the cap the allocator may well
  // choose a low temporal layer (a few frames per second).
  assert.ok(b.frames - a.frames >= 8, `frames keep being decoded under the cap (${a.frames} -> ${b.frames})`);
  assert.ok(b.audio - a.audio >= 150, `audio keeps flowing under the cap (${a.audio} -> ${b.audio} packets in 4 s)`);
  const stats = tc('-s', 'qdisc', 'show', 'dev', 'lo');
  assert.match(stats, /qdisc tbf 20:[\s\S]*?Sent [1-9]/, 'the student\'s traffic went through the cap');

  uncap();
  const back = await waitFor('A to get 1280x720 again', async () => {
    const r = await decodedVideo(A, idT);
    return r?.width === 1280 ? r : null;
  }, { timeoutMs: 60_000, intervalMs: 500 });
  t.diagnostic(`cap lifted: ${back.width}x${back.height}`);
});

// The cap of the test above is far under half of what is sent, where the
// estimate alone says the link is congested. Between half and all of it the
// estimate may stay above half for a while, and the server's own send
// queue, paced at 1.1 times the estimate, is what keeps the sender's bursts
// (a keyframe comes at 2.5 times the bitrate) from overrunning a link that
// has little room to queue. Whether the server then sends a lower spatial
// layer or the same one at fewer frames a second is the allocator's choice;
// what the student must see is a picture that keeps going with what the
// link carries, without the loss and freezes of an overrun link. Two pacer
// changes that took latency out of big lectures (docs/benchmarks.md, steps
// 40 and 43) fail here often, not always: pacing at 2.5 times the estimate
// in two runs of three (20 and 67 packets lost), letting 120 ms of debt out
// at once in three of seven (9-55 lost, 1.4-2.7 s frozen). So did the
// allocator while it waited for its next tick and for str0m's queue to
// back up before following a fallen estimate (two runs of twelve here and
// one in CI: 7-20 lost, 1.9-2.5 s frozen): by then the link's queue had
// overflowed. Here timing varies from run to run; the same cuts on a
// simulated link and clock, where it barely does, are in
// crates/amphi-room/tests/congestion.rs.
shapedTest('a downlink that carries three quarters of the camera gets what fits, without loss', 150_000, async (t, { A, idT, full }) => {
  // What the top layer costs is the fake camera's and the encoder's
  // business: measure it.
  const a = await decodedVideo(A, idT);
  await sleep(4_000);
  const b = await decodedVideo(A, idT);
  assert.equal(b.width, 1280, 'still the top layer before the cap');
  const kbps = ((b.bytes - a.bytes) * 8) / (b.at - a.at);
  // Video payload only: headers, audio and RTCP take the link a little
  // further from carrying the layer.
  const rate = Math.round(kbps * 0.75);
  cap(full.port, `${rate}kbit`);
  t.diagnostic(`top layer ${Math.round(kbps)} kbit/s, capped at ${rate} kbit/s`);

  // The switch: what was sent before the server saw the congestion.
  await sleep(6_000);
  const c = await decodedVideo(A, idT);
  t.diagnostic(`first 6 s: ${c.lost - b.lost} packets lost, ${(c.freezes - b.freezes).toFixed(2)} s frozen, now ${c.width}x${c.height}; ${c.nacks - b.nacks} NACKs sent`);
  // Then what the student lives with.
  await sleep(8_000);
  const d = await decodedVideo(A, idT);
  const fitted = ((d.bytes - c.bytes) * 8) / (d.at - c.at);
  const fps = ((d.frames - c.frames) * 1000) / (d.at - c.at);
  t.diagnostic(`next 8 s: ${Math.round(fitted)} kbit/s at ${d.width}x${d.height}, ${fps.toFixed(1)} frames/s, ${d.lost - c.lost} lost, ${(d.freezes - c.freezes).toFixed(2)} s frozen`);

  assert.ok(d.lost - b.lost < 10, `the server did not overrun the link (${d.lost - b.lost} packets lost in 14 s)`);
  assert.ok(d.freezes - b.freezes < 1, `no long freeze (${(d.freezes - b.freezes).toFixed(2)} s frozen in 14 s)`);
  assert.ok(fitted < rate, `what is sent fits under the cap (${Math.round(fitted)} kbit/s)`);
  assert.ok(fps >= 3, `the picture keeps moving (${fps.toFixed(1)} frames/s)`);
  assert.ok(d.audio - c.audio >= 300, `the teacher's voice keeps coming (${d.audio - c.audio} packets in 8 s)`);
});

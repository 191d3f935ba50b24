// Loss recovery, end to end: three participants meet, then 5 % of all UDP
// datagrams are dropped at random (nftables, both directions) for 12 s.
// Video must keep decoding on every page with short freezes only, thanks to
// NACK and retransmission (RTX) on both legs (browser -> server: the server
// NACKs, the publishing browser resends; server -> browser: the receiving
// browser NACKs, the server resends from its history), and audio must keep
// flowing. Counters are read from the browsers' own getStats() and from the
// server's `stats` answer.
//
// Must run as root inside `unshare -n` (the rule would otherwise apply to
// the machine's real network; netloss.mjs refuses then).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Log, flowingStreams, launchBrowser, mintToken, openPage, requireBinaries, sleep, startServer, waitFor } from './harness.mjs';
import { clearUdpLoss, droppedSoFar, lossUnavailable, setUdpLoss } from './netloss.mjs';

const log = new Log();
let server = null;
let browser = null;
let failed = false;

after(async () => {
  await clearUdpLoss();
  await browser?.stop();
  await server?.stop();
  if (failed) console.error(`---- last log lines ----\n${log.tail(250)}`);
});

/** Media counters of all the page's peer connections, by stream. */
function mediaStats(page) {
  return page.evaluate(async () => {
    const inbound = [];
    const outbound = [];
    const pcs = window.__amphiPCs || [];
    for (let i = 0; i < pcs.length; i++) {
      let report;
      try {
        report = await pcs[i].getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type === 'inbound-rtp') {
          inbound.push({
            key: `${i}/${s.id}`,
            kind: s.kind,
            framesDecoded: s.framesDecoded ?? 0,
            packetsReceived: s.packetsReceived ?? 0,
            bytesReceived: s.bytesReceived ?? 0,
            packetsLost: s.packetsLost ?? 0,
            nackCount: s.nackCount ?? 0,
            retransmittedPacketsReceived: s.retransmittedPacketsReceived ?? 0,
            freezeCount: s.freezeCount ?? 0,
            totalFreezesDuration: s.totalFreezesDuration ?? 0,
            pliCount: s.pliCount ?? 0,
            concealedSamples: s.concealedSamples ?? 0,
            totalSamplesReceived: s.totalSamplesReceived ?? 0,
          });
        } else if (s.type === 'outbound-rtp') {
          outbound.push({
            key: `${i}/${s.id}`,
            kind: s.kind,
            packetsSent: s.packetsSent ?? 0,
            bytesSent: s.bytesSent ?? 0,
            nackCount: s.nackCount ?? 0,
            retransmittedPacketsSent: s.retransmittedPacketsSent ?? 0,
          });
        }
      });
    }
    return { inbound, outbound };
  });
}

const sum = (list, field) => list.reduce((n, s) => n + s[field], 0);

/** The codecs the page's microphone sender was negotiated with, in order. */
function audioSendCodecs(page) {
  return page.evaluate(() =>
    (window.__amphiPCs || [])
      .flatMap((pc) => pc.getSenders())
      .filter((s) => s.track?.kind === 'audio')
      .map((s) => s.getParameters().codecs.map((c) => c.mimeType.toLowerCase())),
  );
}

/** The server's `stats` answer for the page's participant (get_stats). */
async function serverStats(page, answers) {
  const before = answers.length;
  await page.evaluate(() => window.amphiStats());
  await waitFor('the server to answer get_stats', async () => answers.length > before, { timeoutMs: 5_000, intervalMs: 100 });
  return answers[answers.length - 1];
}

test('video and audio survive 5 % random UDP loss', { timeout: 150_000 }, async (t) => {
  try {
    const why = await lossUnavailable();
    if (why) {
      t.skip(why);
      return;
    }
    requireBinaries();
    await clearUdpLoss();
    server = await startServer(log);
    browser = await launchBrowser(log);
    const room = `loss-${Date.now().toString(36)}`;
    const watch = { urls: [], pageErrors: [] };
    const pages = {};
    const answers = {};
    for (const [label, name] of [['A', 'Alice'], ['B', 'Bob'], ['C', 'Chloé']]) {
      const token = await mintToken({ room, identity: label.toLowerCase(), name });
      const page = await openPage(browser.context, label, log, watch);
      answers[label] = [];
      page.on('console', async (msg) => {
        if (!msg.text().startsWith('amphi stats')) return;
        const value = await msg.args()[1]?.jsonValue().catch(() => null);
        if (value) answers[label].push(value);
      });
      await page.goto(`${server.url}room/${room}#token=${token}&autojoin=1`);
      pages[label] = page;
    }
    for (const [label, page] of Object.entries(pages)) {
      await waitFor(`${label} to decode 2 videos and receive 2 audios`, async () => {
        const f = await flowingStreams(page);
        return f.video >= 2 && f.audio >= 2;
      }, { timeoutMs: 30_000, intervalMs: 0 });
    }
    // Past the first seconds of ramp-up.
    await sleep(3_000);
    // Audio goes as RED (RFC 2198), which browsers send only when the
    // server's answer lists it first: every packet repeats the previous
    // frame, so a single loss costs nothing.
    for (const [label, page] of Object.entries(pages)) {
      const codecs = await audioSendCodecs(page);
      assert.equal(codecs.length, 1, `${label}: one microphone sender`);
      assert.equal(codecs[0][0], 'audio/red', `${label}: microphone codecs ${codecs[0].join(', ')}`);
    }

    const before = {};
    const serverBefore = await serverStats(pages.A, answers.A);
    for (const [label, page] of Object.entries(pages)) before[label] = await mediaStats(page);

    await setUdpLoss(5);
    const lossFrom = Date.now();
    // Every 2 s, every remote video on every page has decoded new frames.
    let last = before;
    const windows = [];
    for (let w = 0; w < 6; w++) {
      await sleep(2_000);
      const now = {};
      for (const [label, page] of Object.entries(pages)) {
        now[label] = await mediaStats(page);
        const prev = new Map(last[label].inbound.map((s) => [s.key, s]));
        const videos = now[label].inbound.filter((s) => s.kind === 'video');
        assert.ok(videos.length >= 2, `${label} lost a video stream: ${JSON.stringify(videos)}`);
        for (const s of videos) {
          const frames = s.framesDecoded - (prev.get(s.key)?.framesDecoded ?? 0);
          windows.push(frames);
          assert.ok(frames > 0, `${label}: video ${s.key} decoded nothing between ${2 * w} and ${2 * w + 2} s of loss`);
        }
      }
      last = now;
    }
    const lossSeconds = (Date.now() - lossFrom) / 1000;
    const dropped = await droppedSoFar();
    const serverAfter = await serverStats(pages.A, answers.A);
    await clearUdpLoss();
    t.diagnostic(`${dropped} datagrams dropped in ${lossSeconds.toFixed(1)} s; frames decoded per 2 s window per stream: min ${Math.min(...windows)}, max ${Math.max(...windows)}`);
    assert.ok(dropped > 100, `the loss rule dropped only ${dropped} datagrams`);

    for (const label of Object.keys(pages)) {
      const b = before[label];
      const a = last[label];
      const delta = (list0, list1, kind, field) =>
        sum(list1.filter((s) => s.kind === kind), field) - sum(list0.filter((s) => s.kind === kind), field);
      const nacks = delta(b.inbound, a.inbound, 'video', 'nackCount');
      const rtxIn = delta(b.inbound, a.inbound, 'video', 'retransmittedPacketsReceived');
      const rtxOut = delta(b.outbound, a.outbound, 'video', 'retransmittedPacketsSent');
      const nacksIn = delta(b.outbound, a.outbound, 'video', 'nackCount');
      t.diagnostic(`${label}: sent ${nacks} NACKs and got ${rtxIn} retransmissions; was sent ${nacksIn} NACKs and resent ${rtxOut} packets`);
      // Server -> browser: the browser asks, the server resends.
      assert.ok(nacks > 0, `${label} sent no NACK`);
      assert.ok(rtxIn > 0, `${label} received no retransmission from the server`);
      // Browser -> server: the server asks, the browser resends.
      assert.ok(nacksIn > 0, `${label} received no NACK from the server`);
      assert.ok(rtxOut > 0, `${label} resent nothing`);

      const prev = new Map(b.inbound.map((s) => [s.key, s]));
      for (const s of a.inbound) {
        const p = prev.get(s.key);
        if (!p) continue;
        if (s.kind === 'video') {
          const freezes = s.freezeCount - p.freezeCount;
          const frozen = s.totalFreezesDuration - p.totalFreezesDuration;
          t.diagnostic(`${label} video ${s.key}: ${s.framesDecoded - p.framesDecoded} frames, ${freezes} freezes for ${frozen.toFixed(2)} s, ${s.pliCount - p.pliCount} PLIs`);
          // Short freezes only: at most a tenth of the time frozen, and
          // each under a second on average. Observed on 2 cores: 0 to 0.7 s;
          // recovery that fell back on keyframes would freeze for longer
          // (a PLI round trip plus a keyframe at this loss).
          assert.ok(frozen <= lossSeconds / 10, `${label}: video ${s.key} frozen ${frozen.toFixed(2)} s of ${lossSeconds.toFixed(1)} s`);
          if (freezes > 0) assert.ok(frozen / freezes <= 1.0, `${label}: video ${s.key} freezes last ${(frozen / freezes).toFixed(2)} s on average`);
        } else {
          const packets = s.packetsReceived - p.packetsReceived;
          const samples = s.totalSamplesReceived - p.totalSamplesReceived;
          const concealed = samples > 0 ? (s.concealedSamples - p.concealedSamples) / samples : 1;
          const size = (s.bytesReceived - p.bytesReceived) / Math.max(1, packets);
          t.diagnostic(`${label} audio ${s.key}: ${packets} packets of ${size.toFixed(0)} bytes, ${(100 * concealed).toFixed(1)} % concealed`);
          // 50 packets a second; about a tenth lost on the two legs.
          assert.ok(packets >= 35 * lossSeconds, `${label}: audio ${s.key} got only ${packets} packets in ${lossSeconds.toFixed(1)} s`);
          assert.ok(concealed < 0.25, `${label}: audio ${s.key} ${(100 * concealed).toFixed(1)} % concealed`);
        }
      }
    }

    // The server's own counters moved too: it NACKed A's video and answered
    // A's NACKs.
    const video = (list) => list.filter((s) => s.kind === 'video');
    const nacksOf = (list) => video(list).reduce((n, s) => n + s.nacks, 0);
    t.diagnostic(`server: NACKs to A ${nacksOf(serverBefore.publishing)} -> ${nacksOf(serverAfter.publishing)}, from A ${nacksOf(serverBefore.receiving)} -> ${nacksOf(serverAfter.receiving)}`);
    assert.ok(nacksOf(serverAfter.publishing) > nacksOf(serverBefore.publishing), 'the server sent A no NACK');
    assert.ok(nacksOf(serverAfter.receiving) > nacksOf(serverBefore.receiving), 'the server counted no NACK from A');

    // Loss over, everything still flows.
    for (const [label, page] of Object.entries(pages)) {
      const f = await flowingStreams(page, 2_000);
      assert.ok(f.video >= 2 && f.audio >= 2, `${label} after the loss: ${JSON.stringify(f)}`);
    }
    assert.deepEqual(watch.pageErrors, [], 'no uncaught page errors');
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await clearUdpLoss();
  }
});

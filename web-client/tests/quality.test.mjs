// Connection quality indicator, end to end: two participants see "good" on
// every tile on a clean network; with heavy random UDP loss (25 % of every
// datagram, both directions, nftables) the indicators drop to "poor"; when
// the loss ends they come back to "good". What the tiles show comes only
// from the server's `connection_quality` messages (its scoring of RTCP
// reports and NACKs), read through the tiles' `data-quality` attribute and
// checked against the accessible label.
//
// Must run as root inside `unshare -n` (see netloss.mjs).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Log, flowingStreams, launchBrowser, mintToken, openPage, requireBinaries, startServer, waitFor } from './harness.mjs';
import { clearUdpLoss, lossUnavailable, setUdpLoss } from './netloss.mjs';

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

/** [{id, self, quality, label}] of every participant tile on the page. */
function qualities(page) {
  return page.$$eval('[data-testid="tile"]', (els) =>
    els.map((el) => ({
      id: el.getAttribute('data-participant-id'),
      self: !!el.querySelector('video.mirror'),
      quality: el.getAttribute('data-quality'),
      label: el.querySelector('[data-testid="quality"]')?.getAttribute('aria-label') ?? null,
    })),
  );
}

const all = (list, q) => list.length === 2 && list.every((x) => x.quality === q);

test('the quality indicator goes from good to poor under heavy loss and back', { timeout: 150_000 }, async (t) => {
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
    const room = `quality-${Date.now().toString(36)}`;
    const watch = { urls: [], pageErrors: [] };
    const pages = {};
    for (const [label, name] of [['A', 'Alice'], ['B', 'Bob']]) {
      const token = await mintToken({ room, identity: label.toLowerCase(), name });
      const page = await openPage(browser.context, label, log, watch);
      await page.goto(`${server.url}room/${room}#token=${token}&autojoin=1`);
      pages[label] = page;
    }
    for (const [label, page] of Object.entries(pages)) {
      await waitFor(`${label} to decode the other's video`, async () => (await flowingStreams(page)).video >= 1, { timeoutMs: 30_000, intervalMs: 0 });
    }

    // Clean network: good everywhere, said in words too.
    for (const [label, page] of Object.entries(pages)) {
      const list = await waitFor(`${label} to show good on both tiles`, async () => {
        const l = await qualities(page);
        return all(l, 'good') ? l : false;
      }, { timeoutMs: 15_000 });
      for (const x of list) assert.equal(x.label, 'Connection: good', `${label}: accessible label of ${x.id}`);
    }

    await setUdpLoss(25);
    const lossFrom = Date.now();
    for (const [label, page] of Object.entries(pages)) {
      const list = await waitFor(`${label} to show poor on both tiles`, async () => {
        const l = await qualities(page);
        return all(l, 'poor') ? l : false;
      }, { timeoutMs: 20_000 });
      for (const x of list) assert.equal(x.label, 'Connection: poor');
    }
    t.diagnostic(`poor everywhere ${((Date.now() - lossFrom) / 1000).toFixed(1)} s after the loss began`);

    await clearUdpLoss();
    const clearFrom = Date.now();
    for (const [label, page] of Object.entries(pages)) {
      await waitFor(`${label} to show good again`, async () => all(await qualities(page), 'good'), { timeoutMs: 30_000 });
    }
    t.diagnostic(`good everywhere ${((Date.now() - clearFrom) / 1000).toFixed(1)} s after the loss ended`);

    // The label follows the language.
    await pages.A.getByTestId('lang-toggle').click();
    await waitFor('the French label', async () => (await qualities(pages.A)).every((x) => x.label === 'Connexion : bonne'), { timeoutMs: 5_000 });
    assert.deepEqual(watch.pageErrors, [], 'no uncaught page errors');
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await clearUdpLoss();
  }
});

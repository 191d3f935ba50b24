// Debugging aid, not a test: three participants join, the first leaves, and
// the subscribe_offers the second one received are printed (m-lines, mids,
// BUNDLE group), with its connection states. Run inside `unshare -n`:
//   node tests/probe-offers.mjs
import { Log, launchBrowser, mintToken, openPage, startServer, sleep, tiles, waitFor } from './harness.mjs';
const log = new Log();
const server = await startServer(log);
const browser = await launchBrowser(log);
const watch = { urls: [], pageErrors: [] };
try {
  const room = 'probe';
  const pages = [];
  for (const [id, name] of [['a', 'A'], ['b', 'B'], ['c', 'C']]) {
    const tok = await mintToken({ room, identity: id, name });
    const p = await openPage(browser.context, name, log, watch);
    await p.addInitScript(() => {
      window.__offers = [];
      const desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
      const set = desc.set;
      Object.defineProperty(WebSocket.prototype, 'onmessage', { ...desc, set(fn) { set.call(this, (ev) => { try { const m = JSON.parse(ev.data); if (m.type === 'subscribe_offer') window.__offers.push(m); } catch {} return fn.call(this, ev); }); } });
    });
    await p.goto(`${server.url}room/${room}#token=${tok}&autojoin=1`);
    pages.push(p);
    await sleep(700);
  }
  await waitFor('3 tiles', async () => (await tiles(pages[1])).length === 3);
  await sleep(2000);
  await pages[0].getByTestId('leave').click();
  await sleep(1500);
  const offers = await pages[1].evaluate(() => window.__offers);
  for (const o of offers) {
    console.log('---- offer tracks', JSON.stringify(o.tracks));
    console.log(o.sdp.split('\r\n').filter((l) => /^(m=|a=mid|a=group|a=inactive|a=sendonly|a=recvonly)/.test(l)).join('\n'));
  }
  console.log(log.lines.filter((l) => l.includes('[B]') && /connection|bye/.test(l)).join('\n'));
} finally {
  await browser.stop();
  await server.stop();
}

// Networks that block UDP (campus proxies, some home routers): two browser
// participants still see each other, over ICE-TCP, and the candidate pair
// their browser selected says TCP.
//
// The UDP block is real: `iptables -A INPUT -p udp -j DROP` in a network
// namespace of this test's own. The file runs twice: the outer run (under
// `node --test`) starts `unshare -n`, brings `lo` up, drops UDP there and
// runs this same file inside with AMPHI_UDP_BLOCKED_INSIDE=1; the server
// and Chromium then live only in that namespace, and no rule ever touches
// the host's network (nor the suite's own namespace).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import {
  Log,
  flowingStreams,
  launchBrowser,
  mintToken,
  openPage,
  requireBinaries,
  startServer,
  waitFor,
} from './harness.mjs';

const INSIDE = process.env.AMPHI_UDP_BLOCKED_INSIDE === '1';
const THIS_FILE = fileURLToPath(import.meta.url);

if (!INSIDE) {
  test('browsers still meet when incoming UDP is dropped (ICE-TCP)', { timeout: 150_000 }, async (t) => {
    const can = spawnSync('unshare', ['-n', 'true']);
    if (can.status !== 0) {
      t.skip('no privilege for a network namespace (run as root, as scripts/test does)');
      return;
    }
    const ipt = spawnSync('bash', ['-c', 'command -v iptables']);
    assert.equal(ipt.status, 0, 'iptables is installed (scripts/install-deps installs it)');
    // ip6tables too, when there is one: Chromium must not slip through ::1.
    const script = [
      'set -e',
      'ip link set lo up',
      'iptables -A INPUT -p udp -j DROP',
      '(command -v ip6tables >/dev/null && ip6tables -A INPUT -p udp -j DROP) || true',
      'exec "$0" "$@"',
    ].join('; ');
    // Without NODE_TEST_CONTEXT the inner run reports in plain TAP, not in
    // the binary format `node --test` expects from its own children.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const child = spawn('unshare', ['-n', 'bash', '-c', script, process.execPath, THIS_FILE], {
      env: { ...env, AMPHI_UDP_BLOCKED_INSIDE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.once('exit', (c, sig) => resolve(c ?? sig)));
    for (const line of out.split('\n')) if (/^# (tests|pass|fail)|^# [A-Z]: /.test(line)) t.diagnostic(line.slice(2));
    assert.equal(code, 0, `the test inside the UDP-blocked namespace failed:\n${out.slice(-20_000)}`);
  });
} else {
  const log = new Log();
  let server = null;
  let browser = null;
  let failed = false;

  after(async () => {
    await browser?.stop();
    await server?.stop();
    if (failed) console.error(`---- last log lines ----\n${log.tail(200)}`);
  });

  /** Whether a UDP datagram to ourselves on 127.0.0.1 arrives within `ms`. */
  async function udpGetsThrough(ms = 500) {
    const sock = dgram.createSocket('udp4');
    await new Promise((resolve) => sock.bind(0, '127.0.0.1', resolve));
    const got = new Promise((resolve) => sock.once('message', () => resolve(true)));
    sock.send('probe', sock.address().port, '127.0.0.1');
    const r = await Promise.race([got, new Promise((resolve) => setTimeout(() => resolve(false), ms))]);
    sock.close();
    return r;
  }

  /**
   * For every connected peer connection of the page: the protocols of the
   * selected candidate pair's local and remote candidates.
   */
  function selectedPairs(page) {
    return page.evaluate(async () => {
      const out = [];
      for (const pc of window.__amphiPCs || []) {
        if (pc.connectionState !== 'connected') continue;
        const report = await pc.getStats();
        const byId = new Map();
        report.forEach((s) => byId.set(s.id, s));
        let pair = null;
        report.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
        });
        if (!pair) {
          report.forEach((s) => {
            if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair ??= s;
          });
        }
        const local = pair && byId.get(pair.localCandidateId);
        const remote = pair && byId.get(pair.remoteCandidateId);
        out.push({
          local: local ? { protocol: local.protocol, type: local.candidateType, tcpType: local.tcpType } : null,
          remote: remote ? { protocol: remote.protocol, type: remote.candidateType, port: remote.port } : null,
        });
      }
      return out;
    });
  }

  test('inside a namespace that drops UDP: two participants over ICE-TCP', { timeout: 120_000 }, async (t) => {
    try {
      requireBinaries();
      assert.equal(await udpGetsThrough(), false, 'UDP is really dropped in this namespace');
      server = await startServer(log);
      browser = await launchBrowser(log);
      const { context } = browser;
      const room = `no-udp-${Date.now().toString(36)}`;
      const watch = { urls: [], pageErrors: [] };
      const pages = {};
      for (const [label, identity] of [['A', 'ana'], ['B', 'ben']]) {
        const token = await mintToken({ room, identity, name: identity, role: 'student' });
        const page = await openPage(context, label, log, watch);
        await page.goto(`${server.url}room/${room}#token=${token}&autojoin=1`);
        pages[label] = page;
      }
      for (const [label, page] of Object.entries(pages)) {
        const flow = await waitFor(
          `${label} to decode the other's video (framesDecoded increasing)`,
          async () => {
            const f = await flowingStreams(page, 1_000);
            return f.video >= 1 ? f : false;
          },
          { timeoutMs: 45_000, intervalMs: 0 },
        );
        t.diagnostic(`${label}: ${flow.video} video stream(s) decoding, ${flow.audio} audio stream(s) receiving`);
      }
      for (const [label, page] of Object.entries(pages)) {
        const pairs = await waitFor(`${label}'s publisher and subscriber to be connected`, async () => {
          const p = await selectedPairs(page);
          return p.length >= 2 ? p : false;
        });
        t.diagnostic(`${label}: selected pairs ${JSON.stringify(pairs)}`);
        for (const p of pairs) {
          assert.equal(p.local?.protocol, 'tcp', `${label}: the selected pair's local candidate is TCP`);
          assert.equal(p.remote?.protocol, 'tcp', `${label}: the selected pair's remote candidate is TCP`);
        }
      }
      assert.deepEqual(watch.pageErrors, [], 'no uncaught errors in the pages');
    } catch (err) {
      failed = true;
      throw err;
    }
  });
}

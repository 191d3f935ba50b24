// Random UDP loss for the browser tests, with nftables (netem is not in
// these kernels: /work/shared/testing-webrtc.md). The rule drops a share of
// every UDP datagram that arrives on any interface, so inside a loopback
// namespace it hits both directions between browsers and server: each
// packet crosses the input hook once.
//
// Refuses to touch a firewall that is not a test namespace's own: the test
// must run under `unshare -n` (only `lo` present), never on a real host.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';

const TABLE = 'amphi_test_loss';

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Why loss cannot be simulated here, or null when it can. */
export async function lossUnavailable() {
  // /proc/self/net follows this process's namespace (/sys/class/net may not).
  const dev = await readFile('/proc/self/net/dev', 'utf8').catch(() => '');
  const links = dev
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0].trim())
    .filter(Boolean);
  if (links.length !== 1 || links[0] !== 'lo') {
    return `not in a loopback-only network namespace (interfaces: ${links.join(', ')}); run under \`unshare -n\``;
  }
  try {
    await run('nft', ['list', 'tables']);
  } catch (err) {
    return `nft unusable (apt-get install nftables; root needed): ${err.message}`;
  }
  return null;
}

/** Drops `percent` % of incoming UDP datagrams (replaces an earlier rule). */
export async function setUdpLoss(percent) {
  await clearUdpLoss();
  if (!(percent > 0)) return;
  await run('nft', ['add', 'table', 'inet', TABLE]);
  await run('nft', ['add', 'chain', 'inet', TABLE, 'in', '{ type filter hook input priority 0; }']);
  await run('nft', ['add', 'rule', 'inet', TABLE, 'in', 'meta', 'l4proto', 'udp', 'numgen', 'random', 'mod', '100', '<', String(Math.round(percent)), 'counter', 'drop']);
}

/** Removes the loss rule (no error if there is none). */
export async function clearUdpLoss() {
  await run('nft', ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
}

/** How many datagrams the rule dropped so far (0 without a rule). */
export async function droppedSoFar() {
  const out = await run('nft', ['list', 'table', 'inet', TABLE]).catch(() => '');
  const m = /counter packets (\d+)/.exec(out);
  return m ? Number(m[1]) : 0;
}

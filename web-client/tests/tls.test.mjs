// HTTPS served by amphi itself ([http.tls]): with a self-signed certificate
// made here by openssl, Chromium (told to trust exactly that key through
// --ignore-certificate-errors-spki-list) loads the page over https, signals
// over wss and two participants decode each other's video.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Log, flowingStreams, launchBrowser, mintToken, openPage, requireBinaries, startServer, waitFor } from './harness.mjs';

const log = new Log();
let server = null;
let browser = null;
let dir = null;
let failed = false;

after(async () => {
  await browser?.stop();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true }).catch(() => {});
  if (failed) console.error(`---- last log lines ----\n${log.tail(200)}`);
});

/** A self-signed certificate for 127.0.0.1; returns its files and SPKI hash. */
function selfSigned(where) {
  const cert = path.join(where, 'cert.pem');
  const key = path.join(where, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'pipe' });
  // base64(SHA-256(SubjectPublicKeyInfo)), the form Chromium's flag takes.
  const spkiDer = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-pubkey'], { stdio: 'pipe' });
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: spkiDer, stdio: 'pipe' });
  const spki = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der, stdio: 'pipe' }).toString('base64');
  return { cert, key, spki };
}

test('the web client over HTTPS and WSS with amphi terminating TLS', { timeout: 90_000 }, async () => {
  try {
    requireBinaries();
    dir = await mkdtemp(path.join(tmpdir(), 'amphi-tls-'));
    const { cert, key, spki } = selfSigned(dir);
    const config = path.join(dir, 'amphi.toml');
    await writeFile(config, `[http.tls]\ncert = "${cert}"\nkey = "${key}"\n`);
    server = await startServer(log, { extraArgs: ['--config', config] });
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);

    browser = await launchBrowser(log, { extraArgs: [`--ignore-certificate-errors-spki-list=${spki}`] });
    const watch = { urls: [], pageErrors: [] };
    const room = `tls-${Date.now().toString(36)}`;
    const pages = [];
    for (const [id, name] of [['alice', 'Alice'], ['bob', 'Bob']]) {
      const token = await mintToken({ room, identity: id, name });
      const page = await openPage(browser.context, id, log, watch);
      await page.goto(`${server.url}room/${room}#token=${token}&autojoin=1`);
      pages.push(page);
    }
    for (const page of pages) {
      assert.equal(await page.evaluate(() => window.isSecureContext && location.protocol), 'https:');
      await waitFor('remote video decoding over the TLS-signalled call', async () => (await flowingStreams(page, 1_000)).video >= 1, {
        timeoutMs: 30_000,
      });
    }
    const sockets = watch.urls.filter((u) => u.includes('/rtc'));
    assert.ok(sockets.length >= 2 && sockets.every((u) => u.startsWith('wss://')), `signalling over wss: ${sockets}`);
    assert.ok(watch.urls.every((u) => !u.startsWith('http:') && !u.startsWith('ws:')), 'nothing in clear');
    assert.deepEqual(watch.pageErrors, []);
  } catch (err) {
    failed = true;
    throw err;
  }
});

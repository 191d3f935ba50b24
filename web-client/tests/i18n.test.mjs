// The translations: en.ts and fr.ts have exactly the same keys and the same
// {placeholders}, no translation is empty, and the views do not hard-code
// user-visible English (every text goes through t()). No browser needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

/** The `'key': 'text'` entries of a translation file. */
async function entries(file) {
  const text = await readFile(path.join(src, 'i18n', file), 'utf8');
  const map = new Map();
  const re = /^\s*'([\w.]+)':\s*'((?:[^'\\]|\\.)*)',?\s*$/gm;
  for (const m of text.matchAll(re)) {
    assert.ok(!map.has(m[1]), `${file}: key ${m[1]} twice`);
    map.set(m[1], m[2]);
  }
  assert.ok(map.size > 50, `${file}: found only ${map.size} entries`);
  return map;
}

const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test('en.ts and fr.ts have the same keys and placeholders', async () => {
  const en = await entries('en.ts');
  const fr = await entries('fr.ts');
  const onlyEn = [...en.keys()].filter((k) => !fr.has(k));
  const onlyFr = [...fr.keys()].filter((k) => !en.has(k));
  assert.deepEqual(onlyEn, [], 'keys missing from fr.ts');
  assert.deepEqual(onlyFr, [], 'keys missing from en.ts');
  for (const [k, v] of en) {
    assert.ok(v.trim() && fr.get(k).trim(), `${k}: empty translation`);
    assert.deepEqual(placeholders(fr.get(k)), placeholders(v), `${k}: placeholders differ`);
  }
});

test('the views take their texts from the translation files', async () => {
  const files = ['main.ts', ...(await readdir(path.join(src, 'views'))).map((f) => `views/${f}`)];
  // A literal with a letter where the DOM shows text to the user.
  const suspicious = [
    /\btext:\s*['"`][^'"`]*\p{L}/u,
    /\.textContent\s*=\s*['"`][^'"`]*\p{L}/u,
    /'aria-label':\s*['"`][^'"`]*\p{L}/u,
    /\.setAttribute\('aria-label',\s*['"`]/,
    /\btitle(:|\s*=)\s*['"`][^'"`]*\p{L}/u,
    /placeholder(:|\s*=)\s*['"`][^'"`]*\p{L}/u,
    /\b(alert|confirm|prompt)\(\s*['"`]/,
    /\.innerHTML\s*=/,
    /insertAdjacentHTML/,
  ];
  const found = [];
  for (const f of files) {
    const lines = (await readFile(path.join(src, f), 'utf8')).split('\n');
    lines.forEach((line, i) => {
      if (/^\s*(\/\/|\*)/.test(line)) return;
      for (const re of suspicious) if (re.test(line)) found.push(`${f}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, [], 'hard-coded user-visible text or HTML parsing');
});

// Checks of the frontend's source that need no browser and no services: the test ids the
// browser tests rely on exist, module imports resolve, and labels point at real inputs.

import { test } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { readFile, readdir, access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const frontend = path.resolve(here, '..');

async function sourceFiles(dir = frontend) {
  const files = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'tests' && entry.name !== 'node_modules') files.push(...(await sourceFiles(full)));
    } else if (/\.(html|js|css)$/.test(entry.name)) {
      files.push(full);
    }
  }
  return files;
}

/** Test ids the frontend can render: exact ones, and prefixes of ids built from data. */
async function declaredTestIds() {
  const exact = new Set();
  const prefixes = new Set();
  for (const file of await sourceFiles()) {
    const text = await readFile(file, 'utf8');
    for (const [, id] of text.matchAll(/data-testid="([^"]+)"/g)) exact.add(id);
    for (const [, , id] of text.matchAll(/testid:\s*(['"])([^'"]+)\1/g)) exact.add(id);
    for (const [, prefix] of text.matchAll(/testid:\s*`([^`$]*)\$\{/g)) if (prefix) prefixes.add(prefix);
  }
  return { exact, prefixes };
}

const declared = (ids, id) => ids.exact.has(id) || [...ids.prefixes].some((prefix) => id.startsWith(prefix));

test('every test id the browser tests use exists in the frontend', async () => {
  const e2e = await readFile(path.join(here, 'e2e.test.mjs'), 'utf8');
  const used = new Set([...e2e.matchAll(/testid\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]));
  for (const [, list] of e2e.matchAll(/for \(const \w+ of (\[[^\]]*\])\)/g)) {
    for (const [, id] of list.matchAll(/'([a-z0-9-]+)'/g)) used.add(id);
  }
  assert.ok(used.size > 10, `found the ids the tests use (${[...used]})`);

  const ids = await declaredTestIds();
  const missing = [...used].filter((id) => !declared(ids, id));
  assert.deepEqual(missing, [], 'test ids used by e2e.test.mjs but absent from the frontend');
});

test('the test ids promised to other test suites exist', async () => {
  const promised = [
    'event-link', 'join-queue', 'queue-state', 'queue-position', 'progress', 'countdown',
    'qty-VIP', 'email', 'book-submit', 'booking-status', 'ticket', 'cancel-booking',
    'error-message', 'sold-out',
    'admin-token', 'admin-login', 'admin-event-select', 'admission-per-minute', 'max-active',
    'token-ttl', 'wr-enabled', 'wr-save', 'pause-toggle', 'stat-waiting',
    'stat-admitted-last-minute', 'stat-active', 'stat-booked', 'stat-admitted-total',
  ];
  const ids = await declaredTestIds();
  assert.deepEqual(promised.filter((id) => !declared(ids, id)), []);
});

test('every relative module import resolves to a file', async () => {
  const unresolved = [];
  for (const file of await sourceFiles()) {
    const text = await readFile(file, 'utf8');
    const specifiers = [
      ...text.matchAll(/\bfrom\s+['"](\.[^'"]+)['"]/g),
      ...text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g),
      ...text.matchAll(/<script[^>]+src="([^"]+)"/g),
      ...text.matchAll(/<link[^>]+href="([^"]+\.(?:css|js))"/g),
    ].map((m) => m[1]);
    for (const specifier of specifiers) {
      const target = path.resolve(path.dirname(file), specifier);
      await access(target).catch(() => unresolved.push(`${path.relative(frontend, file)} → ${specifier}`));
    }
  }
  assert.deepEqual(unresolved, []);
});

test('every label in the static pages points at an element that exists', async () => {
  for (const page of ['index.html', 'admin.html']) {
    const html = await readFile(path.join(frontend, page), 'utf8');
    const ids = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]));
    const dangling = [...html.matchAll(/<label[^>]*\sfor="([^"]+)"/g)].map((m) => m[1]).filter((id) => !ids.has(id));
    assert.deepEqual(dangling, [], `${page}: labels for missing ids`);

    // Every input outside a wrapping label has a label pointing at it.
    const labelled = new Set([...html.matchAll(/<label[^>]*\sfor="([^"]+)"/g)].map((m) => m[1]));
    const unlabelled = [...html.matchAll(/<(input|select|textarea)\b[^>]*>/g)]
      .map((m) => m[0])
      .filter((tag) => !/type="(hidden|submit|button)"/.test(tag))
      .filter((tag) => {
        const id = /\sid="([^"]+)"/.exec(tag)?.[1];
        const index = html.indexOf(tag);
        const wrapped = html.lastIndexOf('<label', index) > html.lastIndexOf('</label>', index);
        return !wrapped && !(id && labelled.has(id));
      });
    assert.deepEqual(unlabelled, [], `${page}: inputs without a label`);
  }
});

// The page's SHA-256 (for the join's proof of work) is its own code: it must agree with Node's.
async function pageSha256() {
  const source = await readFile(path.join(frontend, 'js', 'sha256.js'), 'utf8');
  return import(`data:text/javascript,${encodeURIComponent(source)}`);
}

test("the page's SHA-256 agrees with Node's on every length across two blocks", async () => {
  const { sha256 } = await pageSha256();
  for (let length = 0; length <= 200; length += 1) {
    const bytes = Uint8Array.from({ length }, (_, i) => (i * 151 + length) & 0xff);
    assert.equal(Buffer.from(sha256(bytes)).toString('hex'), createHash('sha256').update(bytes).digest('hex'), `length ${length}`);
  }
});

test('the proof solver finds a nonce the gateway accepts, also in slices', async () => {
  const { solve } = await pageSha256();
  const zeroBits = (text) => {
    const digest = createHash('sha256').update(text).digest();
    let bits = 0;
    for (const byte of digest) {
      if (byte) return bits + Math.clz32(byte) - 24;
      bits += 8;
    }
    return bits;
  };
  // A challenge as the gateway makes them (67 characters), and shorter and longer ones.
  for (const challenge of ['AQ' + 'x'.repeat(65), 'short', 'y'.repeat(130)]) {
    const { nonce, hashes } = solve(challenge, 12);
    assert.match(nonce, /^\d+$/);
    assert.ok(zeroBits(`${challenge}:${nonce}`) >= 12, `${challenge}:${nonce}`);
    assert.equal(hashes, Number(nonce) + 1, 'the smallest nonce, found in order');
    const before = solve(challenge, 12, { start: 0, count: Number(nonce) });
    assert.equal(before.nonce, null, 'no smaller nonce solves it');
    assert.equal(solve(challenge, 12, { start: Number(nonce), count: 1 }).nonce, nonce);
  }
});

test('wait ranges read as a buyer would say them', async () => {
  const source = await readFile(path.join(frontend, 'js', 'format.js'), 'utf8');
  const { formatWaitRange } = await import(`data:text/javascript,${encodeURIComponent(source)}`);
  assert.equal(formatWaitRange([480, 720]), '8–12 minutes');
  assert.equal(formatWaitRange([10, 300]), 'Up to 5 minutes');
  assert.equal(formatWaitRange([290, 310]), 'About 5 minutes');
  assert.equal(formatWaitRange([5, 40]), 'Less than a minute');
  assert.equal(formatWaitRange([3 * 3600, 5 * 3600]), '3–5 hours');
  assert.equal(formatWaitRange(null), 'Unknown');
});

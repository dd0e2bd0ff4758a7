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

test('projection times and rates read as an operator would say them', async () => {
  const source = await readFile(path.join(frontend, 'js', 'format.js'), 'utf8');
  const { formatDuration, formatRate } = await import(`data:text/javascript,${encodeURIComponent(source)}`);
  assert.equal(formatDuration(0), 'less than a second');
  assert.equal(formatDuration(12), '12 s');
  assert.equal(formatDuration(150), '2 min 30 s');
  assert.equal(formatDuration(120), '2 min');
  assert.equal(formatDuration(725), '12 min');
  assert.equal(formatDuration(3900), '1 h 5 min');
  assert.equal(formatDuration(3600), '1 h');
  assert.equal(formatDuration(12 * 3600 + 100), '12 h');
  assert.equal(formatRate(580.4), '580');
  assert.equal(formatRate(2.03), '2');
  assert.equal(formatRate(0.5), '0.5');
  assert.equal(formatRate(null), '0');
});

// Modules of the live view load in Node from data URLs, their imports of format.js pointed at one.
async function liveModule(name) {
  const format = `data:text/javascript,${encodeURIComponent(await readFile(path.join(frontend, 'js', 'format.js'), 'utf8'))}`;
  const source = (await readFile(path.join(frontend, 'js', name), 'utf8')).replace("'./format.js'", JSON.stringify(format));
  return import(`data:text/javascript,${encodeURIComponent(source)}`);
}

const sample = (t, fields = {}) => ({ id: `${t}-0`, t_ms: t, admitted_total: 0, booked_total: 0, paused: false, ...fields });

test('admissions a minute are the change over the last 60 s, scaled while less history exists', async () => {
  const { perMinute } = await liveModule('live-samples.js');
  // Ten admissions a second for two minutes, one sample a second.
  const samples = Array.from({ length: 121 }, (_, i) => sample(1_000_000 + i * 1000, { admitted_total: i * 10 }));
  const rates = perMinute(samples, 'admitted_total');
  assert.equal(rates[0][1], null, 'no rate from a single sample');
  assert.equal(rates[1][1], 600, 'ten in one second is 600 a minute');
  assert.equal(rates[30][1], 600, 'scaled over half a minute');
  assert.equal(rates[60][1], 600);
  assert.equal(rates[120][1], 600);
  // Admissions stop at 90 s: a minute later the rate has fallen to nothing, linearly.
  const stopped = samples.map((s, i) => ({ ...s, admitted_total: Math.min(i, 90) * 10 }));
  const after = perMinute(stopped, 'admitted_total');
  assert.equal(after[120][1], 300, '30 s of admissions in the last minute');
  const silent = [...stopped, sample(1_000_000 + 151_000, { admitted_total: 900 })];
  assert.equal(perMinute(silent, 'admitted_total').at(-1)[1], 0);
  // A silence of two minutes: the change across it, as a rate a minute.
  const gap = [sample(0, { admitted_total: 0 }), sample(120_000, { admitted_total: 240 })];
  assert.equal(perMinute(gap, 'admitted_total')[1][1], 120);
  // A total going down (a reset) is no negative rate.
  const reset = [sample(0, { admitted_total: 50 }), sample(1000, { admitted_total: 0 })];
  assert.equal(perMinute(reset, 'admitted_total')[1][1], 0);
});

test('the live view keeps the last 30 minutes, at most 1800 samples, each once', async () => {
  const { keepWindow, pausedSpans, ticketsLeft } = await liveModule('live-samples.js');
  const first = Array.from({ length: 1000 }, (_, i) => sample(i * 1000));
  const more = Array.from({ length: 1000 }, (_, i) => sample((1000 + i) * 1000));
  let kept = keepWindow([], first);
  assert.equal(kept.length, 1000);
  kept = keepWindow(kept, [...first.slice(-3), ...more]);
  assert.equal(kept.length, 1800, 'capped, and repeated samples not added again');
  assert.equal(kept[0].t_ms, 200_000);
  assert.equal(kept.at(-1).t_ms, 1_999_000);
  // Past a silence, only what is within 30 minutes of the newest sample stays.
  kept = keepWindow(kept, [sample(1_999_000 + 29 * 60_000)]);
  assert.deepEqual(kept.map((s) => s.t_ms), [...Array.from({ length: 61 }, (_, i) => (1_939 + i) * 1000), 1_999_000 + 29 * 60_000]);
  // Ids compare as numbers: "999-0" is before "1000-0".
  assert.equal(keepWindow([sample(999)], [sample(1000)]).length, 2);

  const paused = [0, 1, 2, 3, 4, 5].map((i) => sample(i * 1000, { paused: i >= 2 && i <= 3 || i === 5 }));
  assert.deepEqual(pausedSpans(paused), [[2000, 4000], [5000, 5000]]);

  const tiers = ticketsLeft([
    sample(0, { tiers: [{ code: 'GA', available: 10 }] }),
    sample(1000, { tiers: [{ code: 'GA', available: 8 }, { code: 'VIP', available: 4 }] }),
  ]);
  assert.deepEqual(tiers, [
    { label: 'GA', points: [[0, 10], [1000, 8]] },
    { label: 'VIP', points: [[0, null], [1000, 4]] },
  ]);
});

test('projections are said in words, and "not moving" where the server has no time', async () => {
  const { projectionSentences } = await liveModule('projections.js');
  const said = (s, p) => Object.fromEntries(projectionSentences(s, p).map(({ key, text }) => [key, text]));
  const words = said(
    { waiting: 1204, paused: false, enabled: true, tiers: [{ code: 'GA', available: 100, held: 3 }, { code: 'VIP', available: 5, held: 0 }, { code: 'BOX', available: 0, held: 0 }] },
    {
      admissions_per_minute: 580,
      bookings_per_minute: 300,
      queue_drains_in_s: 125,
      tiers: [{ code: 'GA', sold_per_minute: 40, sells_out_in_s: 150 }, { code: 'VIP', sold_per_minute: 0, sells_out_in_s: null }],
      tickets_per_booking: 2.03,
      likely_unserved: 40,
    },
  );
  assert.deepEqual(words, {
    queue: 'The line of 1,204 drains in about 2 min 5 s at 580 admissions a minute.',
    bookings: 'Buyers make 300 bookings a minute, 2 tickets each.',
    'tier-GA': 'GA has 100 tickets left (3 more held) and sells out in about 2 min 30 s at 40 a minute.',
    'tier-VIP': 'VIP has 5 tickets left and is not selling.',
    'tier-BOX': 'BOX is sold out.',
    unserved: 'About 40 people in line will likely not get tickets.',
  });
  const paused = said(
    { waiting: 2, paused: true, tiers: [{ code: 'GA', available: 0, held: 1 }, { code: 'VIP', available: 1, held: 0 }] },
    { admissions_per_minute: 0, bookings_per_minute: 0, queue_drains_in_s: null, tiers: [{ code: 'VIP', sold_per_minute: 0, sells_out_in_s: null }], likely_unserved: 0 },
  );
  assert.equal(paused.queue, 'The line of 2 is not moving at this pace: admissions are paused.');
  assert.equal(paused['tier-GA'], 'GA has none on sale; 1 ticket held by buyers may come back.');
  assert.equal(paused['tier-VIP'], 'VIP has 1 ticket left and is not selling.');
  assert.equal(paused.unserved, 'Everyone in line will likely get tickets.');
  assert.equal(paused.bookings, 'Nobody is booking right now.');
  // Under 10 s of samples the server has no rates: too early to tell, not "not moving".
  const early = said(
    { waiting: 3, paused: false, tiers: [{ code: 'GA', available: 5, held: 0 }] },
    { admissions_per_minute: null, bookings_per_minute: null, queue_drains_in_s: null, tiers: [{ code: 'GA', sold_per_minute: null, sells_out_in_s: null }], likely_unserved: 0 },
  );
  assert.equal(early.queue, 'The line of 3: too early to tell its pace.');
  assert.equal(early.bookings, 'Bookings: too early to tell their pace.');
  assert.equal(early['tier-GA'], 'GA has 5 tickets left; too early to tell its pace.');
  // Stalls, refusals among the admitted and the conversion per tier, when there are any.
  const stalled = said(
    { waiting: 40, paused: false, stall_s: 12, stalled_total_s: 75, tiers: [{ code: 'GA', available: 5, held: 0 }, { code: 'VIP', available: 0, held: 0 }] },
    { admissions_per_minute: 0, bookings_per_minute: 0, queue_drains_in_s: null, refused_share: 0.4, tiers: [{ code: 'GA', sold_per_minute: 0, conversion: 0.25 }, { code: 'VIP', sold_per_minute: 0, conversion: 0.125 }], likely_unserved: 38 },
  );
  assert.equal(stalled.stall, 'Nobody admitted for 12 s though stock is on sale and people wait (1 min 15 s of stalls this sale).');
  assert.equal(stalled.refused, '40 % of the buyers admitted lately were refused for stock.');
  assert.equal(stalled.conversion, 'Admitted buyers who book each tier: GA 25 %, VIP 13 %.');
  const moving = said({ waiting: 4, stall_s: 0, stalled_total_s: 3, tiers: [] }, { refused_share: 0, bookings_per_minute: 1 });
  assert.equal(moving.stall, 'The line moves; 3 s of stalls this sale.');
  assert.equal(moving.refused, undefined);
  const empty = said({ waiting: 0, tiers: [] }, { bookings_per_minute: 0, queue_drains_in_s: 0, likely_unserved: 0 });
  assert.deepEqual(empty, { queue: 'Nobody is waiting in line.', bookings: 'Nobody is booking right now.' });
});

test('the queue stream is given up for polls when it fails, and closed at every end', async () => {
  // A stand-in EventSource the test drives by hand.
  class FakeSource extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 2;
    static opened = [];
    constructor(url) {
      super();
      this.url = url;
      this.readyState = FakeSource.CONNECTING;
      FakeSource.opened.push(this);
    }
    close() {
      this.readyState = FakeSource.CLOSED;
      this.closed = true;
    }
    send(type, data) {
      this.readyState = FakeSource.OPEN;
      this.dispatchEvent(Object.assign(new Event(type), { data: JSON.stringify(data) }));
    }
    fail(readyState = FakeSource.CONNECTING) {
      this.readyState = readyState;
      this.dispatchEvent(new Event('error'));
    }
  }
  globalThis.EventSource = FakeSource;
  const source = await readFile(path.join(frontend, 'js', 'queue-stream.js'), 'utf8');
  const { followQueue } = await import(`data:text/javascript,${encodeURIComponent(source)}`);
  const follow = (onStatus = () => false, signal = new AbortController().signal) => {
    const statuses = [];
    let troubles = 0;
    const outcome = followQueue('q 1', 'r/1', { signal, onStatus: (s) => (statuses.push(s.state), onStatus(s)), onTrouble: () => (troubles += 1) });
    return { outcome, statuses, troubles: () => troubles, source: FakeSource.opened.at(-1) };
  };
  try {
    const first = follow();
    assert.equal(first.source.url, '/api/queue/q%201/events?receipt=r%2F1');
    first.source.fail();
    assert.equal(await first.outcome, 'failed', 'an error before the first message: poll instead');
    assert.ok(first.source.closed);

    const flaky = follow((s) => s.state === 'admitted');
    flaky.source.send('status', { state: 'waiting' });
    flaky.source.fail();
    flaky.source.fail();
    flaky.source.send('status', { state: 'waiting' }); // reconnected: the count starts over
    flaky.source.fail();
    flaky.source.fail();
    assert.equal(flaky.troubles(), 4);
    flaky.source.send('status', { state: 'admitted', token: 't' });
    assert.equal(await flaky.outcome, 'over');
    assert.deepEqual(flaky.statuses, ['waiting', 'waiting', 'admitted']);
    assert.ok(flaky.source.closed, 'closed after the admission, so it does not reconnect');

    const broken = follow();
    broken.source.send('status', { state: 'waiting' });
    for (let i = 0; i < 3; i += 1) broken.source.fail();
    assert.equal(await broken.outcome, 'failed', 'three errors without a message in between');

    const refused = follow();
    refused.source.send('status', { state: 'waiting' });
    refused.source.fail(FakeSource.CLOSED);
    assert.equal(await refused.outcome, 'failed', 'a reconnect answered with no stream');

    const gone = follow();
    gone.source.send('problem', { error: { code: 'queue_entry_not_found', message: 'gone' } });
    assert.equal(await gone.outcome, 'gone');
    assert.ok(gone.source.closed);

    const garbled = follow();
    garbled.source.dispatchEvent(Object.assign(new Event('status'), { data: '<html>' }));
    assert.equal(await garbled.outcome, 'failed');

    const leaving = new AbortController();
    const left = follow(undefined, leaving.signal);
    left.source.send('status', { state: 'waiting' });
    leaving.abort();
    assert.equal(await left.outcome, 'aborted');
    assert.ok(left.source.closed, 'leaving the line closes the stream');
  } finally {
    delete globalThis.EventSource;
  }
});

// End-to-end tests of the buyer and operator pages, in Debian's Chromium, against services
// that are already running. Each test creates its own event, so tests are independent.
//
//   GATEWAY_URL  gateway origin (default http://127.0.0.1:3000)
//   ADMIN_TOKEN  admin bearer token (default dev-admin-token)
//   TEST_OUTPUT  where final screenshots go (default ../../test-output/e2e, from this folder)
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//   PROOF_GATEWAY_URL  a gateway on the same stores that asks every join for proof of work
//                (PROOF_ADDRESS_JOINS_PER_SECOND=0; default http://127.0.0.1:3301)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const GATEWAY = (process.env.GATEWAY_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const ADMIN_TOKEN = process.env.ADMIN_TOKEN || 'dev-admin-token';
const PROOF_GATEWAY = (process.env.PROOF_GATEWAY_URL || 'http://127.0.0.1:3301').replace(/\/+$/, '');
const here = path.dirname(fileURLToPath(import.meta.url));
const OUTPUT = process.env.TEST_OUTPUT
  ? path.resolve(process.env.TEST_OUTPUT)
  : path.resolve(here, '../../test-output/e2e');

const TEST_TIMEOUT_MS = 120_000;
const HOUR_MS = 3_600_000;

/** A CSS selector for a data-testid; the static test checks every id used here exists. */
const testid = (id) => `[data-testid="${id}"]`;

let browser;

before(async () => {
  await mkdir(OUTPUT, { recursive: true });
  const health = await fetch(`${GATEWAY}/api/config`).catch((err) => err);
  assert.ok(health instanceof Response && health.ok, `the gateway must be running at ${GATEWAY} (GET /api/config failed: ${health?.status ?? health?.message})`);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

// ---- the API, straight ----

async function call(method, url, { body, bearer, headers = {} } = {}) {
  const response = await fetch(url.startsWith('http') ? url : `${GATEWAY}${url}`, {
    method,
    headers: {
      Accept: 'application/json',
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...(bearer ? { Authorization: `Bearer ${bearer}` } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Left null; the assertion below shows the status.
  }
  return { status: response.status, body: json, text };
}

const unique = (label) => `e2e ${label} ${new Date().toISOString()} ${randomUUID().slice(0, 8)}`;

async function createEvent(label, { waitingRoom, tiers, onSaleAt = new Date(Date.now() - HOUR_MS) }) {
  const name = unique(label);
  const { status, body, text } = await call('POST', '/api/admin/events', {
    bearer: ADMIN_TOKEN,
    body: {
      name,
      venue_name: 'Test Hall',
      starts_at: new Date(Date.now() + 30 * 24 * HOUR_MS).toISOString(),
      on_sale_at: onSaleAt.toISOString(),
      waiting_room: waitingRoom,
      tiers,
    },
  });
  assert.equal(status, 201, `creating an event: ${text}`);
  assert.equal(body.name, name);
  return body;
}

async function joinQueue(eventId, visitorId) {
  const { status, body, text } = await call('POST', `/api/events/${eventId}/queue`, { body: { visitor_id: visitorId } });
  assert.equal(status, 202, `joining the queue: ${text}`);
  return body;
}

async function waitUntilAdmitted(entry, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let status = entry;
  while (status.state !== 'admitted') {
    assert.ok(['waiting', 'pre_queue'].includes(status.state), `unexpected queue state ${status.state}`);
    assert.ok(Date.now() < deadline, `not admitted within ${timeoutMs} ms (last: ${JSON.stringify(status)})`);
    // As often as the page polls at most: the gateway limits polls per queue id.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const polled = await call('GET', `/api/queue/${entry.queue_id}`);
    assert.equal(polled.status, 200, `polling the queue: ${polled.text}`);
    status = polled.body;
  }
  assert.ok(status.token, 'an admitted entry carries a token');
  return status;
}

async function setWaitingRoom(eventId, changes) {
  const { status, text } = await call('PUT', `/api/admin/events/${eventId}/waiting-room`, { bearer: ADMIN_TOKEN, body: changes });
  assert.equal(status, 200, `changing the waiting room: ${text}`);
}

async function bookingBase() {
  const config = await call('GET', '/api/config');
  assert.equal(config.status, 200);
  return config.body.booking_url.replace(/\/+$/, '');
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const waitingRoom = (admissionPerMinute) => ({
  enabled: true,
  admission_per_minute: admissionPerMinute,
  max_active: 100,
  paused: false,
  token_ttl_s: 300,
});

// ---- browser pages ----

/**
 * Runs `body` with a fresh browser context (its own storage, like another person's phone)
 * and saves a screenshot of the page as it ends, passed or failed.
 */
async function withPage(name, body, { viewport = { width: 360, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport, locale: 'en-US' });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  try {
    await body(page, context);
    assert.deepEqual(pageErrors, [], 'the page threw no uncaught errors');
  } finally {
    await page.screenshot({ path: path.join(OUTPUT, `${name}.png`), fullPage: true }).catch(() => {});
    await context.close();
  }
}

async function waitForState(page, state, timeout = 15_000) {
  await page.waitForSelector(`${testid('queue-state')}[data-state="${state}"]`, { timeout });
}

// A queue entry's poll, `GET /api/queue/<id>`, as opposed to its stream (`…/events`) or wish.
const isPoll = (request) => request.method() === 'GET' && /\/api\/queue\/[^/?]+(\?|$)/.test(new URL(request.url()).pathname);
const isStream = (request) => /\/api\/queue\/[^/]+\/events$/.test(new URL(request.url()).pathname);
const STREAMS = /\/api\/queue\/[^/]+\/events/;

/** Records the page's polls and stream requests (URLs), as they are sent. */
function queueRequests(page) {
  const seen = { polls: [], streams: [] };
  page.on('request', (request) => {
    if (isPoll(request)) seen.polls.push(request.url());
    if (isStream(request)) seen.streams.push(request.url());
  });
  return seen;
}

/** The page follows its place by polls only: the stream is refused as a full gateway does. */
async function refuseStreams(page) {
  await page.route(STREAMS, (route) =>
    route.fulfill({
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'unavailable', message: 'This gateway holds its most streams.' } }),
    }),
  );
}

/**
 * Installed before the page's scripts: a tab the test can send to the background
 * (`__setHidden(true)`), notifications recorded instead of shown (permission not decided until
 * asked), and the oscillators started counted, so the call back at a buyer's turn is seen.
 */
function backgroundTabSpies() {
  let hidden = false;
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event('visibilitychange'));
  };
  window.__notifications = [];
  window.Notification = class {
    static permission = 'default';
    static async requestPermission() {
      this.permission = 'granted';
      return 'granted';
    }
    constructor(title, options = {}) {
      window.__notifications.push({ title, body: options.body });
    }
    addEventListener() {}
    close() {}
  };
  window.__tones = 0;
  const createOscillator = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    const oscillator = createOscillator.call(this);
    const start = oscillator.start.bind(oscillator);
    oscillator.start = (...args) => {
      window.__tones += 1;
      return start(...args);
    };
    return oscillator;
  };
}

/** The titles the page shows over `ms`, one read every 100 ms. */
async function titlesOver(page, ms) {
  return page.evaluate(async (duration) => {
    const titles = new Set();
    for (let waited = 0; waited < duration; waited += 100) {
      titles.add(document.title);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return [...titles];
  }, ms);
}

/** Waits until `check()` holds, looking every 100 ms. */
async function until(check, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    assert.ok(Date.now() < deadline, `${what} within ${timeoutMs} ms`);
    await pause(100);
  }
}

async function bookOneGa(page) {
  await page.fill(testid('qty-GA'), '1');
  await page.fill(testid('email'), `buyer-${randomUUID().slice(0, 8)}@example.com`);
  await page.click(testid('book-submit'));
  await page.waitForURL(/#\/booking\//, { timeout: 15_000 });
  await ticketCount(page, 1);
  assert.equal(await page.textContent(testid('booking-status')), 'Confirmed');
}

async function ticketCount(page, expected) {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="ticket"]').length === n, expected, { timeout: 15_000 });
}

// ---- tests ----

test('a buyer waits in line, is admitted when the operator opens the tap, books and cancels', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('journey', {
    waitingRoom: waitingRoom(1),
    tiers: [
      { code: 'VIP', name: 'VIP', price_cents: 10000, capacity: 2 },
      { code: 'GA', name: 'General admission', price_cents: 1000, capacity: 10 },
    ],
  });
  // At one admission a minute, people ahead keep the buyer waiting until the operator acts.
  await joinQueue(event.id, `filler-${randomUUID()}`);
  await joinQueue(event.id, `filler-${randomUUID()}`);

  await withPage('buyer-journey', async (buyer) => {
    await buyer.goto(`${GATEWAY}/#/events/${event.id}`);
    await buyer.click(testid('join-queue'));
    await waitForState(buyer, 'waiting');
    assert.match(await buyer.textContent(testid('queue-state')), /You are number \d+ in line/);
    assert.ok(Number(await buyer.textContent(testid('queue-position'))) >= 1);
    assert.ok(await buyer.isVisible(testid('progress')));

    await withPage('operator', async (operator) => {
      await operator.goto(`${GATEWAY}/admin.html`);
      await operator.fill(testid('admin-token'), ADMIN_TOKEN);
      await operator.click(testid('admin-login'));
      await operator.selectOption(testid('admin-event-select'), event.id);
      await operator.waitForFunction((sel) => document.querySelector(sel)?.value === '1', testid('admission-per-minute'));
      await operator.waitForFunction((sel) => /\d/.test(document.querySelector(sel)?.textContent ?? ''), testid('stat-waiting'));
      await operator.fill(testid('admission-per-minute'), '600');
      await operator.click(testid('wr-save'));
      await operator.waitForFunction((sel) => /Saved/.test(document.querySelector(sel)?.textContent ?? ''), testid('wr-result'));
      for (const stat of ['stat-admitted-last-minute', 'stat-active', 'stat-booked', 'stat-admitted-total']) {
        assert.match(await operator.textContent(testid(stat)), /\d/, `${stat} shows a number`);
      }
      assert.ok(await operator.isVisible(testid('pause-toggle')));
    });

    await buyer.waitForSelector(testid('countdown'), { timeout: 25_000 });
    assert.match(await buyer.textContent(testid('countdown')), /^\d\d:\d\d$/);
    await buyer.fill(testid('qty-VIP'), '1');
    await buyer.fill(testid('qty-GA'), '2');
    await buyer.fill(testid('email'), `buyer-${randomUUID().slice(0, 8)}@example.com`);
    assert.match(await buyer.textContent(testid('total')), /\$120\.00/);
    await buyer.click(testid('book-submit'));

    await buyer.waitForURL(/#\/booking\//, { timeout: 15_000 });
    await ticketCount(buyer, 3);
    const tickets = await buyer.locator(testid('ticket')).allTextContents();
    assert.equal(tickets.filter((t) => /VIP.*\d/.test(t)).length, 1, `one VIP ticket in ${tickets}`);
    assert.equal(tickets.filter((t) => /GA.*\d/.test(t)).length, 2, `two GA tickets in ${tickets}`);
    assert.equal(await buyer.textContent(testid('booking-status')), 'Confirmed');

    await buyer.reload();
    await ticketCount(buyer, 3);

    await buyer.click(testid('cancel-booking'));
    await buyer.click(testid('confirm-cancel'));
    await buyer.waitForFunction((sel) => document.querySelector(sel)?.textContent === 'Cancelled', testid('booking-status'));
  });
});

test('a buyer arriving after the last ticket sold learns it is sold out', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('sold out', {
    waitingRoom: waitingRoom(600),
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 2500, capacity: 1 }],
  });

  const admitted = await waitUntilAdmitted(await joinQueue(event.id, `first-${randomUUID()}`));
  const config = await call('GET', '/api/config');
  assert.equal(config.status, 200);
  const booked = await call('POST', `${config.body.booking_url.replace(/\/+$/, '')}/api/bookings`, {
    bearer: admitted.token,
    headers: { 'Idempotency-Key': randomUUID() },
    body: { event_id: event.id, tiers: { GA: 1 }, buyer_email: 'first@example.com' },
  });
  assert.equal(booked.status, 201, `booking the last ticket: ${booked.text}`);

  await withPage('sold-out', async (page) => {
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    // Availability is live but may lag a moment; the page refreshes it every few seconds.
    const onEventPage = await page.waitForSelector(testid('sold-out'), { timeout: 12_000 }).catch(() => null);
    if (!onEventPage) {
      await page.click(testid('join-queue'));
      await waitForState(page, 'sold_out');
      await page.waitForSelector(testid('sold-out'));
    }
    assert.match(await page.textContent(testid('sold-out')), /Sold out/);
  });
});

test('reloading the queue page keeps the same place in line', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('reload', {
    waitingRoom: waitingRoom(1),
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1500, capacity: 10 }],
  });
  await joinQueue(event.id, `filler-${randomUUID()}`);
  await joinQueue(event.id, `filler-${randomUUID()}`);

  await withPage('queue-reload', async (page) => {
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting');
    const before = Number(await page.textContent(testid('queue-position')));
    const placeBefore = await page.evaluate((id) => JSON.parse(localStorage.getItem(`queue:${id}`)), event.id);
    assert.ok(before >= 1, `a position is shown (${before})`);
    assert.ok(placeBefore?.queue_id, 'the queue id is remembered');

    const joins = [];
    page.on('request', (request) => {
      if (request.method() === 'POST' && request.url().includes('/queue')) joins.push(request.url());
    });
    await page.reload();
    await waitForState(page, 'waiting');
    const after = Number(await page.textContent(testid('queue-position')));
    const placeAfter = await page.evaluate((id) => JSON.parse(localStorage.getItem(`queue:${id}`)), event.id);

    assert.equal(placeAfter.queue_id, placeBefore.queue_id, 'the same queue entry after the reload');
    assert.deepEqual(joins, [], 'the reload polled the remembered entry instead of joining again');
    // At one admission a minute, someone ahead may just have been let in.
    assert.ok(after === before || after === before - 1, `position ${before} before the reload, ${after} after`);
  });
});

test('a buyer sends its place receipt with each poll, and leaving the line frees the place', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('leave', {
    waitingRoom: waitingRoom(1),
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1500, capacity: 10 }],
  });
  await joinQueue(event.id, `filler-${randomUUID()}`);

  await withPage('queue-leave', async (page) => {
    // Polls are what this test is about: the stream is refused, so the page polls.
    await refuseStreams(page);
    const receipts = [];
    page.on('request', (request) => {
      if (isPoll(request)) receipts.push(request.headers()['x-queue-receipt'] ?? null);
    });
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting');
    const place = await page.evaluate((id) => JSON.parse(localStorage.getItem(`queue:${id}`)), event.id);
    // A reload polls the remembered entry, with the receipt the join answered.
    await page.reload();
    await waitForState(page, 'waiting');
    assert.equal(await page.getAttribute(testid('queue-view'), 'data-live'), 'poll');
    assert.ok(receipts.length > 0 && receipts.every((r) => typeof r === 'string' && r.length > 20), `polls carried receipts: ${receipts}`);

    await page.click(testid('leave'));
    await waitForState(page, 'left');
    const stored = await page.evaluate((id) => localStorage.getItem(`queue:${id}`), event.id);
    assert.equal(stored, null, 'the page forgot the place');
    const poll = await fetch(`${GATEWAY}/api/queue/${place.queue_id}`);
    assert.equal(poll.status, 404, 'the server forgot the entry');
  });
});

test('a buyer asked for proof of work solves it in the page and gets in line', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('proof of work', {
    waitingRoom: waitingRoom(1),
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1500, capacity: 10 }],
  });
  await joinQueue(event.id, `filler-${randomUUID()}`);

  await withPage('proof-of-work', async (page) => {
    const joins = [];
    page.on('response', async (response) => {
      const request = response.request();
      if (request.method() === 'POST' && /\/api\/events\/[^/]+\/queue$/.test(request.url())) {
        joins.push({ status: response.status(), sent: request.postDataJSON() });
      }
    });
    await page.goto(`${PROOF_GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting', 30_000);
    assert.match(await page.textContent(testid('queue-state')), /You are number \d+ in line/);

    assert.deepEqual(
      joins.map((j) => j.status),
      [428, 202],
      `the gateway at ${PROOF_GATEWAY} asks every join for a proof (PROOF_ADDRESS_JOINS_PER_SECOND=0), and the page answered it once`,
    );
    assert.equal(joins[0].sent.proof, undefined);
    assert.equal(joins[1].sent.visitor_id, joins[0].sent.visitor_id);
    assert.match(joins[1].sent.proof.nonce, /^\d+$/);

    // The solver at the default difficulty (18 bits), in this browser's worker, for the record.
    const timing = await page.evaluate(async () => {
      const { solveProof } = await import('/js/proof.js');
      const started = performance.now();
      const proof = await solveProof({ challenge: 'A'.repeat(67), difficulty: 18 }, new AbortController().signal);
      return { ms: Math.round(performance.now() - started), nonce: proof.nonce };
    });
    const digest = createHash('sha256').update(`${'A'.repeat(67)}:${timing.nonce}`).digest();
    assert.equal(digest[0] | digest[1] | (digest[2] & 0xc0), 0, 'the worker found 18 leading zero bits');
    console.log(`# proof of work, 18 bits, headless Chromium worker: ${timing.ms} ms (nonce ${timing.nonce})`);
  });
});

test('a buyer chooses tickets while waiting, changes the choice when its tier sells out, and books it in one tap', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('wish', {
    waitingRoom: { ...waitingRoom(600), paused: true, hold_on_admission: true },
    tiers: [
      { code: 'GA', name: 'General admission', price_cents: 1000, capacity: 2 },
      { code: 'VIP', name: 'VIP', price_cents: 10000, capacity: 3 },
    ],
  });
  // Someone ahead wants every GA ticket and is let in (admission holds them for the rival);
  // then the sale pauses, so the buyer waits for as long as the test needs.
  const rival = await joinQueue(event.id, `rival-${randomUUID()}`);
  const rivalWish = await call('PUT', `/api/queue/${rival.queue_id}/wish`, { body: { tiers: { GA: 2 } } });
  assert.equal(rivalWish.status, 200, `the rival's wish: ${rivalWish.text}`);
  await setWaitingRoom(event.id, { paused: false });
  const admitted = await waitUntilAdmitted(rival);
  await setWaitingRoom(event.id, { paused: true });
  await pause(1_500); // settings take effect within a second

  await withPage('queue-wish', async (page) => {
    const wishes = [];
    page.on('response', (response) => {
      if (response.request().method() === 'PUT' && response.url().endsWith('/wish')) {
        wishes.push({ status: response.status(), sent: response.request().postDataJSON() });
      }
    });
    const email = `wish-${randomUUID().slice(0, 8)}@example.com`;
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting');
    await page.waitForFunction((sel) => /paused/i.test(document.querySelector(sel)?.textContent ?? ''), testid('wait-note'), { timeout: 10_000 });
    // The rival's GA tickets are held, not sold: they may come back, so no "sold out".
    await page.waitForFunction((sel) => /none on sale right now; 2 held by buyers/i.test(document.querySelector(sel)?.textContent ?? ''), testid('tier-line-GA'), { timeout: 10_000 });
    assert.match(await page.textContent(testid('tier-line-VIP')), /About 3 left/);

    await page.fill(testid('wish-qty-GA'), '2');
    await page.fill(testid('wish-email'), email);
    await page.click(testid('wish-save'));
    await page.waitForFunction((sel) => /Saved: 2 × General admission/.test(document.querySelector(sel)?.textContent ?? ''), testid('wish-result'));

    // Behind the scenes the rival books them: the buyer's choice can no longer be met.
    const booked = await call('POST', `${await bookingBase()}/api/bookings`, {
      bearer: admitted.token,
      headers: { 'Idempotency-Key': randomUUID() },
      body: { event_id: event.id, tiers: { GA: 2 }, buyer_email: 'rival@example.com' },
    });
    assert.equal(booked.status, 201, `the rival books every GA ticket: ${booked.text}`);
    await page.waitForSelector(`${testid('wish-shortfall')}:not([hidden])`, { timeout: 15_000 });
    assert.match(await page.textContent(testid('wish-shortfall')), /Your choice can no longer be met: change it to keep your chance/);
    assert.match(await page.textContent(testid('tier-line-GA')), /^Sold out$/);
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'wish-qty-GA', 'the picker is focused on the tier to change');
    await waitForState(page, 'waiting');

    await page.fill(testid('wish-qty-GA'), '0');
    await page.fill(testid('wish-qty-VIP'), '1');
    await page.click(testid('wish-save'));
    await page.waitForFunction((sel) => /Saved: 1 × VIP/.test(document.querySelector(sel)?.textContent ?? ''), testid('wish-result'));
    await page.waitForSelector(testid('wish-shortfall'), { state: 'hidden' });
    assert.deepEqual(
      wishes.map((w) => [w.status, w.sent]),
      [[200, { tiers: { GA: 2 } }], [200, { tiers: { VIP: 1 } }]],
    );

    await setWaitingRoom(event.id, { paused: false });
    // Admitted: the form is filled from the choice and the remembered email, one tap books it.
    await page.waitForSelector(`${testid('book-wish')}:visible`, { timeout: 20_000 });
    assert.match(await page.textContent(testid('wish-summary')), new RegExp(`1 × VIP · \\$100\\.00 · tickets sent to ${email}`));
    assert.equal(await page.inputValue(testid('qty-VIP')), '1');
    assert.equal(await page.inputValue(testid('qty-GA')), '0');
    assert.equal(await page.inputValue(testid('email')), email);
    await page.click(testid('book-wish'));

    await page.waitForURL(/#\/booking\//, { timeout: 15_000 });
    await ticketCount(page, 1);
    assert.match(await page.textContent(testid('ticket')), /VIP.*\d/);
    assert.equal(await page.textContent(testid('booking-status')), 'Confirmed');
  });

  const availability = await call('GET', `${await bookingBase()}/api/events/${event.id}/availability`);
  assert.deepEqual(availability.body.tiers, { GA: 0, VIP: 2 }, 'two GA for the rival, one VIP for the buyer');
});

test('closing the queue page frees the place after a grace, while a reload keeps it', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Paused: nobody is let in while the test takes its time.
  const event = await createEvent('close', {
    waitingRoom: { ...waitingRoom(600), paused: true },
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1500, capacity: 10 }],
  });

  // Playwright does not report the keepalive request of a document going away, so the test
  // judges by the place itself: kept through a reload, gone after the grace once closed.
  let queueId;
  await withPage('queue-close', async (page) => {
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting');
    const place = await page.evaluate((id) => JSON.parse(localStorage.getItem(`queue:${id}`)), event.id);
    queueId = place.queue_id;

    await page.reload();
    await waitForState(page, 'waiting');
    // Past the grace, the reloaded page (which polled at once) still has its place.
    await pause(17_000);
    await waitForState(page, 'waiting');
    const kept = await call('GET', `/api/queue/${place.queue_id}`);
    assert.equal(kept.status, 200, `the place survived the reload: ${kept.text}`);

    await page.screenshot({ path: path.join(OUTPUT, 'queue-close.png'), fullPage: true });
    // A tab closing: its pagehide is not kept in the back/forward cache.
    await page.close({ runBeforeUnload: true });
  });
  await pause(17_000);
  const gone = await call('GET', `/api/queue/${queueId}`);
  assert.equal(gone.status, 404, `the closed page's place is gone: ${gone.text}`);
});

test('a buyer follows its place on the stream, is pushed its turn in a background tab, is called back and books', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Paused: the buyer waits until the operator opens the tap.
  const event = await createEvent('stream', {
    waitingRoom: { ...waitingRoom(600), paused: true },
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1000, capacity: 10 }],
  });

  await withPage('queue-stream', async (page) => {
    await page.addInitScript(backgroundTabSpies);
    const seen = queueRequests(page);
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting');
    await page.waitForSelector(`${testid('queue-view')}[data-live="stream"]`, { timeout: 10_000 });
    assert.equal(seen.streams.length, 1, `one stream opened: ${seen.streams}`);
    assert.ok((new URL(seen.streams[0]).searchParams.get('receipt') ?? '').length > 20, `the stream was opened with the join's receipt: ${seen.streams[0]}`);

    // A reload opens the stream again with the receipt the page keeps, and keeps the place.
    const place = await page.evaluate((id) => JSON.parse(localStorage.getItem(`queue:${id}`)), event.id);
    await page.reload();
    await waitForState(page, 'waiting');
    await page.waitForSelector(`${testid('queue-view')}[data-live="stream"]`, { timeout: 10_000 });
    assert.equal(seen.streams.length, 2, `the reload opened one stream: ${seen.streams}`);
    assert.equal(new URL(seen.streams[1]).searchParams.get('receipt'), place.receipt, 'the reloaded page streams with the kept receipt');
    assert.equal(await page.evaluate((id) => JSON.parse(localStorage.getItem(`queue:${id}`)).queue_id, event.id), place.queue_id);

    // Asked for only now, after the click.
    await page.click(testid('notify-me'));
    await page.waitForFunction((sel) => /We will notify you/.test(document.querySelector(sel)?.textContent ?? ''), testid('notify-result'));
    assert.equal(await page.isVisible(testid('notify-me')), false, 'the offer is gone once answered');

    await page.evaluate(() => window.__setHidden(true));
    await setWaitingRoom(event.id, { paused: false });
    await page.waitForSelector(testid('countdown'), { timeout: 20_000 });
    assert.match(await page.textContent(testid('countdown')), /^0[45]:\d\d$/, 'the time to book, counted from the token sent');

    const called = await page.evaluate(() => ({ notifications: window.__notifications, tones: window.__tones }));
    assert.equal(called.notifications.length, 1, `one notification: ${JSON.stringify(called.notifications)}`);
    assert.equal(called.notifications[0].title, 'Your turn!');
    assert.match(called.notifications[0].body, /you have 0[45]:\d\d to book your tickets/);
    assert.equal(called.tones, 2, 'two tones');
    const blinking = await titlesOver(page, 2_500);
    assert.ok(blinking.includes('● Your turn!') && blinking.some((t) => t.startsWith('Book:')), `the title blinks: ${blinking}`);

    // Looked at again: the title stays the page's own.
    await page.evaluate(() => window.__setHidden(false));
    await pause(1_200);
    const settled = await titlesOver(page, 2_500);
    assert.ok(settled.length === 1 && settled[0].startsWith('Book:'), `the title stopped blinking: ${settled}`);

    assert.deepEqual(seen.polls, [], 'no poll while the stream was live: the admission was pushed');
    await bookOneGa(page);
  });
});

test('a buyer whose stream is refused polls instead, is admitted and books', { timeout: TEST_TIMEOUT_MS }, async () => {
  const event = await createEvent('stream refused', {
    waitingRoom: { ...waitingRoom(600), paused: true },
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1000, capacity: 10 }],
  });

  await withPage('queue-stream-refused', async (page) => {
    await refuseStreams(page);
    const seen = queueRequests(page);
    await page.goto(`${GATEWAY}/#/events/${event.id}`);
    await page.click(testid('join-queue'));
    await waitForState(page, 'waiting');
    await page.waitForSelector(`${testid('queue-view')}[data-live="poll"]`);
    await until(() => seen.polls.length > 0, 'a poll while waiting');
    await waitForState(page, 'waiting');
    await setWaitingRoom(event.id, { paused: false });
    await page.waitForSelector(testid('countdown'), { timeout: 20_000 });
    assert.equal(seen.streams.length, 1, `one refusal is enough to poll: ${seen.streams}`);
    assert.ok(seen.polls.length >= 2, `the page polled until admitted: ${seen.polls.length} polls`);
    await bookOneGa(page);
  });

  // A stream that cannot even connect (cut by a proxy, say) is given up the same way.
  const second = await createEvent('stream cut', {
    waitingRoom: { ...waitingRoom(600), paused: true },
    tiers: [{ code: 'GA', name: 'General admission', price_cents: 1000, capacity: 10 }],
  });
  await withPage('queue-stream-cut', async (page) => {
    await page.route(STREAMS, (route) => route.abort('connectionreset'));
    const seen = queueRequests(page);
    await page.goto(`${GATEWAY}/#/queue/${second.id}`);
    await waitForState(page, 'waiting');
    await page.waitForSelector(`${testid('queue-view')}[data-live="poll"]`);
    await until(() => seen.polls.length > 0, 'a poll while waiting');
    await waitForState(page, 'waiting');
    await setWaitingRoom(second.id, { paused: false });
    await page.waitForSelector(testid('countdown'), { timeout: 20_000 });
    assert.equal(seen.streams.length, 1, `no reconnecting to a broken stream: ${seen.streams}`);
    assert.ok(seen.polls.length >= 2, `the page polled until admitted: ${seen.polls.length} polls`);
    await bookOneGa(page);
  });
});

// ---- the operator's live view ----

async function live(eventId, since) {
  const { status, body, text } = await call('GET', `/api/admin/events/${eventId}/live${since ? `?since=${encodeURIComponent(since)}` : ''}`, { bearer: ADMIN_TOKEN });
  assert.equal(status, 200, `the live view's samples: ${text}`);
  return body;
}

/** Polls the API until `check(answer)` holds (the worker samples once a second). */
async function liveUntil(eventId, check, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  let answer = await live(eventId);
  while (!check(answer)) {
    assert.ok(Date.now() < deadline, `${what} within ${timeoutMs} ms (last sample: ${JSON.stringify(answer.samples.at(-1))})`);
    await pause(500);
    answer = await live(eventId);
  }
  return answer;
}

const chartLatest = (page, chart) => page.textContent(`${testid(chart)} .chart-latest`);

test('the operator watches the sale live: charts of the last minutes, and projections that agree with them', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Two buyers at most book at once, so the line stops with people in it.
  const event = await createEvent('live', {
    waitingRoom: { ...waitingRoom(600), max_active: 2 },
    tiers: [
      { code: 'GA', name: 'General admission', price_cents: 1000, capacity: 10 },
      { code: 'VIP', name: 'VIP', price_cents: 5000, capacity: 4 },
    ],
  });
  const unknown = await call('GET', `/api/admin/events/${randomUUID()}/live`, { bearer: ADMIN_TOKEN });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body?.error?.code, 'event_not_found');
  assert.equal((await call('GET', `/api/admin/events/${event.id}/live`)).status, 401);
  // Sampled before anyone comes: every admission and booking below falls within the charts.
  await liveUntil(event.id, (answer) => answer.samples.length > 0, 'a first sample');

  const buyers = [];
  for (let i = 0; i < 5; i += 1) buyers.push(await joinQueue(event.id, `live-${i}-${randomUUID()}`));
  // The two who stay in line poll as their pages would.
  let polling = true;
  const keepPolling = (async () => {
    while (polling) {
      for (const buyer of buyers.slice(3)) await call('GET', `/api/queue/${buyer.queue_id}`);
      await pause(2_000);
    }
  })();

  try {
    const first = await waitUntilAdmitted(buyers[0]);
    await waitUntilAdmitted(buyers[1]);
    const booked = await call('POST', `${await bookingBase()}/api/bookings`, {
      bearer: first.token,
      headers: { 'Idempotency-Key': randomUUID() },
      body: { event_id: event.id, tiers: { GA: 3 }, buyer_email: 'live@example.com' },
    });
    assert.equal(booked.status, 201, `three GA tickets booked: ${booked.text}`);
    // One booked, so one more is let in: three admitted, two booking, two waiting, 7 GA left.
    await waitUntilAdmitted(buyers[2]);
    const answer = await liveUntil(
      event.id,
      ({ samples }) => samples.at(-1)?.waiting === 2 && samples.at(-1).active === 2 && samples.at(-1).tiers?.find((t) => t.code === 'GA')?.available === 7,
      'a sample of the line as the test drove it',
    );
    const newest = answer.samples.at(-1);
    assert.equal(newest.admitted_total, 3);
    assert.equal(newest.booked_total, 1);
    assert.equal(newest.tiers.find((t) => t.code === 'VIP')?.available, 4);
    assert.ok(answer.samples.some((s) => s.booking_p95_ms != null), 'the booking was timed in some sample');
    const later = await live(event.id, newest.id);
    assert.ok(later.samples.every((s) => s.t_ms > newest.t_ms), 'since= answers only newer samples');

    await withPage('operator-live', async (page) => {
      await page.addInitScript(backgroundTabSpies);
      const asked = [];
      page.on('request', (request) => /\/api\/admin\/events\/[^/]+\/live$/.test(new URL(request.url()).pathname) && asked.push(request.url()));
      await page.goto(`${GATEWAY}/admin.html`);
      await page.fill(testid('admin-token'), ADMIN_TOKEN);
      await page.click(testid('admin-login'));
      await page.selectOption(testid('admin-event-select'), event.id);
      await page.waitForFunction(() => Number(document.getElementById('live')?.dataset.samples) >= 5, null, { timeout: 15_000 });
      await page.waitForFunction((sel) => /The line of 2\b/.test(document.querySelector(sel)?.textContent ?? ''), testid('projection-queue'), { timeout: 10_000 });
      // Rates need 10 s of samples: until then the page says it is too early to tell.
      await page.waitForFunction((sel) => /not selling/.test(document.querySelector(sel)?.textContent ?? ''), testid('projection-tier-VIP'), { timeout: 15_000 });

      assert.equal(await chartLatest(page, 'chart-waiting'), '2');
      assert.equal(await chartLatest(page, 'chart-active'), '2');
      const left = await page.textContent(`${testid('chart-tickets-left')} .chart-legend`);
      assert.match(left, /GA 7/);
      assert.match(left, /VIP 4/);
      const admissions = await page.textContent(`${testid('chart-admissions')} .chart-legend`);
      assert.ok(Number(/Admitted ([\d.,]+)/.exec(admissions)?.[1].replace(/,/g, '')) >= 3, `three admitted within the last minute: ${admissions}`);
      assert.match(admissions, /Set rate 600/);
      assert.ok(Number((await chartLatest(page, 'chart-bookings')).replace(/,/g, '')) >= 1, 'the booking within the last minute');
      for (const chart of ['chart-waiting', 'chart-admissions', 'chart-bookings', 'chart-tickets-left', 'chart-active', 'chart-booking-p95']) {
        const drawn = await page.$$eval(`${testid(chart)} path.chart-line`, (paths) => paths.map((p) => p.getAttribute('d')));
        assert.ok(drawn.length > 0 && drawn.every((d) => /^M/.test(d)), `${chart} draws its lines: ${drawn.map((d) => d.slice(0, 40))}`);
      }

      const projections = await page.textContent(testid('projections'));
      assert.match(await page.textContent(testid('projection-tier-GA')), /^GA has 7 tickets left/);
      assert.match(await page.textContent(testid('projection-tier-VIP')), /^VIP has 4 tickets left and is not selling\.$/);
      const { projections: projected } = await live(event.id);
      assert.equal(
        await page.textContent(testid('projection-unserved')),
        projected.likely_unserved > 0 ? `About ${projected.likely_unserved} ${projected.likely_unserved === 1 ? 'person' : 'people'} in line will likely not get tickets.` : 'Everyone in line will likely get tickets.',
        projections,
      );
      await page.screenshot({ path: path.join(OUTPUT, 'operator-live.png'), fullPage: true });

      // A sample a second keeps coming in.
      const before = Number(await page.getAttribute('#live', 'data-samples'));
      await page.waitForFunction((n) => Number(document.getElementById('live').dataset.samples) >= n + 2, before, { timeout: 5_000 });

      // Nothing is asked while the page is hidden; asking resumes when it is seen again.
      await page.evaluate(() => window.__setHidden(true));
      await pause(1_200);
      const whileHidden = asked.length;
      await pause(3_000);
      assert.equal(asked.length, whileHidden, 'no request while hidden');
      await page.evaluate(() => window.__setHidden(false));
      await pause(1_500);
      assert.ok(asked.length > whileHidden, 'requests again once visible');
      assert.ok(asked.slice(1).every((url) => new URL(url).searchParams.has('since')), 'after the first answer, only newer samples are asked for');

      // On a phone the charts stack in one column, within the screen.
      await page.setViewportSize({ width: 360, height: 800 });
      const lefts = await page.$$eval('.chart', (charts) => charts.map((c) => Math.round(c.getBoundingClientRect().left)));
      assert.equal(new Set(lefts).size, 1, `one column: ${lefts}`);
      assert.ok(await page.evaluate(() => document.scrollingElement.scrollWidth <= innerWidth), 'nothing wider than the phone');
      await page.screenshot({ path: path.join(OUTPUT, 'operator-live-phone.png'), fullPage: true });

      // Another choice stops the watching.
      await page.selectOption(testid('admin-event-select'), '');
      await pause(1_200);
      const stopped = asked.length;
      await pause(2_500);
      assert.equal(asked.length, stopped, 'no request once no event is chosen');
    }, { viewport: { width: 1280, height: 900 } });
  } finally {
    polling = false;
    await keepPolling;
  }
});

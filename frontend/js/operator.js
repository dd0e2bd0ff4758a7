// The operator page: watch a sale's waiting room live (figures, charts of the last 30
// minutes and projections, see live-view.js), tune its admission, create events.
// Admin calls carry the admin token from this tab's sessionStorage; a 401 asks for it again.

import { request, listEvents, getEvent, sleep, backoffMs } from './api.js';
import { h, fill, setText, announce } from './dom.js';
import { formatDateTime, formatMoney } from './format.js';
import { adminToken, rememberAdminToken, forgetAdminToken } from './visitor.js';
import { watchLive } from './live-view.js';

const STATS_REFRESH_MS = 2_000;
const $ = (id) => document.getElementById(id);

const ui = {
  login: $('login'),
  loginForm: $('login-form'),
  loginProblem: $('login-problem'),
  tokenInput: $('admin-token'),
  console: $('console'),
  select: $('admin-event-select'),
  eventsProblem: $('events-problem'),
  room: $('room'),
  roomState: $('room-state'),
  statsProblem: $('stats-problem'),
  tierAvailability: $('tier-availability'),
  pauseToggle: $('pause-toggle'),
  roomForm: $('room-form'),
  roomResult: $('room-result'),
  enabled: $('wr-enabled'),
  rate: $('admission-per-minute'),
  maxActive: $('max-active'),
  ttl: $('token-ttl'),
  headroom: $('headroom-pct'),
  holdOnAdmission: $('hold-on-admission'),
  createForm: $('create-form'),
  createProblem: $('create-problem'),
  createResult: $('create-result'),
  tierRows: $('tier-rows'),
};

const enc = encodeURIComponent;

/** An admin API call; a refused token sends the operator back to sign in. */
async function admin(path, options = {}) {
  try {
    return await request(path, { ...options, bearer: adminToken() ?? '' });
  } catch (err) {
    if (err.status === 401) signIn('That admin token was not accepted. Enter it again.');
    throw err;
  }
}

/** The error's words plus any details the server attached (e.g. which field). */
function explain(err) {
  const extra = Object.entries(err.details ?? {})
    .filter(([key]) => key !== 'code' && key !== 'message')
    .map(([key, value]) => `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return [err.message, ...extra].join(' — ');
}

// ---- signing in ----

function signIn(problem = '') {
  forgetAdminToken();
  watching?.abort();
  ui.console.hidden = true;
  ui.login.hidden = false;
  setText(ui.loginProblem, problem);
  ui.tokenInput.value = '';
  ui.tokenInput.focus();
}

ui.loginForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const token = ui.tokenInput.value.trim();
  if (!token) return;
  rememberAdminToken(token);
  openConsole();
});

$('sign-out').addEventListener('click', () => signIn());

function openConsole() {
  ui.login.hidden = true;
  ui.console.hidden = false;
  document.querySelector('h1').focus();
  loadEvents(location.hash.slice(1));
}

// ---- choosing an event ----

async function loadEvents(selectId) {
  setText(ui.eventsProblem, '');
  const events = [];
  try {
    // Every page: an operator must be able to reach any event, not just the first hundred.
    for (let page = 1; page <= 100; page += 1) {
      const result = await listEvents(page, 100);
      events.push(...(result.events ?? []));
      if (!result.has_next) break;
    }
  } catch (err) {
    setText(ui.eventsProblem, `Could not load events: ${explain(err)}`);
    fill(ui.select, h('option', { value: '' }, 'No events loaded'));
    return;
  }
  fill(
    ui.select,
    h('option', { value: '' }, events.length ? 'Choose an event' : 'No events yet'),
    events.map((event) => h('option', { value: event.id }, `${event.name} — ${formatDateTime(event.starts_at)}`)),
  );
  if (selectId && events.some((event) => event.id === selectId)) {
    ui.select.value = selectId;
    watch(selectId);
  }
}

ui.select.addEventListener('change', () => {
  const eventId = ui.select.value;
  history.replaceState(null, '', eventId ? `#${eventId}` : location.pathname);
  if (eventId) watch(eventId);
  else {
    watching?.abort();
    ui.room.hidden = true;
  }
});

// ---- watching one waiting room ----

let watching = null; // AbortController of the current stats loop
let room = null; // the latest WaitingRoom as the server reported it
let formRoom = null; // the WaitingRoom the settings form was filled from

function watch(eventId) {
  watching?.abort();
  const controller = new AbortController();
  watching = controller;
  const { signal } = controller;
  room = null;
  formRoom = null;
  ui.room.hidden = false;
  ui.room.dataset.eventId = eventId;
  setText(ui.roomResult, '');
  setText(ui.roomState, 'Loading…');
  watchLive(eventId, { admin, signal, root: $('live') });

  (async () => {
    let failures = 0;
    while (!signal.aborted) {
      try {
        const [current, event] = await Promise.all([
          admin(`/api/admin/events/${enc(eventId)}/waiting-room`, { signal }),
          getEvent(eventId, signal),
        ]);
        if (signal.aborted) return;
        failures = 0;
        setText(ui.statsProblem, '');
        showRoom(current);
        showAvailability(event);
        if (!formRoom) fillForm(current);
      } catch (err) {
        if (signal.aborted || err.status === 401) return;
        failures += 1;
        setText(ui.statsProblem, err.status === 404 ? 'This event no longer exists.' : `Connection lost, retrying… (${explain(err)})`);
        if (err.status === 404) return;
        await sleep(backoffMs(failures), signal);
        continue;
      }
      await sleep(STATS_REFRESH_MS, signal);
    }
  })().catch(() => {});
}

function showRoom(current) {
  room = current;
  const stats = current.stats ?? {};
  const number = (value) => (value == null ? '—' : Number(value).toLocaleString());
  setText($('stat-waiting'), number(stats.waiting));
  setText($('stat-admitted-last-minute'), number(stats.admitted_last_minute));
  setText($('stat-active'), number(stats.active));
  setText($('stat-booked'), number(stats.booked_total));
  setText($('stat-admitted-total'), number(stats.admitted_total));
  const state = !current.enabled ? 'Waiting room off: buyers are admitted at once.' : current.paused ? 'Paused: nobody is admitted.' : 'Admitting.';
  setText(
    ui.roomState,
    `${state} ${current.admission_per_minute} per minute, at most ${current.max_active} booking at once, ${current.token_ttl_s} s to book; ` +
      `admitted while wishes stay within the stock + ${current.headroom_pct ?? 10} %` +
      `${current.hold_on_admission ? ', choices reserved on admission' : ''}.`,
  );
  ui.pauseToggle.dataset.paused = String(Boolean(current.paused));
  setText(ui.pauseToggle, current.paused ? 'Resume admissions' : 'Pause admissions');
}

function showAvailability(event) {
  fill(
    ui.tierAvailability,
    (event.tiers ?? []).map((tier) =>
      h(
        'tr',
        null,
        h('th', { scope: 'row' }, `${tier.name} (${tier.code})`),
        h('td', null, formatMoney(tier.price_cents)),
        h('td', { testid: `admin-available-${tier.code}` }, `${tier.available} / ${tier.capacity}`),
      ),
    ),
  );
}

// The form is filled once per event and after each save, never by the 2 s refresh, so
// the refresh cannot overwrite what the operator is typing.
function fillForm(current) {
  formRoom = current;
  ui.enabled.checked = Boolean(current.enabled);
  ui.rate.value = current.admission_per_minute;
  ui.maxActive.value = current.max_active;
  ui.ttl.value = current.token_ttl_s;
  ui.headroom.value = current.headroom_pct ?? 10;
  ui.holdOnAdmission.checked = Boolean(current.hold_on_admission);
}

ui.roomForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const eventId = ui.room.dataset.eventId;
  if (!formRoom || !eventId) return;
  const wanted = {
    enabled: ui.enabled.checked,
    admission_per_minute: Number.parseInt(ui.rate.value, 10),
    max_active: Number.parseInt(ui.maxActive.value, 10),
    token_ttl_s: Number.parseInt(ui.ttl.value, 10),
    headroom_pct: Number.parseInt(ui.headroom.value, 10),
    hold_on_admission: ui.holdOnAdmission.checked,
  };
  const changed = Object.fromEntries(Object.entries(wanted).filter(([key, value]) => value !== formRoom[key]));
  if (Object.keys(changed).length === 0) {
    setText(ui.roomResult, 'Nothing changed.');
    return;
  }
  const button = e.submitter ?? ui.roomForm.querySelector('[type=submit]');
  button.disabled = true;
  setText(ui.roomResult, 'Saving…');
  try {
    const saved = await admin(`/api/admin/events/${enc(eventId)}/waiting-room`, { method: 'PUT', body: changed });
    fillForm({ ...formRoom, ...saved });
    if (room) showRoom({ ...room, ...saved });
    setText(ui.roomResult, 'Saved. Takes effect within a second.');
  } catch (err) {
    if (err.status !== 401) setText(ui.roomResult, `Not saved: ${explain(err)}`);
  } finally {
    button.disabled = false;
  }
});

ui.pauseToggle.addEventListener('click', async () => {
  const eventId = ui.room.dataset.eventId;
  if (!room || !eventId) return;
  const paused = !room.paused;
  ui.pauseToggle.disabled = true;
  try {
    const saved = await admin(`/api/admin/events/${enc(eventId)}/waiting-room`, { method: 'PUT', body: { paused } });
    showRoom({ ...room, ...saved });
    announce(saved.paused ? 'Admissions paused.' : 'Admissions resumed.');
  } catch (err) {
    if (err.status !== 401) setText(ui.roomResult, `Could not ${paused ? 'pause' : 'resume'}: ${explain(err)}`);
  } finally {
    ui.pauseToggle.disabled = false;
  }
});

// ---- creating an event ----

let tierRowCount = 0;

function addTierRow(defaults = {}) {
  tierRowCount += 1;
  const id = (field) => `tier-${tierRowCount}-${field}`;
  const field = (name, label, input) =>
    h('div', null, h('label', { for: id(name) }, label), h('input', { id: id(name), name, required: true, ...input }));
  const row = h(
    'div',
    { class: 'tier-editor' },
    field('code', 'Code', { type: 'text', maxLength: 32, pattern: '[A-Za-z0-9_-]+', value: defaults.code ?? '', autocapitalize: 'characters' }),
    field('name', 'Name', { type: 'text', maxLength: 100, value: defaults.name ?? '' }),
    field('price', 'Price ($)', { type: 'number', min: 0, step: 0.01, value: defaults.price ?? '' }),
    field('capacity', 'Tickets', { type: 'number', min: 1, step: 1, value: defaults.capacity ?? '' }),
    h('button', { type: 'button', class: 'remove-tier', onclick: () => { row.remove(); updateRemoveButtons(); } }, 'Remove tier'),
  );
  ui.tierRows.append(row);
  updateRemoveButtons();
  return row;
}

// An event needs at least one tier.
function updateRemoveButtons() {
  const buttons = ui.tierRows.querySelectorAll('.remove-tier');
  for (const button of buttons) button.disabled = buttons.length === 1;
}

$('add-tier').addEventListener('click', () => addTierRow().querySelector('input').focus());

const isoFromLocal = (value) => (value ? new Date(value).toISOString() : undefined);

ui.createForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  setText(ui.createProblem, '');
  setText(ui.createResult, '');
  const tiers = [...ui.tierRows.querySelectorAll('.tier-editor')].map((row) => {
    const value = (name) => row.querySelector(`[name=${name}]`).value.trim();
    return {
      code: value('code'),
      name: value('name'),
      price_cents: Math.round(Number(value('price')) * 100),
      capacity: Number.parseInt(value('capacity'), 10),
    };
  });
  const body = {
    name: $('create-name').value.trim(),
    venue_name: $('create-venue').value.trim(),
    starts_at: isoFromLocal($('create-starts-at').value),
    on_sale_at: isoFromLocal($('create-on-sale-at').value),
    waiting_room: {
      enabled: $('create-wr-enabled').checked,
      paused: $('create-wr-paused').checked,
      admission_per_minute: Number.parseInt($('create-wr-rate').value, 10),
      max_active: Number.parseInt($('create-wr-max-active').value, 10),
      token_ttl_s: Number.parseInt($('create-wr-ttl').value, 10),
      headroom_pct: Number.parseInt($('create-wr-headroom').value, 10),
      hold_on_admission: $('create-wr-hold').checked,
    },
    tiers,
  };
  const button = e.submitter ?? ui.createForm.querySelector('[type=submit]');
  button.disabled = true;
  try {
    const event = await admin('/api/admin/events', { method: 'POST', body });
    setText(ui.createResult, `Created “${event.name}”.`);
    history.replaceState(null, '', `#${event.id}`);
    await loadEvents(event.id);
  } catch (err) {
    if (err.status !== 401) setText(ui.createProblem, `Not created: ${explain(err)}`);
  } finally {
    button.disabled = false;
  }
});

// ---- start ----

addTierRow({ code: 'GA', name: 'General admission' });
if (adminToken()) openConsole();
else signIn();

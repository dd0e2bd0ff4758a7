// The waiting room: join once, then follow the place in line until admitted (→ booking
// form), expired or sold out: pushed over a stream where the browser and the path allow it,
// else polled at the pace the server asks for. This is the page tens of thousands of phones
// sit on, so it backs off hard whenever the servers struggle. A tab left in the background is
// called back at its turn (see turn-alert.js).
// While waiting, the buyer chooses tickets (the wish): the page tells, tier by tier, what is
// left for how many people ahead, and at the buyer's turn the booking form comes filled in.

import {
  getEvent,
  joinQueue,
  leaveQueue,
  leaveQueueAfterGrace,
  queueStatus,
  saveWish,
  serverNow,
  sleep,
  backoffMs,
} from '../api.js';
import { h, heading, fill, setText } from '../dom.js';
import { formatCount, formatMoney, formatWait, formatWaitRange, formatWhen } from '../format.js';
import {
  visitorId,
  queuePlace,
  rememberQueuePlace,
  forgetQueuePlace,
  entryToken,
  rememberEntryToken,
  rememberWish,
  buyerEmail,
  rememberBuyerEmail,
  startOver,
} from '../visitor.js';
import { navigate } from '../router.js';
import { errorNotice, describeError } from './error.js';
import { solveProof } from '../proof.js';
import { quantity, stepper } from '../stepper.js';
import { followQueue, streamSupported } from '../queue-stream.js';
import { armSound, askForNotifications, callBuyerBack, notificationsAskable } from '../turn-alert.js';

// Bounds on the server's poll_after_ms: never hammer, never look frozen.
const MIN_POLL_MS = 500;
const MAX_POLL_MS = 60_000;
const DEFAULT_POLL_MS = 3_000;
const DEFAULT_MAX_PER_BOOKING = 8;
// A closed tab leaves the line after this long, unless a poll (a reload) comes first.
const CLOSE_GRACE_S = 15;
// A pushed status may have been read before a choice saved just now reached the server (its
// message crossing the save's answer): for this long after a save it does not refill the picker.
const PUSH_LAG_MS = 2_000;

const WAIT_NOTES = {
  paused: 'The sale is paused; your wait grows until it resumes. You keep your place.',
  rate_lowered: 'Admissions were slowed down, so your wait grew. You keep your place.',
  slowed: 'Admissions are slowed for a moment so booking stays fast. You keep your place.',
  refusals: 'Some tickets have sold out and buyers ahead are finding less than they wanted, so the line moves slower. You keep your place.',
  stock_gate: 'People ahead are still booking, and some tickets may come back, so the line moves slower. You keep your place.',
  tiers_gone: 'The tickets most buyers chose have sold out, so the line moves only as the tickets still on sale find buyers and no wait can be promised. Choose from what is left to be let in at the usual pace. You keep your place.',
  beyond_stock: 'At the pace tickets are selling, the ones most buyers choose will likely be gone before your turn, so no wait can be promised. Choose from what is left to know where you stand. You keep your place.',
};

export async function show(main, { params: [eventId], signal, retry }) {
  const event = await getEvent(eventId, signal);
  const bookHash = `#/book/${encodeURIComponent(eventId)}`;

  const held = entryToken(eventId);
  if (held && Date.parse(held.expires_at) > serverNow()) {
    navigate(bookHash, { replace: true });
    return;
  }

  const ui = {
    state: h('p', { class: 'queue-state', role: 'status', 'aria-live': 'polite', testid: 'queue-state' }, 'Joining the queue…'),
    position: h('dd', { testid: 'queue-position' }, '—'),
    ahead: h('dd', { testid: 'queue-ahead' }, '—'),
    wait: h('dd', { testid: 'queue-wait' }, '—'),
    waitNote: h('p', { class: 'meta', testid: 'wait-note' }),
    heldOnly: h('p', { class: 'notice', testid: 'held-only', hidden: true }, 'Nothing is on sale right now, but some tickets are held by buyers and may come back. Keep your place.'),
    progress: h('progress', { id: 'queue-progress', max: 100, testid: 'progress' }),
    connection: h('p', { class: 'connection', role: 'status', testid: 'connection' }),
    actions: h('div', { class: 'actions' }),
  };
  const picker = wishPicker(event, eventId);
  const offer = notifyOffer();

  document.title = `In line: ${event.name} · Tickets`;
  // `data-live` on the root says how the place is followed: `stream` or `poll`.
  const root = h(
    'div',
    { class: 'queue-view', testid: 'queue-view' },
    heading(event.name),
    h('p', { class: 'meta' }, 'Waiting room'),
    ui.state,
    h(
      'dl',
      { class: 'figures' },
      h('div', null, h('dt', null, 'Your number'), ui.position),
      h('div', null, h('dt', null, 'People ahead'), ui.ahead),
      h('div', null, h('dt', null, 'Estimated wait'), ui.wait),
    ),
    ui.waitNote,
    h('label', { for: 'queue-progress' }, 'Progress in line'),
    ui.progress,
    ui.connection,
    ui.heldOnly,
    offer.section,
    picker.section,
    ui.actions,
    h('p', { class: 'meta' }, 'Keep this page open. When it is your turn you go to the booking form by yourself; reloading keeps your place.'),
  );
  fill(main, root);

  // Leaving the line stops following the place (and nothing under way may bring it back).
  const stay = new AbortController();
  const active = AbortSignal.any([signal, stay.signal]);
  picker.onSaved = (status) => render(status, queuePlace(eventId) ?? {});

  // A tab really closing frees the place after a grace; a reload polls (or opens its stream,
  // which reads the place as a poll does) before the grace ends.
  // bfcache (`persisted`) may bring the page back as it was, and route changes within the
  // app (to the booking form) are no pagehide and end this listener anyway.
  let lastState = null;
  const onPageHide = (e) => {
    const place = queuePlace(eventId);
    if (e.persisted || active.aborted || !place?.queue_id) return;
    if (lastState === 'waiting' || lastState === 'pre_queue') leaveQueueAfterGrace(place.queue_id, CLOSE_GRACE_S);
  };
  addEventListener('pagehide', onPageHide);
  signal.addEventListener('abort', () => removeEventListener('pagehide', onPageHide), { once: true });
  armSound(active);

  // Follows the place in the background: the page is usable now.
  waitInLine().catch((err) => {
    if (active.aborted) return;
    ui.state.dataset.state = 'error';
    lastState = 'error';
    picker.section.hidden = true;
    offer.section.hidden = true;
    setText(ui.state, 'We could not check your place in line.');
    setText(ui.connection, '');
    fill(ui.actions, errorNotice(describeError(err), retryButton()));
  });

  async function waitInLine() {
    let place = queuePlace(eventId);
    let failures = 0;
    // The solved challenge to join with, after a 428; kept across a lost answer (if the join
    // went through, the next one hears `reused` and solves again).
    let proof = null;
    // Once the stream failed, this page polls: polling is the way that always works, and a
    // stream refused (a full gateway, too many streams) would be refused again.
    let stream = streamSupported();
    if (!stream) root.dataset.live = 'poll';
    // When the last status came and the pace it asked for: a poll after a failed stream waits
    // for it, so a join whose stream is refused costs no more requests than polling alone.
    let takenAt = -Infinity;
    let pollMs = DEFAULT_POLL_MS;

    // Takes a status, polled or pushed, the same way; true when the wait is over.
    const take = (status, asked) => {
      failures = 0;
      takenAt = performance.now();
      pollMs = Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, Number(status.poll_after_ms) || DEFAULT_POLL_MS));
      setText(ui.connection, '');
      if (status.receipt) place.receipt = status.receipt;
      if (status.position != null && status.position > (place.first_position ?? 0)) {
        place.first_position = status.position;
      }
      rememberQueuePlace(eventId, place);
      render(status, place, asked);

      if (status.state === 'admitted' && status.token) {
        rememberEntryToken(eventId, status.token, status.token_expires_at);
        // The server's wish is the one admission counted on (and may have reserved).
        if (status.wish && Object.keys(status.wish).length) rememberWish(eventId, status.wish, status.wish_held === true);
        callBuyerBack({ eventName: event.name, expiresAt: status.token_expires_at });
        navigate(bookHash, { replace: true });
        return true;
      }
      return status.state === 'expired' || status.state === 'sold_out';
    };

    while (!active.aborted) {
      if (stream && place?.queue_id) {
        const outcome = await followQueue(place.queue_id, place.receipt, {
          signal: active,
          onStatus: (status) => {
            root.dataset.live = 'stream';
            return take(status, performance.now() - PUSH_LAG_MS);
          },
          onTrouble: () => setText(ui.connection, 'Connection lost, reconnecting…'),
        });
        if (outcome === 'over' || outcome === 'aborted') return;
        if (outcome === 'gone') {
          // As after a poll's 404: joining again gives the place back if it still exists.
          forgetQueuePlace(eventId);
          place = null;
          continue;
        }
        // The poll also tells what the stream could not (e.g. a 404).
        stream = false;
        root.dataset.live = 'poll';
        await nap(takenAt + pollMs - performance.now(), active);
        if (active.aborted) return;
      }

      let status;
      const asked = performance.now();
      try {
        if (place?.queue_id) {
          status = await queueStatus(place.queue_id, place.receipt, active);
        } else {
          status = await joinQueue(eventId, visitorId(), active, proof);
          proof = null;
          place = { queue_id: status.queue_id, first_position: null };
        }
      } catch (err) {
        if (active.aborted) return;
        if (err.status === 404 && place?.queue_id) {
          // The entry is gone (e.g. the server forgot it); joining with the same visitor
          // id gives the place back if it still exists.
          forgetQueuePlace(eventId);
          place = null;
          continue;
        }
        if (err.status === 428 && err.code === 'proof_required' && err.details?.challenge) {
          // Joins are coming fast: the gateway asks this browser for about a second of work.
          ui.state.dataset.state = 'checking';
          setText(ui.state, 'Checking your browser…');
          proof = await solveProof(err.details, active);
          continue;
        }
        if (err.status === 429) {
          const seconds = err.retryAfter ?? 5;
          setText(ui.connection, `The queue is very busy; checking again in ${seconds} s. You keep your place.`);
          await nap(seconds * 1000, active);
          continue;
        }
        if (err.transient) {
          failures += 1;
          setText(ui.connection, 'Connection lost, retrying…');
          await nap(backoffMs(failures), active);
          continue;
        }
        throw err;
      }

      if (active.aborted) return;
      if (take(status, asked)) return;
      // After a join, the stream takes over from here.
      if (stream) continue;
      await nap(pollMs, active);
    }
  }

  // `asked`: when the answer's request left, so a poll sent before a saved choice cannot
  // put the old choice back in the picker.
  function render(status, place, asked = performance.now()) {
    const { state, position } = status;
    const inLine = state === 'waiting' || state === 'pre_queue';
    lastState = state;
    ui.state.dataset.state = state;
    setText(ui.state, stateSentence(status, event));
    setText(ui.position, position != null ? String(position) : '—');
    setText(ui.ahead, position != null ? String(Math.max(0, position - 1)) : '—');
    setText(ui.wait, state === 'pre_queue' ? 'At opening' : state === 'waiting' ? waitText(status) : '—');
    setText(ui.waitNote, inLine ? WAIT_NOTES[status.wait_note] ?? '' : '');
    ui.heldOnly.hidden = !(inLine && status.held_only === true);
    offer.section.hidden = !(inLine && offer.askable());
    picker.render(status, asked);

    const progress = progressPercent(state, position, place.first_position);
    if (progress == null) ui.progress.removeAttribute('value');
    else ui.progress.value = progress;

    if (state === 'expired') {
      fill(
        ui.actions,
        h('button', { type: 'button', class: 'primary', testid: 'rejoin', onclick: () => { startOver(eventId); retry(); } }, 'Join again'),
      );
    } else if (state === 'sold_out') {
      fill(
        ui.actions,
        h('p', { class: 'notice', testid: 'sold-out' }, h('strong', null, 'Sold out.'), ' Every ticket has been sold.'),
        h('a', { class: 'button', href: '#/' }, 'Back to events'),
      );
    } else if (state === 'waiting' || state === 'pre_queue') {
      fill(
        ui.actions,
        h('button', { type: 'button', testid: 'leave', onclick: leaveLine }, 'Leave the line'),
      );
    } else {
      fill(ui.actions);
    }
  }

  // Gives the place up for good (its admission slot too), so the line moves for everyone behind.
  async function leaveLine() {
    const place = queuePlace(eventId);
    stay.abort();
    try {
      if (place?.queue_id) await leaveQueue(place.queue_id, signal);
    } catch (err) {
      if (signal.aborted) return;
      if (err.status !== 404) {
        fill(ui.actions, errorNotice(describeError(err), retryButton()));
        return;
      }
    }
    forgetQueuePlace(eventId);
    lastState = 'left';
    picker.section.hidden = true;
    offer.section.hidden = true;
    ui.heldOnly.hidden = true;
    setText(ui.waitNote, '');
    ui.state.dataset.state = 'left';
    setText(ui.state, 'You left the line; your place went to the people behind you.');
    setText(ui.connection, '');
    fill(
      ui.actions,
      h('button', { type: 'button', class: 'primary', testid: 'rejoin', onclick: () => { startOver(eventId); retry(); } }, 'Join again (at the back)'),
      h('a', { class: 'button', href: '#/' }, 'Back to events'),
    );
  }

  function retryButton() {
    return h('button', { type: 'button', onclick: () => retry() }, 'Try again');
  }
}

/**
 * "Notify me when it's my turn": offered only where notifications exist and the buyer has not
 * decided yet; permission is asked for only after this click (browsers ignore or penalise
 * asking unprompted). The same click prepares the turn's tones (see armSound).
 */
function notifyOffer() {
  const result = h('p', { class: 'meta', role: 'status', testid: 'notify-result' });
  const button = h('button', { type: 'button', testid: 'notify-me', onclick: ask }, "Notify me when it's my turn");
  const section = h('div', { class: 'notify', hidden: true }, button, result);
  let asked = false;

  async function ask() {
    button.disabled = true;
    const permission = await askForNotifications();
    button.disabled = false;
    // Dismissing the prompt leaves the question open: the offer stays.
    if (permission === 'default') return;
    asked = true;
    // Removed, not hidden: the button's display rule would outrank `hidden`.
    button.remove();
    setText(
      result,
      permission === 'granted'
        ? 'We will notify you when it is your turn. Keep this page open, in any tab.'
        : 'Notifications are off. Keep this page open: at your turn its tab beeps and its title blinks.',
    );
  }

  return {
    section,
    // After the answer, the section stays to say what it means.
    askable: () => asked || notificationsAskable(),
  };
}

function waitText(status) {
  return Array.isArray(status.estimated_wait_range_s)
    ? formatWaitRange(status.estimated_wait_range_s)
    : formatWait(status.estimated_wait_s);
}

/**
 * "Choose your tickets while you wait": quantities per tier, each with its live line from the
 * poll's `tiers`, and an e-mail kept in this browser. Saving sends the wish (PUT); the server's
 * `wish` fills the picker back on later polls and reloads, unless the buyer is changing it.
 */
function wishPicker(event, eventId) {
  const maxTotal = Number(event.max_per_booking) || DEFAULT_MAX_PER_BOOKING;
  const rows = new Map(); // code → {tier, input, minus, plus, line}
  let dirty = false; // edited since the last save: polls leave the inputs alone
  let savedAt = 0;
  let savedWish = {};
  let shortfallShown = false;

  const total = h('p', { class: 'meta', 'aria-live': 'polite', testid: 'wish-total' });
  const shortfall = h('div', { testid: 'wish-shortfall', hidden: true });
  const email = h('input', {
    type: 'email',
    id: 'wish-email',
    name: 'email',
    autocomplete: 'email',
    testid: 'wish-email',
    value: buyerEmail(),
    onchange: () => email.checkValidity() && rememberBuyerEmail(email.value.trim()),
  });
  const saveButton = h('button', { type: 'submit', class: 'primary', testid: 'wish-save' }, 'Save my choice');
  const result = h('p', { class: 'meta', role: 'status', testid: 'wish-result' });
  const formError = h('div', { class: 'form-error' });

  const picker = {
    onSaved: () => {},
    section: h(
      'section',
      { class: 'wish', 'aria-labelledby': 'wish-title', testid: 'wish', hidden: true },
      h('h2', { id: 'wish-title' }, 'Choose your tickets while you wait'),
      h('p', { class: 'meta' }, `Up to ${maxTotal} tickets. At your turn the booking form comes filled in with them; you can still change it there.`),
      shortfall,
      h(
        'form',
        { onsubmit: save },
        (event.tiers ?? []).map(tierRow),
        total,
        h('label', { for: 'wish-email' }, 'Email for your tickets (optional)'),
        email,
        h('p', { class: 'meta' }, 'Kept only in this browser, to fill in the booking form.'),
        formError,
        saveButton,
        result,
      ),
    ),
    render,
  };
  updateTotal();
  return picker;

  function tierRow(tier) {
    const id = `wish-${tier.code}`;
    const { input, minus, plus, element } = stepper({
      id,
      testid: `wish-qty-${tier.code}`,
      name: tier.name,
      limit: () => row.limit,
      changed: edited,
    });
    const line = h('span', { class: 'meta', testid: `tier-line-${tier.code}` });
    const row = { tier, input, minus, plus, line, limit: maxTotal };
    rows.set(tier.code, row);

    return h(
      'div',
      { class: 'tier-row' },
      h('label', { for: id }, h('span', { class: 'tier-name' }, tier.name), ` ${formatMoney(tier.price_cents)}`, line),
      element,
    );
  }

  function edited() {
    dirty = true;
    setText(result, '');
    updateTotal();
  }

  // Only the per-booking cap bounds the picker; whether the tickets can be had is the
  // server's to say (409), since stock moves while the buyer waits.
  function updateTotal() {
    const picked = chosen();
    const count = Object.values(picked).reduce((a, b) => a + b, 0);
    for (const [code, row] of rows) {
      const n = picked[code] ?? 0;
      row.limit = Math.max(0, maxTotal - (count - n));
      row.input.max = String(row.limit);
      row.minus.disabled = n <= 0;
      row.plus.disabled = n >= row.limit;
    }
    setText(total, count ? `Your choice: ${describe(picked)}` : 'No tickets chosen yet.');
  }

  function chosen() {
    const picked = {};
    for (const [code, { input }] of rows) {
      const n = quantity(input);
      if (n > 0) picked[code] = n;
    }
    return picked;
  }

  function describe(picked) {
    return Object.entries(picked)
      .map(([code, n]) => `${n} × ${rows.get(code)?.tier.name ?? code}`)
      .join(', ');
  }

  function render(status, asked) {
    const inLine = status.state === 'waiting' || status.state === 'pre_queue';
    picker.section.hidden = !inLine;
    if (!inLine) return;

    for (const live of status.tiers ?? []) {
      const row = rows.get(live.code);
      if (row) setText(row.line, tierLine(row.tier.name, live, status.state));
    }
    // An answer to a request sent before the last save may know only the old choice.
    if (asked < savedAt && !sameWish(status.wish, savedWish)) return;
    if (!dirty) {
      for (const [code, row] of rows) row.input.value = String(status.wish?.[code] ?? 0);
      updateTotal();
    }

    const missing = Array.isArray(status.wish_shortfall) ? status.wish_shortfall : [];
    shortfall.hidden = missing.length === 0;
    if (missing.length) {
      fill(
        shortfall,
        h(
          'div',
          { class: 'notice error', role: 'alert' },
          h('p', null, h('strong', null, 'Your choice can no longer be met: change it to keep your chance.'), ' You keep your place, but you will not be let in with this choice.'),
          shortfallList(missing),
        ),
      );
      // Once per shortfall, not at every poll: the buyer may be typing elsewhere.
      if (!shortfallShown) (rows.get(missing[0].tier) ?? rows.values().next().value)?.input.focus();
    }
    shortfallShown = missing.length > 0;
  }

  function shortfallList(missing) {
    return h(
      'ul',
      { class: 'shortfall' },
      missing.map((s) =>
        h('li', null, `${rows.get(s.tier)?.tier.name ?? s.tier}: you asked for ${s.requested}; not that many are left${s.available > 0 ? ` (${formatCount(s.available)} on sale now)` : ''}.`),
      ),
    );
  }

  async function save(e) {
    e.preventDefault();
    fill(formError);
    setText(result, '');
    if (!email.checkValidity()) {
      fill(formError, errorNotice('This email address does not look right.'));
      email.focus();
      return;
    }
    rememberBuyerEmail(email.value.trim());
    const picked = chosen();
    if (Object.values(picked).reduce((a, b) => a + b, 0) > maxTotal) {
      fill(formError, errorNotice(`You can choose at most ${maxTotal} tickets in all.`));
      return;
    }
    const place = queuePlace(eventId);
    if (!place?.queue_id) {
      fill(formError, errorNotice('You are not in line yet. Try again in a moment.'));
      return;
    }

    saveButton.disabled = true;
    setText(saveButton, 'Saving…');
    try {
      const status = await saveWish(place.queue_id, picked);
      savedAt = performance.now();
      savedWish = picked;
      dirty = false;
      rememberWish(eventId, picked);
      picker.onSaved(status);
      setText(result, Object.keys(picked).length ? `Saved: ${describe(picked)}.` : 'Saved: no tickets chosen.');
    } catch (err) {
      fill(formError, saveError(err));
    } finally {
      saveButton.disabled = false;
      setText(saveButton, 'Save my choice');
    }
  }

  function saveError(err) {
    if (err.code === 'insufficient_inventory') {
      const missing = Array.isArray(err.details.shortfall) ? err.details.shortfall : [];
      return h(
        'div',
        { class: 'notice error', role: 'alert' },
        h('p', { testid: 'error-message' }, 'Not enough tickets are left for that choice. It was not saved; choose fewer or another tier.'),
        shortfallList(missing),
      );
    }
    if (err.code === 'not_waiting') return errorNotice('Your wait is over, so your choice can no longer change here.');
    if (err.status === 422) return errorNotice(`That choice is not possible: ${err.message}`);
    if (err.status === 404) return errorNotice('Your place in line was not found; the page is checking it again. Save once more in a moment.');
    if (err.status === 429) return errorNotice(`Too many changes at once. Try again in ${Math.max(1, Math.ceil(err.retryAfter ?? 5))} seconds.`);
    return errorNotice(`${describeError(err)} Your choice was not saved.`);
  }
}

function sameWish(a, b) {
  const entries = (wish) => Object.entries(wish ?? {}).filter(([, n]) => n > 0).sort(([x], [y]) => (x < y ? -1 : 1));
  return JSON.stringify(entries(a)) === JSON.stringify(entries(b));
}

/** One tier's outlook in plain words; never promises tickets that may not be there. */
function tierLine(name, live, state) {
  const left = Math.max(0, Number(live.available) || 0);
  const held = Math.max(0, Number(live.held) || 0);
  const wanted = Math.max(0, Number(live.wanted_ahead) || 0);
  if (left + held === 0) return 'Sold out';
  if (left === 0) return `None on sale right now; ${formatCount(held)} held by buyers (they may come back)`;
  const who = state === 'pre_queue' ? 'in the pre-queue' : 'ahead of you';
  const people = wanted === 1 ? '1 person' : `${formatCount(wanted)} people`;
  return [
    `About ${formatCount(left)} left`,
    wanted > 0 ? ` for ${people} ${who} who want ${name}` : '',
    held > 0 ? `; ${formatCount(held)} more held by buyers` : '',
  ].join('');
}

function stateSentence(status, event) {
  switch (status.state) {
    case 'pre_queue':
      return `The sale opens at ${formatWhen(event.on_sale_at) || 'the announced time'}; you are in the pre-queue. Everyone who joins before then gets a place drawn at random, shown when the sale opens, and everyone who comes later stands behind you.`;
    case 'waiting':
      return status.position != null ? `You are number ${status.position} in line.` : 'You are in line.';
    case 'admitted':
      return 'It is your turn! Taking you to the booking form…';
    case 'expired':
      return 'Your place expired.';
    case 'sold_out':
      return 'Sold out.';
    default:
      return 'You are in line.';
  }
}

/** How far the position has dropped since it was first seen, 0–100; null when unknown. */
function progressPercent(state, position, firstPosition) {
  if (state === 'admitted') return 100;
  if (state !== 'waiting' || position == null || !firstPosition) return null;
  return Math.round(((firstPosition - position) / firstPosition) * 100);
}

/**
 * Sleeps, but wakes early when the page comes back to the foreground: a phone that was
 * locked should show its real place at once, not after a throttled timer.
 */
function nap(ms, signal) {
  const woken = new AbortController();
  const onVisible = () => document.visibilityState === 'visible' && woken.abort();
  document.addEventListener('visibilitychange', onVisible);
  const stop = () => woken.abort();
  signal.addEventListener('abort', stop, { once: true });
  return sleep(ms, woken.signal)
    .catch(() => {})
    .finally(() => {
      document.removeEventListener('visibilitychange', onVisible);
      signal.removeEventListener('abort', stop);
    });
}

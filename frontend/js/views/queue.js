// The waiting room: join once, then poll the place in line at the pace the server asks
// for, until admitted (→ booking form), expired or sold out. This is the page tens of
// thousands of phones sit on, so it backs off hard whenever the servers struggle.

import { getEvent, joinQueue, leaveQueue, queueStatus, serverNow, sleep, backoffMs } from '../api.js';
import { h, heading, fill, setText } from '../dom.js';
import { formatWait, formatWhen } from '../format.js';
import {
  visitorId,
  queuePlace,
  rememberQueuePlace,
  forgetQueuePlace,
  entryToken,
  rememberEntryToken,
  startOver,
} from '../visitor.js';
import { navigate } from '../router.js';
import { errorNotice, describeError } from './error.js';
import { solveProof } from '../proof.js';

// Bounds on the server's poll_after_ms: never hammer, never look frozen.
const MIN_POLL_MS = 500;
const MAX_POLL_MS = 60_000;
const DEFAULT_POLL_MS = 3_000;

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
    progress: h('progress', { id: 'queue-progress', max: 100, testid: 'progress' }),
    connection: h('p', { class: 'connection', role: 'status', testid: 'connection' }),
    actions: h('div', { class: 'actions' }),
  };

  document.title = `In line: ${event.name} · Tickets`;
  fill(
    main,
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
    h('label', { for: 'queue-progress' }, 'Progress in line'),
    ui.progress,
    ui.connection,
    ui.actions,
    h('p', { class: 'meta' }, 'Keep this page open. When it is your turn you go to the booking form by yourself; reloading keeps your place.'),
  );

  // Leaving the line stops the polling (and nothing it was doing may bring the place back).
  const stay = new AbortController();
  const active = AbortSignal.any([signal, stay.signal]);

  // Polls in the background: the page is usable now.
  waitInLine().catch((err) => {
    if (active.aborted) return;
    ui.state.dataset.state = 'error';
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

    while (!active.aborted) {
      let status;
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
      failures = 0;
      setText(ui.connection, '');
      if (status.receipt) place.receipt = status.receipt;
      if (status.position != null && status.position > (place.first_position ?? 0)) {
        place.first_position = status.position;
      }
      rememberQueuePlace(eventId, place);
      render(status, place);

      if (status.state === 'admitted' && status.token) {
        rememberEntryToken(eventId, status.token, status.token_expires_at);
        navigate(bookHash, { replace: true });
        return;
      }
      if (status.state === 'expired' || status.state === 'sold_out') return;

      const pollMs = Number(status.poll_after_ms) || DEFAULT_POLL_MS;
      await nap(Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, pollMs)), active);
    }
  }

  function render(status, place) {
    const { state, position } = status;
    ui.state.dataset.state = state;
    setText(ui.state, stateSentence(status, event));
    setText(ui.position, position != null ? String(position) : '—');
    setText(ui.ahead, position != null ? String(Math.max(0, position - 1)) : '—');
    setText(
      ui.wait,
      state === 'pre_queue' ? 'At opening' : state === 'waiting' ? formatWait(status.estimated_wait_s) : '—',
    );

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

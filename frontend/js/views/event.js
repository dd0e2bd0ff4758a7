// One event: its tiers with live availability, and the way into the queue.

import { getEvent, joinQueue, serverNow, sleep, backoffMs } from '../api.js';
import { h, heading, fill, setText, announce } from '../dom.js';
import { formatDateTime, formatMoney, isSoldOut } from '../format.js';
import { visitorId, entryToken, rememberEntryToken, rememberQueuePlace } from '../visitor.js';
import { navigate } from '../router.js';
import { errorNotice, describeError } from './error.js';

const REFRESH_MS = 5_000;

export async function show(main, { params: [eventId], signal }) {
  let event = await getEvent(eventId, signal);

  const rows = new Map(); // tier code → its "available" cell
  const action = h('div', { class: 'action' });
  const refreshNote = h('p', { class: 'meta', 'aria-live': 'polite' });

  document.title = `${event.name} · Tickets`;
  fill(
    main,
    heading(event.name),
    h(
      'p',
      { class: 'meta' },
      h('time', { dateTime: event.starts_at }, formatDateTime(event.starts_at)),
      event.venue?.name ? ` · ${event.venue.name}` : '',
    ),
    onSaleNote(event),
    tierTable(event, rows),
    refreshNote,
    action,
  );
  renderAction(event);

  function renderAction(current) {
    const token = entryToken(eventId);
    if (token && Date.parse(token.expires_at) > serverNow()) {
      fill(action, h('a', { class: 'button primary', href: `#/book/${encodeURIComponent(eventId)}`, testid: 'continue-booking' }, 'Continue to booking'));
    } else if (isSoldOut(current)) {
      fill(
        action,
        h('p', { class: 'notice', testid: 'sold-out' }, h('strong', null, 'Sold out.'), ' Every ticket for this event has been sold.'),
        h('a', { class: 'button', href: '#/' }, 'Back to events'),
      );
    } else if (current.waiting_room?.enabled) {
      fill(
        action,
        h('button', { type: 'button', class: 'primary', testid: 'join-queue', onclick: () => navigate(`#/queue/${encodeURIComponent(eventId)}`) }, 'Join the queue'),
        h('p', { class: 'meta' }, 'This sale has a waiting room: you will get a place in line, then a few minutes to book.'),
      );
    } else {
      const button = h('button', { type: 'button', class: 'primary', testid: 'join-queue', onclick: getTickets }, 'Get tickets');
      fill(action, button);
    }
  }

  // Without a waiting room the join admits at once; go straight to the form.
  async function getTickets(e) {
    const button = e.currentTarget;
    button.disabled = true;
    setText(button, 'Getting tickets…');
    try {
      const status = await joinQueue(eventId, visitorId(), signal);
      rememberQueuePlace(eventId, { queue_id: status.queue_id, first_position: status.position ?? null });
      if (status.state === 'admitted' && status.token) {
        rememberEntryToken(eventId, status.token, status.token_expires_at);
        navigate(`#/book/${encodeURIComponent(eventId)}`);
      } else {
        navigate(`#/queue/${encodeURIComponent(eventId)}`);
      }
    } catch (err) {
      if (signal.aborted) return;
      button.disabled = false;
      setText(button, 'Get tickets');
      action.querySelector('.notice.error')?.remove();
      action.append(errorNotice(err.status === 429 ? `Too many people are trying at once. Try again in ${err.retryAfter ?? 5} seconds.` : describeError(err)));
    }
  }

  // Availability is live; keep it fresh while the page is open.
  (async () => {
    let failures = 0;
    while (!signal.aborted) {
      await sleep(failures ? backoffMs(failures) : REFRESH_MS, signal);
      try {
        const fresh = await getEvent(eventId, signal);
        failures = 0;
        setText(refreshNote, '');
        const wasSoldOut = isSoldOut(event);
        event = fresh;
        for (const tier of fresh.tiers ?? []) {
          const cell = rows.get(tier.code);
          if (cell) setText(cell, availabilityText(tier));
        }
        if (isSoldOut(fresh) !== wasSoldOut) {
          renderAction(fresh);
          announce(isSoldOut(fresh) ? 'This event is now sold out.' : 'Tickets are available again.');
        }
      } catch (err) {
        if (signal.aborted) return;
        failures += 1;
        setText(refreshNote, 'Could not refresh availability; retrying…');
      }
    }
  })().catch(() => {});
}

function onSaleNote(event) {
  const opens = Date.parse(event.on_sale_at);
  if (Number.isNaN(opens) || opens <= serverNow()) return null;
  return h('p', { class: 'notice' }, `On sale from ${formatDateTime(event.on_sale_at)}.`);
}

const availabilityText = (tier) => (tier.available > 0 ? `${tier.available} left` : 'Sold out');

function tierTable(event, rows) {
  return h(
    'table',
    { class: 'tiers' },
    h('caption', null, 'Tickets'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Tier'), h('th', { scope: 'col' }, 'Price'), h('th', { scope: 'col' }, 'Available'))),
    h(
      'tbody',
      null,
      (event.tiers ?? []).map((tier) => {
        const cell = h('td', { testid: `available-${tier.code}` }, availabilityText(tier));
        rows.set(tier.code, cell);
        return h('tr', null, h('th', { scope: 'row' }, tier.name), h('td', null, formatMoney(tier.price_cents)), cell);
      }),
    ),
  );
}

// The list of events on sale, ten to a page.

import { listEvents } from '../api.js';
import { h, heading, fill } from '../dom.js';
import { formatDateTime, formatPriceRange, isSoldOut } from '../format.js';

const PAGE_SIZE = 10;

export async function show(main, { query, signal }) {
  const page = Math.max(1, parseInt(query.get('page') ?? '1', 10) || 1);
  const result = await listEvents(page, PAGE_SIZE, signal);
  const events = result.events ?? [];

  document.title = 'Events · Tickets';
  fill(
    main,
    heading('Events'),
    events.length === 0
      ? h('p', { class: 'notice' }, page > 1 ? 'No more events.' : 'No events are on sale right now.')
      : h('ul', { class: 'cards' }, events.map(eventCard)),
    pager(page, result.has_next),
  );
}

function eventCard(event) {
  const soldOut = isSoldOut(event);
  return h(
    'li',
    { class: 'card' },
    h('h2', null, h('a', { href: `#/events/${encodeURIComponent(event.id)}`, testid: 'event-link' }, event.name)),
    h(
      'p',
      { class: 'meta' },
      h('time', { dateTime: event.starts_at }, formatDateTime(event.starts_at)),
      event.venue?.name ? ` · ${event.venue.name}` : '',
    ),
    h(
      'p',
      { class: 'meta' },
      formatPriceRange(event.tiers),
      soldOut ? h('span', { class: 'badge', testid: 'sold-out' }, 'Sold out') : null,
    ),
  );
}

function pager(page, hasNext) {
  if (page <= 1 && !hasNext) return null;
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    page > 1 ? h('a', { class: 'button', href: `#/?page=${page - 1}`, rel: 'prev' }, '← Previous') : h('span'),
    h('span', { class: 'meta' }, `Page ${page}`),
    hasNext ? h('a', { class: 'button', href: `#/?page=${page + 1}`, rel: 'next' }, 'Next →') : h('span'),
  );
}

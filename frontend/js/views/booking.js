// A booking: its tickets, a link that opens it again anywhere, and cancelling.
// The access code is the key: from `?code=` in the link, or remembered from booking.

import { getBooking, cancelBooking, getEvent } from '../api.js';
import { h, heading, fill, setText, announce } from '../dom.js';
import { formatDateTime, formatMoney } from '../format.js';
import { accessCode, rememberAccessCode } from '../visitor.js';
import { navigate } from '../router.js';
import { errorNotice, describeError } from './error.js';

export async function show(main, { params: [bookingId], query, signal }) {
  const fromLink = query.get('code');
  const code = fromLink || accessCode(bookingId);
  document.title = 'Your booking · Tickets';

  if (!code) {
    askForCode(main, bookingId);
    return;
  }

  let booking;
  try {
    booking = await getBooking(bookingId, code, signal);
  } catch (err) {
    if (err.status === 401) {
      askForCode(main, bookingId, 'That access code does not open this booking.');
      return;
    }
    if (err.status === 404) {
      fill(
        main,
        heading('Booking not found'),
        h('p', { class: 'notice', testid: 'error-message' }, 'There is no booking with this number. Check the link you used.'),
        h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/' }, 'Back to events')),
      );
      return;
    }
    throw err;
  }
  // Only a code that worked replaces the remembered one.
  if (fromLink) rememberAccessCode(bookingId, fromLink);

  const status = h('strong', { testid: 'booking-status' });
  const eventLine = h('p', { class: 'meta' });
  const actions = h('div', { class: 'actions' });
  const shareUrl = `${location.origin}${location.pathname}#/booking/${encodeURIComponent(bookingId)}?code=${encodeURIComponent(code)}`;

  fill(
    main,
    heading('Your booking'),
    eventLine,
    h(
      'dl',
      { class: 'summary' },
      h('div', null, h('dt', null, 'Status'), h('dd', { role: 'status', 'aria-live': 'polite' }, status)),
      h('div', null, h('dt', null, 'Email'), h('dd', { testid: 'booking-email' }, booking.buyer_email)),
      h('div', null, h('dt', null, 'Booked'), h('dd', null, formatDateTime(booking.created_at))),
      h('div', null, h('dt', null, 'Total'), h('dd', { testid: 'booking-total' }, formatMoney(booking.total_cents))),
      h('div', null, h('dt', null, 'Booking number'), h('dd', { class: 'mono' }, booking.booking_id)),
    ),
    h('h2', null, 'Tickets'),
    h(
      'ul',
      { class: 'tickets' },
      (booking.tickets ?? []).map((t) =>
        h('li', { testid: 'ticket' }, h('span', { class: 'tier-name' }, t.tier), ` · ticket number ${t.number}`),
      ),
    ),
    h('h2', null, 'Link to this booking'),
    h('p', { class: 'meta' }, 'Keep this link to see or cancel your booking later. Anyone who has it can do the same, so share it with care.'),
    shareLink(shareUrl),
    actions,
  );
  render(booking);

  // The event's name reads better than its id; the booking stands without it.
  getEvent(booking.event_id, signal)
    .then((event) => fill(eventLine, h('a', { href: `#/events/${encodeURIComponent(event.id)}` }, event.name), ` · ${formatDateTime(event.starts_at)}`))
    .catch(() => {});

  function render(current) {
    booking = current;
    const cancelled = current.status === 'cancelled';
    setText(status, cancelled ? 'Cancelled' : current.status === 'confirmed' ? 'Confirmed' : String(current.status));
    status.dataset.status = current.status;
    main.querySelector('.tickets')?.classList.toggle('void', cancelled);
    if (cancelled) {
      fill(actions, h('p', { class: 'notice' }, 'This booking is cancelled; its tickets went back on sale.'), h('a', { class: 'button', href: '#/' }, 'Back to events'));
    } else {
      fill(actions, h('button', { type: 'button', class: 'danger', testid: 'cancel-booking', onclick: confirmCancel }, 'Cancel booking'));
    }
  }

  // An in-page confirmation rather than window.confirm: it can be styled, read and
  // reached by keyboard like the rest of the page.
  function confirmCancel() {
    const count = booking.tickets?.length ?? 0;
    const yes = h('button', { type: 'button', class: 'danger', testid: 'confirm-cancel', onclick: doCancel }, 'Yes, cancel booking');
    fill(
      actions,
      h(
        'div',
        { class: 'confirm', role: 'group', 'aria-labelledby': 'confirm-cancel-text' },
        h('p', { id: 'confirm-cancel-text' }, `Cancel this booking of ${count} ticket${count === 1 ? '' : 's'}? This cannot be undone.`),
        h('div', { class: 'actions' }, yes, h('button', { type: 'button', onclick: () => render(booking) }, 'Keep booking')),
      ),
    );
    yes.focus();
  }

  async function doCancel(e) {
    e.currentTarget.disabled = true;
    setText(e.currentTarget, 'Cancelling…');
    try {
      render(await cancelBooking(bookingId, code, signal));
      announce('Your booking is cancelled.');
    } catch (err) {
      if (signal.aborted) return;
      fill(
        actions,
        errorNotice(
          `Cancelling did not go through: ${describeError(err)}`,
          h('button', { type: 'button', class: 'danger', testid: 'cancel-booking', onclick: confirmCancel }, 'Try cancelling again'),
        ),
      );
    }
  }
}

function shareLink(url) {
  const field = h('input', { type: 'text', id: 'share-link', readOnly: true, value: url, testid: 'share-link', onfocus: (e) => e.target.select() });
  const copied = h('span', { class: 'meta', role: 'status' });
  const copy = h(
    'button',
    {
      type: 'button',
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(url);
          setText(copied, 'Copied.');
        } catch {
          field.focus();
          setText(copied, 'Select the link and copy it.');
        }
      },
    },
    'Copy link',
  );
  return h('div', { class: 'share' }, h('label', { for: 'share-link', class: 'visually-hidden' }, 'Link to this booking'), field, copy, copied);
}

function askForCode(main, bookingId, problem) {
  const input = h('input', { type: 'text', id: 'access-code', required: true, autocomplete: 'off', testid: 'access-code' });
  fill(
    main,
    heading('Open your booking'),
    problem ? errorNotice(problem) : h('p', null, 'Enter the access code of this booking. It is part of the link you got when you booked.'),
    h(
      'form',
      {
        onsubmit: (e) => {
          e.preventDefault();
          const code = input.value.trim();
          if (code) navigate(`#/booking/${encodeURIComponent(bookingId)}?code=${encodeURIComponent(code)}`);
        },
      },
      h('label', { for: 'access-code' }, 'Access code'),
      input,
      h('button', { type: 'submit', class: 'primary' }, 'Open booking'),
    ),
    h('p', null, h('a', { href: '#/' }, 'Back to events')),
  );
}

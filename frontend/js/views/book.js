// The booking form, open while the entry token lives: pick quantities, give an email,
// book. A retried submission reuses its Idempotency-Key, so a lost answer never books twice.
// The tickets chosen while waiting and the remembered e-mail fill it in: then one tap books.

import { getEvent, bookingUrl, createBooking, serverNow, sleep, randomId, pageAlive } from '../api.js';
import { h, heading, fill, setText, announce } from '../dom.js';
import { formatClock, formatMoney } from '../format.js';
import { entryToken, startOver, tokenClaims, rememberAccessCode, wish, buyerEmail } from '../visitor.js';
import { navigate } from '../router.js';
import { errorNotice, describeError } from './error.js';
import { quantity, stepper } from '../stepper.js';

const DEFAULT_MAX_PER_BOOKING = 8;
const AVAILABILITY_REFRESH_MS = 10_000;

export async function show(main, { params: [eventId], signal }) {
  // Asking for the booking service's address now surfaces a broken config before the
  // buyer fills in the form.
  let [event] = await Promise.all([getEvent(eventId, signal), bookingUrl(signal)]);
  const queueHash = `#/queue/${encodeURIComponent(eventId)}`;
  document.title = `Book: ${event.name} · Tickets`;

  const pass = entryToken(eventId);
  if (!pass?.token) {
    fill(
      main,
      heading(event.name),
      h('p', { class: 'notice' }, 'To book, first get a place in line. When it is your turn, you come back here.'),
      h('div', { class: 'actions' }, h('a', { class: 'button primary', href: queueHash, testid: 'rejoin' }, 'Join the queue')),
    );
    return;
  }
  if (Date.parse(pass.expires_at) <= serverNow()) {
    showTimeUp();
    return;
  }

  const claims = tokenClaims(pass.token);
  const maxTotal = Math.min(
    Number(event.max_per_booking) || DEFAULT_MAX_PER_BOOKING,
    Number(claims.max) || Infinity,
  );

  const tiers = new Map(); // code → {tier, input, minus, plus, note}
  const wished = wish(eventId);
  // Tickets admission already reserved for this buyer: not in the public `available`, but theirs.
  const mine = wished?.held ? wished.tiers ?? {} : {};
  const countdown = h('span', { role: 'timer', class: 'clock', testid: 'countdown' }, formatClock(Date.parse(pass.expires_at) - serverNow()));
  const total = h('p', { class: 'total', 'aria-live': 'polite', testid: 'total' });
  const email = h('input', { type: 'email', id: 'email', name: 'email', required: true, autocomplete: 'email', testid: 'email' });
  const submitButton = h('button', { type: 'submit', class: 'primary', testid: 'book-submit' }, 'Book tickets');
  const formError = h('div', { class: 'form-error' });
  const tapSummary = h('p', { testid: 'wish-summary' });
  const tapButton = h('button', { type: 'button', class: 'primary', testid: 'book-wish', onclick: () => form.requestSubmit() }, 'Book these tickets');
  const oneTap = h(
    'div',
    { class: 'one-tap', hidden: true },
    h('p', null, h('strong', null, wished?.held ? 'Your tickets are reserved for you.' : 'Your choice is ready.')),
    tapSummary,
    tapButton,
    h('p', { class: 'meta' }, 'Or change it in the form below.'),
  );

  const form = h(
    'form',
    { onsubmit: submit },
    h(
      'fieldset',
      null,
      h('legend', null, `Tickets (up to ${maxTotal} per booking)`),
      (event.tiers ?? []).map(tierRow),
    ),
    total,
    h('label', { for: 'email' }, 'Email for your tickets'),
    email,
    formError,
    submitButton,
  );

  fill(
    main,
    heading(event.name),
    h('p', { class: 'countdown' }, 'Time left to book: ', countdown),
    oneTap,
    form,
  );
  // Declared before prefill runs: updateLimits, which prefill calls, reads it.
  let offerOneTap = false;
  offerOneTap = prefill();
  email.addEventListener('input', updateLimits);
  updateLimits();

  // Fills the form from the wish and the remembered e-mail; one tap is offered only when the
  // whole wish still fits (what is left, the cap) and there is an e-mail to send it to.
  function prefill() {
    email.value = buyerEmail();
    const wanted = Object.entries(wished?.tiers ?? {}).filter(([code, n]) => tiers.has(code) && n > 0);
    for (const [code, n] of wanted) tiers.get(code).input.value = String(n);
    updateLimits();
    let fits = wanted.length > 0;
    for (const row of tiers.values()) {
      if (quantity(row.input) <= row.limit) continue;
      fits = false;
      row.input.value = String(row.limit);
      updateLimits();
    }
    return fits && email.value !== '' && email.checkValidity();
  }

  // ---- quantities ----

  function tierRow(tier) {
    const id = `qty-${tier.code}`;
    const { input, minus, plus, element } = stepper({
      id,
      testid: `qty-${tier.code}`,
      name: tier.name,
      limit: () => row.limit,
      changed: updateLimits,
    });
    const note = h('span', { class: 'meta' });
    const row = { tier, input, minus, plus, note, limit: 0 };
    tiers.set(tier.code, row);

    return h(
      'div',
      { class: 'tier-row' },
      h('label', { for: id }, h('span', { class: 'tier-name' }, tier.name), ' ', note),
      element,
    );
  }


  function chosen() {
    const picked = {};
    for (const [code, { input }] of tiers) {
      const n = quantity(input);
      if (n > 0) picked[code] = n;
    }
    return picked;
  }

  // Each tier is bounded by its availability and by what is left of the per-booking cap.
  function updateLimits() {
    const picked = chosen();
    const count = Object.values(picked).reduce((a, b) => a + b, 0);
    let cents = 0;
    for (const [code, row] of tiers) {
      const n = picked[code] ?? 0;
      cents += n * row.tier.price_cents;
      const held = Math.max(0, Number(mine[code]) || 0);
      const available = Math.max(0, Number(row.tier.available) || 0) + held;
      row.limit = Math.max(0, Math.min(available, maxTotal - (count - n)));
      row.input.max = String(row.limit);
      row.input.disabled = available === 0 && n === 0;
      row.minus.disabled = n <= 0;
      row.plus.disabled = n >= row.limit;
      const left = held ? `${held} reserved for you` : available > 0 ? `${available} left` : 'Sold out';
      setText(row.note, `${formatMoney(row.tier.price_cents)} · ${left}`);
    }
    setText(total, count ? `Total: ${formatMoney(cents)} for ${count} ticket${count === 1 ? '' : 's'}` : 'Total: ' + formatMoney(0));

    // One tap books what the form shows, so its summary follows the form.
    oneTap.hidden = !offerOneTap || count === 0 || !email.value || !email.checkValidity();
    const list = Object.entries(picked).map(([code, n]) => `${n} × ${tiers.get(code).tier.name}`).join(', ');
    setText(tapSummary, `${list} · ${formatMoney(cents)} · tickets sent to ${email.value.trim()}`);
  }

  function applyAvailability(fresh) {
    event = fresh;
    for (const tier of fresh.tiers ?? []) {
      const row = tiers.get(tier.code);
      if (row) row.tier = tier;
    }
    updateLimits();
  }

  (async () => {
    while (!signal.aborted) {
      await sleep(AVAILABILITY_REFRESH_MS, signal);
      try {
        applyAvailability(await getEvent(eventId, signal));
      } catch {
        // Stale numbers only cost a 409 that explains itself.
      }
    }
  })().catch(() => {});

  // ---- heartbeat ----
  // Every 10 s while the form is open, so the admission slot stays this buyer's (three missed
  // beats give it to the next in line; the token stays valid either way).
  if (claims.sub) {
    const beat = () => pageAlive(claims.sub, signal).catch(() => {});
    beat();
    const heartbeat = setInterval(beat, 10_000);
    signal.addEventListener('abort', () => clearInterval(heartbeat), { once: true });
  }

  // ---- countdown ----

  let submitting = false;
  let warned = false;
  const timer = setInterval(tick, 1000);
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });

  function tick() {
    const left = Date.parse(pass.expires_at) - serverNow();
    setText(countdown, formatClock(left));
    if (!warned && left <= 60_000 && left > 0) {
      warned = true;
      announce('One minute left to book.');
    }
    // A submission in flight gets its answer first; the server has the last word.
    if (left <= 0 && !submitting) {
      clearInterval(timer);
      showTimeUp();
    }
  }

  function showTimeUp() {
    fill(
      main,
      heading(event.name),
      h('p', { class: 'notice error', role: 'alert', testid: 'time-up' }, h('strong', null, 'Your time ran out.'), ' Your tickets were not booked. Join the queue again to get a new turn.'),
      h('p', { class: 'countdown' }, 'Time left to book: ', h('span', { class: 'clock', testid: 'countdown' }, '00:00')),
      h('div', { class: 'actions' }, rejoinButton('Join the queue again'), h('a', { class: 'button', href: '#/' }, 'Back to events')),
    );
    main.querySelector('h1').focus();
  }

  function rejoinButton(label) {
    return h('button', { type: 'button', class: 'primary', testid: 'rejoin', onclick: () => { startOver(eventId); navigate(queueHash); } }, label);
  }

  // ---- submitting ----

  // The attempt whose final answer we have not seen: retrying it reuses its key.
  let pending = null;

  function submit(e) {
    e.preventDefault();
    fill(formError);
    const picked = chosen();
    const count = Object.values(picked).reduce((a, b) => a + b, 0);
    if (count === 0) {
      fill(formError, errorNotice('Choose at least one ticket.'));
      tiers.values().next().value?.input.focus();
      return;
    }
    if (count > maxTotal) {
      fill(formError, errorNotice(`You can book at most ${maxTotal} tickets at once.`));
      return;
    }
    const body = { event_id: eventId, tiers: picked, buyer_email: email.value.trim() };
    const fingerprint = JSON.stringify(body);
    if (pending?.fingerprint !== fingerprint) pending = { key: randomId(), fingerprint, body };
    send(pending);
  }

  async function send(attempt) {
    let booked = false;
    submitting = true;
    submitButton.disabled = true;
    tapButton.disabled = true;
    setText(submitButton, 'Booking…');
    fill(formError);
    try {
      const booking = await createBooking({
        eventId,
        tiers: attempt.body.tiers,
        buyerEmail: attempt.body.buyer_email,
        token: pass.token,
        idempotencyKey: attempt.key,
        signal,
      });
      pending = null;
      booked = true;
      if (booking.access_code) rememberAccessCode(booking.booking_id, booking.access_code);
      // The token books once; a later visit needs a new place in line.
      startOver(eventId);
      navigate(`#/booking/${encodeURIComponent(booking.booking_id)}`, { replace: true });
    } catch (err) {
      if (signal.aborted) return;
      // A final answer is tied to its key: the server would replay it for the same key.
      if (!err.transient) pending = null;
      await showBookingError(err, attempt);
    } finally {
      submitting = false;
      if (!signal.aborted) setText(submitButton, 'Book tickets');
      if (!signal.aborted && !submitButton.dataset.waiting) submitButton.disabled = tapButton.disabled = false;
      if (!signal.aborted && !booked && Date.parse(pass.expires_at) <= serverNow()) tick();
    }
  }

  async function showBookingError(err, attempt) {
    const back = h('a', { class: 'button', href: '#/' }, 'Back to events');
    switch (err.code) {
      case 'insufficient_inventory': {
        const shortfall = Array.isArray(err.details.shortfall) ? err.details.shortfall : [];
        fill(
          formError,
          h(
            'div',
            { class: 'notice error', role: 'alert' },
            h('p', { testid: 'error-message' }, 'Some tickets sold out while you were choosing. We updated what is left; adjust your tickets and book again.'),
            h(
              'ul',
              { class: 'shortfall', testid: 'shortfall' },
              shortfall.map((s) => h('li', null, `${tiers.get(s.tier)?.tier.name ?? s.tier}: you asked for ${s.requested}, ${s.available > 0 ? `only ${s.available} left` : 'none left'}.`)),
            ),
          ),
        );
        try {
          applyAvailability(await getEvent(eventId, signal));
        } catch {
          // Shortfall numbers above still tell the buyer what to change.
          for (const s of shortfall) {
            const row = tiers.get(s.tier);
            if (row) row.tier = { ...row.tier, available: s.available };
          }
          updateLimits();
        }
        for (const row of tiers.values()) {
          if (quantity(row.input) > row.limit) row.input.value = String(row.limit);
          updateLimits();
        }
        return;
      }
      case 'token_used':
        fill(formError, errorNotice('Your turn has already been used for a booking. To book more, join the queue again.', rejoinButton('Join the queue again'), back));
        return;
      case 'token_expired':
        fill(formError, errorNotice('Your time to book has run out. Join the queue again to get a new turn.', rejoinButton('Join the queue again'), back));
        return;
      case 'invalid_token':
        fill(formError, errorNotice('Your pass to book is not valid any more. Join the queue again to get a new turn.', rejoinButton('Join the queue again'), back));
        return;
      case 'token_event_mismatch':
        fill(formError, errorNotice('Your pass to book is for a different event. Join the queue for this event.', rejoinButton('Join the queue'), back));
        return;
    }
    if (err.status === 429) {
      const seconds = Math.max(1, Math.ceil(err.retryAfter ?? 5));
      fill(formError, errorNotice(`Too many bookings at once. You can try again in ${seconds} seconds; your place is kept.`));
      submitButton.dataset.waiting = 'true';
      submitButton.disabled = tapButton.disabled = true;
      sleep(seconds * 1000, signal)
        .then(() => {
          delete submitButton.dataset.waiting;
          submitButton.disabled = tapButton.disabled = false;
        })
        .catch(() => {});
      return;
    }
    if (err.transient) {
      fill(
        formError,
        errorNotice(
          err.code === 'unavailable' ? 'Booking is busy right now. Your choice is kept: try again.' : describeError(err),
          h('button', { type: 'button', class: 'primary', testid: 'retry-booking', onclick: () => send(attempt) }, 'Try again'),
        ),
      );
      return;
    }
    // 422 and anything else: the server's own words say what to fix.
    fill(formError, errorNotice(err.message || describeError(err)));
  }
}

// What this browser remembers about its buyer (and, on the operator page, its operator): a stable visitor id and queue places
// (localStorage, surviving reloads and restarts), entry tokens (sessionStorage, this tab
// only, like the admission they stand for), booking access codes, the tickets chosen while
// waiting and the buyer's e-mail (localStorage; the e-mail is never sent before booking).

import { randomId } from './api.js';

// Storage can be missing or throw (private modes, full quota); a page must still work.
function store(kind) {
  const memory = new Map();
  let backing = null;
  try {
    backing = globalThis[kind];
    backing.setItem('__probe', '1');
    backing.removeItem('__probe');
  } catch {
    backing = null;
  }
  return {
    get(key) {
      try {
        return backing ? backing.getItem(key) : memory.get(key) ?? null;
      } catch {
        return memory.get(key) ?? null;
      }
    },
    set(key, value) {
      memory.set(key, value);
      try {
        backing?.setItem(key, value);
      } catch {
        // Kept in memory for this page load.
      }
    },
    remove(key) {
      memory.delete(key);
      try {
        backing?.removeItem(key);
      } catch {
        // Nothing to undo.
      }
    },
  };
}

const local = store('localStorage');
const session = store('sessionStorage');

function readJson(storage, key) {
  try {
    return JSON.parse(storage.get(key) ?? 'null');
  } catch {
    return null;
  }
}

const VISITOR_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** One id per browser, so joining twice keeps the same place in line. */
export function visitorId() {
  let id = local.get('visitor_id');
  if (!id || !VISITOR_ID.test(id)) {
    id = randomId();
    local.set('visitor_id', id);
  }
  return id;
}

/**
 * Forgets a used-up place (expired, or its token spent or refused) so the next join gets a
 * fresh one: a new visitor id too, since joining with the old id returns the old entry.
 */
export function startOver(eventId) {
  forgetEntryToken(eventId);
  forgetQueuePlace(eventId);
  forgetWish(eventId);
  local.set('visitor_id', randomId());
}

/** `{queue_id, first_position}` for an event, or null. */
export const queuePlace = (eventId) => readJson(local, `queue:${eventId}`);
export const rememberQueuePlace = (eventId, place) => local.set(`queue:${eventId}`, JSON.stringify(place));
export const forgetQueuePlace = (eventId) => local.remove(`queue:${eventId}`);

/**
 * `{tiers: {"GA": 2}, held}` chosen while waiting, or null: the booking form starts from it.
 * `held` when admission already reserved those tickets for this buyer.
 */
export const wish = (eventId) => readJson(local, `wish:${eventId}`);
export const rememberWish = (eventId, tiers, held = false) => local.set(`wish:${eventId}`, JSON.stringify({ tiers, held }));
export const forgetWish = (eventId) => local.remove(`wish:${eventId}`);

/** The e-mail for tickets, so that at the buyer's turn the form is already filled in. */
export const buyerEmail = () => local.get('buyer_email') ?? '';
export const rememberBuyerEmail = (email) => (email ? local.set('buyer_email', email) : local.remove('buyer_email'));

/** `{token, expires_at}` for an event, or null. */
export const entryToken = (eventId) => readJson(session, `token:${eventId}`);
export const rememberEntryToken = (eventId, token, expiresAt) =>
  session.set(`token:${eventId}`, JSON.stringify({ token, expires_at: expiresAt }));
export const forgetEntryToken = (eventId) => session.remove(`token:${eventId}`);

export const accessCode = (bookingId) => local.get(`booking:${bookingId}`);
export const rememberAccessCode = (bookingId, code) => local.set(`booking:${bookingId}`, code);

/** The operator's admin token: this tab only. */
export const adminToken = () => session.get('admin_token');
export const rememberAdminToken = (token) => session.set('admin_token', token);
export const forgetAdminToken = () => session.remove('admin_token');

/**
 * The claims of a JWT, read without checking the signature: only to show the buyer
 * limits (`max`) that the booking service enforces anyway.
 */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '=')));
  } catch {
    return {};
  }
}

// The HTTP contract as functions. Every failure becomes an ApiError carrying the
// envelope's code, so views can decide what a buyer should do next.

export class ApiError extends Error {
  constructor({ status, code, message, retryAfter = null, details = {} }) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0 when the server could not be reached at all
    this.code = code;
    this.retryAfter = retryAfter; // seconds, or null
    this.details = details; // the whole `error` object, e.g. `shortfall`
  }

  /** Worth retrying the very same request: the server never gave a final answer. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

const FALLBACK_MESSAGES = {
  0: 'We could not reach the server. Check your connection.',
  404: 'We could not find that.',
  429: 'Too many requests right now.',
  503: 'The service is busy right now.',
};

// Server time minus local time, learnt from the gateway's `Date` header, so countdowns to
// server-issued expiry times are right even when the phone's clock is not.
let clockSkewMs = 0;

/** The current time as the servers see it, in epoch milliseconds. */
export function serverNow() {
  return Date.now() + clockSkewMs;
}

function parseRetryAfter(header, envelope) {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
    const at = Date.parse(header);
    if (!Number.isNaN(at)) return Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }
  // A cross-origin service may not expose the header; accept it from the body too.
  const fromBody = Number(envelope?.retry_after_s ?? envelope?.retry_after);
  return Number.isFinite(fromBody) && fromBody > 0 ? fromBody : null;
}

/**
 * fetch() speaking JSON. Resolves to the parsed body; rejects with ApiError, or with the
 * AbortError itself when `signal` aborted (callers leaving a page ignore those).
 */
export async function request(url, { method = 'GET', body, bearer, headers = {}, signal } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json', ...headers } };
  if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }

  let response;
  let text;
  try {
    response = await fetch(url, init);
    text = await response.text();
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError({ status: 0, code: 'network', message: FALLBACK_MESSAGES[0] });
  }

  // The header has whole seconds (truncated, hence the half second), so only a skew
  // clearly beyond that resolution is worth correcting.
  const date = Date.parse(response.headers.get('Date') ?? '');
  if (!Number.isNaN(date) && url.startsWith('/')) {
    const skew = date + 500 - Date.now();
    clockSkewMs = Math.abs(skew) >= 2_000 ? skew : 0;
  }

  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's error page, or no API behind this address at all.
  }

  if (response.ok) {
    if (data === null && text) {
      throw new ApiError({
        status: response.status,
        code: 'bad_response',
        message: 'The server sent an answer we could not read.',
      });
    }
    return data;
  }

  const envelope = data?.error ?? {};
  throw new ApiError({
    status: response.status,
    code: envelope.code ?? `http_${response.status}`,
    message:
      envelope.message ??
      FALLBACK_MESSAGES[response.status] ??
      `The server answered ${response.status} ${response.statusText}`.trim(),
    retryAfter: parseRetryAfter(response.headers.get('Retry-After'), envelope),
    details: envelope,
  });
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Exponential backoff with full jitter: 2 s, 4 s, 8 s… capped at 30 s. The jitter keeps
 * thousands of phones that lost the same connection from coming back in one wave.
 */
export function backoffMs(attempt) {
  const ceiling = Math.min(30_000, 2_000 * 2 ** Math.max(0, attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** A random UUID, also where crypto.randomUUID is missing (plain-HTTP origins). */
export function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---- gateway ----

const enc = encodeURIComponent;

export const listEvents = (page, limit, signal) =>
  request(`/api/events?page=${enc(page)}&limit=${enc(limit)}`, { signal });

export const getEvent = (eventId, signal) => request(`/api/events/${enc(eventId)}`, { signal });

/** Joins the line; `proof` is the solved challenge of an earlier 428 `proof_required`. */
export const joinQueue = (eventId, visitorId, signal, proof = null) =>
  request(`/api/events/${enc(eventId)}/queue`, {
    method: 'POST',
    body: proof ? { visitor_id: visitorId, proof } : { visitor_id: visitorId },
    signal,
  });

// The place receipt goes back with every poll: should the queue lose its data, it puts the
// entry back at its place.
export const leaveQueue = (queueId, signal) =>
  request(`/api/queue/${enc(queueId)}`, { method: 'DELETE', signal });
export const queueStatus = (queueId, receipt, signal) =>
  request(`/api/queue/${enc(queueId)}`, { signal, headers: receipt ? { 'X-Queue-Receipt': receipt } : {} });

/** Sets the tiers the buyer wants, `{"GA": 2}`; `{}` clears it. Answers the QueueStatus. */
export const saveWish = (queueId, tiers, signal) =>
  request(`/api/queue/${enc(queueId)}/wish`, { method: 'PUT', body: { tiers }, signal });

/**
 * The booking page's sign of life while it is open: an admitted buyer whose page shows none for
 * 30 s gives back the admission slot (the token stays valid). Failures are ignored: the next
 * beat tries again, and a missed one costs the next in line nothing.
 */
export const pageAlive = (queueId, signal) =>
  request(`/api/queue/${enc(queueId)}/alive`, { method: 'POST', signal });

/**
 * Sent as the page goes away: the entry leaves after `graceS` unless it polls meanwhile, so a
 * reload (which polls at once) keeps the place while a closed tab frees it for the people
 * behind. `keepalive` lets the request outlive the page; nobody is left to read the answer.
 */
export function leaveQueueAfterGrace(queueId, graceS) {
  fetch(`/api/queue/${enc(queueId)}?grace_s=${enc(graceS)}`, { method: 'DELETE', keepalive: true }).catch(() => {});
}

let bookingBase = null;

/** The booking service's origin, from /api/config; asked once per page load. */
export function bookingUrl(signal) {
  bookingBase ??= request('/api/config', { signal })
    .then((config) => {
      if (!config?.booking_url) {
        throw new ApiError({ status: 500, code: 'bad_config', message: 'The site is not configured for booking.' });
      }
      return config.booking_url.replace(/\/+$/, '');
    })
    .catch((err) => {
      bookingBase = null;
      throw err;
    });
  return bookingBase;
}

// ---- booking service ----

export async function createBooking({ eventId, tiers, buyerEmail, token, idempotencyKey, signal }) {
  const base = await bookingUrl(signal);
  return request(`${base}/api/bookings`, {
    method: 'POST',
    bearer: token,
    headers: { 'Idempotency-Key': idempotencyKey },
    body: { event_id: eventId, tiers, buyer_email: buyerEmail },
    signal,
  });
}

export async function getBooking(bookingId, accessCode, signal) {
  const base = await bookingUrl(signal);
  return request(`${base}/api/bookings/${enc(bookingId)}`, { bearer: accessCode, signal });
}

export async function cancelBooking(bookingId, accessCode, signal) {
  const base = await bookingUrl(signal);
  return request(`${base}/api/bookings/${enc(bookingId)}`, { method: 'DELETE', bearer: accessCode, signal });
}

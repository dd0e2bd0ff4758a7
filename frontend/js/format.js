// How money, times and waits read to a buyer, in the browser's own locale.

const money = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD' });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

export const formatMoney = (cents) => money.format((Number(cents) || 0) / 100);

export function formatDateTime(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? '' : dateTime.format(at);
}

/** A time today reads as "3:00 PM", another day with its date. */
export function formatWhen(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return '';
  return at.toDateString() === new Date().toDateString() ? timeOnly.format(at) : dateTime.format(at);
}

/** "$10.00", or "$10.00 – $100.00" when tiers differ; empty when there are none. */
export function formatPriceRange(tiers) {
  const prices = (tiers ?? []).map((t) => t.price_cents);
  if (prices.length === 0) return '';
  const low = Math.min(...prices);
  const high = Math.max(...prices);
  return low === high ? formatMoney(low) : `${formatMoney(low)} – ${formatMoney(high)}`;
}

/** A wait estimate in words; estimates are rough, so they are rounded to read as such. */
export function formatWait(seconds) {
  if (seconds == null || !Number.isFinite(Number(seconds))) return 'Unknown';
  const s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return 'Less than a minute';
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `About ${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  const h = `${hours} hour${hours === 1 ? '' : 's'}`;
  return rest ? `About ${h} ${rest} min` : `About ${h}`;
}

/** "8–12 minutes" for a `[low, high]` estimate in seconds; a single figure when both round alike. */
export function formatWaitRange(range) {
  const [a, b] = Array.isArray(range) ? range.map(Number) : [];
  if (!Number.isFinite(a) || !Number.isFinite(b)) return formatWait(null);
  const low = Math.max(0, Math.min(a, b));
  const high = Math.max(0, a, b);
  if (high < 60) return 'Less than a minute';
  // Past 90 minutes, minutes are more precise than any estimate is.
  const [unit, size] = high < 5400 ? ['minute', 60] : ['hour', 3600];
  const to = Math.max(1, Math.round(high / size));
  const from = Math.round(low / size);
  if (from < 1) return `Up to ${to} ${unit}${to === 1 ? '' : 's'}`;
  if (from >= to) return `About ${to} ${unit}${to === 1 ? '' : 's'}`;
  return `${from}–${to} ${unit}s`;
}

const count = new Intl.NumberFormat();
const fraction = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const clockTime = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

/** 2300 → "2,300" in the buyer's locale. */
export const formatCount = (n) => count.format(Number(n) || 0);

/** A rate such as tickets a minute: whole numbers from 10 up, one decimal below ("0.5"). */
export function formatRate(n) {
  const value = Math.max(0, Number(n) || 0);
  return value >= 10 ? count.format(Math.round(value)) : fraction.format(value);
}

/**
 * A span of time in words for a projection: "45 s", "2 min 30 s", "12 min", "1 h 5 min".
 * Seconds stop mattering past ten minutes, as minutes do past ten hours.
 */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 1) return 'less than a second';
  if (s < 60) return `${s} s`;
  if (s < 600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours >= 10) return `${Math.round(minutes / 60)} h`;
  return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
}

/** An epoch-millisecond instant as a time of day with seconds, "2:32:10 PM". */
export const formatTimeOfDay = (ms) => clockTime.format(new Date(ms));

/** mm:ss for a countdown; never negative. */
export function formatClock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

export const isSoldOut = (event) =>
  (event.tiers ?? []).length > 0 && event.tiers.every((t) => Number(t.available) <= 0);

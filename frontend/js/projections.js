// The live view's projections in words: where the line, each tier's stock and the buyers are
// heading at the pace of the last minute. The server projects; this only says it, and says
// "not moving" rather than a made-up time where the server has none. A rate of null is too
// little history to tell (the server measures from 10 s of samples on), not a standstill.

import { formatCount, formatDuration, formatRate } from './format.js';

const plural = (n, one, many) => `${formatCount(n)} ${n === 1 ? one : many}`;
const TOO_EARLY = 'too early to tell its pace';

/**
 * The sentences for the newest sample and the server's projections, each `{key, text}`, key
 * being `queue`, `stall`, `bookings`, `refused`, `conversion`, `tier-<code>` or `unserved`
 * (`stall`, `refused` and `conversion` only when there is something to say).
 */
export function projectionSentences(sample, projections = {}) {
  const waiting = Math.max(0, Number(sample.waiting) || 0);
  const sentences = [{ key: 'queue', text: queueSentence(sample, projections, waiting) }];
  const stall = stallSentence(sample);
  if (stall) sentences.push({ key: 'stall', text: stall });
  sentences.push({ key: 'bookings', text: bookingsSentence(projections) });
  if (Number(projections.refused_share) > 0) {
    sentences.push({
      key: 'refused',
      text: `${percent(projections.refused_share)} of the buyers admitted lately were refused for stock.`,
    });
  }
  const converting = (projections.tiers ?? []).filter((t) => t.conversion != null);
  if (converting.length > 0) {
    const shares = converting.map((t) => `${t.code} ${percent(t.conversion)}`).join(', ');
    sentences.push({ key: 'conversion', text: `Admitted buyers who book each tier: ${shares}.` });
  }
  for (const tier of sample.tiers ?? []) {
    const projected = (projections.tiers ?? []).find((t) => t.code === tier.code) ?? {};
    sentences.push({ key: `tier-${tier.code}`, text: tierSentence(tier, projected) });
  }
  const unserved = projections.likely_unserved;
  if (waiting > 0 && Number.isFinite(unserved)) {
    sentences.push({
      key: 'unserved',
      text: unserved > 0
        ? `About ${plural(unserved, 'person', 'people')} in line will likely not get tickets.`
        : 'Everyone in line will likely get tickets.',
    });
  }
  return sentences;
}

const percent = (share) => `${Math.round(Number(share) * 100)} %`;

// A stall: the room open, stock on sale, people waiting, and nobody admitted (the worker
// counts the seconds, see lua/live_sample.lua).
function stallSentence(sample) {
  const now = Math.max(0, Number(sample.stall_s) || 0);
  const total = Math.max(0, Number(sample.stalled_total_s) || 0);
  if (now > 0) {
    return `Nobody admitted for ${formatDuration(now)} though stock is on sale and people wait (${formatDuration(total)} of stalls this sale).`;
  }
  return total > 0 ? `The line moves; ${formatDuration(total)} of stalls this sale.` : null;
}

function queueSentence(sample, projections, waiting) {
  if (waiting === 0) return sample.enabled === false ? 'The waiting room is off; nobody is waiting.' : 'Nobody is waiting in line.';
  const line = `The line of ${formatCount(waiting)}`;
  const drains = projections.queue_drains_in_s;
  if (drains == null && projections.admissions_per_minute == null && !sample.paused) return `${line}: ${TOO_EARLY}.`;
  if (drains == null) return `${line} is not moving at this pace${sample.paused ? ': admissions are paused' : ''}.`;
  const pace = `at ${formatRate(projections.admissions_per_minute)} admissions a minute`;
  return drains < 1 ? `${line} is about to drain, ${pace}.` : `${line} drains in about ${formatDuration(drains)} ${pace}.`;
}

function bookingsSentence(projections) {
  if (projections.bookings_per_minute == null) return 'Bookings: too early to tell their pace.';
  const perMinute = Number(projections.bookings_per_minute) || 0;
  if (perMinute <= 0) return 'Nobody is booking right now.';
  const each = Number(projections.tickets_per_booking);
  return `Buyers make ${formatRate(perMinute)} bookings a minute${each > 0 ? `, ${formatRate(each)} tickets each` : ''}.`;
}

function tierSentence(tier, projected) {
  const left = Math.max(0, Number(tier.available) || 0);
  const held = Math.max(0, Number(tier.held) || 0);
  if (left + held === 0) return `${tier.code} is sold out.`;
  if (left === 0) return `${tier.code} has none on sale; ${plural(held, 'ticket', 'tickets')} held by buyers may come back.`;
  const stock = `${tier.code} has ${plural(left, 'ticket', 'tickets')} left${held > 0 ? ` (${formatCount(held)} more held)` : ''}`;
  if (projected.sold_per_minute == null) return `${stock}; ${TOO_EARLY}.`;
  const rate = Number(projected.sold_per_minute) || 0;
  if (projected.sells_out_in_s != null) {
    return `${stock} and sells out in about ${formatDuration(projected.sells_out_in_s)} at ${formatRate(rate)} a minute.`;
  }
  return rate > 0 ? `${stock}, selling ${formatRate(rate)} a minute.` : `${stock} and is not selling.`;
}

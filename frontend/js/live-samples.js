// The live view's samples (one a second, written by the queue worker) turned into what its
// charts draw: counts as sampled, and rates a minute from the running totals.

const WINDOW_MS = 30 * 60_000;
const MOST_SAMPLES = 1_800;
const MINUTE_MS = 60_000;

/** Sample ids are Redis stream ids, "<ms>-<seq>": compared as two numbers, not as text. */
function isAfter(id, than) {
  const [ms, seq] = String(id).split('-').map(Number);
  const [thanMs, thanSeq] = String(than).split('-').map(Number);
  return ms > thanMs || (ms === thanMs && seq > thanSeq);
}

/**
 * `kept` with `fresh` appended (both oldest first), cut to the last 30 minutes and at most
 * 1800 samples. A sample already kept (an answer repeated after a retry) is not added twice.
 */
export function keepWindow(kept, fresh) {
  const lastId = kept.at(-1)?.id;
  const added = lastId == null ? fresh : fresh.filter((sample) => isAfter(sample.id, lastId));
  const all = kept.concat(added);
  const newest = all.at(-1)?.t_ms ?? 0;
  let first = Math.max(0, all.length - MOST_SAMPLES);
  while (first < all.length && all[first].t_ms < newest - WINDOW_MS) first += 1;
  return first === 0 ? all : all.slice(first);
}

/** `[[t_ms, value]]` of one field; null where the sample has none (e.g. no booking lately). */
export const points = (samples, field) =>
  samples.map((sample) => [sample.t_ms, sample[field] == null ? null : Number(sample[field])]);

/**
 * The rate a minute of a running total at each sample: total(t) − total(t − 60 s), from the
 * newest sample at least a minute older. While less than a minute of history exists, the
 * change since the first sample is scaled to a minute; so is a change across a silence longer
 * than a minute. A total that went down (a counter reset) counts as no change.
 */
export function perMinute(samples, field) {
  const rates = [];
  let base = 0;
  for (let i = 0; i < samples.length; i += 1) {
    const t = samples[i].t_ms;
    while (base + 1 < i && samples[base + 1].t_ms <= t - MINUTE_MS) base += 1;
    const span = t - samples[base].t_ms;
    const change = Math.max(0, Number(samples[i][field]) - Number(samples[base][field]));
    rates.push([t, span > 0 && Number.isFinite(change) ? (change * MINUTE_MS) / span : null]);
  }
  return rates;
}

/** One line of tickets left a tier, in the order tiers first appear. */
export function ticketsLeft(samples) {
  const lines = new Map();
  samples.forEach((sample, i) => {
    for (const tier of sample.tiers ?? []) {
      if (!lines.has(tier.code)) lines.set(tier.code, new Array(i).fill(null).map((_, j) => [samples[j].t_ms, null]));
    }
    for (const [code, line] of lines) {
      const tier = (sample.tiers ?? []).find((t) => t.code === code);
      line.push([sample.t_ms, tier ? Number(tier.available) : null]);
    }
  });
  return [...lines].map(([code, line]) => ({ label: code, points: line }));
}

/** The spans during which admissions were paused, `[from_ms, to_ms]`. */
export function pausedSpans(samples) {
  const spans = [];
  let from = null;
  for (const sample of samples) {
    if (sample.paused && from == null) from = sample.t_ms;
    if (!sample.paused && from != null) {
      spans.push([from, sample.t_ms]);
      from = null;
    }
  }
  if (from != null) spans.push([from, samples.at(-1).t_ms]);
  return spans;
}

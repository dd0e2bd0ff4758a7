// The operator's live view of one sale: the queue worker's sample a second, drawn over the
// last 30 minutes, and the server's projections in words. It asks every second for the
// samples after the last one it has, and asks nothing while the page is hidden.

import { sleep, backoffMs } from './api.js';
import { h, fill, setText } from './dom.js';
import { formatCount, formatRate } from './format.js';
import { lineChart } from './live-charts.js';
import { keepWindow, perMinute, points, ticketsLeft, pausedSpans } from './live-samples.js';
import { projectionSentences } from './projections.js';

const REFRESH_MS = 1_000;
// A longer silence between samples is drawn as a gap: the worker was not sampling then.
const GAP_MS = 5_000;

const milliseconds = (v) => `${v >= 100 ? formatCount(Math.round(v)) : Number(v.toFixed(1)).toLocaleString()} ms`;

/**
 * Watches `eventId` until `signal` aborts. `admin` is the operator page's admin call (it
 * signs the operator out on a 401); `root` holds the chart figures and the projections.
 */
export function watchLive(eventId, { admin, signal, root }) {
  const $ = (id) => root.querySelector(`#${id}`);
  const problem = $('live-problem');
  const sentences = $('projections');
  const charts = {
    waiting: lineChart($('chart-waiting'), { title: 'Waiting' }),
    admissions: lineChart($('chart-admissions'), { title: 'Admissions a minute', format: formatRate, bandLabel: 'paused' }),
    bookings: lineChart($('chart-bookings'), { title: 'Bookings a minute', format: formatRate }),
    ticketsLeft: lineChart($('chart-tickets-left'), { title: 'Tickets left' }),
    active: lineChart($('chart-active'), { title: 'Active buyers (admitted, not booked)' }),
    p95: lineChart($('chart-booking-p95'), { title: 'Booking time, 95th percentile', format: milliseconds, missing: 'no bookings lately' }),
  };
  let samples = [];
  root.dataset.samples = '0';
  setText(problem, '');
  fill(sentences, h('li', null, 'Waiting for the first samples…'));

  (async () => {
    let failures = 0;
    while (!signal.aborted) {
      if (document.hidden) {
        await untilVisible(signal);
        continue;
      }
      try {
        const since = samples.at(-1)?.id;
        const path = `/api/admin/events/${encodeURIComponent(eventId)}/live${since ? `?since=${encodeURIComponent(since)}` : ''}`;
        const answer = await admin(path, { signal });
        if (signal.aborted) return;
        failures = 0;
        setText(problem, '');
        samples = keepWindow(samples, answer.samples ?? []);
        show(answer.projections ?? {});
      } catch (err) {
        if (signal.aborted || err.status === 401) return;
        if (err.status === 404) {
          setText(problem, 'This event no longer exists.');
          return;
        }
        failures += 1;
        setText(problem, `Live charts: connection lost, retrying… (${err.message})`);
        await sleep(backoffMs(failures), signal);
        continue;
      }
      await sleep(REFRESH_MS, signal);
    }
  })().catch(() => {});

  function show(projections) {
    root.dataset.samples = String(samples.length);
    const gapMs = GAP_MS;
    charts.waiting.draw({ series: [{ label: 'Waiting', points: points(samples, 'waiting') }], gapMs });
    charts.admissions.draw({
      series: [
        { label: 'Admitted', points: perMinute(samples, 'admitted_total') },
        { label: 'Set rate', points: points(samples, 'admission_per_minute'), dashed: true },
      ],
      bands: pausedSpans(samples),
      gapMs,
    });
    charts.bookings.draw({ series: [{ label: 'Bookings', points: perMinute(samples, 'booked_total') }], gapMs });
    charts.ticketsLeft.draw({ series: ticketsLeft(samples), gapMs });
    charts.active.draw({ series: [{ label: 'Booking', points: points(samples, 'active') }], gapMs });
    charts.p95.draw({ series: [{ label: 'p95', points: points(samples, 'booking_p95_ms') }], gapMs });

    const newest = samples.at(-1);
    fill(
      sentences,
      newest
        ? projectionSentences(newest, projections).map(({ key, text }) => h('li', { testid: `projection-${key}` }, text))
        : h('li', null, 'No samples yet: the queue worker writes one a second.'),
    );
  }
}

function untilVisible(signal) {
  return new Promise((resolve) => {
    const done = () => {
      if (document.hidden && !signal.aborted) return;
      document.removeEventListener('visibilitychange', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    document.addEventListener('visibilitychange', done);
    signal.addEventListener('abort', done);
  });
}

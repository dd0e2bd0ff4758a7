// Line charts in plain SVG for the operator's live view. The SVG holds only the lines and
// stretches to its box (strokes keep their width); every word and number around it is HTML,
// so it stays readable at any size, from a phone to a laptop.

import { h, fill, setText } from './dom.js';
import { formatCount, formatTimeOfDay } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
// The plot's own units: x across the time shown, y up to the scale's top.
const WIDTH = 1000;
const HEIGHT = 100;

const svg = (tag, attributes = {}) => {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  return el;
};

/**
 * Fills `figure` with an empty chart and returns `draw`. `format` writes a value (the scale
 * and the latest values), `missing` a gap at the newest point; `bandLabel` names the shaded
 * spans, if any are drawn.
 */
export function lineChart(figure, { title, format = formatCount, missing = '—', bandLabel = '' }) {
  const latest = h('span', { class: 'chart-latest' }, '—');
  const top = h('span', null, '');
  const bottom = h('span', null, '');
  const from = h('span', null, '');
  const to = h('span', null, '');
  const plot = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: 'none', role: 'img' });
  const legend = h('ul', { class: 'chart-legend' });
  const empty = h('p', { class: 'meta chart-empty' }, 'No samples yet.');

  fill(
    figure,
    h('figcaption', null, h('span', { class: 'chart-title' }, title), latest),
    h(
      'div',
      { class: 'chart-plot' },
      h('div', { class: 'chart-y', 'aria-hidden': 'true' }, top, bottom),
      plot,
      h('div', { class: 'chart-x', 'aria-hidden': 'true' }, from, to),
    ),
    legend,
    empty,
  );
  plot.setAttribute('aria-label', `${title}: no samples yet`);

  /**
   * Draws `series` (`[{label, points: [[t_ms, value or null], …], dashed}]`, oldest first) over
   * the span from the first to the last point; a null value, or `gapMs` without a point, is a
   * gap in the line. `bands` are `[from_ms, to_ms]` spans shaded behind the lines.
   */
  function draw({ series, bands = [], gapMs = Infinity }) {
    const times = series.flatMap((s) => (s.points.length ? [s.points[0][0], s.points.at(-1)[0]] : []));
    empty.hidden = times.length > 0;
    if (times.length === 0) {
      plot.replaceChildren();
      fill(legend);
      for (const el of [latest, top, bottom, from, to]) setText(el, el === latest ? '—' : '');
      plot.setAttribute('aria-label', `${title}: no samples yet`);
      return;
    }
    let start = Math.min(...times);
    const end = Math.max(...times);
    // One sample is a point at the right edge, not a division by zero.
    if (end - start < 1_000) start = end - 1_000;
    const values = series.flatMap((s) => s.points.map(([, v]) => v)).filter((v) => v != null && Number.isFinite(v));
    const high = niceCeiling(Math.max(0, ...values));
    const low = Math.min(0, ...values);
    const x = (t) => ((t - start) / (end - start)) * WIDTH;
    const y = (v) => HEIGHT - ((v - low) / (high - low)) * HEIGHT;

    const shapes = bands.map(([a, b]) =>
      svg('rect', { class: 'chart-band', x: x(Math.max(a, start)), y: 0, width: Math.max(2, x(Math.min(b, end)) - x(Math.max(a, start))), height: HEIGHT }),
    );
    series.forEach((s, i) => {
      shapes.push(svg('path', { class: `chart-line ${lineClass(s, i)}`, d: pathOf(s.points, x, y, gapMs) }));
    });
    plot.replaceChildren(...shapes);

    setText(top, format(high));
    setText(bottom, format(low));
    setText(from, formatTimeOfDay(start));
    setText(to, formatTimeOfDay(end));

    const last = series.map((s) => lastValue(s.points));
    const said = (v) => (v == null ? missing : format(v));
    if (series.length === 1) {
      setText(latest, said(last[0]));
      fill(legend, bands.length && bandLabel ? legendItem('chart-band-swatch', bandLabel) : null);
    } else {
      setText(latest, '');
      fill(
        legend,
        series.map((s, i) => legendItem(lineClass(s, i), s.label, said(last[i]))),
        bands.length && bandLabel ? legendItem('chart-band-swatch', bandLabel) : null,
      );
    }
    plot.setAttribute(
      'aria-label',
      `${title} from ${formatTimeOfDay(start)} to ${formatTimeOfDay(end)}, between ${format(low)} and ${format(high)}; now ${series
        .map((s, i) => (series.length > 1 ? `${s.label} ${said(last[i])}` : said(last[i])))
        .join(', ')}`,
    );
  }

  return { draw };
}

// Six colours, then the same dashed: a seventh tier must not be drawn in no colour at all.
const lineClass = (series, i) => `s${i % 6}${series.dashed || i >= 6 ? ' dashed' : ''}`;

function legendItem(swatchClass, label, value = null) {
  return h(
    'li',
    null,
    h('span', { class: `swatch ${swatchClass}`, 'aria-hidden': 'true' }),
    label,
    value != null ? h('span', { class: 'chart-legend-value' }, ` ${value}`) : null,
  );
}

/** The path of one line: segments broken at null values and at silences longer than `gapMs`. */
function pathOf(points, x, y, gapMs) {
  const parts = [];
  let open = false; // inside a segment
  let lone = false; // the segment so far is one point (drawn as a dot)
  let previous = -Infinity;
  for (const [t, v] of points) {
    if (v == null || !Number.isFinite(v) || t - previous > gapMs) {
      if (lone) parts.push('h0');
      open = false;
      lone = false;
    }
    previous = t;
    if (v == null || !Number.isFinite(v)) continue;
    const at = `${x(t).toFixed(1)} ${y(v).toFixed(2)}`;
    if (open) {
      parts.push(`L${at}`);
      lone = false;
    } else {
      parts.push(`M${at}`);
      open = true;
      lone = true;
    }
  }
  if (lone) parts.push('h0');
  return parts.join('');
}

/** The newest point's value: a gap now reads as a gap, not as an older value. */
function lastValue(points) {
  const v = points.at(-1)?.[1];
  return v != null && Number.isFinite(v) ? v : null;
}

/** The scale's top: 1, 2 or 5 times a power of ten at or above `value` (at least 1). */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

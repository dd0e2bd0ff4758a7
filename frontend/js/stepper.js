// A tier's quantity stepper (− input +), never above `limit()`: the booking form and the queue
// page's choice of tickets share it.

import { h } from './dom.js';

/** The whole, non-negative quantity an input holds (0 for anything else). */
export function quantity(input) {
  const n = Math.floor(Number(input.value));
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** `changed` runs after every edit, typed or stepped. */
export function stepper({ id, testid, name, limit, changed }) {
  const input = h('input', {
    type: 'number',
    id,
    name: id,
    min: 0,
    step: 1,
    value: 0,
    inputmode: 'numeric',
    testid,
    oninput: changed,
    onchange: () => {
      input.value = String(Math.min(limit(), quantity(input)));
      changed();
    },
  });
  const step = (delta) => {
    input.value = String(Math.max(0, Math.min(limit(), quantity(input) + delta)));
    changed();
  };
  const minus = h('button', { type: 'button', class: 'step', 'aria-label': `One less ${name}`, onclick: () => step(-1) }, '−');
  const plus = h('button', { type: 'button', class: 'step', 'aria-label': `One more ${name}`, onclick: () => step(+1) }, '+');
  return { input, minus, plus, element: h('div', { class: 'stepper' }, minus, input, plus) };
}

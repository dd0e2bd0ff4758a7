// The page shown instead of a blank screen or a raw error: what happened in plain words,
// and two ways forward.

import { h, heading, fill } from '../dom.js';

/** Plain words for an ApiError (or anything else thrown). */
export function describeError(err) {
  const status = err?.status;
  if (status === 0) return 'We could not reach the server. Check your connection and try again.';
  if (status === 429) return 'The site is very busy. Please wait a moment and try again.';
  if (status >= 500) return 'The service is having trouble right now. Please try again in a moment.';
  // A 404 without the API's error envelope means no API answered at all.
  if (status === 404 && err.code === 'http_404') return 'The ticket service is not answering right now. Please try again in a moment.';
  if (status === 404) return err.message || 'We could not find that.';
  if (status) return err.message || `Something went wrong (${status}).`;
  return 'Something went wrong on this page.';
}

export function showError(main, err, route) {
  document.title = 'Something went wrong · Tickets';
  fill(
    main,
    heading(err?.status === 404 && err.code !== 'http_404' ? 'Not found' : 'Something went wrong'),
    h('p', { class: 'notice error', role: 'alert', testid: 'error-message' }, describeError(err)),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', class: 'primary', onclick: () => route.retry() }, 'Try again'),
      h('a', { class: 'button', href: '#/' }, 'Back to events'),
    ),
  );
}

export function showNotFound(main) {
  document.title = 'Not found · Tickets';
  fill(
    main,
    heading('Page not found'),
    h('p', { testid: 'error-message' }, 'There is nothing at this address.'),
    h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/' }, 'Back to events')),
  );
}

/** An inline error for a form or section: the message, and optional buttons or links. */
export function errorNotice(message, ...actions) {
  return h(
    'div',
    { class: 'notice error', role: 'alert' },
    h('p', { testid: 'error-message' }, message),
    actions.length ? h('div', { class: 'actions' }, actions) : null,
  );
}

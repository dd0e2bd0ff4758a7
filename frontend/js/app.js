// The buyer's single-page app: routes to views, and a way out of every failure.

import { startRouter } from './router.js';
import { showError, showNotFound } from './views/error.js';

const main = document.getElementById('main');

// The skip link must not change the hash, which is the router's.
document.querySelector('.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

startRouter({
  main,
  routes: [
    [/^\/$/, () => import('./views/events.js')],
    [/^\/events\/([^/]+)$/, () => import('./views/event.js')],
    [/^\/queue\/([^/]+)$/, () => import('./views/queue.js')],
    [/^\/book\/([^/]+)$/, () => import('./views/book.js')],
    [/^\/booking\/([^/]+)$/, () => import('./views/booking.js')],
    [/^\/admin$/, () => Promise.resolve({ show: () => location.assign('admin.html') })],
  ],
  notFound: () => Promise.resolve({ show: showNotFound }),
  showError,
});

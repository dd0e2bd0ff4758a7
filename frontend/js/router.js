// A hash router: `#/queue/<event_id>?x=y` picks a view module, loaded on first use so a
// phone waiting in line downloads only the queue page's code.

/**
 * Parses a location hash into `{path, query}`; null for a hash that is not a route
 * (e.g. the skip link's `#main`).
 */
export function parseHash(hash) {
  const raw = hash.replace(/^#/, '') || '/';
  if (!raw.startsWith('/')) return null;
  const [path, search = ''] = raw.split('?');
  return { path, query: new URLSearchParams(search) };
}

// A malformed escape in a pasted link should reach the view (and its 404), not throw here.
function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Goes to a route. `replace` keeps a hop (queue → booking form) out of the back button. */
export function navigate(hash, { replace = false } = {}) {
  if (replace) {
    location.replace(hash);
  } else {
    location.hash = hash;
  }
}

/**
 * Starts routing. `routes` are `[RegExp, () => import(view)]`; a view module exports
 * `show(main, route)` which renders and resolves once the page is usable, and keeps any
 * polling going until `route.signal` aborts (on the next route change).
 */
export function startRouter({ main, routes, notFound, showError }) {
  let current = null;
  let first = true;

  async function render() {
    const parsed = parseHash(location.hash);
    if (!parsed) return;

    current?.abort();
    const controller = new AbortController();
    current = controller;
    const { signal } = controller;

    let load = notFound;
    let params = [];
    for (const [pattern, loader] of routes) {
      const match = pattern.exec(parsed.path);
      if (match) {
        load = loader;
        params = match.slice(1).map(decodeSegment);
        break;
      }
    }

    const route = { params, query: parsed.query, signal, retry: render };
    main.setAttribute('aria-busy', 'true');
    // On a slow answer, say so instead of leaving the previous page up. Views fill
    // `main` only once their data is in, right before `show` resolves.
    const slow = setTimeout(() => {
      const title = document.createElement('h1');
      title.tabIndex = -1;
      title.textContent = 'Loading…';
      main.replaceChildren(title);
    }, 400);
    signal.addEventListener('abort', () => clearTimeout(slow), { once: true });
    try {
      const view = await load();
      if (signal.aborted) return;
      await view.show(main, route);
    } catch (err) {
      if (signal.aborted) return;
      console.error(err);
      showError(main, err, route);
    } finally {
      clearTimeout(slow);
      if (!signal.aborted) {
        main.removeAttribute('aria-busy');
        // Screen-reader and keyboard users start at the new page's heading, as they
        // would after a full page load; the very first load keeps the browser's default.
        if (!first) {
          scrollTo(0, 0);
          (main.querySelector('h1') ?? main).focus({ preventScroll: true });
        }
        first = false;
      }
    }
  }

  addEventListener('hashchange', render);
  render();
}

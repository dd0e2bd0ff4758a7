// Building DOM from data without innerHTML, so names and emails from the API are never
// parsed as markup.

/**
 * h('button', {type: 'button', onclick}, 'Label'). `testid` sets data-testid, `class` the
 * class list, `on<event>` adds a listener; other keys set a property when the element has
 * one (value, disabled, checked…) and an attribute otherwise (aria-*, for, tabindex…).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (key === 'testid') el.dataset.testid = value;
    else if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el && !key.includes('-')) el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** The page's main heading; the router moves focus to it after each route change. */
export const heading = (text) => h('h1', { tabindex: '-1' }, text);

/** Replaces an element's content, keeping the element (and any live region on it). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets text only when it changed, so live regions do not repeat themselves. */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Says something to screen-reader users without moving focus. */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  // Clearing first makes a repeated message count as a change.
  region.textContent = '';
  setTimeout(() => (region.textContent = message), 50);
}

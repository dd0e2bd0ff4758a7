// Calling a buyer back to a tab left in the background when its turn comes: a notification
// (if the buyer allowed them), two short tones and a blinking title, until the tab is looked
// at again. Each channel may be unavailable (no permission, autoplay rules, Android Chrome
// showing notifications from service workers only), so each fails alone and quietly.

import { serverNow } from './api.js';
import { formatClock } from './format.js';

const MARK = '● Your turn!';
const BLINK_MS = 1_000;

let audio = null; // one AudioContext for the page, made inside a click so it may play later
let chiming = false;

/** Whether to offer "Notify me": notifications exist here and nobody has decided yet. */
export const notificationsAskable = () =>
  typeof Notification === 'function' && Notification.permission === 'default';

/** Asks for notifications; call it from the buyer's click. Resolves to the permission. */
export async function askForNotifications() {
  try {
    return await Notification.requestPermission();
  } catch {
    return 'denied';
  }
}

/**
 * Prepares the sound at the buyer's next click or key on this page: browsers let only an
 * AudioContext started by a gesture play later without one (Safari strictly so). It is
 * suspended again at once, so a phone waiting an hour keeps no audio device busy.
 */
export function armSound(signal) {
  const unlock = () => {
    try {
      audio ??= new AudioContext();
      audio.resume().then(() => chiming || audio.suspend()).catch(() => {});
    } catch {
      audio = null;
    }
  };
  for (const type of ['click', 'keydown']) {
    addEventListener(type, unlock, { once: true, capture: true, signal });
  }
}

/**
 * At the buyer's turn, in a tab that is not being looked at: all three calls. `expiresAt`
 * is the token's expiry (ISO), for the time left to book in the notification.
 */
export function callBuyerBack({ eventName, expiresAt }) {
  if (!document.hidden) return;
  const left = Date.parse(expiresAt) - serverNow();
  const body = Number.isFinite(left)
    ? `${eventName}: you have ${formatClock(left)} to book your tickets.`
    : `${eventName}: you can book your tickets now.`;
  const notification = notify('Your turn!', body);
  chime();
  blinkTitle(() => notification?.close());
}

function notify(title, body) {
  if (typeof Notification !== 'function' || Notification.permission !== 'granted') return null;
  try {
    const notification = new Notification(title, { body, tag: 'your-turn', requireInteraction: true });
    notification.addEventListener('click', () => {
      window.focus();
      notification.close();
    });
    return notification;
  } catch {
    // Android Chrome has the constructor but refuses it outside a service worker.
    return null;
  }
}

/** Two short rising tones, made by an oscillator: no sound file to download. */
function chime() {
  try {
    audio ??= new AudioContext();
    const context = audio;
    chiming = true;
    // Scheduled whatever resume() says: a context that may not run plays nothing, harmlessly.
    context.resume().catch(() => {});
    const start = context.currentTime + 0.05;
    tone(context, start, 880, 0.18);
    tone(context, start + 0.28, 1320, 0.22).addEventListener('ended', () => {
      chiming = false;
      context.suspend().catch(() => {});
    });
  } catch {
    // No Web Audio here: the title and the notification still call.
  }
}

function tone(context, at, frequency, length) {
  const oscillator = context.createOscillator();
  const gain = context.createGain();
  oscillator.type = 'sine';
  oscillator.frequency.value = frequency;
  // Ramps in and out: a tone that starts or stops at full volume clicks.
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(0.3, at + 0.015);
  gain.gain.setValueAtTime(0.3, at + length - 0.04);
  gain.gain.linearRampToValueAtTime(0, at + length);
  oscillator.connect(gain).connect(context.destination);
  oscillator.start(at);
  oscillator.stop(at + length);
  return oscillator;
}

let blinking = false;

/**
 * Alternates the title with "● Your turn!" every second until the tab is visible. The page
 * goes on to the booking form meanwhile, which sets its own title: an observer keeps that
 * one as the title to come back to, and puts the mark back at once instead of at the next
 * tick (a background tab's timers may be held to one a minute).
 */
function blinkTitle(onSeen) {
  if (blinking) return;
  blinking = true;
  let plain = document.title;
  let marked = true;
  document.title = MARK;

  const observer = new MutationObserver(() => {
    if (document.title === MARK) return;
    plain = document.title;
    if (marked) document.title = MARK;
  });
  const titleElement = document.querySelector('title');
  if (titleElement) observer.observe(titleElement, { childList: true, characterData: true, subtree: true });

  const timer = setInterval(() => {
    marked = !marked;
    document.title = marked ? MARK : plain;
  }, BLINK_MS);

  const seen = () => {
    if (document.hidden) return;
    document.removeEventListener('visibilitychange', seen);
    clearInterval(timer);
    observer.disconnect();
    marked = false;
    blinking = false;
    if (document.title === MARK) document.title = plain;
    onSeen();
  };
  document.addEventListener('visibilitychange', seen);
}

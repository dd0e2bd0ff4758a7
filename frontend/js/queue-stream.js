// The waiting room pushed to the page over Server-Sent Events instead of polled: one open
// connection per buyer, each `status` message the very QueueStatus a poll answers, sent when
// something changed and at once on admission. Polling stays the way that always works: the
// page falls back to it whenever the stream cannot be had or keeps breaking.

// Errors without a message in between before the stream is given up: one is a gateway
// restarting (EventSource reconnects by itself); three, a path that keeps cutting it.
const ERRORS_BEFORE_POLLING = 3;

/** Whether this browser can follow a stream at all. */
export const streamSupported = () => typeof EventSource === 'function';

/**
 * Follows a queue entry's stream until it ends, resolving to why: `'over'` (`onStatus` said so
 * by returning true), `'gone'` (the entry is gone, as a poll's 404), `'failed'` (poll instead:
 * EventSource cannot tell a refusal's 404 from its 503, a poll can) or `'aborted'`. On its own
 * reconnects the browser sends the last message's id, the receipt in force, as `Last-Event-ID`;
 * `onTrouble` is called as they begin.
 */
export function followQueue(queueId, receipt, { onStatus, onTrouble = () => {}, signal }) {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve('aborted');
      return;
    }
    const query = receipt ? `?receipt=${encodeURIComponent(receipt)}` : '';
    const source = new EventSource(`/api/queue/${encodeURIComponent(queueId)}/events${query}`);
    let heard = false;
    let errors = 0;

    // Closing at every end keeps EventSource from reconnecting to a stream the page is done
    // with (the server closes after `expired` and `sold_out`, and after `problem`).
    const end = (outcome) => {
      source.close();
      signal.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    const onAbort = () => end('aborted');
    signal.addEventListener('abort', onAbort, { once: true });

    source.addEventListener('status', (message) => {
      const status = parse(message.data);
      if (!status || typeof status.state !== 'string') {
        end('failed');
        return;
      }
      heard = true;
      errors = 0;
      if (onStatus(status)) end('over');
    });

    source.addEventListener('problem', (message) => {
      end(parse(message.data)?.error?.code === 'queue_entry_not_found' ? 'gone' : 'failed');
    });

    source.addEventListener('error', () => {
      errors += 1;
      // CLOSED: the answer was no stream at all (an error status, another content type).
      if (!heard || source.readyState === EventSource.CLOSED || errors >= ERRORS_BEFORE_POLLING) {
        end('failed');
        return;
      }
      onTrouble();
    });
  });
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// The page's side of the join's proof of work (428 proof_required): solve the challenge in a
// Web Worker and hand back the proof to join with. Where workers cannot start (very old
// browsers, odd privacy settings), it solves on the page in small slices instead.

import { solve } from './sha256.js';
import { sleep } from './api.js';

/** Nonces tried between two yields to the page when there is no worker (a few ms each). */
const SLICE = 20_000;

/**
 * Resolves to `{challenge, nonce}` for the `{challenge, difficulty}` of a 428 answer; rejects
 * with the abort reason when `signal` aborts (the worker is stopped).
 */
export async function solveProof({ challenge, difficulty }, signal) {
  const nonce = await inWorker(challenge, difficulty, signal).catch((err) => {
    if (signal.aborted) throw err;
    return onPage(challenge, difficulty, signal);
  });
  return { challenge, nonce };
}

function inWorker(challenge, difficulty, signal) {
  return new Promise((resolve, reject) => {
    if (typeof Worker !== 'function') throw new Error('no Web Workers here');
    const worker = new Worker(new URL('./proof-worker.js', import.meta.url), { type: 'module' });
    const stop = () => {
      worker.terminate();
      reject(signal.reason);
    };
    signal.addEventListener('abort', stop, { once: true });
    const done = () => {
      worker.terminate();
      signal.removeEventListener('abort', stop);
    };
    worker.onmessage = ({ data }) => {
      done();
      resolve(data.nonce);
    };
    worker.onerror = (event) => {
      done();
      event.preventDefault?.();
      reject(new Error(event.message || 'the proof worker failed'));
    };
    worker.postMessage({ challenge, difficulty });
  });
}

async function onPage(challenge, difficulty, signal) {
  for (let start = 0; ; start += SLICE) {
    const { nonce } = solve(challenge, difficulty, { start, count: SLICE });
    if (nonce !== null) return nonce;
    await sleep(0, signal);
  }
}

// Solves the gateway's proof-of-work challenge off the page's thread, so the queue page stays
// responsive for the second or so it takes. Message in: {challenge, difficulty}; out:
// {nonce, hashes, ms}.

import { solve } from './sha256.js';

self.onmessage = ({ data: { challenge, difficulty } }) => {
  const started = performance.now();
  const { nonce, hashes } = solve(challenge, difficulty);
  self.postMessage({ nonce, hashes, ms: performance.now() - started });
};

// SHA-256 (FIPS 180-4) for the waiting room's proof of work, shaped for its one job: hashing
// `challenge:nonce` for nonce after nonce. The gateway's challenges are 67 characters, so
// `challenge:` fills the first 64-byte block by itself: that block is hashed once (the
// "midstate") and each nonce costs one compression. crypto.subtle.digest costs a promise and
// the whole message per nonce and cannot start from a midstate: measured on this project's
// machine, 45,000 hashes/s against 2.5 million/s here (Node 20; headless Chromium's worker did
// 2.2 million/s, solving 18 bits in 0.1-0.25 s).
// Self-contained (no imports), so the static tests can load it in Node as well.

/** The first `count` primes. */
function primes(count) {
  const found = [];
  for (let n = 2; found.length < count; n += 1) {
    if (found.every((p) => n % p !== 0)) found.push(n);
  }
  return found;
}

/** The largest integer x with x ** k <= value (BigInt). */
function integerRoot(value, k) {
  let low = 0n;
  let high = 1n;
  while (high ** k <= value) high <<= 1n;
  while (high - low > 1n) {
    const mid = (low + high) >> 1n;
    if (mid ** k <= value) low = mid;
    else high = mid;
  }
  return low;
}

// The standard's constants are the first 32 bits of the fractional parts of the cube roots of
// the first 64 primes (K) and of the square roots of the first 8 (H0): computed exactly here
// with integer roots (floor(cbrt(p * 2^96)) mod 2^32), not copied in.
const fraction32 = (root) => Number(root & 0xffffffffn) | 0;
const K = Int32Array.from(primes(64), (p) => fraction32(integerRoot(BigInt(p) << 96n, 3n)));
const H0 = Int32Array.from(primes(8), (p) => fraction32(integerRoot(BigInt(p) << 64n, 2n)));

/** One compression of the 16 words at the start of `w` (64 long, the rest scratch) into `state`. */
function compress(state, w) {
  for (let i = 16; i < 64; i += 1) {
    const x = w[i - 15];
    const y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let e = state[4];
  let f = state[5];
  let g = state[6];
  let h = state[7];
  for (let i = 0; i < 64; i += 1) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/** Loads 64 bytes of `bytes` from `offset` into the first 16 words of `w`, big-endian. */
function loadBlock(w, bytes, offset) {
  for (let i = 0; i < 16; i += 1) {
    const at = offset + i * 4;
    w[i] = (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
  }
}

/**
 * Hashes the last `tailLength` bytes of a `totalLength`-byte message, waiting at the start of
 * `scratch` (128 bytes), with the padding into `state`; the rest came before. `w`: 64 words.
 */
function finish(state, scratch, tailLength, totalLength, w) {
  scratch.fill(0, tailLength);
  scratch[tailLength] = 0x80;
  const blocks = tailLength + 9 > 64 ? 2 : 1;
  const end = blocks * 64;
  // Message length in bits, big-endian, in the last 8 bytes (lengths here stay far below 2^32).
  const bits = totalLength * 8;
  scratch[end - 4] = (bits >>> 24) & 0xff;
  scratch[end - 3] = (bits >>> 16) & 0xff;
  scratch[end - 2] = (bits >>> 8) & 0xff;
  scratch[end - 1] = bits & 0xff;
  for (let block = 0; block < blocks; block += 1) {
    loadBlock(w, scratch, block * 64);
    compress(state, w);
  }
}

/** SHA-256 of `bytes` (a Uint8Array): 32 bytes. */
export function sha256(bytes) {
  const state = Int32Array.from(H0);
  const w = new Int32Array(64);
  const whole = bytes.length - (bytes.length % 64);
  for (let offset = 0; offset < whole; offset += 64) {
    loadBlock(w, bytes, offset);
    compress(state, w);
  }
  const scratch = new Uint8Array(128);
  scratch.set(bytes.subarray(whole));
  finish(state, scratch, bytes.length - whole, bytes.length, w);
  const digest = new Uint8Array(32);
  state.forEach((word, i) => {
    digest[i * 4] = word >>> 24;
    digest[i * 4 + 1] = (word >>> 16) & 0xff;
    digest[i * 4 + 2] = (word >>> 8) & 0xff;
    digest[i * 4 + 3] = word & 0xff;
  });
  return digest;
}

/** Leading zero bits of a hash state (8 words). */
function zeroBits(state) {
  let bits = 0;
  for (let i = 0; i < 8; i += 1) {
    if (state[i] !== 0) return bits + Math.clz32(state[i]);
    bits += 32;
  }
  return bits;
}

/**
 * Looks for a decimal nonce such that SHA-256(`challenge:nonce`) starts with `difficulty` zero
 * bits, trying `count` nonces from `start`. Returns `{nonce, hashes}`, or `{nonce: null, hashes}`
 * when none of those solved it (so a caller on the main thread can yield between slices).
 */
export function solve(challenge, difficulty, { start = 0, count = Number.MAX_SAFE_INTEGER } = {}) {
  const prefix = new TextEncoder().encode(`${challenge}:`);
  const whole = prefix.length - (prefix.length % 64);
  const midstate = Int32Array.from(H0);
  const w = new Int32Array(64);
  for (let offset = 0; offset < whole; offset += 64) {
    loadBlock(w, prefix, offset);
    compress(midstate, w);
  }
  const tailLength = prefix.length - whole;
  const scratch = new Uint8Array(128);
  const state = new Int32Array(8);
  const end = Math.min(start + count, Number.MAX_SAFE_INTEGER);
  for (let n = start; n < end; n += 1) {
    const digits = String(n);
    scratch.set(prefix.subarray(whole));
    for (let i = 0; i < digits.length; i += 1) scratch[tailLength + i] = digits.charCodeAt(i);
    state.set(midstate);
    finish(state, scratch, tailLength + digits.length, prefix.length + digits.length, w);
    if (zeroBits(state) >= difficulty) return { nonce: digits, hashes: n - start + 1 };
  }
  return { nonce: null, hashes: end - start };
}

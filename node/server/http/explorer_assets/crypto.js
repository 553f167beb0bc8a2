// SHA-256 and ECDSA P-256 through WebCrypto (docs/PROTOCOL.md §1.3, §1.5, §1.6).
//
// Keys travel as 33-byte compressed points; WebCrypto imports only the uncompressed form, so
// the point is decompressed here (and thereby checked to be on the curve). Signatures are
// 64 bytes r||s, which is exactly WebCrypto's (IEEE P1363) form; low-S is checked here
// because WebCrypto accepts both twins.

export const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
export const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
export const CURVE_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
export const HALF_ORDER = CURVE_ORDER / 2n;
export const PUBLIC_KEY_SIZE = 33;
export const SIGNATURE_SIZE = 64;
export const MAX_CACHED_KEYS = 512;

export class BadSignature extends Error {
  constructor(message) {
    super(message);
    this.name = "BadSignature";
  }
}

export class CryptoUnavailable extends Error {
  constructor() {
    super(
      "WebCrypto is not available: browsers offer it only to secure pages; open the " +
        "explorer over HTTPS or on localhost / 127.0.0.1",
    );
    this.name = "CryptoUnavailable";
  }
}

function subtle() {
  const api = globalThis.crypto && globalThis.crypto.subtle;
  if (!api) throw new CryptoUnavailable();
  return api;
}

export function toHex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Hex (either case, even length) to bytes; null if it is not hex. */
export function fromHex(text) {
  if (typeof text !== "string" || text.length % 2 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

function bigFromBytes(bytes) {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function bytesFromBig(v, width) {
  const out = new Uint8Array(width);
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function modPow(base, exp, mod) {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
    exp >>= 1n;
  }
  return result;
}

/** The uncompressed point (65 bytes) of a compressed key; null if it is not a valid key. */
export function decompress(key) {
  if (!(key instanceof Uint8Array) || key.length !== PUBLIC_KEY_SIZE) return null;
  if (key[0] !== 2 && key[0] !== 3) return null;
  const x = bigFromBytes(key.subarray(1));
  if (x >= P) return null;
  const rhs = (((x * x * x - 3n * x + B) % P) + P) % P;
  let y = modPow(rhs, (P + 1n) / 4n, P);
  if ((y * y) % P !== rhs) return null;
  if (Number(y & 1n) !== (key[0] & 1)) y = P - y;
  return concat(Uint8Array.of(4), bytesFromBig(x, 32), bytesFromBig(y, 32));
}

export function isPublicKey(key) {
  return decompress(key) !== null;
}

const keyCache = new Map();

/** How many imported keys are cached (bounded by MAX_CACHED_KEYS). */
export function cachedKeys() {
  return keyCache.size;
}

async function importKey(key) {
  const hex = toHex(key);
  let imported = keyCache.get(hex);
  if (imported) return imported;
  const point = decompress(key);
  if (point === null) throw new BadSignature("bad public key: not a compressed P-256 point");
  imported = await subtle().importKey("raw", point, { name: "ECDSA", namedCurve: "P-256" }, false, [
    "verify",
  ]);
  if (keyCache.size >= MAX_CACHED_KEYS) keyCache.delete(keyCache.keys().next().value);
  keyCache.set(hex, imported);
  return imported;
}

/** Check a 64-byte low-S r||s signature of `key` over `message`; throw BadSignature if not. */
export async function verify(key, message, signature) {
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_SIZE) {
    throw new BadSignature("a signature is 64 bytes r||s");
  }
  const r = bigFromBytes(signature.subarray(0, 32));
  const s = bigFromBytes(signature.subarray(32));
  if (!(r > 0n && r < CURVE_ORDER && s > 0n && s <= HALF_ORDER)) {
    throw new BadSignature("signature out of range or not low-S");
  }
  if (!(key instanceof Uint8Array) || key.length !== PUBLIC_KEY_SIZE) {
    throw new BadSignature("a public key is 33 bytes");
  }
  const imported = await importKey(key);
  const ok = await subtle().verify({ name: "ECDSA", hash: "SHA-256" }, imported, signature, message);
  if (!ok) throw new BadSignature("signature does not verify");
}

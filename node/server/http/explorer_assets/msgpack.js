// Canonical msgpack (docs/PROTOCOL.md §2): a strict decoder and the canonical encoder.
//
// Values: null, true/false, integers (Number when safe, BigInt beyond), strings, Uint8Array
// (msgpack bin), Array, Map with string keys (decoded maps are Maps, so that "__proto__" is
// an ordinary key and duplicates are caught by the re-encoding check). Plain objects are
// accepted by the encoder as maps. Floats, ext types and 0xc1 are refused, as are non-text
// map keys. `decode` accepts bytes only if `encode` gives them back unchanged (§2.5).

export const MAX_DEPTH = 8;
export const MAX_ITEMS = 1 << 16;
export const DEFAULT_MAX_BYTES = 1 << 20;

export class Malformed extends Error {
  constructor(message) {
    super(message);
    this.name = "Malformed";
  }
}

export class TooLarge extends Malformed {
  constructor(message) {
    super(message);
    this.name = "TooLarge";
  }
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const MAX_UINT64 = (1n << 64n) - 1n;
const MIN_INT64 = -(1n << 63n);

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// --- encoder ---------------------------------------------------------------------------

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.len = 0;
  }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b) {
    this.room(1);
    this.buf[this.len++] = b;
  }
  bytes(bs) {
    this.room(bs.length);
    this.buf.set(bs, this.len);
    this.len += bs.length;
  }
  uint(n, width) {
    // big-endian unsigned of `width` bytes; n is a BigInt
    this.room(width);
    for (let i = width - 1; i >= 0; i--) {
      this.buf[this.len + i] = Number(n & 0xffn);
      n >>= 8n;
    }
    this.len += width;
  }
  result() {
    return this.buf.slice(0, this.len);
  }
}

function header(w, value, fix, fixMax, codes) {
  // codes: [[maxValue, code, width], ...] for the non-fix forms, shortest first
  if (fix !== null && value <= fixMax) {
    w.byte(fix + value);
    return;
  }
  for (const [max, code, width] of codes) {
    if (value <= max) {
      w.byte(code);
      w.uint(BigInt(value), width);
      return;
    }
  }
  throw new Malformed("too long for msgpack");
}

function encodeInt(w, value) {
  const v = typeof value === "bigint" ? value : BigInt(value);
  if (v > MAX_UINT64 || v < MIN_INT64) throw new Malformed("integer out of the 64-bit range");
  if (v >= 0n) {
    if (v <= 0x7fn) w.byte(Number(v));
    else if (v <= 0xffn) { w.byte(0xcc); w.uint(v, 1); }
    else if (v <= 0xffffn) { w.byte(0xcd); w.uint(v, 2); }
    else if (v <= 0xffffffffn) { w.byte(0xce); w.uint(v, 4); }
    else { w.byte(0xcf); w.uint(v, 8); }
    return;
  }
  if (v >= -32n) w.byte(Number(v + 256n));
  else if (v >= -128n) { w.byte(0xd0); w.uint(v + 0x100n, 1); }
  else if (v >= -32768n) { w.byte(0xd1); w.uint(v + 0x10000n, 2); }
  else if (v >= -(1n << 31n)) { w.byte(0xd2); w.uint(v + (1n << 32n), 4); }
  else { w.byte(0xd3); w.uint(v + (1n << 64n), 8); }
}

function encodeText(value) {
  if (typeof value.isWellFormed === "function" && !value.isWellFormed()) {
    throw new Malformed("text is not valid Unicode (unpaired surrogate)");
  }
  return utf8.encode(value);
}

function mapEntries(value) {
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  const keyed = entries.map(([k, v]) => {
    if (typeof k !== "string") throw new Malformed("map keys must be text");
    return [encodeText(k), v];
  });
  keyed.sort((a, b) => compareBytes(a[0], b[0]));
  for (let i = 1; i < keyed.length; i++) {
    if (compareBytes(keyed[i - 1][0], keyed[i][0]) === 0) {
      throw new Malformed("two map keys have the same text");
    }
  }
  return keyed;
}

function encodeValue(w, value, depth) {
  if (value === null) return w.byte(0xc0);
  if (value === false) return w.byte(0xc2);
  if (value === true) return w.byte(0xc3);
  if (typeof value === "bigint") return encodeInt(w, value);
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new Malformed("floats are not allowed");
    if (!Number.isSafeInteger(value)) throw new Malformed("use a BigInt beyond 2^53");
    return encodeInt(w, value);
  }
  if (typeof value === "string") {
    const b = encodeText(value);
    header(w, b.length, 0xa0, 31, [[0xff, 0xd9, 1], [0xffff, 0xda, 2], [0xffffffff, 0xdb, 4]]);
    return w.bytes(b);
  }
  if (value instanceof Uint8Array) {
    header(w, value.length, null, 0, [[0xff, 0xc4, 1], [0xffff, 0xc5, 2], [0xffffffff, 0xc6, 4]]);
    return w.bytes(value);
  }
  if (Array.isArray(value)) {
    if (value.length && depth + 1 > MAX_DEPTH) throw new Malformed(`nesting deeper than ${MAX_DEPTH}`);
    header(w, value.length, 0x90, 15, [[0xffff, 0xdc, 2], [0xffffffff, 0xdd, 4]]);
    for (const item of value) encodeValue(w, item, depth + 1);
    return undefined;
  }
  if (value instanceof Map || (typeof value === "object" && value !== null)) {
    const entries = mapEntries(value);
    if (entries.length && depth + 1 > MAX_DEPTH) throw new Malformed(`nesting deeper than ${MAX_DEPTH}`);
    header(w, entries.length, 0x80, 15, [[0xffff, 0xde, 2], [0xffffffff, 0xdf, 4]]);
    for (const [key, item] of entries) {
      header(w, key.length, 0xa0, 31, [[0xff, 0xd9, 1], [0xffff, 0xda, 2], [0xffffffff, 0xdb, 4]]);
      w.bytes(key);
      encodeValue(w, item, depth + 1);
    }
    return undefined;
  }
  throw new Malformed(`type ${typeof value} has no canonical encoding`);
}

/** The canonical encoding of `value` (maps sorted by UTF-8 key bytes, shortest forms). */
export function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 0);
  return w.result();
}

// --- decoder ---------------------------------------------------------------------------

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.b.length) throw new Malformed("not valid msgpack: truncated");
  }
  u8() {
    this.need(1);
    return this.b[this.pos++];
  }
  uint(width) {
    this.need(width);
    let v = 0n;
    for (let i = 0; i < width; i++) v = (v << 8n) | BigInt(this.b[this.pos + i]);
    this.pos += width;
    return v;
  }
  take(n) {
    this.need(n);
    const out = this.b.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function small(v) {
  // BigInt -> Number when it is exactly representable
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}

function signed(v, width) {
  const bits = BigInt(width * 8);
  return v >= 1n << (bits - 1n) ? v - (1n << bits) : v;
}

function decodeValue(r, depth, limit) {
  const code = r.u8();
  if (code <= 0x7f) return code;
  if (code >= 0xe0) return code - 256;
  if (code >= 0xa0 && code <= 0xbf) return readText(r, code - 0xa0, limit);
  if (code >= 0x90 && code <= 0x9f) return readArray(r, code - 0x90, depth, limit);
  if (code >= 0x80 && code <= 0x8f) return readMap(r, code - 0x80, depth, limit);
  switch (code) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: case 0xc5: case 0xc6: {
      const n = Number(r.uint({ 0xc4: 1, 0xc5: 2, 0xc6: 4 }[code]));
      if (n > limit) throw new Malformed("bin longer than the input limit");
      return r.take(n);
    }
    case 0xd9: case 0xda: case 0xdb:
      return readText(r, Number(r.uint({ 0xd9: 1, 0xda: 2, 0xdb: 4 }[code])), limit);
    case 0xdc: case 0xdd:
      return readArray(r, Number(r.uint(code === 0xdc ? 2 : 4)), depth, limit);
    case 0xde: case 0xdf:
      return readMap(r, Number(r.uint(code === 0xde ? 2 : 4)), depth, limit);
    case 0xcc: return small(r.uint(1));
    case 0xcd: return small(r.uint(2));
    case 0xce: return small(r.uint(4));
    case 0xcf: return small(r.uint(8));
    case 0xd0: return small(signed(r.uint(1), 1));
    case 0xd1: return small(signed(r.uint(2), 2));
    case 0xd2: return small(signed(r.uint(4), 4));
    case 0xd3: return small(signed(r.uint(8), 8));
    case 0xca: case 0xcb: throw new Malformed("floats are not allowed");
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
      throw new Malformed("msgpack ext types are not allowed");
    default: throw new Malformed(`not valid msgpack: byte 0x${code.toString(16)}`);
  }
}

function readText(r, n, limit) {
  if (n > limit) throw new Malformed("text longer than the input limit");
  try {
    return strictUtf8.decode(r.take(n));
  } catch (err) {
    if (err instanceof Malformed) throw err;
    throw new Malformed("text is not valid UTF-8");
  }
}

function container(n, depth) {
  if (n > MAX_ITEMS) throw new Malformed(`more than ${MAX_ITEMS} items in a container`);
  if (n && depth >= MAX_DEPTH) throw new Malformed(`nesting deeper than ${MAX_DEPTH}`);
}

function readArray(r, n, depth, limit) {
  container(n, depth);
  const out = [];
  for (let i = 0; i < n; i++) out.push(decodeValue(r, depth + 1, limit));
  return out;
}

function readMap(r, n, depth, limit) {
  container(n, depth);
  const out = new Map();
  for (let i = 0; i < n; i++) {
    const key = decodeValue(r, depth + 1, limit);
    if (typeof key !== "string") throw new Malformed("map keys must be text");
    out.set(key, decodeValue(r, depth + 1, limit));
  }
  return out;
}

function asBytes(data) {
  if (!(data instanceof Uint8Array)) throw new Malformed("expected bytes");
  return data;
}

/** Parse one msgpack value within the limits, without the canonical check. */
export function decodeUncanonical(data, maxBytes = DEFAULT_MAX_BYTES) {
  const bytes = asBytes(data);
  if (bytes.length > maxBytes) {
    throw new TooLarge(`${bytes.length} bytes exceeds the limit of ${maxBytes}`);
  }
  const r = new Reader(bytes);
  const value = decodeValue(r, 0, maxBytes);
  if (r.pos !== bytes.length) throw new Malformed("trailing bytes after the value");
  return value;
}

/** Decode canonical msgpack: refuse anything that does not re-encode to the same bytes. */
export function decode(data, maxBytes = DEFAULT_MAX_BYTES) {
  const value = decodeUncanonical(data, maxBytes);
  if (!bytesEqual(encode(value), data)) {
    throw new Malformed("not canonical: unsorted or duplicate keys, or non-shortest form");
  }
  return value;
}

// The in-page verifier: genesis (§8), headers and commits (§6, §7.6, §7.7), event envelopes
// (§3.6) and proof bundles (§9.3) of docs/PROTOCOL.md, step by step and with the same
// failure reasons as the reference verifier (ledger/provenance.py). Nothing the node says is
// trusted except what the pinned genesis' validators signed.
//
// A bundle is checked by the verifier registered for its `version` (BUNDLE_VERIFIERS):
// version 2 adds the dataset record's state proof against the header's `state_root` and
// completeness (the events are exactly the record's history commitment), and checks the
// grants' state proofs it carries; version 1 (no completeness) is still read, for saved
// bundles.
//
// A checkpoint signed by a validator set that governance changed since genesis carries the
// `transitions` that lead there (§19.4): each one is checked against the set trusted so far,
// from genesis's on, exactly as ledger/transitions.py `walk` does.

import { Malformed, TooLarge, bytesEqual, decode, decodeUncanonical, encode } from "./msgpack.js";
import {
  BadSignature,
  concat,
  PUBLIC_KEY_SIZE,
  SIGNATURE_SIZE,
  fromHex,
  isPublicKey,
  sha256,
  toHex,
  verify as verifySignature,
} from "./crypto.js";
import { leafHash, rootFromLeafHashes, verifyInclusion, ProofMismatch } from "./merkle.js";
import { BadStateProof, StateProofInvalid, parseStateProof, verifyState } from "./smt.js";

export const BUNDLE_VERSION = 2;
export const INCOMPLETE = "incomplete: the node omitted events";
const DATASET_PREFIX = Uint8Array.of(0x73, 0x64); // "sd"
const GRANT_PREFIX = Uint8Array.of(0x73, 0x67); // "sg"
const PARTICIPANT_PREFIX = Uint8Array.of(0x73, 0x70); // "sp"
const HISTORY_PREFIX = Uint8Array.of(0x04);
export const MAX_PAGES = 1000;
export const MAX_ENVELOPE_BYTES = 16384;
export const MAX_TEXT = 1024;
export const MAX_META_ENTRIES = 32;
export const MAX_LIST = 64;
export const NONCE_SIZE = 16;
export const MAX_CHAIN_ID = 64;
export const MAX_VALIDATORS = 128;
export const MAX_POWER = 65536;
export const HEADER_FIELDS = [
  "chain", "events_root", "height", "prev", "proposer",
  "state_root", "time", "tree_root", "tree_size", "validators",
];
export const NEXT_VALIDATORS = "next_validators";
export const MAX_TRANSITIONS = 4096;
/** A change decided in block h is in force from h + 2: the first header naming a new set is 2. */
export const ACTIVATION_DELAY = 2;
export const MAX_CHANGE_NAME = 64;
export const MAX_CHANGE_URL = 256;
const MAX_UINT64_SIGNED = 1n << 63n;
export const EVENT_TYPES = {
  admit: { required: ["subject", "role", "name"], optional: [] },
  register: { required: ["dataset", "meta", "open"], optional: [] },
  grant: { required: ["dataset", "to", "purposes", "reshare"], optional: ["expires"] },
  revoke: { required: ["grant"], optional: [] },
  transfer: { required: ["dataset", "to"], optional: ["grant"] },
  use: { required: ["dataset", "purpose"], optional: ["grant"] },
  derive: { required: ["dataset", "inputs", "meta"], optional: [] },
  destroy: { required: ["dataset"], optional: [] },
  attest: { required: ["dataset", "claim", "meta"], optional: [] },
  propose: { required: ["change"], optional: [] },
  approve: { required: ["proposal"], optional: [] },
  suspend: { required: ["subject"], optional: [] },
  reinstate: { required: ["subject"], optional: [] },
  rotate: { required: ["subject", "to", "possession"], optional: [] },
};
/** The fields of each governance change besides `op` (§19.1). */
export const CHANGE_FIELDS = {
  "add-validator": ["name", "power", "public_key", "url"],
  "remove-validator": ["public_key"],
  "set-power": ["power", "public_key"],
  "add-registrar": ["public_key"],
  "remove-registrar": ["public_key"],
  "set-param": ["name", "value"],
};
const COMMON_FIELDS = ["chain", "actor", "time", "nonce"];

export class VerificationFailed extends Error {
  constructor(reason, detail) {
    super(`${reason}: ${detail}`);
    this.name = "VerificationFailed";
    this.reason = reason;
    this.detail = detail;
  }
}

// --- field checks (§3.2, §3.3) ----------------------------------------------------------

const isBytes = (v) => v instanceof Uint8Array;
const isInt = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
const isUint = (v) => isInt(v) && v >= 0;
const codePoints = (s) => [...s].length;

function text(value, name, allowEmpty = false) {
  if (typeof value !== "string") throw new Malformed(`${name} must be text`);
  if (!allowEmpty && !value) throw new Malformed(`${name} must not be empty`);
  if (codePoints(value) > MAX_TEXT) throw new Malformed(`${name} is longer than ${MAX_TEXT} characters`);
  return value;
}

function hash32(value, name) {
  if (!isBytes(value) || value.length !== 32) throw new Malformed(`${name} must be 32 bytes`);
  return value;
}

function pubkey(value, name) {
  if (!isBytes(value)) throw new Malformed(`${name} must be a public key (bytes)`);
  if (value.length !== PUBLIC_KEY_SIZE || !isPublicKey(value)) {
    throw new Malformed(`${name}: not a compressed P-256 public key`);
  }
  return value;
}

function uint(value, name) {
  if (!isUint(value)) throw new Malformed(`${name} must be a non-negative integer`);
  return value;
}

function bool(value, name) {
  if (typeof value !== "boolean") throw new Malformed(`${name} must be a boolean`);
  return value;
}

function meta(value) {
  if (!(value instanceof Map)) throw new Malformed("meta must be a map");
  if (value.size > MAX_META_ENTRIES) throw new Malformed(`meta has more than ${MAX_META_ENTRIES} entries`);
  for (const [key, item] of value) {
    text(key, "meta key");
    if (typeof item === "string") {
      if (codePoints(item) > MAX_TEXT) throw new Malformed(`meta.${key} is longer than ${MAX_TEXT}`);
    } else if (isBytes(item)) {
      if (item.length > MAX_TEXT) throw new Malformed(`meta.${key} is longer than ${MAX_TEXT}`);
    } else if (!isInt(item) && typeof item !== "boolean") {
      throw new Malformed(`meta.${key} must be text, bytes, an integer or a boolean`);
    }
  }
  return value;
}

function list(value, name, item) {
  if (!Array.isArray(value) || !value.length || value.length > MAX_LIST) {
    throw new Malformed(`${name} must be a list of 1..${MAX_LIST} entries`);
  }
  const items = value.map((v) => item(v, name));
  const seen = new Set(items.map((v) => (isBytes(v) ? toHex(v) : v)));
  if (seen.size !== items.length) throw new Malformed(`${name} has duplicates`);
  return items;
}

function boundedText(value, name, limit, allowEmpty) {
  if (typeof value !== "string" || codePoints(value) > limit || (!value && !allowEmpty)) {
    throw new Malformed(`${name} must be text of ${allowEmpty ? 0 : 1}..${limit} characters`);
  }
  return value;
}

const CHANGE_CHECKS = {
  public_key: (v) => {
    if (!isBytes(v)) throw new Malformed("change public_key must be bytes");
    return pubkey(v, "change public_key");
  },
  name: (v) => boundedText(v, "change name", MAX_CHANGE_NAME, false),
  url: (v) => boundedText(v, "change url", MAX_CHANGE_URL, true),
  power: (v) => {
    if (!isInt(v) || v <= 0 || v > MAX_POWER) throw new Malformed(`validator power must be an integer in 1..${MAX_POWER}`);
    return v;
  },
  value: (v) => {
    if (!isUint(v) || BigInt(v) >= MAX_UINT64_SIGNED) throw new Malformed("change value must be a non-negative 64-bit integer");
    return v;
  },
};

/** A `change` map (§19.1), checked strictly: its op, exactly that op's fields, well typed. */
export function parseChange(value) {
  if (!(value instanceof Map)) throw new Malformed("change must be a map");
  const op = value.get("op");
  const allowed = typeof op === "string" && Object.hasOwn(CHANGE_FIELDS, op) ? CHANGE_FIELDS[op] : null;
  if (allowed === null) throw new Malformed(`change op must be one of ${Object.keys(CHANGE_FIELDS).sort().join(", ")}`);
  const given = [...value.keys()].filter((k) => k !== "op").sort();
  if (given.length !== allowed.length || given.some((k, i) => k !== allowed[i])) {
    throw new Malformed(`a ${op} change has exactly the fields ${allowed.join(", ")}`);
  }
  for (const name of allowed) CHANGE_CHECKS[name](value.get(name));
  return value;
}

const FIELD_CHECKS = {
  chain: (v) => text(v, "chain"),
  actor: (v) => pubkey(v, "actor"),
  time: (v) => uint(v, "time"),
  nonce: (v) => {
    if (!isBytes(v) || v.length !== NONCE_SIZE) throw new Malformed(`nonce must be ${NONCE_SIZE} bytes`);
    return v;
  },
  subject: (v) => pubkey(v, "subject"),
  to: (v) => pubkey(v, "to"),
  role: (v) => {
    if (v !== "participant" && v !== "registrar") throw new Malformed("role must be participant or registrar");
    return v;
  },
  name: (v) => text(v, "name"),
  dataset: (v) => hash32(v, "dataset"),
  grant: (v) => hash32(v, "grant"),
  meta,
  open: (v) => bool(v, "open"),
  reshare: (v) => bool(v, "reshare"),
  purposes: (v) => list(v, "purposes", text),
  expires: (v) => uint(v, "expires"),
  purpose: (v) => text(v, "purpose"),
  inputs: (v) => list(v, "inputs", hash32),
  claim: (v) => text(v, "claim"),
  change: parseChange,
  proposal: (v) => hash32(v, "proposal"),
  possession: (v) => {
    if (!isBytes(v) || v.length !== SIGNATURE_SIZE) throw new Malformed(`possession must be a ${SIGNATURE_SIZE}-byte signature r||s`);
    return v;
  },
};

/** A body map checked field by field (§3.6 step 5): a plain object of its fields. */
export function parseBody(doc) {
  const v = doc.get("v");
  if (v !== 1) throw new Malformed("unsupported event version (expected v = 1)");
  const type = doc.get("type");
  const spec = typeof type === "string" && Object.hasOwn(EVENT_TYPES, type) ? EVENT_TYPES[type] : null;
  if (spec === null) throw new Malformed(`unknown event type ${JSON.stringify(String(type))}`);
  const allowed = new Set([...COMMON_FIELDS, ...spec.required, ...spec.optional]);
  const given = [...doc.keys()].filter((k) => k !== "v" && k !== "type");
  const missing = [...COMMON_FIELDS, ...spec.required].filter((k) => !doc.has(k));
  if (missing.length) throw new Malformed(`${type} event is missing ${missing.join(", ")}`);
  const unknown = given.filter((k) => !allowed.has(k));
  if (unknown.length) throw new Malformed(`${type} event has unknown fields ${unknown.join(", ")}`);
  const body = { type };
  for (const name of given) body[name] = FIELD_CHECKS[name](doc.get(name));
  if (type === "derive" && body.inputs.some((i) => bytesEqual(i, body.dataset))) {
    throw new Malformed("a derived dataset cannot be its own input");
  }
  return body;
}

/** Datasets an event names directly (§9.3 step 5.5; revoke names a grant instead). */
export function datasetsOf(body) {
  if (body.type === "derive") return [body.dataset, ...body.inputs];
  return body.dataset ? [body.dataset] : [];
}

/**
 * Decode an envelope (§3.6) and check its signature: {body, bodyBytes, signature, envelope,
 * id}. Throws TooLarge / Malformed / BadSignature, in the order of the steps.
 */
export async function decodeEnvelope(envelope, chainId = null) {
  if (!isBytes(envelope)) throw new Malformed("an envelope is bytes");
  if (envelope.length > MAX_ENVELOPE_BYTES) {
    throw new TooLarge(`envelope of ${envelope.length} bytes exceeds ${MAX_ENVELOPE_BYTES}`);
  }
  const outer = decodeUncanonical(envelope, MAX_ENVELOPE_BYTES);
  if (!(outer instanceof Map) || outer.size !== 2 || !outer.has("body") || !outer.has("sig")) {
    throw new Malformed('an envelope is exactly {"body", "sig"}');
  }
  const bodyBytes = outer.get("body");
  const signature = outer.get("sig");
  if (!isBytes(bodyBytes) || !isBytes(signature)) throw new Malformed("envelope body and sig are bytes");
  if (signature.length !== SIGNATURE_SIZE) throw new Malformed("sig must be 64 bytes r||s");
  if (!bytesEqual(encode(new Map([["body", bodyBytes], ["sig", signature]])), envelope)) {
    throw new Malformed("the envelope is not in canonical form");
  }
  const doc = decodeUncanonical(bodyBytes, MAX_ENVELOPE_BYTES);
  if (!(doc instanceof Map)) throw new Malformed("an event body is a map");
  const body = parseBody(doc);
  if (!bytesEqual(encode(doc), bodyBytes)) throw new Malformed("the event body is not in canonical form");
  if (chainId !== null && body.chain !== chainId) {
    throw new Malformed(`event is for chain ${JSON.stringify(body.chain)}, not ${JSON.stringify(chainId)}`);
  }
  await verifySignature(body.actor, bodyBytes, signature);
  return { body, bodyBytes, signature, envelope, id: await sha256(bodyBytes) };
}

// --- genesis (§8) ------------------------------------------------------------------------

function genesisKey(hex, what) {
  const key = fromHex(hex);
  if (key === null || key.length !== PUBLIC_KEY_SIZE || !isPublicKey(key)) {
    throw new Malformed(`${what} is not a compressed P-256 public key`);
  }
  return key;
}

function genesisValidator(doc) {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new Malformed("bad validator entry");
  const publicKey = genesisKey(doc.public_key, "validator public_key");
  const { power, name } = doc;
  const url = doc.url === undefined ? "" : doc.url;
  const operator = doc.operator === undefined ? null : genesisKey(doc.operator, "validator operator");
  if (!Number.isInteger(power) || power <= 0 || power > MAX_POWER) {
    throw new Malformed(`validator power must be an integer in 1..${MAX_POWER}`);
  }
  if (typeof name !== "string" || typeof url !== "string") throw new Malformed("validator name and url must be text");
  return { name, publicKey, power, url, operator };
}

/**
 * A validator set from its JSON form (genesis's `validators`, §8.1, or a transition's,
 * §19.4): {validators, byKey, totalPower, hash}, `hash` as §8.3 (each member's map with
 * `operator` only when it has one).
 */
export async function parseValidatorSet(doc) {
  if (!Array.isArray(doc) || !doc.length || doc.length > MAX_VALIDATORS) {
    throw new Malformed(`a validator set has 1..${MAX_VALIDATORS} members`);
  }
  const validators = doc.map(genesisValidator);
  const byKey = new Map(validators.map((v) => [toHex(v.publicKey), v]));
  if (byKey.size !== validators.length) throw new Malformed("a validator appears twice in the set");
  const committed = validators.map((v) => {
    const member = new Map([["name", v.name], ["power", v.power], ["public_key", v.publicKey]]);
    if (v.operator !== null) member.set("operator", v.operator);
    return member;
  });
  return {
    validators,
    byKey,
    totalPower: validators.reduce((n, v) => n + v.power, 0),
    hash: await sha256(encode(committed)),
  };
}

/**
 * Parse genesis file bytes (§8.1) and compute what a verifier needs: the fingerprint
 * (SHA-256 of the file's bytes) and the validator set hash (§8.3). Other keys (such as the
 * chain's consensus `params`) do not enter checkpoint verification and are not read here.
 */
export async function parseGenesis(bytes) {
  let doc;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new Malformed(`the genesis is not JSON: ${err.message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new Malformed("genesis is a JSON object");
  const chainId = doc.chain_id;
  if (typeof chainId !== "string" || !chainId.length || codePoints(chainId) > MAX_CHAIN_ID) {
    throw new Malformed(`chain_id must be 1..${MAX_CHAIN_ID} characters`);
  }
  const genesisTime = doc.genesis_time === undefined ? 0 : doc.genesis_time;
  if (!Number.isSafeInteger(genesisTime) || genesisTime < 0) {
    throw new Malformed("genesis_time is a non-negative integer (Unix ms)");
  }
  const admission = doc.admission === undefined ? "permissioned" : doc.admission;
  if (admission !== "permissioned" && admission !== "open") throw new Malformed("admission must be permissioned or open");
  const validatorSet = await parseValidatorSet(doc.validators);
  if (!Array.isArray(doc.registrars) || !doc.registrars.length) throw new Malformed("genesis names at least one registrar");
  const registrars = doc.registrars.map((r) => genesisKey(r, "registrar"));
  return {
    chainId,
    genesisTime,
    admission,
    validatorSet,
    validators: validatorSet.validators,
    registrars,
    validatorsHash: validatorSet.hash,
    byKey: validatorSet.byKey,
    totalPower: validatorSet.totalPower,
    fingerprint: toHex(await sha256(bytes)),
    bytes,
  };
}

// --- headers, commits and checkpoints (§6.1, §7.6, §7.7) --------------------------------

/** Decode canonical header bytes into a plain object (bytes stay Uint8Array). */
export function decodeHeader(bytes) {
  const doc = decode(bytes);
  if (!(doc instanceof Map)) throw new Malformed("expected a map");
  const keys = [...doc.keys()].filter((k) => k !== NEXT_VALIDATORS).sort();
  if (keys.length !== HEADER_FIELDS.length || keys.some((k, i) => k !== HEADER_FIELDS[i])) {
    throw new Malformed(`a header has exactly the fields ${HEADER_FIELDS.join(", ")} (and ${NEXT_VALIDATORS} when the validator set changes)`);
  }
  const header = {};
  for (const name of ["height", "time", "tree_size"]) header[name] = uint(doc.get(name), `field '${name}'`);
  if (typeof doc.get("chain") !== "string") throw new Malformed("field 'chain' has the wrong type");
  header.chain = doc.get("chain");
  if (!isBytes(doc.get("proposer"))) throw new Malformed("field 'proposer' has the wrong type");
  header.proposer = doc.get("proposer");
  for (const name of ["prev", "events_root", "tree_root", "state_root", "validators"]) {
    header[name] = hash32(doc.get(name), `field '${name}'`);
  }
  if (doc.has(NEXT_VALIDATORS)) {
    header.next_validators = hash32(doc.get(NEXT_VALIDATORS), `field '${NEXT_VALIDATORS}'`);
    if (bytesEqual(header.next_validators, header.validators)) {
      throw new Malformed("a header names next_validators only when the set changes");
    }
  }
  return header;
}

function hexField(value, what) {
  const bytes = fromHex(value);
  if (bytes === null) throw new Malformed(`${what}: expected a hex string`);
  return bytes;
}

/** Parse a commit's JSON form (§7.6) as strictly as the wire form. */
export function parseCommit(doc) {
  if (typeof doc !== "object" || doc === null || !Array.isArray(doc.signatures)) {
    throw new Malformed("a commit is an object with a signatures list");
  }
  const signatures = doc.signatures.map((s) => {
    if (typeof s !== "object" || s === null) throw new Malformed("bad commit signature entry");
    return { validator: hexField(s.validator, "validator"), signature: hexField(s.signature, "signature") };
  });
  const blockHash = hexField(doc.block_hash, "block_hash");
  for (const name of ["height", "round"]) {
    if (!Number.isSafeInteger(doc[name]) || doc[name] < 0) throw new Malformed(`field '${name}' must be a non-negative integer`);
  }
  if (blockHash.length !== 32) throw new Malformed("field 'block' must be a 32-byte hash");
  return { height: doc.height, round: doc.round, blockHash, signatures };
}

export function precommitSignBytes(chainId, height, round, blockHash) {
  return encode(
    new Map([
      ["block", blockHash],
      ["chain", chainId],
      ["height", height],
      ["round", round],
      ["type", "precommit"],
    ]),
  );
}

/** §7.6 against the validator set `set`: every signature, distinct signers, more than 2/3 of the power. */
export async function verifyCommit(commit, chainId, set) {
  const message = precommitSignBytes(chainId, commit.height, commit.round, commit.blockHash);
  const signers = new Set();
  let power = 0;
  for (const entry of commit.signatures) {
    const hex = toHex(entry.validator);
    if (signers.has(hex)) throw new VerificationFailed("commit invalid", "a validator signed twice");
    const member = set.byKey.get(hex);
    if (!member) throw new VerificationFailed("commit invalid", "signature from a non-validator");
    try {
      await verifySignature(entry.validator, message, entry.signature);
    } catch (err) {
      if (!(err instanceof BadSignature)) throw err;
      throw new VerificationFailed("commit invalid", `bad precommit signature: ${err.message}`);
    }
    signers.add(hex);
    power += member.power;
  }
  if (!(3 * power > 2 * set.totalPower)) {
    throw new VerificationFailed("insufficient voting power", `${power} of ${set.totalPower} is not more than 2/3`);
  }
  return { signers: [...signers], power, count: signers.size };
}

/** §7.7: `commit` certifies the header (bytes hashing to `blockHash`) for this chain and `set`. */
async function verifySigned(header, blockHash, commit, chainId, set) {
  if (header.chain !== chainId) {
    throw new VerificationFailed("wrong chain", `${JSON.stringify(header.chain)} is not ${JSON.stringify(chainId)}`);
  }
  if (!bytesEqual(header.validators, set.hash)) {
    throw new VerificationFailed("wrong validator set", "header names another validator set");
  }
  if (commit.height !== Number(header.height) || !bytesEqual(commit.blockHash, blockHash)) {
    throw new VerificationFailed("commit mismatch", "commit is for another block");
  }
  return verifyCommit(commit, chainId, set);
}

function asCheckpointPart(parse) {
  try {
    return parse();
  } catch (err) {
    if (err instanceof Malformed) throw new VerificationFailed("malformed checkpoint", err.message);
    throw err;
  }
}

/** One transition's JSON form (§19.4) parsed: {header, blockHash, commit, set}. */
async function parseTransition(doc) {
  const bad = (detail) => new VerificationFailed("malformed transition", detail);
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw bad("a transition is an object");
  let header;
  let headerBytes;
  let commit;
  let set;
  try {
    headerBytes = fromHex(doc.header_bytes);
    if (headerBytes === null) throw new Malformed("header_bytes is not hex");
    header = decodeHeader(headerBytes);
    commit = parseCommit(doc.commit);
    set = await parseValidatorSet(doc.validators);
  } catch (err) {
    if (err instanceof Malformed) throw bad(err.message);
    throw err;
  }
  if (typeof doc.height !== "number" || doc.height !== Number(header.height) + 1) {
    throw bad("height is not the header's height + 1");
  }
  return { header, blockHash: await sha256(headerBytes), commit, set };
}

/**
 * Walk `transitions` (§19.4) from genesis's set to the one that signs heights from the last
 * transition below `below` (the checkpoint's height) on: {set, since, count}, `since` the
 * height from which that set is in force (0: genesis's). Header heights strictly increase
 * from at least ACTIVATION_DELAY; more than MAX_TRANSITIONS are refused before any is parsed.
 */
export async function walkTransitions(genesis, transitions, below) {
  if (transitions.length > MAX_TRANSITIONS) {
    throw new VerificationFailed("too many transitions", `more than ${MAX_TRANSITIONS}`);
  }
  let trusted = genesis.validatorSet;
  let last = 0;
  for (const doc of transitions) {
    const step = await parseTransition(doc);
    const height = Number(step.header.height);
    if (height < ACTIVATION_DELAY || height <= last || height >= below) {
      throw new VerificationFailed("bad validator-set transition", `transition at header ${height} is out of order or not below ${below}`);
    }
    await verifySigned(step.header, step.blockHash, step.commit, genesis.chainId, trusted);
    if (!step.header.next_validators || !bytesEqual(step.header.next_validators, step.set.hash)) {
      throw new VerificationFailed("bad validator-set transition", `the set given for height ${height + 1} is not the one header ${height} names`);
    }
    trusted = step.set;
    last = height;
  }
  return { set: trusted, since: last === 0 ? 0 : last + 1, count: transitions.length };
}

/**
 * A checkpoint `{header_bytes, commit, [transitions]}` against the genesis (§7.7, §9.3
 * steps 3-4, §19.4): the decoded header, its block hash, the signers and the set that
 * signed it (`set`, in force since height `setSince`, reached through `transitionCount`
 * transitions; genesis's when there are none).
 */
export async function verifyCheckpoint(point, genesis) {
  if (typeof point !== "object" || point === null || Array.isArray(point)) {
    throw new VerificationFailed("malformed bundle", "missing or mistyped 'checkpoint'");
  }
  if (typeof point.header_bytes !== "string") throw new VerificationFailed("malformed bundle", "missing or mistyped 'header_bytes'");
  const headerBytes = fromHex(point.header_bytes);
  if (headerBytes === null) throw new VerificationFailed("malformed bundle", "header_bytes is not hex");
  const header = asCheckpointPart(() => decodeHeader(headerBytes));
  if (typeof point.commit !== "object" || point.commit === null || Array.isArray(point.commit)) {
    throw new VerificationFailed("malformed bundle", "missing or mistyped 'commit'");
  }
  const commit = asCheckpointPart(() => parseCommit(point.commit));
  const steps = point.transitions === undefined ? [] : point.transitions;
  if (!Array.isArray(steps)) throw new VerificationFailed("malformed checkpoint", "transitions is a list");
  const walked = await walkTransitions(genesis, steps, Number(header.height));
  const blockHash = await sha256(headerBytes);
  const signed = await verifySigned(header, blockHash, commit, genesis.chainId, walked.set);
  return {
    header,
    headerBytes,
    blockHash,
    commit,
    ...signed,
    set: walked.set,
    setSince: walked.since,
    transitionCount: walked.count,
    validatorCount: walked.set.validators.length,
    totalPower: walked.set.totalPower,
  };
}

// --- bundles (§9) ------------------------------------------------------------------------

function field(doc, name, check) {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc) || !check(doc[name])) {
    throw new VerificationFailed("malformed bundle", `missing or mistyped '${name}'`);
  }
  return doc[name];
}

const isString = (v) => typeof v === "string";

function hexOf(value, name) {
  const bytes = isString(value) ? fromHex(value) : null;
  if (bytes === null) throw new VerificationFailed("malformed bundle", `${name} is not hex`);
  return bytes;
}

async function verifyEntry(entry, position, genesis, checkpoint) {
  const where = `event ${position}`;
  const envelope = hexOf(field(entry, "envelope", isString), `${where} envelope`);
  const leafIndex = field(entry, "leaf_index", Number.isSafeInteger);
  const path = field(entry, "audit_path", Array.isArray).map((h) => hexOf(h, `${where} audit path`));
  let event;
  try {
    event = await decodeEnvelope(envelope, genesis.chainId);
  } catch (err) {
    if (err instanceof BadSignature) throw new VerificationFailed("event signature invalid", `${where}: ${err.message}`);
    if (err instanceof Malformed) throw new VerificationFailed("event malformed", `${where}: ${err.message}`);
    throw err;
  }
  return { event, leafIndex, path, where, envelope };
}

/** §9.3 for bundles of version 1. */
async function verifyBundleV1(bundle, genesis) {
  const dataset = hexOf(field(bundle, "dataset", isString), "dataset");
  const checkpoint = await verifyCheckpoint(field(bundle, "checkpoint", (v) => typeof v === "object" && v !== null && !Array.isArray(v)), genesis);
  const { header } = checkpoint;
  const proven = [];
  const grantIds = new Set();
  let last = -1;
  const entries = field(bundle, "events", Array.isArray);
  for (let position = 0; position < entries.length; position++) {
    const { event, leafIndex, path, where, envelope } = await verifyEntry(entries[position], position, genesis, checkpoint);
    if (leafIndex <= last) throw new VerificationFailed("events out of log order", where);
    last = leafIndex;
    try {
      await verifyInclusion(await leafHash(envelope), leafIndex, Number(header.tree_size), path, header.tree_root);
    } catch (err) {
      if (err instanceof ProofMismatch) throw new VerificationFailed("inclusion proof invalid", `${where}: ${err.message}`);
      throw err;
    }
    const names =
      event.body.type === "revoke"
        ? grantIds.has(toHex(event.body.grant))
        : datasetsOf(event.body).some((d) => bytesEqual(d, dataset));
    if (!names) throw new VerificationFailed("event is about another dataset", where);
    if (event.body.type === "grant") grantIds.add(toHex(event.id));
    proven.push({ event, leafIndex });
  }
  if (!proven.length) throw new VerificationFailed("no origin", "the bundle has no events");
  const origin = proven[0].event.body;
  if (!(origin.type === "register" || origin.type === "derive") || !bytesEqual(origin.dataset, dataset)) {
    throw new VerificationFailed("no origin", "the first event does not register the dataset");
  }
  return buildStory(dataset, checkpoint, proven, null);
}

// --- version 2: state proofs and completeness ------------------------------------------

/** One state entry `{key, value, proof}` against `root`: the decoded record, or null. */
async function provenEntry(entry, key, root, what) {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new VerificationFailed("malformed bundle", `missing or mistyped '${what}'`);
  if (!bytesEqual(hexOf(field(entry, "key", isString), `${what} key`), key)) {
    throw new VerificationFailed("malformed bundle", `${what} is the proof of another key`);
  }
  const raw = entry.value;
  const value = raw === null || raw === undefined ? null : hexOf(raw, `${what} value`);
  let proof;
  try {
    proof = parseStateProof(entry.proof);
  } catch (err) {
    if (err instanceof BadStateProof) throw new VerificationFailed("malformed bundle", `${what} proof: ${err.message}`);
    throw err;
  }
  try {
    await verifyState(root, key, value, proof);
  } catch (err) {
    if (err instanceof StateProofInvalid) throw new VerificationFailed("state proof invalid", `${what}: ${err.message}`);
    throw err;
  }
  if (value === null) return null;
  let record;
  try {
    record = decode(value);
  } catch (err) {
    if (err instanceof Malformed) throw new VerificationFailed("malformed state record", `${what}: ${err.message}`);
    throw err;
  }
  if (!(record instanceof Map)) throw new VerificationFailed("malformed state record", `${what} is not a map`);
  return record;
}

function uint64(n) {
  const out = new Uint8Array(8);
  let v = BigInt(n);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** The events must be exactly the dataset's committed history (the record's commitment). */
async function checkComplete(record, proven, height) {
  const length = record.get("events");
  const head = record.get("head");
  if (!isInt(length) || !isBytes(head)) throw new VerificationFailed("malformed state record", "the dataset record has no history commitment");
  let chain = new Uint8Array(32);
  for (const p of proven) chain = await sha256(concat(HISTORY_PREFIX, chain, uint64(p.leafIndex), await leafHash(p.event.envelope)));
  if (proven.length !== Number(length)) {
    throw new VerificationFailed(INCOMPLETE, `the bundle has ${proven.length} events, the dataset's committed history at height ${height} has ${length}`);
  }
  if (!bytesEqual(chain, head)) {
    throw new VerificationFailed(INCOMPLETE, `the bundle's ${length} events are not the dataset's committed history at height ${height} (events substituted or out of order)`);
  }
}

/**
 * The identity the origin's signer acts for (§19.3): itself, unless `state.origin_signer`
 * proves against the checkpoint that the key was rotated in for another identity.
 */
async function originIdentity(state, proven, header) {
  if (!proven.length) throw new VerificationFailed("no origin", "the bundle has no events");
  const actor = proven[0].event.body.actor;
  if (state.origin_signer === undefined) return actor;
  const record = await provenEntry(state.origin_signer, concat(PARTICIPANT_PREFIX, actor), header.state_root, "the origin signer's record");
  const identity = record === null ? null : record.get("identity");
  if (!isBytes(identity)) throw new VerificationFailed("no origin", "the origin signer's record names no identity");
  return identity;
}

function checkStory(proven, dataset, record, owner) {
  const grantIds = new Set();
  let last = -1;
  proven.forEach((p, position) => {
    const where = `event ${position}`;
    if (p.leafIndex <= last) throw new VerificationFailed("events out of log order", where);
    last = p.leafIndex;
    const body = p.event.body;
    const names = body.type === "revoke" ? grantIds.has(toHex(body.grant)) : datasetsOf(body).some((d) => bytesEqual(d, dataset));
    if (!names) throw new VerificationFailed("event is about another dataset", where);
    if (body.type === "grant") grantIds.add(toHex(p.event.id));
  });
  if (!proven.length) throw new VerificationFailed("no origin", "the bundle has no events");
  const origin = proven[0].event;
  if (!(origin.body.type === "register" || origin.body.type === "derive") || !bytesEqual(origin.body.dataset, dataset)) {
    throw new VerificationFailed("no origin", "the first event does not register the dataset");
  }
  const recordOrigin = record.get("origin");
  const recordOwner = record.get("owner");
  if (!isBytes(recordOrigin) || !bytesEqual(recordOrigin, origin.id) || !isBytes(recordOwner) || !bytesEqual(recordOwner, owner)) {
    throw new VerificationFailed("no origin", "the dataset record names another origin");
  }
}

/**
 * Each grant of the story with its status at the checkpoint: revoked by the story's
 * revocation of it, expired by its body's `expires` against the checkpoint time. A state proof
 * given for a grant must verify and agree; none is required (the story is complete, so it
 * holds every revocation), as in ledger/provenance.py `_proven_grants`.
 */
async function provenGrants(entries, proven, dataset, header) {
  const byKey = new Map();
  entries.forEach((entry, number) => byKey.set(toHex(hexOf(field(entry, "key", isString), `grant proof ${number} key`)), entry));
  const revocations = new Map();
  for (const p of proven) if (p.event.body.type === "revoke") revocations.set(toHex(p.event.body.grant), p);
  const statuses = new Map();
  for (const p of proven) {
    if (p.event.body.type !== "grant") continue;
    const key = concat(GRANT_PREFIX, p.event.id);
    const entry = byKey.get(toHex(key));
    byKey.delete(toHex(key));
    const revokedBy = revocations.get(toHex(p.event.id)) || null;
    if (entry !== undefined) await checkGrantProof(entry, key, header, dataset, revokedBy);
    const expires = p.event.body.expires;
    statuses.set(toHex(p.event.id), { revokedBy, expired: expires !== undefined && expires <= header.time });
  }
  if (byKey.size) throw new VerificationFailed("malformed bundle", "a state proof for a grant not in the story");
  return statuses;
}

async function checkGrantProof(entry, key, header, dataset, revokedBy) {
  const what = `grant ${toHex(key.subarray(GRANT_PREFIX.length))}`;
  const record = await provenEntry(entry, key, header.state_root, what);
  const recordDataset = record && record.get("dataset");
  if (record === null || !isBytes(recordDataset) || !bytesEqual(recordDataset, dataset)) {
    throw new VerificationFailed("grant state mismatch", `${what} is not a grant of the dataset`);
  }
  const revoked = record.has("revoked") ? record.get("revoked") : null;
  const same = revokedBy === null ? revoked === null : isBytes(revoked) && bytesEqual(revoked, revokedBy.event.id);
  if (!same) throw new VerificationFailed("grant state mismatch", `${what}: revocation differs`);
}

/** §9.3 for bundles of version 2 (pages joined): state proofs and completeness. */
async function verifyBundleV2(bundle, genesis) {
  const dataset = hexOf(field(bundle, "dataset", isString), "dataset");
  const checkpoint = await verifyCheckpoint(field(bundle, "checkpoint", (v) => typeof v === "object" && v !== null && !Array.isArray(v)), genesis);
  const { header } = checkpoint;
  const state = field(bundle, "state", (v) => typeof v === "object" && v !== null && !Array.isArray(v));
  const datasetEntry = field(state, "dataset", (v) => typeof v === "object" && v !== null && !Array.isArray(v));
  const record = await provenEntry(datasetEntry, concat(DATASET_PREFIX, dataset), header.state_root, "dataset record");
  if (record === null) throw new VerificationFailed("no origin", `the dataset is proven absent at height ${header.height}`);
  const proven = [];
  const entries = field(bundle, "events", Array.isArray);
  for (let position = 0; position < entries.length; position++) {
    const { event, leafIndex, path, where, envelope } = await verifyEntry(entries[position], position, genesis, checkpoint);
    try {
      await verifyInclusion(await leafHash(envelope), leafIndex, Number(header.tree_size), path, header.tree_root);
    } catch (err) {
      if (err instanceof ProofMismatch) throw new VerificationFailed("inclusion proof invalid", `${where}: ${err.message}`);
      throw err;
    }
    proven.push({ event, leafIndex });
  }
  await checkComplete(record, proven, header.height);
  checkStory(proven, dataset, record, await originIdentity(state, proven, header));
  const grants = await provenGrants(field(state, "grants", Array.isArray), proven, dataset, header);
  const status = record.get("status");
  return buildStory(dataset, checkpoint, proven, { complete: true, events: proven.length, status: typeof status === "string" ? status : "unknown", grants, owner: record.get("owner") });
}

/**
 * The pages of a bundle joined into one (§9.1): the first page with every page's events, and
 * every later page's grant state proofs (its `grants`) added to `state.grants`, as
 * ledger/provenance.py `join_pages` does.
 */
export function joinPages(pages) {
  const first = pages[0];
  if (typeof first !== "object" || first === null || Array.isArray(first)) throw new VerificationFailed("malformed bundle", "no first page");
  const point = first.checkpoint && first.checkpoint.header_bytes;
  const state = field(first, "state", (v) => typeof v === "object" && v !== null && !Array.isArray(v));
  const grants = [...field(state, "grants", Array.isArray)];
  const events = [];
  pages.forEach((page, number) => {
    if (typeof page !== "object" || page === null || !page.checkpoint || page.checkpoint.header_bytes !== point) {
      throw new VerificationFailed("malformed bundle", `page ${number + 1} is against another checkpoint`);
    }
    if (!Array.isArray(page.events)) throw new VerificationFailed("malformed bundle", `page ${number + 1} has no events list`);
    events.push(...page.events);
    if (number > 0 && page.grants !== undefined) {
      if (!Array.isArray(page.grants)) throw new VerificationFailed("malformed bundle", `page ${number + 1}: missing or mistyped 'grants'`);
      grants.push(...page.grants);
    }
  });
  return { ...first, state: { ...state, grants }, events, page: { after: -1, next: null } };
}

export const BUNDLE_VERIFIERS = { 1: verifyBundleV1, 2: verifyBundleV2 };

/** Verify a parsed JSON bundle against a parsed genesis; throws VerificationFailed. */
export async function verifyBundle(bundle, genesis) {
  const version = field(bundle, "version", Number.isSafeInteger);
  const verifier = Object.hasOwn(BUNDLE_VERIFIERS, version) ? BUNDLE_VERIFIERS[version] : null;
  if (verifier === null) throw new VerificationFailed("malformed bundle", "unsupported bundle version");
  return verifier(bundle, genesis);
}

/**
 * The proven story: origin, owner, grants with their status at the checkpoint, the other
 * events by kind, parents and children (§9.3, "The result"). `completeness` is null for a
 * version 1 bundle (which cannot prove it); for version 2 it carries the proven record's
 * status and each grant's proven state.
 */
export function buildStory(dataset, checkpoint, proven, completeness) {
  const time = checkpoint.header.time;
  const revocations = new Map();
  for (const p of proven) if (p.event.body.type === "revoke") revocations.set(toHex(p.event.body.grant), p);
  const grants = proven
    .filter((p) => p.event.body.type === "grant")
    .map((p) => {
      const provenState = completeness && completeness.grants.get(toHex(p.event.id));
      const revokedBy = provenState ? provenState.revokedBy : revocations.get(toHex(p.event.id)) || null;
      const expires = p.event.body.expires;
      const expired = provenState ? provenState.expired : expires !== undefined && expires <= time;
      return { ...p, revokedBy, expired, status: revokedBy ? "revoked" : expired ? "expired" : "live" };
    });
  const origin = proven[0];
  // The owner's identity: the proven record's (a key the owner rotated to may have signed
  // the origin, §19.3), else the origin's signer.
  const owner = completeness && isBytes(completeness.owner) ? completeness.owner : origin.event.body.actor;
  const ofType = (t) => proven.filter((p) => p.event.body.type === t);
  const children = ofType("derive")
    .map((p) => p.event.body.dataset)
    .filter((d) => !bytesEqual(d, dataset));
  const destroys = ofType("destroy");
  return {
    dataset,
    checkpoint,
    events: proven,
    origin,
    owner,
    grants,
    parents: origin.event.body.type === "derive" ? origin.event.body.inputs : [],
    children,
    status: completeness ? completeness.status : destroys.some((p) => bytesEqual(p.event.body.actor, owner)) ? "destroyed" : "active",
    completeness,
  };
}

// --- single events and blocks ------------------------------------------------------------

/** An event with its proof (GET /v1/events/{id} and /proof): signature, id, inclusion. */
export async function verifyEventProof(eventId, proof, genesis) {
  const checkpoint = await verifyCheckpoint(proof.checkpoint, genesis);
  const envelope = hexOf(field(proof, "envelope", isString), "envelope");
  let event;
  try {
    event = await decodeEnvelope(envelope, genesis.chainId);
  } catch (err) {
    if (err instanceof BadSignature) throw new VerificationFailed("event signature invalid", err.message);
    if (err instanceof Malformed) throw new VerificationFailed("event malformed", err.message);
    throw err;
  }
  if (toHex(event.id) !== eventId) throw new VerificationFailed("wrong event", `the envelope is event ${toHex(event.id)}`);
  const leafIndex = field(proof, "leaf_index", Number.isSafeInteger);
  const path = field(proof, "audit_path", Array.isArray).map((h) => hexOf(h, "audit path"));
  try {
    await verifyInclusion(await leafHash(envelope), leafIndex, Number(checkpoint.header.tree_size), path, checkpoint.header.tree_root);
  } catch (err) {
    if (err instanceof ProofMismatch) throw new VerificationFailed("inclusion proof invalid", err.message);
    throw err;
  }
  return { event, leafIndex, checkpoint };
}

/**
 * A block (GET /v1/blocks/{h}): its commit, and that its events hash to `events_root`. A
 * block's JSON carries no transitions: `transitions` are those the node serves at
 * GET /v1/validators/history with an effective height at most the block's (§19.4).
 */
export async function verifyBlock(block, genesis, transitions = []) {
  const point = { header_bytes: block.header_bytes, commit: block.commit };
  if (transitions.length) point.transitions = transitions;
  const checkpoint = await verifyCheckpoint(point, genesis);
  const events = field(block, "events", Array.isArray);
  const envelopes = events.map((e, i) => hexOf(field(e, "envelope", isString), `event ${i} envelope`));
  const leaves = [];
  for (const envelope of envelopes) leaves.push(await leafHash(envelope));
  const root = await rootFromLeafHashes(leaves);
  if (!bytesEqual(root, checkpoint.header.events_root)) {
    throw new VerificationFailed("events mismatch", "the events do not hash to the header's events_root");
  }
  const decoded = [];
  for (let i = 0; i < envelopes.length; i++) {
    try {
      decoded.push(await decodeEnvelope(envelopes[i], genesis.chainId));
    } catch (err) {
      if (err instanceof BadSignature) throw new VerificationFailed("event signature invalid", `event ${i}: ${err.message}`);
      if (err instanceof Malformed) throw new VerificationFailed("event malformed", `event ${i}: ${err.message}`);
      throw err;
    }
  }
  return { checkpoint, events: decoded };
}

// State proofs against a header's `state_root` (the sparse Merkle tree of ledger/smt.py):
// a key sits on the path SHA-256(key); a leaf hashes to SHA-256(0x02 || path || SHA-256(value));
// an inner node to SHA-256(0x03 || left || right); an empty subtree is 32 zero bytes. A proof
// is the siblings from the root down to where the key's path ends, and the leaf found there.

import { bytesEqual } from "./msgpack.js";
import { concat, fromHex, sha256, toHex } from "./crypto.js";

export const KEY_BITS = 256;
const EMPTY = new Uint8Array(32);

export class StateProofInvalid extends Error {
  constructor(message) {
    super(message);
    this.name = "StateProofInvalid";
  }
}

export class BadStateProof extends Error {
  constructor(message) {
    super(message);
    this.name = "BadStateProof";
  }
}

function hash32(value) {
  const bytes = typeof value === "string" && value.length === 64 ? fromHex(value) : null;
  if (bytes === null) throw new BadStateProof("a hash is 64 hex digits");
  return bytes;
}

/** Parse `{siblings: [hex], leaf: {path, value_hash} | null}` strictly. */
export function parseStateProof(doc) {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new BadStateProof("a state proof is {siblings, leaf}");
  const keys = Object.keys(doc).sort();
  if (keys.length !== 2 || keys[0] !== "leaf" || keys[1] !== "siblings") throw new BadStateProof("a state proof is {siblings, leaf}");
  if (!Array.isArray(doc.siblings) || doc.siblings.length > KEY_BITS) throw new BadStateProof("siblings must be a list of at most 256 hashes");
  let leaf = null;
  if (doc.leaf !== null) {
    const l = doc.leaf;
    const lk = typeof l === "object" && l !== null ? Object.keys(l).sort() : [];
    if (lk.length !== 2 || lk[0] !== "path" || lk[1] !== "value_hash") throw new BadStateProof("a proof leaf is {path, value_hash}");
    leaf = { path: hash32(l.path), valueHash: hash32(l.value_hash) };
  }
  return { siblings: doc.siblings.map(hash32), leaf };
}

function bit(path, index) {
  return (path[index >> 3] >> (7 - (index & 7))) & 1;
}

/** Throw StateProofInvalid unless `proof` shows `key -> value` (null: absent) under `root`. */
export async function verifyState(root, key, value, proof) {
  const path = await sha256(key);
  const depth = proof.siblings.length;
  let node;
  if (value !== null) {
    const vh = await sha256(value);
    if (!proof.leaf || !bytesEqual(proof.leaf.path, path) || !bytesEqual(proof.leaf.valueHash, vh)) {
      throw new StateProofInvalid("the proof's leaf is not this value");
    }
    node = await sha256(concat(Uint8Array.of(2), path, vh));
  } else if (proof.leaf === null) {
    node = EMPTY;
  } else {
    if (bytesEqual(proof.leaf.path, path)) throw new StateProofInvalid("the key is present, not absent");
    for (let i = 0; i < depth; i++) {
      if (bit(proof.leaf.path, i) !== bit(path, i)) throw new StateProofInvalid("the proof's leaf is off the path");
    }
    node = await sha256(concat(Uint8Array.of(2), proof.leaf.path, proof.leaf.valueHash));
  }
  for (let level = depth - 1; level >= 0; level--) {
    const sibling = proof.siblings[level];
    node = bit(path, level) ? await sha256(concat(Uint8Array.of(3), sibling, node)) : await sha256(concat(Uint8Array.of(3), node, sibling));
  }
  if (!bytesEqual(node, root)) {
    throw new StateProofInvalid(`the ${value === null ? "absence" : "value"} of ${toHex(key)} does not lead to the state root`);
  }
}

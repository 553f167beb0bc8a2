// RFC 9162 Merkle hashing and inclusion proofs (docs/PROTOCOL.md §5).

import { bytesEqual } from "./msgpack.js";
import { concat, sha256, toHex } from "./crypto.js";

export const HASH_SIZE = 32;

export class ProofMismatch extends Error {
  constructor(message) {
    super(message);
    this.name = "ProofMismatch";
  }
}

export function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** MTH of a list of leaf hashes (§5.3): pair neighbours, carry an odd last node up. */
export async function rootFromLeafHashes(hashes) {
  if (!hashes.length) return sha256(new Uint8Array(0));
  let level = hashes;
  while (level.length > 1) {
    const next = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(await nodeHash(level[i], level[i + 1]));
    if (level.length % 2) next.push(level[level.length - 1]);
    level = next;
  }
  return level[0];
}

function isHash(h) {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

/** RFC 9162 §2.1.3.2: the proof must have exactly the length of PATH(index, D[size]). */
export async function verifyInclusion(leaf, index, size, proof, root) {
  if (!isHash(leaf) || !isHash(root) || !proof.every(isHash)) {
    throw new ProofMismatch("every hash is 32 bytes");
  }
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
    throw new ProofMismatch(`leaf index ${index} is out of range for tree size ${size}`);
  }
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new ProofMismatch(`inclusion proof for leaf ${index} of ${size} is too long`);
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (fn && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new ProofMismatch(`inclusion proof for leaf ${index} of ${size} is too short`);
  if (!bytesEqual(r, root)) {
    throw new ProofMismatch(
      `inclusion proof for leaf ${index} of ${size} leads to root ${toHex(r)}, not ${toHex(root)}`,
    );
  }
}

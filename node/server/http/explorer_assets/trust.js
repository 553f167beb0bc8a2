// Which genesis the page trusts (docs/PROTOCOL.md §8.5, §16.2): one the user pinned, by
// uploading or pasting the file, by a fingerprint in the link (`?genesis=SHA256` of the
// file's bytes, matched against the bytes the node serves), or remembered from an earlier
// visit, per chain id, in this browser's localStorage. The node's genesis alone is never
// trusted.

import { parseGenesis } from "./verify.js";

const STORE_PREFIX = "provledger.genesis.";
const FINGERPRINT = /^[0-9a-f]{64}$/;
const utf8 = new TextEncoder();

function remembered(chainId) {
  try {
    return localStorage.getItem(STORE_PREFIX + chainId);
  } catch {
    return null;
  }
}

export function remember(genesis) {
  try {
    localStorage.setItem(STORE_PREFIX + genesis.chainId, new TextDecoder().decode(genesis.bytes));
  } catch {
    // storage disabled: the pin lasts for this page only
  }
}

export function forget(chainId) {
  try {
    localStorage.removeItem(STORE_PREFIX + chainId);
  } catch {
    // nothing to forget
  }
}

export async function fetchNodeGenesis() {
  const response = await fetch("/v1/genesis", { cache: "no-store" });
  if (!response.ok) throw new Error(`the node answered ${response.status} for /v1/genesis`);
  return parseGenesis(new Uint8Array(await response.arrayBuffer()));
}

/**
 * The trust state: {trusted: genesis | null, source, node: the node's genesis | null,
 * problem: text | null, fingerprint: the link's pin | null}.
 */
export async function resolveTrust(linkFingerprint) {
  let node = null;
  let nodeProblem = null;
  try {
    node = await fetchNodeGenesis();
  } catch (err) {
    nodeProblem = `cannot read the node's genesis: ${err.message}`;
  }
  const pin = linkFingerprint && FINGERPRINT.test(linkFingerprint) ? linkFingerprint : null;
  if (linkFingerprint && !pin) {
    return { trusted: null, source: null, node, fingerprint: null, problem: `the link's genesis fingerprint ${JSON.stringify(linkFingerprint)} is not 64 lowercase hex digits` };
  }
  if (pin) {
    if (node && node.fingerprint === pin) {
      remember(node);
      return { trusted: node, source: "link", node, fingerprint: pin, problem: null };
    }
    const stored = node ? await storedGenesis(node.chainId) : null;
    if (stored && stored.fingerprint === pin) return { trusted: stored, source: "remembered", node, fingerprint: pin, problem: null };
    const served = node ? `genesis ${node.fingerprint}` : "no readable genesis";
    return {
      trusted: null,
      source: null,
      node,
      fingerprint: pin,
      problem: `the link pins genesis ${pin}, but this node serves ${served}: it is another chain or another genesis file`,
    };
  }
  if (node) {
    const stored = await storedGenesis(node.chainId);
    if (stored) {
      const problem = stored.fingerprint === node.fingerprint ? null : `this node serves genesis ${node.fingerprint}, not the ${stored.fingerprint} you pinned for chain ${node.chainId}`;
      return { trusted: stored, source: "remembered", node, fingerprint: null, problem };
    }
  }
  return { trusted: null, source: null, node, fingerprint: null, problem: nodeProblem };
}

async function storedGenesis(chainId) {
  const text = remembered(chainId);
  if (text === null) return null;
  try {
    return await parseGenesis(utf8.encode(text));
  } catch {
    forget(chainId);
    return null;
  }
}

/** Pin genesis file bytes the user gave (upload or paste); returns the parsed genesis. */
export async function pinBytes(bytes) {
  const genesis = await parseGenesis(bytes);
  remember(genesis);
  return genesis;
}

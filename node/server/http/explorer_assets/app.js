// The explorer's pages (docs/PROTOCOL.md §16): search, dataset, event, block, participant and
// chain views. Every fact shown as proven comes out of verify.js, checked in this page against
// the pinned genesis; what only the node says (names, reachability, the mempool) is labelled.

import { ApiError, getJson, getOptional } from "./api.js";
import { fromHex, sha256, toHex } from "./crypto.js";
import { h, isoTime, short, table } from "./dom.js";
import { MAX_GRAPH_NODES, lineageSvg } from "./graph.js";
import { forget, pinBytes, resolveTrust } from "./trust.js";
import { MAX_PAGES, VerificationFailed, decodeEnvelope, joinPages, verifyBlock, verifyBundle, verifyCheckpoint, verifyEventProof } from "./verify.js";

const BASE = "/explorer";
const HEX64 = /^[0-9a-f]{64}$/;
const HEX66 = /^[0-9a-f]{66}$/;
const MAX_NAME_LOOKUPS = 50;
const LATEST_BLOCKS = 10;
const PAGE_EVENTS = 50;
const MAX_DEPTH = 4;
const GOVERNANCE_TYPES = new Set(["propose", "approve", "suspend", "reinstate", "rotate"]);
const utf8 = new TextEncoder();

const params = new URLSearchParams(location.search);
const main = () => document.getElementById("main");
let trust = { trusted: null, node: null, problem: null, source: null, fingerprint: null };

// --- links -----------------------------------------------------------------------------

function link(path, extra = {}) {
  const query = new URLSearchParams(extra);
  if (params.get("genesis")) query.set("genesis", params.get("genesis"));
  const text = query.toString();
  return `${BASE}${path}${text ? `?${text}` : ""}`;
}

const datasetLink = (hex) => link(`/datasets/${hex}`);
const eventLink = (hex) => link(`/events/${hex}`);
const keyLink = (hex) => link(`/participants/${hex}`);
const blockLink = (height) => link(`/blocks/${height}`);

// --- names: the genesis vouches for validators and registrars; the node reports the rest --

const names = new Map();
let lookups = 0;

function genesisNames() {
  const g = trust.trusted;
  if (!g) return;
  for (const r of g.registrars) names.set(toHex(r), { name: "genesis registrar", source: "genesis" });
  for (const v of g.validators) names.set(toHex(v.publicKey), { name: v.name, source: "genesis" });
}

async function nameOf(hex) {
  if (names.has(hex)) return names.get(hex);
  if (lookups >= MAX_NAME_LOOKUPS) return null;
  lookups += 1;
  let found = null;
  try {
    const doc = await getOptional(`/v1/participants/${hex}`);
    if (doc && typeof doc.name === "string") found = { name: doc.name, source: "node" };
  } catch {
    found = null;
  }
  names.set(hex, found);
  return found;
}

async function keyLabel(bytesOrHex) {
  const hex = typeof bytesOrHex === "string" ? bytesOrHex : toHex(bytesOrHex);
  const known = await nameOf(hex);
  const label = known ? `${known.name}${known.source === "node" ? "*" : ""}` : short(hex, 14);
  return h("a", { href: keyLink(hex), class: "key", title: hex }, label);
}

// --- verdicts --------------------------------------------------------------------------

function verdict(status, headline, detail, reason = "") {
  return h(
    "div",
    { class: `verdict ${status}`, "data-status": status, "data-reason": reason, role: "status" },
    h("strong", {}, headline),
    detail ? h("div", { class: "detail" }, detail) : null,
  );
}

/** Which set signed a checkpoint: genesis's, or the one reached through the transitions. */
function signingSet(checkpoint) {
  if (!checkpoint.transitionCount) return `of the pinned genesis ${trust.trusted.chainId}`;
  const count = checkpoint.transitionCount;
  return (
    `of the set in force since height ${checkpoint.setSince} ` +
    `(${count} validator-set transition${count === 1 ? "" : "s"} from the pinned genesis ${trust.trusted.chainId} checked)`
  );
}

function verifiedLine(checkpoint) {
  const height = Number(checkpoint.header.height);
  return (
    `Verified against checkpoint ${height} (block ${short(toHex(checkpoint.blockHash), 16)}), ` +
    `signed by ${checkpoint.count} of ${checkpoint.validatorCount} validators ` +
    `(power ${checkpoint.power} of ${checkpoint.totalPower}) ${signingSet(checkpoint)}.`
  );
}

/** Names of a set reached through verified transitions: vouched for by a quorum, not the node. */
function learnNames(checkpoint) {
  if (!checkpoint.transitionCount) return;
  for (const v of checkpoint.set.validators) {
    const hex = toHex(v.publicKey);
    const known = names.get(hex);
    if (!known || known.source === "node") names.set(hex, { name: v.name, source: "validator set" });
  }
}

function failed(err) {
  if (err instanceof VerificationFailed) {
    return verdict("failed", `NOT verified: ${err.reason}`, err.detail, err.reason);
  }
  return verdict("failed", "NOT verified: the check could not run", err.message || String(err), "error");
}

function unpinned() {
  return verdict(
    "unpinned",
    "Not verified: no genesis is pinned",
    "Verification needs the chain's genesis from a source you trust: pin it above (upload or paste " +
      "the file, or give its fingerprint), or open a link with ?genesis=FINGERPRINT.",
    "no genesis",
  );
}

function notFound(what) {
  main().append(h("p", { class: "notfound", "data-status": "notfound" }, what));
}

// --- trust panel -----------------------------------------------------------------------

async function pinAndReload(bytes) {
  const genesis = await pinBytes(bytes);
  const query = new URLSearchParams(location.search);
  query.set("genesis", genesis.fingerprint);
  location.search = query.toString();
}

function trustPanel() {
  const { trusted, node, problem, source } = trust;
  const state = trusted
    ? h(
        "span",
        { class: "pinned", "data-fingerprint": trusted.fingerprint },
        `Genesis pinned (${source}): chain ${trusted.chainId}, fingerprint ${short(trusted.fingerprint, 16)}`,
      )
    : h("span", { class: "unpinned" }, "No genesis pinned: nothing can be verified yet");
  const message = h("div", { class: "trust-message", id: "trust-message" });
  const report = async (work) => {
    message.textContent = "";
    try {
      await work();
    } catch (err) {
      message.textContent = err.message || String(err);
    }
  };
  const fileInput = h("input", { type: "file", id: "genesis-file", accept: ".json,application/json" });
  fileInput.addEventListener("change", () =>
    report(async () => pinAndReload(new Uint8Array(await fileInput.files[0].arrayBuffer()))),
  );
  const pasted = h("textarea", { id: "genesis-text", rows: 4, placeholder: "paste genesis.json here" });
  const fingerprint = h("input", { id: "genesis-fingerprint", size: 66, placeholder: "SHA-256 of the genesis file (64 hex)" });
  return h(
    "div",
    { class: "trust" },
    state,
    problem ? h("div", { class: "trust-problem", "data-problem": "true" }, problem) : null,
    h(
      "details",
      { class: "pin", open: trusted ? null : true },
      h("summary", {}, trusted ? "Change the pinned genesis" : "Pin the genesis you trust"),
      h("label", {}, "Upload: ", fileInput),
      h("div", {}, pasted, h("button", { type: "button", id: "pin-pasted", onclick: () => report(() => pinAndReload(utf8.encode(pasted.value))) }, "Pin pasted genesis")),
      h(
        "div",
        {},
        fingerprint,
        h(
          "button",
          {
            type: "button",
            id: "pin-fingerprint",
            onclick: () =>
              report(async () => {
                const want = fingerprint.value.trim().toLowerCase();
                if (!HEX64.test(want)) throw new Error("a fingerprint is 64 hex digits");
                const query = new URLSearchParams(location.search);
                query.set("genesis", want);
                location.search = query.toString();
              }),
          },
          "Pin by fingerprint",
        ),
      ),
      node ? h("div", { class: "hint" }, `This node serves chain ${node.chainId}, genesis fingerprint ${node.fingerprint}; compare it with one you got out of band.`) : null,
      trusted ? h("button", { type: "button", onclick: () => { forget(trusted.chainId); location.href = location.pathname; } }, "Forget this pin") : null,
      message,
    ),
  );
}

// --- search ----------------------------------------------------------------------------

async function findHash(hex) {
  if (await getOptional(`/v1/datasets/${hex}`)) return datasetLink(hex);
  if (await getOptional(`/v1/events/${hex}`)) return eventLink(hex);
  return null;
}

async function search(text, out) {
  const value = text.trim().toLowerCase().replace(/^0x/, "");
  out.textContent = "";
  if (HEX66.test(value)) return void (location.href = keyLink(value));
  if (/^[0-9]{1,15}$/.test(value) && Number(value) > 0) return void (location.href = blockLink(Number(value)));
  if (!HEX64.test(value)) {
    out.textContent = "Give a dataset hash or event id (64 hex), a public key (66 hex) or a block height.";
    return undefined;
  }
  const target = await findHash(value);
  if (target) location.href = target;
  else out.textContent = `Nothing on this chain has the hash ${value}.`;
  return undefined;
}

async function hashFile(file, out) {
  out.textContent = `Hashing ${file.name} in this page (nothing is uploaded)…`;
  const digest = toHex(await sha256(new Uint8Array(await file.arrayBuffer())));
  const found = await getOptional(`/v1/datasets/${digest}`);
  if (found) {
    location.href = datasetLink(digest);
    return;
  }
  out.textContent = "";
  out.append(h("span", { "data-status": "unknown-file", "data-hash": digest }, `${file.name}: SHA-256 ${digest} is not a registered dataset on this chain.`));
}

function searchPage() {
  const out = h("div", { id: "search-result", class: "search-result" });
  const input = h("input", { id: "search", type: "search", size: 70, placeholder: "dataset hash, event id, public key or block height" });
  const form = h("form", { class: "search", onsubmit: (e) => { e.preventDefault(); search(input.value, out); } }, input, h("button", { type: "submit" }, "Find"));
  const fileInput = h("input", { type: "file", id: "dataset-file" });
  fileInput.addEventListener("change", () => fileInput.files[0] && hashFile(fileInput.files[0], out));
  const drop = h("div", { id: "drop", class: "drop" }, h("p", {}, "Drop a file here to find its dataset: it is hashed with SHA-256 in this page and never uploaded."), h("label", {}, "or choose one: ", fileInput));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) hashFile(file, out);
  });
  main().append(h("h1", {}, "Find a dataset"), form, drop, out, h("p", {}, h("a", { href: link("/chain") }, "The chain: latest blocks, checkpoint, validators →")));
}

// --- dataset page ----------------------------------------------------------------------

function metaText(metaMap) {
  if (!metaMap || !metaMap.size) return "";
  return [...metaMap].map(([k, v]) => `${k}=${v instanceof Uint8Array ? toHex(v) : String(v)}`).join(", ");
}

function titleOf(story) {
  const meta = story.origin.event.body.meta;
  const title = meta && meta.get("title");
  return typeof title === "string" && title ? title : short(toHex(story.dataset), 16);
}

/** A governance change (§19.1) in words; its keys as links. */
async function changeText(change) {
  const get = (k) => (change instanceof Map ? change.get(k) : undefined);
  const key = get("public_key");
  const who = key instanceof Uint8Array ? await keyLabel(key) : "?";
  switch (get("op")) {
    case "add-validator":
      return ["add validator ", `“${get("name")}” `, who, ` with power ${get("power")}`, get("url") ? ` at ${get("url")}` : ""];
    case "remove-validator":
      return ["remove validator ", who];
    case "set-power":
      return ["set the power of validator ", who, ` to ${get("power")}`];
    case "add-registrar":
      return ["make ", who, " a registrar"];
    case "remove-registrar":
      return ["remove registrar ", who];
    case "set-param":
      return [`set ${get("name")} to ${get("value")}`];
    default:
      return [`a ${String(get("op"))} change`];
  }
}

/** What an event of any type does, in words (a decoded, checked body). */
async function actionOf(b) {
  switch (b.type) {
    case "admit":
      return ["admitted ", await keyLabel(b.subject), ` as ${b.role} “${b.name}”`];
    case "propose":
      return ["proposed: ", ...(await changeText(b.change))];
    case "approve":
      return ["approved proposal ", h("a", { href: eventLink(toHex(b.proposal)), class: "hash" }, short(toHex(b.proposal)))];
    case "suspend":
      return ["suspended ", await keyLabel(b.subject)];
    case "reinstate":
      return ["reinstated ", await keyLabel(b.subject)];
    case "rotate":
      return ["rotated ", await keyLabel(b.subject), " to ", await keyLabel(b.to)];
    default:
      return b.dataset instanceof Uint8Array ? ["on ", h("a", { href: datasetLink(toHex(b.dataset)), class: "hash" }, short(toHex(b.dataset)))] : [];
  }
}

async function describe(p, story) {
  const b = p.event.body;
  const here = toHex(story.dataset);
  switch (b.type) {
    case "register":
      return [`registered ${b.open ? "(open to all participants)" : "(restricted)"}`, metaText(b.meta) ? ` — ${metaText(b.meta)}` : ""];
    case "derive":
      if (toHex(b.dataset) === here) {
        return ["derived from ", b.inputs.map((i) => h("a", { href: datasetLink(toHex(i)), class: "hash" }, short(toHex(i)))), metaText(b.meta) ? ` — ${metaText(b.meta)}` : ""];
      }
      return ["derived ", h("a", { href: datasetLink(toHex(b.dataset)), class: "hash" }, short(toHex(b.dataset))), " from this dataset"];
    case "grant":
      return ["granted ", await keyLabel(b.to), ` use for ${b.purposes.join(", ")}`, b.reshare ? ", may reshare" : "", b.expires !== undefined ? `, until ${isoTime(b.expires)}` : ""];
    case "revoke":
      return ["revoked grant ", h("a", { href: eventLink(toHex(b.grant)), class: "hash" }, short(toHex(b.grant)))];
    case "transfer":
      return ["delivered a copy to ", await keyLabel(b.to)];
    case "use":
      return [`used it for “${b.purpose}”`, b.grant ? ` under grant ${short(toHex(b.grant))}` : ""];
    case "destroy":
      return [toHex(b.actor) === toHex(story.owner) ? "destroyed the dataset (owner)" : "destroyed its copy"];
    case "attest":
      return [`attests “${b.claim}”`, metaText(b.meta) ? ` — ${metaText(b.meta)}` : ""];
    default:
      return actionOf(b);
  }
}

async function timeline(story) {
  const rows = [];
  for (const p of story.events) {
    const b = p.event.body;
    rows.push(
      h(
        "li",
        { class: `event ${b.type}`, "data-type": b.type, "data-event": toHex(p.event.id) },
        h("span", { class: "when" }, isoTime(b.time)),
        h("span", { class: `badge ${b.type}` }, b.type),
        await keyLabel(b.actor),
        " ",
        ...(await describe(p, story)),
        " ",
        h("a", { href: eventLink(toHex(p.event.id)), class: "leaf" }, `leaf ${p.leafIndex}`),
      ),
    );
  }
  return h("ol", { class: "timeline", id: "timeline" }, rows);
}

async function grantsTable(story) {
  if (!story.grants.length) return h("p", { class: "muted" }, "No grants.");
  const rows = [];
  for (const g of story.grants) {
    const b = g.event.body;
    rows.push(
      h(
        "tr",
        { "data-grant": toHex(g.event.id), "data-status": g.status },
        h("td", {}, await keyLabel(b.to)),
        h("td", {}, b.purposes.join(", ")),
        h("td", {}, b.expires !== undefined ? isoTime(b.expires) : "never"),
        h("td", {}, b.reshare ? "yes" : "no"),
        h("td", {}, h("span", { class: `badge ${g.status}` }, g.status)),
        h("td", {}, h("a", { href: eventLink(toHex(g.event.id)), class: "hash" }, short(toHex(g.event.id)))),
      ),
    );
  }
  return h(
    "table",
    { class: "grants", id: "grants" },
    h("thead", {}, h("tr", {}, ["grantee", "purposes", "expires", "reshare", "status at checkpoint", "grant"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows),
  );
}

/** The whole bundle of a dataset: its first page and the pages that follow (`page.next`). */
async function fetchBundle(hex) {
  const first = await getOptional(`/v1/datasets/${hex}/provenance`);
  if (!first || !first.page || first.page.next === null || first.page.next === undefined) return first;
  const pages = [first];
  const height = first.checkpoint && first.checkpoint.header && first.checkpoint.header.height;
  let next = first.page.next;
  while (next !== null && next !== undefined && pages.length < MAX_PAGES) {
    const page = await getJson(`/v1/datasets/${hex}/provenance?after=${encodeURIComponent(next)}&height=${encodeURIComponent(height)}`);
    pages.push(page);
    next = page.page ? page.page.next : null;
  }
  return joinPages(pages);
}

async function storyOf(hex, cache) {
  if (cache.has(hex)) return cache.get(hex);
  let result;
  try {
    const bundle = await fetchBundle(hex);
    result = bundle ? { story: await verifyBundle(bundle, trust.trusted) } : { error: "unknown dataset" };
  } catch (err) {
    result = { error: err.message || String(err) };
  }
  cache.set(hex, result);
  return result;
}

/** Parents and children of `focus` to `depth` steps, every dataset's bundle verified. */
async function lineageGraph(focus, story, depth) {
  const cache = new Map([[focus, { story }]]);
  const nodes = new Map([[focus, { id: focus, layer: 0, label: titleOf(story), verified: true, focus: true }]]);
  const edges = new Map();
  for (const [direction, step] of [["parents", -1], ["children", 1]]) {
    let frontier = [focus];
    for (let d = 1; d <= depth && frontier.length; d++) {
      const next = [];
      for (const id of frontier) {
        const known = cache.get(id);
        if (!known || !known.story) continue;
        for (const otherBytes of known.story[direction]) {
          const other = toHex(otherBytes);
          const [from, to] = step < 0 ? [other, id] : [id, other];
          edges.set(`${from}>${to}`, { from, to });
          if (nodes.has(other) || nodes.size >= MAX_GRAPH_NODES) continue;
          const found = await storyOf(other, cache);
          nodes.set(other, { id: other, layer: d * step, label: found.story ? titleOf(found.story) : short(other, 16), verified: Boolean(found.story) });
          next.push(other);
        }
      }
      frontier = next;
    }
  }
  return lineageSvg([...nodes.values()], [...edges.values()], datasetLink);
}

async function datasetPage(hex) {
  main().append(h("h1", {}, "Dataset"), h("p", { class: "hash full" }, hex));
  let bundle;
  try {
    bundle = await fetchBundle(hex);
  } catch (err) {
    return void main().append(failed(err));
  }
  if (!bundle) return notFound(`No dataset with SHA-256 ${hex} is registered on this chain.`);
  if (!trust.trusted) {
    main().append(unpinned());
    const summary = await getOptional(`/v1/datasets/${hex}`);
    if (summary) main().append(h("h2", {}, "What the node says (unverified)"), table([["owner", summary.owner], ["status", summary.status], ["events", String(summary.events)]]));
    return undefined;
  }
  let story;
  try {
    story = await verifyBundle(bundle, trust.trusted);
  } catch (err) {
    main().append(failed(err), h("p", {}, "Nothing of the node's answer is shown, since it does not verify."));
    return undefined;
  }
  learnNames(story.checkpoint);
  main().querySelector("h1").textContent = titleOf(story);
  main().append(
    verdict("verified", "Verified", verifiedLine(story.checkpoint), "verified"),
    story.completeness
      ? h("p", { class: "complete", id: "completeness" }, `Complete: these ${story.completeness.events} events are the dataset's whole committed history at the checkpoint, its status is proven by a state proof, and each grant's status follows from that complete story (and from its state proof, where the node sent one).`)
      : h("p", { class: "muted", id: "completeness" }, "This bundle (version 1) proves each event listed, but not that none was left out."),
    h("p", { class: "muted" }, "Names marked * are what the node reports (not proven); validators' and genesis registrars' names come from the pinned genesis, or from a validator set the checked transitions lead to."),
  );
  const o = story.origin;
  main().append(
    h("h2", {}, "Origin"),
    table([
      ["owner", await keyLabel(story.owner)],
      ["origin", h("span", {}, `${o.event.body.type} at ${isoTime(o.event.body.time)}, `, h("a", { href: eventLink(toHex(o.event.id)) }, `leaf ${o.leafIndex}`))],
      ["status", h("span", { class: `badge ${story.status}`, id: "status" }, story.status)],
      ["metadata", metaText(o.event.body.meta) || "—"],
      ["parents", story.parents.length ? story.parents.map((p) => h("a", { href: datasetLink(toHex(p)), class: "hash" }, short(toHex(p)), " ")) : "none"],
      ["children", story.children.length ? story.children.map((c) => h("a", { href: datasetLink(toHex(c)), class: "hash" }, short(toHex(c)), " ")) : "none"],
    ]),
    h("h2", {}, "Grants"),
    await grantsTable(story),
    h("h2", {}, "Timeline"),
    await timeline(story),
  );
  const depthSelect = h("select", { id: "depth" }, [1, 2, 3, MAX_DEPTH].map((d) => h("option", { value: d, selected: d === 2 }, `${d}`)));
  const holder = h("div", { id: "lineage", class: "lineage-holder" });
  const draw = async () => {
    holder.setAttribute("data-state", "loading");
    holder.replaceChildren(await lineageGraph(hex, story, Number(depthSelect.value)));
    holder.setAttribute("data-state", "ready");
  };
  depthSelect.addEventListener("change", draw);
  main().append(h("h2", {}, "Lineage"), h("label", {}, "depth ", depthSelect), holder);
  main().append(
    h("h2", {}, "Export"),
    h(
      "p",
      { class: "exports" },
      h("a", { href: `/v1/datasets/${hex}/provenance`, download: `${hex}.bundle.json` }, "proof bundle"), " · ",
      h("a", { href: `/v1/datasets/${hex}/prov` }, "PROV-JSON"), " · ",
      h("a", { href: `/v1/datasets/${hex}/prov?format=provn` }, "PROV-N"), " · ",
      h("a", { href: `/v1/datasets/${hex}/prov?format=ttl` }, "PROV-O Turtle"), " · ",
      h("a", { href: `/v1/datasets/${hex}/openlineage` }, "OpenLineage"),
    ),
    h("p", { class: "muted" }, "Exports are written by the node from the story it verified against its own genesis; the proof is the bundle."),
    h("p", {}, "Link to this page with the genesis pinned: ", h("a", { href: `${location.pathname}?genesis=${trust.trusted.fingerprint}`, id: "share" }, "share")),
  );
  await draw();
  return undefined;
}

// --- event, block, participant, chain --------------------------------------------------

function bodyRows(body) {
  return Object.entries(body)
    .filter(([k]) => k !== "type")
    .map(([k, v]) => {
      let shown;
      if (v instanceof Uint8Array) {
        const hex = toHex(v);
        if (k === "dataset") shown = h("a", { href: datasetLink(hex), class: "hash" }, hex);
        else if (k === "grant" || k === "proposal") shown = h("a", { href: eventLink(hex), class: "hash" }, hex);
        else if (v.length === 33) shown = h("a", { href: keyLink(hex), class: "hash" }, hex);
        else shown = h("span", { class: "hash" }, hex);
      } else if (k === "inputs") shown = v.map((i) => h("a", { href: datasetLink(toHex(i)), class: "hash" }, short(toHex(i)), " "));
      else if (k === "meta" || k === "change") shown = metaText(v) || "—";
      else if (k === "time" || k === "expires") shown = `${isoTime(v)} (${v})`;
      else shown = Array.isArray(v) ? v.join(", ") : String(v);
      return [k, shown];
    });
}

async function eventPage(id) {
  main().append(h("h1", {}, "Event"), h("p", { class: "hash full" }, id));
  const event = await getOptional(`/v1/events/${id}`);
  if (!event) return notFound(`No committed event ${id} on this chain.`);
  if (!trust.trusted) return void main().append(unpinned());
  let proven;
  try {
    const proof = await getJson(`/v1/events/${id}/proof`);
    proven = await verifyEventProof(id, { ...proof, envelope: event.envelope }, trust.trusted);
  } catch (err) {
    return void main().append(failed(err));
  }
  const b = proven.event.body;
  learnNames(proven.checkpoint);
  main().querySelector("h1").textContent = `Event: ${b.type}`;
  main().append(
    verdict("verified", "Verified", `Signed by its actor, and included at leaf ${proven.leafIndex}. ${verifiedLine(proven.checkpoint)}`, "verified"),
    table([
      ["type", b.type],
      ["actor", await keyLabel(b.actor)],
      GOVERNANCE_TYPES.has(b.type) ? ["what", h("span", { id: "action" }, await actionOf(b))] : null,
      ...bodyRows(b),
      ["leaf index", String(proven.leafIndex)],
      ["block (node-reported)", h("a", { href: blockLink(event.height) }, String(event.height))],
    ]),
  );
  return undefined;
}

/**
 * The transitions (§19.4) a block's checkpoint needs: those the node serves with an effective
 * height at most `height`. Entries that are not plainly above it are kept, so the walk judges
 * them; a node without the history route serves none.
 */
async function transitionsUpTo(height) {
  const history = await getOptional("/v1/validators/history");
  const all = history && Array.isArray(history.transitions) ? history.transitions : [];
  return all.filter((t) => !(t && Number.isSafeInteger(t.height) && t.height > height));
}

async function blockPage(height) {
  main().append(h("h1", {}, `Block ${height}`));
  const block = await getOptional(`/v1/blocks/${height}`);
  if (!block) return notFound(`No block at height ${height}.`);
  if (!trust.trusted) return void main().append(unpinned());
  let proven;
  try {
    proven = await verifyBlock(block, trust.trusted, await transitionsUpTo(height));
    if (Number(proven.checkpoint.header.height) !== height) throw new VerificationFailed("wrong block", `the node sent block ${proven.checkpoint.header.height}`);
  } catch (err) {
    return void main().append(failed(err));
  }
  learnNames(proven.checkpoint);
  const hd = proven.checkpoint.header;
  const first = Number(hd.tree_size) - proven.events.length;
  const rows = [];
  for (const [i, e] of proven.events.entries()) {
    rows.push(
      h(
        "tr",
        { "data-type": e.body.type },
        h("td", {}, String(first + i)),
        h("td", {}, h("span", { class: `badge ${e.body.type}` }, e.body.type)),
        h("td", {}, await keyLabel(e.body.actor)),
        h("td", { class: "action" }, await actionOf(e.body)),
        h("td", {}, h("a", { href: eventLink(toHex(e.id)), class: "hash" }, short(toHex(e.id), 16))),
      ),
    );
  }
  main().append(
    verdict("verified", "Verified", `${verifiedLine(proven.checkpoint)} Its ${proven.events.length} events hash to the header's events_root and carry valid signatures.`, "verified"),
    table([
      ["block hash", h("span", { class: "hash" }, toHex(proven.checkpoint.blockHash))],
      ["time", isoTime(hd.time)],
      ["proposer", await keyLabel(hd.proposer)],
      ["previous", height > 1 ? h("a", { href: blockLink(height - 1), class: "hash" }, toHex(hd.prev)) : h("span", { class: "hash" }, `${toHex(hd.prev)} (genesis)`)],
      ["tree", `size ${hd.tree_size}, root ${toHex(hd.tree_root)}`],
      ["state root", h("span", { class: "hash" }, toHex(hd.state_root))],
      ["commit", `round ${proven.checkpoint.commit.round}, ${proven.checkpoint.count} signatures`],
      hd.next_validators ? ["next validator set", h("span", { class: "hash", id: "next-validators" }, `${toHex(hd.next_validators)} (in force from height ${height + 1})`)] : null,
    ]),
    h("h2", {}, "Events"),
    proven.events.length ? h("table", { class: "events" }, h("thead", {}, h("tr", {}, ["leaf", "type", "actor", "what", "event"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)) : h("p", { class: "muted" }, "An empty block."),
    h("p", {}, h("a", { href: blockLink(height + 1) }, "next block →")),
  );
  return undefined;
}

async function participantPage(key) {
  main().append(h("h1", {}, "Participant"), h("p", { class: "hash full" }, key));
  const who = await getOptional(`/v1/participants/${key}`);
  const known = trust.trusted ? names.get(key) : null;
  main().append(
    table([
      ["name", known && known.source !== "node" ? `${known.name} (${known.source})` : who ? `${who.name}* (node-reported)` : "not admitted"],
      ["role", who ? who.role : "—"],
    ]),
  );
  const list = h("ol", { class: "timeline", id: "participant-events" });
  const more = h("button", { type: "button", id: "more" }, "more");
  let after = -1;
  const load = async () => {
    const page = await getJson(`/v1/participants/${key}/events?after=${after}&limit=${PAGE_EVENTS}`);
    for (const e of page.events) {
      let mark = "";
      let action = typeof e.dataset === "string" && HEX64.test(e.dataset) ? [" on ", h("a", { href: datasetLink(e.dataset), class: "hash" }, short(e.dataset))] : "";
      if (trust.trusted) {
        try {
          const decoded = await decodeEnvelope(fromHex(e.envelope), trust.trusted.chainId);
          const mine = toHex(decoded.body.actor) === key && toHex(decoded.id) === e.id;
          mark = mine ? "signed ✓" : "not this key's event";
          if (mine) action = [" ", h("span", { class: "action" }, await actionOf(decoded.body))];
        } catch (err) {
          mark = `bad event: ${err.message}`;
        }
      }
      const type = String(e.type);
      list.append(h("li", { "data-event": e.id, "data-type": type }, h("span", { class: "when" }, isoTime(e.time)), h("span", { class: `badge ${type}` }, type), " ", h("a", { href: eventLink(e.id), class: "hash" }, short(String(e.id), 16)), action, ` leaf ${e.leaf_index} `, h("span", { class: "muted" }, mark)));
    }
    more.hidden = page.next === null;
    if (page.next !== null) after = page.next;
  };
  more.addEventListener("click", load);
  main().append(h("h2", {}, "Events signed by this key"), trust.trusted ? null : unpinned(), h("p", { class: "muted" }, "Signatures are checked here; open an event for its inclusion proof."), list, more);
  await load();
}

async function chainPage() {
  main().append(h("h1", {}, "Chain"));
  const [status, validators, point] = await Promise.all([getJson("/v1/status"), getJson("/v1/validators"), getOptional("/v1/checkpoint")]);
  let checkpoint = null;
  if (!trust.trusted) main().append(unpinned());
  else if (!point) main().append(verdict("failed", "No checkpoint yet", "no block has been committed", "no checkpoint"));
  else {
    try {
      checkpoint = await verifyCheckpoint(point, trust.trusted);
      learnNames(checkpoint);
      main().append(verdict("verified", "Checkpoint verified", verifiedLine(checkpoint), "verified"));
    } catch (err) {
      main().append(failed(err));
    }
  }
  const signed = new Set(checkpoint ? checkpoint.signers : []);
  main().append(
    table([
      ["chain", status.chain_id],
      ["height", String(status.height)],
      ["tree", `size ${status.tree_size}, root ${status.root_hash}`],
      ["mempool depth", `${status.mempool_size} pending events (node-reported)`],
      ["genesis fingerprint", status.genesis_fingerprint || "—"],
      ["node", `${status.name}${status.catching_up ? " (catching up)" : ""}`],
    ]),
    h("h2", {}, "Validators"),
    h(
      "table",
      { class: "validators", id: "validators" },
      h("thead", {}, h("tr", {}, ["name", "key", "power", "reachable from this node", "signed the checkpoint"].map((t) => h("th", {}, t)))),
      h("tbody", {}, validators.validators.map((v) => h("tr", {}, h("td", {}, v.name), h("td", {}, h("a", { href: keyLink(v.public_key), class: "hash" }, short(v.public_key, 16))), h("td", {}, String(v.power)), h("td", {}, v.reachable ? "yes" : "no"), h("td", {}, checkpoint ? (signed.has(v.public_key) ? "yes ✓" : "no") : "—")))),
    ),
  );
  const rows = [];
  for (let height = status.height; height > 0 && height > status.height - LATEST_BLOCKS; height--) {
    const block = await getOptional(`/v1/blocks/${height}`);
    if (!block) continue;
    rows.push(h("tr", {}, h("td", {}, h("a", { href: blockLink(height) }, String(height))), h("td", {}, isoTime(block.header.time)), h("td", {}, String(block.events.length)), h("td", {}, h("span", { class: "hash" }, short(block.block_hash, 16)))));
  }
  main().append(h("h2", {}, "Latest blocks (node-reported; open one to verify it)"), h("table", { class: "blocks", id: "blocks" }, h("thead", {}, h("tr", {}, ["height", "time", "events", "block hash"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)));
}

// --- router ----------------------------------------------------------------------------

const ROUTES = [
  [/^\/?$/, () => searchPage()],
  [/^\/chain\/?$/, () => chainPage()],
  [/^\/datasets\/([0-9a-f]{64})\/?$/, (m) => datasetPage(m[1])],
  [/^\/events\/([0-9a-f]{64})\/?$/, (m) => eventPage(m[1])],
  [/^\/blocks\/([1-9][0-9]{0,15})\/?$/, (m) => blockPage(Number(m[1]))],
  [/^\/participants\/([0-9a-f]{66})\/?$/, (m) => participantPage(m[1])],
];

async function route() {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "/";
  trust = await resolveTrust(params.get("genesis"));
  genesisNames();
  document.getElementById("trust").replaceChildren(trustPanel());
  document.getElementById("nav-search").href = link("");
  document.getElementById("nav-chain").href = link("/chain");
  for (const [pattern, page] of ROUTES) {
    const match = path.match(pattern);
    if (match) return page(match);
  }
  return notFound(`No explorer page at ${location.pathname}.`);
}

route()
  .catch((err) => {
    const message = err instanceof ApiError ? `The node answered: ${err.message}` : err.message || String(err);
    main().append(h("div", { class: "verdict failed", "data-status": "error" }, message));
  })
  .finally(() => document.body.setAttribute("data-ready", "true"));

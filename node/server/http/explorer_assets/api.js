// Reading the node's public API (docs/PROTOCOL.md §10). Nothing read here is trusted until
// verify.js has checked it against the pinned genesis.

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

export async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "unreachable", `cannot reach the node (${err.message})`);
  }
  let doc = null;
  try {
    doc = await response.json();
  } catch {
    doc = null;
  }
  if (!response.ok) {
    const title = (doc && doc.title) || response.statusText || "error";
    throw new ApiError(response.status, title, (doc && doc.detail) || "");
  }
  if (doc === null) throw new ApiError(response.status, "bad response", `${path} is not JSON`);
  return doc;
}

/** GET, or null on 404. */
export async function getOptional(path) {
  try {
    return await getJson(path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

// Who is browsing: an anonymous visitor id (always, kept in localStorage), an optional demo
// token (signed in) and the latest segment token the gateway issued (X-Tailor-Segment).
const ANON = "tailor.anonymousId";
const TOKEN = "tailor.token";
const SEGMENT = "tailor.segmentToken";

function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export function anonymousId() {
  let id = localStorage.getItem(ANON);
  if (!id) {
    id = `web-${randomId()}`;
    localStorage.setItem(ANON, id);
  }
  return id;
}

export const token = () => localStorage.getItem(TOKEN);
export const segmentToken = () => localStorage.getItem(SEGMENT);

export function setSegmentToken(value) {
  if (value) localStorage.setItem(SEGMENT, value);
}

export function signIn(jwt) {
  localStorage.setItem(TOKEN, jwt.trim());
  localStorage.removeItem(SEGMENT); // the segment comes from the new profile
}

/** Forget the token and start over as a brand-new anonymous visitor. */
export function newAnonymousVisitor() {
  localStorage.removeItem(TOKEN);
  localStorage.removeItem(SEGMENT);
  localStorage.setItem(ANON, `web-${randomId()}`);
}

/** The user id inside the demo token (display only: the gateway verifies the signature). */
export function tokenSubject(jwt = token()) {
  if (!jwt) return null;
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

export const newMessageId = () => `web-${randomId()}`;

// Where the gateway is: `?gateway=http://host:port` (kept for the session), else the build-time
// VITE_TAILOR_URL, else the `tailor demo` default.
const KEY = "tailor.gateway";

export function gatewayUrl() {
  const fromQuery = new URLSearchParams(window.location.search).get("gateway");
  if (fromQuery) {
    sessionStorage.setItem(KEY, fromQuery);
    return fromQuery.replace(/\/$/, "");
  }
  const saved = sessionStorage.getItem(KEY);
  return (saved || import.meta.env.VITE_TAILOR_URL || "http://127.0.0.1:8000").replace(/\/$/, "");
}

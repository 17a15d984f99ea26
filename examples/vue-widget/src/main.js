// Mounts a widget on every element with `data-tailor-widget`. Attributes:
//   data-gateway   the gateway's URL (a `?gateway=` in the page URL wins)
//   data-first     how many items (default 4)
//   data-title     the heading
//   data-item-url  link of an item, `{id}` replaced (default `#item-{id}`)
// The visitor is the one of the storefront on the same origin (localStorage
// `tailor.anonymousId` / `tailor.token`), or a new anonymous visitor.
import { createApp } from "vue";
import { install } from "@urql/vue";
import Widget from "./Widget.vue";
import { createTailorClient } from "./client.js";

function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function identity() {
  let anonymousId = localStorage.getItem("tailor.anonymousId");
  if (!anonymousId) {
    anonymousId = `web-${randomId()}`;
    localStorage.setItem("tailor.anonymousId", anonymousId);
  }
  return { anonymousId, token: localStorage.getItem("tailor.token") };
}

// The widget's styles travel inside the script (one file to drop in), added once per page.
const CSS = `
.tailor-widget { font-family: system-ui, sans-serif; border: 1px solid #ddd; border-radius: 8px;
  padding: 0.5rem 1rem; max-width: 22rem; }
.tailor-widget ul { list-style: none; padding: 0; }
.tailor-widget li { margin: 0.4rem 0; display: flex; flex-direction: column; }
.tailor-widget small { color: #666; font-style: italic; }
.tailor-widget .tw-note { color: #888; font-size: 0.8rem; }
.tailor-widget .tw-error { color: #b00020; }
`;

function addStyles() {
  if (document.getElementById("tailor-widget-css")) return;
  const style = document.createElement("style");
  style.id = "tailor-widget-css";
  style.textContent = CSS;
  document.head.append(style);
}

export function mount(element) {
  addStyles();
  const gateway =
    new URLSearchParams(window.location.search).get("gateway") ||
    element.dataset.gateway ||
    "http://127.0.0.1:8000";
  const app = createApp(Widget, {
    first: Number(element.dataset.first || 4),
    title: element.dataset.title || "Recommended for you",
    itemUrl: element.dataset.itemUrl || "#item-{id}",
    newMessageId: () => `widget-${randomId()}`,
  });
  install(app, createTailorClient(gateway, identity));
  app.mount(element);
  return app;
}

document.querySelectorAll("[data-tailor-widget]").forEach(mount);

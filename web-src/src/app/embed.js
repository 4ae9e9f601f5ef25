// Embed mode (/embed, embed.html, ?mode=button|phone&call=&origin=): reads
// the parameters and posts the widget events to the host page
// (registered, calling, ringing, connected, ended, failed).

import { app } from "./state.js";

/** Sets app.mode and app.embed from the URL when this is the embed page. */
export function readEmbedParams() {
  const page = document.body.dataset.page;
  const q = new URLSearchParams(location.search);
  if (page !== "embed" && !location.pathname.startsWith("/embed")) return;
  app.mode = q.get("mode") === "phone" ? "phone" : "button";
  let origin = null;
  try {
    const o = q.get("origin");
    if (o) {
      const u = new URL(o);
      if (u.origin !== "null" && (u.protocol === "https:" || u.protocol === "http:")) origin = u.origin;
    }
  } catch {
    origin = null;
  }
  app.embed = { call: q.get("call") ?? "", origin };
  document.body.dataset.mode = app.mode;
}

/** Posts a widget event to the host page (embed only, to the given origin only). */
export function post(event, detail = {}) {
  if (!app.embed?.origin || window.parent === window) return;
  try {
    window.parent.postMessage({ source: "p2psip", event, detail }, app.embed.origin);
  } catch {
    // a bad origin string: nothing to post to
  }
}

// The call history (#history) and recent contacts (#contacts) lists, built
// from the HistoryStore; clicking an entry calls that peer back.

import { formatDuration } from "../lib/history.js";
import { displayName } from "../lib/sipuri.js";
import { $, el } from "./dom.js";
import { app, history } from "./state.js";

let dial = () => {};

function fmtTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const RESULT_TEXT = { answered: "", missed: "missed", rejected: "rejected", busy: "busy", cancelled: "cancelled", failed: "failed" };

export function renderHistory() {
  const list = history.list();
  const ol = $("history");
  ol.replaceChildren(...list.slice(0, 50).map((e) => {
    const label = e.name || displayName(e.peer, app.cfg?.overlay);
    const arrow = e.dir === "in" ? "↙" : "↗";
    const detail = e.result === "answered" ? formatDuration(e.duration) : RESULT_TEXT[e.result] ?? e.result;
    return el("li", { dataset: { dir: e.dir, result: e.result, peer: e.peer } },
      el("span", { class: "dir", "aria-label": e.dir === "in" ? "incoming" : "outgoing", title: e.dir === "in" ? "incoming" : "outgoing" }, arrow),
      el("button", { type: "button", class: "link peer", title: `Call ${e.peer}`, onclick: () => dial(e.peer) }, label),
      el("span", { class: "meta" }, `${fmtTime(e.start)} · ${detail}`));
  }));
  $("history-empty").hidden = list.length > 0;
  const contacts = history.contacts();
  $("contacts").replaceChildren(...contacts.map((c) => {
    const label = c.name || displayName(c.peer, app.cfg?.overlay);
    return el("li", {}, el("button", { type: "button", class: "contact", title: `Call ${c.peer}`, "aria-label": `Call ${label}`, onclick: () => dial(c.peer) },
      el("span", { class: "avatar", "aria-hidden": "true" }, label.slice(0, 1).toUpperCase()),
      el("span", { class: "cname" }, label)));
  }));
  $("contacts-empty").hidden = contacts.length > 0;
}

/** Adds a call to the history and shows it. */
export function addHistory(entry) {
  history.add(entry);
  renderHistory();
}

/** dialFn(uri): what clicking an entry does (calls.js callPeer). */
export function bindHistoryUI(dialFn) {
  dial = dialFn;
  $("clear-history").addEventListener("click", () => { history.clear(); renderHistory(); });
}

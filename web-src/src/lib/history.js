// Call history and recent contacts in localStorage (or any Storage-like
// object with getItem/setItem).

import { peerKey } from "./sipuri.js";

export const HISTORY_MAX = 100;
export const CONTACTS_MAX = 12;

export class HistoryStore {
  constructor(storage, key = "p2psip.history") {
    this.storage = storage;
    this.key = key;
  }

  /** Entries newest first. */
  list() {
    try {
      const v = JSON.parse(this.storage?.getItem(this.key) ?? "[]");
      return Array.isArray(v) ? v.filter((e) => e && typeof e.peer === "string") : [];
    } catch {
      return [];
    }
  }

  _save(list) {
    try {
      this.storage?.setItem(this.key, JSON.stringify(list.slice(0, HISTORY_MAX)));
    } catch {
      // quota or private mode: history is a convenience
    }
  }

  /**
   * Adds a call: {dir: "in"|"out", peer, name, start (ms), duration (s),
   * result: "answered"|"missed"|"rejected"|"busy"|"cancelled"|"failed", reason}.
   */
  add(entry) {
    const e = {
      id: entry.id ?? String(entry.start) + "-" + Math.random().toString(36).slice(2, 8),
      dir: entry.dir === "in" ? "in" : "out",
      peer: peerKey(entry.peer),
      name: entry.name ?? "",
      start: entry.start ?? Date.now(),
      duration: Math.max(0, Math.round(entry.duration ?? 0)),
      result: entry.result ?? "answered",
      reason: entry.reason ?? "",
    };
    const list = this.list();
    list.unshift(e);
    list.sort((a, b) => b.start - a.start);
    this._save(list);
    return e;
  }

  clear() {
    this._save([]);
  }

  /** Distinct peers, most recent first: [{peer, name, last, count}]. */
  contacts(max = CONTACTS_MAX) {
    const seen = new Map();
    for (const e of this.list()) {
      const c = seen.get(e.peer);
      if (c) c.count++;
      else seen.set(e.peer, { peer: e.peer, name: e.name, last: e.start, count: 1 });
    }
    return [...seen.values()].slice(0, max);
  }
}

/** "2:05" / "1:02:03" for a call of s seconds. */
export function formatDuration(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
}

import { test } from "node:test";
import assert from "node:assert/strict";
import { HISTORY_MAX, HistoryStore, formatDuration } from "../src/lib/history.js";

function mem() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), m };
}

test("history is newest first, canonical peers, bounded", () => {
  const h = new HistoryStore(mem());
  h.add({ dir: "out", peer: "sip:Alice@P2PSIP.local;transport=ws", name: "Alice", start: 1000, duration: 61.4 });
  h.add({ dir: "in", peer: "sip:bob@p2psip.local", start: 3000, result: "missed" });
  h.add({ dir: "out", peer: "sip:carol@p2psip.local", start: 2000, result: "busy" });
  const l = h.list();
  assert.deepEqual(l.map((e) => e.peer), ["sip:bob@p2psip.local", "sip:carol@p2psip.local", "sip:Alice@p2psip.local"]);
  assert.equal(l[2].duration, 61);
  assert.equal(l[0].result, "missed");
  for (let i = 0; i < HISTORY_MAX + 20; i++) h.add({ peer: "sip:x@y", start: 10000 + i });
  assert.equal(h.list().length, HISTORY_MAX);
});

test("contacts are distinct peers by last call", () => {
  const h = new HistoryStore(mem());
  h.add({ peer: "sip:a@o", name: "a", start: 1 });
  h.add({ peer: "sip:b@o", name: "b", start: 2 });
  h.add({ peer: "sip:a@o;transport=ws", name: "a", start: 3 });
  assert.deepEqual(h.contacts().map((c) => [c.peer, c.count]), [["sip:a@o", 2], ["sip:b@o", 1]]);
  assert.equal(h.contacts(1).length, 1);
});

test("a broken or missing store gives an empty history", () => {
  const s = mem();
  s.setItem("p2psip.history", "{not json");
  assert.deepEqual(new HistoryStore(s).list(), []);
  s.setItem("p2psip.history", JSON.stringify([{ bad: 1 }, null, { peer: "sip:a@b", start: 1 }]));
  assert.equal(new HistoryStore(s).list().length, 1);
  const h = new HistoryStore(null);
  assert.deepEqual(h.list(), []);
  h.add({ peer: "sip:a@b" }); // no throw
  const full = { getItem: () => null, setItem: () => { throw new Error("QuotaExceededError"); } };
  new HistoryStore(full).add({ peer: "sip:a@b" });
  new HistoryStore(s).clear();
  assert.deepEqual(new HistoryStore(s).list(), []);
});

test("durations read like a clock", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(65), "1:05");
  assert.equal(formatDuration(3723), "1:02:03");
});

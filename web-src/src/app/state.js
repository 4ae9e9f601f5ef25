// The page's shared state: the app object (config, keys, accounts, the
// call), storage, the call history store, and small helpers that read them
// (instance id, storage keys, the peer's clock, the WebSocket URL).

import JsSIP from "jssip";
import { HistoryStore } from "../lib/history.js";

export const store = safeStorage();
export const history = new HistoryStore(store);
export const MARKS = ["call-click", "call-ringing", "call-media"];
export const USER_AGENT = "p2psip-softphone/0.1 JsSIP/" + JsSIP.version;
/** #call-state values in which the call has media (digits go as DTMF). */
export const IN_CALL = ["connected", "held", "remote-held"];

export const app = {
  cfg: null,
  key: null,
  deviceKey: null,
  clockSkewS: 0, // the peer's clock minus ours, seconds
  mode: "full", // full | phone | button
  embed: null, // {call, origin}
  name: null,
  overlay: null, // Account
  pub: null, // Account
  pubPassword: null,
  call: null,
  endedTimer: null,
  countdown: null,
  notification: null,
  iceTimer: null, // refreshes the ICE servers before their credentials expire
};

function safeStorage() {
  try {
    const s = window.localStorage;
    s.setItem("p2psip.probe", "1");
    s.removeItem("p2psip.probe");
    return s;
  } catch {
    const m = new Map();
    return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
  }
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function instanceId() {
  let id = store.getItem("p2psip.instance");
  if (!id || !/^[0-9a-f-]{36}$/i.test(id)) {
    id = uuid();
    store.setItem("p2psip.instance", id);
  }
  return id;
}

/** The storage key of the chosen name in this overlay. */
export function nameKey() {
  return "p2psip.name." + (app.cfg?.overlay ?? "").toLowerCase();
}

export function wsURL() {
  return "wss://" + location.host + "/sip";
}

export function random() {
  return crypto.getRandomValues(new Uint32Array(1))[0] / 2 ** 32;
}

/** Now on the peer's clock, Unix seconds. */
export function peerNow() {
  return Date.now() / 1000 + (app.clockSkewS ?? 0);
}

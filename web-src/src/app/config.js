// The peer's /api/config: loading and checking it, refreshing the ICE
// servers before their relay credentials expire, and the RTCPeerConnection
// configuration calls are set up with.

import { b64urlDecode } from "../lib/b64url.js";
import { iceRefreshDelay, rtcIceServers } from "../lib/ice.js";
import { app, peerNow } from "./state.js";

/** GET /api/config; throws on a transport error or a non-2xx answer. */
export async function fetchConfig() {
  const r = await fetch("/api/config", { cache: "no-store", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`/api/config answered ${r.status}`);
  return r.json();
}

/** Loads and checks the config into app.cfg, app.deviceKey and app.clockSkewS. */
export async function loadConfig() {
  const cfg = await fetchConfig();
  if (!cfg || typeof cfg.overlay !== "string" || !cfg.overlay) throw new Error("/api/config has no overlay name");
  const dk = b64urlDecode(cfg.deviceKey ?? "");
  if (dk.length !== 65 || dk[0] !== 4) throw new Error("/api/config has no valid deviceKey");
  cfg.iceServers = Array.isArray(cfg.iceServers) ? cfg.iceServers : [];
  cfg.iceGatherMs = Number.isFinite(cfg.iceGatherMs) && cfg.iceGatherMs > 0 ? cfg.iceGatherMs : 500;
  app.cfg = cfg;
  app.deviceKey = dk;
  // The owner proof is checked against the peer's clock: sign with it.
  app.clockSkewS = Number.isFinite(cfg.time) ? cfg.time - Date.now() / 1000 : 0;
}

// The overlay's relays come with credentials that expire (about ten
// minutes): fetch /api/config again before then. Calls set up their
// RTCPeerConnection from app.cfg.iceServers (pcConfig), so new calls get
// the new ones; calls in progress keep their allocations.
export function scheduleICERefresh() {
  clearTimeout(app.iceTimer);
  app.iceTimer = setTimeout(refreshICE, iceRefreshDelay(app.cfg?.iceServers, peerNow()) * 1000);
}

async function refreshICE() {
  try {
    const cfg = await fetchConfig();
    if (Array.isArray(cfg?.iceServers)) app.cfg.iceServers = cfg.iceServers;
    if (Number.isFinite(cfg?.time)) app.clockSkewS = cfg.time - Date.now() / 1000;
  } catch {
    // the peer is away (or answered an error): the next round (at least 15 s later) asks again
  }
  scheduleICERefresh();
}

/** The RTCPeerConnection configuration of a new call. */
export function pcConfig() {
  return { iceServers: rtcIceServers(app.cfg?.iceServers, peerNow()), bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
}

// ICE servers from /api/config: the overlay's TURN relays come with
// short-lived credentials (an `expires` field, Unix seconds on the peer's
// clock), so the page fetches the configuration again before they expire.

/**
 * Seconds to wait before fetching /api/config again: `margin` seconds
 * before the first credential expires, within [min, max]; `max` when
 * nothing expires (a relay may join the overlay later).
 */
export function iceRefreshDelay(iceServers, nowS, { margin = 120, min = 15, max = 600 } = {}) {
  let first = Infinity;
  for (const s of Array.isArray(iceServers) ? iceServers : []) {
    const e = Number(s?.expires);
    if (Number.isFinite(e) && e > 0 && e < first) first = e;
  }
  if (first === Infinity) return max;
  return Math.min(max, Math.max(min, Math.floor(first - margin - nowS)));
}

/**
 * RTCIceServer entries for RTCPeerConnection: urls, username and
 * credential only, without servers whose credential has expired.
 */
export function rtcIceServers(iceServers, nowS) {
  const out = [];
  for (const s of Array.isArray(iceServers) ? iceServers : []) {
    if (!s || !(typeof s.urls === "string" || Array.isArray(s.urls))) continue;
    if (Number(s.expires) > 0 && s.expires <= nowS) continue;
    const e = { urls: s.urls };
    if (s.username) e.username = s.username;
    if (s.credential) e.credential = s.credential;
    out.push(e);
  }
  return out;
}

// What the page needs to know from a call's SDP: is it WebRTC, did the peer
// bridge it to a plain RTP phone, was telephone-event (RFC 4733) agreed.

/** The session name the peer's media bridge puts in the SDP it hands the browser. */
export const BRIDGE_SESSION_NAME = "p2psip-bridge";

function lines(sdp) {
  return String(sdp ?? "").split(/\r?\n/).map((l) => l.trimEnd());
}

/**
 * Whether the SDP is something a browser can take: WebRTC media needs a
 * DTLS fingerprint (at session or media level). Plain RTP/AVP from a SIP
 * phone has none.
 */
export function isWebRTCSdp(sdp) {
  return lines(sdp).some((l) => l.startsWith("a=fingerprint:"));
}

/** Whether the SDP comes from the peer's media bridge (s=p2psip-bridge). */
export function isBridgedSdp(sdp) {
  return lines(sdp).some((l) => l === "s=" + BRIDGE_SESSION_NAME);
}

/**
 * The payload types of telephone-event in the SDP's first audio section
 * that is not rejected (port 0): those listed on its m= line with an
 * a=rtpmap:<pt> telephone-event/<rate>. Empty when there is none.
 */
export function telephoneEventTypes(sdp) {
  let inAudio = false;
  let done = false;
  let formats = [];
  const te = [];
  for (const l of lines(sdp)) {
    if (l.startsWith("m=")) {
      if (inAudio) done = true;
      if (done) break;
      const f = l.slice(2).split(/\s+/);
      inAudio = f[0] === "audio" && f[1] !== "0";
      formats = inAudio ? f.slice(3) : [];
      continue;
    }
    if (!inAudio) continue;
    const m = /^a=rtpmap:(\d+)\s+telephone-event\/\d+/i.exec(l);
    if (m && formats.includes(m[1])) te.push(Number(m[1]));
  }
  return te;
}

/**
 * Whether telephone-event was negotiated: the remote SDP has it and, when
 * the local one is known, so does ours (an answer keeps it only when the
 * offer had it).
 */
export function telephoneEventNegotiated(remoteSdp, localSdp = null) {
  if (telephoneEventTypes(remoteSdp).length === 0) return false;
  if (localSdp == null || localSdp === "") return true;
  return telephoneEventTypes(localSdp).length > 0;
}

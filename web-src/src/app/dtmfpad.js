// The dial pad and digits: pad keys and the keyboard type into #dial, or in
// a call send DTMF (RFC 4733 when the SDP negotiated telephone-event, else
// SIP INFO application/dtmf-relay; see dtmfTransports); digits the far end
// sends by INFO (application/dtmf-relay or application/dtmf, also from the
// peer's media bridge) show in #dtmf-received.

import { dtmfTransports, isDTMF, parseDtmfInfo, parseDtmfRelay } from "../lib/dtmf.js";
import { isBridgedSdp, telephoneEventNegotiated } from "../lib/sdp.js";
import { $ } from "./dom.js";
import { app, IN_CALL } from "./state.js";
import { callState, showError } from "./status.js";

const TONE_MS = 160;

/**
 * The call's remote SDP as it came in SIP (calls.js keeps the latest), and
 * our local one. Not the RTCPeerConnection's remoteDescription: Chrome
 * writes that out again with "s=-", losing s=p2psip-bridge.
 */
function descriptions(c) {
  const pc = c.pc ?? c.session?.connection;
  const remote = c.remoteSdp || pc?.remoteDescription?.sdp || "";
  const local = pc?.currentLocalDescription?.sdp || pc?.localDescription?.sdp || "";
  return { remote, local };
}

/** Whether the call's audio sender can send RFC 4733 events now. */
function canSendEvents(c) {
  const pc = c.pc ?? c.session?.connection;
  try {
    const s = pc?.getSenders?.().find((x) => x.track?.kind === "audio");
    // canInsertDTMF is false while the transceiver does not send (the far
    // end holds the call); Firefox lacks the attribute.
    return !!s?.dtmf && s.dtmf.canInsertDTMF !== false;
  } catch {
    return false;
  }
}

/** Sends one digit in the call, RFC 4733 or INFO (INFO when RFC 4733 cannot go now). */
function sendDigit(c, d) {
  const { remote, local } = descriptions(c);
  const ways = dtmfTransports({ telephoneEvent: telephoneEventNegotiated(remote, local), bridged: c.bridged || isBridgedSdp(remote) });
  let info = ways.includes("INFO");
  if (ways.includes("RFC2833")) {
    if (canSendEvents(c)) {
      try {
        c.session.sendDTMF(d, { transportType: "RFC2833", duration: TONE_MS });
      } catch {
        info = true; // no RTP sender after all: INFO carries it
      }
    } else {
      info = true;
    }
  }
  if (!info) return;
  try {
    c.session.sendDTMF(d, { transportType: "INFO", duration: TONE_MS });
  } catch (err) {
    showError("failed", "Cannot send the digit: " + (err?.message ?? err));
  }
}

/** A pad key or digit key: in a call sends it and returns true; else false (the caller dials it). */
function pressDigit(d) {
  const c = app.call;
  flashKey(d);
  if (c && !c.ended && c.session && IN_CALL.includes(callState())) {
    sendDigit(c, d);
    c.sent += d;
    $("call-timer").dataset.sent = c.sent;
    return true;
  }
  return false;
}

function flashKey(d) {
  const b = document.querySelector(`[data-digit="${CSS.escape(d)}"]`);
  if (!b) return;
  b.classList.add("pressed");
  setTimeout(() => b.classList.remove("pressed"), 150);
}

function gotDigit(c, digit, request) {
  if (c !== app.call || !digit) return;
  const key = request ? `${request.call_id}/${request.cseq}` : null;
  if (c.dtmf.add(digit, key)) $("dtmf-received").textContent = c.dtmf.digits;
}

/** Session handlers for digits the far end sends by SIP INFO. */
export function digitHandlers(c) {
  return {
    // application/dtmf-relay: JsSIP reads only "Signal=<one char>" on the
    // first line; read the body again (Signal=10/11, other line orders).
    newDTMF: (e) => {
      if (e.originator !== "remote") return;
      gotDigit(c, parseDtmfRelay(e.request?.body) ?? e.dtmf?.tone, e.request);
    },
    // Other INFO types: application/dtmf (a bare digit).
    newInfo: (e) => {
      if (e.originator !== "remote") return;
      const ct = e.info?.contentType ?? e.request?.getHeader?.("Content-Type") ?? "";
      gotDigit(c, parseDtmfInfo(ct, e.info?.body ?? e.request?.body), e.request);
    },
  };
}

export function bindPadUI() {
  $("backspace").addEventListener("click", () => { $("dial").value = $("dial").value.slice(0, -1); $("dial").focus(); });
  for (const b of document.querySelectorAll("[data-digit]")) {
    b.addEventListener("click", () => {
      const d = b.dataset.digit;
      if (!pressDigit(d)) {
        $("dial").value += d;
      }
    });
  }
  $("dial").addEventListener("keydown", (e) => {
    if (e.key.length === 1 && isDTMF(e.key) && !/[A-D]/i.test(e.key)) pressDigit(e.key);
  });
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key.length === 1 && /^[0-9*#]$/.test(e.key)) {
      if (!pressDigit(e.key)) {
        $("dial").value += e.key;
        $("dial").focus();
      }
      e.preventDefault();
    }
  });
}

// Calls: placing, receiving (ringing, busy, refusing offers the browser
// cannot take), answering, rejecting, hanging up, mute and hold, the call
// box (#call-state, #peer-name, #call-account, #call-timer), tones, timing
// marks, the end of a call (history, #error, widget events), and the
// session's remote SDP (bridged or not) that DTMF and the quality panel read.

import { renumberZeroCSeq } from "../lib/cseq.js";
import { callError, micError } from "../lib/errors.js";
import { DtmfLog } from "../lib/dtmf.js";
import { formatDuration } from "../lib/history.js";
import { isBridgedSdp, isWebRTCSdp } from "../lib/sdp.js";
import { displayName, normalizeTarget, peerKey } from "../lib/sipuri.js";
import { startRingback, startRingtone, unlockAudio } from "./audio.js";
import { pcConfig } from "./config.js";
import { applySpeaker, getMic } from "./devices.js";
import { $ } from "./dom.js";
import { digitHandlers } from "./dtmfpad.js";
import { post } from "./embed.js";
import { addHistory } from "./historyview.js";
import { askNotificationPermission, closeNotification, notifyIncoming } from "./notify.js";
import { resetQuality, startStats, writeBridged } from "./qualitypanel.js";
import { app, MARKS } from "./state.js";
import { callState, clearError, setCallState, showError, updateButtons } from "./status.js";

// What the caller gets for an offer the browser cannot take: the peer
// bridges plain RTP offers to WebRTC, so one without a DTLS fingerprint
// here is one it could not bridge.
const NOT_BRIDGED_WARNING = 'Warning: 399 p2psip "the peer could not bridge the call\'s audio to WebRTC"';

function newCall(session, acct, dir, peerUri, peerName) {
  clearTimeout(app.endedTimer);
  const c = {
    session, acct, dir, peerUri, peerName,
    start: Date.now(), answered: false, answeredAt: 0, ended: false,
    stream: null, stopTone: null, dtmf: new DtmfLog(), sent: "",
    statsTimer: null, mediaTimer: null, prev: null, timer: null, media: false, rejected: false,
    ringing: false, iceReady: null, iceTimer: null,
    remoteSdp: "", bridged: false, codec: null,
  };
  app.call = c;
  $("peer-name").textContent = peerName;
  // Which of this page's accounts the call is on: with a public account
  // registered, an incoming call may be for either.
  const pub = acct && acct === app.pub;
  const ca = $("call-account");
  ca.dataset.account = pub ? "public" : "overlay";
  ca.textContent = pub ? (dir === "in" ? "to " : "as ") + acct.opts.uri.replace(/^sips?:/, "") : "";
  ca.hidden = !pub;
  $("dtmf-received").textContent = "";
  $("call-timer").textContent = "";
  $("mute").setAttribute("aria-pressed", "false");
  $("mute").textContent = "Mute";
  $("hold").setAttribute("aria-pressed", "false");
  $("hold").textContent = "Hold";
  resetQuality();
  return c;
}

/** Keeps the far end's latest SDP; s=p2psip-bridge marks a call the peer bridges to a phone. */
function noteRemoteSdp(c, sdp) {
  if (typeof sdp !== "string" || !sdp) return;
  c.remoteSdp = sdp;
  c.bridged = isBridgedSdp(sdp);
  if (c === app.call) writeBridged(c.bridged);
}

function sessionHandlers(c) {
  return {
    peerconnection: (e) => attachPc(c, e.peerconnection),
    icecandidate: (e) => {
      // Bounded gathering: send the offer/answer iceGatherMs after the first candidate.
      if (c.iceReady === e.ready) return;
      c.iceReady = e.ready;
      clearTimeout(c.iceTimer);
      c.iceTimer = setTimeout(() => e.ready(), app.cfg?.iceGatherMs ?? 500);
    },
    sending: (e) => {
      clearTimeout(c.iceTimer);
      renumberZeroCSeq(e.request); // JsSIP cannot ack an INVITE numbered 0 (lib/cseq.js)
    },
    sdp: (e) => {
      if (e.originator === "remote") noteRemoteSdp(c, e.sdp);
    },
    progress: (e) => {
      if (c !== app.call || c.ended || e.originator !== "remote") return;
      const code = e.response?.status_code;
      if (code !== 180 && code !== 183) return;
      if (!c.ringing) {
        c.ringing = true;
        performance.mark("call-ringing");
        post("ringing", { to: c.peerUri });
      }
      setCallState("ringing");
      if (code === 180 && !c.stopTone && !e.response?.body) c.stopTone = startRingback();
      if (code === 183 && c.stopTone) { c.stopTone(); c.stopTone = null; }
    },
    accepted: () => onConnected(c),
    confirmed: () => onConnected(c),
    ended: (e) => finishCall(c, { cause: e.cause, originator: e.originator }),
    failed: (e) => finishCall(c, {
      cause: e.cause, originator: e.originator,
      status: e.originator === "remote" && e.message && e.message.status_code ? e.message.status_code : null,
      reason: e.message?.reason_phrase ?? "",
    }),
    hold: () => updateHold(c),
    unhold: () => updateHold(c),
    muted: () => updateMute(c),
    unmuted: () => updateMute(c),
    ...digitHandlers(c),
  };
}

function attachPc(c, pc) {
  c.pc = pc;
  pc.addEventListener("track", (ev) => {
    if (ev.track.kind !== "audio") return;
    const audio = $("remote-audio");
    audio.srcObject = ev.streams?.[0] ?? new MediaStream([ev.track]);
    audio.play().catch(() => {});
  });
}

async function placeCall(targetInput) {
  unlockAudio();
  askNotificationPermission();
  if (app.call && !app.call.ended) return;
  for (const m of MARKS) performance.clearMarks(m);
  performance.mark("call-click");
  clearError("not-found", "busy", "failed", "mic-denied");
  const raw = targetInput ?? $("dial").value;
  const target = normalizeTarget(raw, app.cfg?.overlay);
  if (!target) {
    showError("failed", raw.trim() ? "That is not a name, number or SIP address." : "Type a name, number or SIP address to call.");
    $("dial").focus();
    return;
  }
  const usePublic = $("from").value === "public" && app.pub?.state === "registered";
  const acct = usePublic ? app.pub : app.overlay;
  if (!acct || acct.state !== "registered") {
    showError("failed", "You are not registered yet; wait until the status says Registered.");
    return;
  }
  const peerName = displayName(target, app.cfg.overlay);
  const c = newCall(null, acct, "out", target, peerName);
  setCallState("calling");
  post("calling", { to: target });
  try {
    c.stream = await getMic();
  } catch (err) {
    const e = micError(err);
    c.ended = true;
    app.call = null;
    showError(e.code, e.message);
    setCallState("idle");
    post("failed", { stage: "call", code: e.code, message: e.message });
    return;
  }
  if (c.ended) { c.stream.getTracks().forEach((t) => t.stop()); return; }
  try {
    c.session = acct.ua.call(target, {
      mediaStream: c.stream,
      pcConfig: pcConfig(),
      rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
      eventHandlers: sessionHandlers(c),
    });
  } catch (err) {
    finishCall(c, { cause: "Failed", error: err?.message });
  }
}

/** Calls a peer from the history or contacts (unless a call is up). */
export function callPeer(uri) {
  if (app.call && !app.call.ended) return;
  const v = peerKey(uri);
  const p = displayName(v, app.cfg?.overlay);
  $("dial").value = p.includes("@") ? v.replace(/^sip:/, "") : p;
  placeCall();
}

/** An Account's incoming INVITE. */
export function onIncoming(session, request, acct) {
  const uri = session.remote_identity?.uri?.toString() ?? "";
  const disp = session.remote_identity?.display_name;
  const overlayName = displayName(uri, app.cfg?.overlay);
  // A browser takes only WebRTC media (ICE, DTLS-SRTP). The peer bridges
  // plain RTP offers from SIP phones, so the page sees a WebRTC offer
  // (s=p2psip-bridge); one still without a DTLS fingerprint is one the
  // peer could not bridge, and can never be answered here: do not ring.
  const body = typeof request?.body === "string" ? request.body : "";
  if (body && !isWebRTCSdp(body)) {
    session.terminate({ status_code: 488, reason_phrase: "Not Acceptable Here", extraHeaders: [NOT_BRIDGED_WARNING] });
    addHistory({ dir: "in", peer: uri, name: disp || overlayName, start: Date.now(), result: "missed", reason: "the peer could not bridge the caller's audio" });
    return;
  }
  if (app.call && !app.call.ended) {
    session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
    addHistory({ dir: "in", peer: uri, name: disp || overlayName, start: Date.now(), result: "missed", reason: "busy in another call" });
    return;
  }
  const c = newCall(session, acct, "in", uri, disp || overlayName);
  noteRemoteSdp(c, body);
  const h = sessionHandlers(c);
  for (const [ev, fn] of Object.entries(h)) session.on(ev, fn);
  setCallState("incoming", "Incoming call");
  c.stopTone = startRingtone();
  document.title = `Call from ${c.peerName} – p2psip`;
  notifyIncoming(c);
  if (app.mode !== "button") $("answer").focus({ preventScroll: true });
}

async function answer() {
  const c = app.call;
  if (!c || c.ended || c.dir !== "in" || c.answering) return;
  c.answering = true;
  unlockAudio();
  stopTone(c);
  try {
    c.stream = await getMic();
  } catch (err) {
    const e = micError(err);
    showError(e.code, e.message);
    c.answering = false;
    c.stopTone = startRingtone();
    return;
  }
  if (c.ended) { c.stream.getTracks().forEach((t) => t.stop()); return; }
  try {
    c.session.answer({ mediaStream: c.stream, pcConfig: pcConfig() });
  } catch (err) {
    showError("failed", "Cannot answer: " + (err?.message ?? err));
  }
}

function reject() {
  const c = app.call;
  if (!c || c.ended) return;
  c.rejected = true;
  try {
    c.session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
  } catch {
    finishCall(c, { cause: "Rejected", originator: "local" });
  }
}

function hangup() {
  const c = app.call;
  if (!c || c.ended) return;
  if (!c.session) { finishCall(c, { cause: "Canceled", originator: "local" }); return; }
  try {
    c.session.terminate();
  } catch {
    finishCall(c, { cause: "Terminated", originator: "local" });
  }
}

function toggleMute() {
  const c = app.call;
  if (!c?.session) return;
  if (c.session.isMuted().audio) c.session.unmute({ audio: true });
  else c.session.mute({ audio: true });
}

function updateMute(c) {
  if (c !== app.call) return;
  const m = c.session.isMuted().audio;
  $("mute").setAttribute("aria-pressed", String(m));
  $("mute").textContent = m ? "Unmute" : "Mute";
}

function toggleHold() {
  const c = app.call;
  if (!c?.session) return;
  const ok = c.session.isOnHold().local ? c.session.unhold() : c.session.hold();
  if (!ok) showError("failed", "Cannot change hold now; try again in a moment.");
}

function updateHold(c) {
  if (c !== app.call || c.ended) return;
  const h = c.session.isOnHold();
  $("hold").setAttribute("aria-pressed", String(h.local));
  $("hold").textContent = h.local ? "Resume" : "Hold";
  setCallState(h.local ? "held" : h.remote ? "remote-held" : "connected");
}

function onConnected(c) {
  if (c !== app.call || c.ended) return;
  if (!c.answered) {
    c.answered = true;
    c.answeredAt = Date.now();
    stopTone(c);
    closeNotification();
    document.title = "p2psip phone";
    setCallState("connected", "Connected");
    post("connected", { peer: c.peerUri });
    startTimers(c);
    applySpeaker();
  }
}

function startTimers(c) {
  const tick = () => { $("call-timer").textContent = formatDuration((Date.now() - c.answeredAt) / 1000); };
  tick();
  c.timer = setInterval(tick, 1000);
  startStats(c);
}

function stopTone(c) {
  if (c.stopTone) {
    c.stopTone();
    c.stopTone = null;
  }
}

function finishCall(c, { cause, originator, status = null, reason = "" }) {
  if (c.ended) return;
  c.ended = true;
  stopTone(c);
  clearTimeout(c.iceTimer);
  clearInterval(c.timer);
  clearInterval(c.mediaTimer);
  clearInterval(c.statsTimer);
  c.stream?.getTracks().forEach((t) => t.stop());
  const audio = $("remote-audio");
  audio.srcObject = null;
  closeNotification();
  document.title = "p2psip phone";
  const duration = c.answered ? (Date.now() - c.answeredAt) / 1000 : 0;
  let result;
  let err = null;
  if (c.answered) {
    result = "answered";
  } else if (c.dir === "in") {
    result = c.rejected ? "rejected" : "missed";
  } else if (originator === "local" && (cause === "Canceled" || cause === "Terminated")) {
    result = "cancelled";
  } else {
    err = callError(status, reason, cause, c.peerName);
    result = err?.code === "busy" ? "busy" : err ? "failed" : "cancelled";
  }
  addHistory({ dir: c.dir, peer: c.peerUri, name: c.peerName, start: c.start, duration, result, reason: err?.message ?? "" });
  if (err) {
    showError(err.code, err.message);
    setCallState("ended", err.message);
    post("failed", { stage: "call", code: err.code, message: err.message, status, peer: c.peerUri });
  } else {
    const text = c.answered ? `Call ended (${formatDuration(duration)})` : c.dir === "in" && !c.rejected ? "Missed call" : "Call ended";
    setCallState("ended", text);
  }
  post("ended", { peer: c.peerUri, duration: Math.round(duration), cause: cause ?? "", answered: c.answered });
  clearTimeout(app.endedTimer);
  app.endedTimer = setTimeout(() => {
    if (app.call === c) {
      app.call = null;
      setCallState("idle");
    }
  }, 4000);
  updateButtons();
}

export function bindCallUI() {
  $("dial-form").addEventListener("submit", (e) => { e.preventDefault(); placeCall(); });
  $("call").addEventListener("click", () => placeCall());
  $("answer").addEventListener("click", answer);
  $("reject").addEventListener("click", reject);
  $("hangup").addEventListener("click", hangup);
  $("mute").addEventListener("click", toggleMute);
  $("hold").addEventListener("click", toggleHold);
  // Escape outside the fields: reject a ringing call, else hang up.
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape" && app.call && !app.call.ended) {
      if (callState() === "incoming") reject(); else hangup();
    }
  });
}

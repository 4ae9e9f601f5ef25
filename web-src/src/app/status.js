// The page's status: the registration chip (#reg-state), the error banner
// (#error[data-code]), the call state (#call-state, body[data-call]) and
// which call buttons show.

import { $ } from "./dom.js";
import { app, IN_CALL } from "./state.js";

const REG_TEXT = { unregistered: "Not registered", registering: "Registering…", registered: "Registered", failed: "Offline" };

export function setRegState(state, text) {
  const e = $("reg-state");
  e.dataset.state = state;
  e.textContent = text ?? REG_TEXT[state];
  updateButtons();
}

export function showError(code, message) {
  const e = $("error");
  e.dataset.code = code;
  $("error-text").textContent = message;
  e.hidden = false;
}

/** Hides the banner; with codes, only when it shows one of them. */
export function clearError(...codes) {
  const e = $("error");
  if (codes.length && !codes.includes(e.dataset.code)) return;
  e.hidden = true;
  e.dataset.code = "";
  $("error-text").textContent = "";
}

const CALL_TEXT = {
  idle: "Ready",
  calling: "Calling…",
  ringing: "Ringing…",
  incoming: "Incoming call",
  connected: "Connected",
  held: "On hold",
  "remote-held": "Held by the other party",
  ended: "Call ended",
};

export function setCallState(state, text) {
  const e = $("call-state");
  e.dataset.state = state;
  e.textContent = text ?? CALL_TEXT[state];
  document.body.dataset.call = state;
  updateButtons();
}

/** The #call-state the page shows now. */
export function callState() {
  return $("call-state").dataset.state;
}

export function updateButtons() {
  const st = callState();
  const c = app.call;
  const live = c && !c.ended;
  const inCall = live && IN_CALL.includes(st);
  const canCall = !live && (app.overlay?.state === "registered" || app.pub?.state === "registered");
  $("call").hidden = !!live;
  $("call").disabled = !canCall;
  $("answer").hidden = !(live && st === "incoming");
  $("reject").hidden = !(live && st === "incoming");
  $("hangup").hidden = !(live && st !== "incoming");
  $("mute").hidden = !inCall;
  $("hold").hidden = !inCall;
  $("quality").hidden = !(inCall || (c && c.answered));
}

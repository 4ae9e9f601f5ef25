// The overlay name and its registration: proposing and checking a free
// name, the join form, the overlay Account (signed owner certificate), its
// state in #reg-state / #aor, and the reconnect countdown in #conn.

import { b64urlEncode } from "../lib/b64url.js";
import { canonicalAOR, signOwnerHeader } from "../lib/cert.js";
import { generateName, guestName, normalizeName, validateName } from "../lib/names.js";
import { secondsLeft } from "../lib/backoff.js";
import { registerError } from "../lib/errors.js";
import { unlockAudio } from "./audio.js";
import { onIncoming } from "./calls.js";
import { $ } from "./dom.js";
import { post } from "./embed.js";
import { Account } from "./sip.js";
import { app, instanceId, nameKey, peerNow, random, store, USER_AGENT, wsURL } from "./state.js";
import { clearError, setRegState, showError } from "./status.js";

/** {free: true|false|null, mine}: is the name free in the overlay? */
async function checkName(name) {
  const aor = canonicalAOR(name, app.cfg.overlay);
  try {
    const r = await fetch("/api/registrations/" + encodeURIComponent(aor), { cache: "no-store" });
    if (r.status === 404) return { free: true };
    if (r.ok) {
      const body = await r.json().catch(() => ({}));
      const mine = app.key && body.owner === b64urlEncode(app.key.publicRaw);
      return { free: !!mine, mine: !!mine };
    }
    return { free: null };
  } catch {
    return { free: null };
  }
}

async function proposeName() {
  const hint = $("name-hint");
  hint.textContent = "Finding a free name…";
  let name = generateName(random);
  for (let i = 0; i < 6; i++) {
    const st = await checkName(name);
    if (st.free !== false) break;
    name = generateName(random);
  }
  $("name").value = name;
  hint.textContent = "This name is free. Keep it or type your own, then press “Use this name”.";
}

let nameCheckTimer = null;
let nameCheckSeq = 0;
function onNameInput() {
  clearTimeout(nameCheckTimer);
  const name = normalizeName($("name").value);
  const problem = validateName(name);
  const hint = $("name-hint");
  $("name").setAttribute("aria-invalid", problem ? "true" : "false");
  if (problem) {
    hint.textContent = problem;
    return;
  }
  hint.textContent = "Checking…";
  const seq = ++nameCheckSeq;
  nameCheckTimer = setTimeout(async () => {
    const st = await checkName(name);
    if (seq !== nameCheckSeq) return;
    hint.textContent = st.free === true ? (st.mine ? `${name} is already yours.` : `${name} is free.`)
      : st.free === false ? `${name} is taken by someone else.` : "";
  }, 350);
}

async function onJoin(ev) {
  ev.preventDefault();
  unlockAudio();
  if (!app.cfg) return;
  const name = normalizeName($("name").value);
  $("name").value = name;
  const problem = validateName(name);
  if (problem) {
    $("name-hint").textContent = problem;
    $("name").setAttribute("aria-invalid", "true");
    $("name").focus();
    return;
  }
  clearError();
  register(name, { persist: true });
}

function showJoinForm(show) {
  $("join-form").hidden = !show;
  $("me").hidden = show;
  document.body.dataset.identity = show ? "choosing" : "chosen";
}

function register(name, { persist }) {
  if (app.overlay) app.overlay.stop();
  app.name = name;
  const aor = canonicalAOR(name, app.cfg.overlay);
  $("join").disabled = true;
  $("name").disabled = true;
  const acct = new Account({
    wsURL: wsURL(),
    uri: aor,
    instanceId: instanceId(),
    userAgent: USER_AGENT,
    sign: async () => (await signOwnerHeader(crypto.subtle, app.key.privateKey, app.key.publicRaw, aor, app.deviceKey, peerNow())).header,
    on: {
      state: (state, info) => onOverlayState(acct, state, info, { name, aor, persist }),
      retry: (at, attempt) => startCountdown(acct, at, attempt),
      incoming: onIncoming,
    },
  });
  app.overlay = acct;
  setRegState("registering");
  acct.start();
}

function onOverlayState(acct, state, info, { name, aor, persist }) {
  if (acct !== app.overlay) return;
  if (state === "registered") {
    stopCountdown();
    clearError("unreachable", "name-taken", "failed");
    setRegState("registered");
    $("aor").textContent = aor;
    $("me-pending").textContent = "";
    $("name").disabled = false;
    $("join").disabled = false;
    if (persist) store.setItem(nameKey(), name);
    showJoinForm(false);
    $("conn").textContent = "";
    post("registered", { aor });
    return;
  }
  if (state === "registering") {
    setRegState("registering");
    return;
  }
  if (state === "unregistered") {
    setRegState("unregistered");
    return;
  }
  // failed
  if (info.phase === "disconnected") {
    setRegState("failed", "Offline");
    showError("unreachable", "Peer unreachable, reconnecting…");
    return;
  }
  const err = info.phase === "sign"
    ? { code: "failed", message: "Cannot sign this browser's certificate: " + info.cause }
    : registerError(info.status, info.reason, info.cause);
  setRegState("failed", info.status ? `Refused (${info.status})` : "Failed");
  showError(err.code, err.message);
  post("failed", { stage: "register", code: err.code, message: err.message, status: info.status ?? null });
  const permanent = info.status && info.status !== 408 && info.status !== 480 && info.status < 500;
  if (permanent) {
    acct.stop();
    app.overlay = null;
    $("name").disabled = false;
    $("join").disabled = false;
    if (app.mode === "button" && err.code === "name-taken") {
      register(guestName(random), { persist: false });
      return;
    }
    if (err.code === "name-taken") store.removeItem(nameKey());
    showJoinForm(true);
    setRegState("failed", err.code === "name-taken" ? "Name taken" : "Refused");
  }
}

function startCountdown(acct, at, attempt) {
  if (acct !== app.overlay) return;
  stopCountdown();
  const tick = () => {
    const n = secondsLeft(at, Date.now());
    const msg = attempt === 0 ? `Registration failed, retrying in ${n} s` : `Peer unreachable, retrying in ${n} s`;
    $("conn").textContent = n > 0 ? `Reconnecting in ${n} s` : "Reconnecting…";
    if (attempt !== 0) showError("unreachable", n > 0 ? msg : "Peer unreachable, reconnecting…");
    if (n <= 0) stopCountdown();
  };
  tick();
  app.countdown = setInterval(tick, 1000);
}

function stopCountdown() {
  clearInterval(app.countdown);
  app.countdown = null;
}

/**
 * Starts the overlay identity once the config and key are there: a guest
 * name in button mode, else the saved name, else the join form with a
 * proposed free name.
 */
export async function startIdentity() {
  if (app.mode === "button") {
    showJoinForm(false);
    register(guestName(random), { persist: false });
    return;
  }
  const saved = store.getItem(nameKey());
  if (saved && !validateName(saved)) {
    $("name").value = saved;
    showJoinForm(false);
    $("me-pending").textContent = `Registering ${saved}…`;
    register(saved, { persist: true });
  } else {
    showJoinForm(true);
    await proposeName();
    $("name").focus({ preventScroll: true });
  }
}

export function bindRegistrationUI() {
  $("join-form").addEventListener("submit", onJoin);
  $("name").addEventListener("input", onNameInput);
  $("suggest").addEventListener("click", () => proposeName());
  $("change-name").addEventListener("click", () => {
    showJoinForm(true);
    $("name").value = app.name ?? "";
    $("name-hint").textContent = "Type a new name and press “Use this name”. Your current name stays until then.";
    $("name").focus();
  });
}

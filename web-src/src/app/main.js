// The p2psip softphone (index.html) and its embedded forms (embed.html,
// ?mode=button|phone). docs/softphone.md is the contract with the peer and
// with the e2e tests: keep ids, data attributes and marks stable.

import JsSIP from "jssip";
import { b64urlDecode, b64urlEncode } from "../lib/b64url.js";
import { canonicalAOR, signOwnerHeader } from "../lib/cert.js";
import { generateName, guestName, normalizeName, validateName } from "../lib/names.js";
import { displayName, normalizeTarget, peerKey } from "../lib/sipuri.js";
import { readStats, quality } from "../lib/quality.js";
import { secondsLeft } from "../lib/backoff.js";
import { iceRefreshDelay, rtcIceServers } from "../lib/ice.js";
import { HistoryStore, formatDuration } from "../lib/history.js";
import { callError, micError, registerError } from "../lib/errors.js";
import { DtmfLog, isDTMF, parseDtmfRelay } from "../lib/dtmf.js";
import { ownerKey } from "./keystore.js";
import { listDevices, setSpeaker, startRingback, startRingtone, testTone, unlockAudio } from "./audio.js";
import { Account } from "./sip.js";

const $ = (id) => document.getElementById(id);
const store = safeStorage();
const history = new HistoryStore(store);
const MARKS = ["call-click", "call-ringing", "call-media"];
const USER_AGENT = "p2psip-softphone/0.1 JsSIP/" + JsSIP.version;

const app = {
  cfg: null,
  key: null,
  deviceKey: null,
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

// ---------------------------------------------------------------- helpers

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

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function instanceId() {
  let id = store.getItem("p2psip.instance");
  if (!id || !/^[0-9a-f-]{36}$/i.test(id)) {
    id = uuid();
    store.setItem("p2psip.instance", id);
  }
  return id;
}

function nameKey() {
  return "p2psip.name." + (app.cfg?.overlay ?? "").toLowerCase();
}

function wsURL() {
  return "wss://" + location.host + "/sip";
}

function random() {
  return crypto.getRandomValues(new Uint32Array(1))[0] / 2 ** 32;
}

// Posts a widget event to the host page (embed only, to the given origin only).
function post(event, detail = {}) {
  if (!app.embed?.origin || window.parent === window) return;
  try {
    window.parent.postMessage({ source: "p2psip", event, detail }, app.embed.origin);
  } catch {
    // a bad origin string: nothing to post to
  }
}

// ------------------------------------------------------------------ state UI

const REG_TEXT = { unregistered: "Not registered", registering: "Registering…", registered: "Registered", failed: "Offline" };

function setRegState(state, text) {
  const e = $("reg-state");
  e.dataset.state = state;
  e.textContent = text ?? REG_TEXT[state];
  updateButtons();
}

function showError(code, message) {
  const e = $("error");
  e.dataset.code = code;
  $("error-text").textContent = message;
  e.hidden = false;
}

function clearError(...codes) {
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

function setCallState(state, text) {
  const e = $("call-state");
  e.dataset.state = state;
  e.textContent = text ?? CALL_TEXT[state];
  document.body.dataset.call = state;
  updateButtons();
}

function updateButtons() {
  const st = $("call-state").dataset.state;
  const c = app.call;
  const live = c && !c.ended;
  const inCall = live && ["connected", "held", "remote-held"].includes(st);
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

// ------------------------------------------------------------ registration

async function loadConfig() {
  const r = await fetch("/api/config", { cache: "no-store", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`/api/config answered ${r.status}`);
  const cfg = await r.json();
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

/** Now on the peer's clock, Unix seconds. */
function peerNow() {
  return Date.now() / 1000 + (app.clockSkewS ?? 0);
}

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

// ----------------------------------------------------------- public account

function loadPublicPrefs() {
  try {
    return JSON.parse(store.getItem("p2psip.public") ?? "null") ?? {};
  } catch {
    return {};
  }
}

function setPubState(state, text) {
  const e = $("pub-state");
  e.dataset.state = state;
  e.textContent = text ?? { unregistered: "Off", registering: "Registering…", registered: "Registered", failed: "Failed" }[state];
  $("pub-register").hidden = state === "registered" || state === "registering";
  $("pub-unregister").hidden = !(state === "registered" || state === "registering" || state === "failed");
  renderFrom();
  updateButtons();
}

function renderFrom() {
  const sel = $("from");
  const pubOK = app.pub?.state === "registered";
  $("from-wrap").hidden = !pubOK;
  const cur = sel.value;
  sel.replaceChildren(
    el("option", { value: "overlay" }, app.name ? `${app.name} (overlay)` : "overlay name"),
    ...(pubOK ? [el("option", { value: "public" }, app.pub.opts.uri.replace(/^sip:/, ""))] : []),
  );
  if (cur && [...sel.options].some((o) => o.value === cur)) sel.value = cur;
}

function onPublicSubmit(ev) {
  ev.preventDefault();
  unlockAudio();
  if (!app.cfg?.publicProxy) return;
  let uri = $("pub-uri").value.trim();
  if (!/^sips?:/i.test(uri)) uri = "sip:" + uri;
  const ok = /^sips?:[^@\s]+@[A-Za-z0-9.-]+$/.test(uri);
  const perr = $("pub-error");
  if (!ok) {
    perr.textContent = "Type the account as user@domain, for example alice@atlanta.example.";
    perr.hidden = false;
    return;
  }
  const password = $("pub-password").value;
  if (!password) {
    perr.textContent = "Type the account's password.";
    perr.hidden = false;
    return;
  }
  perr.hidden = true;
  const authUser = $("pub-user").value.trim();
  const remember = $("pub-remember").checked;
  store.setItem("p2psip.public", JSON.stringify({ uri, authUser, remember, ...(remember ? { password } : {}) }));
  startPublic(uri, authUser, password);
}

// The public registrar sends calls to an overlay alias this browser owns,
// "<name>-pub": the peer registers it in the overlay with this account's
// WebSocket before relaying the REGISTER (the page's key proves ownership
// of the alias, as of the name itself). Calls for the public account then
// reach this account's UA, and its in-dialog requests find it by Contact.
function publicAlias() {
  return canonicalAOR(app.name + "-pub", app.cfg.overlay);
}

function startPublic(uri, authUser, password) {
  if (app.pub) app.pub.stop();
  if (!app.name) {
    $("pub-error").textContent = "Choose your overlay name first: the public account reaches you through it.";
    $("pub-error").hidden = false;
    return;
  }
  app.pubPassword = password;
  const alias = publicAlias();
  const acct = new Account({
    wsURL: wsURL(),
    uri,
    password,
    authUser: authUser || undefined,
    contactURI: alias,
    instanceId: instanceId(),
    userAgent: USER_AGENT,
    sign: async () => (await signOwnerHeader(crypto.subtle, app.key.privateKey, app.key.publicRaw, alias, app.deviceKey, peerNow())).header,
    on: {
      state: (state, info) => {
        if (acct !== app.pub) return;
        if (state === "failed") {
          const err = info.phase === "disconnected" ? { message: "Peer unreachable, reconnecting…" } : registerError(info.status, info.reason, info.cause);
          $("pub-error").textContent = err.message;
          $("pub-error").hidden = false;
          setPubState("failed", info.status ? `Failed (${info.status})` : "Failed");
          if (info.status && (info.status === 401 || info.status === 403 || info.status === 404 || info.status === 407)) {
            acct.stop();
            app.pub = null;
            setPubState("failed", `Failed (${info.status})`);
          }
          return;
        }
        if (state === "registered") $("pub-error").hidden = true;
        setPubState(state);
      },
      incoming: onIncoming,
    },
  });
  app.pub = acct;
  setPubState("registering");
  acct.start();
}

function stopPublic() {
  if (app.pub) app.pub.stop();
  app.pub = null;
  app.pubPassword = null;
  const prefs = loadPublicPrefs();
  if (!prefs.remember) {
    delete prefs.password;
    store.setItem("p2psip.public", JSON.stringify(prefs));
  }
  setPubState("unregistered");
}

// ------------------------------------------------------------------- calls

async function getMic() {
  const id = $("mic").value || store.getItem("p2psip.mic") || "";
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (id && id !== "default") audio.deviceId = { exact: id };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video: false });
  } catch (err) {
    if (err?.name === "OverconstrainedError" && audio.deviceId) {
      delete audio.deviceId; // the saved microphone is gone: take the default one
      return navigator.mediaDevices.getUserMedia({ audio, video: false });
    }
    throw err;
  }
}

function pcConfig() {
  return { iceServers: rtcIceServers(app.cfg?.iceServers, peerNow()), bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
}

function newCall(session, acct, dir, peerUri, peerName) {
  clearTimeout(app.endedTimer);
  const c = {
    session, acct, dir, peerUri, peerName,
    start: Date.now(), answered: false, answeredAt: 0, ended: false,
    stream: null, stopTone: null, dtmf: new DtmfLog(), sent: "",
    statsTimer: null, mediaTimer: null, prev: null, timer: null, media: false, rejected: false,
    ringing: false, iceReady: null, iceTimer: null,
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
  writeQuality({ packetsReceived: 0, audioLevel: 0, rttMs: null, lossPct: null, jitterMs: null, grade: "none" });
  return c;
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
    sending: () => {
      clearTimeout(c.iceTimer);
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
    newDTMF: (e) => {
      if (e.originator !== "remote") return;
      gotDigit(c, e.dtmf?.tone, e.request);
    },
    newInfo: (e) => {
      if (e.originator !== "remote") return;
      const ct = e.info?.contentType ?? e.request?.getHeader?.("Content-Type") ?? "";
      if (!/application\/dtmf/i.test(ct)) return;
      gotDigit(c, parseDtmfRelay(e.info?.body ?? e.request?.body), e.request);
    },
  };
}

function gotDigit(c, digit, request) {
  if (c !== app.call || !digit) return;
  const key = request ? `${request.call_id}/${request.cseq}` : null;
  if (c.dtmf.add(digit, key)) $("dtmf-received").textContent = c.dtmf.digits;
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

function onIncoming(session, request, acct) {
  const uri = session.remote_identity?.uri?.toString() ?? "";
  const disp = session.remote_identity?.display_name;
  const overlayName = displayName(uri, app.cfg?.overlay);
  // A browser takes only WebRTC media (ICE, DTLS-SRTP). An offer without a
  // DTLS fingerprint (plain RTP from a public SIP phone: there is no media
  // bridge yet) can never be answered here, so do not ring for it.
  const body = typeof request?.body === "string" ? request.body : "";
  if (body && !/^a=fingerprint:/m.test(body)) {
    session.terminate({
      status_code: 488, reason_phrase: "Not Acceptable Here",
      extraHeaders: ['Warning: 399 p2psip "the browser takes WebRTC media only (ICE, DTLS-SRTP)"'],
    });
    history.add({ dir: "in", peer: uri, name: disp || overlayName, start: Date.now(), result: "missed", reason: "the caller's audio is not WebRTC" });
    renderHistory();
    return;
  }
  if (app.call && !app.call.ended) {
    session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
    history.add({ dir: "in", peer: uri, name: disp || overlayName, start: Date.now(), result: "missed", reason: "busy in another call" });
    renderHistory();
    return;
  }
  const c = newCall(session, acct, "in", uri, disp || overlayName);
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
  // call-media: poll every 50 ms until inbound audio has arrived.
  const pollMedia = async () => {
    if (c.ended || c.media || !c.session?.connection) return;
    try {
      const s = readStats(await c.session.connection.getStats());
      if ((s.packetsReceived ?? 0) > 0 && !c.media) {
        c.media = true;
        performance.mark("call-media");
        clearInterval(c.mediaTimer);
      }
    } catch {
      // the connection closed meanwhile
    }
  };
  c.mediaTimer = setInterval(pollMedia, 50);
  pollMedia();
  c.statsTimer = setInterval(async () => {
    if (c.ended || !c.session?.connection) return;
    try {
      const cur = readStats(await c.session.connection.getStats());
      if (c !== app.call || c.ended) return;
      writeQuality(quality(cur, c.prev));
      c.prev = cur;
    } catch {
      // the connection closed meanwhile
    }
  }, 1000);
}

function writeQuality(q) {
  const e = $("quality");
  e.dataset.packetsReceived = String(q.packetsReceived);
  e.dataset.audioLevel = String(q.audioLevel);
  e.dataset.rtt = q.rttMs === null ? "" : String(q.rttMs);
  e.dataset.loss = q.lossPct === null ? "" : String(q.lossPct);
  e.dataset.jitter = q.jitterMs === null ? "" : String(q.jitterMs);
  e.dataset.grade = q.grade;
  $("q-rtt").textContent = q.rttMs === null ? "–" : `${q.rttMs} ms`;
  $("q-loss").textContent = q.lossPct === null ? "–" : `${q.lossPct} %`;
  $("q-jitter").textContent = q.jitterMs === null ? "–" : `${q.jitterMs} ms`;
  $("q-packets").textContent = String(q.packetsReceived);
  $("q-grade").textContent = { good: "good", fair: "fair", poor: "poor", none: "waiting for audio" }[q.grade];
  $("q-level").style.width = `${Math.min(100, Math.round(Math.sqrt(q.audioLevel) * 100))}%`;
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
  history.add({ dir: c.dir, peer: c.peerUri, name: c.peerName, start: c.start, duration, result, reason: err?.message ?? "" });
  renderHistory();
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

// DTMF and the pad
function pressDigit(d) {
  const c = app.call;
  flashKey(d);
  if (c && !c.ended && c.session && ["connected", "held", "remote-held"].includes($("call-state").dataset.state)) {
    try {
      c.session.sendDTMF(d, { transportType: "RFC2833", duration: 160 });
    } catch {
      // no RTP sender yet: INFO still carries it
    }
    try {
      c.session.sendDTMF(d, { transportType: "INFO", duration: 160 });
    } catch (err) {
      showError("failed", "Cannot send the digit: " + (err?.message ?? err));
    }
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

// --------------------------------------------------------- notifications

let askedNotify = false;
function askNotificationPermission() {
  if (askedNotify) return;
  askedNotify = true;
  try {
    if ("Notification" in window && Notification.permission === "default") Notification.requestPermission().catch(() => {});
  } catch {
    // not allowed here (cross-origin frame): the ringtone and title still tell
  }
}

function notifyIncoming(c) {
  if (!document.hidden) return;
  try {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification("Incoming call", { body: `${c.peerName} is calling`, tag: "p2psip-call", requireInteraction: true });
    n.onclick = () => { window.focus(); n.close(); };
    app.notification = n;
  } catch {
    // some browsers want a service worker for notifications: the title and ring still show it
  }
}

function closeNotification() {
  try { app.notification?.close(); } catch { /* gone */ }
  app.notification = null;
}

// ------------------------------------------------------ history / contacts

function fmtTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const RESULT_TEXT = { answered: "", missed: "missed", rejected: "rejected", busy: "busy", cancelled: "cancelled", failed: "failed" };

function renderHistory() {
  const list = history.list();
  const ol = $("history");
  ol.replaceChildren(...list.slice(0, 50).map((e) => {
    const label = e.name || displayName(e.peer, app.cfg?.overlay);
    const arrow = e.dir === "in" ? "↙" : "↗";
    const detail = e.result === "answered" ? formatDuration(e.duration) : RESULT_TEXT[e.result] ?? e.result;
    return el("li", { dataset: { dir: e.dir, result: e.result, peer: e.peer } },
      el("span", { class: "dir", "aria-label": e.dir === "in" ? "incoming" : "outgoing", title: e.dir === "in" ? "incoming" : "outgoing" }, arrow),
      el("button", { type: "button", class: "link peer", title: `Call ${e.peer}`, onclick: () => dialAndCall(e.peer) }, label),
      el("span", { class: "meta" }, `${fmtTime(e.start)} · ${detail}`));
  }));
  $("history-empty").hidden = list.length > 0;
  const contacts = history.contacts();
  $("contacts").replaceChildren(...contacts.map((c) => {
    const label = c.name || displayName(c.peer, app.cfg?.overlay);
    return el("li", {}, el("button", { type: "button", class: "contact", title: `Call ${c.peer}`, "aria-label": `Call ${label}`, onclick: () => dialAndCall(c.peer) },
      el("span", { class: "avatar", "aria-hidden": "true" }, label.slice(0, 1).toUpperCase()),
      el("span", { class: "cname" }, label)));
  }));
  $("contacts-empty").hidden = contacts.length > 0;
}

function dialAndCall(uri) {
  if (app.call && !app.call.ended) return;
  const v = peerKey(uri);
  const p = displayName(v, app.cfg?.overlay);
  $("dial").value = p.includes("@") ? v.replace(/^sip:/, "") : p;
  placeCall();
}

// ------------------------------------------------------------- devices

async function renderDevices() {
  let d;
  try {
    d = await listDevices();
  } catch {
    return;
  }
  const fill = (sel, items, saved) => {
    const cur = sel.value || saved || "";
    sel.replaceChildren(...(items.length ? items : [{ id: "", label: "Default" }]).map((i) => el("option", { value: i.id }, i.label)));
    if ([...sel.options].some((o) => o.value === cur)) sel.value = cur;
  };
  fill($("mic"), d.mics, store.getItem("p2psip.mic"));
  fill($("speaker"), d.speakers, store.getItem("p2psip.speaker"));
  $("speaker").disabled = !d.canChooseSpeaker || d.speakers.length === 0;
  $("speaker-note").hidden = d.canChooseSpeaker;
}

async function onMicChange() {
  store.setItem("p2psip.mic", $("mic").value);
  const c = app.call;
  if (!c || c.ended || !c.stream || !c.session?.connection) return;
  try {
    const s = await getMic();
    const track = s.getAudioTracks()[0];
    const sender = c.session.connection.getSenders().find((x) => x.track?.kind === "audio");
    if (sender && track) {
      await sender.replaceTrack(track);
      if (c.session.isMuted().audio) track.enabled = false;
      c.stream.getTracks().forEach((t) => t.stop());
      c.stream = s;
    }
  } catch (err) {
    const e = micError(err);
    showError(e.code, e.message);
  }
}

function applySpeaker() {
  const id = $("speaker").value;
  setSpeaker($("remote-audio"), id).catch(() => {});
}

// ---------------------------------------------------------------- wiring

function bindUI() {
  $("join-form").addEventListener("submit", onJoin);
  $("name").addEventListener("input", onNameInput);
  $("suggest").addEventListener("click", () => proposeName());
  $("change-name").addEventListener("click", () => {
    showJoinForm(true);
    $("name").value = app.name ?? "";
    $("name-hint").textContent = "Type a new name and press “Use this name”. Your current name stays until then.";
    $("name").focus();
  });
  $("error-close").addEventListener("click", () => clearError());
  $("dial-form").addEventListener("submit", (e) => { e.preventDefault(); placeCall(); });
  $("call").addEventListener("click", () => placeCall());
  $("answer").addEventListener("click", answer);
  $("reject").addEventListener("click", reject);
  $("hangup").addEventListener("click", hangup);
  $("mute").addEventListener("click", toggleMute);
  $("hold").addEventListener("click", toggleHold);
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
    } else if (e.key === "Escape" && app.call && !app.call.ended) {
      if ($("call-state").dataset.state === "incoming") reject(); else hangup();
    }
  });
  $("clear-history").addEventListener("click", () => { history.clear(); renderHistory(); });
  $("mic").addEventListener("change", onMicChange);
  $("speaker").addEventListener("change", () => { store.setItem("p2psip.speaker", $("speaker").value); applySpeaker(); });
  $("test-speaker").addEventListener("click", () => { unlockAudio(); testTone($("speaker").value); });
  $("devices").addEventListener("toggle", () => { if ($("devices").open) renderDevices(); });
  navigator.mediaDevices?.addEventListener?.("devicechange", renderDevices);
  $("pub-form").addEventListener("submit", onPublicSubmit);
  $("pub-unregister").addEventListener("click", stopPublic);
  $("pub-remember").addEventListener("change", () => {
    if (!$("pub-remember").checked) {
      const prefs = loadPublicPrefs();
      delete prefs.password;
      prefs.remember = false;
      store.setItem("p2psip.public", JSON.stringify(prefs));
    }
  });
  const gesture = () => {
    unlockAudio();
    askNotificationPermission();
    window.removeEventListener("pointerdown", gesture, true);
    window.removeEventListener("keydown", gesture, true);
  };
  window.addEventListener("pointerdown", gesture, true);
  window.addEventListener("keydown", gesture, true);
  window.addEventListener("pagehide", () => {
    app.overlay?.stop();
    app.pub?.stop();
  });
}

function readEmbedParams() {
  const page = document.body.dataset.page;
  const q = new URLSearchParams(location.search);
  if (page !== "embed" && !location.pathname.startsWith("/embed")) return;
  app.mode = q.get("mode") === "phone" ? "phone" : "button";
  let origin = null;
  try {
    const o = q.get("origin");
    if (o) {
      const u = new URL(o);
      if (u.origin !== "null" && (u.protocol === "https:" || u.protocol === "http:")) origin = u.origin;
    }
  } catch {
    origin = null;
  }
  app.embed = { call: q.get("call") ?? "", origin };
  document.body.dataset.mode = app.mode;
}

async function init() {
  readEmbedParams();
  document.body.dataset.mode = app.mode;
  bindUI();
  renderHistory();
  setCallState("idle");
  setRegState("unregistered");
  setPubState("unregistered");
  if (app.embed?.call) {
    $("dial").value = app.embed.call;
    if (app.mode === "button") {
      const who = displayName(app.embed.call, null);
      $("call").textContent = `Call ${who.split("@")[0]}`;
      $("call").setAttribute("aria-label", `Call ${who}`);
    }
  }
  try {
    await loadConfig();
  } catch (err) {
    setRegState("failed", "No peer configuration");
    showError("failed", `This peer cannot set up the phone: ${err.message}. Is the peer up to date? Retrying…`);
    post("failed", { stage: "config", code: "failed", message: String(err.message) });
    setTimeout(init2Retry, 5000);
    return;
  }
  await start();
}

async function init2Retry() {
  try {
    await loadConfig();
  } catch {
    setTimeout(init2Retry, 5000);
    return;
  }
  clearError("failed");
  await start();
}

// A proxy peer may join the overlay after the page loaded (or the peer had
// not found it yet): ask again now and then, and open the public account
// form when one appears.
const PUBLIC_PROXY_POLL_MS = 20 * 1000;

function watchPublicProxy() {
  const timer = setInterval(async () => {
    try {
      const r = await fetch("/api/config", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!r.ok || !(await r.json())?.publicProxy) return;
    } catch {
      return; // the peer is away; the next round asks again
    }
    clearInterval(timer);
    app.cfg.publicProxy = true;
    $("public-off").hidden = true;
    for (const e of $("pub-form").querySelectorAll("input,button")) e.disabled = false;
    const prefs = loadPublicPrefs();
    if (prefs.remember && prefs.password && prefs.uri && !app.pub) startPublic(prefs.uri, prefs.authUser, prefs.password);
  }, PUBLIC_PROXY_POLL_MS);
}

// The overlay's relays come with credentials that expire (about ten
// minutes): fetch /api/config again before then. Calls set up their
// RTCPeerConnection from app.cfg.iceServers (pcConfig), so new calls get
// the new ones; calls in progress keep their allocations.
function scheduleICERefresh() {
  clearTimeout(app.iceTimer);
  app.iceTimer = setTimeout(refreshICE, iceRefreshDelay(app.cfg?.iceServers, peerNow()) * 1000);
}

async function refreshICE() {
  try {
    const r = await fetch("/api/config", { cache: "no-store", headers: { Accept: "application/json" } });
    if (r.ok) {
      const cfg = await r.json();
      if (Array.isArray(cfg?.iceServers)) app.cfg.iceServers = cfg.iceServers;
      if (Number.isFinite(cfg?.time)) app.clockSkewS = cfg.time - Date.now() / 1000;
    }
  } catch {
    // the peer is away: the next round (at least 15 s later) asks again
  }
  scheduleICERefresh();
}

async function start() {
  const cfg = app.cfg;
  scheduleICERefresh();
  $("overlay-name").textContent = cfg.overlay;
  if (app.embed?.call && app.mode === "phone") {
    const target = normalizeTarget(app.embed.call, cfg.overlay);
    if (target) {
      const short = displayName(target, cfg.overlay);
      $("dial").value = short.includes("@") ? target.replace(/^sip:/, "") : short;
    }
  }
  $("name-suffix").textContent = "@" + cfg.overlay;
  if (!cfg.publicProxy) {
    $("public-off").hidden = false;
    for (const e of $("pub-form").querySelectorAll("input,button")) e.disabled = true;
    watchPublicProxy();
  }
  try {
    app.key = await ownerKey();
  } catch (err) {
    setRegState("failed", "No key");
    showError("failed", "This browser cannot make the key that owns your name (WebCrypto: " + (err?.message ?? err) + "). Use a current browser over HTTPS.");
    return;
  }
  renderDevices();
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
  const prefs = loadPublicPrefs();
  if (prefs.uri) $("pub-uri").value = prefs.uri.replace(/^sip:/, "");
  if (prefs.authUser) $("pub-user").value = prefs.authUser;
  $("pub-remember").checked = !!prefs.remember;
  if (cfg.publicProxy && prefs.remember && prefs.password && prefs.uri) {
    $("pub-password").value = prefs.password;
    startPublic(prefs.uri, prefs.authUser, prefs.password);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();

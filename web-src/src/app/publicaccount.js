// The public SIP account (#public): its form and remembered settings, the
// Account that registers it through the proxy peer with the overlay alias
// "<name>-pub" as Contact, #pub-state, the "Call as" choice (#from), and
// waiting for a proxy peer to appear in the overlay.

import { canonicalAOR, signOwnerHeader } from "../lib/cert.js";
import { registerError } from "../lib/errors.js";
import { unlockAudio } from "./audio.js";
import { onIncoming } from "./calls.js";
import { fetchConfig } from "./config.js";
import { $, el } from "./dom.js";
import { Account } from "./sip.js";
import { app, instanceId, peerNow, store, USER_AGENT, wsURL } from "./state.js";
import { updateButtons } from "./status.js";

function loadPublicPrefs() {
  try {
    return JSON.parse(store.getItem("p2psip.public") ?? "null") ?? {};
  } catch {
    return {};
  }
}

export function setPubState(state, text) {
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

// A proxy peer may join the overlay after the page loaded (or the peer had
// not found it yet): ask again now and then, and open the public account
// form when one appears.
const PUBLIC_PROXY_POLL_MS = 20 * 1000;

function watchPublicProxy() {
  const timer = setInterval(async () => {
    try {
      if (!(await fetchConfig())?.publicProxy) return;
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

/** Without a proxy peer: disables the form and waits for one. */
export function checkPublicProxy() {
  if (app.cfg.publicProxy) return;
  $("public-off").hidden = false;
  for (const e of $("pub-form").querySelectorAll("input,button")) e.disabled = true;
  watchPublicProxy();
}

/** Fills the form from the remembered settings and registers a remembered account. */
export function restorePublic() {
  const prefs = loadPublicPrefs();
  if (prefs.uri) $("pub-uri").value = prefs.uri.replace(/^sip:/, "");
  if (prefs.authUser) $("pub-user").value = prefs.authUser;
  $("pub-remember").checked = !!prefs.remember;
  if (app.cfg.publicProxy && prefs.remember && prefs.password && prefs.uri) {
    $("pub-password").value = prefs.password;
    startPublic(prefs.uri, prefs.authUser, prefs.password);
  }
}

export function bindPublicUI() {
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
}

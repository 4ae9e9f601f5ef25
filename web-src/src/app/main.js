// The p2psip softphone (index.html) and its embedded forms (embed.html,
// ?mode=button|phone): the entry of app.js. It wires the modules together
// and starts the page. docs/softphone.md is the contract with the peer and
// with the e2e tests: keep ids, data attributes and marks stable.
//
//   state.js          shared state (app), storage, history store, helpers
//   dom.js            $ and el()
//   embed.js          embed parameters, widget events to the host page
//   status.js         #reg-state, #error, #call-state, which buttons show
//   config.js         /api/config, ICE server refresh, pcConfig
//   registration.js   the overlay name and its Account
//   publicaccount.js  the public SIP account
//   calls.js          the call lifecycle
//   dtmfpad.js        the dial pad, sending and receiving DTMF
//   qualitypanel.js   #quality: stats, codec, bridged calls
//   historyview.js    #history and #contacts
//   devices.js        microphone and speaker
//   notify.js         incoming-call notifications
//   sip.js, audio.js, keystore.js: the JsSIP account, tones, the owner key

import { displayName, normalizeTarget } from "../lib/sipuri.js";
import { unlockAudio } from "./audio.js";
import { bindCallUI, callPeer } from "./calls.js";
import { loadConfig, scheduleICERefresh } from "./config.js";
import { bindDevicesUI, renderDevices } from "./devices.js";
import { $ } from "./dom.js";
import { bindPadUI } from "./dtmfpad.js";
import { post, readEmbedParams } from "./embed.js";
import { bindHistoryUI, renderHistory } from "./historyview.js";
import { ownerKey } from "./keystore.js";
import { askNotificationPermission } from "./notify.js";
import { bindPublicUI, checkPublicProxy, restorePublic, setPubState } from "./publicaccount.js";
import { bindRegistrationUI, startIdentity } from "./registration.js";
import { app } from "./state.js";
import { clearError, setCallState, setRegState, showError } from "./status.js";

function bindUI() {
  bindRegistrationUI();
  $("error-close").addEventListener("click", () => clearError());
  bindCallUI();
  bindPadUI();
  bindHistoryUI(callPeer);
  bindDevicesUI();
  bindPublicUI();
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
    setTimeout(retryConfig, 5000);
    return;
  }
  await start();
}

async function retryConfig() {
  try {
    await loadConfig();
  } catch {
    setTimeout(retryConfig, 5000);
    return;
  }
  clearError("failed");
  await start();
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
  checkPublicProxy();
  try {
    app.key = await ownerKey();
  } catch (err) {
    setRegState("failed", "No key");
    showError("failed", "This browser cannot make the key that owns your name (WebCrypto: " + (err?.message ?? err) + "). Use a current browser over HTTPS.");
    return;
  }
  renderDevices();
  await startIdentity();
  if (app.mode === "button") return; // a guest: no public account
  restorePublic();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();

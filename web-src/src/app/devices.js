// Audio devices (#devices): the microphone and speaker choices and their
// saved values, opening the microphone for a call, switching it during a
// call, and playing the call on the chosen speaker.

import { micError } from "../lib/errors.js";
import { listDevices, setSpeaker, testTone, unlockAudio } from "./audio.js";
import { $, el } from "./dom.js";
import { app, store } from "./state.js";
import { showError } from "./status.js";

export async function renderDevices() {
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

/** The chosen microphone (the default one when the saved one is gone). */
export async function getMic() {
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

/** Plays #remote-audio (and the tones) on the chosen speaker. */
export function applySpeaker() {
  const id = $("speaker").value;
  setSpeaker($("remote-audio"), id).catch(() => {});
}

export function bindDevicesUI() {
  $("mic").addEventListener("change", onMicChange);
  $("speaker").addEventListener("change", () => { store.setItem("p2psip.speaker", $("speaker").value); applySpeaker(); });
  $("test-speaker").addEventListener("click", () => { unlockAudio(); testTone($("speaker").value); });
  $("devices").addEventListener("toggle", () => { if ($("devices").open) renderDevices(); });
  navigator.mediaDevices?.addEventListener?.("devicechange", renderDevices);
}

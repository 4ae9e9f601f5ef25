// Tones made with WebAudio (no audio files) and audio device choice.

let ctx = null;

/** The shared AudioContext, created lazily; resume() it from a user gesture. */
export function audioContext() {
  if (!ctx) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    ctx = new AC();
  }
  return ctx;
}

/** Call from a user gesture so later tones may play. */
export function unlockAudio() {
  const c = audioContext();
  if (c && c.state === "suspended") c.resume().catch(() => {});
}

/**
 * A repeating two-frequency tone. pattern: [on, off, on, off...] seconds.
 * Returns stop().
 */
function cadence(freqs, pattern, gain) {
  const c = audioContext();
  if (!c) return () => {};
  if (c.state === "suspended") c.resume().catch(() => {});
  const out = c.createGain();
  out.gain.value = 0;
  out.connect(c.destination);
  const oscs = freqs.map((f) => {
    const o = c.createOscillator();
    o.frequency.value = f;
    o.connect(out);
    o.start();
    return o;
  });
  const period = pattern.reduce((a, b) => a + b, 0);
  let stopped = false;
  let timer = null;
  const schedule = () => {
    if (stopped) return;
    let t = c.currentTime + 0.02;
    for (let i = 0; i < pattern.length; i++) {
      if (i % 2 === 0) {
        out.gain.setTargetAtTime(gain, t, 0.01);
        out.gain.setTargetAtTime(0, t + pattern[i], 0.01);
      }
      t += pattern[i];
    }
    timer = setTimeout(schedule, period * 1000);
  };
  schedule();
  return () => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    out.gain.cancelScheduledValues(c.currentTime);
    out.gain.setTargetAtTime(0, c.currentTime, 0.01);
    setTimeout(() => {
      oscs.forEach((o) => { try { o.stop(); } catch { /* already stopped */ } });
      out.disconnect();
    }, 100);
  };
}

/** Incoming-call ring: a warbled 2-tone, 1.2 s on, 2.8 s off. */
export function startRingtone() {
  return cadence([440, 480], [0.4, 0.2, 0.6, 2.8], 0.18);
}

/** Ringback while the far end rings (European 425 Hz, 1 s on, 4 s off). */
export function startRingback() {
  return cadence([425], [1, 4], 0.08);
}

/** A short beep to test the speaker choice. */
export function testTone(sinkId) {
  const c = audioContext();
  if (!c) return;
  if (sinkId && typeof c.setSinkId === "function") c.setSinkId(sinkId).catch(() => {});
  const stop = cadence([660], [0.3, 0.2, 0.3, 1], 0.15);
  setTimeout(stop, 900);
}

/** Microphones and speakers: {mics: [{id,label}], speakers: [...], canChooseSpeaker}. */
export async function listDevices() {
  const out = { mics: [], speakers: [], canChooseSpeaker: typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype };
  if (!navigator.mediaDevices?.enumerateDevices) return out;
  const devs = await navigator.mediaDevices.enumerateDevices();
  let n = 0, m = 0;
  for (const d of devs) {
    if (d.kind === "audioinput") out.mics.push({ id: d.deviceId, label: d.label || `Microphone ${++n}` });
    if (d.kind === "audiooutput") out.speakers.push({ id: d.deviceId, label: d.label || `Speaker ${++m}` });
  }
  return out;
}

/** Applies a speaker choice to the remote audio element and the tones. */
export async function setSpeaker(audioEl, sinkId) {
  if (audioEl && typeof audioEl.setSinkId === "function") await audioEl.setSinkId(sinkId || "");
  const c = audioContext();
  if (c && typeof c.setSinkId === "function") await c.setSinkId(sinkId || "").catch(() => {});
}

// The call quality panel (#quality): live inbound audio stats from the
// call's RTCPeerConnection getStats() every second, the call-media timing
// mark, the codec in use, and whether the peer bridges the call to a plain
// RTP phone (s=p2psip-bridge in the remote SDP). Bridged calls are WebRTC
// to the peer, so getStats reads them the same way; their round trip is
// the one to the peer.

import { codecInUse, codecLabel, quality, readStats } from "../lib/quality.js";
import { $ } from "./dom.js";
import { app } from "./state.js";

const NO_AUDIO = { packetsReceived: 0, audioLevel: 0, rttMs: null, lossPct: null, jitterMs: null, grade: "none" };

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

/** The codec in use ({name, clockRate, payloadType} or null): #q-codec, data-codec. */
function writeCodec(codec) {
  $("quality").dataset.codec = codec?.name ?? "";
  $("q-codec").textContent = codecLabel(codec);
}

/** Whether the peer bridges the call to a plain RTP phone: #q-bridge, data-bridged. */
export function writeBridged(bridged) {
  $("quality").dataset.bridged = String(!!bridged);
  $("q-bridge").hidden = !bridged;
}

/** A new call: no audio, no codec, not bridged (until its SDP says so). */
export function resetQuality() {
  writeQuality(NO_AUDIO);
  writeCodec(null);
  writeBridged(false);
}

/**
 * From the answer on: polls for the first inbound audio every 50 ms (the
 * call-media mark) and refreshes the panel every second. The timers are
 * kept in c.mediaTimer and c.statsTimer (cleared when the call ends).
 */
export function startStats(c) {
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
      const report = await c.session.connection.getStats();
      const cur = readStats(report);
      if (c !== app.call || c.ended) return;
      writeQuality(quality(cur, c.prev));
      c.prev = cur;
      const codec = codecInUse(report);
      if (codec && codec.name !== c.codec?.name) {
        c.codec = codec;
        writeCodec(codec);
      }
    } catch {
      // the connection closed meanwhile
    }
  }, 1000);
}

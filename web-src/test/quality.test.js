import { test } from "node:test";
import assert from "node:assert/strict";
import { codecInUse, codecLabel, quality, readStats } from "../src/lib/quality.js";

function report(entries) {
  return new Map(entries.map((e) => [e.id, e]));
}

test("inbound audio, the selected pair's RTT, jitter and level are read", () => {
  const r = report([
    { id: "IT01", type: "inbound-rtp", kind: "video", packetsReceived: 999 },
    { id: "IT02", type: "inbound-rtp", kind: "audio", packetsReceived: 480, packetsLost: 20, jitter: 0.0123, audioLevel: 0.25 },
    { id: "T01", type: "transport", selectedCandidatePairId: "CP2" },
    { id: "CP1", type: "candidate-pair", state: "failed", currentRoundTripTime: 9 },
    { id: "CP2", type: "candidate-pair", state: "succeeded", nominated: true, currentRoundTripTime: 0.0421 },
  ]);
  const s = readStats(r);
  assert.deepEqual(s, { packetsReceived: 480, packetsLost: 20, audioLevel: 0.25, jitterMs: 12.3, rttMs: 42.1 });
  const q = quality(s);
  assert.equal(q.packetsReceived, 480);
  assert.equal(q.rttMs, 42);
  assert.equal(q.lossPct, 4);
  assert.equal(q.jitterMs, 12.3);
  assert.equal(q.audioLevel, 0.25);
  assert.equal(q.grade, "fair"); // 4 % loss
});

test("without a selected pair the remote-inbound RTT is used; missing values are null", () => {
  const s = readStats([{ id: "R", type: "remote-inbound-rtp", kind: "audio", roundTripTime: 0.1 }]);
  assert.deepEqual(s, { packetsReceived: null, packetsLost: null, audioLevel: null, jitterMs: null, rttMs: 100 });
  const q = quality(s);
  assert.equal(q.grade, "none");
  assert.equal(q.lossPct, null);
  assert.equal(q.packetsReceived, 0);
});

test("loss covers the last interval when there was traffic since", () => {
  const prev = { packetsReceived: 100, packetsLost: 0, audioLevel: 0.1, jitterMs: 1, rttMs: 10 };
  const cur = { packetsReceived: 150, packetsLost: 50, audioLevel: 0.1, jitterMs: 1, rttMs: 10 };
  assert.equal(quality(cur, prev).lossPct, 50);
  assert.equal(quality(cur, prev).grade, "poor");
  assert.equal(quality(cur, cur).lossPct, 25, "no new packets: since the start");
  assert.equal(quality({ ...cur, packetsLost: 0 }, prev).grade, "good");
});

test("the codec in use is the inbound audio stream's, else the outbound one's", () => {
  const codecs = [
    { id: "COT01_0", type: "codec", mimeType: "audio/PCMU", clockRate: 8000, payloadType: 0 },
    { id: "CIT01_8", type: "codec", mimeType: "audio/PCMA", clockRate: 8000, payloadType: 8 },
    { id: "CIT01_111", type: "codec", mimeType: "audio/opus", clockRate: 48000, payloadType: 111, channels: 2 },
    { id: "CV", type: "codec", mimeType: "video/VP8", clockRate: 90000, payloadType: 96 },
  ];
  assert.deepEqual(codecInUse(report([
    ...codecs,
    { id: "IV", type: "inbound-rtp", kind: "video", packetsReceived: 900, codecId: "CV" },
    { id: "IA", type: "inbound-rtp", kind: "audio", packetsReceived: 50, codecId: "CIT01_8" },
    { id: "OA", type: "outbound-rtp", kind: "audio", packetsSent: 60, codecId: "COT01_0" },
  ])), { name: "PCMA", clockRate: 8000, payloadType: 8 });
  assert.deepEqual(codecInUse([
    ...codecs,
    { id: "OA", type: "outbound-rtp", mediaType: "audio", packetsSent: 60, codecId: "COT01_0" },
  ]), { name: "PCMU", clockRate: 8000, payloadType: 0 }, "no inbound audio yet");
  assert.equal(codecInUse(report([{ id: "IA", type: "inbound-rtp", kind: "audio", packetsReceived: 5 }])), null, "no codecId yet");
  assert.equal(codecInUse(report([{ id: "IA", type: "inbound-rtp", kind: "audio", codecId: "gone" }])), null);
  assert.equal(codecInUse(null), null);
  assert.equal(codecInUse(report([...codecs, { id: "IA", type: "inbound-rtp", kind: "audio", packetsReceived: 5, codecId: "CIT01_111" }])).name, "opus");
});

test("codec labels", () => {
  assert.equal(codecLabel({ name: "PCMU" }), "PCMU (G.711 μ-law)");
  assert.equal(codecLabel({ name: "PCMA" }), "PCMA (G.711 A-law)");
  assert.equal(codecLabel({ name: "opus" }), "opus");
  assert.equal(codecLabel({ name: "G722" }), "G722 (G.722)");
  assert.equal(codecLabel({ name: "iLBC" }), "iLBC");
  assert.equal(codecLabel(null), "–");
});

// getStats() -> the numbers the quality panel and #quality show, and the
// codec in use.

/**
 * Reads the inbound audio stream and the transport's round trip from a
 * getStats() report (an RTCStatsReport or any iterable of stats objects).
 * Returns { packetsReceived, packetsLost, audioLevel, jitterMs, rttMs } with
 * null for what the report lacks.
 */
export function readStats(report) {
  const stats = [];
  if (report && typeof report.forEach === "function") report.forEach((s) => stats.push(s));
  else if (report) for (const s of report) stats.push(s);
  const byId = new Map(stats.map((s) => [s.id, s]));
  let inbound = null;
  for (const s of stats) {
    if (s.type === "inbound-rtp" && (s.kind === "audio" || s.mediaType === "audio")) {
      if (!inbound || (s.packetsReceived ?? 0) > (inbound.packetsReceived ?? 0)) inbound = s;
    }
  }
  let rtt = null;
  // The selected candidate pair: via the transport, else the nominated succeeded one.
  let pair = null;
  for (const s of stats) {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) ?? pair;
  }
  if (!pair) {
    for (const s of stats) {
      if (s.type === "candidate-pair" && s.state === "succeeded" && (s.nominated || s.selected)) { pair = s; break; }
    }
  }
  if (pair && typeof pair.currentRoundTripTime === "number") rtt = pair.currentRoundTripTime;
  if (rtt === null) {
    for (const s of stats) {
      if (s.type === "remote-inbound-rtp" && typeof s.roundTripTime === "number") { rtt = s.roundTripTime; break; }
    }
  }
  let audioLevel = inbound && typeof inbound.audioLevel === "number" ? inbound.audioLevel : null;
  if (audioLevel === null && inbound && inbound.trackId) {
    const t = byId.get(inbound.trackId);
    if (t && typeof t.audioLevel === "number") audioLevel = t.audioLevel;
  }
  return {
    packetsReceived: inbound ? inbound.packetsReceived ?? 0 : null,
    packetsLost: inbound ? Math.max(0, inbound.packetsLost ?? 0) : null,
    audioLevel,
    jitterMs: inbound && typeof inbound.jitter === "number" ? inbound.jitter * 1000 : null,
    rttMs: rtt === null ? null : rtt * 1000,
  };
}

/**
 * The audio codec in use from a getStats() report: the codec of the inbound
 * audio stream (the one with most packets), else of the outbound one.
 * Returns {name, clockRate, payloadType} (name as in the SDP: "PCMU",
 * "PCMA", "opus", ...) or null while the report names none.
 */
export function codecInUse(report) {
  const stats = [];
  if (report && typeof report.forEach === "function") report.forEach((s) => stats.push(s));
  else if (report) for (const s of report) stats.push(s);
  const byId = new Map(stats.map((s) => [s.id, s]));
  const audio = (s) => s.kind === "audio" || s.mediaType === "audio";
  const pick = (type, count) => {
    let best = null;
    for (const s of stats) {
      if (s.type !== type || !audio(s) || !s.codecId || !byId.has(s.codecId)) continue;
      if (!best || (s[count] ?? 0) > (best[count] ?? 0)) best = s;
    }
    return best;
  };
  const rtp = pick("inbound-rtp", "packetsReceived") ?? pick("outbound-rtp", "packetsSent");
  const c = rtp ? byId.get(rtp.codecId) : null;
  if (!c || typeof c.mimeType !== "string") return null;
  const name = c.mimeType.replace(/^audio\//i, "");
  return {
    name,
    clockRate: typeof c.clockRate === "number" ? c.clockRate : null,
    payloadType: typeof c.payloadType === "number" ? c.payloadType : null,
  };
}

const CODEC_NAMES = { pcmu: "G.711 μ-law", pcma: "G.711 A-law", g722: "G.722", opus: "Opus" };

/** What the panel shows for a codec: "PCMU (G.711 μ-law)", "opus", "–" when unknown. */
export function codecLabel(codec) {
  if (!codec?.name) return "–";
  const long = CODEC_NAMES[codec.name.toLowerCase()];
  return long && long.toLowerCase() !== codec.name.toLowerCase() ? `${codec.name} (${long})` : codec.name;
}

/**
 * Turns the current reading (and the previous one, a second ago) into what
 * the page shows. loss is the share of packets lost in the last interval
 * when there is a previous reading with traffic since, else since the start.
 * grade: "good" | "fair" | "poor" | "none" (no inbound audio yet).
 */
export function quality(cur, prev = null) {
  let lossPct = null;
  if (cur.packetsReceived !== null) {
    let recv = cur.packetsReceived;
    let lost = cur.packetsLost ?? 0;
    if (prev && prev.packetsReceived !== null) {
      const dr = cur.packetsReceived - prev.packetsReceived;
      const dl = (cur.packetsLost ?? 0) - (prev.packetsLost ?? 0);
      if (dr >= 0 && dl >= 0 && dr + dl > 0) { recv = dr; lost = dl; }
    }
    lossPct = recv + lost > 0 ? (100 * lost) / (recv + lost) : 0;
  }
  const q = {
    packetsReceived: cur.packetsReceived ?? 0,
    audioLevel: cur.audioLevel === null ? 0 : round(cur.audioLevel, 3),
    rttMs: cur.rttMs === null ? null : Math.round(cur.rttMs),
    lossPct: lossPct === null ? null : round(lossPct, 1),
    jitterMs: cur.jitterMs === null ? null : round(cur.jitterMs, 1),
    grade: "none",
  };
  if (q.packetsReceived > 0) q.grade = grade(q);
  return q;
}

function grade({ rttMs, lossPct, jitterMs }) {
  const r = rttMs ?? 0, l = lossPct ?? 0, j = jitterMs ?? 0;
  if (r > 400 || l > 5 || j > 50) return "poor";
  if (r > 200 || l > 1 || j > 20) return "fair";
  return "good";
}

function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

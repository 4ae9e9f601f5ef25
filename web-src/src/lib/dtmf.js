// DTMF: which keys are digits, parsing INFO bodies, counting each received
// digit once.

export const DTMF_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export function isDTMF(d) {
  return typeof d === "string" && /^[0-9*#A-Da-d]$/.test(d);
}

/** Signal=<d> from an application/dtmf-relay body; null when absent. */
export function parseDtmfRelay(body) {
  const m = /(?:^|[\r\n])\s*Signal\s*=\s*(1[01]|[0-9A-D*#])(?![0-9])/i.exec(String(body ?? ""));
  if (!m) return null;
  if (m[1] === "10") return "*";
  if (m[1] === "11") return "#";
  return m[1].toUpperCase();
}

/**
 * Collects received digits; the same SIP request (or the same CSeq) is
 * counted once even when both JsSIP's newDTMF and newInfo report it.
 */
export class DtmfLog {
  constructor() {
    this.digits = "";
    this.seen = new Set();
  }
  /** key: something identifying the request (Call-ID + CSeq); returns true when added. */
  add(digit, key) {
    if (!isDTMF(digit)) return false;
    if (key != null) {
      if (this.seen.has(key)) return false;
      this.seen.add(key);
    }
    this.digits += digit.toUpperCase();
    return true;
  }
  reset() {
    this.digits = "";
    this.seen.clear();
  }
}

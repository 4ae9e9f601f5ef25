// DTMF: which keys are digits, parsing INFO bodies, counting each received
// digit once, and how to send a digit in a call.

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
 * The digit an INFO carries, by its Content-Type: application/dtmf-relay
 * ("Signal=5\r\nDuration=160") or application/dtmf (the bare digit, some
 * senders write Signal= there too). null for other types or no digit.
 */
export function parseDtmfInfo(contentType, body) {
  const ct = String(contentType ?? "").toLowerCase().split(";")[0].trim();
  if (ct === "application/dtmf-relay") return parseDtmfRelay(body);
  if (ct !== "application/dtmf") return null;
  const b = String(body ?? "").trim();
  if (/^(1[01]|[0-9A-D*#])$/i.test(b)) return b === "10" ? "*" : b === "11" ? "#" : b.toUpperCase();
  return parseDtmfRelay(b);
}

/**
 * How to send a keypad digit in a call, as JsSIP transport types in order.
 *   telephoneEvent: RFC 4733 (telephone-event) was negotiated in the SDP.
 *   bridged: the peer's media bridge ends the WebRTC media (s=p2psip-bridge).
 * RFC 4733 when negotiated, else SIP INFO (application/dtmf-relay). A call
 * that is WebRTC end to end (another page) gets INFO as well: a browser
 * cannot read RFC 4733, and its page shows the INFO digits. A bridged call
 * does not: the bridge hands the RTP events to the phone, which would count
 * an INFO as a second press.
 */
export function dtmfTransports({ telephoneEvent, bridged }) {
  if (!telephoneEvent) return ["INFO"];
  return bridged ? ["RFC2833"] : ["RFC2833", "INFO"];
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

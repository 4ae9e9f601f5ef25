// The device certificate: the browser's owner key certifies the peer's
// deviceKey for one AOR (docs/softphone.md, "Who owns a name").

import { b64urlEncode } from "./b64url.js";

export const CERT_PREFIX = "p2psip/device/v1\n";
export const PROOF_PREFIX = "p2psip/register/v1\n";
export const CERT_LIFETIME_S = 24 * 3600;
export const OWNER_HEADER = "P-P2PSIP-Owner";

/** Canonical overlay AOR: sip:<user>@<overlay>, overlay in lower case. */
export function canonicalAOR(user, overlay) {
  return "sip:" + user + "@" + String(overlay).toLowerCase();
}

/**
 * The bytes the owner key signs:
 * "p2psip/device/v1\n" ‖ AOR ‖ "\n" ‖ deviceKey (65 raw bytes) ‖ "\n" ‖ decimal(exp)
 */
export function certMessage(aor, deviceKey, exp) {
  if (!(deviceKey instanceof Uint8Array) || deviceKey.length !== 65 || deviceKey[0] !== 4) {
    throw new Error("deviceKey must be a 65-byte uncompressed P-256 point");
  }
  if (!Number.isSafeInteger(exp) || exp <= 0) throw new Error("exp must be unix seconds");
  const enc = new TextEncoder();
  const head = enc.encode(CERT_PREFIX + aor + "\n");
  const tail = enc.encode("\n" + String(exp));
  const out = new Uint8Array(head.length + deviceKey.length + tail.length);
  out.set(head, 0);
  out.set(deviceKey, head.length);
  out.set(tail, head.length + deviceKey.length);
  return out;
}

/**
 * The bytes of the fresh proof that accompanies the certificate (the
 * certificate is published in the overlay record, so alone it proves
 * nothing): "p2psip/register/v1\n" ‖ AOR ‖ "\n" ‖ deviceKey ‖ "\n" ‖ decimal(ts)
 */
export function proofMessage(aor, deviceKey, ts) {
  const m = certMessage(aor, deviceKey, ts);
  const prefix = new TextEncoder().encode(CERT_PREFIX).length;
  const head = new TextEncoder().encode(PROOF_PREFIX);
  const out = new Uint8Array(head.length + m.length - prefix);
  out.set(head, 0);
  out.set(m.subarray(prefix), head.length);
  return out;
}

/** The header value key=<b64>;exp=<n>;sig=<b64>;ts=<n>;rsig=<b64>. */
export function ownerHeaderValue(ownerPub, exp, sig, ts, rsig) {
  return "key=" + b64urlEncode(ownerPub) + ";exp=" + exp + ";sig=" + b64urlEncode(sig) +
    ";ts=" + ts + ";rsig=" + b64urlEncode(rsig);
}

/**
 * Signs a certificate and a fresh proof with a WebCrypto ECDSA P-256
 * private key and returns the full header line for JsSIP's extra headers.
 * The peer accepts the proof for PROOF_WINDOW_S around ts, so the page
 * signs again every RESIGN interval (sip.js).
 * subtle: a SubtleCrypto (crypto.subtle in browsers and node).
 */
export async function signOwnerHeader(subtle, privateKey, ownerPub, aor, deviceKey, nowS, lifetimeS = CERT_LIFETIME_S) {
  const ts = Math.floor(nowS);
  const exp = ts + lifetimeS;
  const alg = { name: "ECDSA", hash: "SHA-256" };
  const sig = new Uint8Array(await subtle.sign(alg, privateKey, certMessage(aor, deviceKey, exp)));
  const rsig = new Uint8Array(await subtle.sign(alg, privateKey, proofMessage(aor, deviceKey, ts)));
  return { exp, ts, header: OWNER_HEADER + ": " + ownerHeaderValue(ownerPub, exp, sig, ts, rsig) };
}

/** How far from the peer's clock a proof's ts may be (server: proofWindow). */
export const PROOF_WINDOW_S = 10 * 60;

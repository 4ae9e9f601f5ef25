import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { canonicalAOR, certMessage, proofMessage, signOwnerHeader } from "../src/lib/cert.js";
import { b64urlDecode, b64urlEncode } from "../src/lib/b64url.js";

const subtle = webcrypto.subtle;
const deviceKey = new Uint8Array(65).map((_, i) => (i === 0 ? 4 : i));

test("the canonical AOR keeps the user's case and lower-cases the overlay", () => {
  assert.equal(canonicalAOR("Alice", "P2PSIP.Local"), "sip:Alice@p2psip.local");
});

test("the certificate bytes are prefix, AOR, raw device key and decimal exp", () => {
  const m = certMessage("sip:alice@p2psip.local", deviceKey, 1700000000);
  const head = Buffer.from("p2psip/device/v1\nsip:alice@p2psip.local\n");
  const tail = Buffer.from("\n1700000000");
  const want = Buffer.concat([head, Buffer.from(deviceKey), tail]);
  assert.deepEqual(Buffer.from(m), want);
  assert.equal(m.length, head.length + 65 + tail.length);
});

test("the certificate refuses a device key that is not a 65-byte point", () => {
  assert.throws(() => certMessage("sip:a@b", new Uint8Array(64), 1));
  assert.throws(() => certMessage("sip:a@b", new Uint8Array(65), 1)); // no 0x04
  assert.throws(() => certMessage("sip:a@b", deviceKey, 1.5));
});

test("the owner header verifies with the owner's public key", async () => {
  const pair = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  const pub = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  const aor = "sip:brave-otter-42@p2psip.local";
  const now = 1_800_000_000;
  const { exp, header } = await signOwnerHeader(subtle, pair.privateKey, pub, aor, deviceKey, now + 0.7);
  assert.equal(exp, now + 24 * 3600);
  const m = /^P-P2PSIP-Owner: key=([A-Za-z0-9_-]+);exp=(\d+);sig=([A-Za-z0-9_-]+);ts=(\d+);rsig=([A-Za-z0-9_-]+)$/.exec(header);
  assert.ok(m, header);
  assert.equal(m[1], b64urlEncode(pub));
  assert.equal(Number(m[2]), exp);
  const sig = b64urlDecode(m[3]);
  assert.equal(sig.length, 64, "IEEE P1363 r||s");
  const ok = await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, sig, certMessage(aor, deviceKey, exp));
  assert.ok(ok);
  assert.equal(Number(m[4]), now);
  const rsig = b64urlDecode(m[5]);
  const fresh = await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, rsig, proofMessage(aor, deviceKey, now));
  assert.ok(fresh, "the fresh proof verifies");
});

test("the proof bytes are the register prefix, AOR, raw device key and decimal ts", () => {
  const m = proofMessage("sip:alice@p2psip.local", deviceKey, 1700000000);
  const want = Buffer.concat([Buffer.from("p2psip/register/v1\nsip:alice@p2psip.local\n"), Buffer.from(deviceKey), Buffer.from("\n1700000000")]);
  assert.deepEqual(Buffer.from(m), want);
});

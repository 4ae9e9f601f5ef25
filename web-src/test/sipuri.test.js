import { test } from "node:test";
import assert from "node:assert/strict";
import { displayName, normalizeTarget, parseURI, peerKey } from "../src/lib/sipuri.js";

const O = "P2PSIP.local";

test("bare names and numbers dial into the overlay", () => {
  assert.equal(normalizeTarget("alice", O), "sip:alice@p2psip.local");
  assert.equal(normalizeTarget("  brave-otter-42 ", O), "sip:brave-otter-42@p2psip.local");
  assert.equal(normalizeTarget("1234", O), "sip:1234@p2psip.local");
  assert.equal(normalizeTarget("+1 (555) 010-9999", O), "sip:+15550109999@p2psip.local");
  assert.equal(normalizeTarget("*98#", O), null); // # is not a user character
});

test("user@domain and SIP URIs pass through", () => {
  assert.equal(normalizeTarget("bob@example.com", O), "sip:bob@example.com");
  assert.equal(normalizeTarget("sip:bob@example.com", O), "sip:bob@example.com");
  assert.equal(normalizeTarget("SIP:bob@example.com;transport=tcp", O), "sip:bob@example.com;transport=tcp");
  assert.equal(normalizeTarget("sips:bob@example.com:5061", O), "sips:bob@example.com:5061");
  assert.equal(normalizeTarget("<sip:bob@10.0.0.1>", O), "sip:bob@10.0.0.1");
  assert.equal(normalizeTarget("sip:[2001:db8::1]", O), "sip:[2001:db8::1]");
});

test("nonsense is refused", () => {
  for (const s of ["", "   ", "al ice", "bob@", "@example.com", "bob@exa mple.com", "sip:", "sip:@x", "a@b@c", "bob@-bad-.com"]) {
    assert.equal(normalizeTarget(s, O), null, JSON.stringify(s));
  }
  assert.equal(normalizeTarget("alice", ""), null, "no overlay known yet");
});

test("display names are short inside the overlay", () => {
  assert.equal(displayName("sip:alice@p2psip.local", O), "alice");
  assert.equal(displayName("sip:bob@example.com;transport=ws", O), "bob@example.com");
  assert.equal(displayName("<sip:carol%20x@P2PSIP.LOCAL>", O), "carol x");
  assert.equal(displayName("nonsense", O), "nonsense");
});

test("peer keys compare peers", () => {
  assert.equal(peerKey("sips:Bob@Example.COM;transport=tls"), "sip:Bob@example.com");
  assert.deepEqual(parseURI("sip:example.com"), { scheme: "sip", user: "", host: "example.com" });
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { renumberZeroCSeq } from "../src/lib/cseq.js";

// JsSIP's own request class (CommonJS), as the bundle uses it.
const require = createRequire(import.meta.url);
const { OutgoingRequest } = require("jssip/lib/SIPMessage.js");
const URI = require("jssip/lib/URI.js");
const ua = { configuration: { uri: URI.parse("sip:alice@overlay.example"), jssip_id: "t" }, contact: {} };
const bob = URI.parse("sip:bob@atlanta.example");

/** An INVITE as JsSIP builds it when Math.random draws below 1e-4. */
function unluckyInvite() {
  const random = Math.random;
  Math.random = () => 0;
  try {
    return new OutgoingRequest("INVITE", bob, ua);
  } finally {
    Math.random = random;
  }
}

test("JsSIP can number an INVITE 0, and then cannot ack it with that number", () => {
  const inv = unluckyInvite();
  assert.equal(inv.cseq, 0);
  assert.match(inv.toString(), /\r\nCSeq: 0 INVITE\r\n/);
  // The dialog's ACK asks for cseq 0 (the 2xx's) and gets a random one.
  const acks = new Set();
  for (let i = 0; i < 5; i++) acks.add(new OutgoingRequest("ACK", bob, ua, { cseq: 0 }).cseq);
  assert.ok(![...acks].every((n) => n === 0), "JsSIP acked with 0: the workaround may no longer be needed");
});

test("an INVITE numbered 0 is renumbered 1 before it is sent", () => {
  const inv = unluckyInvite();
  assert.equal(renumberZeroCSeq(inv), true);
  assert.equal(inv.cseq, 1);
  assert.match(inv.toString(), /\r\nCSeq: 1 INVITE\r\n/);
  assert.doesNotMatch(inv.toString(), /CSeq: 0/);
  // The ACK of its 2xx then carries the INVITE's number.
  assert.equal(new OutgoingRequest("ACK", bob, ua, { cseq: inv.cseq }).cseq, 1);
});

test("any other INVITE is left as JsSIP numbered it", () => {
  for (const n of [1, 42, 9999]) {
    const inv = new OutgoingRequest("INVITE", bob, ua, { cseq: n });
    assert.equal(renumberZeroCSeq(inv), false);
    assert.equal(inv.cseq, n);
    assert.match(inv.toString(), new RegExp(`\\r\\nCSeq: ${n} INVITE\\r\\n`));
  }
  assert.equal(renumberZeroCSeq(undefined), false);
});

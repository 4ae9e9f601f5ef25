import { test } from "node:test";
import assert from "node:assert/strict";
import { DtmfLog, dtmfTransports, isDTMF, parseDtmfInfo, parseDtmfRelay } from "../src/lib/dtmf.js";

test("dtmf-relay bodies give their signal", () => {
  assert.equal(parseDtmfRelay("Signal=5\r\nDuration=160\r\n"), "5");
  assert.equal(parseDtmfRelay("Signal= #\r\nDuration=100"), "#");
  assert.equal(parseDtmfRelay("signal=*"), "*");
  assert.equal(parseDtmfRelay("Signal=10\r\n"), "*");
  assert.equal(parseDtmfRelay("Signal=11\r\n"), "#");
  assert.equal(parseDtmfRelay("Signal=a"), "A");
  assert.equal(parseDtmfRelay("Duration=160"), null);
  assert.equal(parseDtmfRelay(undefined), null);
});

test("each received request counts once", () => {
  const l = new DtmfLog();
  assert.ok(l.add("1", "cid/2"));
  assert.ok(!l.add("1", "cid/2"), "same INFO reported twice");
  assert.ok(l.add("1", "cid/3"), "the same digit again is a new press");
  assert.ok(l.add("#", null));
  assert.ok(!l.add("x", "cid/9"));
  assert.equal(l.digits, "11#");
  l.reset();
  assert.equal(l.digits, "");
  assert.ok(isDTMF("D") && !isDTMF("12") && !isDTMF(5));
});

test("INFO bodies by content type", () => {
  assert.equal(parseDtmfInfo("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"), "5");
  assert.equal(parseDtmfInfo("Application/DTMF-Relay; charset=utf-8", "Duration=100\r\nSignal=#\r\n"), "#", "any line order");
  assert.equal(parseDtmfInfo("application/dtmf-relay", "Signal=10\r\n"), "*");
  assert.equal(parseDtmfInfo("application/dtmf", "7"), "7");
  assert.equal(parseDtmfInfo("application/dtmf", " #\r\n"), "#");
  assert.equal(parseDtmfInfo("application/dtmf", "11"), "#");
  assert.equal(parseDtmfInfo("application/dtmf", "b"), "B");
  assert.equal(parseDtmfInfo("application/dtmf", "Signal=3"), "3");
  assert.equal(parseDtmfInfo("application/dtmf", "12"), null);
  assert.equal(parseDtmfInfo("application/dtmf", ""), null);
  assert.equal(parseDtmfInfo("application/json", "5"), null);
  assert.equal(parseDtmfInfo("", "Signal=5"), null);
  assert.equal(parseDtmfInfo(undefined, undefined), null);
});

test("digits go as RFC 4733 when negotiated, else as INFO", () => {
  assert.deepEqual(dtmfTransports({ telephoneEvent: true, bridged: true }), ["RFC2833"], "a phone behind the bridge: RTP events only");
  assert.deepEqual(dtmfTransports({ telephoneEvent: false, bridged: true }), ["INFO"]);
  assert.deepEqual(dtmfTransports({ telephoneEvent: false, bridged: false }), ["INFO"]);
  assert.deepEqual(dtmfTransports({ telephoneEvent: true, bridged: false }), ["RFC2833", "INFO"], "another page reads only INFO");
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { DtmfLog, isDTMF, parseDtmfRelay } from "../src/lib/dtmf.js";

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

import { test } from "node:test";
import assert from "node:assert/strict";
import { b64urlDecode, b64urlEncode } from "../src/lib/b64url.js";

test("base64url matches Buffer's for every length 0..70", () => {
  for (let n = 0; n <= 70; n++) {
    const b = new Uint8Array(n).map((_, i) => (i * 97 + n * 13) & 255);
    const want = Buffer.from(b).toString("base64url");
    assert.equal(b64urlEncode(b), want);
    assert.deepEqual(b64urlDecode(want), b);
  }
});

test("base64url has no padding and uses - and _", () => {
  assert.equal(b64urlEncode(new Uint8Array([0xfb, 0xff])), "-_8");
  assert.equal(b64urlEncode(new Uint8Array([1])), "AQ");
  assert.deepEqual(b64urlDecode("AQ=="), new Uint8Array([1]));
});

test("base64url decoding refuses other characters and bad lengths", () => {
  assert.throws(() => b64urlDecode("ab+c"));
  assert.throws(() => b64urlDecode("ab/c"));
  assert.throws(() => b64urlDecode("abcde"));
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, secondsLeft } from "../src/lib/backoff.js";

test("the delay grows as 1..2^n and stays within [min, max]", () => {
  const lo = () => 0, hi = () => 0.999999;
  assert.deepEqual([1, 2, 3, 4, 5, 6, 10].map((a) => backoffDelay(a, 2, 30, hi)), [2, 4, 8, 16, 30, 30, 30]);
  assert.deepEqual([1, 2, 3, 4, 5].map((a) => backoffDelay(a, 2, 30, lo)), [2, 2, 2, 2, 2]);
  for (let a = 1; a < 40; a++) {
    const d = backoffDelay(a, 2, 30);
    assert.ok(d >= 2 && d <= 30 && Number.isInteger(d), `${a}: ${d}`);
  }
});

test("the countdown rounds up and stops at zero", () => {
  assert.equal(secondsLeft(10_000, 7_001), 3);
  assert.equal(secondsLeft(10_000, 10_000), 0);
  assert.equal(secondsLeft(10_000, 12_000), 0);
});

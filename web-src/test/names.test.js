import { test } from "node:test";
import assert from "node:assert/strict";
import { generateName, guestName, normalizeName, validateName } from "../src/lib/names.js";

function seq(...xs) {
  let i = 0;
  return () => xs[i++ % xs.length];
}

test("proposals are adjective-noun-NN and valid", () => {
  for (let i = 0; i < 500; i++) {
    const n = generateName();
    assert.match(n, /^[a-z]+-[a-z]+-[1-9][0-9]$/);
    assert.equal(validateName(n), null, n);
  }
  assert.equal(generateName(seq(0, 0, 0)), "amber-badger-10");
  assert.equal(generateName(seq(0.9999, 0.9999, 0.9999)), "zesty-zebra-99");
});

test("guest names are guest- and six base36 characters", () => {
  assert.match(guestName(), /^guest-[0-9a-z]{6}$/);
  assert.equal(guestName(seq(0)), "guest-000000");
});

test("names are trimmed and lower-cased", () => {
  assert.equal(normalizeName("  Bob.Smith "), "bob.smith");
  assert.equal(normalizeName(undefined), "");
});

test("validation explains what is wrong", () => {
  assert.equal(validateName("alice"), null);
  assert.equal(validateName("a"), null);
  assert.equal(validateName("x_1.y-2"), null);
  assert.match(validateName(""), /Choose/);
  assert.match(validateName("a".repeat(33)), /at most 32/);
  assert.match(validateName("al ice"), /Use only/);
  assert.match(validateName("alice@x"), /Use only/);
  assert.match(validateName("-alice"), /Start and end/);
  assert.match(validateName("alice."), /Start and end/);
  assert.match(validateName("ålice"), /Use only/);
});

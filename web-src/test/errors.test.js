import { test } from "node:test";
import assert from "node:assert/strict";
import { callError, micError, registerError } from "../src/lib/errors.js";

test("REGISTER answers map to the contract's codes and messages", () => {
  assert.deepEqual(registerError(403, "Forbidden: name taken"), { code: "name-taken", message: "This name is taken by someone else" });
  assert.deepEqual(registerError(403, "Name Taken by another key"), { code: "name-taken", message: "This name is taken by someone else" });
  assert.deepEqual(registerError(403, "bad certificate"), { code: "failed", message: "Registration refused: bad certificate" });
  assert.equal(registerError(401, "Unauthorized").code, "failed");
  assert.equal(registerError(503, "Service Unavailable").code, "unreachable");
  assert.equal(registerError(null, "", "Connection Error").code, "unreachable");
  assert.equal(registerError(null, "", "Request Timeout").code, "unreachable");
  assert.equal(registerError(400, "Bad Request").code, "failed");
});

test("call answers map to the contract's codes", () => {
  const c = (s, cause) => callError(s, "", cause, "bob")?.code ?? null;
  assert.equal(c(404), "not-found");
  assert.equal(c(604), "not-found");
  assert.equal(c(486), "busy");
  assert.equal(c(600), "busy");
  assert.equal(c(603), "busy");
  assert.equal(c(480), "unreachable");
  assert.equal(c(408), "unreachable");
  assert.equal(c(503), "unreachable");
  assert.equal(c(488), "failed");
  assert.equal(c(500), "failed");
  assert.equal(c(487), null);
  assert.equal(c(null, "Canceled"), null);
  assert.equal(c(null, "Busy"), "busy");
  assert.equal(c(null, "Connection Error"), "unreachable");
  assert.equal(c(null, "User Denied Media Access"), "mic-denied");
  assert.equal(c(null, "Something"), "failed");
  assert.match(callError(486, "", null, "bob").message, /bob is busy/);
  assert.match(callError(404, "", null, "bob").message, /Nobody is registered as bob/);
});

test("microphone failures are mic-denied with a hint", () => {
  assert.equal(micError({ name: "NotAllowedError" }).code, "mic-denied");
  assert.match(micError({ name: "NotAllowedError" }).message, /Allow the microphone/);
  assert.match(micError({ name: "NotFoundError" }).message, /No microphone/);
  assert.match(micError({ name: "NotReadableError" }).message, /in use/);
  assert.match(micError(new Error("boom")).message, /boom/);
});

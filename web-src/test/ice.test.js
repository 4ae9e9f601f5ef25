import { test } from "node:test";
import assert from "node:assert/strict";
import { iceRefreshDelay, rtcIceServers } from "../src/lib/ice.js";

const stun = { urls: ["stun:stun.example.org"] };
const relay = (expires) => ({ urls: ["turn:192.0.2.1:3478?transport=udp"], username: `${expires}:n/web-1`, credential: "pw", expires });

test("refresh two minutes before the first credential expires", () => {
  assert.equal(iceRefreshDelay([stun, relay(1600), relay(1300)], 1000), 180);
  assert.equal(iceRefreshDelay([relay(1600)], 1000, { margin: 60 }), 540);
});

test("the delay stays within [min, max]", () => {
  assert.equal(iceRefreshDelay([relay(1010)], 1000), 15);
  assert.equal(iceRefreshDelay([relay(900)], 1000), 15);
  assert.equal(iceRefreshDelay([relay(99999)], 1000), 600);
});

test("nothing expires: ask again after max, for relays that join later", () => {
  assert.equal(iceRefreshDelay([stun], 1000), 600);
  assert.equal(iceRefreshDelay([], 1000), 600);
  assert.equal(iceRefreshDelay(undefined, 1000), 600);
  assert.equal(iceRefreshDelay([{ urls: "stun:x", expires: "soon" }], 1000), 600);
});

test("RTCIceServer entries drop expired credentials and unknown fields", () => {
  assert.deepEqual(rtcIceServers([stun, relay(2000), relay(500), null, { urls: 3 }], 1000), [
    { urls: ["stun:stun.example.org"] },
    { urls: ["turn:192.0.2.1:3478?transport=udp"], username: "2000:n/web-1", credential: "pw" },
  ]);
});

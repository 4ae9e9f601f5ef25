import { test } from "node:test";
import assert from "node:assert/strict";
import { BRIDGE_SESSION_NAME, isBridgedSdp, isWebRTCSdp, telephoneEventNegotiated, telephoneEventTypes } from "../src/lib/sdp.js";

const crlf = (...l) => l.join("\r\n") + "\r\n";

// What the peer's bridge hands the browser for a G.711 phone.
const bridged = crlf(
  "v=0",
  "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
  "s=p2psip-bridge",
  "t=0 0",
  "a=group:BUNDLE 0",
  "m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101",
  "c=IN IP4 0.0.0.0",
  "a=ice-ufrag:abcd",
  "a=ice-pwd:abcdefghijklmnopqrstuvwx",
  "a=fingerprint:sha-256 AA:BB:CC",
  "a=setup:actpass",
  "a=mid:0",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:8 PCMA/8000",
  "a=rtpmap:101 telephone-event/8000",
  "a=fmtp:101 0-16",
);

// A browser's own offer (Chrome): session name "-", opus and telephone-event.
const browser = crlf(
  "v=0",
  "o=- 1 2 IN IP4 127.0.0.1",
  "s=-",
  "t=0 0",
  "a=fingerprint:sha-256 11:22:33",
  "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
  "a=rtpmap:111 opus/48000/2",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:110 telephone-event/48000",
  "a=rtpmap:126 telephone-event/8000",
);

// A SIP phone's plain offer, no telephone-event.
const phone = crlf(
  "v=0",
  "o=phone 1 1 IN IP4 192.0.2.10",
  "s=Talk",
  "c=IN IP4 192.0.2.10",
  "t=0 0",
  "m=audio 40000 RTP/AVP 0 8",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:8 PCMA/8000",
);

test("a bridged SDP is told by its session name", () => {
  assert.equal(BRIDGE_SESSION_NAME, "p2psip-bridge");
  assert.ok(isBridgedSdp(bridged));
  assert.ok(isBridgedSdp(bridged.replaceAll("\r\n", "\n")), "LF line ends");
  assert.ok(isBridgedSdp("v=0\r\ns=p2psip-bridge  \r\n"), "trailing blanks");
  assert.ok(!isBridgedSdp(browser));
  assert.ok(!isBridgedSdp(phone));
  assert.ok(!isBridgedSdp("v=0\r\ns=p2psip-bridge-not\r\n"));
  assert.ok(!isBridgedSdp("v=0\r\na=x s=p2psip-bridge\r\n"));
  assert.ok(!isBridgedSdp(undefined) && !isBridgedSdp(""));
});

test("WebRTC SDP has a DTLS fingerprint; a phone's plain RTP has none", () => {
  assert.ok(isWebRTCSdp(bridged));
  assert.ok(isWebRTCSdp(browser), "session-level fingerprint");
  assert.ok(!isWebRTCSdp(phone));
  assert.ok(!isWebRTCSdp(""));
});

test("telephone-event payload types of the audio section", () => {
  assert.deepEqual(telephoneEventTypes(bridged), [101]);
  assert.deepEqual(telephoneEventTypes(browser), [110, 126]);
  assert.deepEqual(telephoneEventTypes(phone), []);
  // an rtpmap whose type the m= line does not list does not count
  assert.deepEqual(telephoneEventTypes(phone + "a=rtpmap:101 telephone-event/8000\r\n"), []);
  // a rejected audio section (port 0) does not count
  assert.deepEqual(telephoneEventTypes(bridged.replace("m=audio 9 ", "m=audio 0 ")), []);
  // only the audio section's attributes count
  const video = crlf("v=0", "s=-", "m=video 9 UDP/TLS/RTP/SAVPF 96 101", "a=rtpmap:101 telephone-event/8000", "m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=rtpmap:0 PCMU/8000");
  assert.deepEqual(telephoneEventTypes(video), []);
});

test("telephone-event is negotiated when both descriptions have it", () => {
  assert.ok(telephoneEventNegotiated(bridged));
  assert.ok(telephoneEventNegotiated(bridged, browser));
  assert.ok(!telephoneEventNegotiated(bridged, phone), "our answer dropped it");
  assert.ok(!telephoneEventNegotiated(phone, browser), "the far end has none");
  assert.ok(!telephoneEventNegotiated("", browser));
  assert.ok(telephoneEventNegotiated(browser, ""), "no local description yet");
});

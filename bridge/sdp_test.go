package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testSDP reads a captured description from testdata/sdp.
func testSDP(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sdp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sdpText joins lines the way most SIP stacks write them (CRLF).
func sdpText(lines ...string) []byte { return []byte(strings.Join(lines, "\r\n") + "\r\n") }

// withLF and withCRLF give a description one kind of line ending
// throughout: both are seen in the wild (RFC 8866 §5 asks for CRLF and
// tells parsers to accept LF).
func withLF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

func withCRLF(b []byte) []byte { return bytes.ReplaceAll(withLF(b), []byte("\n"), []byte("\r\n")) }

// plainView is what a test compares of a farEnd.
type plainView struct {
	RTP, RTCP string
	Mux       bool
	Codecs    []plainCodec
	TE        int
	Dir       direction
	Ptime     int
	Mline     int
}

func viewOf(fe *farEnd) plainView {
	return plainView{RTP: fe.rtp.String(), RTCP: fe.rtcp.String(), Mux: fe.mux, Codecs: fe.codecs, TE: fe.te,
		Dir: fe.dir, Ptime: fe.ptime, Mline: fe.mline}
}

var (
	pcmu0 = plainCodec{0, pcmu}
	pcma8 = plainCodec{8, pcma}
)

type sdpCase struct {
	name string
	sdp  []byte

	kind Kind

	plain    *plainView // readPlain's result, or
	plainErr error      // its error

	web    *webrtcDesc // readWebRTC's result, or
	webErr error       // its error
}

func sdpCases(t testing.TB) []sdpCase {
	// A minimal plain offer whose audio section can be varied.
	plain := func(extra ...string) []byte {
		return sdpText(append([]string{"v=0", "o=phone 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0"}, extra...)...)
	}
	return []sdpCase{
		{name: "chromium offer", sdp: testSDP(t, "chrome-offer.sdp"), kind: KindWebRTC,
			plainErr: ErrNotPlain,
			// G.711 in Chromium's order; telephone-event/48000 (110) is
			// not the one that goes with G.711.
			web: &webrtcDesc{codecs: []plainCodec{pcmu0, pcma8}, te: 126, dir: sendrecv}},
		{name: "firefox offer, fingerprint at session level", sdp: testSDP(t, "firefox-offer.sdp"), kind: KindWebRTC,
			plainErr: ErrNotPlain,
			web:      &webrtcDesc{codecs: []plainCodec{pcmu0, pcma8}, te: 101, dir: sendrecv}},
		{name: "baresip offer", sdp: testSDP(t, "baresip-offer.sdp"), kind: KindPlain,
			plain: &plainView{RTP: "192.168.1.50:10042", RTCP: "192.168.1.50:10043", Codecs: []plainCodec{pcmu0, pcma8},
				TE: 101, Dir: sendrecv, Ptime: 20},
			webErr: ErrNotWebRTC},
		{name: "asterisk offer, PCMA first, RTCP on the next port", sdp: testSDP(t, "asterisk-offer.sdp"), kind: KindPlain,
			plain: &plainView{RTP: "203.0.113.10:14582", RTCP: "203.0.113.10:14583", Codecs: []plainCodec{pcma8, pcmu0},
				TE: 101, Dir: sendrecv, Ptime: 20},
			webErr: ErrNotWebRTC},
		{name: "kamailio/rtpengine offer, G.729 first, a=rtcp with an address", sdp: testSDP(t, "kamailio-rtpengine-offer.sdp"),
			kind: KindPlain,
			plain: &plainView{RTP: "198.51.100.20:30000", RTCP: "198.51.100.21:30001", Codecs: []plainCodec{pcmu0, pcma8},
				TE: 101, Dir: sendrecv, Ptime: 20},
			webErr: ErrNotWebRTC},
		{name: "polycom holding: c=0.0.0.0, sendonly at session level", sdp: testSDP(t, "polycom-hold.sdp"), kind: KindPlain,
			plain: &plainView{RTP: "0.0.0.0:2250", RTCP: "0.0.0.0:2251", Codecs: []plainCodec{pcmu0, pcma8},
				TE: 127, Dir: sendonly},
			webErr: ErrNotWebRTC},
		{name: "SDES SRTP (RTP/SAVP, a=crypto)", sdp: testSDP(t, "sdes-srtp-offer.sdp"), kind: KindOther,
			plainErr: ErrNotPlain, webErr: ErrNotWebRTC},
		{name: "linphone: IPv6, video first, rtcp-mux, telephone-event/48000 only", sdp: testSDP(t, "linphone-video-offer.sdp"),
			kind: KindPlain,
			plain: &plainView{RTP: "[2001:db8:10::2]:7078", RTCP: "[2001:db8:10::2]:7078", Mux: true,
				Codecs: []plainCodec{pcmu0, pcma8}, TE: -1, Dir: sendrecv, Mline: 1},
			webErr: ErrNotWebRTC},

		// Holding, the RFC 2543 way and with direction attributes.
		{name: "c=0.0.0.0 with sendrecv holds: the phone will not receive", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=sendrecv"),
			plain:  &plainView{RTP: "0.0.0.0:4000", RTCP: "0.0.0.0:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: sendonly},
			webErr: ErrNotWebRTC},
		{name: "c=0.0.0.0 with recvonly is inactive", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=recvonly"),
			plain:  &plainView{RTP: "0.0.0.0:4000", RTCP: "0.0.0.0:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: inactive},
			webErr: ErrNotWebRTC},
		{name: "c=0.0.0.0 in the media section only", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 8", "c=IN IP4 0.0.0.0", "a=sendonly"),
			plain:  &plainView{RTP: "0.0.0.0:4000", RTCP: "0.0.0.0:4001", Codecs: []plainCodec{pcma8}, TE: -1, Dir: sendonly},
			webErr: ErrNotWebRTC},
		{name: "sendonly at session level", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "a=sendonly", "m=audio 4000 RTP/AVP 0"),
			plain:  &plainView{RTP: "192.0.2.1:4000", RTCP: "192.0.2.1:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: sendonly},
			webErr: ErrNotWebRTC},
		{name: "media level overrides session level", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "a=inactive", "m=audio 4000 RTP/AVP 0", "a=recvonly"),
			plain:  &plainView{RTP: "192.0.2.1:4000", RTCP: "192.0.2.1:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: recvonly},
			webErr: ErrNotWebRTC},
		{name: "inactive at session level, sendrecv in the section", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "a=inactive", "m=audio 4000 RTP/AVP 0", "a=sendrecv"),
			plain:  &plainView{RTP: "192.0.2.1:4000", RTCP: "192.0.2.1:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: sendrecv},
			webErr: ErrNotWebRTC},
		{name: "inactive at session level only", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 2 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "a=inactive", "m=audio 4000 RTP/AVP 0"),
			plain:  &plainView{RTP: "192.0.2.1:4000", RTCP: "192.0.2.1:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: inactive},
			webErr: ErrNotWebRTC},
		{name: "recvonly in the section", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "a=recvonly"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: recvonly},
			webErr: ErrNotWebRTC},

		// RTCP.
		{name: "a=rtcp port only", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "a=rtcp:5001"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:5001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "a=rtcp with an IPv6 address", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "a=rtcp:5001 IN IP6 2001:db8::7"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "[2001:db8::7]:5001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "rtcp-mux wins over a=rtcp", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "a=rtcp:4001", "a=rtcp-mux"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4000", Mux: true, Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "a=rtcp that does not parse is ignored", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "a=rtcp:none", "a=rtcp:", "a=rtcp:70000"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "RTCP of port 65535 stays in range", kind: KindPlain,
			sdp:    plain("m=audio 65535 RTP/AVP 0"),
			plain:  &plainView{RTP: "192.0.2.10:65535", RTCP: "192.0.2.10:65535", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},

		// Codecs.
		{name: "static payload types need no rtpmap", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 8 0 101", "a=rtpmap:101 telephone-event/8000", "a=ptime:30"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcma8, pcmu0}, TE: 101, Ptime: 30},
			webErr: ErrNotWebRTC},
		{name: "PCMA only", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 8", "a=rtpmap:8 PCMA/8000"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcma8}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "G.711 under a dynamic payload type, any case, with channels", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 96 97", "a=rtpmap:96 pcmu/8000/1", "a=rtpmap:97 Telephone-Event/8000"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{{96, pcmu}}, TE: 97},
			webErr: ErrNotWebRTC},
		{name: "the first telephone-event/8000 counts", kind: KindPlain,
			sdp: plain("m=audio 4000 RTP/AVP 0 100 101 102", "a=rtpmap:100 telephone-event/16000",
				"a=rtpmap:101 telephone-event/8000", "a=rtpmap:102 telephone-event/8000"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcmu0}, TE: 101},
			webErr: ErrNotWebRTC},
		{name: "G.729 only: no common codec", kind: KindPlain,
			sdp:      plain("m=audio 4000 RTP/AVP 18 101", "a=rtpmap:18 G729/8000", "a=rtpmap:101 telephone-event/8000"),
			plainErr: ErrNoCommonCodec, webErr: ErrNotWebRTC},
		{name: "wideband PCMU is not G.711", kind: KindPlain,
			sdp:      plain("m=audio 4000 RTP/AVP 96", "a=rtpmap:96 PCMU/16000"),
			plainErr: ErrNoCommonCodec, webErr: ErrNotWebRTC},
		{name: "a static payload type remapped to another codec", kind: KindPlain,
			sdp:      plain("m=audio 4000 RTP/AVP 0", "a=rtpmap:0 G729/8000"),
			plainErr: ErrNoCommonCodec, webErr: ErrNotWebRTC},
		{name: "formats that are not payload types are skipped", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP x -1 300 8"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcma8}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "ptime out of range is ignored", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "a=ptime:0", "a=ptime:1000"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "RTP/AVPF is plain", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVPF 0", "a=rtcp-fb:* nack"),
			plain:  &plainView{RTP: "192.0.2.10:4000", RTCP: "192.0.2.10:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},

		// Which section is bridged.
		{name: "video first, audio second", kind: KindPlain,
			sdp:    plain("m=video 5002 RTP/AVP 96", "a=rtpmap:96 H264/90000", "m=audio 5000 RTP/AVP 0 8"),
			plain:  &plainView{RTP: "192.0.2.10:5000", RTCP: "192.0.2.10:5001", Codecs: []plainCodec{pcmu0, pcma8}, TE: -1, Mline: 1},
			webErr: ErrNotWebRTC},
		{name: "a rejected audio section, then a live one", kind: KindPlain,
			sdp:    plain("m=audio 0 RTP/AVP 0", "m=audio 5004 RTP/AVP 8", "a=sendonly"),
			plain:  &plainView{RTP: "192.0.2.10:5004", RTCP: "192.0.2.10:5005", Codecs: []plainCodec{pcma8}, TE: -1, Dir: sendonly, Mline: 1},
			webErr: ErrNotWebRTC},
		{name: "only a rejected audio section", kind: KindOther,
			sdp:      plain("m=audio 0 RTP/AVP 0"),
			plainErr: ErrNotPlain, webErr: ErrNotWebRTC},
		{name: "no audio at all", kind: KindOther,
			sdp:      plain("m=video 5002 RTP/AVP 96", "m=application 5060 udp sip"),
			plainErr: ErrNotPlain, webErr: ErrNotWebRTC},
		{name: "a port count (RFC 8866 §5.14)", kind: KindPlain,
			sdp:    plain("m=audio 49170/2 RTP/AVP 0"),
			plain:  &plainView{RTP: "192.0.2.10:49170", RTCP: "192.0.2.10:49171", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},

		// Addresses.
		{name: "media-level c= overrides the session's", kind: KindPlain,
			sdp:    plain("m=audio 4000 RTP/AVP 0", "c=IN IP4 198.51.100.3"),
			plain:  &plainView{RTP: "198.51.100.3:4000", RTCP: "198.51.100.3:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "IPv6 c=", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 1 IN IP6 2001:db8::1", "s=-", "c=IN IP6 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plain:  &plainView{RTP: "[2001:db8::1]:4000", RTCP: "[2001:db8::1]:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "IPv4-mapped IPv6 c= is IPv4", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 1 IN IP6 ::1", "s=-", "c=IN IP6 ::ffff:192.0.2.7", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plain:  &plainView{RTP: "192.0.2.7:4000", RTCP: "192.0.2.7:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "IPv6 unspecified c= holds", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 1 IN IP6 ::1", "s=-", "c=IN IP6 ::", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plain:  &plainView{RTP: "[::]:4000", RTCP: "[::]:4001", Codecs: []plainCodec{pcmu0}, TE: -1, Dir: sendonly},
			webErr: ErrNotWebRTC},
		{name: "multicast c= with a TTL", kind: KindPlain,
			sdp:    sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 233.252.0.1/127", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plain:  &plainView{RTP: "233.252.0.1:4000", RTCP: "233.252.0.1:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
		{name: "a host name in c=", kind: KindOther,
			sdp:      sdpText("v=0", "o=- 1 1 IN IP4 pbx.example.com", "s=-", "c=IN IP4 pbx.example.com", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "c= of another network type", kind: KindOther,
			sdp:      sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=ATM NSAP 47.0091", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "no c= anywhere", kind: KindPlain,
			sdp:      sdpText("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			plainErr: ErrBadSDP, webErr: ErrNotWebRTC},

		// Not plain, not WebRTC, not SDP.
		{name: "best-effort SRTP: RTP/AVP with a=crypto", kind: KindOther,
			sdp:      plain("m=audio 4000 RTP/AVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"),
			plainErr: ErrNotPlain, webErr: ErrNotWebRTC},
		{name: "DTLS-SRTP without ICE (RFC 5763 phone)", kind: KindOther,
			sdp: plain("m=audio 4000 UDP/TLS/RTP/SAVP 0", "a=setup:actpass",
				"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08"),
			plainErr: ErrNotPlain, webErr: ErrNotWebRTC},
		{name: "WebRTC with Opus only", kind: KindWebRTC,
			sdp: sdpText("v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0",
				"a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijklmn",
				"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
				"a=rtpmap:111 opus/48000/2", "a=rtcp-mux"),
			plainErr: ErrNotPlain, webErr: ErrNoCommonCodec},
		{name: "WebRTC holding (sendonly), ICE at session level", kind: KindWebRTC,
			sdp: sdpText("v=0", "o=- 1 3 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijklmn",
				"m=audio 9 UDP/TLS/RTP/SAVPF 0 126", "c=IN IP4 0.0.0.0",
				"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
				"a=rtpmap:126 telephone-event/8000", "a=sendonly", "a=rtcp-mux"),
			plainErr: ErrNotPlain, web: &webrtcDesc{codecs: []plainCodec{pcmu0}, te: 126, dir: sendonly}},
		{name: "no v= line", kind: KindOther,
			sdp:      []byte("o=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n"),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "m= port that is not a number", kind: KindOther,
			sdp:      plain("m=audio x RTP/AVP 0"),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "m= port out of range", kind: KindOther,
			sdp:      plain("m=audio 65536 RTP/AVP 0"),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "m= with too few fields", kind: KindOther,
			sdp:      plain("m=audio 4000"),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "empty", kind: KindOther, sdp: nil, plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "too big", kind: KindOther, sdp: append(plain("m=audio 4000 RTP/AVP 0"), bytes.Repeat([]byte("a=x\r\n"), maxSDP/4)...),
			plainErr: ErrBadSDP, webErr: ErrBadSDP},
		{name: "odd lines are skipped", kind: KindPlain,
			sdp: []byte("v=0\r\n\r\ngarbage\r\n=\r\nx\r\nc=IN IP4 192.0.2.1\r\n  \r\nm=audio 4000 RTP/AVP 0\r\na=\r\na=:\r\na=rtpmap:\r\n" +
				"a=rtpmap:0\r\na=rtpmap:999 PCMU/8000\r\na=fmtp:abc 0-15\r\n"),
			plain:  &plainView{RTP: "192.0.2.1:4000", RTCP: "192.0.2.1:4001", Codecs: []plainCodec{pcmu0}, TE: -1},
			webErr: ErrNotWebRTC},
	}
}

func TestSDPTable(t *testing.T) {
	for _, c := range sdpCases(t) {
		for _, ending := range []string{"CRLF", "LF"} {
			b := withCRLF(c.sdp)
			if ending == "LF" {
				b = withLF(c.sdp)
			}
			t.Run(c.name+"/"+ending, func(t *testing.T) {
				if got := Classify(b); got != c.kind {
					t.Errorf("Classify = %v, want %v", got, c.kind)
				}
				fe, err := readPlain(b)
				switch {
				case c.plainErr != nil:
					if !errors.Is(err, c.plainErr) {
						t.Errorf("readPlain error %v, want %v", err, c.plainErr)
					}
				case err != nil:
					t.Errorf("readPlain: %v", err)
				default:
					if got := viewOf(fe); !reflect.DeepEqual(got, *c.plain) {
						t.Errorf("readPlain\n got %+v\nwant %+v", got, *c.plain)
					}
				}
				wd, err := readWebRTC(b)
				switch {
				case c.webErr != nil:
					if !errors.Is(err, c.webErr) {
						t.Errorf("readWebRTC error %v, want %v", err, c.webErr)
					}
				case err != nil:
					t.Errorf("readWebRTC: %v", err)
				default:
					if !reflect.DeepEqual(wd, c.web) {
						t.Errorf("readWebRTC\n got %+v\nwant %+v", wd, c.web)
					}
				}
			})
		}
	}
}

func TestParseSDPSections(t *testing.T) {
	sd, err := parseSDP(testSDP(t, "chrome-offer.sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.media) != 1 {
		t.Fatalf("%d sections, want 1", len(sd.media))
	}
	m := sd.media[0]
	if m.kind != "audio" || m.port != 54400 || m.proto != "UDP/TLS/RTP/SAVPF" || !m.mux || !m.ice || !m.fingerprint || m.crypto {
		t.Errorf("section %+v", m)
	}
	if got := strings.Join(m.fmts, " "); got != "111 63 9 0 8 13 110 126" {
		t.Errorf("formats %q", got)
	}
	if m.rtpmap[111] != "opus/48000/2" || m.rtpmap[110] != "telephone-event/48000" || m.fmtp[111] != "minptime=10;useinbandfec=1" {
		t.Errorf("rtpmap %v fmtp %v", m.rtpmap, m.fmtp)
	}
	// Chromium's a=rtcp:9 IN IP4 0.0.0.0 is parsed as RFC 3605 says,
	// even though rtcp-mux makes it moot.
	if m.rtcpPort != 9 || m.rtcpAddr != netip.IPv4Unspecified() || m.conn != netip.MustParseAddr("192.168.1.23") {
		t.Errorf("rtcp %d %v conn %v", m.rtcpPort, m.rtcpAddr, m.conn)
	}

	// Session-level attributes reach every section; a section's own
	// direction and address are its own.
	sd, err = parseSDP(sdpText("v=0", "c=IN IP4 192.0.2.1", "a=fingerprint:sha-1 00", "a=ice-ufrag:u", "a=recvonly",
		"m=audio 1 RTP/AVP 0", "m=video 2 RTP/AVP 96", "c=IN IP6 2001:db8::2", "a=inactive"))
	if err != nil {
		t.Fatal(err)
	}
	a, v := sd.media[0], sd.media[1]
	if !a.fingerprint || !a.ice || a.dir != recvonly || a.explicitDir || a.conn != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("audio %+v", a)
	}
	if !v.fingerprint || !v.ice || v.dir != inactive || !v.explicitDir || v.conn != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("video %+v", v)
	}
}

func TestDirection(t *testing.T) {
	for _, d := range []direction{sendrecv, sendonly, recvonly, inactive} {
		if got := dirOf(d.sends(), d.recvs()); got != d {
			t.Errorf("dirOf(%v.sends, %v.recvs) = %v", d, d, got)
		}
		if got, ok := parseDirection(d.String()); !ok || got != d {
			t.Errorf("parseDirection(%q) = %v, %v", d.String(), got, ok)
		}
	}
	if _, ok := parseDirection("sendrecv "); ok {
		t.Error("parseDirection took a padded attribute")
	}
	for k, want := range map[Kind]string{KindOther: "other", KindWebRTC: "webrtc", KindPlain: "plain"} {
		if k.String() != want {
			t.Errorf("Kind %d = %q", k, k.String())
		}
	}
}

func TestPlainOutOffer(t *testing.T) {
	po := plainOut{sessID: 42, version: 3, ip: netip.MustParseAddr("203.0.113.5"), port: 20000,
		codecs: []plainCodec{pcmu0, pcma8}, te: 101, dir: sendonly}
	want := "v=0\r\n" +
		"o=p2psip 42 3 IN IP4 203.0.113.5\r\n" +
		"s=p2psip-bridge\r\n" +
		"c=IN IP4 203.0.113.5\r\n" +
		"t=0 0\r\n" +
		"m=audio 20000 RTP/AVP 0 8 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\n" +
		"a=rtcp:20000 IN IP4 203.0.113.5\r\n" +
		"a=rtcp-mux\r\n" +
		"a=sendonly\r\n"
	got := po.marshal()
	if string(got) != want {
		t.Fatalf("offer\n%s\nwant\n%s", got, want)
	}
	fe, err := readPlain(got)
	if err != nil {
		t.Fatal(err)
	}
	wantView := plainView{RTP: "203.0.113.5:20000", RTCP: "203.0.113.5:20000", Mux: true, Codecs: []plainCodec{pcmu0, pcma8},
		TE: 101, Dir: sendonly, Ptime: 20}
	if v := viewOf(fe); !reflect.DeepEqual(v, wantView) {
		t.Fatalf("reread\n got %+v\nwant %+v", v, wantView)
	}
	if Classify(got) != KindPlain {
		t.Fatal("the bridge's own offer is not plain")
	}
}

func TestPlainOutOfferIPv6NoTE(t *testing.T) {
	po := plainOut{sessID: 1, version: 1, ip: netip.MustParseAddr("2001:db8::5"), port: 20002,
		codecs: []plainCodec{pcma8}, te: -1, dir: sendrecv}
	got := string(po.marshal())
	for _, l := range []string{"o=p2psip 1 1 IN IP6 2001:db8::5\r\n", "c=IN IP6 2001:db8::5\r\n", "m=audio 20002 RTP/AVP 8\r\n",
		"a=rtcp:20002 IN IP6 2001:db8::5\r\n", "a=sendrecv\r\n"} {
		if !strings.Contains(got, l) {
			t.Errorf("no %q in\n%s", l, got)
		}
	}
	if strings.Contains(got, "telephone-event") {
		t.Errorf("telephone-event without te:\n%s", got)
	}
	fe, err := readPlain([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if fe.rtp.String() != "[2001:db8::5]:20002" || fe.te != -1 || len(fe.codecs) != 1 || fe.codecs[0] != pcma8 {
		t.Fatalf("reread %+v", viewOf(fe))
	}
}

// An answer keeps the offer's sections in order (RFC 3264 §6): the bridged
// audio in its place, the others rejected with port 0 and their formats
// echoed.
func TestPlainOutAnswer(t *testing.T) {
	for _, c := range []struct {
		offer    []byte
		sections []string // m= lines of the answer
	}{
		{testSDP(t, "linphone-video-offer.sdp"), []string{"m=video 0 RTP/AVP 96 97", "m=audio 20000 RTP/AVP 0 101"}},
		{sdpText("v=0", "c=IN IP4 192.0.2.1", "m=audio 0 RTP/AVP 0", "m=audio 5004 RTP/AVP 8 0", "m=application 9 TCP/BFCP *",
			"m=image 5006 udptl t38", "m=text 5008 RTP/AVP"),
			[]string{"m=audio 0 RTP/AVP 0", "m=audio 20000 RTP/AVP 0 101", "m=application 0 TCP/BFCP *", "m=image 0 udptl t38",
				"m=text 0 RTP/AVP 0"}},
	} {
		offer, err := readPlain(c.offer)
		if err != nil {
			t.Fatal(err)
		}
		po := plainOut{sessID: 7, version: 1, ip: netip.MustParseAddr("198.51.100.9"), port: 20000,
			codecs: []plainCodec{pcmu0}, te: 101, dir: recvonly, media: offer.media, mline: offer.mline}
		ans := po.marshal()
		var ms []string
		for _, l := range strings.Split(string(ans), "\r\n") {
			if strings.HasPrefix(l, "m=") {
				ms = append(ms, l)
			}
		}
		if !reflect.DeepEqual(ms, c.sections) {
			t.Errorf("sections\n got %q\nwant %q\n%s", ms, c.sections, ans)
		}
		back, err := readPlain(ans)
		if err != nil {
			t.Fatalf("the answer does not read back: %v\n%s", err, ans)
		}
		want := plainView{RTP: "198.51.100.9:20000", RTCP: "198.51.100.9:20000", Mux: true, Codecs: []plainCodec{pcmu0},
			TE: 101, Dir: recvonly, Ptime: 20, Mline: offer.mline}
		if v := viewOf(back); !reflect.DeepEqual(v, want) {
			t.Errorf("reread\n got %+v\nwant %+v", v, want)
		}
		if len(back.media) != len(offer.media) {
			t.Errorf("%d sections in the answer, %d in the offer", len(back.media), len(offer.media))
		}
		for i, m := range back.media {
			if m.kind != offer.media[i].kind || (i != offer.mline && m.port != 0) {
				t.Errorf("section %d: %s port %d (offer: %s)", i, m.kind, m.port, offer.media[i].kind)
			}
		}
	}
}

// Every captured description reads the same with either line ending.
func TestSDPLineEndingsAgree(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "sdp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b := testSDP(t, e.Name())
		a, errA := readPlain(withLF(b))
		c, errC := readPlain(withCRLF(b))
		if fmt.Sprint(errA) != fmt.Sprint(errC) {
			t.Errorf("%s: errors differ: %v / %v", e.Name(), errA, errC)
			continue
		}
		if errA == nil && !reflect.DeepEqual(viewOf(a), viewOf(c)) {
			t.Errorf("%s: LF %+v, CRLF %+v", e.Name(), viewOf(a), viewOf(c))
		}
		if Classify(withLF(b)) != Classify(withCRLF(b)) {
			t.Errorf("%s: Classify differs by line ending", e.Name())
		}
	}
}

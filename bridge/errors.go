package bridge

import "errors"

var (
	// ErrNoCommonCodec: the far end offered or answered no G.711 law the
	// browser has (the SIP side answers 488, RFC 3261 §21.4.26).
	ErrNoCommonCodec = errors.New("bridge: no common codec (the bridge relays G.711 PCMU or PCMA only)")
	// ErrNotPlain: a description that is not plain RTP/AVP audio where one
	// was expected (SRTP, no audio stream).
	ErrNotPlain = errors.New("bridge: not a plain RTP/AVP audio description")
	// ErrNotWebRTC: a description without ICE and a DTLS fingerprint where
	// the browser's was expected.
	ErrNotWebRTC = errors.New("bridge: not a WebRTC description")
	// ErrBadSDP: a description that does not parse.
	ErrBadSDP = errors.New("bridge: malformed SDP")
	// ErrState: an offer or answer out of order (an answer with no offer
	// pending, or an offer while one is pending).
	ErrState = errors.New("bridge: offer/answer out of order")
	// ErrClosed: the session has ended.
	ErrClosed = errors.New("bridge: session closed")
	// ErrNoPorts: every port of the RTP range is in use or cooling down.
	ErrNoPorts = errors.New("bridge: no free RTP port in the range")
	// ErrNoRelay: the RTP leg needed a relay allocation and none worked.
	ErrNoRelay = errors.New("bridge: no relay allocation for the RTP leg")
	// errNoDTLSConnField: the pion version in use keeps its DTLS
	// connection elsewhere (see dtlsKeys); calls stay on pion's path.
	errNoDTLSConnField = errors.New("bridge: this pion version's DTLSTransport has no conn *dtls.Conn field")
	// errDTLSNotConnected: no DTLS handshake has completed yet.
	errDTLSNotConnected = errors.New("bridge: DTLS not connected")
)

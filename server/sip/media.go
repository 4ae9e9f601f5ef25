package sip

import (
	"context"
	"net/netip"
	"time"
)

// MediaBridge is what the service needs of the media bridge (package
// bridge): it is called for dialogs between a browser hosted by this
// peer and a far end whose SDP is plain RTP/AVP, in either direction.
// The service never touches media; it hands each SDP over and forwards
// what comes back. Nil in Config: no bridging (browser ↔ browser only).
type MediaBridge interface {
	// FromWebRTC starts a session for a browser's offer and returns the
	// plain offer for the far end.
	FromWebRTC(ctx context.Context, offer []byte, p Placement, ev MediaEvents) (MediaSession, []byte, error)
	// FromPlain starts a session for a phone's offer and returns the
	// WebRTC offer for the browser.
	FromPlain(ctx context.Context, offer []byte, p Placement, ev MediaEvents) (MediaSession, []byte, error)
	// Classify tells a browser's description from a phone's.
	Classify(sdp []byte) MediaKind
}

// MediaSession is one bridged call (bridge.Session).
type MediaSession interface {
	OfferFromWebRTC(offer []byte) ([]byte, error)
	AnswerFromPlain(answer []byte) ([]byte, error)
	OfferFromPlain(offer []byte) ([]byte, error)
	AnswerFromWebRTC(answer []byte) ([]byte, error)
	// Cancel abandons an offer that got no answer (a re-INVITE refused).
	Cancel()
	Close()
}

// MediaKind is what an SDP is, as far as bridging goes.
type MediaKind uint8

const (
	MediaOther  MediaKind = iota // neither: passed on untouched
	MediaWebRTC                  // ICE and DTLS-SRTP: a browser
	MediaPlain                   // RTP/AVP: an ordinary phone
)

// Placement tells the bridge where the far end is, so it can choose
// where the plain RTP leg lives.
type Placement struct {
	// Local: the far end is a device registered at this peer, at
	// DeviceIP: the leg can live on this peer's own address facing it.
	Local    bool
	DeviceIP netip.Addr
}

// MediaEvents are the bridge's calls back into the service.
type MediaEvents struct {
	OnEnd          func(reason string)
	OnPhoneDigit   func(digit byte, d time.Duration)
	OnBrowserDigit func(digit byte, d time.Duration)
}

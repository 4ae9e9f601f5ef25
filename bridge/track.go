package bridge

import (
	"strings"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// localTrack is the bridge's audio toward the browser. pion's
// TrackLocalStaticRTP stamps every packet with the bound codec's payload
// type, which would label telephone-event as audio; this one writes the
// payload type the bridge chose, so one track carries both.
type localTrack struct {
	mu     sync.RWMutex
	ws     webrtc.TrackLocalWriter // guarded by mu; nil while unbound
	ssrc   uint32                  // guarded by mu
	codecs []webrtc.RTPCodecParameters
}

func (t *localTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	cs := ctx.CodecParameters()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ws, t.ssrc, t.codecs = ctx.WriteStream(), uint32(ctx.SSRC()), cs
	for _, c := range cs {
		if lawOfMime(c.MimeType) != 0 {
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func (t *localTrack) Unbind(webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.ws = nil
	t.mu.Unlock()
	return nil
}

func (t *localTrack) ID() string                { return "audio" }
func (t *localTrack) RID() string               { return "" }
func (t *localTrack) StreamID() string          { return "p2psip-bridge" }
func (t *localTrack) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

// boundSSRC is the track's SSRC; false while unbound.
func (t *localTrack) boundSSRC() (uint32, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.ssrc, t.ws != nil
}

// write sends one packet with the track's SSRC; false while unbound.
func (t *localTrack) write(h *rtp.Header, payload []byte) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.ws == nil {
		return false
	}
	h.SSRC = t.ssrc
	_, err := t.ws.WriteRTP(h, payload)
	return err == nil
}

const mimeTE = "audio/telephone-event"

func lawOfMime(m string) law {
	switch {
	case strings.EqualFold(m, webrtc.MimeTypePCMU):
		return pcmu
	case strings.EqualFold(m, webrtc.MimeTypePCMA):
		return pcma
	}
	return 0
}

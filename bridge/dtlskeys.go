package bridge

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// dtlsKeys makes the fast path's SRTP contexts from a browser leg's DTLS
// handshake (RFC 5764 §4.2: the keys are exported from the DTLS master
// secret), the way pion's DTLSTransport makes its own. client is this
// side's DTLS role (RFC 5763 §5: the SDP's a=setup decides it).
//
// pion (v4.2) keeps the handshake's *dtls.Conn in an unexported field and
// exports neither it nor the keys, so this reads the field. It is called
// from the DTLSTransport's state handler, which pion runs on the goroutine
// that has just set the field, under its lock: no race. go.mod pins pion;
// TestDTLSConnField fails at once if an update renames the field, and a
// failure here only leaves the call on pion's own path.
func dtlsKeys(t *webrtc.DTLSTransport, client bool) (local, remote *srtp.Context, err error) {
	conn, err := dtlsConnOf(t)
	if err != nil {
		return nil, nil, err
	}
	dp, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, nil, fmt.Errorf("bridge: DTLS negotiated no SRTP profile")
	}
	profile, err := srtpProfile(dp)
	if err != nil {
		return nil, nil, err
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, nil, fmt.Errorf("bridge: DTLS connection state not available")
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil, nil, fmt.Errorf("bridge: SRTP keys from DTLS: %w", err)
	}
	if local, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile); err != nil {
		return nil, nil, fmt.Errorf("bridge: SRTP context: %w", err)
	}
	// RFC 3711 §3.3.2: a replay window of 64, libsrtp's and pion's default.
	if remote, err = srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTPReplayProtection(64)); err != nil {
		return nil, nil, fmt.Errorf("bridge: SRTP context: %w", err)
	}
	return local, remote, nil
}

// dtlsConnOf is the DTLS connection under t (see dtlsKeys).
func dtlsConnOf(t *webrtc.DTLSTransport) (*dtls.Conn, error) {
	f := reflect.ValueOf(t).Elem().FieldByName("conn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*dtls.Conn]() {
		return nil, errNoDTLSConnField
	}
	c := *(**dtls.Conn)(unsafe.Pointer(f.UnsafeAddr()))
	if c == nil {
		return nil, errDTLSNotConnected
	}
	return c, nil
}

// srtpProfile maps the profile DTLS negotiated (RFC 5764 §4.1.2) to the
// SRTP library's.
func srtpProfile(p dtls.SRTPProtectionProfile) (srtp.ProtectionProfile, error) {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	case dtls.SRTP_AEAD_AES_256_GCM:
		return srtp.ProtectionProfileAeadAes256Gcm, nil
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	case dtls.SRTP_AES128_CM_HMAC_SHA1_32:
		return srtp.ProtectionProfileAes128CmHmacSha1_32, nil
	}
	return 0, fmt.Errorf("bridge: SRTP profile %#x not supported on the fast path", uint16(p))
}

package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/p2psip/p2psip/overlay"
)

type api struct {
	cfg    Config
	assets *assets
}

// OverlayStatus is the body of GET /api/overlay.
type OverlayStatus struct {
	Overlay string             `json:"overlay"`
	NodeID  string             `json:"node_id"`
	Addrs   []string           `json:"addrs"`
	Peers   []overlay.PeerInfo `json:"peers"`
	Records RecordCounts       `json:"records"`
	// Reach tells how other peers reach this one (relays, connections);
	// nil when the overlay does not report it.
	Reach *overlay.ReachabilityStatus `json:"reachability,omitempty"`
	// SIPStreams counts the SIP streams to other peers; nil when the
	// peer does not report them.
	SIPStreams *SIPStreams `json:"sip_streams,omitempty"`
	// TURN tells about the overlay's TURN relays as this peer sees them,
	// and its own relay role; nil when the peer does not report them.
	TURN *TURNStatus `json:"turn,omitempty"`
	// Bridge tells about the media bridge (browsers ↔ plain RTP phones);
	// nil when the peer does not report it.
	Bridge *BridgeStatus `json:"bridge,omitempty"`
}

// BridgeStatus is the media bridge's state.
type BridgeStatus struct {
	Calls    int    `json:"calls"`     // bridged calls in progress
	ICEPort  int    `json:"ice_port"`  // the browser legs' shared UDP port
	RTPPorts string `json:"rtp_ports"` // --rtp-ports
	// PhoneSide says where a call's phone-side RTP goes now for a phone
	// that is not on this peer's LAN: "own <ip>" or "overlay relay".
	PhoneSide string `json:"phone_side"`
}

// TURNStatus is this peer's view of the overlay's TURN relays.
type TURNStatus struct {
	// Role: this peer runs a relay (--roles relay).
	Role bool `json:"role"`
	// SelfTest is the result of the relay's start-up self-test: "" while
	// it runs (or without the role), "ok" or the error.
	SelfTest string `json:"self_test,omitempty"`
	// SelfTestRTTMillis is the self-test's Allocate round trip.
	SelfTestRTTMillis float64 `json:"self_test_rtt_ms,omitempty"`
	// Working are the overlay relays whose last probe allocated, fastest
	// first: the ones /api/config hands out.
	Working []TURNRelay `json:"working"`
}

// TURNRelay is one working overlay relay.
type TURNRelay struct {
	Node      string  `json:"node"`
	RTTMillis float64 `json:"rtt_ms"`
}

// SIPStreams counts the live SIP streams a peer holds with other peers.
type SIPStreams struct {
	Peers   int `json:"peers"`   // peers with at least one stream
	Direct  int `json:"direct"`  // streams on direct connections
	Relayed int `json:"relayed"` // streams through a circuit relay
	// Transports counts the streams by the kind of connection they
	// ride: "tcp", "quic", "wss" or "relay".
	Transports map[string]int `json:"transports,omitempty"`
}

// reachabilityReporter is the overlay's optional reachability summary
// (overlay.Node has it).
type reachabilityReporter interface {
	Reachability() overlay.ReachabilityStatus
}

// RecordCounts tells what the node stores for others and what it hosts.
type RecordCounts struct {
	Stored int                    `json:"stored"`
	Hosted []overlay.HostedRecord `json:"hosted"`
}

// RegistrationView is the body of GET /api/registrations/{aor}.
type RegistrationView struct {
	AOR      string            `json:"aor"`
	Owner    string            `json:"owner"` // base64url of the owner key
	Seq      uint64            `json:"seq"`
	Expires  time.Time         `json:"expires"`
	Bindings []overlay.Binding `json:"bindings"` // live bindings only
}

// RegisterBody is the body of POST /api/registrations.
type RegisterBody struct {
	AOR      string `json:"aor"`
	Contact  string `json:"contact"`
	Expires  int    `json:"expires"` // seconds; default 3600
	Instance string `json:"instance,omitempty"`
}

func (a *api) wellKnown(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.cfg.Overlay.JoinInfo())
}

func (a *api) overlayStatus(w http.ResponseWriter, _ *http.Request) {
	info := a.cfg.Overlay.JoinInfo()
	var reach *overlay.ReachabilityStatus
	if r, ok := a.cfg.Overlay.(reachabilityReporter); ok {
		st := r.Reachability()
		reach = &st
	}
	body := OverlayStatus{
		Overlay: info.Overlay, NodeID: info.NodeID, Addrs: info.Addrs,
		Peers:   a.cfg.Overlay.Peers(),
		Records: RecordCounts{Stored: a.cfg.Overlay.StoredRecords(), Hosted: a.cfg.Overlay.Hosted()},
		Reach:   reach,
	}
	if a.cfg.TURN != nil {
		st := a.cfg.TURN()
		body.TURN = &st
	}
	if a.cfg.SIPStreams != nil {
		st := a.cfg.SIPStreams()
		body.SIPStreams = &st
	}
	if a.cfg.Bridge != nil {
		st := a.cfg.Bridge()
		body.Bridge = &st
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *api) lookup(w http.ResponseWriter, r *http.Request) {
	aor, err := url.PathUnescape(chi.URLParam(r, "aor"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad AOR in path")
		return
	}
	reg, err := a.cfg.Overlay.Lookup(r.Context(), aor)
	if err != nil {
		a.overlayError(w, err)
		return
	}
	live := reg.Live(time.Now())
	if len(live) == 0 {
		httpError(w, http.StatusNotFound, "no bindings: "+reg.AOR+" is known but has no live contact")
		return
	}
	writeJSON(w, http.StatusOK, RegistrationView{AOR: reg.AOR, Owner: b64(reg.Owner), Seq: reg.Seq,
		Expires: reg.ExpiresAt().UTC(), Bindings: live})
}

func (a *api) register(w http.ResponseWriter, r *http.Request) {
	var body RegisterBody
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		httpError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return
	}
	if body.Contact == "" {
		httpError(w, http.StatusBadRequest, "contact is required")
		return
	}
	if body.Expires == 0 {
		body.Expires = 3600
	}
	if body.Expires < 0 || body.Expires > 86400 {
		httpError(w, http.StatusBadRequest, "expires must be 1..86400 seconds")
		return
	}
	if body.Instance == "" {
		body.Instance = "admin:" + body.Contact
	}
	reg, err := a.cfg.Overlay.Register(r.Context(), overlay.RegisterRequest{
		AOR: body.AOR, Signer: a.cfg.Owner,
		Binding: overlay.Binding{Instance: body.Instance, Contact: body.Contact,
			Expires: time.Now().Add(time.Duration(body.Expires) * time.Second).Unix()},
	})
	if err != nil {
		a.overlayError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, RegistrationView{AOR: reg.AOR, Owner: b64(reg.Owner), Seq: reg.Seq,
		Expires: reg.ExpiresAt().UTC(), Bindings: reg.Live(time.Now())})
}

func (a *api) unregister(w http.ResponseWriter, r *http.Request) {
	aor, err := url.PathUnescape(chi.URLParam(r, "aor"))
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad AOR in path")
		return
	}
	if err := a.cfg.Overlay.Unregister(r.Context(), aor, r.URL.Query().Get("instance")); err != nil {
		a.overlayError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// overlayError maps overlay errors to HTTP statuses with a message that
// says what to do.
func (a *api) overlayError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, overlay.ErrNotFound):
		httpError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, overlay.ErrWrongOverlay), errors.Is(err, overlay.ErrBadRecord):
		httpError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, overlay.ErrAORHeld), errors.Is(err, overlay.ErrNotOwner):
		httpError(w, http.StatusConflict, err.Error()+"; choose another name or wait until the hold lapses")
	case errors.Is(err, overlay.ErrClosed):
		httpError(w, http.StatusServiceUnavailable, "the peer is shutting down")
	default:
		a.cfg.Logger.Warn("overlay request failed", "err", err)
		httpError(w, http.StatusBadGateway, "overlay request failed: "+err.Error())
	}
}

package sip

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/p2psip/p2psip/overlay"
)

// OwnerHeader carries a browser's proof that it owns the AOR it registers
// (docs/softphone.md): a certificate, signed by the browser's
// non-extractable WebCrypto P-256 key, that lets this peer's key sign the
// AOR's records. The peer can then refresh and remove the binding (also
// when the tab is gone) while the AOR stays owned by the browser's key:
// no other browser, and no other peer, can take it over.
const OwnerHeader = "P-P2PSIP-Owner"

// ownerSigner returns who signs the AOR's record for this REGISTER: the
// peer's own key for phones it hosts (nil), or the peer's key certified by
// the browser's key when the request carries OwnerHeader. A non-nil error
// is a bad proof, answered with 403.
func (s *Service) ownerSigner(req *sip.Request, aor string) (*overlay.DeviceCert, error) {
	h := req.GetHeader(OwnerHeader)
	if h == nil {
		return nil, nil
	}
	p, err := parseOwnerHeader(h.Value())
	if err != nil {
		return nil, err
	}
	p.cert.Key = s.cfg.Owner.PublicKey()
	now := time.Now()
	if err := overlay.VerifyDeviceCert(aor, p.cert, p.cert.Key, now); err != nil {
		return nil, err
	}
	if err := overlay.VerifyOwnerProof(aor, p.cert.Owner, p.cert.Key, p.ts, p.rsig, now); err != nil {
		return nil, err
	}
	return &p.cert, nil
}

// ownerProof is OwnerHeader parsed: the device certificate (without the
// device key, which is this peer's) and the fresh proof.
type ownerProof struct {
	cert overlay.DeviceCert
	ts   int64
	rsig []byte
}

// parseOwnerHeader reads `key=<b64url>;exp=<unix>;sig=<b64url>;ts=<unix>;rsig=<b64url>`.
func parseOwnerHeader(v string) (ownerProof, error) {
	var p ownerProof
	var haveExp, haveTS bool
	for _, part := range strings.Split(v, ";") {
		name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		var err error
		switch strings.ToLower(name) {
		case "key":
			p.cert.Owner, err = base64.RawURLEncoding.DecodeString(val)
		case "sig":
			p.cert.Sig, err = base64.RawURLEncoding.DecodeString(val)
		case "exp":
			p.cert.Expires, err = strconv.ParseInt(val, 10, 64)
			haveExp = err == nil
		case "ts":
			p.ts, err = strconv.ParseInt(val, 10, 64)
			haveTS = err == nil
		case "rsig":
			p.rsig, err = base64.RawURLEncoding.DecodeString(val)
		}
		if err != nil {
			return p, fmt.Errorf("%w: %s %s: %w", ErrBadRequest, OwnerHeader, name, err)
		}
	}
	if len(p.cert.Owner) != 65 || len(p.cert.Sig) != 64 || len(p.rsig) != 64 || !haveExp || !haveTS {
		return p, fmt.Errorf("%w: %s needs key (65 bytes), exp, sig (64 bytes), ts and rsig (64 bytes)", ErrBadRequest, OwnerHeader)
	}
	return p, nil
}

// registerContactAOR handles the overlay side of a browser's public
// account. The page registers sip:alice@atlanta.example with a Contact
// that is an overlay AOR it owns (sip:<alias>@<overlay>) and proves that
// ownership with OwnerHeader. Before the REGISTER is relayed to the public
// registrar, the alias is registered in the overlay with this WebSocket as
// its flow, so calls the public domain sends to the Contact come back
// through the overlay to this page, and its outgoing calls are vouched for
// by this peer. A phone does the same in two REGISTERs (its overlay AOR,
// then the public one); a browser's JsSIP UA can send only one. It
// reports whether the relay should go ahead; requests without the header
// are relayed as before.
func (s *Service) registerContactAOR(req *sip.Request, tx sip.ServerTransaction) bool {
	if req.GetHeader(OwnerHeader) == nil {
		return true
	}
	contacts := req.GetHeaders("Contact")
	var c *sip.ContactHeader
	if len(contacts) == 1 {
		c, _ = contacts[0].(*sip.ContactHeader)
	}
	if c == nil || c.Address.Wildcard || !s.isOverlayHost(c.Address.Host) {
		s.respond(tx, req, 400, "Bad Request (the owner proof needs one Contact that is an overlay AOR)")
		return false
	}
	aor, err := overlay.CanonicalAOR("sip:"+c.Address.User+"@"+s.cfg.Domain, s.cfg.Domain)
	if err != nil {
		s.respond(tx, req, 400, "Bad Request (Contact is not a valid overlay AOR)")
		return false
	}
	device, err := s.ownerSigner(req, aor)
	if err != nil {
		s.respond(tx, req, 403, "Forbidden (bad owner proof: "+firstLine(err)+")")
		return false
	}
	updates, code, reason := s.parseContacts(req)
	if code != 0 {
		s.respond(tx, req, code, reason)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if _, err := s.applyBindings(ctx, aor, req, updates, device); err != nil {
		s.registerError(tx, req, aor, err)
		return false
	}
	req.RemoveHeader(OwnerHeader) // the public registrar need not see it
	return true
}

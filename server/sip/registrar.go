package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/p2psip/p2psip/overlay"
)

// onRegister is the registrar (RFC 3261 §10.3) for AORs of the overlay.
func (s *Service) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	s.m.requests.WithLabelValues("REGISTER").Inc()
	if code, reason, hdrs := s.checkRequest(req, true); code != 0 {
		s.respond(tx, req, code, reason, hdrs...)
		return
	}
	to := req.To()
	if to == nil {
		s.respond(tx, req, 400, "Missing To")
		return
	}
	host := to.Address.Host
	if s.isOverlayHost(host) {
		host = s.cfg.Domain
	}
	aor, err := overlay.CanonicalAOR("sip:"+to.Address.User+"@"+host, s.cfg.Domain)
	switch {
	case errors.Is(err, overlay.ErrWrongOverlay):
		// §10.3 step 3: not a domain this registrar serves; a public AOR
		// goes to its own registrar through the overlay's proxy.
		if s.registerContactAOR(req, tx) {
			s.relayRegister(req, tx)
		}
		return
	case err != nil:
		s.respond(tx, req, 400, "Bad To address")
		return
	}
	if !s.authorized(req, tx, to.Address.User) {
		return
	}
	device, err := s.ownerSigner(req, aor)
	if err != nil {
		s.respond(tx, req, 403, "Forbidden (bad owner proof: "+firstLine(err)+")")
		return
	}
	contacts, code, reason := s.parseContacts(req)
	if code != 0 {
		if code == 423 {
			min := sip.NewHeader("Min-Expires", strconv.Itoa(int(s.cfg.MinExpires.Seconds())))
			s.respond(tx, req, code, reason, min)
			return
		}
		s.respond(tx, req, code, reason)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	reg, err := s.applyBindings(ctx, aor, req, contacts, device)
	if err != nil {
		s.registerError(tx, req, aor, err)
		return
	}
	s.respond(tx, req, 200, "OK", bindingHeaders(reg)...)
}

// authorized runs digest authentication (RFC 3261 §22) for users with
// credentials on this peer. Others are first-come: the overlay's owner
// lock keeps every other peer from taking the AOR.
func (s *Service) authorized(req *sip.Request, tx sip.ServerTransaction, user string) bool {
	if !s.cfg.Users.Has(user) {
		return true
	}
	var header string
	if h := req.GetHeader("Authorization"); h != nil {
		header = h.Value()
	}
	switch s.cfg.Users.Check(header, user, s.cfg.Domain, string(req.Method)) {
	case authOK:
		return true
	case authFailed:
		s.respond(tx, req, 403, "Forbidden (wrong credentials)")
	case authStale:
		s.respond(tx, req, 401, "Unauthorized", sip.NewHeader("WWW-Authenticate", s.cfg.Users.Challenge(s.cfg.Domain, true)))
	default:
		s.respond(tx, req, 401, "Unauthorized", sip.NewHeader("WWW-Authenticate", s.cfg.Users.Challenge(s.cfg.Domain, false)))
	}
	return false
}

// contactUpdate is one Contact of a REGISTER with its resolved lifetime.
type contactUpdate struct {
	wildcard bool
	uri      string
	hostPort string // the URI's host:port (port 0 if none), for the flows index
	instance string
	regID    int
	q        float64
	expires  time.Duration // 0 removes
}

// parseContacts applies §10.3 steps 6–7; a non-zero code is the error
// response.
func (s *Service) parseContacts(req *sip.Request) ([]contactUpdate, int, string) {
	def := s.cfg.MaxExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			return nil, 400, "Bad Expires"
		}
		def = time.Duration(n) * time.Second
	}
	var out []contactUpdate
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, 400, "Bad Contact"
		}
		if c.Address.Wildcard {
			out = append(out, contactUpdate{wildcard: true})
			continue
		}
		u := contactUpdate{uri: c.Address.String(), expires: def, q: 1,
			hostPort: net.JoinHostPort(c.Address.Host, strconv.Itoa(c.Address.Port))}
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, 400, "Bad contact expires"
			}
			u.expires = time.Duration(n) * time.Second
		}
		if u.expires > 0 && u.expires < s.cfg.MinExpires {
			return nil, 423, "Interval Too Brief"
		}
		u.expires = min(u.expires, s.cfg.MaxExpires)
		if v, ok := c.Params.Get("q"); ok {
			q, err := strconv.ParseFloat(v, 64)
			if err != nil || q < 0 || q > 1 {
				return nil, 400, "Bad q"
			}
			u.q = q
		}
		u.instance = strings.Trim(c.Params.GetOr("+sip.instance", ""), `"<>`)
		if u.instance == "" {
			u.instance = u.uri
		}
		u.regID, _ = strconv.Atoi(c.Params.GetOr("reg-id", "0"))
		out = append(out, u)
	}
	for _, u := range out {
		// §10.3 step 6: "*" only alone and with Expires: 0.
		if u.wildcard && (len(out) > 1 || def != 0) {
			return nil, 400, "Invalid wildcard Contact"
		}
	}
	return out, 0, ""
}

// applyBindings writes the REGISTER's changes to the overlay and the
// local flows, and returns the AOR's record. device is the browser's
// certificate for this peer's key when the browser owns the AOR, nil when
// the peer owns it for a phone it hosts.
func (s *Service) applyBindings(ctx context.Context, aor string, req *sip.Request, updates []contactUpdate, device *overlay.DeviceCert) (*overlay.Registration, error) {
	if removes(updates) {
		if err := s.mayRemove(ctx, aor, device); err != nil {
			return nil, err
		}
	}
	if len(updates) == 1 && updates[0].wildcard {
		for _, inst := range s.flows.instances(aor) {
			s.flows.remove(aor, inst)
		}
		if err := s.cfg.Locator.Unregister(ctx, aor, ""); err != nil && !errors.Is(err, overlay.ErrNotFound) {
			return nil, err
		}
	}
	var last *overlay.Registration
	// Other peers reach this one by its node name, over a stream of the
	// overlay (RFC 3327: the Path names this peer as the way to the flow).
	self := s.peerURI()
	path := "<" + self.String() + ">"
	for _, u := range updates {
		if u.wildcard {
			continue
		}
		if u.expires == 0 {
			s.flows.remove(aor, u.instance)
			if err := s.cfg.Locator.Unregister(ctx, aor, u.instance); err != nil && !errors.Is(err, overlay.ErrNotFound) {
				return nil, err
			}
			continue
		}
		if err := s.flows.admit(aor, u.instance, req.Source()); err != nil {
			return nil, err
		}
		exp := time.Now().Add(u.expires)
		reg, err := s.cfg.Locator.Register(ctx, overlay.RegisterRequest{AOR: aor, Signer: s.cfg.Owner, Device: device,
			Binding: overlay.Binding{Instance: u.instance, RegID: u.regID, Contact: u.uri, Path: []string{path},
				Expires: exp.Unix(), Q: u.q}})
		if err != nil {
			return nil, err
		}
		if err := s.flows.put(&flow{aor: aor, instance: u.instance, contact: u.uri, hostPort: u.hostPort, source: req.Source(),
			transport: req.Transport(), expires: exp}); err != nil {
			return nil, err
		}
		last = reg
	}
	if last != nil {
		return last, nil // the record just written: no second lookup
	}
	reg, err := s.cfg.Locator.Lookup(ctx, aor)
	if errors.Is(err, overlay.ErrNotFound) {
		return &overlay.Registration{AOR: aor}, nil
	}
	return reg, err
}

// removes reports whether a REGISTER removes bindings (§10.3 step 6–7).
func removes(updates []contactUpdate) bool {
	for _, u := range updates {
		if u.wildcard || u.expires == 0 {
			return true
		}
	}
	return false
}

// mayRemove lets only the AOR's owner remove its bindings: the peer for
// the phones it owns names for, the browser (by its proof) for a name it
// owns. Adding a binding is checked by the overlay's owner lock; removing
// is signed by this peer's key in either case, so it is checked here.
func (s *Service) mayRemove(ctx context.Context, aor string, device *overlay.DeviceCert) error {
	reg, err := s.cfg.Locator.Lookup(ctx, aor)
	if errors.Is(err, overlay.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	owner := s.cfg.Owner.PublicKey()
	if device != nil {
		owner = device.Owner
	}
	if len(reg.Owner) > 0 && !bytes.Equal(reg.Owner, owner) {
		return fmt.Errorf("%w: only the owner of %s may remove its bindings", overlay.ErrNotOwner, aor)
	}
	return nil
}

func (s *Service) registerError(tx sip.ServerTransaction, req *sip.Request, aor string, err error) {
	switch {
	case errors.Is(err, overlay.ErrAORHeld), errors.Is(err, overlay.ErrNotOwner):
		// The softphone shows "name taken" for this reason phrase
		// (docs/softphone.md).
		s.respond(tx, req, 403, "Forbidden (name taken: "+aor+" is held by another owner)")
	case errors.Is(err, errTooManyFlows):
		s.respond(tx, req, 503, "Service Unavailable (too many registrations from this address)")
	case errors.Is(err, overlay.ErrBadRecord):
		s.respond(tx, req, 400, "Bad Request ("+firstLine(err)+")")
	default:
		s.log.Warn("REGISTER failed", "aor", aor, "err", err)
		s.respond(tx, req, 500, "Server Internal Error (overlay unavailable)", sip.NewHeader("Retry-After", "10"))
	}
}

// bindingHeaders lists every live binding of the AOR in the 200 (§10.3
// step 8), each with its remaining lifetime.
func bindingHeaders(reg *overlay.Registration) []sip.Header {
	var out []sip.Header
	for _, b := range reg.Live(time.Now()) {
		left := max(0, int(time.Until(b.ExpiresAt()).Seconds()))
		out = append(out, sip.NewHeader("Contact", fmt.Sprintf("<%s>;expires=%d", b.Contact, left)))
	}
	return out
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

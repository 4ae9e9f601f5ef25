package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/routing"
)

// hostedReg is an AOR with bindings this node hosts; the node republishes
// the record and keeps its own bindings in it.
type hostedReg struct {
	aor    string
	signer Signer      // nil for records signed elsewhere (a browser)
	device *DeviceCert // set when signer is a certified device key
	// mine holds this node's bindings, one per Instance: a few at most,
	// so a slice, where a map took ~1 KiB per AOR. It starts in one, so
	// that the usual AOR, a phone's, takes no allocation of its own.
	mine  []Binding
	one   [1]Binding
	value []byte // the last value this node wrote or saw with its bindings
}

// setBinding adds b to bs, or replaces the binding of b's instance.
func setBinding(bs []Binding, b Binding) []Binding {
	if i := slices.IndexFunc(bs, func(x Binding) bool { return x.Instance == b.Instance }); i >= 0 {
		bs[i] = b
		return bs
	}
	return append(bs, b)
}

// hasInstance reports whether bs holds a binding of instance.
func hasInstance(bs []Binding, instance string) bool {
	return slices.ContainsFunc(bs, func(b Binding) bool { return b.Instance == instance })
}

// RegisterRequest adds or refreshes one binding of an AOR.
type RegisterRequest struct {
	// AOR to register; its host part must be the overlay name.
	AOR string
	// Binding to add or replace (matched by Instance). Node defaults to
	// this node's ID; Expires is absolute (Unix seconds).
	Binding Binding
	// Signer is the AOR owner's key, or a device key with Device set.
	Signer Signer
	// Device is the owner's certificate for Signer, when Signer is not the
	// owner key.
	Device *DeviceCert
}

func (r *RegisterRequest) owner() []byte {
	if r.Device != nil {
		return r.Device.Owner
	}
	return r.Signer.PublicKey()
}

// Register adds or refreshes a binding in the AOR's record and publishes
// it. It returns ErrAORHeld when another owner holds the AOR. The node
// republishes the record until the binding expires or is removed.
func (n *Node) Register(ctx context.Context, req RegisterRequest) (reg *Registration, err error) {
	defer func(start time.Time) { n.metrics.observe("register", start, err) }(time.Now())
	if n.isClosed() {
		return nil, ErrClosed
	}
	aor, err := CanonicalAOR(req.AOR, n.cfg.Name)
	if err != nil {
		return nil, err
	}
	if req.Signer == nil {
		return nil, fmt.Errorf("%w: no signer", ErrNotOwner)
	}
	b := req.Binding
	if b.Node == "" {
		b.Node = n.ID()
	}
	key := RegistrationKey(aor)
	cur, err := n.current(ctx, key)
	if err != nil {
		return nil, err
	}
	next, err := n.nextRecord(aor, cur, req.owner(), req.Device, func(bs []Binding) []Binding {
		return append(slices.DeleteFunc(bs, func(x Binding) bool { return x.Instance == b.Instance }), b)
	})
	if err != nil {
		return nil, err
	}
	value, err := n.publish(ctx, key, next, req.Signer)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	h := n.hosted[aor]
	if h == nil || h.signer == nil || !bytes.Equal(h.signer.PublicKey(), req.Signer.PublicKey()) {
		h = &hostedReg{aor: aor}
		h.mine = h.one[:0]
		n.hosted[aor] = h
	}
	h.signer, h.device, h.value = req.Signer, req.Device, value
	h.mine = setBinding(h.mine, b)
	n.mu.Unlock()
	return next, nil
}

// current returns the record under an AOR's key (RegistrationKey) as the
// overlay has it, or nil. The record is the shared decoding of the value
// (see parsedReg): read it, never modify it.
func (n *Node) current(ctx context.Context, key string) (*Registration, error) {
	p, err := n.currentParsed(ctx, key)
	if p == nil || err != nil {
		return nil, err
	}
	return p.reg, nil
}

func (n *Node) currentParsed(ctx context.Context, key string) (*parsedReg, error) {
	var value []byte
	var err error
	if n.dht.RoutingTable().Size() == 0 {
		// Alone in the overlay: a DHT query would ask nobody and end in the
		// fallback below; skip its machinery.
		err = routing.ErrNotFound
	} else {
		value, err = n.dht.GetValue(ctx, key, dht.Quorum(n.cfg.LookupQuorum))
	}
	if errors.Is(err, routing.ErrNotFound) || (err != nil && n.dht.RoutingTable().Size() == 0) {
		if value = n.localValue(key); value == nil {
			return nil, nil
		}
		return parsedRegs.decodeStored(value)
	} else if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", strings.TrimPrefix(key, regKeyPrefix), err)
	}
	return parsedRegs.decode(value)
}

// nextRecord builds the record that follows cur with edit applied to its
// live bindings. It enforces the owner lock.
func (n *Node) nextRecord(aor string, cur *Registration, owner []byte, dev *DeviceCert, edit func([]Binding) []Binding) (*Registration, error) {
	now := time.Now()
	next := &Registration{AOR: aor, Owner: owner, Seq: 1, Created: now.Unix()}
	if cur != nil && !bytes.Equal(cur.Owner, owner) && !now.After(cur.ExpiresAt().Add(n.cfg.Hold)) {
		return nil, fmt.Errorf("%w: %s (held until %s)", ErrAORHeld, aor,
			cur.ExpiresAt().Add(n.cfg.Hold).UTC().Format(time.RFC3339))
	}
	if cur != nil && bytes.Equal(cur.Owner, owner) {
		next.Seq, next.Created = cur.Seq+1, cur.Created
		next.Bindings = cur.Live(now)
		for _, d := range cur.Devices {
			if d.Expires > now.Unix() {
				next.Devices = append(next.Devices, d)
			}
		}
	}
	if dev != nil {
		next.Devices = withDeviceCert(next.Devices, *dev)
	}
	next.Bindings = edit(next.Bindings)
	if len(next.Bindings) > maxBindings {
		return nil, fmt.Errorf("%w: %s has more than %d devices", ErrBadRecord, aor, maxBindings)
	}
	slices.SortFunc(next.Bindings, func(a, b Binding) int { return strings.Compare(a.Instance, b.Instance) })
	next.Expires = now.Unix()
	for _, b := range next.Bindings {
		next.Expires = max(next.Expires, b.Expires)
	}
	return next, nil
}

// publish signs reg and stores it in the overlay under key, the AOR's
// RegistrationKey.
func (n *Node) publish(ctx context.Context, key string, reg *Registration, s Signer) ([]byte, error) {
	value, env, err := signRegistration(reg, s)
	if err != nil {
		return nil, err
	}
	// Kept: the bytes as the node stores them (the lone peer's store
	// holds them in its record; the envelope's own bytes then go).
	return n.putSigned(ctx, key, value, signedDecoding(value, env, reg, s))
}

// put stores a value locally and at the closest peers. A node alone in
// its overlay keeps the value locally; the refresh loop spreads it once
// peers arrive.
func (n *Node) put(ctx context.Context, key string, value []byte) error {
	_, err := n.putSigned(ctx, key, value, nil)
	return err
}

// putSigned is put for a value this node has just signed, with its
// decoding (signedDecoding; nil for none). Alone, the node stores it
// without decoding or verifying it again. With peers, the decoding goes
// into the shared cache (as trustSigned), where the validation of this
// PUT and of the stored value find it. It returns the value as stored
// (see storeAlone) or value itself.
func (n *Node) putSigned(ctx context.Context, key string, value []byte, signed *parsedReg) ([]byte, error) {
	if aor, ok := strings.CutPrefix(key, regKeyPrefix); ok {
		defer n.lookups.drop(aor) // also when the put fails half-way
	}
	if n.dht.RoutingTable().Size() == 0 {
		return n.putAlone(ctx, key, value, signed)
	}
	if signed != nil {
		parsedRegs.addOwned(value, signed)
	}
	err := n.dht.PutValue(ctx, key, value)
	if errors.Is(err, kb.ErrLookupFailure) && n.localValue(key) != nil {
		n.unspread.Store(true)
		return value, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storing %s: %w", key, err)
	}
	return value, nil
}

// putAlone stores a value when the routing table is empty. PutValue would
// validate the value, store it through the DHT's value store (validating
// it and the stored one again) and then look for peers to send it to and
// find none; that costs as much as the rest of a REGISTER. putAlone does
// the value store's part alone (storeAlone): validate, select against the
// stored value, store. The refresh loop spreads the value once peers
// arrive.
func (n *Node) putAlone(ctx context.Context, key string, value []byte, signed *parsedReg) ([]byte, error) {
	// Set before storing, so that a peer connecting meanwhile kicks a
	// refresh (the connect notifier reads it).
	n.unspread.Store(true)
	stored, err := n.storeAlone(ctx, key, value, signed)
	if err != nil {
		return nil, fmt.Errorf("storing %s: %w", key, err)
	}
	return stored, nil
}

// PutRecord stores a registration record signed elsewhere (a browser that
// owns its AOR). The node republishes it while it lives.
func (n *Node) PutRecord(ctx context.Context, value []byte) (reg *Registration, err error) {
	defer func(start time.Time) { n.metrics.observe("put_record", start, err) }(time.Now())
	reg, _, err = ParseRegistration(value)
	if err != nil {
		return nil, err
	}
	key := RegistrationKey(reg.AOR)
	if _, err := n.valid.ValidateRegistration(key, value); err != nil {
		return nil, err
	}
	cur, err := n.current(ctx, key)
	if err != nil {
		return nil, err
	}
	if cur != nil && !bytes.Equal(cur.Owner, reg.Owner) && !time.Now().After(cur.ExpiresAt().Add(n.cfg.Hold)) {
		return nil, fmt.Errorf("%w: %s", ErrAORHeld, reg.AOR)
	}
	if cur != nil && bytes.Equal(cur.Owner, reg.Owner) && cur.Seq >= reg.Seq {
		return nil, fmt.Errorf("%w: seq %d, overlay has %d", ErrStale, reg.Seq, cur.Seq)
	}
	if err := n.put(ctx, key, value); err != nil {
		return nil, err
	}
	n.mu.Lock()
	// The validator refused duplicate instances.
	n.hosted[reg.AOR] = &hostedReg{aor: reg.AOR, value: value, mine: slices.Clone(reg.Bindings)}
	n.mu.Unlock()
	return reg, nil
}

// Lookup returns the AOR's record as the overlay has it. Its Live method
// gives the bindings to route to; a record with none means the AOR is
// known but unreachable. ErrNotFound means no record at all.
func (n *Node) Lookup(ctx context.Context, aor string) (reg *Registration, err error) {
	defer func(start time.Time) { n.metrics.observe("lookup", start, err) }(time.Now())
	canon, err := CanonicalAOR(aor, n.cfg.Name)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if p, refresh := n.lookups.get(canon, now); p != nil {
		if refresh {
			go n.refreshLookup(canon, now)
		}
		return p.reg.clone(), nil
	}
	gen := n.lookups.gen(canon)
	p, err := n.sharedLookup(ctx, canon, gen)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, canon)
	}
	n.lookups.put(canon, p, now, gen)
	return p.reg.clone(), nil
}

// refreshLookup fetches a cached record again before it lapses (see
// lookupCache), so that no call waits for the DHT while the AOR is in use.
// A failed query leaves the entry to lapse at its TTL; the next Lookup
// then asks the DHT itself, and reports the error.
func (n *Node) refreshLookup(canon string, now time.Time) {
	gen := n.lookups.gen(canon)
	p, err := n.sharedLookup(n.ctx, canon, gen)
	switch {
	case err != nil:
		n.log.Debug("refreshing a cached lookup failed", "aor", canon, "err", err)
	case p == nil:
		n.lookups.forget(canon, gen)
	default:
		n.lookups.put(canon, p, now, gen)
	}
}

// lookupFlightTimeout bounds a DHT query that several Lookups share; each
// caller still gives up at its own deadline.
const lookupFlightTimeout = 10 * time.Second

// sharedLookup runs one DHT query for all concurrent Lookups of an AOR:
// the cache helps only once a query has finished, and under load a burst
// of calls to one AOR would start a query each, which then slow each other
// past their deadlines. The flight is keyed by the cache generation too,
// so a Lookup that starts after a write never gets what a query read
// before it.
func (n *Node) sharedLookup(ctx context.Context, canon string, gen uint64) (*parsedReg, error) {
	ch := n.lookupFlight.DoChan(canon+"\x00"+strconv.FormatUint(gen, 10), func() (any, error) {
		qctx, cancel := context.WithTimeout(n.ctx, lookupFlightTimeout)
		defer cancel()
		return n.currentParsed(qctx, RegistrationKey(canon))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		p, _ := r.Val.(*parsedReg)
		return p, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("looking up %s: %w", canon, ctx.Err())
	}
}

// Unregister removes this node's binding instance of the AOR (all of
// them when instance is ""). When no binding is left the record becomes a
// tombstone that keeps the AOR held for the hold period.
func (n *Node) Unregister(ctx context.Context, aor, instance string) (err error) {
	defer func(start time.Time) { n.metrics.observe("unregister", start, err) }(time.Now())
	canon, err := CanonicalAOR(aor, n.cfg.Name)
	if err != nil {
		return err
	}
	n.mu.Lock()
	h := n.hosted[canon]
	var gone map[string]bool
	var signer Signer
	var dev *DeviceCert
	if h != nil {
		gone = map[string]bool{}
		h.mine = slices.DeleteFunc(h.mine, func(b Binding) bool {
			if instance == "" || b.Instance == instance {
				gone[b.Instance] = true
				return true
			}
			return false
		})
		signer, dev = h.signer, h.device
		if len(h.mine) == 0 {
			delete(n.hosted, canon)
		}
	}
	n.mu.Unlock()
	if len(gone) == 0 {
		return fmt.Errorf("%w: this peer hosts no binding %q of %s", ErrNotFound, instance, canon)
	}
	if signer == nil {
		return nil // signed elsewhere: the record expires by itself
	}
	cur, err := n.current(ctx, RegistrationKey(canon))
	if err != nil {
		return err
	}
	owner := signer.PublicKey()
	if dev != nil {
		owner = dev.Owner
	}
	next, err := n.nextRecord(canon, cur, owner, dev, func(bs []Binding) []Binding {
		return slices.DeleteFunc(bs, func(b Binding) bool { return gone[b.Instance] })
	})
	if err != nil {
		return err
	}
	_, err = n.publish(ctx, RegistrationKey(canon), next, signer)
	return err
}

// HostedRecord describes a record this node publishes.
type HostedRecord struct {
	Kind     string    `json:"kind"` // "registration" or "service"
	Name     string    `json:"name"` // AOR or service name
	Bindings int       `json:"bindings,omitempty"`
	Expires  time.Time `json:"expires"`
}

// Hosted lists the registrations and service entries this node publishes.
func (n *Node) Hosted() []HostedRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]HostedRecord, 0, len(n.hosted)+len(n.services))
	for aor, h := range n.hosted {
		var exp int64
		for _, b := range h.mine {
			exp = max(exp, b.Expires)
		}
		out = append(out, HostedRecord{Kind: "registration", Name: aor, Bindings: len(h.mine), Expires: time.Unix(exp, 0).UTC()})
	}
	for name, s := range n.services {
		out = append(out, HostedRecord{Kind: "service", Name: name, Expires: time.Unix(s.entry.Expires, 0).UTC()})
	}
	slices.SortFunc(out, func(a, b HostedRecord) int { return strings.Compare(a.Kind+a.Name, b.Kind+b.Name) })
	return out
}

package overlay

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Validator checks every record a node stores or reads (it implements
// go-libp2p-record's Validator for the "sip" namespace). Every storing node
// runs it on every PUT, so a bad write is refused by the nodes that would
// keep it, not merely by the writer.
type Validator struct {
	// Overlay is the overlay name; AOR host parts must equal it.
	Overlay string
	// Hold is how long an expired AOR stays locked to its owner.
	Hold time.Duration
	// MaxTTL is the longest lifetime a record may claim.
	MaxTTL time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Local returns the value this node stores for key, or nil. It lets
	// the validator enforce the owner lock against what this node holds:
	// go-libp2p-record's Select alone cannot tell the stored record from
	// the incoming one.
	Local func(key string) []byte

	name atomic.Pointer[string] // see overlayName
}

// overlayName returns a pointer to a copy of v.Overlay, made once rather
// than for every record that validates (parsedReg.bodyFor keeps it).
func (v *Validator) overlayName() *string {
	if p := v.name.Load(); p != nil && *p == v.Overlay {
		return p
	}
	name := v.Overlay
	v.name.Store(&name)
	return &name
}

func (v *Validator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Validate implements record.Validator.
func (v *Validator) Validate(key string, value []byte) error {
	switch {
	case strings.HasPrefix(key, regKeyPrefix):
		_, err := v.validRegistration(key, value)
		return err
	case strings.HasPrefix(key, svcKeyPrefix):
		_, err := v.ValidateService(key, value)
		return err
	default:
		return fmt.Errorf("%w: unknown key %q", ErrBadRecord, key)
	}
}

// ValidateRegistration checks a registration value stored under key and
// returns its body.
func (v *Validator) ValidateRegistration(key string, value []byte) (*Registration, error) {
	p, err := v.validRegistration(key, value)
	if err != nil {
		return nil, err
	}
	return p.reg.clone(), nil // the decoding is shared: hand out a copy
}

// validRegistration is ValidateRegistration on the shared decoding. A
// value not cached yet is decoded into a value of its own and cached only
// once its shape and signature are checked: values that fail are dropped
// with their decoding, whatever a peer sends.
func (v *Validator) validRegistration(key string, value []byte) (*parsedReg, error) {
	p, err := v.validEntry(key, value)
	if err != nil {
		return nil, err
	}
	if err := v.checkOwnerLock(key, p.reg); err != nil {
		return nil, err
	}
	return p, nil
}

// validEntry is validRegistration but for the owner lock.
func (v *Validator) validEntry(key string, value []byte) (*parsedReg, error) {
	p := parsedRegs.get(value)
	cached := p != nil
	if !cached {
		reg, env, err := ParseRegistration(value)
		if err != nil {
			return nil, err
		}
		p = &parsedReg{reg: reg, env: env}
	}
	if err := v.checkParsed(key, p); err != nil {
		return nil, err
	}
	if !cached {
		p = parsedRegs.add(value, p)
	}
	return p, nil
}

// checkParsed runs every check of a registration but the owner lock on
// its decoding: shape, key, times, signer and signature.
func (v *Validator) checkParsed(key string, p *parsedReg) error {
	if f := p.bodyFor.Load(); f == nil || *f != v.Overlay {
		if err := v.checkRegistrationShape(p.reg); err != nil {
			return err
		}
		p.bodyFor.Store(v.overlayName())
	}
	if !strings.HasPrefix(key, regKeyPrefix) || key[len(regKeyPrefix):] != p.reg.AOR {
		return fmt.Errorf("%w: key %q does not match AOR %q", ErrBadRecord, key, p.reg.AOR)
	}
	if err := v.checkRegistrationTimes(p.reg); err != nil {
		return err
	}
	return v.checkRegistrationSigner(p)
}

// storedRegistration returns the decoding of a value this node stores
// (nil if it does not decode) and whether that value is still valid; one
// that is not counts as absent, as for the DHT's value store, though its
// owner lock still holds (checkOwnerLock). Every stored value was
// validated when it was stored (a peer's PUT by the DHT, this node's own
// by storeAlone), and its signatures are a function of its bytes: only
// the checks that depend on the time are run again, the record's times
// and, for a record with device certificates, their expiry. Its JSON is
// decoded, but not cached, when the cache does not hold it.
//
// This rests on every writer of the node's datastore validating what it
// writes: storeAlone, and go-libp2p-kad-dht's records.ValueStore.Put
// (v0.42, for a peer's PUT and the node's own PutValue). A new writer,
// or a kad-dht that stops validating, would make this a way around the
// signature check; TestStoreAloneAsValueStore pins the layout both use.
func (v *Validator) storedRegistration(key string, value []byte) (*parsedReg, bool) {
	p, err := parsedRegs.decode(value)
	if err != nil {
		return nil, false
	}
	if len(p.reg.Devices) > 0 {
		// The certificates' expiry; the signature is known good.
		p.sigOK.Store(true)
		return p, v.checkParsed(key, p) == nil
	}
	return p, v.checkRegistrationTimes(p.reg) == nil
}

// checkRegistrationShape runs the checks that depend on the record and
// the overlay name alone, not on the time.
func (v *Validator) checkRegistrationShape(reg *Registration) error {
	aor, err := CanonicalAOR(reg.AOR, v.Overlay)
	if err != nil {
		return err
	}
	if aor != reg.AOR {
		return fmt.Errorf("%w: AOR %q is not canonical", ErrBadRecord, reg.AOR)
	}
	if len(reg.Bindings) > maxBindings || len(reg.Devices) > maxDevices {
		return fmt.Errorf("%w: more than %d bindings or devices", ErrBadRecord, maxBindings)
	}
	for i, b := range reg.Bindings {
		if b.Instance == "" || b.Contact == "" || b.Node == "" {
			return fmt.Errorf("%w: binding without instance, contact or node", ErrBadRecord)
		}
		// At most maxBindings: comparing with the earlier ones costs less
		// than a set.
		if slices.ContainsFunc(reg.Bindings[:i], func(o Binding) bool { return o.Instance == b.Instance }) {
			return fmt.Errorf("%w: duplicate binding instance %q", ErrBadRecord, b.Instance)
		}
		if b.Expires > reg.Expires {
			return fmt.Errorf("%w: binding outlives its record", ErrBadRecord)
		}
		if b.Q < 0 || b.Q > 1 {
			return fmt.Errorf("%w: q=%v outside 0..1", ErrBadRecord, b.Q)
		}
		if err := validPeerIDs.check(b.Node); err != nil {
			return fmt.Errorf("%w: binding node %q: %v", ErrBadRecord, b.Node, err)
		}
	}
	if reg.Created > reg.Expires {
		return fmt.Errorf("%w: creation time in the future", ErrBadRecord)
	}
	return nil
}

// checkRegistrationTimes checks the record's times against the clock.
func (v *Validator) checkRegistrationTimes(reg *Registration) error {
	now := v.now()
	if now.After(reg.ExpiresAt().Add(v.Hold)) {
		return fmt.Errorf("%w: %s expired at %s", ErrExpired, reg.AOR, reg.ExpiresAt().UTC().Format(time.RFC3339))
	}
	if reg.ExpiresAt().After(now.Add(v.MaxTTL + maxClockSkew)) {
		return fmt.Errorf("%w: expiry more than %s ahead", ErrBadRecord, v.MaxTTL)
	}
	if time.Unix(reg.Created, 0).After(now.Add(maxClockSkew)) {
		return fmt.Errorf("%w: creation time in the future", ErrBadRecord)
	}
	return nil
}

// checkRegistrationSigner accepts the owner's signature, or one by a
// device key that the owner certified for this AOR and that has not expired.
func (v *Validator) checkRegistrationSigner(p *parsedReg) error {
	reg, env := p.reg, p.env
	switch env.Alg {
	case AlgP256:
		if env.Proof != nil {
			return fmt.Errorf("%w: proof on a %q record", ErrBadProof, env.Alg)
		}
	case AlgP256Batch:
		if env.Proof == nil {
			return fmt.Errorf("%w: %q record without a proof", ErrBadProof, env.Alg)
		}
	default:
		return fmt.Errorf("%w: registration signed with %q, want %q or %q", ErrBadSignature, env.Alg, AlgP256, AlgP256Batch)
	}
	if !bytes.Equal(env.Signer, reg.Owner) && !v.certifiedDevice(reg, env.Signer) {
		return fmt.Errorf("%w: signer is neither the owner of %s nor a certified device", ErrNotOwner, reg.AOR)
	}
	for _, c := range reg.Devices {
		if !bytes.Equal(c.Owner, reg.Owner) {
			return fmt.Errorf("%w: device certificate from another owner", ErrNotOwner)
		}
		if err := verifyP256Cached(c.Owner, deviceCertMessage(reg.AOR, c), c.Sig); err != nil {
			return fmt.Errorf("device certificate: %w", err)
		}
	}
	if p.sigOK.Load() {
		return nil
	}
	var err error
	if env.Alg == AlgP256Batch {
		err = verifyBatch(env.Signer, env.Body, env.Proof, env.Sig)
	} else {
		err = verifyP256Cached(env.Signer, append([]byte(recordDomain), env.Body...), env.Sig)
	}
	if err != nil {
		return fmt.Errorf("record of %s: %w", reg.AOR, err)
	}
	p.sigOK.Store(true)
	return nil
}

func (v *Validator) certifiedDevice(reg *Registration, key []byte) bool {
	for _, c := range reg.Devices {
		if bytes.Equal(c.Key, key) && time.Unix(c.Expires, 0).After(v.now()) {
			return true
		}
	}
	return false
}

// checkOwnerLock refuses a record of another owner while this node holds a
// live (or held) record for the AOR.
func (v *Validator) checkOwnerLock(key string, reg *Registration) error {
	if v.Local == nil {
		return nil
	}
	stored := v.Local(key)
	if stored == nil {
		return nil
	}
	p, err := parsedRegs.decode(stored)
	if err != nil {
		return nil
	}
	return v.ownerLock(p.reg, reg)
}

// ownerLock refuses reg when cur, the record this node stores for the
// AOR, belongs to another owner whose hold has not lapsed.
func (v *Validator) ownerLock(cur, reg *Registration) error {
	if bytes.Equal(cur.Owner, reg.Owner) {
		return nil
	}
	if v.now().After(cur.ExpiresAt().Add(v.Hold)) {
		return nil // the old owner's hold has lapsed: the AOR is free
	}
	return fmt.Errorf("%w: %s", ErrAORHeld, reg.AOR)
}

// ValidateService checks a service entry: the key names the service and
// the writer's peer ID, and the entry is signed by that peer's key, so no
// node can overwrite another's entry.
func (v *Validator) ValidateService(key string, value []byte) (*ServiceEntry, error) {
	e, env, err := ParseServiceEntry(value)
	if err != nil {
		return nil, err
	}
	if !validServiceName(e.Service) || key != ServiceKey(e.Service, e.Node) {
		return nil, fmt.Errorf("%w: key %q does not match service %q of %q", ErrBadRecord, key, e.Service, e.Node)
	}
	if env.Alg != AlgLibp2p || env.Proof != nil {
		return nil, fmt.Errorf("%w: service entry signed with %q", ErrBadSignature, env.Alg)
	}
	pub, err := crypto.UnmarshalPublicKey(env.Signer)
	if err != nil {
		return nil, fmt.Errorf("%w: signer key: %v", ErrBadSignature, err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil || id.String() != e.Node {
		return nil, fmt.Errorf("%w: entry of %s signed by another node", ErrNotOwner, e.Node)
	}
	ok, err := pub.Verify(append([]byte(recordDomain), env.Body...), env.Sig)
	if err != nil || !ok {
		return nil, fmt.Errorf("service entry of %s: %w", e.Node, ErrBadSignature)
	}
	now := v.now()
	if now.After(time.Unix(e.Expires, 0)) {
		return nil, fmt.Errorf("%w: service entry of %s", ErrExpired, e.Node)
	}
	if time.Unix(e.Expires, 0).After(now.Add(v.MaxTTL + maxClockSkew)) {
		return nil, fmt.Errorf("%w: expiry more than %s ahead", ErrBadRecord, v.MaxTTL)
	}
	return e, nil
}

// Select implements record.Validator: it picks the best of several valid
// values for one key. Same owner: the higher sequence number, then the
// later expiry. Different owners (nodes disagree, e.g. after a partition):
// the earlier claim, then the smaller owner key, so that every node picks
// the same one. Identical values tie in favour of index 0, so that a
// republish of the stored value is accepted.
func (v *Validator) Select(key string, values [][]byte) (int, error) {
	if len(values) == 0 {
		return 0, fmt.Errorf("%w: nothing to select", ErrBadRecord)
	}
	best := -1
	var bestRank rank
	for i, val := range values {
		r, ok := v.rankOf(key, val)
		if !ok {
			continue
		}
		if best < 0 || r.better(bestRank) {
			best, bestRank = i, r
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid value for %q", ErrBadRecord, key)
	}
	return best, nil
}

type rank struct {
	owner            []byte
	seq              uint64
	created, expires int64
}

func (v *Validator) rankOf(key string, val []byte) (rank, bool) {
	if strings.HasPrefix(key, svcKeyPrefix) {
		e, _, err := ParseServiceEntry(val)
		if err != nil {
			return rank{}, false
		}
		return rank{seq: e.Seq, expires: e.Expires}, true
	}
	p, err := parsedRegs.decode(val)
	if err != nil {
		return rank{}, false
	}
	return regRank(p.reg), true
}

func regRank(reg *Registration) rank {
	return rank{owner: reg.Owner, seq: reg.Seq, created: reg.Created, expires: reg.Expires}
}

// better reports whether r strictly beats o.
func (r rank) better(o rank) bool {
	if !bytes.Equal(r.owner, o.owner) {
		if r.created != o.created {
			return r.created < o.created
		}
		return bytes.Compare(r.owner, o.owner) < 0
	}
	if r.seq != o.seq {
		return r.seq > o.seq
	}
	return r.expires > o.expires
}

// peerIDCache remembers strings that decoded as peer IDs. Every binding
// names the node that hosts it, nearly always one of a handful of nodes,
// and base58-decoding that ID on every write was a tenth of a lone peer's
// REGISTER. Whether a string is a peer ID depends on the string alone, so
// a remembered answer holds; failures are not remembered, so garbage a
// peer sends cannot fill the cache, and valid IDs that churn it only cost
// decodings.
type peerIDCache struct {
	mu sync.Mutex
	ok map[string]struct{} // guarded by mu
}

// peerIDCacheSize bounds the cache; when full it starts over.
const peerIDCacheSize = 1024

var validPeerIDs = &peerIDCache{ok: map[string]struct{}{}}

// check returns peer.Decode's error for id, nil when id is a peer ID.
func (c *peerIDCache) check(id string) error {
	c.mu.Lock()
	_, ok := c.ok[id]
	c.mu.Unlock()
	if ok {
		return nil
	}
	if _, err := peer.Decode(id); err != nil {
		return err
	}
	c.mu.Lock()
	if len(c.ok) >= peerIDCacheSize {
		clear(c.ok)
	}
	c.ok[id] = struct{}{}
	c.mu.Unlock()
	return nil
}

package overlay

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// parsedReg is a registration value decoded once. A value is validated
// several times on one write (the writer's PutValue, the value store's
// Put, the owner lock, Select) and on every lookup; the JSON decoding of
// the same bytes, and the parts of the validation that depend on nothing
// but those bytes, are done once. Nothing in it may be modified.
type parsedReg struct {
	reg *Registration
	env *Envelope
	// sigOK: env.Sig is a valid signature of env.Signer over recordDomain ‖
	// env.Body. A pure function of the bytes, so it holds for every node.
	sigOK atomic.Bool
	// bodyFor is the overlay name for which the time-independent body
	// checks passed ("" when not yet checked).
	bodyFor atomic.Pointer[string]
}

// regCache maps registration values (the exact bytes) to their decoding.
// FIFO eviction; a hit costs one map lookup of the value's bytes.
type regCache struct {
	mu    sync.Mutex
	m     map[string]*parsedReg // guarded by mu
	order []string              // guarded by mu
}

const regCacheSize = 4096

var parsedRegs = &regCache{m: map[string]*parsedReg{}}

// parse returns the cached decoding of value, decoding it on a miss.
// Values that do not decode are not cached.
func (c *regCache) parse(value []byte) (*parsedReg, error) {
	c.mu.Lock()
	p := c.m[string(value)]
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	reg, env, err := ParseRegistration(value)
	if err != nil {
		return nil, err
	}
	return c.add(value, &parsedReg{reg: reg, env: env}), nil
}

// add caches p as the decoding of value, unless one is cached already,
// and returns the cached one.
func (c *regCache) add(value []byte, p *parsedReg) *parsedReg {
	key := string(value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[key]; old != nil {
		return old
	}
	if len(c.order) >= regCacheSize {
		delete(c.m, c.order[0])
		c.order[0] = ""
		c.order = c.order[1:]
	}
	c.m[key] = p
	c.order = append(c.order, key)
	return p
}

// trustSigned records the decoding of a value this process just signed
// with a local key (*P256Key): reg and env are what signRegistration
// encoded, so the value's signature is not verified again and its JSON is
// not decoded again (the node knows what it signed). The decoding is
// taken from reg only where encoding/json's round trip is exact (every
// string valid UTF-8: Marshal replaces invalid bytes); otherwise the
// value is decoded. Values signed by any other Signer (a browser's key)
// are decoded and verified as usual when validated.
func trustSigned(value []byte, env *Envelope, reg *Registration, s Signer) {
	if _, ok := s.(*P256Key); !ok || !bytes.Equal(env.Signer, s.PublicKey()) {
		return
	}
	if !roundTrips(reg) {
		if p, err := parsedRegs.parse(value); err == nil {
			p.sigOK.Store(true)
		}
		return
	}
	e := *env
	e.Body, e.Signer, e.Sig = slices.Clone(e.Body), slices.Clone(e.Signer), slices.Clone(e.Sig)
	p := &parsedReg{reg: reg.clone(), env: &e}
	p.sigOK.Store(true)
	parsedRegs.add(value, p)
}

// roundTrips reports whether decoding reg's JSON gives back reg (up to
// nil versus empty slices, which no reader tells apart).
func roundTrips(reg *Registration) bool {
	if !utf8.ValidString(reg.AOR) {
		return false
	}
	for _, b := range reg.Bindings {
		if !utf8.ValidString(b.Instance) || !utf8.ValidString(b.Node) || !utf8.ValidString(b.Contact) {
			return false
		}
		for _, p := range b.Path {
			if !utf8.ValidString(p) {
				return false
			}
		}
	}
	return true
}

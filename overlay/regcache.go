package overlay

import (
	"bytes"
	"sync"
	"sync/atomic"
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
	p = &parsedReg{reg: reg, env: env}
	key := string(value)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[key]; old != nil {
		return old, nil
	}
	if len(c.order) >= regCacheSize {
		delete(c.m, c.order[0])
		c.order[0] = ""
		c.order = c.order[1:]
	}
	c.m[key] = p
	c.order = append(c.order, key)
	return p, nil
}

// trustSigned records that value carries a signature this process just
// made with a local key (*P256Key), so that validating it again skips the
// ECDSA verification: the node already knows what it signed. Values signed
// by any other Signer (a browser's key) are verified as usual.
func trustSigned(value []byte, s Signer) {
	if _, ok := s.(*P256Key); !ok {
		return
	}
	if p, err := parsedRegs.parse(value); err == nil && bytes.Equal(p.env.Signer, s.PublicKey()) {
		p.sigOK.Store(true)
	}
}

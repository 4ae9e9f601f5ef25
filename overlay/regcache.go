package overlay

import (
	"bytes"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"
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
	// env.Body, or for a batch record over the root env.Proof leads to. A
	// pure function of the bytes, so it holds for every node.
	sigOK atomic.Bool
	// bodyFor is the overlay name for which the time-independent body
	// checks passed ("" when not yet checked).
	bodyFor atomic.Pointer[string]
	// size is the estimated bytes the entry retains; set by regCache.add
	// before the entry is shared.
	size int
}

// regCache maps registration values (the exact bytes) to their decoding.
// Only values that passed the shape and signature checks are added (see
// validRegistration), so what a peer can make this node keep is bounded by
// what it can sign within maxBindings/maxDevices, and the cache is bounded
// in bytes as well as in entries. FIFO eviction; a hit costs one map
// lookup of the value's bytes.
type regCache struct {
	mu    sync.Mutex
	m     map[string]*parsedReg // guarded by mu
	order []string              // guarded by mu
	bytes int                   // guarded by mu: the sum of size over m
}

const (
	regCacheSize = 4096
	// regCacheBytes bounds the cache's estimated size. A record with one
	// binding takes ~1.7 KiB, so for such records the count binds first; a
	// valid record of maxRecordBytes takes at most ~30 KiB.
	regCacheBytes = 8 << 20
)

var parsedRegs = &regCache{m: map[string]*parsedReg{}}

// get returns the cached decoding of value, or nil.
func (c *regCache) get(value []byte) *parsedReg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[string(value)]
}

// decode returns the cached decoding of value, or decodes it without
// caching it: a value is cached only once it validated.
func (c *regCache) decode(value []byte) (*parsedReg, error) {
	if p := c.get(value); p != nil {
		return p, nil
	}
	reg, env, err := ParseRegistration(value)
	if err != nil {
		return nil, err
	}
	return &parsedReg{reg: reg, env: env}, nil
}

// decodeStored is decode for a value this node stores, which was
// validated when it was stored: a decoding not cached yet is cached, so
// that the write that usually follows the read of a stored value (a
// refresh: Register reads the record, storeAlone selects against it)
// decodes it once. value must be the stored bytes, which nobody changes.
func (c *regCache) decodeStored(value []byte) (*parsedReg, error) {
	p, err := c.decode(value)
	if err != nil || p.sigOK.Load() {
		return p, err // cached (every cached decoding has its signature checked)
	}
	p.sigOK.Store(true) // validated when it was stored
	return c.addOwned(value, p), nil
}

// add caches p as the decoding of value, unless one is cached already,
// and returns the cached one (p itself when it is not cached). The oldest
// entries make room; a decoding larger than the whole cache is not kept.
func (c *regCache) add(value []byte, p *parsedReg) *parsedReg {
	return c.addKey(string(value), p)
}

// addOwned is add for a value that nobody changes afterwards (this node
// signed it and keeps it as it is): the cache keys it by the value's own
// bytes rather than a copy of them.
func (c *regCache) addOwned(value []byte, p *parsedReg) *parsedReg {
	return c.addKey(unsafe.String(unsafe.SliceData(value), len(value)), p)
}

func (c *regCache) addKey(key string, p *parsedReg) *parsedReg {
	size := p.estimateSize(len(key))
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[key]; old != nil {
		return old
	}
	if size > regCacheBytes {
		return p
	}
	for len(c.order) > 0 && (len(c.order) >= regCacheSize || c.bytes+size > regCacheBytes) {
		c.bytes -= c.m[c.order[0]].size
		delete(c.m, c.order[0])
		c.order[0] = ""
		c.order = c.order[1:]
	}
	p.size = size
	c.m[key] = p
	c.order = append(c.order, key)
	c.bytes += size
	return p
}

// estimateSize estimates the bytes a cache entry for p retains: the key
// (keyLen bytes, shared by the map and the FIFO), the decoding's structs,
// slices and strings, and the bookkeeping around them.
func (p *parsedReg) estimateSize(keyLen int) int {
	const entry = 64 // map slot, FIFO slot, allocation rounding
	n := keyLen + entry + int(unsafe.Sizeof(parsedReg{})+unsafe.Sizeof(Registration{})+unsafe.Sizeof(Envelope{})+unsafe.Sizeof(""))
	if e := p.env; e != nil {
		n += len(e.Alg) + cap(e.Body) + cap(e.Signer) + cap(e.Sig)
		if pr := e.Proof; pr != nil {
			n += int(unsafe.Sizeof(BatchProof{})) + cap(pr.Path)*int(unsafe.Sizeof([]byte(nil)))
			for _, h := range pr.Path {
				n += cap(h)
			}
		}
	}
	r := p.reg
	if r == nil {
		return n
	}
	n += len(r.AOR) + cap(r.Owner)
	n += cap(r.Devices) * int(unsafe.Sizeof(DeviceCert{}))
	for _, d := range r.Devices {
		n += cap(d.Owner) + cap(d.Key) + cap(d.Sig)
	}
	n += cap(r.Bindings) * int(unsafe.Sizeof(Binding{}))
	for _, b := range r.Bindings {
		n += len(b.Instance) + len(b.Node) + len(b.Contact) + cap(b.Path)*int(unsafe.Sizeof(""))
		for _, s := range b.Path {
			n += len(s)
		}
	}
	return n
}

// trustSigned records the decoding of a value this process just signed
// with a local key (*P256Key): reg and env are what signRegistration
// encoded, so the value's signature is not verified again and its JSON is
// not decoded again (the node knows what it signed). The decoding is
// taken from reg only where encoding/json's round trip is exact (every
// string valid UTF-8: Marshal replaces invalid bytes); otherwise the
// value is decoded. Values signed by any other Signer (a browser's key)
// are decoded and verified as usual when validated.
//
// value and env become the cache's: the caller must not change them
// afterwards. Neither is copied: publish stores and keeps value as it is,
// and signRegistration made env for this value alone (Body and Sig are
// fresh, Signer is the key's, which nobody changes; a batch's Sig and the
// arrays behind its proofs are shared by its records, read-only too). reg
// is copied: Register hands it to its caller.
func trustSigned(value []byte, env *Envelope, reg *Registration, s Signer) {
	if p := signedDecoding(value, env, reg, s); p != nil {
		parsedRegs.addOwned(value, p)
	}
}

// signedDecoding is the decoding trustSigned caches, for a caller that
// uses it at once instead (a lone peer's store, see storeAlone); nil when
// s is not a local key. The same rules apply to value and env.
func signedDecoding(value []byte, env *Envelope, reg *Registration, s Signer) *parsedReg {
	if _, ok := s.(*P256Key); !ok || !bytes.Equal(env.Signer, s.PublicKey()) {
		return nil
	}
	var p *parsedReg
	if roundTrips(reg) {
		p = &parsedReg{reg: cloneForCache(reg), env: env}
	} else {
		reg, env, err := ParseRegistration(value)
		if err != nil {
			return nil
		}
		p = &parsedReg{reg: reg, env: env}
	}
	p.sigOK.Store(true)
	return p
}

// cloneForCache is reg.clone() in one allocation rather than four for
// the record a REGISTER load signs: a phone's, one binding with at most
// one Path entry, no device certificates and a P-256 owner key.
func cloneForCache(reg *Registration) *Registration {
	if reg.Devices != nil || len(reg.Bindings) != 1 || len(reg.Bindings[0].Path) > 1 || len(reg.Owner) > p256PointLen {
		return reg.clone()
	}
	blk := new(struct {
		reg   Registration
		bind  [1]Binding
		path  [1]string
		owner [p256PointLen]byte
	})
	blk.reg = *reg
	if reg.Owner != nil {
		blk.reg.Owner = blk.owner[:copy(blk.owner[:], reg.Owner):len(reg.Owner)]
	}
	blk.bind[0] = reg.Bindings[0]
	blk.reg.Bindings = blk.bind[:]
	if p := reg.Bindings[0].Path; p != nil {
		blk.bind[0].Path = blk.path[:copy(blk.path[:], p):len(p)]
	}
	return &blk.reg
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

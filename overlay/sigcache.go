package overlay

import (
	"crypto/sha256"
	"sync"
)

// sigCache remembers signatures that verified. A record is checked many
// times on its way (by the writer's put, by each storing node, by every
// reader, again on republish); ECDSA verification dominates a REGISTER's
// CPU time, and the answer for the same bytes never changes.
type sigCache struct {
	mu    sync.Mutex
	limit int                   // entries kept at most
	seen  map[[32]byte]struct{} // guarded by mu
	order [][32]byte            // guarded by mu; FIFO eviction
}

const sigCacheSize = 8192

var verified = newSigCache(sigCacheSize)

func newSigCache(limit int) *sigCache {
	return &sigCache{limit: limit, seen: map[[32]byte]struct{}{}}
}

func sigKey(pub, msg, sig []byte) [32]byte {
	h := sha256.New()
	for _, b := range [][]byte{pub, msg, sig} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
		h.Write(n[:])
		h.Write(b)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *sigCache) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[k]
	return ok
}

func (c *sigCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[k]; ok {
		return
	}
	if len(c.order) >= c.limit {
		delete(c.seen, c.order[0])
		c.order = c.order[1:]
	}
	c.seen[k] = struct{}{}
	c.order = append(c.order, k)
}

// verifyP256Cached is verifyP256 with the cache in front.
func verifyP256Cached(pub, msg, sig []byte) error {
	k := sigKey(pub, msg, sig)
	if verified.has(k) {
		return nil
	}
	if err := verifyP256(pub, msg, sig); err != nil {
		return err
	}
	verified.add(k)
	return nil
}

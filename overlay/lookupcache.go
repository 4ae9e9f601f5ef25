package overlay

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"time"
	"unsafe"

	ds "github.com/ipfs/go-datastore"
)

// lookupCache keeps the records Lookup found for a short while, so that a
// burst of calls to one AOR costs one DHT query, not one each. Any write
// of the AOR's record through this node (its own registrations, and every
// value another peer stores here) drops the entry at once; a write that
// reaches only other peers shows after at most the TTL, the same
// staleness a Kademlia lookup settling at a quorum already allows.
// Register and Unregister never read through it: they build on the
// overlay's newest record.
//
// An entry past half its TTL is still served, and the first get that
// finds it so asks its caller to refresh it in the background (refresh
// ahead). Without that, every call that arrived while the entry was
// being fetched again waited for a DHT query once per TTL: at 1000 calls
// a second to one AOR that was a burst of calls each second held for the
// query's few milliseconds, which showed in a peer hop's p99
// (bench/README.md, "Two periodic stalls in a peer").
// The staleness bound is unchanged: no entry is served past its TTL.
type lookupCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]lookupEntry // guarded by mu; by canonical AOR
	// gens counts the drops per stripe of AORs (guarded by mu): a lookup
	// that raced with a write must not put what it read before the write.
	gens [64]uint64
}

type lookupEntry struct {
	p          *parsedReg
	at         time.Time
	refreshing bool // a get has asked for a refresh of this entry
}

const lookupCacheMax = 16384

func newLookupCache(ttl time.Duration) *lookupCache {
	return &lookupCache{ttl: ttl, m: map[string]lookupEntry{}}
}

// get returns the entry of aor, nil if there is none within its TTL.
// refresh is true for the first get past half the TTL: that caller
// should fetch the record again and put it.
func (c *lookupCache) get(aor string, now time.Time) (p *parsedReg, refresh bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[aor]
	if !ok {
		return nil, false
	}
	age := now.Sub(e.at)
	if age >= c.ttl || now.Before(e.at) {
		delete(c.m, aor)
		return nil, false
	}
	if age >= c.ttl/2 && !e.refreshing {
		e.refreshing = true
		c.m[aor] = e
		return e.p, true
	}
	return e.p, false
}

func stripe(aor string) int { return stripeBytes(unsafe.Slice(unsafe.StringData(aor), len(aor))) }

func stripeBytes(aor []byte) int {
	h := uint32(2166136261) // FNV-1a
	for _, c := range aor {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % 64)
}

// gen returns the write generation of aor; take it before reading the
// record that put will store.
func (c *lookupCache) gen(aor string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[stripe(aor)]
}

// put stores p, read at time at, unless aor was written since gen.
func (c *lookupCache) put(aor string, p *parsedReg, at time.Time, gen uint64) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[stripe(aor)] != gen {
		return
	}
	if len(c.m) >= lookupCacheMax {
		for k, e := range c.m { // drop what has lapsed; if nothing has, start over
			if at.Sub(e.at) >= c.ttl {
				delete(c.m, k)
			}
		}
		if len(c.m) >= lookupCacheMax {
			clear(c.m)
		}
	}
	c.m[aor] = lookupEntry{p: p, at: at}
}

// forget drops the entry of aor after a refresh found no record, unless
// aor was written since gen.
func (c *lookupCache) forget(aor string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[stripe(aor)] == gen {
		delete(c.m, aor)
	}
}

func (c *lookupCache) drop(aor string) {
	c.mu.Lock()
	delete(c.m, aor)
	c.gens[stripe(aor)]++
	c.mu.Unlock()
}

// dropKey drops the entry of a datastore key of go-libp2p-kad-dht's value
// layout (/<namespace>/<base32 DHT key>, see Node.localValue).
// Every write of the datastore comes here, so the key is decoded into a
// buffer on the stack rather than by go-base32, which allocates twice.
func (c *lookupCache) dropKey(k ds.Key) {
	enc, ok := strings.CutPrefix(k.String(), "/"+keyNamespace+"/")
	if !ok {
		return
	}
	var buf [256]byte
	key, ok := appendBase32(buf[:0], enc)
	if !ok {
		return
	}
	if aor, ok := bytes.CutPrefix(key, []byte(regKeyPrefix)); ok {
		c.dropBytes(aor)
	}
}

// appendBase32 appends the decoding of unpadded RFC 4648 base32, the
// encoding of the DHT's datastore keys, to dst. It is lax about the bits
// that the last character leaves over: a key decoded wrongly only drops a
// cache entry that was not there.
func appendBase32(dst []byte, enc string) ([]byte, bool) {
	var acc, bits uint
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c -= 'A'
		case c >= '2' && c <= '7':
			c = c - '2' + 26
		default:
			return nil, false
		}
		acc, bits = acc<<5|uint(c), bits+5
		if bits >= 8 {
			bits -= 8
			dst = append(dst, byte(acc>>bits))
		}
	}
	return dst, true
}

// dropBytes is drop of an AOR given as bytes, without a string of it.
func (c *lookupCache) dropBytes(aor []byte) {
	c.mu.Lock()
	delete(c.m, string(aor))
	c.gens[stripeBytes(aor)]++
	c.mu.Unlock()
}

// notifyStore is the DHT's datastore; it tells the lookup cache about
// every value written or removed, whoever wrote it.
type notifyStore struct {
	ds.Batching
	changed func(ds.Key)
}

func (s *notifyStore) Put(ctx context.Context, k ds.Key, value []byte) error {
	err := s.Batching.Put(ctx, k, value)
	s.changed(k)
	return err
}

func (s *notifyStore) Delete(ctx context.Context, k ds.Key) error {
	err := s.Batching.Delete(ctx, k)
	s.changed(k)
	return err
}

func (s *notifyStore) Batch(ctx context.Context) (ds.Batch, error) {
	b, err := s.Batching.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &notifyBatch{Batch: b, changed: s.changed}, nil
}

type notifyBatch struct {
	ds.Batch
	changed func(ds.Key)
	keys    []ds.Key
}

func (b *notifyBatch) Put(ctx context.Context, k ds.Key, value []byte) error {
	b.keys = append(b.keys, k)
	return b.Batch.Put(ctx, k, value)
}

func (b *notifyBatch) Delete(ctx context.Context, k ds.Key) error {
	b.keys = append(b.keys, k)
	return b.Batch.Delete(ctx, k)
}

func (b *notifyBatch) Commit(ctx context.Context) error {
	err := b.Batch.Commit(ctx)
	for _, k := range b.keys {
		b.changed(k)
	}
	b.keys = nil
	return err
}

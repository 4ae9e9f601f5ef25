package overlay

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	ds "github.com/ipfs/go-datastore"
	"github.com/multiformats/go-base32"
	"google.golang.org/protobuf/encoding/protowire"
)

// The node's values live in the DHT's datastore under go-libp2p-kad-dht's
// layout: the key /<namespace>/<base32 of the DHT key>, and the value a
// go-libp2p-record pb.Record {key = 1, value = 2, timeReceived = 5}, the
// receive time in RFC 3339 with nanoseconds, UTC. The DHT serves and
// ages what a lone peer stores (storeAlone) because it is stored in that
// layout; the owner-lock tests and TestStoreAloneAsValueStore fail if the
// layout ever changes. Reading and writing it here rather than through
// proto.Unmarshal, proto.Clone and proto.Marshal keeps a REGISTER from
// copying its record three more times.
const (
	pbRecordKey          = 1
	pbRecordValue        = 2
	pbRecordTimeReceived = 5
)

// storeKey returns the datastore key of a DHT key in one allocation.
func storeKey(key string) ds.Key {
	const prefix = "/" + keyNamespace + "/"
	buf := make([]byte, len(prefix)+base32.RawStdEncoding.EncodedLen(len(key)))
	copy(buf, prefix)
	base32.RawStdEncoding.Encode(buf[len(prefix):], unsafe.Slice(unsafe.StringData(key), len(key)))
	// buf is not changed after this, so the key may share its bytes.
	// RawKey: the key is clean already (base32 has no '/'); NewKey would
	// clean it again.
	return ds.RawKey(unsafe.String(unsafe.SliceData(buf), len(buf)))
}

// parseStored returns the key and value fields of a stored record, as
// proto.Unmarshal would read them (the last occurrence of a field wins,
// unknown fields are skipped, the receive time must be UTF-8). They alias
// buf.
func parseStored(buf []byte) (key, value []byte, ok bool) {
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return nil, nil, false
		}
		buf = buf[n:]
		if typ != protowire.BytesType || (num != pbRecordKey && num != pbRecordValue && num != pbRecordTimeReceived) {
			if n = protowire.ConsumeFieldValue(num, typ, buf); n < 0 {
				return nil, nil, false
			}
			buf = buf[n:]
			continue
		}
		b, n := protowire.ConsumeBytes(buf)
		if n < 0 {
			return nil, nil, false
		}
		buf = buf[n:]
		switch num {
		case pbRecordKey:
			key = b
		case pbRecordValue:
			value = b
		default:
			if !utf8.Valid(b) {
				return nil, nil, false
			}
		}
	}
	return key, value, true
}

// encodeStored encodes the record the DHT's value store would store for
// key and value received at t (proto.Marshal's bytes: fields in order,
// empty ones left out).
func encodeStored(key string, value []byte, t time.Time) []byte {
	out, _ := encodeStoredValue(key, value, t)
	return out
}

// encodeStoredValue is encodeStored that also returns the value's bytes
// within the record, so that a caller may keep those rather than a copy.
func encodeStoredValue(key string, value []byte, t time.Time) (out, stored []byte) {
	var stamp [64]byte
	ts := t.UTC().AppendFormat(stamp[:0], time.RFC3339Nano)
	size := 0
	for _, n := range []int{len(key), len(value), len(ts)} {
		if n > 0 {
			size += 1 + protowire.SizeBytes(n)
		}
	}
	out = make([]byte, 0, size)
	if len(key) > 0 {
		out = protowire.AppendTag(out, pbRecordKey, protowire.BytesType)
		out = protowire.AppendString(out, key)
	}
	if len(value) > 0 {
		out = protowire.AppendTag(out, pbRecordValue, protowire.BytesType)
		out = protowire.AppendBytes(out, value)
		stored = out[len(out)-len(value) : len(out) : len(out)]
	}
	out = protowire.AppendTag(out, pbRecordTimeReceived, protowire.BytesType)
	return protowire.AppendBytes(out, ts), stored
}

// localValue returns the value this node stores for key. It aliases the
// stored bytes, which nobody changes (every write stores fresh bytes):
// read it, never modify it.
func (n *Node) localValue(key string) []byte {
	return n.storedValue(storeKey(key), key)
}

func (n *Node) storedValue(dskey ds.Key, key string) []byte {
	buf, err := n.store.Get(context.Background(), dskey)
	if err != nil {
		return nil
	}
	k, v, ok := parseStored(buf)
	if !ok || string(k) != key {
		return nil
	}
	return v
}

// storeAlone is what the DHT's value store does with a PUT, for a node
// without peers (see putAlone): validate the value, select it against
// the valid value stored already, stamp the receive time and store it.
// Writes of one key are serialised so that a concurrent one cannot
// overwrite a better value. It returns ErrStale when the stored value is
// at least as good.
//
// signed is value's decoding when this node has just signed value with a
// local key (see signedDecoding), else nil: then its JSON is not decoded
// again nor its signature verified. The stored value is trusted as it
// was validated when stored (Validator.storedRegistration); a refresh of
// a record out of every cache would otherwise decode it three times and
// verify its signature once more.
//
// It returns the value's bytes as stored, which the caller may keep
// instead of value (read them, never modify them).
func (n *Node) storeAlone(ctx context.Context, key string, value []byte, signed *parsedReg) ([]byte, error) {
	mu := &n.storeLocks[stripe(key)]
	mu.Lock()
	defer mu.Unlock()
	dskey := storeKey(key)
	if !strings.HasPrefix(key, regKeyPrefix) {
		return value, n.storeServiceAlone(ctx, key, dskey, value)
	}
	// Validated under the key's lock: the owner lock checks the stored
	// value, which a write that held the lock may just have replaced.
	p := signed
	if p == nil {
		var err error
		if p, err = n.valid.validEntry(key, value); err != nil {
			return nil, fmt.Errorf("validating record: %w", err)
		}
	} else if err := n.valid.checkParsed(key, p); err != nil {
		return nil, fmt.Errorf("validating record: %w", err)
	}
	if old := n.storedValue(dskey, key); old != nil {
		cur, valid := n.valid.storedRegistration(key, old)
		if cur != nil {
			if err := n.valid.ownerLock(cur.reg, p.reg); err != nil {
				return nil, fmt.Errorf("validating record: %w", err)
			}
		}
		// Select's rule: the new value wins unless the stored one is
		// strictly better (a republish of the same value is taken). As
		// the value store does, a stored value that is no longer valid
		// (expired past its hold) counts as absent.
		if valid && regRank(cur.reg).better(regRank(p.reg)) {
			return nil, fmt.Errorf("%w: this node stores a newer value", ErrStale)
		}
	}
	out, stored := encodeStoredValue(key, value, time.Now())
	if err := n.store.Put(ctx, dskey, out); err != nil {
		return nil, err
	}
	return stored, nil
}

// storeServiceAlone is storeAlone for a service entry (key's lock held).
func (n *Node) storeServiceAlone(ctx context.Context, key string, dskey ds.Key, value []byte) error {
	if err := n.valid.Validate(key, value); err != nil {
		return fmt.Errorf("validating record: %w", err)
	}
	if old := n.storedValue(dskey, key); old != nil && n.valid.Validate(key, old) == nil {
		best, err := n.valid.Select(key, [][]byte{value, old})
		if err != nil {
			return fmt.Errorf("selecting record: %w", err)
		}
		if best != 0 {
			return fmt.Errorf("%w: this node stores a newer value", ErrStale)
		}
	}
	return n.store.Put(ctx, dskey, encodeStored(key, value, time.Now()))
}

package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestStoreAloneAsValueStore: what a lone peer stores is what the DHT's
// value store would have stored (the same datastore key and record bytes
// but for the receive time), and the DHT's value store reads it back.
func TestStoreAloneAsValueStore(t *testing.T) {
	n := loneNode(t)
	owner := mustKey(t)
	reg := sampleReg(t, owner)
	stamp := time.Now().UnixNano()
	reg.AOR = fmt.Sprintf("sip:layout%d@test.overlay", stamp)
	key := RegistrationKey(reg.AOR)
	value := sign(t, reg, owner)
	stored, err := n.storeAlone(context.Background(), key, value, nil)
	if err != nil || !bytes.Equal(stored, value) {
		t.Fatalf("storeAlone kept %q, %v; want the value", stored, err)
	}

	vs := records.NewValueStore(n.store, record.NamespacedValidator{keyNamespace: n.valid}, time.Hour)
	got, err := vs.Get(context.Background(), key)
	if err != nil || got == nil {
		t.Fatalf("the DHT's value store does not find the value: %v, %v", got, err)
	}
	if string(got.GetKey()) != key || !bytes.Equal(got.GetValue(), value) {
		t.Fatal("the DHT's value store reads another record")
	}
	mine, err := n.store.Get(context.Background(), storeKey(key))
	if err != nil {
		t.Fatal(err)
	}

	// The value store's own write of the same value, in a fresh datastore
	// key (a new AOR), lands under the key storeKey computes, with the
	// same bytes once the receive time is equal.
	reg.AOR = fmt.Sprintf("sip:layout%dx@test.overlay", stamp)
	key2 := RegistrationKey(reg.AOR)
	value2 := sign(t, reg, owner)
	if err := vs.Put(context.Background(), key2, record.MakePutRecord(key2, value2)); err != nil {
		t.Fatal(err)
	}
	theirs, err := n.store.Get(context.Background(), storeKey(key2))
	if err != nil {
		t.Fatalf("the value store's write is not under storeKey: %v", err)
	}
	var rec recpb.Record
	if err := proto.Unmarshal(theirs, &rec); err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(time.RFC3339Nano, rec.GetTimeReceived())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeStored(key2, value2, at), theirs) {
		t.Fatal("encodeStored differs from the value store's record")
	}
	if err := proto.Unmarshal(mine, &rec); err != nil || string(rec.GetKey()) != key || !bytes.Equal(rec.GetValue(), value) {
		t.Fatalf("the stored record does not decode as a pb.Record: %v", err)
	}
}

// TestParseStoredAsProto: parseStored reads what proto.Unmarshal reads,
// and refuses what it refuses.
func TestParseStoredAsProto(t *testing.T) {
	now := time.Date(2026, 11, 25, 17, 0, 0, 120, time.UTC)
	good := encodeStored("/sip/reg/sip:a@test.overlay", []byte("value"), now)
	unknown := protowire.AppendVarint(protowire.AppendTag(bytes.Clone(good), 3, protowire.VarintType), 7)
	again := protowire.AppendBytes(protowire.AppendTag(bytes.Clone(good), pbRecordValue, protowire.BytesType), []byte("later"))
	badTime := protowire.AppendBytes(protowire.AppendTag(nil, pbRecordTimeReceived, protowire.BytesType), []byte{0xff})
	for name, buf := range map[string][]byte{
		"good":          good,
		"unknown field": unknown,
		"field again":   again,
		"bad time":      badTime,
		"truncated":     good[:len(good)-3],
		"empty":         nil,
		"bad tag":       {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		var rec recpb.Record
		perr := proto.Unmarshal(buf, &rec)
		key, value, ok := parseStored(buf)
		if ok != (perr == nil) {
			t.Errorf("%s: parseStored ok=%v, proto.Unmarshal %v", name, ok, perr)
			continue
		}
		if ok && (!bytes.Equal(key, rec.GetKey()) || !bytes.Equal(value, rec.GetValue())) {
			t.Errorf("%s: parseStored read %q %q, proto.Unmarshal %q %q", name, key, value, rec.GetKey(), rec.GetValue())
		}
	}
}

// flushRegCache empties the shared decoding cache, as a busy peer's FIFO
// does within a fraction of a second.
func flushRegCache(t testing.TB) {
	t.Helper()
	parsedRegs.mu.Lock()
	defer parsedRegs.mu.Unlock()
	parsedRegs.m, parsedRegs.order, parsedRegs.bytes = map[string]*parsedReg{}, nil, 0
}

// TestRefreshOutOfCache: a lone peer trusts the record it stores rather
// than verifying it again, but every rule of a write still holds when
// that record is in no cache: the owner's refresh goes on from its
// sequence number, another owner is refused, and an older value is stale.
func TestRefreshOutOfCache(t *testing.T) {
	n := loneNode(t)
	owner, other := mustKey(t), mustKey(t)
	aor := fmt.Sprintf("sip:cold%d@test.overlay", time.Now().UnixNano())
	key := RegistrationKey(aor)
	first := register(t, n, aor, owner, binding("a", "sip:a@127.0.0.1", time.Hour))
	old := n.localValue(key)

	flushRegCache(t)
	second := register(t, n, aor, owner, binding("a", "sip:a2@127.0.0.1", time.Hour))
	if second.Seq != first.Seq+1 || len(second.Live(time.Now())) != 1 {
		t.Fatalf("refresh gave seq %d with %d bindings, want seq %d with 1", second.Seq, len(second.Live(time.Now())), first.Seq+1)
	}

	flushRegCache(t)
	_, err := n.Register(ctxT(t), RegisterRequest{AOR: aor, Signer: other, Binding: binding("b", "sip:b@127.0.0.1", time.Hour)})
	if !errors.Is(err, ErrAORHeld) {
		t.Fatalf("another owner's REGISTER: %v, want ErrAORHeld", err)
	}

	flushRegCache(t)
	if err := n.put(ctxT(t), key, old); !errors.Is(err, ErrStale) {
		t.Fatalf("storing the first record again: %v, want ErrStale", err)
	}
	got, err := n.Lookup(ctxT(t), aor)
	if err != nil || got.Seq != second.Seq || got.Bindings[0].Contact != "sip:a2@127.0.0.1" {
		t.Fatalf("lookup after the refused writes: %+v, %v", got, err)
	}
}

package overlay

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"
)

// isCached reports whether parsedRegs holds a decoding of value.
func isCached(value []byte) bool {
	parsedRegs.mu.Lock()
	defer parsedRegs.mu.Unlock()
	return parsedRegs.m[string(value)] != nil
}

// bloatedValue returns a registration value just under maxRecordBytes
// whose body lists as many empty device certificates as fit: it decodes,
// to a hundred times its size, and fails the shape check (maxDevices).
// seq makes each value distinct.
func bloatedValue(t testing.TB, seq int) []byte {
	t.Helper()
	sig := make([]byte, 64)
	if _, err := rand.Read(sig); err != nil {
		t.Fatal(err)
	}
	var value []byte
	for n := 1024; ; n += 16 {
		var body bytes.Buffer
		fmt.Fprintf(&body, `{"aor":"sip:bloat@test.overlay","owner":"","seq":%d,"created":0,"expires":0,"devices":[{}`, seq)
		body.WriteString(string(bytes.Repeat([]byte(",{}"), n-1)))
		body.WriteString(`],"bindings":[]}`)
		v, err := encodeEnvelope(&Envelope{Alg: AlgP256, Body: body.Bytes(), Signer: sig[:33], Sig: sig})
		if err != nil {
			if value == nil {
				t.Fatal(err)
			}
			return value
		}
		value = v
	}
}

// A peer can send any number of distinct values that decode to far more
// than their size; the validator rejects them and must not keep them.
func TestRejectedValuesAreNotCached(t *testing.T) {
	v := testValidator()
	key := RegistrationKey("sip:bloat@test.overlay")

	probe := bloatedValue(t, 0)
	reg, env, err := ParseRegistration(probe)
	if err != nil {
		t.Fatalf("bloated value does not decode: %v", err)
	}
	if est := (&parsedReg{reg: reg, env: env}).estimateSize(len(probe)); est < 10*len(probe) {
		t.Fatalf("bloated value of %d bytes decodes to only ~%d bytes; the test proves nothing", len(probe), est)
	}

	const values = 400 // ~50 MiB of decodings if kept
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range values {
		value := bloatedValue(t, i+1)
		if err := v.Validate(key, value); err == nil {
			t.Fatalf("value %d with %d devices validated", i, len(reg.Devices))
		}
		if _, err := v.Select(key, [][]byte{value}); err != nil {
			t.Fatal(err) // Select ranks values it is given; it need not reject them
		}
		if isCached(value) {
			t.Fatalf("rejected value %d is cached", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("live heap grew by %d MiB after %d rejected values", grew>>20, values)
	}

	// Well-formed values that fail the signature check are not kept either.
	owner, other := mustKey(t), mustKey(t)
	forged := sign(t, sampleReg(t, owner), other) // signer is not the owner
	tampered := sign(t, sampleReg(t, owner), owner)
	tampered = bytes.Replace(tampered, []byte(`"sig":"`), []byte(`"sig":"AAAA`), 1)
	for name, value := range map[string][]byte{"forged": forged, "tampered": tampered} {
		if err := v.Validate(RegistrationKey("sip:alice@test.overlay"), value); err == nil {
			t.Errorf("%s value validated", name)
		}
		if isCached(value) {
			t.Errorf("%s value is cached", name)
		}
	}
}

// A valid record is cached by its first validation and its decoding shared
// by the next ones.
func TestValidRecordIsCached(t *testing.T) {
	v := testValidator()
	owner := mustKey(t)
	reg := sampleReg(t, owner)
	reg.Seq = uint64(time.Now().UnixNano()) // distinct from any other test's
	value := sign(t, reg, owner)            // not trustSigned: a value from a peer
	if isCached(value) {
		t.Fatal("value cached before it was validated")
	}
	key := RegistrationKey(reg.AOR)
	p, err := v.validRegistration(key, value)
	if err != nil {
		t.Fatal(err)
	}
	if !isCached(value) {
		t.Fatal("valid record not cached")
	}
	if !p.sigOK.Load() {
		t.Error("cached record's signature not marked verified")
	}
	q, err := v.validRegistration(key, value)
	if err != nil {
		t.Fatal(err)
	}
	if q != p {
		t.Error("second validation decoded the record again")
	}
	if d, err := parsedRegs.decode(value); err != nil || d != p {
		t.Errorf("decode = %p, %v; want the cached %p", d, err, p)
	}
}

// The cache is bounded in bytes as well as in entries.
func TestRegCacheBoundedInBytes(t *testing.T) {
	c := &regCache{m: map[string]*parsedReg{}}
	big := func() *parsedReg {
		return &parsedReg{reg: &Registration{}, env: &Envelope{Body: make([]byte, 64<<10)}}
	}
	var first, last []byte
	for i := range 1000 {
		value := fmt.Appendf(nil, "value %d", i)
		if i == 0 {
			first = value
		}
		last = value
		c.add(value, big())
		if c.bytes > regCacheBytes {
			t.Fatalf("after %d entries the cache holds ~%d bytes, limit %d", i+1, c.bytes, regCacheBytes)
		}
	}
	sum := 0
	for _, p := range c.m {
		sum += p.size
	}
	if sum != c.bytes || len(c.m) != len(c.order) {
		t.Errorf("accounting: %d bytes in %d entries (%d in FIFO), counted %d", sum, len(c.m), len(c.order), c.bytes)
	}
	if c.m[string(first)] != nil || c.m[string(last)] == nil {
		t.Error("eviction is not oldest first")
	}
	if n := len(c.m); n < regCacheBytes/(70<<10) {
		t.Errorf("only %d entries of ~64 KiB kept", n)
	}

	huge := &parsedReg{reg: &Registration{}, env: &Envelope{Body: make([]byte, regCacheBytes)}}
	if c.add([]byte("huge"), huge) != huge || c.m["huge"] != nil {
		t.Error("an entry larger than the cache was kept")
	}
	if c.m[string(last)] == nil {
		t.Error("an entry too large to keep evicted the others")
	}
}

// A typical record is small enough that the entry count, not the byte
// bound, limits the cache.
func TestRegCacheTypicalEntrySize(t *testing.T) {
	owner := mustKey(t)
	value := sign(t, sampleReg(t, owner), owner)
	reg, env, err := ParseRegistration(value)
	if err != nil {
		t.Fatal(err)
	}
	est := (&parsedReg{reg: reg, env: env}).estimateSize(len(value))
	t.Logf("value %d bytes, cache entry ~%d bytes", len(value), est)
	if est*regCacheSize > regCacheBytes {
		t.Errorf("%d typical entries of ~%d bytes exceed the %d-byte bound", regCacheSize, est, regCacheBytes)
	}
}

// TestCloneForCache: the one-allocation copy is a deep copy, like clone.
func TestCloneForCache(t *testing.T) {
	owner := mustKey(t)
	for name, edit := range map[string]func(*Registration){
		"plain":    func(*Registration) {},
		"path":     func(r *Registration) { r.Bindings[0].Path = []string{"<sip:p;lr>"} },
		"empty":    func(r *Registration) { r.Bindings[0].Path = []string{} },
		"no owner": func(r *Registration) { r.Owner = nil },
		"two":      func(r *Registration) { r.Bindings = append(r.Bindings, r.Bindings[0]) },
		"devices":  func(r *Registration) { r.Devices = []DeviceCert{{Owner: []byte{1}}} },
	} {
		reg := sampleReg(t, owner)
		edit(reg)
		c := cloneForCache(reg)
		if !reflect.DeepEqual(c, reg) {
			t.Fatalf("%s: copy %+v differs from %+v", name, c, reg)
		}
		if len(c.Owner) > 0 && &c.Owner[0] == &reg.Owner[0] {
			t.Fatalf("%s: the owner key is shared", name)
		}
		if len(c.Bindings[0].Path) > 0 {
			c.Bindings[0].Path[0] = "changed"
		}
		c.Bindings[0].Contact = "changed"
		if reg.Bindings[0].Contact == "changed" || (len(reg.Bindings[0].Path) > 0 && reg.Bindings[0].Path[0] == "changed") {
			t.Fatalf("%s: changing the copy changed the record", name)
		}
	}
}

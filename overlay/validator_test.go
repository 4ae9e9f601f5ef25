package overlay

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testValidator() *Validator {
	return &Validator{Overlay: "test.overlay", Hold: time.Hour, MaxTTL: 24 * time.Hour}
}

func testNodeID(t testing.TB) string {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(priv)
	return id.String()
}

func sampleReg(t testing.TB, owner Signer) *Registration {
	now := time.Now()
	return &Registration{AOR: "sip:alice@test.overlay", Owner: owner.PublicKey(), Seq: 1, Created: now.Unix(),
		Expires: now.Add(time.Hour).Unix(), Bindings: []Binding{{Instance: "a", Node: testNodeID(t),
			Contact: "sip:alice@192.0.2.1", Expires: now.Add(time.Hour).Unix(), Q: 0.5}}}
}

func sign(t testing.TB, reg *Registration, s Signer) []byte {
	t.Helper()
	v, err := SignRegistration(reg, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidateRegistration(t *testing.T) {
	owner, other := mustKey(t), mustKey(t)
	key := RegistrationKey("sip:alice@test.overlay")
	cases := []struct {
		name string
		edit func(*Registration) Signer
		key  string
		want error
	}{
		{"valid", func(*Registration) Signer { return owner }, key, nil},
		{"signed by a stranger", func(*Registration) Signer { return other }, key, ErrNotOwner},
		{"wrong host", func(r *Registration) Signer { r.AOR = "sip:alice@evil.example"; return owner }, key, ErrWrongOverlay},
		{"key mismatch", func(*Registration) Signer { return owner }, RegistrationKey("sip:bob@test.overlay"), ErrBadRecord},
		{"not canonical", func(r *Registration) Signer { r.AOR = "SIP:alice@test.overlay"; return owner }, RegistrationKey("SIP:alice@test.overlay"), ErrBadRecord},
		{"past hold", func(r *Registration) Signer {
			r.Expires = time.Now().Add(-2 * time.Hour).Unix()
			r.Created = r.Expires - 10
			r.Bindings[0].Expires = r.Expires
			return owner
		}, key, ErrExpired},
		{"too far ahead", func(r *Registration) Signer { r.Expires = time.Now().Add(48 * time.Hour).Unix(); return owner }, key, ErrBadRecord},
		{"binding outlives record", func(r *Registration) Signer { r.Bindings[0].Expires = r.Expires + 1; return owner }, key, ErrBadRecord},
		{"q out of range", func(r *Registration) Signer { r.Bindings[0].Q = 2; return owner }, key, ErrBadRecord},
		{"bad node id", func(r *Registration) Signer { r.Bindings[0].Node = "nope"; return owner }, key, ErrBadRecord},
		{"duplicate instance", func(r *Registration) Signer { r.Bindings = append(r.Bindings, r.Bindings[0]); return owner }, key, ErrBadRecord},
		{"created in future", func(r *Registration) Signer { r.Created = time.Now().Add(time.Hour).Unix(); return owner }, key, ErrBadRecord},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := sampleReg(t, owner)
			s := c.edit(reg)
			_, err := testValidator().ValidateRegistration(c.key, sign(t, reg, s))
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestDeviceCertificates(t *testing.T) {
	owner, device, stranger := mustKey(t), mustKey(t), mustKey(t)
	aor := "sip:alice@test.overlay"
	key := RegistrationKey(aor)
	v := testValidator()
	good, _ := CertifyDevice(owner, aor, device.PublicKey(), time.Now().Add(time.Hour))
	expired, _ := CertifyDevice(owner, aor, device.PublicKey(), time.Now().Add(-time.Minute))
	forged, _ := CertifyDevice(stranger, aor, device.PublicKey(), time.Now().Add(time.Hour))
	otherAOR, _ := CertifyDevice(owner, "sip:bob@test.overlay", device.PublicKey(), time.Now().Add(time.Hour))
	for name, c := range map[string]struct {
		cert DeviceCert
		want error
	}{"good": {good, nil}, "expired": {expired, ErrNotOwner}, "forged": {forged, ErrNotOwner}, "other AOR": {otherAOR, ErrBadSignature}} {
		t.Run(name, func(t *testing.T) {
			reg := sampleReg(t, owner)
			reg.Devices = []DeviceCert{c.cert}
			_, err := v.ValidateRegistration(key, sign(t, reg, device))
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestOwnerLock(t *testing.T) {
	owner, thief := mustKey(t), mustKey(t)
	key := RegistrationKey("sip:alice@test.overlay")
	held := sampleReg(t, owner)
	held.Bindings, held.Expires = nil, time.Now().Add(-30*time.Minute).Unix() // tombstone inside the hold
	held.Created = held.Expires
	stored := sign(t, held, owner)
	v := testValidator()
	v.Local = func(string) []byte { return stored }
	if _, err := v.ValidateRegistration(key, sign(t, sampleReg(t, thief), thief)); !errors.Is(err, ErrAORHeld) {
		t.Fatalf("thief: %v, want ErrAORHeld", err)
	}
	if _, err := v.ValidateRegistration(key, sign(t, sampleReg(t, owner), owner)); err != nil {
		t.Fatalf("owner: %v", err)
	}
	v.Now = func() time.Time { return time.Now().Add(31 * time.Minute) } // hold lapsed
	if _, err := v.ValidateRegistration(key, sign(t, sampleReg(t, thief), thief)); err != nil {
		t.Fatalf("after the hold: %v", err)
	}
}

func TestSelect(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	key := RegistrationKey("sip:alice@test.overlay")
	v := testValidator()
	r1 := sampleReg(t, a)
	r2 := *r1
	r2.Seq = 2
	v1, v2 := sign(t, r1, a), sign(t, &r2, a)
	if i, _ := v.Select(key, [][]byte{v1, v2}); i != 1 {
		t.Fatalf("higher seq should win, got %d", i)
	}
	if i, _ := v.Select(key, [][]byte{v1, v1}); i != 0 {
		t.Fatalf("identical values must tie to index 0 (republish), got %d", i)
	}
	rb := sampleReg(t, b)
	rb.Created, rb.Seq = r1.Created-100, 1
	if i, _ := v.Select(key, [][]byte{v2, sign(t, rb, b)}); i != 1 {
		t.Fatalf("earlier claim should win across owners, got %d", i)
	}
	if _, err := v.Select(key, [][]byte{[]byte("junk")}); err == nil {
		t.Fatal("select of junk must fail")
	}
}

func TestCanonicalAOR(t *testing.T) {
	for in, want := range map[string]string{
		"sip:alice@test.overlay":     "sip:alice@test.overlay",
		"SIPS:alice@Test.Overlay":    "sip:alice@test.overlay",
		"<sip:al%41ce@test.overlay>": "sip:al%41ce@test.overlay",
		" sip:a.b-c@test.overlay ":   "sip:a.b-c@test.overlay",
	} {
		got, err := CanonicalAOR(in, "test.overlay")
		if err != nil || got != want {
			t.Errorf("%q: got %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"alice@test.overlay", "tel:+1555", "sip:@test.overlay", "sip:alice@test.overlay:5060",
		"sip:alice@test.overlay;transport=tcp", "sip:al ice@test.overlay", "sip:alice@other", "sip:a%zz@test.overlay",
		"sip:" + strings.Repeat("a", 200) + "@test.overlay"} {
		if got, err := CanonicalAOR(in, "test.overlay"); err == nil {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}

func TestValidateOverlayName(t *testing.T) {
	for _, ok := range []string{"p2psip.local", "overlay.citynetwork.org", "a"} {
		if err := ValidateOverlayName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "UP.case", "a..b", "-a.b", "a_b.c", "a b", strings.Repeat("a", 64) + ".b"} {
		if err := ValidateOverlayName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestValidationCache checks that the cached decoding changes no verdict:
// a bad signature stays bad however often it is seen, only values signed
// by a local key skip the verification, and the shape checks are redone
// for another overlay name.
func TestValidationCache(t *testing.T) {
	v := testValidator()
	owner := mustKey(t)
	key := RegistrationKey("sip:alice@test.overlay")
	good := sign(t, sampleReg(t, owner), owner)
	for range 3 {
		if _, err := v.ValidateRegistration(key, good); err != nil {
			t.Fatal(err)
		}
	}
	tampered := sign(t, sampleReg(t, owner), owner)
	env, err := decodeEnvelope(tampered)
	if err != nil {
		t.Fatal(err)
	}
	env.Sig[0] ^= 1
	tampered, err = encodeEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := v.ValidateRegistration(key, tampered); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("tampered signature: got %v, want ErrBadSignature", err)
		}
	}
	// A foreign Signer's value is not trusted on signing.
	fs := &flippingSigner{k: owner}
	freg := sampleReg(t, owner)
	forged, fenv, err := signRegistration(freg, fs)
	if err != nil {
		t.Fatal(err)
	}
	trustSigned(forged, fenv, freg, fs)
	if _, err := v.ValidateRegistration(key, forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("value of a foreign signer: got %v, want ErrBadSignature", err)
	}
	// The shape checks hold per overlay name.
	other := &Validator{Overlay: "other.overlay", Hold: time.Hour, MaxTTL: 24 * time.Hour}
	if _, err := other.ValidateRegistration(key, good); !errors.Is(err, ErrWrongOverlay) {
		t.Fatalf("other overlay: got %v, want ErrWrongOverlay", err)
	}
	// The returned record is a copy.
	reg, err := v.ValidateRegistration(key, good)
	if err != nil {
		t.Fatal(err)
	}
	reg.Bindings[0].Contact = "sip:mallory@192.0.2.9"
	again, err := v.ValidateRegistration(key, good)
	if err != nil || again.Bindings[0].Contact != "sip:alice@192.0.2.1" {
		t.Fatalf("cached record changed through a returned copy: %v %+v", err, again)
	}
}

// flippingSigner signs with a P-256 key but corrupts the signature, as a
// broken remote signer might.
type flippingSigner struct{ k *P256Key }

func (s *flippingSigner) PublicKey() []byte { return s.k.PublicKey() }
func (s *flippingSigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.k.Sign(msg)
	if err == nil {
		sig[5] ^= 0x40
	}
	return sig, err
}

// TestTrustedDecodingMatches checks that the decoding trustSigned takes
// from the record it signed is what decoding the value gives.
func TestTrustedDecodingMatches(t *testing.T) {
	owner := mustKey(t)
	now := time.Now()
	dev, err := CertifyDevice(owner, "sip:alice@test.overlay", mustKey(t).PublicKey(), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	regs := []*Registration{
		sampleReg(t, owner),
		{AOR: "sip:alice@test.overlay", Owner: owner.PublicKey(), Seq: 7, Created: now.Unix(), Expires: now.Unix()},
		{AOR: "sip:alice@test.overlay", Owner: owner.PublicKey(), Seq: 2, Created: now.Unix(), Expires: now.Add(time.Hour).Unix(),
			Devices: []DeviceCert{dev}, Bindings: []Binding{{Instance: "<urn:uuid:x>&\u2028é", Node: testNodeID(t), RegID: 3,
				Contact: "sip:a@[2001:db8::1]:5070;transport=tcp;ob", Path: []string{"<sip:p@192.0.2.1;lr>"},
				Expires: now.Add(time.Minute).Unix(), Q: 0.123456789}}},
		{AOR: "sip:alice@test.overlay", Owner: owner.PublicKey(), Seq: 3, Created: now.Unix(), Expires: now.Add(time.Hour).Unix(),
			Bindings: []Binding{{Instance: "bad\xffutf8", Node: testNodeID(t), Contact: "sip:a@192.0.2.1\xfe",
				Expires: now.Add(time.Minute).Unix(), Q: 1}}},
	}
	for i, reg := range regs {
		value, env, err := signRegistration(reg, owner)
		if err != nil {
			t.Fatal(err)
		}
		trustSigned(value, env, reg, owner)
		p, err := parsedRegs.decode(value)
		if err != nil {
			t.Fatal(err)
		}
		want, wantEnv, err := ParseRegistration(value)
		if err != nil {
			t.Fatal(err)
		}
		if got, w := mustJSON(t, p.reg), mustJSON(t, want); string(got) != string(w) {
			t.Errorf("record %d: trusted decoding\n%s\nwant\n%s", i, got, w)
		}
		if got, w := mustJSON(t, p.env), mustJSON(t, wantEnv); string(got) != string(w) {
			t.Errorf("record %d: envelope differs", i)
		}
		if len(p.reg.Bindings) > 0 && p.reg.Bindings[0].Contact != want.Bindings[0].Contact {
			t.Errorf("record %d: contact %q, decoding gives %q", i, p.reg.Bindings[0].Contact, want.Bindings[0].Contact)
		}
		if !p.sigOK.Load() {
			t.Errorf("record %d: own signature not trusted", i)
		}
		// The caller keeps its record: changing it leaves the cache alone.
		if len(reg.Bindings) > 0 {
			reg.Bindings[0].Contact = "sip:changed@192.0.2.9"
			if p.reg.Bindings[0].Contact == "sip:changed@192.0.2.9" {
				t.Errorf("record %d: cache shares the caller's bindings", i)
			}
		}
	}
}

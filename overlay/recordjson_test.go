package overlay

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// sameAsEncodingJSON fails t unless the hand-written encoders write what
// json.Marshal writes for reg and an envelope of it, or give up.
func sameAsEncodingJSON(t *testing.T, reg *Registration, env *Envelope) {
	t.Helper()
	want, werr := json.Marshal(reg)
	got, err := encodeRegistration(reg)
	if (err != nil) != (werr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("registration %+v:\n got %s (%v)\nwant %s (%v)", reg, got, err, want, werr)
	}
	if werr != nil {
		return
	}
	env.Body = got
	want, werr = json.Marshal(env)
	if werr != nil {
		t.Fatal(werr)
	}
	if fast, ok := appendEnvelopeJSON(nil, env); ok && !bytes.Equal(fast, want) {
		t.Fatalf("envelope:\n got %s\nwant %s", fast, want)
	}
	if fast, ok := appendEnvelopeJSON([]byte("x"), env); ok && !bytes.Equal(fast[1:], want) {
		t.Fatalf("envelope appended:\n got %s\nwant %s", fast[1:], want)
	}
}

// TestRecordJSONAsEncodingJSON: the record encoders write json.Marshal's
// bytes, on the records nodes sign and on the corner cases of the format
// (nil versus empty, omitted fields, escapes, exponents).
func TestRecordJSONAsEncodingJSON(t *testing.T) {
	owner := mustKey(t)
	base := sampleReg(t, owner)
	proof := &BatchProof{Index: 3, Size: 5, Path: [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}}
	cases := map[string]func(r *Registration, e *Envelope){
		"sample":         func(*Registration, *Envelope) {},
		"batch":          func(_ *Registration, e *Envelope) { e.Alg, e.Proof = AlgP256Batch, proof },
		"nil path":       func(_ *Registration, e *Envelope) { e.Proof = &BatchProof{Size: 1} },
		"empty path":     func(_ *Registration, e *Envelope) { e.Proof = &BatchProof{Size: 1, Path: [][]byte{}} },
		"nil bytes":      func(r *Registration, e *Envelope) { r.Owner, e.Signer, e.Sig = nil, nil, nil },
		"empty bytes":    func(r *Registration, e *Envelope) { r.Owner, e.Sig = []byte{}, []byte{} },
		"nil bindings":   func(r *Registration, _ *Envelope) { r.Bindings = nil },
		"empty bindings": func(r *Registration, _ *Envelope) { r.Bindings = []Binding{} },
		"devices": func(r *Registration, _ *Envelope) {
			r.Devices = []DeviceCert{{Owner: []byte{1}, Key: []byte{2, 3}, Expires: 9, Sig: nil}, {}}
		},
		"empty devices": func(r *Registration, _ *Envelope) { r.Devices = []DeviceCert{} },
		"negative":      func(r *Registration, _ *Envelope) { r.Created, r.Expires, r.Seq = -5, math.MinInt64, math.MaxUint64 },
		"reg id and path": func(r *Registration, _ *Envelope) {
			r.Bindings[0].RegID, r.Bindings[0].Path = -2, []string{"<sip:p@x;lr>", "sip:q"}
		},
		"path safe":     func(r *Registration, _ *Envelope) { r.Bindings[0].Path = []string{"sip:p@x;lr", ""} },
		"escapes":       func(r *Registration, _ *Envelope) { r.Bindings[0].Contact = "sip:a\"b\\c\n&é\u2028\x7f" },
		"invalid utf-8": func(r *Registration, _ *Envelope) { r.Bindings[0].Instance = "\xff" },
		"html in aor":   func(r *Registration, _ *Envelope) { r.AOR = "sip:a&b@test.overlay" },
		"alg escape":    func(_ *Registration, e *Envelope) { e.Alg = "<p256>" },
	}
	for _, q := range []float64{0, math.Copysign(0, -1), 1, 0.5, 0.1, 1.0 / 3, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, -0.25, 123456789.125, math.NaN(), math.Inf(1), math.SmallestNonzeroFloat64} {
		cases["q "+jsonQ(q)] = func(r *Registration, _ *Envelope) { r.Bindings[0].Q = q }
	}
	// What nodes sign takes the fast path, as the SIP registrar writes it.
	sip := base.clone()
	sip.Bindings[0].Instance = `<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>`
	sip.Bindings[0].Path = []string{"<sip:198.51.100.1:5060;lr>"}
	sip.Bindings[0].Contact = `sip:alice@192.0.2.1:5060;transport=udp;+sip.instance="x"&y`
	if _, ok := appendRegistrationJSON(nil, sip); !ok {
		t.Fatal("a registrar's record needs encoding/json")
	}
	sameAsEncodingJSON(t, sip, &Envelope{Alg: AlgP256, Signer: owner.PublicKey(), Sig: []byte{1}})
	if _, ok := appendEnvelopeJSON(nil, &Envelope{Alg: AlgP256Batch, Body: []byte("{}"), Signer: owner.PublicKey(), Sig: []byte{1}, Proof: proof}); !ok {
		t.Fatal("a batch envelope needs encoding/json")
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			reg := base.clone()
			env := &Envelope{Alg: AlgP256, Signer: owner.PublicKey(), Sig: bytes.Repeat([]byte{7}, 64)}
			edit(reg, env)
			sameAsEncodingJSON(t, reg, env)
		})
	}
}

func jsonQ(q float64) string {
	b, err := json.Marshal(map[string]float64{"q": q})
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// FuzzRegistrationJSON holds the record encoders to json.Marshal on
// arbitrary strings and numbers.
func FuzzRegistrationJSON(f *testing.F) {
	f.Add("sip:alice@test.overlay", "inst", "12D3KooW", "sip:a@127.0.0.1:5060", "sip:p;lr", int64(5), 0.5, -1, []byte{1, 2})
	f.Add("", "\x00", "<", "&amp;", "\u2028", int64(-1), 1e-9, 0, []byte(nil))
	f.Fuzz(func(t *testing.T, aor, inst, node, contact, path string, n int64, q float64, regID int, key []byte) {
		reg := &Registration{AOR: aor, Owner: key, Seq: uint64(n), Created: n, Expires: -n,
			Bindings: []Binding{{Instance: inst, RegID: regID, Node: node, Contact: contact, Path: []string{path}, Expires: n, Q: q}}}
		if n%3 == 0 {
			reg.Devices = []DeviceCert{{Owner: key, Key: []byte(path), Expires: n}}
		}
		if n%5 == 0 {
			reg.Bindings[0].Path = nil
		}
		env := &Envelope{Alg: inst, Signer: key, Sig: []byte(contact)}
		if regID%2 == 0 {
			env.Proof = &BatchProof{Index: uint32(n), Size: uint32(regID), Path: [][]byte{key, []byte(node)}}
		}
		sameAsEncodingJSON(t, reg, env)
	})
}

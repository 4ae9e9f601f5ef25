package overlay

import "testing"

// FuzzValidate feeds arbitrary keys and values to the validator every
// storing node runs on every PUT: it must never panic, and what it accepts
// must parse and select.
func FuzzValidate(f *testing.F) {
	owner := mustKey(f)
	reg := sampleReg(f, owner)
	f.Add(RegistrationKey(reg.AOR), sign(f, reg, owner))
	reg.Bindings = nil
	f.Add(RegistrationKey(reg.AOR), sign(f, reg, owner))
	f.Add(ServiceKey("proxy", testNodeID(f)), []byte(`{"alg":"libp2p","body":"e30=","signer":"","sig":""}`))
	f.Add("/sip/reg/sip:a@test.overlay", []byte(`{"alg":"p256","body":"bnVsbA==","signer":"AA==","sig":"AA=="}`))
	f.Add("/sip/other", []byte("{}"))
	v := testValidator()
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		if err := v.Validate(key, value); err != nil {
			return
		}
		if _, err := v.Select(key, [][]byte{value, value}); err != nil {
			t.Fatalf("accepted value does not select: %v", err)
		}
	})
}

// FuzzCanonicalAOR checks that canonicalisation never panics and is
// idempotent.
func FuzzCanonicalAOR(f *testing.F) {
	for _, s := range []string{"sip:alice@test.overlay", "SIPS:A%41@TEST.overlay", "<sip:x@test.overlay>", "sip:@", ":", "sip:a@b;c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CanonicalAOR(s, "test.overlay")
		if err != nil {
			return
		}
		again, err := CanonicalAOR(c, "test.overlay")
		if err != nil || again != c {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, c, again, err)
		}
	})
}

// FuzzParseJoinInfo covers the join-info reply a peer gets from any URL.
func FuzzParseJoinInfo(f *testing.F) {
	f.Add("12D3KooWGzh6p9pQdE4b1fzhSWY3eDPfGqmy1PoMT5tXLxkWnMXU", "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGzh6p9pQdE4b1fzhSWY3eDPfGqmy1PoMT5tXLxkWnMXU", "https://127.0.0.1:8443/")
	f.Add("x", "/garbage", "https://[::1]/")
	f.Fuzz(func(t *testing.T, id, addr, url string) {
		j := JoinInfo{Overlay: "test.overlay", NodeID: id, Addrs: []string{addr}}
		_, _ = j.AddrInfo(url)
	})
}

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
	// Batch records: the first, an inner and the last leaf of a batch of
	// five, whose paths differ in length and turns.
	regs := batchRegs(f, owner, "fuzz", 5)
	for i, value := range batchValues(f, owner, regs) {
		if i == 0 || i == 2 || i == 4 {
			f.Add(RegistrationKey(regs[i].AOR), value)
		}
	}
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

// FuzzBatchProof checks the proof verifier on arbitrary proofs: it never
// panics, and of a tree built from the input, a leaf's own proof gives the
// root while the proof with one bit changed (in index, size or path) does
// not give it for the signed size.
func FuzzBatchProof(f *testing.F) {
	f.Add(uint8(5), uint8(2), uint16(0), []byte("seed"))
	f.Add(uint8(64), uint8(63), uint16(300), []byte{})
	f.Add(uint8(1), uint8(0), uint16(7), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, n, idx uint8, flip uint16, data []byte) {
		if n == 0 {
			n = 1
		}
		idx %= n
		leaves := make([][32]byte, n)
		for i := range leaves {
			leaves[i] = leafHash(append([]byte{byte(i)}, data...))
		}
		root, paths := merkleTree(leaves)
		p := &BatchProof{Index: uint32(idx), Size: uint32(n), Path: pathBytes(paths[idx])}
		got, err := p.root(leaves[idx])
		if err != nil || got != root {
			t.Fatalf("leaf %d of %d: %v", idx, n, err)
		}
		// Flip one bit of index (bits 0..31), or of a path hash.
		bit := int(flip) % (32 + 256*len(p.Path))
		if bit < 32 {
			p.Index ^= 1 << bit
		} else {
			bit -= 32
			p.Path[bit/256][bit%256/8] ^= 1 << (bit % 8)
		}
		if got, err := p.root(leaves[idx]); err == nil && got == root {
			t.Fatalf("leaf %d of %d: a changed proof gives the root", idx, n)
		}
		// Arbitrary proofs: no panic.
		q := &BatchProof{Index: uint32(flip), Size: uint32(n) + uint32(flip), Path: [][]byte{data, root[:]}}
		_, _ = q.root(leaves[0])
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

package overlay

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawLeaf is an RFC 6962 leaf hash of data without the record domain, so
// the tree code can be checked against the RFC's test vectors.
func rawLeaf(data []byte) [32]byte {
	return sha256.Sum256(append([]byte{leafPrefix}, data...))
}

// The Certificate Transparency test vectors (RFC 6962 test data, as in
// transparency-dev/merkle): leaves, and the tree head of each size 1..8.
var (
	ctLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	ctRoots  = []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	ctPaths = map[int][]string{ // audit paths in the tree of 8
		0: {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
			"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
			"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"},
		5: {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
			"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
			"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"},
	}
)

func TestMerkleTreeMatchesRFC6962Vectors(t *testing.T) {
	var leaves [][32]byte
	for _, l := range ctLeaves {
		data, _ := hex.DecodeString(l)
		leaves = append(leaves, rawLeaf(data))
	}
	for n := 1; n <= len(leaves); n++ {
		root, _ := merkleTree(leaves[:n])
		if got := hex.EncodeToString(root[:]); got != ctRoots[n-1] {
			t.Errorf("size %d: root %s, RFC 6962 vectors say %s", n, got, ctRoots[n-1])
		}
	}
	_, paths := merkleTree(leaves)
	for i, want := range ctPaths {
		var got []string
		for _, h := range paths[i] {
			got = append(got, hex.EncodeToString(h[:]))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("path of leaf %d:\n%v\nwant\n%v", i, got, want)
		}
	}
}

// bottomUpRoot is an independent RFC 6962 tree head: pair neighbours level
// by level, carrying an odd last node up unchanged.
func bottomUpRoot(leaves [][32]byte) [32]byte {
	level := append([][32]byte(nil), leaves...)
	for len(level) > 1 {
		var next [][32]byte
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, nodeHash(&level[i], &level[i+1]))
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		level = next
	}
	return level[0]
}

func pathBytes(p [][32]byte) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = bytes.Clone(p[i][:])
	}
	return out
}

// TestMerkleProofsEverySize: in trees of 1..70 leaves every leaf's proof
// leads to the root, and no other index, size or path length does.
func TestMerkleProofsEverySize(t *testing.T) {
	for n := 1; n <= 70; n++ {
		leaves := make([][32]byte, n)
		for i := range leaves {
			leaves[i] = leafHash(fmt.Appendf(nil, "record %d of %d", i, n))
		}
		root, paths := merkleTree(leaves)
		if root != bottomUpRoot(leaves) {
			t.Fatalf("size %d: root differs from the bottom-up tree head", n)
		}
		for i := range n {
			p := &BatchProof{Index: uint32(i), Size: uint32(n), Path: pathBytes(paths[i])}
			got, err := p.root(leaves[i])
			if err != nil || got != root {
				t.Fatalf("size %d leaf %d: %v, root matches: %v", n, i, err, got == root)
			}
			if got, err := p.root(leaves[(i+1)%n]); n > 1 && err == nil && got == root {
				t.Fatalf("size %d leaf %d: another leaf passes with this proof", n, i)
			}
			for _, idx := range []int{i - 1, i + 1} {
				if idx < 0 || idx >= n {
					continue
				}
				q := *p
				q.Index = uint32(idx)
				if got, err := q.root(leaves[i]); err == nil && got == root {
					t.Fatalf("size %d leaf %d passes as index %d", n, i, idx)
				}
			}
			// Other sizes may rebuild the same root (RFC 9162 proofs do
			// not bind the size), which is why the signature covers the
			// size; they must not pass for the size that was signed.
			q := *p
			q.Index = uint32(n)
			if _, err := q.root(leaves[i]); !errors.Is(err, ErrBadProof) {
				t.Fatalf("size %d: index = size: %v, want ErrBadProof", n, err)
			}
			if len(p.Path) > 0 {
				q = *p
				q.Path = p.Path[:len(p.Path)-1]
				if _, err := q.root(leaves[i]); !errors.Is(err, ErrBadProof) {
					t.Fatalf("size %d leaf %d: short path: %v", n, i, err)
				}
			}
			q = *p
			q.Path = append(append([][]byte(nil), p.Path...), make([]byte, 32))
			if _, err := q.root(leaves[i]); !errors.Is(err, ErrBadProof) {
				t.Fatalf("size %d leaf %d: long path: %v", n, i, err)
			}
		}
	}
}

// batchValues signs regs as one batch with k, as the batcher does when
// len(regs) requests queue, and returns the stored values.
func batchValues(t testing.TB, k *P256Key, regs []*Registration) [][]byte {
	t.Helper()
	reqs := make([]*signReq, len(regs))
	for i, r := range regs {
		reqs[i] = &signReq{body: mustJSON(t, r)}
	}
	k.signBatch(reqs)
	out := make([][]byte, len(regs))
	for i, r := range reqs {
		if r.err != nil {
			t.Fatal(r.err)
		}
		alg := AlgP256Batch
		if r.proof == nil {
			alg = AlgP256
		}
		v, err := encodeEnvelope(&Envelope{Alg: alg, Body: r.body, Signer: k.PublicKey(), Sig: r.sig, Proof: r.proof})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = v
	}
	return out
}

// batchRegs returns n registrations of distinct AORs owned by owner.
func batchRegs(t testing.TB, owner Signer, prefix string, n int) []*Registration {
	regs := make([]*Registration, n)
	for i := range regs {
		r := sampleReg(t, owner)
		r.AOR = fmt.Sprintf("sip:%s%d@test.overlay", prefix, i)
		regs[i] = r
	}
	return regs
}

// editEnvelope decodes value, lets edit change it and encodes it again.
func editEnvelope(t *testing.T, value []byte, edit func(*Envelope)) []byte {
	t.Helper()
	env, err := decodeEnvelope(value)
	if err != nil {
		t.Fatal(err)
	}
	edit(env)
	out, err := encodeEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBatchRecordTampering checks the validator refuses every change to
// a batch-signed record, after the batch's root has been verified and
// cached by its honest records.
func TestBatchRecordTampering(t *testing.T) {
	owner, other := mustKey(t), mustKey(t)
	prefix := fmt.Sprintf("tamper%d-", time.Now().UnixNano())
	regs := batchRegs(t, owner, prefix, 5)
	values := batchValues(t, owner, regs)
	v := testValidator()
	for i, value := range values {
		if _, err := v.ValidateRegistration(RegistrationKey(regs[i].AOR), value); err != nil {
			t.Fatalf("record %d of the batch: %v", i, err)
		}
	}
	const victim = 2 // an inner leaf: its path has left and right siblings
	key := RegistrationKey(regs[victim].AOR)
	good := values[victim]
	env, _ := decodeEnvelope(good)
	if env.Alg != AlgP256Batch || env.Proof == nil || env.Proof.Size != 5 || env.Proof.Index != victim {
		t.Fatalf("not a batch record: %s", good)
	}
	otherSig, err := other.Sign(mustJSON(t, 0)) // any signature by another key
	if err != nil {
		t.Fatal(err)
	}
	plainSig, err := owner.Sign(append([]byte(recordDomain), env.Body...))
	if err != nil {
		t.Fatal(err)
	}
	evil := regs[victim].clone()
	evil.Bindings[0].Contact = "sip:mallory@192.0.2.66"

	cases := []struct {
		name  string
		value []byte
		want  error
	}{
		{"index of a neighbour", editEnvelope(t, good, func(e *Envelope) { e.Proof.Index = victim + 1 }), ErrBadSignature},
		{"index outside the batch", editEnvelope(t, good, func(e *Envelope) { e.Proof.Index = 5 }), ErrBadProof},
		// Sizes 6 and 7 give leaf 2 the same turns, hence the same root:
		// only the signed size tells them from 5.
		{"size 6, same root", editEnvelope(t, good, func(e *Envelope) { e.Proof.Size = 6 }), ErrBadSignature},
		{"size 7, same root", editEnvelope(t, good, func(e *Envelope) { e.Proof.Size = 7 }), ErrBadSignature},
		{"smaller size", editEnvelope(t, good, func(e *Envelope) { e.Proof.Size = 4 }), ErrBadProof},
		{"size zero", editEnvelope(t, good, func(e *Envelope) { e.Proof.Size = 0 }), ErrBadProof},
		{"huge size", editEnvelope(t, good, func(e *Envelope) { e.Proof.Size = 1 << 31 }), ErrBadProof},
		{"path too short", editEnvelope(t, good, func(e *Envelope) { e.Proof.Path = e.Proof.Path[1:] }), ErrBadProof},
		{"path too long", editEnvelope(t, good, func(e *Envelope) { e.Proof.Path = append(e.Proof.Path, e.Proof.Path[0]) }), ErrBadProof},
		{"short hash", editEnvelope(t, good, func(e *Envelope) { e.Proof.Path[0] = e.Proof.Path[0][:31] }), ErrBadProof},
		{"tampered sibling", editEnvelope(t, good, func(e *Envelope) { e.Proof.Path[1][7] ^= 1 }), ErrBadSignature},
		{"tampered body", editEnvelope(t, good, func(e *Envelope) { e.Body = mustJSON(t, evil) }), ErrBadSignature},
		{"signature by another key", editEnvelope(t, good, func(e *Envelope) { e.Sig = otherSig }), ErrBadSignature},
		{"signed by another key, claiming it", editEnvelope(t, good, func(e *Envelope) { e.Signer = other.PublicKey() }), ErrNotOwner},
		{"plain signature with a proof", editEnvelope(t, good, func(e *Envelope) { e.Sig = plainSig }), ErrBadSignature},
		{"proof on a plain record", editEnvelope(t, good, func(e *Envelope) { e.Alg, e.Sig = AlgP256, plainSig }), ErrBadProof},
		{"batch signature without a proof", editEnvelope(t, good, func(e *Envelope) { e.Proof = nil }), ErrBadProof},
		{"batch signature as a plain one", editEnvelope(t, good, func(e *Envelope) { e.Alg, e.Proof = AlgP256, nil }), ErrBadSignature},
		{"trailing junk", append(bytes.Clone(good), ` {}`...), ErrBadRecord},
		{"unknown proof field", bytes.Replace(good, []byte(`"proof":{`), []byte(`"proof":{"root":"AA==",`), 1), ErrBadRecord},
		{"negative index", bytes.Replace(good, []byte(`"index":2`), []byte(`"index":-2`), 1), ErrBadRecord},
		{"null path hash", bytes.Replace(good, []byte(`"path":["`), []byte(`"path":[null,"`), 1), ErrBadProof},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if bytes.Equal(c.value, good) {
				t.Fatal("the case does not change the record")
			}
			_, err := v.ValidateRegistration(key, c.value)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if isCached(c.value) {
				t.Fatal("refused value is cached")
			}
		})
	}
	// A service entry never carries a proof.
	if _, err := v.ValidateService(ServiceKey("proxy", "x"), []byte(`{"alg":"libp2p","body":"e30=","signer":"","sig":"","proof":{"index":0,"size":1,"path":[]}}`)); err == nil {
		t.Fatal("service entry with a proof validated")
	}
}

// TestBatchOfOneIsPlain: a lone signer gets a plain record, exactly the
// format of a record signed before batching existed.
func TestBatchOfOneIsPlain(t *testing.T) {
	owner := mustKey(t)
	_, env, err := signRegistration(sampleReg(t, owner), owner)
	if err != nil {
		t.Fatal(err)
	}
	if env.Alg != AlgP256 || env.Proof != nil {
		t.Fatalf("lone record signed as %q with proof %v", env.Alg, env.Proof)
	}
	if err := verifyP256(owner.PublicKey(), append([]byte(recordDomain), env.Body...), env.Sig); err != nil {
		t.Fatal(err)
	}
}

// TestLargestBatchRecordFits: a body fitsWithProof admits still encodes
// within maxRecordBytes with the longest proof, and one byte more is
// signed plainly.
func TestLargestBatchRecordFits(t *testing.T) {
	owner := mustKey(t)
	body := bytes.Repeat([]byte("x"), 5000)
	for fitsWithProof(append(body, 'x'), owner) {
		body = append(body, 'x')
	}
	if !fitsWithProof(body, owner) {
		t.Fatal("no body fits")
	}
	reqs := make([]*signReq, maxBatch)
	for i := range reqs {
		reqs[i] = &signReq{body: body}
	}
	owner.signBatch(reqs)
	r := reqs[maxBatch-1] // the longest index, and a path as long as any
	if _, err := encodeEnvelope(&Envelope{Alg: AlgP256Batch, Body: r.body, Signer: owner.PublicKey(), Sig: r.sig, Proof: r.proof}); err != nil {
		t.Fatalf("largest batch record: %v", err)
	}
}

// resetVerificationCaches forgets every decoding and verified signature,
// so that the next validation checks everything as a node of another
// process would.
func resetVerificationCaches() {
	parsedRegs.mu.Lock()
	parsedRegs.m, parsedRegs.order, parsedRegs.bytes = map[string]*parsedReg{}, nil, 0
	parsedRegs.mu.Unlock()
	for _, c := range []*sigCache{verified, verifiedRoots} {
		c.mu.Lock()
		c.seen, c.order = map[[32]byte]struct{}{}, nil
		c.mu.Unlock()
	}
}

// registerConcurrently registers n AORs on node at once with one key and
// returns the AORs and the values the node stored.
func registerConcurrently(t *testing.T, node *Node, key *P256Key, prefix string, n int) ([]string, [][]byte) {
	t.Helper()
	aors := make([]string, n)
	values := make([][]byte, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		aors[i] = fmt.Sprintf("sip:%s%d@test.overlay", prefix, i)
		wg.Go(func() {
			<-start
			_, err := node.Register(ctxT(t), RegisterRequest{AOR: aors[i], Signer: key,
				Binding: binding("d", fmt.Sprintf("sip:%s%d@192.0.2.1", prefix, i), time.Hour)})
			if err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	node.mu.Lock()
	for i, aor := range aors {
		values[i] = node.hosted[aor].value
	}
	node.mu.Unlock()
	return aors, values
}

// batchSizes counts the batch records among values and the largest batch.
func batchSizes(t *testing.T, values [][]byte) (batched int, largest uint32) {
	t.Helper()
	for _, v := range values {
		env, err := decodeEnvelope(v)
		if err != nil {
			t.Fatal(err)
		}
		if env.Proof != nil {
			batched++
			largest = max(largest, env.Proof.Size)
		}
	}
	return batched, largest
}

// TestConcurrentRegistersBatch: 200 concurrent Registers through one node
// and one key form batches, and every record is accepted by the other
// nodes' validators from scratch and found by their lookups.
func TestConcurrentRegistersBatch(t *testing.T) {
	tn := newTestNet(t, 4, nil)
	key := mustKey(t)
	aors, values := registerConcurrently(t, tn.nodes[0], key, "batch", 200)
	batched, largest := batchSizes(t, values)
	t.Logf("%d of %d records batch-signed, largest batch %d", batched, len(values), largest)
	if largest < 2 {
		t.Fatal("200 concurrent Registers formed no batch")
	}
	if largest > maxBatch {
		t.Fatalf("batch of %d records, cap %d", largest, maxBatch)
	}

	resetVerificationCaches()
	roots := map[string]bool{}
	for i, value := range values {
		if err := tn.nodes[3].valid.Validate(RegistrationKey(aors[i]), value); err != nil {
			t.Fatalf("node 3 refuses %s: %v", aors[i], err)
		}
		if env, _ := decodeEnvelope(value); env.Proof != nil {
			roots[string(env.Sig)] = true
		}
	}
	verifiedRoots.mu.Lock()
	cachedRoots := len(verifiedRoots.order)
	verifiedRoots.mu.Unlock()
	if cachedRoots != len(roots) {
		t.Errorf("%d batch roots verified for %d batches: the root cache does not work", cachedRoots, len(roots))
	}
	for i, aor := range aors {
		want := fmt.Sprintf("sip:batch%d@192.0.2.1", i)
		if got := lookupLive(t, tn.nodes[1+i%3], aor); len(got) != 1 || got[0] != want {
			t.Fatalf("node %d looks up %s: %v, want %s", 1+i%3, aor, got, want)
		}
	}
}

// TestConcurrentRegistersBatchLonePeer is the same load on a peer alone:
// the batches are stored through the local path and spread once a peer
// joins.
func TestConcurrentRegistersBatchLonePeer(t *testing.T) {
	tn := newTestNet(t, 1, func(c *Config) { c.RefreshInterval, c.ServiceTTL = time.Hour, 2*time.Hour })
	key := mustKey(t)
	aors, values := registerConcurrently(t, tn.nodes[0], key, "lone", 200)
	if _, largest := batchSizes(t, values); largest < 2 {
		t.Fatal("200 concurrent Registers formed no batch")
	}
	for i, aor := range aors {
		if !bytes.Equal(tn.nodes[0].localValue(RegistrationKey(aor)), values[i]) {
			t.Fatalf("%s is not stored locally", aor)
		}
	}
	if !tn.nodes[0].unspread.Load() {
		t.Fatal("records stored alone are not marked for spreading")
	}
	joiner, err := New(testConfig(t, func(c *Config) { c.RefreshInterval, c.ServiceTTL = time.Hour, 2*time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(joiner) })
	if err := joiner.Connect(ctxT(t), tn.info(0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, aor := range aors {
		for joiner.localValue(RegistrationKey(aor)) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not spread to the peer that joined", aor)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestTrustedBatchDecoding: the values of a batch this process signed are
// trusted without verification, and their trusted decoding is what
// decoding the value gives, proof included.
func TestTrustedBatchDecoding(t *testing.T) {
	owner := mustKey(t)
	regs := batchRegs(t, owner, fmt.Sprintf("trusted%d-", time.Now().UnixNano()), 3)
	reqs := make([]*signReq, len(regs))
	for i, r := range regs {
		reqs[i] = &signReq{body: mustJSON(t, r)}
	}
	owner.signBatch(reqs)
	for i, r := range reqs {
		env := &Envelope{Alg: AlgP256Batch, Body: r.body, Signer: owner.PublicKey(), Sig: r.sig, Proof: r.proof}
		value, err := encodeEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		trustSigned(value, env, regs[i], owner)
		p := parsedRegs.get(value)
		if p == nil || !p.sigOK.Load() {
			t.Fatalf("record %d of the batch is not trusted", i)
		}
		_, want, err := ParseRegistration(value)
		if err != nil {
			t.Fatal(err)
		}
		if got, w := mustJSON(t, p.env), mustJSON(t, want); string(got) != string(w) {
			t.Fatalf("record %d: trusted envelope\n%s\nwant\n%s", i, got, w)
		}
	}
}

package overlay

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
)

// Batch signatures (see the package documentation): a node signs the
// records its local key signs concurrently as one Merkle tree, built as in
// RFC 6962 §2.1, and signs the tree's size and root once.
const (
	// batchDomain prefixes the signed tree head. It is not a prefix of
	// recordDomain nor the other way round, so a batch signature is never
	// a record signature and vice versa.
	batchDomain = "p2psip/record-batch/v1\n"
	// maxBatch caps the records of one batch: 64 records cost 63 inner
	// hashes and a proof of 6 hashes (~290 bytes per record), while one
	// signature is ~40 µs, so larger batches would save little.
	maxBatch = 64
	// maxProofLeaves bounds the tree size a verifier accepts, and so the
	// proof length (16 hashes). It is far above maxBatch so that a later
	// signer may batch more without older nodes refusing its records.
	maxProofLeaves = 1 << 16
	// maxProofOverhead is what a proof adds to an encoded envelope at
	// most for a tree of maxBatch leaves: the "proof" member with the
	// largest index and size, and one base64 hash per level.
	maxProofOverhead = len(`,"proof":{"index":4294967295,"size":4294967295,"path":[]}`) + 6*len(`"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",`)
)

// Merkle tree hash prefixes (RFC 6962 §2.1): a leaf can never be taken for
// an inner node, so a proof cannot pass an inner node off as a record.
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// BatchProof is an Envelope's inclusion proof for AlgP256Batch: the
// record's leaf index in the batch, the batch size, and the audit path
// (RFC 6962 §2.1.1, deepest sibling first). Size is signed with the root,
// so neither Index nor Size can be changed without breaking the proof.
type BatchProof struct {
	Index uint32   `json:"index"`
	Size  uint32   `json:"size"`
	Path  [][]byte `json:"path"` // SHA-256 hashes, 32 bytes each
}

// leafHash is the Merkle leaf of a record body: SHA-256(0x00 ‖
// recordDomain ‖ body). The record domain stays in the leaf so that a
// leaf commits to the same message a plain signature would.
func leafHash(body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write([]byte(recordDomain))
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// nodeHash is an inner node: SHA-256(0x01 ‖ left ‖ right).
func nodeHash(l, r *[32]byte) [32]byte {
	var buf [65]byte
	buf[0] = nodePrefix
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// splitPoint is RFC 6962's k for n > 1 leaves: the largest power of two
// smaller than n.
func splitPoint(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) }

// merkleTree returns the root of leaves (RFC 6962 MTH) and each leaf's
// audit path, deepest sibling first (RFC 6962 PATH). Sizes that are not a
// power of two split as the RFC does: the left subtree is the largest
// power of two, so every size has one tree shape.
func merkleTree(leaves [][32]byte) ([32]byte, [][][32]byte) {
	paths := make([][][32]byte, len(leaves))
	depth := bits.Len(uint(len(leaves) - 1))
	buf := make([][32]byte, len(leaves)*depth) // one backing array for every path
	for i := range paths {
		paths[i] = buf[i*depth : i*depth : (i+1)*depth]
	}
	return subtree(leaves, paths), paths
}

func subtree(leaves [][32]byte, paths [][][32]byte) [32]byte {
	n := len(leaves)
	if n == 1 {
		return leaves[0]
	}
	k := splitPoint(n)
	l := subtree(leaves[:k], paths[:k])
	r := subtree(leaves[k:], paths[k:])
	for i := range k {
		paths[i] = append(paths[i], r)
	}
	for i := k; i < n; i++ {
		paths[i] = append(paths[i], l)
	}
	return nodeHash(&l, &r)
}

// root recomputes the tree root from a leaf and the proof, as RFC 9162
// §2.1.3.2 verifies an inclusion proof. The path must have exactly the
// length the index and size call for.
func (p *BatchProof) root(leaf [32]byte) ([32]byte, error) {
	if p.Size == 0 || p.Size > maxProofLeaves || p.Index >= p.Size {
		return [32]byte{}, fmt.Errorf("%w: leaf %d of %d", ErrBadProof, p.Index, p.Size)
	}
	fn, sn := p.Index, p.Size-1
	r := leaf
	for _, h := range p.Path {
		if len(h) != 32 {
			return [32]byte{}, fmt.Errorf("%w: path hash of %d bytes", ErrBadProof, len(h))
		}
		if sn == 0 {
			return [32]byte{}, fmt.Errorf("%w: path longer than the tree", ErrBadProof)
		}
		sib := (*[32]byte)(h)
		if fn&1 == 1 || fn == sn {
			r = nodeHash(sib, &r)
			for fn&1 == 0 && fn != 0 {
				fn, sn = fn>>1, sn>>1
			}
		} else {
			r = nodeHash(&r, sib)
		}
		fn, sn = fn>>1, sn>>1
	}
	if sn != 0 {
		return [32]byte{}, fmt.Errorf("%w: path shorter than the tree", ErrBadProof)
	}
	return r, nil
}

// batchMessage is what a batch signature signs: batchDomain ‖ size (4
// bytes, big-endian) ‖ root. Signing the size with the root, as RFC 6962's
// signed tree head does, binds the proof's Size and so its Index: for one
// size every leaf has its own sequence of left and right turns.
func batchMessage(size uint32, root [32]byte) []byte {
	msg := make([]byte, 0, len(batchDomain)+4+32)
	msg = append(msg, batchDomain...)
	msg = binary.BigEndian.AppendUint32(msg, size)
	return append(msg, root[:]...)
}

// verifiedRoots remembers (signer, size, root, signature) tuples that
// verified: the first record of a batch a node sees costs a signature
// verification, the others of the batch only their proof's hashes. Kept
// apart from verified so that plain records cannot evict batch roots.
var verifiedRoots = newSigCache(regCacheSize)

// verifyBatch checks an AlgP256Batch record: the body's leaf and the proof
// give the root, which signer must have signed.
func verifyBatch(signer, body []byte, proof *BatchProof, sig []byte) error {
	root, err := proof.root(leafHash(body))
	if err != nil {
		return err
	}
	msg := batchMessage(proof.Size, root)
	k := sigKey(signer, msg, sig)
	if verifiedRoots.has(k) {
		return nil
	}
	if err := verifyP256(signer, msg, sig); err != nil {
		return fmt.Errorf("batch root: %w", err)
	}
	verifiedRoots.add(k)
	return nil
}

// batcher is a P256Key's group commit of record signatures. At most one
// caller (the leader) signs at a time; callers that arrive meanwhile queue,
// and the next leader signs everything queued as one batch. Nothing waits
// for a batch to fill: a caller alone signs its record plainly at once.
type batcher struct {
	mu    sync.Mutex
	busy  bool       // guarded by mu: a leader is signing
	queue []*signReq // guarded by mu: callers waiting for the next batch
}

// signReq is one record waiting to be signed, and its outcome.
type signReq struct {
	body  []byte
	sig   []byte
	proof *BatchProof
	err   error
	lead  bool // woken to lead the next batch rather than with a result
	// done is released when the outcome is set, or lead: a WaitGroup of
	// one rather than a channel, which would be an allocation per record.
	done sync.WaitGroup
}

// signRecord signs a record body with k: plainly (a signature over
// recordDomain ‖ body, proof nil) when no other record of k is signed at
// the same time, or as part of a batch (a signature over the batch's
// root, and the record's proof).
func (k *P256Key) signRecord(body []byte) ([]byte, *BatchProof, error) {
	b := &k.batch
	b.mu.Lock()
	if !b.busy {
		b.busy = true
		b.mu.Unlock()
		own := signReq{body: body}
		k.lead(&own)
		return own.sig, own.proof, own.err
	}
	r := &signReq{body: body}
	r.done.Add(1)
	b.queue = append(b.queue, r)
	b.mu.Unlock()
	r.done.Wait()
	if r.lead {
		k.lead(r)
	}
	return r.sig, r.proof, r.err
}

// lead signs own and what is queued (up to maxBatch records), then hands
// leadership to the first caller still queued, or ends it.
func (k *P256Key) lead(own *signReq) {
	b := &k.batch
	// On one P nobody else runs while the leader computes a signature, so
	// nothing could queue behind it and no batch would ever form. Yielding
	// once lets the goroutines that are runnable now (other REGISTERs)
	// reach signRecord and queue. It is no timer: when nothing else is
	// runnable it returns at once.
	runtime.Gosched()
	b.mu.Lock()
	var batch []*signReq
	if n := min(len(b.queue), maxBatch-1); n > 0 {
		batch = make([]*signReq, 0, n+1)
		batch = append(append(batch, own), b.queue[:n]...)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
	}
	b.mu.Unlock()

	if batch == nil {
		own.sig, own.err = k.Sign(append([]byte(recordDomain), own.body...))
	} else {
		k.signBatch(batch)
	}

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		next.lead = true
		next.done.Done()
	} else {
		b.busy = false
	}
	b.mu.Unlock()
	for i, r := range batch {
		if i > 0 { // batch[0] is own
			r.done.Done()
		}
	}
}

// signBatch sets the outcome of every request: a plain signature for a
// batch of one, else one signature over the tree and a proof each.
func (k *P256Key) signBatch(batch []*signReq) {
	if len(batch) == 1 {
		r := batch[0]
		r.sig, r.err = k.Sign(append([]byte(recordDomain), r.body...))
		return
	}
	leaves := make([][32]byte, len(batch))
	for i, r := range batch {
		leaves[i] = leafHash(r.body)
	}
	root, paths := merkleTree(leaves)
	size := uint32(len(batch))
	sig, err := k.Sign(batchMessage(size, root))
	depth := len(paths[0])                     // the first leaf's path is the longest
	hashes := make([][]byte, len(batch)*depth) // one backing array for every Path
	proofs := make([]BatchProof, len(batch))   // and for every proof
	for i, r := range batch {
		if err != nil {
			r.err = err
			continue
		}
		path := hashes[i*depth : i*depth+len(paths[i]) : (i+1)*depth]
		for j := range paths[i] {
			path[j] = paths[i][j][:]
		}
		r.sig = sig
		proofs[i] = BatchProof{Index: uint32(i), Size: size, Path: path}
		r.proof = &proofs[i]
	}
}

// fitsWithProof reports whether an envelope of body signed by k stays
// within maxRecordBytes with the longest proof a batch can add. A record
// that might not fit is signed plainly, on its own.
func fitsWithProof(body []byte, k *P256Key) bool {
	enc := base64.StdEncoding.EncodedLen
	plain := len(`{"alg":"","body":"","signer":"","sig":""}`) + len(AlgP256Batch) +
		enc(len(body)) + enc(len(k.pub)) + enc(64)
	return plain+maxProofOverhead <= maxRecordBytes
}

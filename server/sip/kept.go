package sip

import (
	"hash/maphash"
	"sync"
	"time"
)

// sweptAnswers is a keptAnswers under its own lock whose answers expire
// after Timer J (64*T1, which Timer L equals), and are swept while any are
// left: nothing else drops them when traffic stops.
type sweptAnswers struct {
	mu      sync.Mutex
	kept    *keptAnswers // guarded by mu
	pending bool         // guarded by mu: a sweep is scheduled
	limit   int          // the most answers kept; the oldest go first
}

// put keeps answer (copied) under key for Timer J.
func (a *sweptAnswers) put(key string, answer []byte, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kept.put(key, answer, now.Add(timerJ))
	a.kept.expire(now, a.limit)
	if !a.pending {
		a.pending = true
		time.AfterFunc(timerJ, a.sweep)
	}
}

// sweep drops the expired answers, and comes back while any are left.
func (a *sweptAnswers) sweep() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kept.expire(time.Now(), a.limit)
	if a.kept.len() == 0 {
		a.pending = false
		return
	}
	time.AfterFunc(timerJ, a.sweep)
}

// get returns the answer kept under key, or nil once it has expired; see
// keptAnswers.get.
func (a *sweptAnswers) get(key string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kept.expire(time.Now(), a.limit)
	return a.kept.get(key)
}

// keptAnswers keeps the final responses of completed REGISTER server
// transactions for Timer J (RFC 3261 §17.2.2), keyed as in §17.2.3, so
// that a retransmission gets the same response again without being
// processed again. The same table keeps the finished UDP transactions
// (udpfinal.go) and the 2xx a peer relayed to INVITEs (accepted.go).
//
// At thousands of REGISTERs a second the table holds hundreds of
// thousands of answers (64*T1 = 32 s of them). Kept as one object per
// transaction, with a string key and the answer's bytes, they were a
// third of a loaded peer's heap and of the pointers its collector
// traced on every cycle, and each cycle over a large heap on one core
// slowed the peer for seconds. Here nothing the table holds per answer
// is a pointer: keys and answers are appended to large byte chunks, the
// entries are plain values in a FIFO ring (they expire in the order they
// were added), and the index maps a 64-bit hash of the key to an entry.
// A hash that collides is told apart by comparing the stored key; the
// later entry then takes the index, and the earlier one's retransmission
// is processed anew, which for a REGISTER rewrites the same binding.
//
// Not safe for concurrent use: each user's own mutex guards it.
type keptAnswers struct {
	seed   maphash.Seed
	index  map[uint64]uint64 // key hash → sequence number of its entry
	ents   []keptEntry       // ents[head:] are live, oldest first
	head   int
	first  uint64   // sequence number of ents[head]
	chunks [][]byte // append-only; chunks[0] is chunk number chunk0
	chunk0 uint64
	bytes  int // keys and answers of the live entries
}

type keptEntry struct {
	hash   uint64
	at     int64  // when Timer J fires, Unix nanoseconds
	chunk  uint64 // number of the chunk holding key and answer
	off    uint32 // of the key in the chunk; the answer follows it
	keyLen uint32
	ansLen uint32
}

// keptChunkSize is the size of the chunks keys and answers are appended
// to: a few thousand answers each, so the chunks are few pointers.
const keptChunkSize = 1 << 20

// maxKeptBytes bounds the keys and answers kept, whatever their count:
// both are sized by the sender (its branch, its Via fields), up to a
// datagram each. 512 MiB holds Timer J at 16000 REGISTERs a second of
// ordinary ones (≈ 600 bytes); past it the oldest go early.
const maxKeptBytes = 512 << 20

func newKeptAnswers() *keptAnswers {
	return &keptAnswers{seed: maphash.MakeSeed(), index: map[uint64]uint64{}}
}

// put keeps answer under key until at. A chunk is never written again
// once an answer is in it, so the bytes get returns stay valid.
func (k *keptAnswers) put(key string, answer []byte, at time.Time) {
	need := len(key) + len(answer)
	last := len(k.chunks) - 1
	if last < 0 || cap(k.chunks[last])-len(k.chunks[last]) < need {
		k.chunks = append(k.chunks, make([]byte, 0, max(keptChunkSize, need)))
		last++
	}
	c := k.chunks[last]
	off := len(c)
	c = append(c, key...)
	k.chunks[last] = append(c, answer...)
	h := maphash.String(k.seed, key)
	seq := k.first + uint64(len(k.ents)-k.head)
	k.ents = append(k.ents, keptEntry{hash: h, at: at.UnixNano(), chunk: k.chunk0 + uint64(last),
		off: uint32(off), keyLen: uint32(len(key)), ansLen: uint32(len(answer))})
	k.index[h] = seq
	k.bytes += need
}

// get returns the answer kept under key, or nil. The caller may use it
// after releasing the lock, but must not modify it.
func (k *keptAnswers) get(key string) []byte {
	seq, ok := k.index[maphash.String(k.seed, key)]
	if !ok || seq < k.first {
		return nil
	}
	e := k.ents[k.head+int(seq-k.first)]
	c := k.chunks[e.chunk-k.chunk0]
	end := e.off + e.keyLen
	if string(c[e.off:end]) != key {
		return nil // another key with the same hash
	}
	return c[end : end+e.ansLen : end+e.ansLen]
}

// len is the number of kept answers.
func (k *keptAnswers) len() int { return len(k.ents) - k.head }

// expire drops the answers whose Timer J has fired by now, and the oldest
// ones past limit entries or maxKeptBytes, and then the chunks no answer
// needs any more.
func (k *keptAnswers) expire(now time.Time, limit int) {
	t := now.UnixNano()
	for k.head < len(k.ents) && (k.ents[k.head].at < t || k.len() > limit || k.bytes > maxKeptBytes) {
		e := k.ents[k.head]
		if k.index[e.hash] == k.first {
			delete(k.index, e.hash)
		}
		k.bytes -= int(e.keyLen + e.ansLen)
		k.head++
		k.first++
	}
	// Reuse the ring's front once half of it is spent.
	if k.head > 1024 && k.head*2 >= len(k.ents) {
		n := copy(k.ents, k.ents[k.head:])
		k.ents = k.ents[:n]
		k.head = 0
	}
	if len(k.chunks) == 0 {
		return
	}
	// The oldest live answer's chunk, or for none the newest chunk (it
	// may take more): every chunk before it goes.
	keep := k.chunk0 + uint64(len(k.chunks)) - 1
	if k.head < len(k.ents) {
		keep = k.ents[k.head].chunk
	}
	for k.chunk0 < keep {
		k.chunks[0] = nil
		k.chunks = k.chunks[1:]
		k.chunk0++
	}
}

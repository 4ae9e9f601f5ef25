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
// entries are plain values in a FIFO of fixed-size blocks (they expire
// in the order they were added), and the index maps a 64-bit hash of the
// key to an entry. A hash that collides is told apart by comparing the
// stored key; the later entry then takes the index, and the earlier
// one's retransmission is processed anew, which for a REGISTER rewrites
// the same binding.
//
// The chunks and blocks that expire are used again rather than left to
// the collector. A new one is fresh memory, and the first write to each
// of its pages faults: at 1000 calls a second a peer started a 1 MiB
// chunk about every half second, and zeroing and filling it held the
// peer for 3–4 ms on the benchmark's VM, where page faults are dear;
// growing a single slice of entries, and moving it back to its front,
// did the same on a larger scale (bench/README.md). In a steady state
// the table now allocates nothing.
//
// Not safe for concurrent use: each user's own mutex guards it.
type keptAnswers struct {
	seed  maphash.Seed
	index map[uint64]uint64 // key hash → sequence number of its entry
	// blocks hold the entries, oldest first, keptBlockLen each but the
	// last; blocks[0][head:] and the blocks after it are live.
	blocks [][]keptEntry
	head   int
	live   int
	first  uint64   // sequence number of blocks[0][head]
	chunks [][]byte // append-only; chunks[0] is chunk number chunk0
	chunk0 uint64
	bytes  int // keys and answers of the live entries
	// spare blocks and chunks, emptied, for reuse; at most keptSpare each
	spareBlocks [][]keptEntry
	spareChunks [][]byte
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

// keptBlockLen is the number of entries in a block (160 KB).
const keptBlockLen = 4096

// keptSpare is how many emptied chunks and blocks are kept for reuse: one
// goes as one is needed in a steady state, and more would only hold
// memory after the load has dropped.
const keptSpare = 2

// maxKeptBytes bounds the keys and answers kept, whatever their count:
// both are sized by the sender (its branch, its Via fields), up to a
// datagram each. 512 MiB holds Timer J at 16000 REGISTERs a second of
// ordinary ones (≈ 600 bytes); past it the oldest go early.
const maxKeptBytes = 512 << 20

func newKeptAnswers() *keptAnswers {
	return &keptAnswers{seed: maphash.MakeSeed(), index: map[uint64]uint64{}}
}

// put keeps answer under key until at.
func (k *keptAnswers) put(key string, answer []byte, at time.Time) {
	need := len(key) + len(answer)
	last := len(k.chunks) - 1
	if last < 0 || cap(k.chunks[last])-len(k.chunks[last]) < need {
		k.chunks = append(k.chunks, k.newChunk(need))
		last++
	}
	c := k.chunks[last]
	off := len(c)
	c = append(c, key...)
	k.chunks[last] = append(c, answer...)
	h := maphash.String(k.seed, key)
	seq := k.first + uint64(k.live)
	b := len(k.blocks) - 1
	if b < 0 || len(k.blocks[b]) == keptBlockLen {
		k.blocks = append(k.blocks, k.newBlock())
		b++
	}
	k.blocks[b] = append(k.blocks[b], keptEntry{hash: h, at: at.UnixNano(), chunk: k.chunk0 + uint64(last),
		off: uint32(off), keyLen: uint32(len(key)), ansLen: uint32(len(answer))})
	k.live++
	k.index[h] = seq
	k.bytes += need
}

// newChunk returns an empty chunk that takes need bytes: a spare one
// when it fits.
func (k *keptAnswers) newChunk(need int) []byte {
	if n := len(k.spareChunks); n > 0 && need <= keptChunkSize {
		c := k.spareChunks[n-1]
		k.spareChunks = k.spareChunks[:n-1]
		return c
	}
	return make([]byte, 0, max(keptChunkSize, need))
}

func (k *keptAnswers) newBlock() []keptEntry {
	if n := len(k.spareBlocks); n > 0 {
		b := k.spareBlocks[n-1]
		k.spareBlocks = k.spareBlocks[:n-1]
		return b
	}
	return make([]keptEntry, 0, keptBlockLen)
}

// entry returns the live entry with sequence number seq.
func (k *keptAnswers) entry(seq uint64) keptEntry {
	i := k.head + int(seq-k.first)
	return k.blocks[i/keptBlockLen][i%keptBlockLen]
}

// get returns a copy of the answer kept under key, or nil. An answer kept
// empty comes back empty, not nil.
func (k *keptAnswers) get(key string) []byte {
	seq, ok := k.index[maphash.String(k.seed, key)]
	if !ok || seq < k.first {
		return nil
	}
	e := k.entry(seq)
	c := k.chunks[e.chunk-k.chunk0]
	end := e.off + e.keyLen
	if string(c[e.off:end]) != key {
		return nil // another key with the same hash
	}
	// A copy: the chunk is written again once it has expired, and the
	// caller uses the answer after releasing the lock.
	out := make([]byte, e.ansLen)
	copy(out, c[end:end+e.ansLen])
	return out
}

// len is the number of kept answers.
func (k *keptAnswers) len() int { return k.live }

// expire drops the answers whose Timer J has fired by now, and the oldest
// ones past limit entries or maxKeptBytes, and then the chunks and blocks
// no answer needs any more.
func (k *keptAnswers) expire(now time.Time, limit int) {
	t := now.UnixNano()
	for k.live > 0 {
		e := k.blocks[0][k.head]
		if e.at >= t && k.live <= limit && k.bytes <= maxKeptBytes {
			break
		}
		if k.index[e.hash] == k.first {
			delete(k.index, e.hash)
		}
		k.bytes -= int(e.keyLen + e.ansLen)
		k.head++
		k.first++
		k.live--
		if k.head == keptBlockLen {
			k.spareBlocks = spare(k.spareBlocks, k.blocks[0])
			k.blocks[0] = nil
			k.blocks = k.blocks[1:]
			k.head = 0
		}
	}
	if len(k.chunks) == 0 {
		return
	}
	// The oldest live answer's chunk, or for none the newest chunk (it
	// may take more): every chunk before it goes.
	keep := k.chunk0 + uint64(len(k.chunks)) - 1
	if k.live > 0 {
		keep = k.blocks[0][k.head].chunk
	}
	for k.chunk0 < keep {
		if c := k.chunks[0]; cap(c) == keptChunkSize {
			k.spareChunks = spare(k.spareChunks, c)
		}
		k.chunks[0] = nil
		k.chunks = k.chunks[1:]
		k.chunk0++
	}
}

// spare adds an emptied chunk or block to list unless it has keptSpare.
func spare[T any](list [][]T, s []T) [][]T {
	if len(list) >= keptSpare {
		return list
	}
	return append(list, s[:0])
}

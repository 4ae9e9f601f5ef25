package sip

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"runtime"
	"testing"
	"time"
)

func TestKeptAnswers(t *testing.T) {
	k := newKeptAnswers()
	t0 := time.Now()
	big := bytes.Repeat([]byte("x"), keptChunkSize+10) // larger than a chunk
	for i := range 5000 {
		ans := []byte(fmt.Sprintf("SIP/2.0 200 OK %d\r\n\r\n", i))
		if i == 2500 {
			ans = big
		}
		k.put(fmt.Sprintf("z9hG4bK%d|127.0.0.1|5060|REGISTER", i), ans, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if k.len() != 5000 {
		t.Fatalf("%d kept, want 5000", k.len())
	}
	if got := k.get("z9hG4bK42|127.0.0.1|5060|REGISTER"); string(got) != "SIP/2.0 200 OK 42\r\n\r\n" {
		t.Fatalf("get = %q", got)
	}
	if got := k.get("z9hG4bK2500|127.0.0.1|5060|REGISTER"); !bytes.Equal(got, big) {
		t.Fatalf("the answer larger than a chunk came back with %d bytes", len(got))
	}
	if k.get("z9hG4bK5000|127.0.0.1|5060|REGISTER") != nil {
		t.Fatal("got an answer for a key never kept")
	}

	// Timer J: the first 3000 fire, in order; their chunks go.
	chunks := len(k.chunks)
	k.expire(t0.Add(2999*time.Millisecond+1), 1<<20)
	if k.len() != 2000 || k.get("z9hG4bK2999|127.0.0.1|5060|REGISTER") != nil || k.get("z9hG4bK3000|127.0.0.1|5060|REGISTER") == nil {
		t.Fatalf("after Timer J of the first 3000: %d kept", k.len())
	}
	if len(k.chunks) >= chunks {
		t.Fatalf("still %d chunks, had %d", len(k.chunks), chunks)
	}
	// The bound drops the oldest early.
	k.expire(t0, 10)
	if k.len() != 10 || k.get("z9hG4bK4989|127.0.0.1|5060|REGISTER") != nil || k.get("z9hG4bK4990|127.0.0.1|5060|REGISTER") == nil {
		t.Fatalf("after the bound: %d kept", k.len())
	}
	k.expire(t0.Add(time.Hour), 1<<20)
	if k.len() != 0 || len(k.index) != 0 || len(k.chunks) != 1 {
		t.Fatalf("after all expired: %d kept, %d indexed, %d chunks", k.len(), len(k.index), len(k.chunks))
	}
	k.put("again", []byte("answer"), t0.Add(time.Hour))
	if string(k.get("again")) != "answer" {
		t.Fatal("the table does not take answers after emptying")
	}
}

// A key whose hash names another key's entry gets nothing, not the other
// key's answer.
func TestKeptAnswersCollision(t *testing.T) {
	k := newKeptAnswers()
	k.put("a", []byte("answer of a"), time.Now().Add(time.Minute))
	k.index[maphash.String(k.seed, "b")] = k.index[maphash.String(k.seed, "a")] // forge a collision
	if got := k.get("b"); got != nil {
		t.Fatalf("b got %q", got)
	}
	// A later entry with the colliding hash takes the index; the earlier
	// one's expiry then leaves it alone.
	k.put("b", []byte("answer of b"), time.Now().Add(2*time.Minute))
	k.index[maphash.String(k.seed, "a")] = k.index[maphash.String(k.seed, "b")]
	k.expire(time.Now().Add(90*time.Second), 1<<20)
	if got := k.get("b"); string(got) != "answer of b" {
		t.Fatalf("b after a expired: %q", got)
	}
}

// Keys and answers are the sender's to size: the table is bounded in
// bytes as well as in entries.
func TestKeptAnswersByteBound(t *testing.T) {
	k := newKeptAnswers()
	at := time.Now().Add(time.Hour)
	big := bytes.Repeat([]byte("y"), 30000) // about a datagram
	for i := range 2 * maxKeptBytes / len(big) {
		k.put(fmt.Sprintf("z9hG4bK%d|h|5060|REGISTER", i), big, at)
		k.expire(time.Now(), 1<<30)
	}
	if k.bytes > maxKeptBytes {
		t.Fatalf("%d bytes kept, bound %d", k.bytes, maxKeptBytes)
	}
	held := 0
	for _, c := range k.chunks {
		held += cap(c)
	}
	// Chunks also hold the tail each leaves unused (here ≈ 3 %) and
	// the partly expired oldest one.
	if limit := maxKeptBytes*9/8 + 2*keptChunkSize; held > limit {
		t.Fatalf("chunks hold %d bytes, bound %d", held, limit)
	}
}

// TestKeptAnswersReuseMemory: in a steady state (answers expiring as fast
// as new ones come) the table reuses its chunks and blocks instead of
// allocating fresh memory, whose first touch faults page by page.
func TestKeptAnswersReuseMemory(t *testing.T) {
	k := newKeptAnswers()
	ans := bytes.Repeat([]byte("a"), 560)
	t0 := time.Now()
	const window = 20000 // live answers: several chunks and blocks
	put := func(i int) {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		k.put(fmt.Sprintf("z9hG4bK%08d|127.0.0.1|5060|INVITE", i), ans, at)
		k.expire(at.Add(-window*time.Millisecond), 1<<30)
	}
	for i := range 3 * window { // warm up: the index map and the spares
		put(i)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 5 * window
	for i := 3 * window; i < 3*window+n; i++ {
		put(i)
	}
	runtime.ReadMemStats(&after)
	if k.len() != window+1 && k.len() != window {
		t.Fatalf("%d live, want %d", k.len(), window)
	}
	// The key string (≈ 40 bytes) is the test's own; the map's rehashes
	// of deleted slots add a little. Without reuse a put costs its share
	// of a new chunk and block, ≈ 640 bytes.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 160 {
		t.Fatalf("%d bytes allocated per put in a steady state", per)
	}
}

// TestKeptAnswersGetCopies: an answer handed out stays intact when its
// chunk is written again after it expired.
func TestKeptAnswersGetCopies(t *testing.T) {
	k := newKeptAnswers()
	t0 := time.Now()
	k.put("first", []byte("the first answer"), t0)
	got := k.get("first")
	fill := bytes.Repeat([]byte("z"), 1000)
	for i := range 4 * keptChunkSize / len(fill) {
		at := t0.Add(time.Duration(i+1) * time.Millisecond)
		k.put(fmt.Sprint("k", i), fill, at)
		k.expire(at, 1<<30)
	}
	if string(got) != "the first answer" {
		t.Fatalf("the answer handed out changed: %q", got)
	}
	if k.put("empty", nil, t0.Add(time.Hour)); k.get("empty") == nil {
		t.Fatal("an answer kept empty came back nil")
	}
}

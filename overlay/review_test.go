package overlay

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// storeAlone serialises a lone peer's writes of one key, but checked the
// owner lock before taking the key's lock: a write by another owner that
// validated while the owner's record was being stored then replaced it
// (Select prefers the earlier claim), though the owner lock refuses it.
func TestReviewStoreAloneOwnerLockUnderKeyLock(t *testing.T) {
	n := loneNode(t)
	owner, other := mustKey(t), mustKey(t)
	aor := fmt.Sprintf("sip:held%d@test.overlay", time.Now().UnixNano())
	key := RegistrationKey(aor)
	mine := sampleReg(t, owner)
	mine.AOR = aor
	theirs := sampleReg(t, other)
	theirs.AOR = aor
	theirs.Created -= 60 // claims an earlier start, so Select would pick it
	ownValue, otherValue := sign(t, mine, owner), sign(t, theirs, other)

	mu := &n.storeLocks[stripe(key)]
	mu.Lock() // the owner's write is in progress
	done := make(chan error, 1)
	go func() { _, err := n.storeAlone(context.Background(), key, otherValue, nil); done <- err }()
	time.Sleep(100 * time.Millisecond) // the other write waits for the key
	if err := n.store.Put(context.Background(), storeKey(key), encodeStored(key, ownValue, time.Now())); err != nil {
		mu.Unlock()
		t.Fatal(err)
	}
	mu.Unlock()
	err := <-done
	if got := n.localValue(key); string(got) != string(ownValue) {
		t.Fatalf("another owner's record replaced the held one (storeAlone: %v)", err)
	}
	if !errors.Is(err, ErrAORHeld) {
		t.Fatalf("storeAlone = %v, want ErrAORHeld", err)
	}
}

package overlay

import (
	"errors"
	"testing"
	"time"
)

type stuckCloser chan struct{}

func (s stuckCloser) Close() error { <-s; return nil }

type quickCloser struct{ err error }

func (q quickCloser) Close() error { return q.err }

// A part that never stops does not hang Close: it gives up with
// ErrCloseTimeout; one that stops passes its error on.
func TestCloseWithin(t *testing.T) {
	stuck := make(stuckCloser)
	defer close(stuck)
	start := time.Now()
	if err := closeWithin(stuck, 50*time.Millisecond); !errors.Is(err, ErrCloseTimeout) {
		t.Fatalf("stuck close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stuck close took %v", d)
	}
	boom := errors.New("boom")
	if err := closeWithin(quickCloser{boom}, time.Second); !errors.Is(err, boom) {
		t.Fatalf("quick close: %v", err)
	}
	if err := closeWithin(quickCloser{}, time.Second); err != nil {
		t.Fatalf("clean close: %v", err)
	}
}

package sip

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLookupCtx(t *testing.T) {
	c := newLookupCtx(20 * time.Millisecond)
	if d, ok := c.Deadline(); !ok || time.Until(d) <= 0 {
		t.Fatalf("Deadline = %v, %v", d, ok)
	}
	if c.Err() != nil {
		t.Fatalf("Err before the deadline: %v", c.Err())
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done never closed")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v, want deadline exceeded", c.Err())
	}
	c.release()

	// Released before anything waited: done, and no timer was armed.
	c = newLookupCtx(time.Hour)
	c.release()
	if c.cancel != nil {
		t.Fatal("release armed a timer")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("released context not done")
	}
	// A child context inherits the deadline.
	c = newLookupCtx(time.Hour)
	child, cancel := context.WithCancel(c)
	cancel()
	if child.Err() == nil || c.Err() != nil {
		t.Fatal("child cancel leaked into the parent")
	}
	c.release()
}

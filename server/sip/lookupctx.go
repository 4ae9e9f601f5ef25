package sip

import (
	"context"
	"sync"
	"time"
)

// lookupCtx bounds the target lookup of one request (s.cfg.RequestTimeout)
// without arming a timer unless something waits on it. Most lookups end
// without blocking (a local flow, the overlay's lookup cache, an IP
// literal), and a context.WithTimeout per request cost a timer, a channel
// and their garbage at thousands of requests a second. Done or Err arm a
// real deadline context, so a lookup that does block is bounded as before.
type lookupCtx struct {
	deadline time.Time
	once     sync.Once
	ctx      context.Context
	cancel   context.CancelFunc
}

func newLookupCtx(timeout time.Duration) *lookupCtx {
	return &lookupCtx{deadline: time.Now().Add(timeout)}
}

func (c *lookupCtx) arm() context.Context {
	c.once.Do(func() { c.ctx, c.cancel = context.WithDeadline(context.Background(), c.deadline) })
	return c.ctx
}

func (c *lookupCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *lookupCtx) Done() <-chan struct{}       { return c.arm().Done() }
func (c *lookupCtx) Err() error                  { return c.arm().Err() }
func (c *lookupCtx) Value(any) any               { return nil }

// release frees the timer, if one was armed; the context is then done
// (a goroutine the lookup left behind may still ask).
func (c *lookupCtx) release() {
	c.once.Do(func() { c.ctx = canceledCtx })
	if c.cancel != nil {
		c.cancel()
	}
}

var canceledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

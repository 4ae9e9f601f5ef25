package relay

import (
	"net"
	"sync"
	"time"
)

// mintLimiter counts credentials minted per user id in fixed one-minute
// windows. The map holds only the ids seen in the current window.
type mintLimiter struct {
	mu     sync.Mutex
	limit  int // negative: no cap
	window time.Time
	counts map[string]int
}

func (l *mintLimiter) take(user string, now time.Time) bool {
	if l.limit < 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := now.Truncate(time.Minute); !w.Equal(l.window) || l.counts == nil {
		l.window, l.counts = w, map[string]int{}
	}
	if l.counts[user] >= l.limit {
		return false
	}
	l.counts[user]++
	return true
}

// allocCounter counts live allocations per user id and in total. The
// relayed sockets are the source of truth: a slot is taken when one opens
// (relayGen) and given back when pion closes it, so no event can be missed.
type allocCounter struct {
	mu       sync.Mutex
	perUser  int // negative: no cap
	total    int // negative: no cap
	byUser   map[string]int
	live     int
	onChange func(live int)
}

// full reports whether one more allocation for user would exceed a quota,
// and which.
func (c *allocCounter) full(user string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fullLocked(user)
}

func (c *allocCounter) fullLocked(user string) (string, bool) {
	switch {
	case c.total >= 0 && c.live >= c.total:
		return reasonTotalQuota, true
	case c.perUser >= 0 && c.byUser[user] >= c.perUser:
		return reasonUserQuota, true
	}
	return "", false
}

// acquire takes a slot, or reports the quota that is full.
func (c *allocCounter) acquire(user string) (release func(), reason string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason, full := c.fullLocked(user); full {
		return nil, reason, false
	}
	c.byUser[user]++
	c.live++
	c.onChange(c.live)
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.byUser[user]--; c.byUser[user] <= 0 {
				delete(c.byUser, user)
			}
			c.live--
			c.onChange(c.live)
		})
	}, "", true
}

// quotaHandler is pion's hook before an allocation is made: it answers 486
// Allocation Quota Reached (RFC 8656 §7.2 step 10, which asks for a quota
// by username, not by transport address).
func (s *Server) quotaHandler(userID, _ string, src net.Addr) bool {
	if reason, full := s.allocs.full(userID); full {
		s.refuse(reason, "user", userID, "client", addrString(src))
		return false
	}
	return true
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

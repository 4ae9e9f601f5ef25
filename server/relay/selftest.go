package relay

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pion/turn/v5"
)

// selfTestUser is the user id of the self-test's credentials.
const selfTestUser = "selftest"

// SelfTest allocates on the relay through addr (host:port of its public
// UDP address, as a client on the Internet would reach it) with pion's
// client, then releases the allocation. It returns the time the Allocate
// exchange took (the 401 challenge and the authenticated request). A relay
// whose public address or port is not what it thinks fails here, at start,
// rather than in a user's call.
func (s *Server) SelfTest(ctx context.Context, addr string) (time.Duration, error) {
	cred := s.mint(selfTestUser, time.Minute)
	network := "udp4"
	if !s.cfg.RelayIP.Is4() {
		network = "udp6"
	}
	conn, err := net.ListenPacket(network, ":0")
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSelfTest, err)
	}
	defer func() { _ = conn.Close() }()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr,
		Username: cred.Username, Password: cred.Password, Realm: s.cfg.Realm,
		Conn: conn, LoggerFactory: pionLogger{s.log}, Software: "p2psip-selftest",
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSelfTest, err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSelfTest, err)
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 10*time.Second {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	start := time.Now()
	relayed, err := c.AllocateWithContext(ctx)
	rtt := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%w: allocating through %s: %w", ErrSelfTest, addr, err)
	}
	_ = relayed.Close() // sends a Refresh with lifetime 0: the allocation is freed now
	return rtt, nil
}

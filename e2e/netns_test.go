//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// TestMDNSInNamespace: two peers on an otherwise empty network (a namespace with
// only lo) find each other by mDNS alone: no --join, no --bootstrap. The status
// checks run inside the namespace too, since its loopback is not the host's.
func TestMDNSInNamespace(t *testing.T) {
	ns := newNetns(t)
	a := startPeerOpts(t, peerOpts{name: "A", wrapper: ns, mdns: true})
	b := startPeerOpts(t, peerOpts{name: "B", wrapper: ns, mdns: true})

	for _, pair := range [][2]*peer{{a, b}, {b, a}} {
		self, other := pair[0], pair[1]
		eventually(t, 20*time.Second, 500*time.Millisecond, self.Name+" finds "+other.Name+" by mDNS", func() (bool, string) {
			st, res := self.status(t)
			return res.Code == 0 && st.hasPeer(other.NodeID), res.String()
		})
	}
}

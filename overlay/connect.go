package overlay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// connectAttempts bounds the retries of one Connect. A burst of joins on
// one bootstrap peer can exhaust its resource limits for a moment; a few
// retries with jittered backoff spread the burst out.
const connectAttempts = 6

// Connect dials a peer with retries and waits (briefly) until the DHT
// has added it to the routing table, so that a put right after Connect
// reaches it.
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if ai.ID == n.host.ID() {
		return nil
	}
	backoff := 200 * time.Millisecond
	var err error
	for attempt := 1; attempt <= connectAttempts; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, n.cfg.ConnectTimeout)
		err = n.host.Connect(cctx, ai)
		cancel()
		if err == nil {
			n.waitRoutable(ctx, ai.ID)
			n.kickRefresh()
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, swarm.ErrDialBackoff) {
			// libp2p's swarm remembers addresses that failed (5 s, growing
			// with each failure up to 5 min) and skips them: a LAN that
			// drops SYNs costs one dial timeout, not one per attempt.
			n.metrics.dialBackoffs.Inc()
			n.log.Info("not dialling peer: all its addresses failed recently (libp2p dial backoff)",
				"peer", ai.ID, "attempt", attempt)
		} else {
			n.log.Debug("connect failed, retrying", "peer", ai.ID, "attempt", attempt, "err", err)
		}
		select {
		case <-time.After(backoff + rand.N(backoff)):
		case <-ctx.Done():
		}
		backoff *= 2
	}
	return fmt.Errorf("%w: connecting to %s: %w", ErrJoin, ai.ID, err)
}

// waitRoutable waits up to 5 s for id to enter the routing table (the DHT
// adds a peer once identify shows it speaks our DHT protocol).
func (n *Node) waitRoutable(ctx context.Context, id peer.ID) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if n.dht.RoutingTable().Find(id) != "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *Node) kickRefresh() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// membershipLoop keeps the node in the overlay: it dials the configured
// bootstrap peers at start and again whenever the routing table is
// empty, so a peer started before its bootstrap peer joins once that peer
// is up.
func (n *Node) membershipLoop() {
	defer n.wg.Done()
	wait := time.Duration(0)
	for n.sleep(wait) {
		if n.dht.RoutingTable().Size() == 0 {
			for _, u := range n.cfg.JoinURLs {
				if err := n.JoinURL(n.ctx, u); err != nil && n.ctx.Err() == nil {
					n.log.Warn("could not join through URL; will retry", "url", u, "err", err)
				} else if err == nil {
					n.log.Info("joined overlay through URL", "url", u)
				}
			}
			for _, ai := range n.cfg.Bootstrap {
				if err := n.Connect(n.ctx, ai); err != nil && n.ctx.Err() == nil {
					n.log.Warn("bootstrap peer unreachable; will retry", "peer", ai.ID, "err", err)
				} else if err == nil {
					n.log.Info("joined overlay through bootstrap peer", "peer", ai.ID)
				}
			}
		}
		wait = 30 * time.Second
	}
}

// mdnsServiceName derives the mDNS service from the overlay name, so
// peers of other overlays on the same LAN are never dialled.
func mdnsServiceName(overlay string) string {
	sum := sha256.Sum256([]byte(overlay))
	return "_p2psip-" + hex.EncodeToString(sum[:6]) + "._udp"
}

func (n *Node) startMDNS() error {
	svc := mdns.NewMdnsService(n.host, mdnsServiceName(n.cfg.Name), mdnsNotifee{n})
	if err := svc.Start(); err != nil {
		return fmt.Errorf("starting mDNS: %w", err)
	}
	n.mu.Lock()
	n.stopMDNS = svc.Close
	n.mu.Unlock()
	return nil
}

type mdnsNotifee struct{ n *Node }

// HandlePeerFound implements mdns.Notifee. Two peers that find each other
// at once must not both dial (simultaneous dials can each kill the other's
// connection): the smaller ID dials at once, the larger only if no
// connection exists a few seconds later.
func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	n := m.n
	if ai.ID == n.host.ID() || n.isClosed() {
		return
	}
	delay := time.Duration(0)
	if n.host.ID() > ai.ID {
		delay = 3 * time.Second
	}
	go func() {
		if !n.sleep(delay) || len(n.host.Network().ConnsToPeer(ai.ID)) > 0 {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
		defer cancel()
		if err := n.Connect(ctx, ai); err != nil {
			n.log.Debug("mDNS peer unreachable", "peer", ai.ID, "err", err)
			return
		}
		n.log.Info("found overlay peer on the LAN", "peer", ai.ID)
	}()
}

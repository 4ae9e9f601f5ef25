package overlay

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"
)

// refreshLoop republishes what this node hosts every RefreshInterval, and
// at once when a new peer joins: the Kademlia DHT does not move values to
// the peers that became closest to a key after churn, so the publisher
// puts them again (the same thing IPFS does for IPNS records).
func (n *Node) refreshLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
		n.Refresh(n.ctx)
	}
}

// Refresh republishes every hosted registration and service entry now.
func (n *Node) Refresh(ctx context.Context) {
	start := time.Now()
	if n.dht.RoutingTable().Size() > 0 {
		n.unspread.Store(false)
	}
	n.mu.Lock()
	aors := slices.Collect(maps.Keys(n.hosted))
	services := slices.Collect(maps.Keys(n.services))
	n.mu.Unlock()
	for _, aor := range aors {
		if err := n.refreshRegistration(ctx, aor); err != nil && ctx.Err() == nil {
			n.log.Warn("republishing registration failed; will retry", "aor", aor, "err", err)
		}
	}
	for _, svc := range services {
		if err := n.republishService(ctx, svc, false); err != nil && ctx.Err() == nil {
			n.log.Warn("republishing service entry failed; will retry", "service", svc, "err", err)
		}
	}
	n.metrics.observe("refresh", start, nil)
}

// refreshRegistration republishes one hosted AOR. When the overlay's
// record still carries this node's bindings it is put again as it is;
// when it lacks them (a concurrent update by another device of the user
// won), the bindings are merged back in under a new sequence number.
func (n *Node) refreshRegistration(ctx context.Context, aor string) error {
	now := time.Now()
	n.mu.Lock()
	h := n.hosted[aor]
	if h == nil {
		n.mu.Unlock()
		return nil
	}
	h.mine = slices.DeleteFunc(h.mine, func(b Binding) bool { return b.Expires <= now.Unix() })
	if len(h.mine) == 0 {
		delete(n.hosted, aor) // expired: the record lapses by itself
		n.mu.Unlock()
		return nil
	}
	mine := slices.Clone(h.mine)
	signer, dev, last := h.signer, h.device, h.value
	n.mu.Unlock()

	cur, err := n.current(ctx, RegistrationKey(aor))
	if err != nil {
		return err
	}
	if signer == nil || (cur != nil && carries(cur, mine)) {
		value := last
		if cur != nil && signer != nil {
			value = nil // republish the overlay's newest version
		}
		return n.republishValue(ctx, aor, value)
	}
	owner := signer.PublicKey()
	if dev != nil {
		owner = dev.Owner
	}
	next, err := n.nextRecord(aor, cur, owner, dev, func(bs []Binding) []Binding {
		bs = slices.DeleteFunc(bs, func(b Binding) bool { return hasInstance(mine, b.Instance) })
		return append(bs, mine...)
	})
	if err != nil {
		return err
	}
	value, err := n.publish(ctx, RegistrationKey(aor), next, signer)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if h := n.hosted[aor]; h != nil {
		h.value = value
	}
	n.mu.Unlock()
	return nil
}

// republishValue puts value (or, when nil, the newest value the node has
// for the AOR) again.
func (n *Node) republishValue(ctx context.Context, aor string, value []byte) error {
	key := RegistrationKey(aor)
	if value == nil {
		v, err := n.dht.GetValue(ctx, key)
		if err != nil {
			v = n.localValue(key)
		}
		value = v
	}
	if value == nil {
		return nil
	}
	// A stored newer version (another device's update) wins over ours:
	// republish that one, or PutValue would refuse before reaching peers.
	if local := n.localValue(key); local != nil {
		if i, err := n.valid.Select(key, [][]byte{value, local}); err == nil && i == 1 {
			value = local
		}
	}
	return n.put(ctx, key, value)
}

// carries reports whether reg holds every binding in mine, unchanged.
func carries(reg *Registration, mine []Binding) bool {
	for _, m := range mine {
		if !slices.ContainsFunc(reg.Bindings, func(b Binding) bool {
			return b.Instance == m.Instance && b.Contact == m.Contact && b.Expires == m.Expires && b.Node == m.Node
		}) {
			return false
		}
	}
	return true
}

// withdrawAll removes this node's bindings and service entries, in
// parallel, bounded by ctx. It runs on Close.
func (n *Node) withdrawAll(ctx context.Context) error {
	n.mu.Lock()
	aors := slices.Collect(maps.Keys(n.hosted))
	services := slices.Collect(maps.Keys(n.services))
	n.mu.Unlock()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, aor := range aors {
		wg.Go(func() {
			if err := n.Unregister(ctx, aor, ""); err != nil && !errors.Is(err, ErrNotFound) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	for _, svc := range services {
		wg.Go(func() {
			if err := n.Withdraw(ctx, svc); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

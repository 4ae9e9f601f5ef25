package overlay

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// Service names the proxy and relay roles announce under.
const (
	ServiceProxy = "proxy"
	ServiceRelay = "relay"
)

// hostedSvc is a service entry this node announces and republishes.
type hostedSvc struct {
	entry ServiceEntry
}

// serviceCID is the provider key of a service: peers that announce it
// are found with FindProviders, then each one's own signed entry is read
// from /sip/svc/<service>/<peer id>. Provider records say only "this peer
// has it"; the signed entry carries the role data and cannot be written by
// anyone but that peer.
func (n *Node) serviceCID(service string) cid.Cid {
	sum := sha256.Sum256([]byte("/p2psip/" + n.cfg.Name + "/svc/" + service))
	hash, _ := mh.Encode(sum[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, hash)
}

// Announce publishes this node's entry under a service. Node, Seq and
// Expires are filled in; Addrs default to the node's addresses. The node
// republishes the entry until Withdraw or Close.
func (n *Node) Announce(ctx context.Context, e ServiceEntry) (err error) {
	defer func(start time.Time) { n.metrics.observe("announce", start, err) }(time.Now())
	if !validServiceName(e.Service) {
		return fmt.Errorf("%w: service name %q", ErrBadRecord, e.Service)
	}
	n.mu.Lock()
	if prev := n.services[e.Service]; prev != nil {
		e.Seq = prev.entry.Seq
	}
	n.services[e.Service] = &hostedSvc{entry: e}
	n.mu.Unlock()
	return n.republishService(ctx, e.Service, false)
}

// Withdraw replaces this node's entry under service with a withdrawn one.
func (n *Node) Withdraw(ctx context.Context, service string) error {
	return n.republishService(ctx, service, true)
}

// republishService signs the hosted entry with a new sequence number and
// expiry, stores it and re-provides the service key.
func (n *Node) republishService(ctx context.Context, service string, withdraw bool) error {
	n.mu.Lock()
	h := n.services[service]
	if h == nil {
		n.mu.Unlock()
		return fmt.Errorf("%w: this peer does not announce %q", ErrNotFound, service)
	}
	e := h.entry
	e.Node, e.Seq = n.ID(), e.Seq+1
	e.Expires = time.Now().Add(n.cfg.ServiceTTL).Unix()
	if len(e.Addrs) == 0 {
		e.Addrs = n.Addrs()
	}
	if withdraw {
		e.Addrs, e.URIs, e.Data = nil, nil, map[string]string{"withdrawn": "true"}
		e.Expires = time.Now().Add(n.cfg.RefreshInterval).Unix()
		delete(n.services, service)
	} else {
		h.entry.Seq = e.Seq
	}
	n.mu.Unlock()
	value, err := n.signService(&e)
	if err != nil {
		return err
	}
	if err := n.put(ctx, ServiceKey(service, e.Node), value); err != nil {
		return err
	}
	if withdraw {
		return nil
	}
	if n.dht.RoutingTable().Size() == 0 {
		n.unspread.Store(true) // alone: provided once the first peer comes
		return nil
	}
	if err := n.dht.Provide(ctx, n.serviceCID(service), true); err != nil {
		return fmt.Errorf("providing %s: %w", service, err)
	}
	return nil
}

func (n *Node) signService(e *ServiceEntry) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encoding service entry: %w", err)
	}
	sig, err := n.cfg.Identity.Sign(append([]byte(recordDomain), body...))
	if err != nil {
		return nil, fmt.Errorf("signing service entry: %w", err)
	}
	pubBytes, err := crypto.MarshalPublicKey(n.cfg.Identity.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("encoding node key: %w", err)
	}
	return encodeEnvelope(&Envelope{Alg: AlgLibp2p, Body: body, Signer: pubBytes, Sig: sig})
}

// FindService returns up to limit live entries announced under service,
// this node's own included.
func (n *Node) FindService(ctx context.Context, service string, limit int) (out []ServiceEntry, err error) {
	defer func(start time.Time) { n.metrics.observe("find_service", start, err) }(time.Now())
	if !validServiceName(service) {
		return nil, fmt.Errorf("%w: service name %q", ErrBadRecord, service)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	if limit <= 0 {
		limit = 20
	}
	providers := n.dht.FindProvidersAsync(ctx, n.serviceCID(service), limit)
	ids := []peer.ID{n.host.ID()}
	for ai := range providers {
		if ai.ID != n.host.ID() {
			ids = append(ids, ai.ID)
		}
	}
	for _, id := range ids {
		wg.Add(1)
		go func(id peer.ID) {
			defer wg.Done()
			value, err := n.dht.GetValue(ctx, ServiceKey(service, id.String()))
			if err != nil {
				value = n.localValue(ServiceKey(service, id.String()))
			}
			if value == nil {
				return
			}
			e, err := n.valid.ValidateService(ServiceKey(service, id.String()), value)
			if err != nil || e.Data["withdrawn"] == "true" {
				return
			}
			mu.Lock()
			out = append(out, *e)
			mu.Unlock()
		}(id)
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b ServiceEntry) int {
		if a.Node < b.Node {
			return -1
		}
		return 1
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no %s in the overlay", ErrNotFound, service)
	}
	return out, nil
}

package sip

import (
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multibase"
)

// peerDomain is the suffix of the host names that name overlay peers on
// the wire: "<node id as a base36 CIDv1>.p2psip.invalid". RFC 6761 §6.4
// reserves .invalid, so no resolver anywhere answers for these names and a
// request that escapes the overlay fails at once instead of reaching a
// stranger. A peer resolves them to a stream of the overlay (peerlink.go),
// never to DNS.
//
// The node id goes in base36 because host names are case-insensitive
// (base58 peer ids are not); a base36 CIDv1 of an Ed25519 peer id is 62
// characters, which fits one DNS label (RFC 1035 §2.3.4: 63), the same
// form libp2p uses for IPNS names on subdomain gateways.
const peerDomain = ".p2psip.invalid"

// PeerHost is the host name that names node id on the wire.
func PeerHost(id string) (string, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return "", err
	}
	label, err := peer.ToCid(pid).StringOfBase(multibase.Base36)
	if err != nil {
		return "", err
	}
	return label + peerDomain, nil
}

// NodeOfHost returns the node id a peer host name names, and false for any
// other host. It accepts the name in any letter case.
//
// A call asks it several times per request on each peer (routing, the
// dialog's hops, the stream's destination), and decoding the base36 CID
// and encoding the base58 id was 2 % of two peers' CPU relaying 350
// calls/s (bench/peers/run.sh, PERF=1), so the answers for names seen are
// kept (nodeNames).
func NodeOfHost(host string) (string, bool) {
	if len(host) <= len(peerDomain) || !strings.EqualFold(host[len(host)-len(peerDomain):], peerDomain) {
		return "", false
	}
	if id, ok := nodeNames.get(host); ok {
		return id, true
	}
	label := strings.ToLower(host[:len(host)-len(peerDomain)])
	if len(label) > 63 || !strings.HasPrefix(label, "k") {
		return "", false // only the lower-case base36 multibase prefix
	}
	pid, err := peer.Decode(label)
	if err != nil {
		return "", false
	}
	id := pid.String()
	nodeNames.put(host, id)
	return id, true
}

// nodeNames maps peer host names (as they came: the letter case is part
// of the key) to node ids. Only names that decode are kept, so a sender
// cannot fill it with garbage; it still starts over at nodeNamesMax, as
// anyone can mint valid node ids.
var nodeNames = &nameCache{m: map[string]string{}}

const nodeNamesMax = 4096

type nameCache struct {
	mu sync.RWMutex
	m  map[string]string // guarded by mu
}

func (c *nameCache) get(host string) (string, bool) {
	c.mu.RLock()
	id, ok := c.m[host]
	c.mu.RUnlock()
	return id, ok
}

func (c *nameCache) put(host, id string) {
	c.mu.Lock()
	if len(c.m) >= nodeNamesMax {
		clear(c.m)
	}
	c.m[host] = id
	c.mu.Unlock()
}

package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// TURN credentials over the overlay: a peer asks a relay (a node that
// announces ServiceRelay) for a short-lived TURN credential on behalf of
// one of its registered users or of its own bridge. The stream's remote
// node is the requester, authenticated by the libp2p handshake; the relay
// answers only overlay members, and at most CredsPerMinute times a minute
// per node.

// ErrRefused means the other node refused a request: not a member, over
// its quota, or it cannot serve it.
var ErrRefused = errors.New("overlay: request refused")

// TURNCredRequest asks a relay for a credential.
type TURNCredRequest struct {
	// User is who the credential is for: an opaque id the requester
	// chooses for one of its users (1 to 64 letters, digits, '.', '-',
	// '_'), or empty for the requester's own bridge.
	User string `json:"user,omitempty"`
}

// TURNCred is a relay's answer: a TURN REST credential and the URIs it is
// good for.
type TURNCred struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	Expires  int64    `json:"expires"` // Unix seconds
	URLs     []string `json:"urls"`
}

// credResponse is the wire answer: a credential or an error.
type credResponse struct {
	TURNCred
	Error string `json:"error,omitempty"`
}

// TURNCredMinter mints a credential for requester (a node id, already
// checked to be an overlay member) on behalf of user ("" for the
// requester's bridge).
type TURNCredMinter func(ctx context.Context, requester, user string) (TURNCred, error)

const (
	// credTimeout bounds a whole credential exchange.
	credTimeout = 10 * time.Second
	// maxCredMsg bounds a request or an answer.
	maxCredMsg = 8 << 10
	// maxCredUser bounds TURNCredRequest.User.
	maxCredUser = 64
	// DefaultCredsPerMinute is the per-node mint quota of HandleTURNCreds.
	DefaultCredsPerMinute = 30
)

// TURNCredProtocol is the stream protocol of credential requests.
func (n *Node) TURNCredProtocol() protocol.ID {
	return protocol.ID("/p2psip/" + n.cfg.Name + "/turn-cred/1.0.0")
}

// ValidCredUser tells whether u may be a TURNCredRequest.User.
func ValidCredUser(u string) bool {
	if len(u) > maxCredUser {
		return false
	}
	for _, r := range u {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
		if !ok {
			return false
		}
	}
	return true
}

// HandleTURNCreds serves credential requests with mint, for overlay
// members only, at most perMinute a minute per requesting node (0: the
// default; negative: no cap).
func (n *Node) HandleTURNCreds(perMinute int, mint TURNCredMinter) {
	if perMinute == 0 {
		perMinute = DefaultCredsPerMinute
	}
	q := &nodeQuota{perMinute: perMinute, used: map[peer.ID]*quotaWindow{}}
	n.host.SetStreamHandler(n.TURNCredProtocol(), func(s network.Stream) {
		defer func() { _ = s.Close() }()
		_ = s.SetDeadline(time.Now().Add(credTimeout))
		from := s.Conn().RemotePeer()
		answer := func(r credResponse) {
			b, _ := json.Marshal(r)
			_, _ = s.Write(b)
		}
		if !n.isMember(from) {
			n.log.Info("TURN credential refused: not a member of this overlay", "peer", from)
			answer(credResponse{Error: "not a member of this overlay"})
			return
		}
		var req TURNCredRequest
		if err := json.NewDecoder(io.LimitReader(s, maxCredMsg)).Decode(&req); err != nil {
			answer(credResponse{Error: "malformed request"})
			return
		}
		if !ValidCredUser(req.User) {
			answer(credResponse{Error: "malformed user id"})
			return
		}
		if !q.take(from, time.Now()) {
			n.log.Info("TURN credential refused: node over its quota", "peer", from, "per_minute", perMinute)
			answer(credResponse{Error: fmt.Sprintf("quota: %d credentials a minute per node", perMinute)})
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, credTimeout)
		defer cancel()
		cred, err := mint(ctx, from.String(), req.User)
		if err != nil {
			answer(credResponse{Error: err.Error()})
			return
		}
		answer(credResponse{TURNCred: cred})
	})
}

// RequestTURNCred asks node id (a relay) for a credential on behalf of
// user ("" for this node's bridge).
func (n *Node) RequestTURNCred(ctx context.Context, id, user string) (TURNCred, error) {
	if !ValidCredUser(user) {
		return TURNCred{}, fmt.Errorf("%w: user id %q", ErrBadConfig, user)
	}
	pid, err := peer.Decode(id)
	if err != nil {
		return TURNCred{}, fmt.Errorf("%w: node id %q: %w", ErrBadConfig, id, err)
	}
	if pid == n.host.ID() {
		return TURNCred{}, fmt.Errorf("%w: a credential request to this node itself", ErrBadConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, credTimeout)
	defer cancel()
	if n.host.Network().Connectedness(pid) != network.Connected {
		if err := n.connectPeer(ctx, pid); err != nil {
			return TURNCred{}, err
		}
	}
	s, err := n.host.NewStream(network.WithAllowLimitedConn(ctx, "turn-cred"), pid, n.TURNCredProtocol())
	if err != nil {
		return TURNCred{}, fmt.Errorf("%w: asking %s for a TURN credential: %w", ErrUnreachable, id, err)
	}
	defer func() { _ = s.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	body, _ := json.Marshal(TURNCredRequest{User: user})
	if _, err := s.Write(body); err != nil {
		_ = s.Reset()
		return TURNCred{}, fmt.Errorf("%w: asking %s for a TURN credential: %w", ErrUnreachable, id, err)
	}
	_ = s.CloseWrite()
	var r credResponse
	if err := json.NewDecoder(io.LimitReader(s, maxCredMsg)).Decode(&r); err != nil {
		return TURNCred{}, fmt.Errorf("%w: reading %s's TURN credential: %w", ErrUnreachable, id, err)
	}
	if r.Error != "" {
		return TURNCred{}, fmt.Errorf("%w: %s: %s", ErrRefused, id, r.Error)
	}
	if r.Username == "" || r.Password == "" || r.Expires <= 0 {
		return TURNCred{}, fmt.Errorf("%w: %s answered an empty TURN credential", ErrBadRecord, id)
	}
	return r.TURNCred, nil
}

// nodeQuota counts requests per node in one-minute windows.
type nodeQuota struct {
	mu        sync.Mutex
	perMinute int
	used      map[peer.ID]*quotaWindow
	swept     time.Time
}

type quotaWindow struct {
	start time.Time
	n     int
}

func (q *nodeQuota) take(p peer.ID, now time.Time) bool {
	if q.perMinute < 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.swept) > time.Minute {
		for id, w := range q.used {
			if now.Sub(w.start) >= time.Minute {
				delete(q.used, id)
			}
		}
		q.swept = now
	}
	w := q.used[p]
	if w == nil || now.Sub(w.start) >= time.Minute {
		w = &quotaWindow{start: now}
		q.used[p] = w
	}
	if w.n >= q.perMinute {
		return false
	}
	w.n++
	return true
}

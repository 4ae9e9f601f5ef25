package overlay

import (
	"context"
	"net"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"

	"github.com/p2psip/p2psip/internal/rawconn"
)

// rawSecurity is a security transport (Noise or TLS) over a connection
// read and written with raw system calls (internal/rawconn): every SIP
// message between two peers is a write on that TCP socket, and as a
// blocking system call each let the runtime hand the peer's only P to
// another thread. Connections without a socket of their own (WebSocket,
// a relayed circuit, a PSK-wrapped one) are passed through as they are.
type rawSecurity struct{ sec.SecureTransport }

func (r rawSecurity) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return r.SecureTransport.SecureInbound(ctx, rawconn.Wrap(insecure), p)
}

func (r rawSecurity) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return r.SecureTransport.SecureOutbound(ctx, rawconn.Wrap(insecure), p)
}

// newNoise and newTLS are libp2p.Security constructors of the two
// security transports over raw sockets.
func newNoise(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*rawSecurity, error) {
	return overRawSockets(noise.New(id, key, muxers))
}

func newTLS(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*rawSecurity, error) {
	return overRawSockets(libp2ptls.New(id, key, muxers))
}

func overRawSockets[T sec.SecureTransport](t T, err error) (*rawSecurity, error) {
	if err != nil {
		return nil, err
	}
	return &rawSecurity{t}, nil
}

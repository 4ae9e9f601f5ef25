package overlay

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// TestRawSecurity runs both security transports' handshakes over a
// loopback TCP pair and moves data through them: the connections under
// them are read and written with raw system calls (on Linux; internal/
// rawconn tests those), and the peers still authenticate each other's
// node keys.
func TestRawSecurity(t *testing.T) {
	for _, tc := range []struct {
		id  protocol.ID
		new func(protocol.ID, crypto.PrivKey, []tptu.StreamMuxer) (*rawSecurity, error)
	}{{noise.ID, newNoise}, {libp2ptls.ID, newTLS}} {
		t.Run(string(tc.id), func(t *testing.T) {
			transport := func() (*rawSecurity, peer.ID) {
				k, _, err := crypto.GenerateEd25519Key(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				id, _ := peer.IDFromPrivateKey(k)
				st, err := tc.new(tc.id, k, nil)
				if err != nil {
					t.Fatal(err)
				}
				return st, id
			}
			srv, srvID := transport()
			cli, cliID := transport()
			a, b := tcpPair(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			type result struct {
				c   sec.SecureConn
				err error
			}
			in := make(chan result, 1)
			go func() {
				c, err := srv.SecureInbound(ctx, a, "")
				in <- result{c, err}
			}()
			out, err := cli.SecureOutbound(ctx, b, srvID)
			if err != nil {
				t.Fatal(err)
			}
			r := <-in
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.c.Close()
			defer out.Close()
			if got := r.c.RemotePeer(); got != cliID {
				t.Fatalf("server sees %s, want %s", got, cliID)
			}
			msg := make([]byte, 256<<10)
			_, _ = rand.Read(msg)
			go func() { _, _ = out.Write(msg) }()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(r.c, got); err != nil || string(got) != string(msg) {
				t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(msg))
			}
		})
	}
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	return s, c
}

package overlay

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/websocket"
)

// BenchmarkStreamTransports measures one SIP-sized request and answer
// (800 bytes each way) over a libp2p stream on each kind of connection
// the overlay makes, both hosts in this process: the CPU time per round
// trip (cpu-us/op, user+system of the process) tells which connection
// is the cheapest one for SIP streams. Run it alone on one core:
//
//	flock /tmp/bench.lock taskset -c 0 go test -run '^$' -bench StreamTransports -cpu 1 ./overlay/
func BenchmarkStreamTransports(b *testing.B) {
	for _, tc := range []struct {
		name   string
		listen string
		opts   []libp2p.Option
	}{
		{"tcp-noise", "/ip4/127.0.0.1/tcp/0", []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(noise.ID, noise.New)}},
		{"tcp-tls", "/ip4/127.0.0.1/tcp/0", []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(libp2ptls.ID, libp2ptls.New)}},
		// What the overlay uses over TCP: the same with raw socket I/O (rawsec.go).
		{"tcp-noise-raw", "/ip4/127.0.0.1/tcp/0", []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(noise.ID, newNoise)}},
		{"tcp-tls-raw", "/ip4/127.0.0.1/tcp/0", []libp2p.Option{libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(libp2ptls.ID, newTLS)}},
		{"quic", "/ip4/127.0.0.1/udp/0/quic-v1", []libp2p.Option{libp2p.Transport(libp2pquic.NewTransport)}},
		{"wss-noise", "/ip4/127.0.0.1/tcp/0/tls/ws", []libp2p.Option{libp2p.Transport(websocket.New,
			websocket.WithTLSConfig(selfSigned(b)), websocket.WithTLSClientConfig(&tls.Config{InsecureSkipVerify: true})), //nolint:gosec // a test's own certificate
			libp2p.Security(noise.ID, noise.New)}},
		{"wss-tls", "/ip4/127.0.0.1/tcp/0/tls/ws", []libp2p.Option{libp2p.Transport(websocket.New,
			websocket.WithTLSConfig(selfSigned(b)), websocket.WithTLSClientConfig(&tls.Config{InsecureSkipVerify: true})), //nolint:gosec // a test's own certificate
			libp2p.Security(libp2ptls.ID, libp2ptls.New)}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchRoundTrips(b, tc.listen, tc.opts) })
	}
}

func benchRoundTrips(b *testing.B, listen string, opts []libp2p.Option) {
	const proto = "/bench/echo/1.0.0"
	mk := func(addr string) host.Host {
		h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings(addr), libp2p.DisableMetrics()}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close() })
		return h
	}
	srv, cli := mk(listen), mk(listen)
	srv.SetStreamHandler(proto, func(s network.Stream) {
		defer func() { _ = s.Close() }()
		buf := make([]byte, 800)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				return
			}
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cli.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		b.Fatal(err)
	}
	s, err := cli.NewStream(ctx, srv.ID(), proto)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	br := bufio.NewReader(s)
	msg, back := make([]byte, 800), make([]byte, 800)
	roundTrip := func() {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, back); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 {
		roundTrip()
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func selfSigned(tb testing.TB) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

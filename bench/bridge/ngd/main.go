// Command ngd puts package bridge behind rtpengine's ng control protocol,
// so the media bridge benchmark drives it exactly as it drives rtpengine.
//
//	ngd -listen 127.0.0.1:22224 -ip 127.0.0.1 -ports 40000-49999 [-pprof 127.0.0.1:6061]
//
// Commands (bencoded dictionaries over UDP, keyed by call-id; everything
// else in them, such as rtpengine's flags, is ignored):
//
//	ping                 → result pong
//	offer  (sdp: WebRTC) → Bridge.OfferFromWebRTC → sdp: the plain offer
//	answer (sdp: plain)  → Session.AnswerFromPlain → sdp: the WebRTC answer
//	delete               → Session.Close
//
// Only the browser-calls-phone direction is wired up: it is the one the
// benchmark measures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/p2psip/p2psip/bench/bridge/ng"
	"github.com/p2psip/p2psip/bridge"
)

type daemon struct {
	b   *bridge.Bridge
	leg bridge.Leg

	mu    sync.Mutex
	calls map[string]*bridge.Session // guarded by mu
}

func main() {
	listen := flag.String("listen", "127.0.0.1:22224", "ng control address (UDP)")
	ip := flag.String("ip", "127.0.0.1", "address of the plain RTP legs and of the browser legs' ICE host candidate (bound and advertised)")
	ports := flag.String("ports", "40000-49999", "UDP port range of plain legs and ICE host candidates")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (empty: off)")
	flag.Parse()

	lo, hi, err := bridge.ParsePortRange(*ports)
	if err != nil {
		log.Fatal(err)
	}
	addr, err := netip.ParseAddr(*ip)
	if err != nil {
		log.Fatalf("-ip: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// ICE on -ip alone, as rtpengine gets one --interface: by default the
	// bridge would give every call a candidate on each of the host's
	// addresses, which the benchmark's browsers never use.
	b, err := bridge.New(bridge.Config{PortMin: lo, PortMax: hi, ICEIPs: []netip.Addr{addr}, ListenIP: addr, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	d := &daemon{b: b, leg: bridge.Leg{IP: addr}, calls: map[string]*bridge.Session{}}

	ua, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		log.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = conn.Close()
	}()
	fmt.Printf("ngd ready: ng %s, RTP %s ports %d-%d\n", conn.LocalAddr(), addr, lo, hi)

	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		go func() {
			cookie, req, err := ng.Split(msg)
			if cookie == "" {
				return
			}
			var resp map[string]any
			if err != nil {
				resp = fail(err)
			} else {
				resp = d.handle(req)
			}
			out, err := ng.Join(cookie, resp)
			if err != nil {
				out, _ = ng.Join(cookie, fail(err))
			}
			_, _ = conn.WriteToUDPAddrPort(out, from)
		}()
	}
	b.Close()
}

func fail(err error) map[string]any {
	return map[string]any{"result": "error", "error-reason": err.Error()}
}

func (d *daemon) handle(req map[string]any) map[string]any {
	id := ng.Str(req, "call-id")
	switch cmd := ng.Str(req, "command"); cmd {
	case "ping":
		return map[string]any{"result": "pong"}
	case "offer":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.mu.Lock()
		_, dup := d.calls[id]
		d.mu.Unlock()
		if dup || id == "" {
			return fail(fmt.Errorf("call-id %q: missing or already offered", id))
		}
		var s *bridge.Session
		s, sdp, err := d.b.OfferFromWebRTC(ctx, []byte(ng.Str(req, "sdp")), d.leg, bridge.Events{OnEnd: func(string) {
			d.mu.Lock()
			if d.calls[id] == s {
				delete(d.calls, id)
			}
			d.mu.Unlock()
		}})
		if err != nil {
			return fail(err)
		}
		d.mu.Lock()
		d.calls[id] = s
		d.mu.Unlock()
		return map[string]any{"result": "ok", "sdp": string(sdp)}
	case "answer":
		d.mu.Lock()
		s := d.calls[id]
		d.mu.Unlock()
		if s == nil {
			return fail(fmt.Errorf("call-id %q: unknown call", id))
		}
		sdp, err := s.AnswerFromPlain([]byte(ng.Str(req, "sdp")))
		if err != nil {
			return fail(err)
		}
		return map[string]any{"result": "ok", "sdp": string(sdp)}
	case "delete":
		d.mu.Lock()
		s := d.calls[id]
		delete(d.calls, id)
		d.mu.Unlock()
		if s == nil {
			return fail(fmt.Errorf("call-id %q: unknown call", id))
		}
		s.Close()
		return map[string]any{"result": "ok"}
	default:
		return fail(fmt.Errorf("unsupported command %q", cmd))
	}
}

package sip

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
)

// WebSocketHandler serves SIP over WebSocket (RFC 7118) at an HTTPS
// path, sharing the peer's HTTPS port.
//
// sipgo's WS transport performs the HTTP upgrade itself on a raw
// net.Listener, while the HTTPS server owns the port. The handler checks
// what the web layer must check (the "sip" subprotocol, RFC 7118 §4.1,
// and the Origin against allowOrigin), hijacks the connection and hands
// it to sipgo through an in-memory listener, replaying the request bytes
// so sipgo completes the handshake. One TLS stack (the HTTPS server's),
// one SIP stack (sipgo's), no second port.
func (s *Service) WebSocketHandler(httpsPort int, allowOrigin func(origin, host string) bool) http.Handler {
	ln := newHandoffListener()
	s.mu.Lock()
	s.ports["ws"], s.ports["wss"] = httpsPort, httpsPort
	s.closers = append(s.closers, ln.Close)
	s.mu.Unlock()
	var once sync.Once
	start := func() {
		go func() {
			err := s.srv.ServeWS(ln) // returns only when ln closes
			s.log.Debug("SIP WebSocket transport stopped", "err", err)
		}()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "SIP over WebSocket: upgrade required", http.StatusUpgradeRequired)
			return
		}
		if !hasToken(r.Header.Values("Sec-WebSocket-Protocol"), "sip") {
			http.Error(w, `the "sip" WebSocket subprotocol is required (RFC 7118)`, http.StatusBadRequest)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !allowOrigin(origin, r.Host) {
			http.Error(w, "origin not allowed to use this peer's SIP endpoint", http.StatusForbidden)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "WebSocket needs HTTP/1.1", http.StatusHTTPVersionNotSupported)
			return
		}
		var head bytes.Buffer
		if err := r.Write(&head); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		conn, rw, err := hj.Hijack()
		if err != nil {
			s.log.Debug("hijacking WebSocket connection failed", "err", err)
			return
		}
		once.Do(start)
		ln.hand(&replayConn{closeNotifyConn: closeNotifyConn{Conn: conn, onClose: s.connClosed("WS")},
			r: io.MultiReader(&head, rw.Reader, conn)})
	})
}

// hasToken reports whether a comma-separated header carries tok.
func hasToken(values []string, tok string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), tok) {
				return true
			}
		}
	}
	return false
}

// SameOrigin allows an Origin whose host is the request's Host: the
// softphone served by this peer.
func SameOrigin(origin, host string) bool {
	o := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return strings.EqualFold(o, host)
}

// replayConn reads the replayed upgrade request before the live stream,
// and tells the service when the connection ends.
type replayConn struct {
	closeNotifyConn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if err != nil {
		c.notify()
	}
	return n, err
}

// handoffListener is a net.Listener fed by the HTTPS handler.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) hand(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// AllowOrigins allows the softphone served by this peer (SameOrigin) and
// pages of the listed origins (scheme://host[:port]), the portals allowed
// to embed the phone (--embed-origins).
func AllowOrigins(origins []string) func(origin, host string) bool {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return func(origin, host string) bool {
		return SameOrigin(origin, host) || allowed[strings.ToLower(origin)]
	}
}

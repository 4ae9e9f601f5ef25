package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ALPNTURN is the ALPN protocol ID of TURN over TLS (RFC 7443).
const ALPNTURN = "stun.turn"

// Deadlines of the demultiplexer, per connection.
const (
	// demuxHandshakeTimeout bounds the TLS handshake.
	demuxHandshakeTimeout = 10 * time.Second
	// demuxPeekTimeout bounds the wait for the first bytes of a
	// connection that negotiated no ALPN protocol.
	demuxPeekTimeout = 5 * time.Second
)

// stunMagicCookie is at bytes 4–7 of every STUN message (RFC 8489 §5).
const stunMagicCookie = 0x2112A442

// stunHeaderPrefix is how many bytes isSTUN needs to decide.
const stunHeaderPrefix = 8

// Demux splits the connections of one TLS port between HTTPS and TURN over
// TLS. It does the TLS handshake itself, one goroutine per connection, so a
// client that stalls delays nobody else. A connection goes to TURN when it
// negotiated ALPN "stun.turn" (RFC 7443), or negotiated no ALPN protocol and
// its first decrypted bytes are a STUN message: Chromium sends no ALPN on
// turns: URLs. Everything else goes to HTTP; connections that negotiated a
// protocol ("h2", "http/1.1", "acme-tls/1") are handed over as the bare
// *tls.Conn, so net/http serves HTTP/2 and sets Request.TLS as with
// ServeTLS. A connection that was peeked at is wrapped; it has a
// ConnectionState method, from which net/http sets Request.TLS too.
//
// Serve HTTP() with an http.Server whose TLSConfig lists "h2" (net/http
// sets up HTTP/2 on Serve only then), and call Close when done.
type Demux struct {
	ln   net.Listener
	cfg  *tls.Config
	log  *slog.Logger
	http *demuxListener
	turn *demuxListener

	ctx    context.Context // ends on Close: cancels pending handshakes
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup

	conns *prometheus.CounterVec // result
}

// Results of a connection, the label of the demux's counter.
const (
	routeHTTP       = "http"
	routeTURN       = "turn"
	routeRefused    = "refused"          // TURN with TURN() closed (no relay role), or listeners closed
	routeHandshake  = "handshake_failed" // TLS handshake failed or timed out
	routePlainHTTP  = "plain_http"       // plaintext HTTP sent to the TLS port: answered 400
	routePeekFailed = "peek_failed"      // no ALPN and no bytes within the deadline
)

// NewDemux starts accepting on ln. cfg is cloned: "stun.turn" goes first
// in its NextProtos, before "h2" and "http/1.1" when it lists no protocol
// (as ServeTLS does). First, because Go's TLS server picks the first of
// its own protocols the client offers, and TURN clients such as coturn's
// offer "http/1.1" beside "stun.turn": only a TURN client offers
// "stun.turn", so it decides. Listed at all, so that a client offering
// only "stun.turn" is not refused. log may be nil.
func NewDemux(ln net.Listener, cfg *tls.Config, log *slog.Logger) *Demux {
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.Clone()
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	cfg.NextProtos = append([]string{ALPNTURN}, slices.DeleteFunc(slices.Clone(cfg.NextProtos),
		func(p string) bool { return p == ALPNTURN })...)
	ctx, cancel := context.WithCancel(context.Background())
	d := &Demux{
		ln: ln, cfg: cfg, log: log,
		http:   newDemuxListener(ln.Addr()),
		turn:   newDemuxListener(ln.Addr()),
		ctx:    ctx,
		cancel: cancel,
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2psip_https_port_conns_total",
			Help: "Connections to the HTTPS port, by result: http, turn (TURN over TLS), refused (TURN without the relay role), handshake_failed, plain_http (answered 400), peek_failed (no ALPN and no bytes in time).",
		}, []string{"result"}),
	}
	for _, r := range []string{routeHTTP, routeTURN, routeRefused, routeHandshake, routePlainHTTP, routePeekFailed} {
		d.conns.WithLabelValues(r)
	}
	d.wg.Add(1)
	go d.acceptLoop()
	return d
}

// Register adds the demux's counter to reg.
func (d *Demux) Register(reg prometheus.Registerer) error {
	return reg.Register(d.conns)
}

// HTTP is the listener of the HTTPS connections.
func (d *Demux) HTTP() net.Listener { return d.http }

// TURN is the listener of the TURN over TLS connections: *tls.Conn, or a
// net.Conn that wraps one. Closing it refuses TURN: the demux then closes
// the connections it would have sent there.
func (d *Demux) TURN() net.Listener { return d.turn }

// TLSConfig is a copy of the configuration the demux handshakes with
// (NextProtos completed): give it to the http.Server serving
// HTTP(), so that Serve sets up HTTP/2. A copy, as Serve modifies it.
func (d *Demux) TLSConfig() *tls.Config { return d.cfg.Clone() }

// Close stops accepting, closes ln and both listeners, and waits for the
// accept loop. Connections already handed over are not closed.
func (d *Demux) Close() error {
	var err error
	d.once.Do(func() {
		d.cancel()
		err = d.ln.Close()
		d.http.close(net.ErrClosed)
		d.turn.close(net.ErrClosed)
	})
	d.wg.Wait()
	return err
}

func (d *Demux) acceptLoop() {
	defer d.wg.Done()
	var delay time.Duration
	for {
		c, err := d.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off as
				// net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				d.log.Warn("HTTPS port: accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
					continue
				case <-d.ctx.Done():
					return
				}
			}
			if d.ctx.Err() == nil {
				d.log.Error("HTTPS port: accept failed", "err", err)
			}
			d.http.close(err)
			d.turn.close(err)
			return
		}
		delay = 0
		go d.route(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// route handshakes c, decides where it goes and hands it over.
func (d *Demux) route(c net.Conn) {
	tc := tls.Server(c, d.cfg)
	_ = c.SetDeadline(time.Now().Add(demuxHandshakeTimeout))
	ctx, cancel := context.WithTimeout(d.ctx, demuxHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && recordHeaderLooksLikeHTTP(re.RecordHeader) {
			// As net/http's ServeTLS does.
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			d.conns.WithLabelValues(routePlainHTTP).Inc()
			d.log.Debug("HTTPS port: plaintext HTTP request answered 400", "remote", c.RemoteAddr())
		} else {
			d.conns.WithLabelValues(routeHandshake).Inc()
			d.log.Debug("HTTPS port: TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
		}
		_ = c.Close()
		return
	}
	var conn net.Conn = tc
	dst := d.http
	switch tc.ConnectionState().NegotiatedProtocol {
	case ALPNTURN:
		dst = d.turn
	case "":
		// No ALPN: Chromium's turns:, or an HTTP/1.1 client without ALPN.
		// Only a STUN message goes to TURN.
		_ = c.SetReadDeadline(time.Now().Add(demuxPeekTimeout))
		buf, err := readPrefix(tc)
		if len(buf) == 0 {
			d.conns.WithLabelValues(routePeekFailed).Inc()
			d.log.Debug("HTTPS port: no bytes after the handshake", "remote", c.RemoteAddr(), "err", err)
			_ = c.Close()
			return
		}
		if isSTUN(buf) {
			dst = d.turn
		}
		conn = &peekedConn{Conn: tc, tc: tc, buf: buf}
	}
	_ = c.SetDeadline(time.Time{})
	if !dst.deliver(conn) {
		d.conns.WithLabelValues(routeRefused).Inc()
		_ = conn.Close()
		return
	}
	if dst == d.turn {
		d.conns.WithLabelValues(routeTURN).Inc()
	} else {
		d.conns.WithLabelValues(routeHTTP).Inc()
	}
}

// readPrefix reads until it has the stunHeaderPrefix bytes isSTUN needs, or
// the first byte already rules STUN out, or the read fails (deadline, EOF).
func readPrefix(r io.Reader) ([]byte, error) {
	buf := make([]byte, 0, stunHeaderPrefix)
	for len(buf) < stunHeaderPrefix {
		if len(buf) > 0 && buf[0] > 3 {
			break
		}
		n, err := r.Read(buf[len(buf):stunHeaderPrefix])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// isSTUN reports whether b, the first bytes of a stream, start a STUN
// message: a first byte in RFC 7983's STUN range 0–3 (the message type's
// two top bits are zero, and every method in use keeps the rest of the
// first byte under 4) and the magic cookie at bytes 4–7. The first byte alone is not enough:
// TURN ChannelData (64–79) overlaps the 'C', 'D', 'G', 'H', 'O' of HTTP
// methods, and a TURN client always opens with a STUN request anyway.
func isSTUN(b []byte) bool {
	return len(b) >= stunHeaderPrefix && b[0] < 4 &&
		uint32(b[4])<<24|uint32(b[5])<<16|uint32(b[6])<<8|uint32(b[7]) == stunMagicCookie
}

// recordHeaderLooksLikeHTTP is net/http's test of a misdirected plaintext
// HTTP request.
func recordHeaderLooksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// peekedConn is a TLS connection whose first bytes were read already.
type peekedConn struct {
	net.Conn
	tc  *tls.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// ConnectionState makes net/http set Request.TLS on this wrapped conn.
func (c *peekedConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// NetConn is the TCP connection under TLS.
func (c *peekedConn) NetConn() net.Conn { return c.tc.NetConn() }

// demuxListener is one output of a Demux.
type demuxListener struct {
	addr  net.Addr
	ch    chan net.Conn
	done  chan struct{}
	once  sync.Once
	errMu sync.Mutex
	err   error
}

func newDemuxListener(addr net.Addr) *demuxListener {
	return &demuxListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *demuxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		return nil, l.err
	}
}

// deliver waits for Accept, and reports false when the listener is closed.
func (l *demuxListener) deliver(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *demuxListener) close(err error) {
	l.once.Do(func() {
		l.errMu.Lock()
		l.err = err
		l.errMu.Unlock()
		close(l.done)
	})
}

// Close makes Accept return net.ErrClosed; the demux goes on serving the
// other listener.
func (l *demuxListener) Close() error {
	l.close(net.ErrClosed)
	return nil
}

func (l *demuxListener) Addr() net.Addr { return l.addr }

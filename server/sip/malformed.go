package sip

import (
	"bytes"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/p2psip/p2psip/internal/udpraw"
)

// guardConn answers malformed requests that sipgo's parser would drop in
// silence: RFC 4475 §3.1.2 wants a 400 for them, so that the sender learns
// what is wrong instead of retransmitting into the void.
type guardConn struct {
	net.PacketConn
	raw *udpraw.Conn // nil: PacketConn's own methods (not a *net.UDPConn, or not Linux)
	s   *Service
	reg *udpRegistrar // nil: every request goes to sipgo
	fin *udpFinals    // nil: sipgo keeps finished transactions
}

func (g *guardConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.readFrom(b)
		if err != nil || n == 0 || isKeepAlive(b[:n]) {
			return n, addr, err
		}
		// Responses are not parsed twice: a malformed one is dropped by
		// sipgo, which is what §18.1.2 asks for anyway.
		if g.reg != nil && g.reg.absorbed(b[:n], addr) {
			continue
		}
		out, req, ok := screenRequest(b[:n], false)
		if ok && req != nil && g.reg != nil {
			req.SetTransport("UDP")
			req.SetSource(addr.String())
			if g.reg.take(req, out, addr) {
				continue
			}
		}
		if ok && req != nil && g.fin != nil && g.replayed(req, addr.String()) {
			continue
		}
		if ok {
			if len(out) <= len(b) { // else sipgo answers the original
				n = copy(b, out)
			}
			return n, addr, nil
		}
		g.s.m.requests.WithLabelValues("MALFORMED").Inc()
		if res := malformedResponse(b[:n]); res != nil {
			_ = g.write(res, addr)
		}
	}
}

// WriteTo sends what sipgo writes, less the RFC 2543 branches the guard
// added to requests.
func (g *guardConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if err := g.send(b, addr); err != nil {
		return 0, err
	}
	return len(b), nil
}

// send writes one message, less the RFC 2543 branch the guard added.
func (g *guardConn) send(b []byte, addr net.Addr) error {
	return g.write(stripRFC2543Branch(b), addr)
}

// readFrom and write do the socket's I/O with raw system calls where
// they can (internal/udpraw): on a peer's one busy core the runtime's
// bookkeeping of a blocking sendto on loopback or a LAN costs two thread
// switches per message whenever sysmon finds the P in it (bench/README.md,
// "Raw system calls under the overlay's TCP").
func (g *guardConn) readFrom(b []byte) (int, net.Addr, error) {
	if g.raw == nil {
		return g.PacketConn.ReadFrom(b)
	}
	n, ap, err := g.raw.ReadFrom(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

func (g *guardConn) write(b []byte, addr net.Addr) error {
	if ua, ok := addr.(*net.UDPAddr); ok && g.raw != nil {
		_, err := g.raw.WriteTo(b, ua)
		return err
	}
	_, err := g.PacketConn.WriteTo(b, addr)
	return err
}

// screen readies one message, framed, for sipgo: it rejects a request
// that sipgo cannot parse or that has an invalid display name, and hands
// on the rest in the form sipgo reads (normalizeMessage, and an RFC 2543
// request with a branch: addRFC2543Branch). ok false: drop it, answering
// malformedResponse. Responses are only normalised unless
// parseResponses, in which case a malformed one is dropped (ok false;
// malformedResponse answers no response).
func screen(msg []byte, parseResponses bool) ([]byte, bool) {
	out, _, ok := screenRequest(msg, parseResponses)
	return out, ok
}

// screenRequest is screen that also returns the request it parsed (nil
// for a response), so that the UDP registrar need not parse it again.
func screenRequest(msg []byte, parseResponses bool) ([]byte, *sip.Request, bool) {
	response := bytes.HasPrefix(msg, []byte("SIP/"))
	if !response && badDisplayName(msg) != "" {
		return nil, nil, false
	}
	out := normalizeMessage(msg)
	if response && !parseResponses {
		return out, nil, true
	}
	parsed, err := sip.ParseMessage(out)
	if err != nil {
		return nil, nil, false
	}
	req, _ := parsed.(*sip.Request)
	if req != nil {
		if keyed := addRFC2543Branch(out, req); len(keyed) != len(out) {
			// sipgo reads some odd Vias only as they came: then it
			// answers 400 for want of a From tag, as before.
			if again, err := sip.ParseMessage(keyed); err == nil {
				out = keyed
				req, _ = again.(*sip.Request)
			}
		}
	}
	return out, req, true
}

// isKeepAlive matches RFC 5626 CRLF keep-alives, which are not messages.
func isKeepAlive(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

// malformedResponse builds the error response to an unparseable request
// from its raw lines: 416 for an unknown Request-URI scheme (§3.3.14
// novelsc), else 400. Responses and messages without a Via get nothing.
func malformedResponse(msg []byte) []byte {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	start := strings.Fields(lines[0])
	if len(start) < 3 || strings.HasPrefix(start[0], "SIP/") || !strings.HasPrefix(start[len(start)-1], "SIP/") {
		return nil
	}
	status := "400 Bad Request"
	// Only a well-formed Request-URI of another scheme is a 416; "<sip:…>"
	// or one broken by spaces (RFC 4475 ltgtruri, lwsruri) is a 400.
	if scheme, _, ok := strings.Cut(start[1], ":"); ok && len(start) == 3 && !strings.ContainsAny(scheme, "<>\"") {
		switch strings.ToLower(scheme) {
		case "sip", "sips":
		default:
			status = "416 Unsupported URI Scheme"
		}
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	hasVia := false
	for _, l := range lines[1:] {
		name, _, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v":
			hasVia = true
			b.WriteString(l + "\r\n")
		case "from", "f", "to", "t", "call-id", "i", "cseq":
			b.WriteString(l + "\r\n")
		}
	}
	if !hasVia {
		return nil
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return []byte(b.String())
}

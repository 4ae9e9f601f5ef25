package sip

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
)

// Limits of one message on a stream transport.
const (
	maxHeadBytes = 64 << 10
	maxBodyBytes = 1 << 20
)

var errFraming = errors.New("sip: stream framing error")

// guardStreamConn frames SIP messages on a TCP or TLS connection
// (RFC 3261 §18.3: by Content-Length) before sipgo reads them, so that a
// malformed request gets a 400 (RFC 4475 §3.1.2) instead of a silently
// closed connection, and the messages after it still arrive. A framing
// error (a missing, negative or repeated Content-Length) leaves no way to
// find the next message: the peer answers 400 and closes, as §18.3 says.
type guardStreamConn struct {
	*closeNotifyConn
	br      *bufio.Reader
	pending []byte
	s       *Service
}

func newGuardStreamConn(c *closeNotifyConn, s *Service) *guardStreamConn {
	return &guardStreamConn{closeNotifyConn: c, br: bufio.NewReaderSize(c, 16<<10), s: s}
}

func (g *guardStreamConn) Read(b []byte) (int, error) {
	for len(g.pending) == 0 {
		if err := g.next(); err != nil {
			return 0, err
		}
	}
	n := copy(b, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// next frames one message into pending, answering malformed ones.
func (g *guardStreamConn) next() error {
	head, err := readHead(g.br)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(head)) == 0 {
		g.pending = head // RFC 5626 keep-alive: sipgo answers it
		return nil
	}
	cl, ok := contentLength(head)
	if !ok {
		g.reject(head)
		_ = g.Close()
		return errFraming
	}
	msg := make([]byte, len(head)+cl)
	copy(msg, head)
	if _, err := io.ReadFull(g.br, msg[len(head):]); err != nil {
		return err
	}
	out, ok := screen(msg, true)
	if !ok {
		g.reject(head)
		return nil // skip it; the next message follows
	}
	g.pending = out
	return nil
}

// Write sends what sipgo writes (one whole message a call), less the
// RFC 2543 branches the guard added.
func (g *guardStreamConn) Write(b []byte) (int, error) {
	if _, err := g.closeNotifyConn.Write(stripRFC2543Branch(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (g *guardStreamConn) reject(head []byte) {
	g.s.m.requests.WithLabelValues("MALFORMED").Inc()
	if res := malformedResponse(head); res != nil {
		_, _ = g.closeNotifyConn.Write(res)
	}
}

// readHead reads up to and including the blank line after the headers;
// CRLFs before a message (keep-alives) come back on their own.
func readHead(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		head = append(head, line...)
		if len(head) > maxHeadBytes {
			return nil, errFraming
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(bytes.TrimSpace(head)) == 0 {
			return head, nil // keep-alive
		}
		if bytes.HasSuffix(head, []byte("\r\n\r\n")) || bytes.HasSuffix(head, []byte("\n\n")) {
			return head, nil
		}
	}
}

// contentLength finds the one Content-Length of a stream message
// (mandatory there, §18.3); ok is false when it is missing, repeated or
// not a number in range.
func contentLength(head []byte) (int, bool) {
	n, found := 0, 0
	for _, line := range strings.Split(string(head), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length", "l":
			v, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil || v < 0 || v > maxBodyBytes {
				return 0, false
			}
			n = v
			found++
		}
	}
	return n, found == 1
}

var _ net.Conn = (*guardStreamConn)(nil)

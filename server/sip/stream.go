package sip

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
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
// error (a missing, negative or repeated Content-Length, or bytes that
// are no message) leaves no way to find the next message: the peer
// answers 400 and closes, as §18.3 says — once the requests it already
// took from the connection are answered (RFC 4475 §3.1.1.8 dblreq), or
// after maxLinger.
//
// On a SIP stream from another overlay peer (frameOnly) the guard frames
// but does not screen: what a peer sends was screened where it entered
// the overlay and then written out by sipgo, which sipgo parses back, and
// the stream's other end is authenticated by its node key. Screening
// there parsed every message twice (once here, once in sipgo) and was
// the largest cost the stream path had over a socket (bench/README.md,
// issue 10). A message sipgo still cannot parse closes that one stream
// (sipgo logs it); the next request to that peer opens another.
type guardStreamConn struct {
	*closeNotifyConn
	br        *bufio.Reader
	pending   []byte
	s         *Service
	frameOnly bool // an overlay peer's stream: frame, do not screen

	// answered: the message being framed was found malformed, and
	// answered, while its header was still arriving (checkPartial).
	answered bool
	partial  partialCheck
	// head is the buffer the header being read is collected in, reused
	// from message to message (bounded by maxHeadBytes): appended line by
	// line into a fresh slice it was, with the copy into the message,
	// a tenth of a peer's allocations.
	head []byte

	linger    time.Duration // 0: maxLinger
	mu        sync.Mutex
	inflight  int           // guarded by mu; requests handed on, not yet answered
	progress  chan struct{} // a final response went out
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// maxLinger bounds how long a connection with a framing error stays
// open for the answers to earlier requests: Timer B/F, 64*T1.
const maxLinger = 32 * time.Second

func newGuardStreamConn(c *closeNotifyConn, s *Service) *guardStreamConn {
	return &guardStreamConn{closeNotifyConn: c, br: bufio.NewReaderSize(c, 16<<10), s: s,
		progress: make(chan struct{}, 1), done: make(chan struct{})}
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

// Write sends what sipgo writes (one whole message a call), less the
// RFC 2543 branches the guard added, and counts final responses.
func (g *guardStreamConn) Write(b []byte) (int, error) {
	if _, err := g.closeNotifyConn.Write(stripRFC2543Branch(b)); err != nil {
		return 0, err
	}
	if len(b) > 12 && bytes.HasPrefix(b, []byte("SIP/2.0 ")) && b[8] >= '2' && b[8] <= '6' {
		g.mu.Lock()
		if g.inflight > 0 {
			g.inflight--
		}
		g.mu.Unlock()
		select {
		case g.progress <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

func (g *guardStreamConn) Close() error {
	g.closeOnce.Do(func() {
		if g.done != nil {
			close(g.done)
		}
	})
	return g.closeNotifyConn.Close()
}

// next frames one message into pending, answering malformed ones.
func (g *guardStreamConn) next() error {
	g.answered, g.partial = false, partialCheck{}
	stall := g.checkPartial
	if g.frameOnly {
		stall = nil
	}
	head, err := readHeadStall(g.br, stall, g.head[:0])
	g.head = head[:0]
	if err != nil {
		if errors.Is(err, errFraming) {
			g.fail()
		}
		return err
	}
	if len(bytes.TrimSpace(head)) == 0 {
		g.pending = bytes.Clone(head) // RFC 5626 keep-alive: sipgo answers it
		return nil
	}
	cl, ok := contentLength(head)
	if !ok {
		if !g.answered {
			g.reject(head)
		}
		g.fail()
		return errFraming
	}
	msg, err := readBody(g.br, head, cl)
	if err != nil {
		return err
	}
	if g.answered {
		return nil // skip it; the next message follows
	}
	out := msg
	if !g.frameOnly {
		var ok bool
		if out, ok = screen(msg, true); !ok {
			g.reject(head)
			return nil
		}
	}
	if !bytes.HasPrefix(out, []byte("SIP/")) && !bytes.HasPrefix(out, []byte("ACK ")) {
		g.mu.Lock()
		g.inflight++
		g.mu.Unlock()
	}
	g.pending = out
	return nil
}

// partialCheck is checkPartial's state for the header being read: the
// lines before scan are split, and the fields before checked judged.
type partialCheck struct {
	scan       int  // start of the first line not yet ended
	seen       int  // how much of the header was searched for line ends
	startLine  int  // end of the start line; 0 until it has ended
	fieldStart int  // start of the last field seen (it may go on)
	checked    int  // end of the fields judged
	bad        bool // a judged field is malformed; not answered yet
	work       int  // bytes judged so far, against maxPartialWork
}

// maxPartialWork bounds the work checkPartial does for one message
// header (bytes screened, partialCheckCost a check): past it, the header
// is judged only when it has ended. It is a few times maxHeadBytes, so
// that a header trickled in in fields is judged as it comes, once.
const (
	maxPartialWork   = 4 * maxHeadBytes
	partialCheckCost = 256
)

// checkPartial judges a request whose header has stalled before its end:
// if the header fields already complete make it malformed, it is
// answered now, not when (if ever) the rest arrives. RFC 4475 baddn,
// sent as its corpus file has it, has no blank line after its header.
//
// Each field is judged once, when the line after it starts without
// white space (else it may go on, folded: RFC 3261 §7.3.1): the start
// line and the fields new since the last check are screened, so that a
// header trickled in a byte at a time costs work linear in its size.
func (g *guardStreamConn) checkPartial(head []byte) {
	p := &g.partial
	if g.answered || p.work > maxPartialWork || bytes.HasPrefix(head, []byte("SIP/")) {
		return
	}
	// Split the lines that have ended since the last call.
	for {
		from := max(p.scan, p.seen)
		nl := bytes.IndexByte(head[from:], '\n')
		if nl < 0 {
			p.seen = len(head)
			break
		}
		start := p.scan
		p.scan = from + nl + 1
		switch {
		case p.startLine == 0:
			p.startLine, p.checked, p.fieldStart = p.scan, p.scan, p.scan
		case !isWSP(head[start]):
			p.fieldStart = start
		}
	}
	if p.startLine == 0 {
		return
	}
	// The fields before the last one are complete; so is the last one
	// if a line not folded into it has started.
	done := p.fieldStart
	if p.scan < len(head) && !isWSP(head[p.scan]) {
		done = p.scan
	}
	if done <= p.checked {
		return
	}
	if !p.bad {
		// sipgo judges each header field on its own, but for
		// Content-Length, which says how much body must follow: the
		// last one, added here, wants none.
		fields := head[p.checked:done]
		msg := make([]byte, 0, p.startLine+len(fields)+len("Content-Length: 0\r\n\r\n"))
		msg = append(append(msg, head[:p.startLine]...), fields...)
		msg = append(msg, "Content-Length: 0\r\n\r\n"...)
		p.work += len(msg) + partialCheckCost
		_, ok := screen(msg, true)
		p.bad = !ok
	}
	p.checked = done
	if !p.bad {
		return
	}
	// Malformed: answered as soon as the fields the answer copies (Via
	// above all) are there.
	msg := make([]byte, 0, done+2)
	msg = append(append(msg, head[:done]...), "\r\n"...)
	p.work += len(msg) + partialCheckCost
	if res := malformedResponse(msg); res != nil {
		g.s.m.requests.WithLabelValues("MALFORMED").Inc()
		_, _ = g.closeNotifyConn.Write(res)
		g.answered = true
	}
}

func (g *guardStreamConn) reject(head []byte) {
	g.s.m.requests.WithLabelValues("MALFORMED").Inc()
	if res := malformedResponse(head); res != nil {
		_, _ = g.closeNotifyConn.Write(res)
	}
}

// fail closes the connection after a framing error, once the requests
// handed on have their final responses, or after the linger.
func (g *guardStreamConn) fail() {
	linger := g.linger
	if linger == 0 {
		linger = maxLinger
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for {
		g.mu.Lock()
		n := g.inflight
		g.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-g.progress:
			continue
		case <-g.done:
		case <-timer.C:
		}
		break
	}
	_ = g.Close()
}

// readHead reads up to and including the blank line after the headers;
// CRLFs before a message (keep-alives) come back on their own.
func readHead(br *bufio.Reader) ([]byte, error) { return readHeadStall(br, nil, nil) }

// readHeadStall is readHead calling stall, if set, with the header read
// so far whenever it must wait for more of it. The header is appended to
// dst.
func readHeadStall(br *bufio.Reader, stall func(head []byte), dst []byte) ([]byte, error) {
	head := dst
	for {
		if stall != nil && len(head) > 0 && br.Buffered() == 0 {
			stall(head)
		}
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

// readBody reads the cl bytes of body that follow head, and returns the
// whole message in a new slice. A body of up to 16 KiB is read into a
// slice of the message's size; a larger one grows as it arrives: a
// Content-Length alone (up to maxBodyBytes) must not make every idle
// connection hold that much.
func readBody(br *bufio.Reader, head []byte, cl int) ([]byte, error) {
	if cl <= 16<<10 {
		msg := make([]byte, len(head)+cl)
		copy(msg, head)
		if _, err := io.ReadFull(br, msg[len(head):]); err != nil {
			return nil, err
		}
		return msg, nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, len(head)+16<<10))
	buf.Write(head)
	if n, err := io.CopyN(buf, br, int64(cl)); err != nil {
		if errors.Is(err, io.EOF) && n > 0 {
			err = io.ErrUnexpectedEOF // as io.ReadFull says it
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

// contentLength finds the one Content-Length of a stream message
// (mandatory there, §18.3); ok is false when it is missing, repeated or
// not a number in range.
func contentLength(head []byte) (int, bool) {
	n, found := 0, 0
	for rest := head; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		v, err := strconv.Atoi(string(bytes.TrimSpace(value)))
		if err != nil || v < 0 || v > maxBodyBytes {
			return 0, false
		}
		n = v
		found++
	}
	return n, found == 1
}

var _ net.Conn = (*guardStreamConn)(nil)

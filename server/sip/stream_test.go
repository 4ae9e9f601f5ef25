package sip

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// partialConn is a guard whose answers are recorded, for checkPartial.
func partialConn(t testing.TB) (*guardStreamConn, *bytes.Buffer) {
	t.Helper()
	ts := newTestService(t, nil)
	out := &bytes.Buffer{}
	return newGuardStreamConn(&closeNotifyConn{Conn: recordConn{w: out}, onClose: func(string) {}}, ts.Service), out
}

// recordConn records what the guard writes.
type recordConn struct {
	net.Conn
	w io.Writer
}

func (c recordConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (recordConn) Close() error                  { return nil }
func (recordConn) RemoteAddr() net.Addr          { return &net.TCPAddr{} }

// TestStreamPartialFolded: a field is not judged while a folded line of
// it may still come, nor a stalled header with a body's Content-Length
// before its other fields taken for a message missing its body.
func TestStreamPartialFolded(t *testing.T) {
	for _, head := range []string{
		"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom:\r\n",
		"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom:\r\n <sip:a@x>;tag=1\r\n",
		"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom:\r\n <sip:a@x>;tag=1\r\n\t;x=1\r\n",
		"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom:\r\n <sip:a@x>;tag=1\r\nTo: <sip:x@y>\r\n",
		"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nContent-Length: 10\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: g\r\n",
	} {
		g, out := partialConn(t)
		// Every prefix, as the stall would see it.
		for i := 1; i <= len(head); i++ {
			g.checkPartial([]byte(head[:i]))
		}
		if g.answered || out.Len() > 0 {
			t.Errorf("%q answered:\n%s", head, out)
		}
	}
	// The fold is judged once the next field starts.
	g, out := partialConn(t)
	head := "OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom:\r\n <sip:a@x;tag=1\r\n"
	g.checkPartial([]byte(head))
	if g.answered {
		t.Fatal("an unfinished field answered")
	}
	g.checkPartial([]byte(head + "T"))
	if !g.answered || !strings.HasPrefix(out.String(), "SIP/2.0 400 ") {
		t.Fatalf("malformed folded From answered %q", out)
	}
}

// refPartialAnswer is checkPartial judging the whole of each header
// prefix anew (quadratic, as it was): the fields complete are those before
// the last line that does not start with white space.
func refPartialAnswer(head []byte) bool {
	first := bytes.IndexByte(head, '\n')
	if first < 0 || bytes.HasPrefix(head, []byte("SIP/")) {
		return false
	}
	done := first + 1
	for i := first + 1; i < len(head); {
		if !isWSP(head[i]) {
			done = i
		}
		nl := bytes.IndexByte(head[i:], '\n')
		if nl < 0 {
			break
		}
		i += nl + 1
	}
	if done == first+1 {
		return false
	}
	msg := append(append([]byte{}, head[:done]...), "Content-Length: 0\r\n\r\n"...)
	if _, ok := screen(msg, true); ok {
		return false
	}
	return malformedResponse(append(append([]byte{}, head[:done]...), "\r\n"...)) != nil
}

// TestStreamPartialIncremental: judging only the fields new since the
// last check answers exactly when judging the whole header so far did,
// for every prefix of every RFC 4475 message.
func TestStreamPartialIncremental(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(torture, "*.dat"))
	if len(files) == 0 {
		t.Fatal("no RFC 4475 messages in " + torture)
	}
	ts := newTestService(t, nil)
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		head := data
		if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
			head = data[:i+2]
		}
		g := newGuardStreamConn(&closeNotifyConn{Conn: discardConn{}, onClose: func(string) {}}, ts.Service)
		want := false
		for i := 1; i <= len(head); i++ {
			g.checkPartial(head[:i])
			want = want || refPartialAnswer(head[:i])
			if g.answered != want {
				t.Errorf("%s: after %d bytes answered %v, whole-header check %v", filepath.Base(name), i, g.answered, want)
				break
			}
		}
	}
}

// trickle writes msg to the guard a byte at a time and returns what
// sipgo would read and the guard.
func trickle(t *testing.T, msg string) (string, *guardStreamConn) {
	t.Helper()
	ts := newTestService(t, nil)
	client, server := net.Pipe()
	defer func() { _ = client.Close() }()
	g := newGuardStreamConn(&closeNotifyConn{Conn: server, onClose: func(string) {}}, ts.Service)
	go func() { _, _ = io.Copy(io.Discard, client) }()
	go func() {
		for i := range len(msg) {
			if _, err := client.Write([]byte{msg[i]}); err != nil {
				return
			}
		}
	}()
	got, err := io.ReadAll(io.LimitReader(g, int64(len(msg))))
	if err != nil {
		t.Fatal(err)
	}
	return string(got), g
}

func largeHeader(lineLen int) string {
	var b strings.Builder
	b.WriteString("OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: g\r\nCSeq: 1 OPTIONS\r\n")
	pad := strings.Repeat("p", max(1, lineLen-len("X-P: \r\n")))
	for b.Len() < maxHeadBytes-lineLen-64 {
		b.WriteString("X-P: " + pad + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// TestStreamTrickledHeader: a large header trickled in a byte at a time
// is judged field by field, once — the work is linear in its size (it
// was quadratic: each new line re-judged the whole header) — and a
// header of many tiny fields stops being judged at maxPartialWork.
func TestStreamTrickledHeader(t *testing.T) {
	for _, lineLen := range []int{200, 8} {
		msg := largeHeader(lineLen)
		got, g := trickle(t, msg)
		if got != msg {
			t.Fatalf("line length %d: sipgo would read %d bytes of %d", lineLen, len(got), len(msg))
		}
		lines := strings.Count(msg, "\n")
		// Each check screens the start line and its new fields once.
		linear := len(msg) + lines*(len("OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 0\r\n\r\n")+partialCheckCost)
		bound := min(linear, maxPartialWork+len(msg)+partialCheckCost)
		t.Logf("line length %d: %d bytes, %d lines, partial-check work %d (bound %d)", lineLen, len(msg), lines, g.partial.work, bound)
		if g.partial.work > bound {
			t.Errorf("line length %d: partial-check work %d, more than %d", lineLen, g.partial.work, bound)
		}
		if lineLen == 200 && g.partial.checked < len(msg)-len("Content-Length: 0\r\n\r\n")-lineLen {
			t.Errorf("only %d of %d bytes judged before the end", g.partial.checked, len(msg))
		}
	}
}

// TestStreamTrickledMalformed: a malformed field late in a large header
// trickled in is still answered before the header ends.
func TestStreamTrickledMalformed(t *testing.T) {
	msg := largeHeader(200)
	head := msg[:strings.Index(msg, "Content-Length")] + "To: <sip:x@y\r\nMax-Forwards: 70\r\n"
	g, out := partialConn(t)
	br := bufio.NewReader(strings.NewReader(head))
	var sofar []byte
	for {
		line, err := br.ReadSlice('\n')
		sofar = append(sofar, line...)
		g.checkPartial(sofar)
		if err != nil {
			break
		}
	}
	if !g.answered || !strings.HasPrefix(out.String(), "SIP/2.0 400 ") {
		t.Fatalf("late malformed field answered %q", out)
	}
}

//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // SIP digest is MD5 (RFC 2617/3261)
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The overlay name every test peer uses (the default), and so the host part of
// its AORs and the digest realm.
const overlayDomain = "p2psip.local"

const (
	// sippTimeout is sipp's own -timeout: a run that has not finished by then
	// stops and fails (-timeout_error).
	sippTimeout = 30 * time.Second
	// sippKillAfter bounds a sipp run from the outside, in case sipp ignores
	// its own timeout (it is killed, and the test fails).
	sippKillAfter = sippTimeout + 15*time.Second
	// sipReplyTimeout bounds the wait for one reply in the raw SIP client.
	sipReplyTimeout = 5 * time.Second
)

// sipAddr returns the peer's SIP listen address for transport ("udp", "tcp",
// "tls") from the ready block's "  sip:        udp 127.0.0.1:5060" lines.
func (p *peer) sipAddr(t *testing.T, transport string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s+sip:\s+` + regexp.QuoteMeta(transport) + `\s+(\S+)\s*$`)
	m := re.FindStringSubmatch(p.stdout.String())
	if m == nil {
		p.logOutput(t)
		t.Fatalf("%s: the ready block has no %q line (want \"  sip:        %s HOST:PORT\")", p.Name, "sip: "+transport, transport)
	}
	return m[1]
}

// freeSIPPort returns a loopback port that is free for both UDP and TCP right
// now (sipp listens on both for -t t1 and on UDP for u1; SIP wants one port).
func freeSIPPort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = ln.Close()
		if err != nil {
			continue
		}
		_ = pc.Close()
		return port
	}
	t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// sippOpts is one sipp run. Every run uses -nostdin, -timeout 30s
// (-timeout_error), -m, -trace_err and -trace_msg, binds to 127.0.0.1, and
// writes its files into a fresh temp dir.
type sippOpts struct {
	name      string            // label in logs; default: the scenario name
	scenario  string            // file name in testdata/sipp (or an absolute path)
	remote    string            // host:port of the SIP element; "" for a UAS
	transport string            // sipp -t: "u1" (default) or "t1"
	localPort int               // sipp -p; 0 picks a free port
	calls     int               // sipp -m; default 1
	service   string            // sipp -s (the user part of the Request-URI)
	keys      map[string]string // sipp -key NAME VALUE ([domain] defaults to the remote)
	user      string            // -inf fields: user;domain (written to a CSV), and -au
	password  string            // -ap
	args      []string          // more sipp arguments
	wrapper   []string          // command prefix, e.g. ip netns exec NS
}

// sippProc is a running sipp.
type sippProc struct {
	name      string
	dir       string
	localPort int
	cmd       *exec.Cmd
	out       *lockedBuffer
	done      chan struct{}
	cancel    context.CancelFunc
}

// sippResult is a finished sipp run: its exit code (0 all calls succeeded,
// 1 some failed, 99 no call processed, 255/254 fatal), the -trace_err log and
// the tail of its screen output and message trace.
type sippResult struct {
	Code     int
	ErrLog   string
	Output   string
	Messages string
	Dir      string
}

func (r sippResult) String() string {
	return fmt.Sprintf("sipp exit %d\n--- error log:\n%s\n--- screen (tail):\n%s\n--- messages (tail):\n%s",
		r.Code, r.ErrLog, tail(r.Output, 4000), tail(r.Messages, 6000))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// sippScenario is the path of a scenario in testdata/sipp.
func sippScenario(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(moduleRoot, "e2e", "testdata", "sipp", name)
}

// startSipp starts sipp in the background; wait collects it. Cleanup kills it
// if the test did not wait.
func startSipp(t *testing.T, o sippOpts) *sippProc {
	t.Helper()
	bin := requireTool(t, "sipp", "sip-tester")
	if o.name == "" {
		o.name = strings.TrimSuffix(filepath.Base(o.scenario), ".xml")
	}
	if o.transport == "" {
		o.transport = "u1"
	}
	if o.calls == 0 {
		o.calls = 1
	}
	if o.localPort == 0 {
		o.localPort = freeSIPPort(t)
	}
	dir := t.TempDir()
	args := []string{
		"-sf", sippScenario(o.scenario),
		"-nostdin",
		"-timeout", fmt.Sprintf("%ds", int(sippTimeout.Seconds())), "-timeout_error",
		"-m", strconv.Itoa(o.calls),
		"-t", o.transport,
		"-i", "127.0.0.1", "-bind_local",
		"-p", strconv.Itoa(o.localPort),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
	}
	keys := map[string]string{}
	if o.remote != "" {
		keys["domain"] = o.remote
	}
	for k, v := range o.keys {
		keys[k] = v
	}
	for k, v := range keys {
		args = append(args, "-key", k, v)
	}
	if o.service != "" {
		args = append(args, "-s", o.service)
	}
	if o.user != "" {
		csv := filepath.Join(dir, "users.csv")
		if err := os.WriteFile(csv, []byte("SEQUENTIAL\n"+o.user+";"+overlayDomain+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-inf", csv, "-au", o.user)
		if o.password != "" {
			args = append(args, "-ap", o.password)
		}
	}
	args = append(args, o.args...)
	if o.remote != "" {
		args = append(args, o.remote)
	}
	full := append(append(append([]string(nil), o.wrapper...), bin), args...)

	ctx, cancel := context.WithTimeout(context.Background(), sippKillAfter)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Dir = dir
	s := &sippProc{name: o.name, dir: dir, localPort: o.localPort, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{}), cancel: cancel}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Logf("sipp %s: %s", o.name, strings.Join(full, " "))
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("sipp %s: start: %v", o.name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			t.Logf("sipp %s: still running at cleanup: killing it", s.name)
			_ = cmd.Process.Kill()
			<-s.done
		}
		cancel()
	})
	return s
}

// wait waits for sipp to exit (it is killed after sippKillAfter in all) and
// returns its result.
func (s *sippProc) wait(t *testing.T) sippResult {
	t.Helper()
	<-s.done
	s.cancel()
	r := sippResult{Code: s.cmd.ProcessState.ExitCode(), Output: s.out.String(), Dir: s.dir}
	if b, err := os.ReadFile(filepath.Join(s.dir, "errors.log")); err == nil {
		r.ErrLog = string(b)
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "messages.log")); err == nil {
		r.Messages = string(b)
	}
	return r
}

// waitListening waits until sipp's UDP port is bound (a UAS is ready to
// receive) or sipp has exited.
func (s *sippProc) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			r := s.wait(t)
			t.Fatalf("sipp %s exited before it was ready:\n%s", s.name, r)
		default:
		}
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", s.localPort))
		if err != nil {
			return // bound by sipp
		}
		_ = pc.Close()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sipp %s: UDP port %d not bound within 5 s", s.name, s.localPort)
}

// runSipp runs sipp to completion.
func runSipp(t *testing.T, o sippOpts) sippResult {
	t.Helper()
	return startSipp(t, o).wait(t)
}

// requireSippOK fails the test unless the sipp run exited 0.
func requireSippOK(t *testing.T, what string, r sippResult) {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("%s: sipp failed:\n%s", what, r)
	}
}

// lookupAOR runs `p2psip lookup AOR --peer URL --json` where p runs. found is
// false on exit status 1 (no bindings).
func lookupAOR(t *testing.T, p *peer, aor string) (reg registration, res cliResult, found bool) {
	t.Helper()
	res = p.cli(t, "lookup", aor, "--peer", p.URL, "--json")
	if res.Code != 0 {
		return reg, res, false
	}
	if err := json.Unmarshal([]byte(res.Stdout), &reg); err != nil {
		t.Fatalf("lookup --json is not JSON: %v\n%s", err, res)
	}
	return reg, res, true
}

// hasContact reports whether one of reg's bindings has a contact containing sub.
func (r registration) hasContact(sub string) bool {
	for _, b := range r.Bindings {
		if strings.Contains(b.Contact, sub) {
			return true
		}
	}
	return false
}

// ---- a tiny raw SIP client -------------------------------------------------

// sipMsg is a request to send with sendSIP. Via, Call-ID, CSeq, From tag and
// Content-Length are filled in.
type sipMsg struct {
	method  string
	ruri    string
	to      string // To URI; default ruri
	from    string // From URI; default sip:e2e@127.0.0.1
	headers []string
	body    string
	callID  string // default: random
	cseq    int    // default 1
	contact string // Contact header value; default <sip:e2e@LOCAL>; "-" for none
}

// sipReply is a parsed response.
type sipReply struct {
	Code   int
	Status string // the status line
	Raw    string
}

// header returns the first value of a header (long or compact name).
func (r sipReply) header(names ...string) string {
	return headerValue(r.Raw, names...)
}

func headerValue(raw string, names ...string) string {
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if strings.EqualFold(strings.TrimSpace(k), n) {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sendSIP sends one request over "udp" or "tcp" to addr and returns the first
// final response (5 s deadline; UDP requests are retransmitted every 500 ms).
// For an INVITE answered with a non-2xx it sends the ACK.
func sendSIP(t *testing.T, network, addr string, m sipMsg) sipReply {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, sipReplyTimeout)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	branch := "z9hG4bK" + randHex(8)
	callID := m.callID
	if callID == "" {
		callID = randHex(10) + "@e2e"
	}
	if m.cseq == 0 {
		m.cseq = 1
	}
	contact := m.contact
	if contact == "" {
		contact = "<sip:e2e@" + local + ">"
	}
	if m.to == "" {
		m.to = m.ruri
	}
	if m.from == "" {
		m.from = "sip:e2e@127.0.0.1"
	}
	via := fmt.Sprintf("Via: SIP/2.0/%s %s;branch=%s;rport", strings.ToUpper(network), local, branch)
	fromTag := randHex(4)
	build := func(method string, cseqMethod string, toHdr string, extra []string, body string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\n%s\r\n", method, m.ruri, via)
		fmt.Fprintf(&b, "From: <%s>;tag=%s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", m.from, fromTag, toHdr, callID, m.cseq, cseqMethod)
		hasMF := false
		for _, h := range extra {
			if strings.HasPrefix(strings.ToLower(h), "max-forwards:") {
				hasMF = true
			}
			b.WriteString(h + "\r\n")
		}
		if !hasMF {
			b.WriteString("Max-Forwards: 70\r\n")
		}
		if contact != "-" && method != "ACK" {
			fmt.Fprintf(&b, "Contact: %s\r\n", contact)
		}
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
		return []byte(b.String())
	}
	req := build(m.method, m.method, "<"+m.to+">", m.headers, m.body)
	t.Logf("-> %s %s\n%s", network, addr, req)
	if _, err := conn.Write(req); err != nil {
		t.Fatalf("send %s: %v", m.method, err)
	}
	deadline := time.Now().Add(sipReplyTimeout)
	_ = conn.SetDeadline(deadline)
	var rd func() (string, error)
	if network == "udp" {
		buf := make([]byte, 65535)
		rd = func() (string, error) {
			for {
				// Retransmit (RFC 3261 timer A/E, simplified) until an answer.
				_ = conn.SetReadDeadline(minTime(deadline, time.Now().Add(500*time.Millisecond)))
				n, err := conn.Read(buf)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) {
					_, _ = conn.Write(req)
					continue
				}
				if err != nil {
					return "", err
				}
				return string(buf[:n]), nil
			}
		}
	} else {
		br := bufio.NewReader(conn)
		rd = func() (string, error) { return readStreamMessage(br) }
	}
	for {
		raw, err := rd()
		if err != nil {
			t.Fatalf("%s %s over %s: no final response within %s: %v", m.method, m.ruri, network, sipReplyTimeout, err)
		}
		rep := parseReply(raw)
		if rep.Code == 0 {
			t.Logf("<- not a response, ignored:\n%s", raw)
			continue
		}
		if rep.header("Call-ID", "i") != callID {
			continue // a late retransmission of something else
		}
		t.Logf("<- %s", rep.Status)
		if rep.Code < 200 {
			continue
		}
		if m.method == "INVITE" && rep.Code >= 300 {
			ack := build("ACK", "ACK", rep.header("To", "t"), nil, "")
			_, _ = conn.Write(ack)
		}
		return rep
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func parseReply(raw string) sipReply {
	line, _, _ := strings.Cut(raw, "\r\n")
	r := sipReply{Status: line, Raw: raw}
	if f := strings.Fields(line); len(f) >= 2 && f[0] == "SIP/2.0" {
		r.Code, _ = strconv.Atoi(f[1])
	}
	return r
}

// readStreamMessage reads one SIP message from a stream (headers up to the
// blank line, then Content-Length bytes of body).
func readStreamMessage(br *bufio.Reader) (string, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			return head.String(), err
		}
		if line == "\r\n" || line == "\n" {
			if head.Len() == len(line) {
				head.Reset() // keep-alive CRLF between messages
				continue
			}
			break
		}
	}
	n, _ := strconv.Atoi(headerValue(head.String(), "Content-Length", "l"))
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return head.String(), err
	}
	return head.String() + string(body), nil
}

// registerDigest sends REGISTER for sip:user@domain to addr over UDP with the
// given Expires (and Contact, default the client's own address), answering one
// 401 digest challenge (MD5, qop=auth) with user/password. It returns the
// final response.
func registerDigest(t *testing.T, addr, user, domain, password string, expires int, contact string) sipReply {
	t.Helper()
	m := sipMsg{
		method:  "REGISTER",
		ruri:    "sip:" + domain,
		to:      "sip:" + user + "@" + domain,
		from:    "sip:" + user + "@" + domain,
		headers: []string{fmt.Sprintf("Expires: %d", expires)},
		callID:  randHex(10) + "@e2e",
		contact: contact,
	}
	rep := sendSIP(t, "udp", addr, m)
	if rep.Code != 401 && rep.Code != 407 {
		return rep
	}
	hdr := "WWW-Authenticate"
	authHdr := "Authorization"
	if rep.Code == 407 {
		hdr, authHdr = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch := parseDigestChallenge(rep.header(hdr))
	if ch["nonce"] == "" {
		t.Fatalf("%d without a digest challenge:\n%s", rep.Code, rep.Raw)
	}
	md5hex := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	ha1 := md5hex(user + ":" + ch["realm"] + ":" + password)
	ha2 := md5hex("REGISTER:" + m.ruri)
	cnonce, nc := randHex(8), "00000001"
	auth := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=MD5`, user, ch["realm"], ch["nonce"], m.ruri)
	if strings.Contains(ch["qop"], "auth") {
		resp := md5hex(ha1 + ":" + ch["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + ha2)
		auth += fmt.Sprintf(`, response="%s", qop=auth, nc=%s, cnonce="%s"`, resp, nc, cnonce)
	} else {
		auth += fmt.Sprintf(`, response="%s"`, md5hex(ha1+":"+ch["nonce"]+":"+ha2))
	}
	if ch["opaque"] != "" {
		auth += fmt.Sprintf(`, opaque="%s"`, ch["opaque"])
	}
	m.cseq = 2
	m.headers = append(m.headers, authHdr+": "+auth)
	return sendSIP(t, "udp", addr, m)
}

// parseDigestChallenge parses `Digest k="v", k=v, ...`.
func parseDigestChallenge(h string) map[string]string {
	out := map[string]string{}
	h = strings.TrimSpace(h)
	if len(h) < 6 || !strings.EqualFold(h[:6], "digest") {
		return out
	}
	rest := h[6:]
	for len(rest) > 0 {
		rest = strings.TrimLeft(rest, " ,\t")
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		after = strings.TrimLeft(after, " ")
		var v string
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				v, rest = after[1:], ""
			} else {
				v, rest = after[1:1+end], after[2+end:]
			}
		} else {
			v, rest, _ = strings.Cut(after, ",")
			v = strings.TrimSpace(v)
		}
		out[k] = v
	}
	return out
}

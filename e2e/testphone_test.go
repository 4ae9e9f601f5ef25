//go:build e2e

package e2e

// A plain SIP phone in Go (sipgo for SIP, pion/rtp for media) for what
// baresip cannot be made to do: change its RTP SSRC, jump its sequence
// number, move its media to another port with a re-INVITE, and count the
// packets that reach each of its ports.
//
//	p := startTestPhone(t, testPhoneOpts{name: "dave", ip: "127.0.0.34",
//		user: "bob", domain: "atlanta.example", password: "bobpw", registrar: "127.0.0.2:5060"})
//	c := p.WaitCall(t, 20*time.Second) // auto-answered with PCMU
//	c.ChangeSSRC(); c.JumpSeq(40000)
//	res := c.Reinvite(t, c.NewSocket(t))
//	c.Bye(t)
//
// It registers with digest authentication (RFC 3261 §22) when it has a
// registrar, answers every INVITE at once with a plain RTP/AVP PCMU answer
// (a=rtcp naming the RTP port, RFC 3605, so the far end's RTCP comes to
// the one socket) and sends a 440 Hz tone in 20 ms packets from the
// socket its SDP names (symmetric RTP, RFC 4961).

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
)

var tpMTU sync.Once

// testPhoneOpts says how to run one test phone.
type testPhoneOpts struct {
	name string
	ip   string // SIP and RTP address; required
	port int    // SIP UDP port; default 5060
	// user@domain registers at registrar (host:port) with password;
	// registrar "" registers nowhere.
	user, domain, password, registrar string
}

// testPhone is a running test phone.
type testPhone struct {
	o       testPhoneOpts
	ua      *sipgo.UserAgent
	cli     *sipgo.Client
	dlgs    *sipgo.DialogServerCache
	contact sip.ContactHeader
	stop    context.CancelFunc
	calls   chan *tpCall

	mu     sync.Mutex
	byID   map[string]*tpCall // guarded by mu; by Call-ID
	logbuf *lockedBuffer
}

// tpCall is one call the phone answered.
type tpCall struct {
	p       *testPhone
	dlg     *sipgo.DialogServerSession
	Invite  *sip.Request
	Offer   tpSDP  // the far end's offer
	Answer  string // the phone's answer
	version int    // of the phone's SDP (o= line)
	sessID  int64

	media *tpMedia

	endOnce sync.Once
	ended   chan struct{}
	mu      sync.Mutex
	bye     *sip.Request // guarded by mu; the BYE that ended the call
}

// tpSDP is what the test reads of an SDP body.
type tpSDP struct {
	IP   string
	Port int
	PTs  []int
	Dir  string // sendrecv unless an attribute says otherwise
	Raw  string
}

var reSDPConn = regexp.MustCompile(`(?m)^c=IN IP4 (\S+)`)
var reSDPAudio = regexp.MustCompile(`(?m)^m=audio (\d+) (\S+)((?: \d+)*)`)

func parseTPSDP(body string) (tpSDP, error) {
	s := tpSDP{Raw: body, Dir: "sendrecv"}
	m := reSDPAudio.FindStringSubmatch(body)
	if m == nil {
		return s, fmt.Errorf("no m=audio line in %q", body)
	}
	s.Port, _ = strconv.Atoi(m[1])
	for _, f := range strings.Fields(m[3]) {
		pt, _ := strconv.Atoi(f)
		s.PTs = append(s.PTs, pt)
	}
	c := reSDPConn.FindAllStringSubmatch(body, -1)
	if len(c) == 0 {
		return s, fmt.Errorf("no c=IN IP4 line in %q", body)
	}
	s.IP = c[len(c)-1][1] // the media-level one if there is one
	for _, d := range []string{"sendonly", "recvonly", "inactive"} {
		if regexp.MustCompile(`(?m)^a=` + d + `\r?$`).MatchString(body) {
			s.Dir = d
		}
	}
	return s, nil
}

func (s tpSDP) addr() netip.AddrPort {
	ip, _ := netip.ParseAddr(s.IP)
	return netip.AddrPortFrom(ip, uint16(s.Port))
}

// startTestPhone starts the phone's SIP stack on ip:port (UDP), registers
// it if it has a registrar (first removing every binding of the AOR), and
// at cleanup de-registers it and stops.
func startTestPhone(t *testing.T, o testPhoneOpts) *testPhone {
	t.Helper()
	if o.port == 0 {
		o.port = 5060
	}
	if o.name == "" {
		o.name = "testphone"
	}
	user := o.user
	if user == "" {
		user = o.name
	}
	// sipgo refuses UDP messages over UDPMTUSize-200 bytes (RFC 3261
	// §18.1.1's rule for requests, applied to everything): a 200 to an
	// INVITE that crossed H, P and Kamailio carries five Record-Routes and
	// four Vias and is bigger, and would be dropped without a word. The
	// phone talks over lo (MTU 64 KiB).
	tpMTU.Do(func() { sip.UDPMTUSize = 16000 })
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(o.name), sipgo.WithUserAgentHostname(o.ip))
	if err != nil {
		t.Fatal(err)
	}
	hostPort := net.JoinHostPort(o.ip, strconv.Itoa(o.port))
	cli, err := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(hostPort))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPhone{o: o, ua: ua, cli: cli, calls: make(chan *tpCall, 4), byID: map[string]*tpCall{}, logbuf: &lockedBuffer{}}
	p.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: o.ip, Port: o.port}}
	p.dlgs = sipgo.NewDialogServerCache(cli, p.contact)
	srv.OnInvite(p.onInvite)
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = p.dlgs.ReadAck(req, tx) })
	srv.OnBye(p.onBye)
	ok := func(req *sip.Request, tx sip.ServerTransaction) {
		p.logf("got %s: 200", req.Method)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	}
	srv.OnInfo(ok)
	srv.OnOptions(ok)
	srv.OnUpdate(ok)

	conn, err := net.ListenPacket("udp4", hostPort)
	if err != nil {
		t.Fatalf("%s: SIP socket %s: %v", o.name, hostPort, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	served := make(chan struct{})
	go func() {
		defer close(served)
		go func() { <-ctx.Done(); _ = conn.Close() }()
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		if o.registrar != "" {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			if res, err := p.register(rctx, &p.contact, 0); err != nil || res.StatusCode != 200 {
				t.Logf("%s: de-REGISTER: %v %v", o.name, statusOf(res), err)
			}
			rcancel()
		}
		p.mu.Lock()
		calls := make([]*tpCall, 0, len(p.byID))
		for _, c := range p.byID {
			calls = append(calls, c)
		}
		p.mu.Unlock()
		for _, c := range calls {
			c.media.close()
		}
		cancel()
		_ = ua.Close()
		<-served
		if t.Failed() {
			t.Logf("%s: SIP log:\n%s", o.name, pxTail(p.logbuf.String(), 20000))
		}
	})
	// The client sends from the listening socket only once sipgo's
	// transport has it (ServeUDP adds the port, then pools the socket).
	for deadline := time.Now().Add(5 * time.Second); len(ua.TransportLayer().ListenPorts("udp")) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: sipgo does not serve udp %s", o.name, hostPort)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	t.Logf("%s: SIP on udp %s", o.name, hostPort)

	if o.registrar != "" {
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer rcancel()
		// Stale bindings of the AOR (an earlier phone that did not
		// de-register) would fork our calls to it.
		star := sip.NewHeader("Contact", "*")
		if res, err := p.register(rctx, star, 0); err != nil || res.StatusCode != 200 {
			t.Fatalf("%s: REGISTER Contact: * (removing old bindings) at %s: %s %v", o.name, o.registrar, statusOf(res), err)
		}
		res, err := p.register(rctx, &p.contact, 600)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s: REGISTER %s@%s at %s: %s %v", o.name, o.user, o.domain, o.registrar, statusOf(res), err)
		}
		t.Logf("%s: registered %s@%s → %s at %s", o.name, o.user, o.domain, p.contact.Address.String(), o.registrar)
	}
	return p
}

func statusOf(res *sip.Response) string {
	if res == nil {
		return "(no response)"
	}
	return strconv.Itoa(res.StatusCode) + " " + res.Reason
}

func (p *testPhone) logf(format string, args ...any) {
	fmt.Fprintf(p.logbuf, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// register sends a REGISTER for the phone's AOR with contact and expires,
// answering a digest challenge.
func (p *testPhone) register(ctx context.Context, contact sip.Header, expires int) (*sip.Response, error) {
	aor := sip.Uri{Scheme: "sip", User: p.o.user, Host: p.o.domain}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.o.domain})
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.SetDestination(p.o.registrar)
	res, err := p.cli.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		res, err = p.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.o.user, Password: p.o.password})
	}
	if res != nil {
		p.logf("REGISTER %s expires %d: %d %s", contact.Value(), expires, res.StatusCode, res.Reason)
	}
	return res, err
}

// onInvite answers a new INVITE at once (PCMU) and starts the media; an
// in-dialog one (a re-INVITE of the far end) gets the current answer.
func (p *testPhone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	p.logf("got:\n%s", req.String())
	if to := req.To(); to != nil && to.Params.Has("tag") {
		p.mu.Lock()
		c := p.byID[callIDOfReq(req)]
		p.mu.Unlock()
		if c == nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		if offer, err := parseTPSDP(string(req.Body())); err == nil {
			c.media.setDst(offer.addr())
		}
		res := sip.NewSDPResponseFromRequest(req, []byte(c.sdp(c.media.sendSock().port)))
		res.AppendHeader(&p.contact)
		_ = tx.Respond(res)
		return
	}
	offer, err := parseTPSDP(string(req.Body()))
	if err != nil {
		p.logf("bad offer: %v", err)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 488, "Not Acceptable Here", nil))
		return
	}
	dlg, err := p.dlgs.ReadInvite(req, tx)
	if err != nil {
		p.logf("ReadInvite: %v", err)
		return
	}
	c := &tpCall{p: p, dlg: dlg, Invite: req, Offer: offer, sessID: rand.Int64N(1 << 40), ended: make(chan struct{})}
	m, err := newTPMedia(p.o.ip)
	if err != nil {
		p.logf("media: %v", err)
		_ = dlg.Respond(500, "No RTP socket", nil)
		return
	}
	c.media = m
	p.mu.Lock()
	p.byID[callIDOfReq(req)] = c
	p.mu.Unlock()
	_ = dlg.Respond(180, "Ringing", nil)
	c.Answer = c.sdp(m.sendSock().port)
	m.setDst(offer.addr())
	m.start()
	select {
	case p.calls <- c:
	default:
	}
	if err := dlg.RespondSDP([]byte(c.Answer)); err != nil {
		p.logf("answering: %v", err)
	}
	p.logf("answered (ACK in)")
}

func (p *testPhone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	p.logf("got:\n%s", req.String())
	p.mu.Lock()
	c := p.byID[callIDOfReq(req)]
	p.mu.Unlock()
	if c == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	if err := p.dlgs.ReadBye(req, tx); err != nil {
		// Not this dialog's tags (or sipgo disagrees): answer anyway.
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	}
	c.end(req)
}

func callIDOfReq(req *sip.Request) string {
	if id := req.CallID(); id != nil {
		return id.Value()
	}
	return ""
}

// WaitCall waits for the next call the phone answered.
func (p *testPhone) WaitCall(t *testing.T, timeout time.Duration) *tpCall {
	t.Helper()
	select {
	case c := <-p.calls:
		return c
	case <-time.After(timeout):
		t.Fatalf("%s: no INVITE within %s", p.o.name, timeout)
	}
	return nil
}

// sdp is the phone's SDP with its RTP on port (PCMU and telephone-event).
func (c *tpCall) sdp(port int) string {
	c.version++
	ip := c.p.o.ip
	return strings.Join([]string{
		"v=0",
		fmt.Sprintf("o=%s %d %d IN IP4 %s", c.p.o.name, c.sessID, c.version, ip),
		"s=-",
		"c=IN IP4 " + ip,
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0 101", port),
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-15",
		"a=ptime:20",
		fmt.Sprintf("a=rtcp:%d", port),
		"a=sendrecv",
		"",
	}, "\r\n")
}

func (c *tpCall) end(bye *sip.Request) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		c.bye = bye
		c.mu.Unlock()
		c.media.close()
		close(c.ended)
	})
}

// Ended is closed when the call has ended (a BYE either way).
func (c *tpCall) Ended() <-chan struct{} { return c.ended }

// ByeReceived is the BYE that ended the call, nil if none came.
func (c *tpCall) ByeReceived() *sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bye
}

// Reinvite moves the call's media to sock: the phone sends from sock at
// once (symmetric RTP: it sends from where it now receives) and offers
// sock's port in a re-INVITE; it returns the final response (ACKed when
// 2xx).
func (c *tpCall) Reinvite(t *testing.T, sock *tpSock) *sip.Response {
	t.Helper()
	c.media.sendFrom(sock)
	body := c.sdp(sock.port)
	target := c.Invite.Contact().Address
	req := sip.NewRequest(sip.INVITE, target)
	req.SetBody([]byte(body))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(&c.p.contact)
	req.Laddr = sip.Addr{IP: net.ParseIP(c.p.o.ip), Port: c.p.o.port}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tx, err := c.dlg.TransactionRequest(ctx, req)
	if err != nil {
		t.Fatalf("%s: re-INVITE: %v", c.p.o.name, err)
	}
	defer tx.Terminate()
	c.p.logf("sent:\n%s", req.String())
	for {
		select {
		case res := <-tx.Responses():
			c.p.logf("re-INVITE got:\n%s", res.String())
			if res.IsProvisional() {
				continue
			}
			if res.IsSuccess() {
				ack := sip.NewRequest(sip.ACK, target)
				ack.Laddr = req.Laddr
				if err := c.dlg.WriteRequest(ack); err != nil {
					t.Errorf("%s: ACK for the re-INVITE's 2xx: %v", c.p.o.name, err)
				}
				c.p.logf("sent:\n%s", ack.String())
			}
			return res
		case <-tx.Done():
			t.Fatalf("%s: re-INVITE got no final response: %v", c.p.o.name, tx.Err())
		case <-ctx.Done():
			t.Fatalf("%s: re-INVITE got no final response within 20 s", c.p.o.name)
		}
	}
}

// Bye ends the call from the phone and returns the BYE's final response.
func (c *tpCall) Bye(t *testing.T) *sip.Response {
	t.Helper()
	bye := sip.NewRequest(sip.BYE, c.Invite.Contact().Address)
	bye.Laddr = sip.Addr{IP: net.ParseIP(c.p.o.ip), Port: c.p.o.port}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tx, err := c.dlg.TransactionRequest(ctx, bye)
	if err != nil {
		t.Fatalf("%s: BYE: %v", c.p.o.name, err)
	}
	defer tx.Terminate()
	c.p.logf("sent:\n%s", bye.String())
	for {
		select {
		case res := <-tx.Responses():
			c.p.logf("BYE got: %d %s", res.StatusCode, res.Reason)
			if res.IsProvisional() {
				continue
			}
			c.end(nil)
			return res
		case <-tx.Done():
			t.Fatalf("%s: BYE got no final response: %v", c.p.o.name, tx.Err())
		case <-ctx.Done():
			t.Fatalf("%s: BYE got no final response within 20 s", c.p.o.name)
		}
	}
}

// ---- media -----------------------------------------------------------------

// tpSock is one RTP socket of the phone and what arrived on it.
type tpSock struct {
	conn *net.UDPConn
	port int
	rx   atomic.Int64 // RTP packets received (RTCP not counted)
	rtcp atomic.Int64
	last atomic.Int64 // UnixNano of the last RTP packet
	pts  sync.Map     // payload type → count

	mu       sync.Mutex
	arrivals []time.Time // guarded by mu; of each RTP packet
}

// Window counts the RTP packets that arrived in [from, to) and the
// longest time without one there (from the window's start to its end).
func (s *tpSock) Window(from, to time.Time) (n int, longest time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := from
	for _, at := range s.arrivals {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		n++
		longest = max(longest, at.Sub(last))
		last = at
	}
	return n, max(longest, to.Sub(last))
}

func (s *tpSock) read() {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		if len(b) >= 2 && b[1] >= 192 && b[1] <= 223 { // RTCP (RFC 5761 §4)
			s.rtcp.Add(1)
			continue
		}
		if _, err := h.Unmarshal(b); err != nil || h.Version != 2 {
			continue
		}
		now := time.Now()
		s.rx.Add(1)
		s.last.Store(now.UnixNano())
		s.mu.Lock()
		s.arrivals = append(s.arrivals, now)
		s.mu.Unlock()
		v, _ := s.pts.LoadOrStore(h.PayloadType, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
}

// RX is how many RTP packets the socket received.
func (s *tpSock) RX() int { return int(s.rx.Load()) }

// tpMedia is a call's RTP: a 440 Hz PCMU tone every 20 ms from the send
// socket to the far end's address, with SSRC and sequence number the test
// can change.
type tpMedia struct {
	ip string

	mu    sync.Mutex
	socks []*tpSock      // guarded by mu
	send  *tpSock        // guarded by mu
	dst   netip.AddrPort // guarded by mu
	ssrc  uint32         // guarded by mu
	seq   uint16         // guarded by mu
	ts    uint32         // guarded by mu
	sent  int            // guarded by mu
	// sentAt is when each packet left; guarded by mu.
	sentAt []time.Time

	started   bool // guarded by mu
	done      chan struct{}
	closeOnce sync.Once
}

func newTPMedia(ip string) (*tpMedia, error) {
	m := &tpMedia{ip: ip, ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32(), done: make(chan struct{})}
	s, err := m.newSock()
	if err != nil {
		return nil, err
	}
	m.send = s
	return m, nil
}

func (m *tpMedia) newSock() (*tpSock, error) {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(m.ip), 0)))
	if err != nil {
		return nil, err
	}
	s := &tpSock{conn: c, port: c.LocalAddr().(*net.UDPAddr).Port}
	m.mu.Lock()
	m.socks = append(m.socks, s)
	m.mu.Unlock()
	go s.read()
	return s, nil
}

// NewSocket opens another RTP socket (for a re-INVITE that moves the media).
func (c *tpCall) NewSocket(t *testing.T) *tpSock {
	t.Helper()
	s, err := c.media.newSock()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Sock is the socket the call now sends from (and offered last).
func (c *tpCall) Sock() *tpSock { return c.media.sendSock() }

func (m *tpMedia) sendSock() *tpSock {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.send
}

func (m *tpMedia) sendFrom(s *tpSock) {
	m.mu.Lock()
	m.send = s
	m.mu.Unlock()
}

func (m *tpMedia) setDst(d netip.AddrPort) {
	m.mu.Lock()
	m.dst = d
	m.mu.Unlock()
}

// ChangeSSRC makes the phone's stream a new source: a new SSRC with its own
// random sequence number and timestamp (what a phone does after a transfer
// or when its media engine restarts).
func (c *tpCall) ChangeSSRC() (oldSSRC, newSSRC uint32) {
	m := c.media
	m.mu.Lock()
	defer m.mu.Unlock()
	oldSSRC = m.ssrc
	for m.ssrc == oldSSRC {
		m.ssrc = rand.Uint32()
	}
	m.seq, m.ts = uint16(rand.Uint32()), rand.Uint32()
	return oldSSRC, m.ssrc
}

// JumpSeq moves the sequence number on by n (and the timestamp by as many
// packets) within the same SSRC.
func (c *tpCall) JumpSeq(n uint16) (before, after uint16) {
	m := c.media
	m.mu.Lock()
	defer m.mu.Unlock()
	before = m.seq
	m.seq += n
	m.ts += uint32(n) * 160
	return before, m.seq
}

// Sent is how many RTP packets the phone has sent.
func (c *tpCall) Sent() int {
	c.media.mu.Lock()
	defer c.media.mu.Unlock()
	return c.media.sent
}

// tpTone is one second of a 440 Hz tone in G.711 μ-law (440 whole periods:
// it loops without a click).
var tpTone = func() []byte {
	b := make([]byte, 8000)
	for i := range b {
		b[i] = linearToULaw(int16(0.3 * 32767 * math.Sin(2*math.Pi*440*float64(i)/8000)))
	}
	return b
}()

// linearToULaw is G.711 μ-law encoding of one sample.
func linearToULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	v, sign := int(s), byte(0)
	if v < 0 {
		v, sign = -v, 0x80
	}
	if v > clip {
		v = clip
	}
	v += bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^(sign | byte(exp<<4) | byte(mant))
}

func (m *tpMedia) start() {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return
	}
	m.started = true
	m.mu.Unlock()
	go func() {
		// Packet k leaves at start + k×20 ms: after a stall (a loaded
		// machine) the phone catches up at once, as a phone's clock-driven
		// media does, instead of dropping the packets a ticker would.
		start := time.Now()
		timer := time.NewTimer(0)
		defer timer.Stop()
		buf := make([]byte, 12+160)
		for k := 0; ; k++ {
			if d := time.Until(start.Add(time.Duration(k) * 20 * time.Millisecond)); d > 0 {
				timer.Reset(d)
				select {
				case <-m.done:
					return
				case <-timer.C:
				}
			} else {
				select {
				case <-m.done:
					return
				default:
				}
			}
			now := time.Now()
			m.mu.Lock()
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: m.seq, Timestamp: m.ts,
				SSRC: m.ssrc, Marker: k == 0}, Payload: tpTone[(k%50)*160 : (k%50+1)*160]}
			m.seq++
			m.ts += 160
			send, dst := m.send, m.dst
			m.sent++
			m.sentAt = append(m.sentAt, now)
			m.mu.Unlock()
			n, err := pkt.MarshalTo(buf)
			if err != nil || !dst.IsValid() || dst.Port() == 0 {
				continue
			}
			_, _ = send.conn.WriteToUDPAddrPort(buf[:n], dst)
		}
	}()
}

// SentWindow counts the RTP packets the phone sent in [from, to) and the
// longest time it sent none there.
func (c *tpCall) SentWindow(from, to time.Time) (n int, longest time.Duration) {
	m := c.media
	m.mu.Lock()
	defer m.mu.Unlock()
	last := from
	for _, at := range m.sentAt {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		n++
		longest = max(longest, at.Sub(last))
		last = at
	}
	return n, max(longest, to.Sub(last))
}

func (m *tpMedia) close() {
	if m == nil {
		return
	}
	m.closeOnce.Do(func() {
		close(m.done)
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range m.socks {
			_ = s.conn.Close()
		}
	})
}

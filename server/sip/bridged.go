package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/p2psip/p2psip/bridge"
)

// A bridged dialog: a browser hosted by this peer talks with a phone that
// speaks plain RTP/AVP, and this peer's media bridge sits between them.
// The peer stays a record-routing proxy (RFC 3261 §16); only the SDP of
// the messages it forwards changes (each offer and answer is translated
// by the bridge). Three things make it more than a proxy, as with
// Kamailio's dialog module and rtpengine:
//
//   - it ends the dialog itself when the media dies (no RTP, ICE failed,
//     the tab closed): a BYE to each side, built from what the INVITE and
//     its 2xx carried (§12.2.1.1: remote target, route set, tags);
//   - it sends DTMF as SIP INFO to whichever side cannot take RFC 4733;
//   - so those requests fit each side's CSeq space (§12.2.2: a UAS
//     rejects a CSeq lower than the last), it shifts the CSeq of the
//     requests it forwards later in that direction by how many it sent,
//     and shifts the responses back.

// Directions within a bridged dialog.
const (
	fromCaller = 0 // requests the caller sends (and the peer sends for it)
	fromCallee = 1
)

// bridgedDialog is one dialog whose media this peer bridges.
type bridgedDialog struct {
	s         *Service
	sess      MediaSession
	callID    string
	callerWeb bool // the browser called (the phone is the callee)

	mu        sync.Mutex
	tracked   bool            // guarded by mu; the 2xx came: the fields below are set
	ended     bool            // guarded by mu
	callerTag string          // guarded by mu
	calleeTag string          // guarded by mu
	caller    *sip.FromHeader // guarded by mu
	callee    *sip.ToHeader   // guarded by mu
	target    [2]sip.Uri      // guarded by mu; where requests from each side go (the other's Contact)
	routes    [2][]sip.Uri    // guarded by mu; their route sets, from this peer on
	lastSeq   [2]uint32       // guarded by mu; the last CSeq each side sent
	sent      [2]uint32       // guarded by mu; requests this peer sent in each side's name
	// invite is each side's last INVITE: its CSeq and how far it moved,
	// for its ACK (guarded by mu).
	invite [2]struct{ seq, shift uint32 }
	// late is the answer an ACK must carry after a 2xx whose offer the
	// bridge translated (an INVITE without SDP); nil otherwise (guarded
	// by mu).
	late *lateAnswer
}

// lateAnswer is an offer in a 2xx waiting for its answer in the ACK
// (RFC 3261 §13.2.1, RFC 3264 §4: the INVITE had none).
type lateAnswer struct {
	side    int    // who sent the INVITE, and so the ACK
	seq     uint32 // the INVITE's CSeq as that side numbered it
	fromWeb bool   // the answer is the browser's

	mu  sync.Mutex
	out []byte // guarded by mu; the translated answer, for a retransmitted ACK
}

// branchMedia is the bridging of one forwarded INVITE (or UPDATE).
type branchMedia struct {
	d       *bridgedDialog
	fromWeb bool // the offer came from the browser: the answer is plain
	initial bool // a dialog-creating INVITE: its failure ends the session
	done    bool
	// late: the INVITE had no SDP, so the offer comes in the 2xx (from
	// the browser when fromWeb) and the answer in the ACK; place is
	// where a new session's plain leg goes.
	late  bool
	place Placement
}

// bridgedDialogs indexes the bridged dialogs by Call-ID.
type bridgedDialogs struct {
	mu sync.Mutex
	m  map[string]*bridgedDialog // guarded by mu
}

func (b *bridgedDialogs) get(callID string) *bridgedDialog {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[callID]
}

func (b *bridgedDialogs) put(d *bridgedDialog) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*bridgedDialog{}
	}
	b.m[d.callID] = d
}

func (b *bridgedDialogs) drop(d *bridgedDialog) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m[d.callID] == d {
		delete(b.m, d.callID)
	}
}

// isWS reports a WebSocket transport: a browser's (RFC 7118).
func isWS(t string) bool { return strings.EqualFold(t, "WS") || strings.EqualFold(t, "WSS") }

// toBrowser reports whether a target is a browser: a flow of this peer's
// over WebSocket, or a binding elsewhere whose contact says so.
func toBrowser(t target) bool {
	if t.transport != "" {
		return isWS(t.transport)
	}
	v, _ := t.ruri.UriParams.Get("transport")
	return isWS(v)
}

// bridgeBranches decides, per branch of a dialog-creating INVITE, whether
// this peer bridges its media, and translates the offer of those it does.
func (f *fork) bridgeBranches() {
	br := f.s.cfg.Bridge
	body := f.req.Body()
	if br == nil || !f.req.IsInvite() {
		return
	}
	if len(body) == 0 {
		f.bridgeLateBranches()
		return
	}
	kind := br.Classify(body)
	// A browser hosted here: its INVITE came straight over its WebSocket.
	fromBrowser := kind == MediaWebRTC && isWS(f.req.Transport()) && f.reqVias == 1
	for _, b := range f.branches {
		switch {
		case fromBrowser && !toBrowser(b.t):
			f.bridgeBranch(b, true)
		case kind == MediaPlain && b.t.dest != "" && isWS(b.t.transport):
			f.bridgeBranch(b, false)
		}
	}
}

// bridgeLateBranches marks the branches of an INVITE without SDP (a late
// offer, RFC 3261 §13.2.1) from a phone to a browser hosted here: the
// browser offers in its 2xx and the phone answers in the ACK, so the
// session starts with the 2xx (translateLate). A browser always offers in
// its INVITE, so a late offer toward one comes from a phone.
func (f *fork) bridgeLateBranches() {
	if isWS(f.req.Transport()) && f.reqVias == 1 {
		return // a browser's own INVITE: nothing to bridge yet
	}
	for _, b := range f.branches {
		if b.t.dest != "" && isWS(b.t.transport) {
			d := &bridgedDialog{s: f.s, callID: callIDOf(f.req)}
			b.media = &branchMedia{d: d, fromWeb: true, initial: true, late: true, place: f.placement(b, false)}
		}
	}
}

// placement is where a session's plain leg goes: on this peer's own
// address when the phone is registered here (the callee's binding when the
// browser calls, else the request's flow), else wherever the bridge
// chooses.
func (f *fork) placement(b *branch, browserCalls bool) Placement {
	if browserCalls && b.t.dest != "" {
		return Placement{Local: true, DeviceIP: hostIP(b.t.dest)}
	}
	if !browserCalls && f.s.flows.bySource(f.req.Source()) != nil {
		return Placement{Local: true, DeviceIP: hostIP(f.req.Source())}
	}
	return Placement{}
}

// events are a session's callbacks into its dialog.
func (d *bridgedDialog) events() MediaEvents {
	return MediaEvents{
		OnEnd:          func(reason string) { d.end(reason) },
		OnPhoneDigit:   func(digit byte, dur time.Duration) { d.digit(!d.callerWeb, digit, dur) },
		OnBrowserDigit: func(digit byte, dur time.Duration) { d.digit(d.callerWeb, digit, dur) },
	}
}

// bridgeBranch starts the media session of one branch: fromWeb when the
// browser is the caller.
func (f *fork) bridgeBranch(b *branch, fromWeb bool) {
	s := f.s
	d := &bridgedDialog{s: s, callID: callIDOf(f.req), callerWeb: fromWeb}
	p := f.placement(b, fromWeb)
	ev := d.events()
	ctx, cancel := context.WithTimeout(context.Background(), bridgeSetupTimeout)
	defer cancel()
	var (
		sess MediaSession
		out  []byte
		err  error
	)
	if fromWeb {
		sess, out, err = s.cfg.Bridge.FromWebRTC(ctx, f.req.Body(), p, ev)
	} else {
		sess, out, err = s.cfg.Bridge.FromPlain(ctx, f.req.Body(), p, ev)
	}
	if err != nil {
		s.m.bridgeSetup.WithLabelValues(bridgeFailure(err)).Inc()
		s.log.Warn("bridging a call's media failed", "call_id", d.callID, "err", err)
		b.pre = bridgeErrorResponse(f.req, err)
		return
	}
	s.m.bridgeSetup.WithLabelValues("ok").Inc()
	d.sess = sess
	b.media = &branchMedia{d: d, fromWeb: fromWeb, initial: true}
	b.out.SetBody(out)
}

// byeAfter2xx is how long after relaying a 2xx whose answer cannot be
// bridged the peer ends the dialog: the ACK has come by then (T1 is
// 500 ms, and the 2xx went out first).
var byeAfter2xx = 2 * time.Second // tests shorten it

// bridgeSetupTimeout bounds a bridged offer: a relay allocation over TLS
// and ICE gathering.
const bridgeSetupTimeout = 10 * time.Second

func hostIP(hostport string) netip.Addr {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap.Addr().Unmap()
	}
	h, _, _ := strings.Cut(hostport, ":")
	ip, _ := netip.ParseAddr(h)
	return ip
}

// bridgeFailure names what stopped a bridged offer, for the metric and
// the response.
func bridgeFailure(err error) string {
	switch {
	case errors.Is(err, bridge.ErrNoCommonCodec):
		return "no_common_codec"
	case errors.Is(err, bridge.ErrNoRelay):
		return "no_relay"
	case errors.Is(err, bridge.ErrNoPorts):
		return "no_ports"
	}
	return "failed"
}

// bridgeErrorResponse says what stopped a bridged call, in words that
// point at the real cause.
func bridgeErrorResponse(req *sip.Request, err error) *sip.Response {
	switch bridgeFailure(err) {
	case "no_common_codec":
		// RFC 3261 §21.4.26 with a Warning (§20.43: 305 Incompatible
		// media format).
		res := sip.NewResponseFromRequest(req, 488, "Not Acceptable Here (no common codec: the bridge relays G.711 PCMU or PCMA)", nil)
		res.AppendHeader(sip.NewHeader("Warning", `305 p2psip "no common codec: the browser's audio is bridged as G.711 PCMU or PCMA"`))
		return res
	case "no_relay":
		return sip.NewResponseFromRequest(req, 503, "Service Unavailable (no overlay relay for the call's audio)", nil)
	case "no_ports":
		return sip.NewResponseFromRequest(req, 503, "Service Unavailable (no free RTP port for the call's audio)", nil)
	}
	res := sip.NewResponseFromRequest(req, 488, "Not Acceptable Here (the call's audio cannot be bridged)", nil)
	res.AppendHeader(sip.NewHeader("Warning", fmt.Sprintf("399 p2psip %q", err.Error())))
	return res
}

// translate puts the bridge's SDP into a response of a bridged branch:
// the answer (in a 18x or the 2xx) becomes the other side's, and a
// failure ends the session.
func (f *fork) translate(b *branch, res *sip.Response) {
	m := b.media
	if m == nil || m.done {
		return
	}
	if m.late {
		f.translateLate(b, res)
		return
	}
	code := res.StatusCode
	if code >= 300 {
		m.done = true
		if m.initial {
			m.d.sess.Close()
			f.s.dialogs.drop(m.d)
		} else {
			m.d.sess.Cancel()
		}
		return
	}
	if len(res.Body()) == 0 {
		if code >= 200 && m.initial {
			f.s.trackDialog(m.d, f.req, res)
		}
		return
	}
	var (
		out []byte
		err error
	)
	if m.fromWeb {
		out, err = m.d.sess.AnswerFromPlain(res.Body())
	} else {
		out, err = m.d.sess.AnswerFromWebRTC(res.Body())
	}
	if err != nil {
		f.s.log.Warn("bridging an answer failed", "call_id", m.d.callID, "code", code, "err", err)
		if code < 200 {
			res.SetBody(nil) // ringing without early media is still ringing
			res.RemoveHeader("Content-Type")
			return
		}
		// A 2xx whose answer cannot be bridged (a phone that answered a
		// codec it was not offered): the dialog exists, so it is ended.
		if m.initial {
			f.s.trackDialog(m.d, f.req, res)
			// After the 2xx and its ACK, not before: a BYE must not
			// overtake the response that makes the dialog (RFC 3261 §15).
			time.AfterFunc(byeAfter2xx, func() { m.d.end("the far end answered no codec the bridge relays") })
		}
		return
	}
	res.SetBody(out)
	if code >= 200 {
		m.done = true
		if m.initial {
			f.s.trackDialog(m.d, f.req, res)
		}
	}
}

// trackDialog records what the peer needs to send in-dialog requests of
// its own (§12.1.2): tags, remote targets, route sets.
func (s *Service) trackDialog(d *bridgedDialog, inv *sip.Request, res *sip.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tracked || inv.From() == nil || res.To() == nil {
		return
	}
	d.tracked = true
	d.caller = sip.HeaderClone(inv.From()).(*sip.FromHeader)
	d.callee = sip.HeaderClone(res.To()).(*sip.ToHeader)
	d.callerTag = d.caller.Params.GetOr("tag", "")
	d.calleeTag = d.callee.Params.GetOr("tag", "")
	if c := inv.Contact(); c != nil {
		d.target[fromCallee] = c.Address
	}
	if c := res.Contact(); c != nil {
		d.target[fromCaller] = c.Address
	}
	var rr []sip.Uri
	for _, h := range res.GetHeaders("Record-Route") {
		if r, ok := h.(*sip.RecordRouteHeader); ok {
			rr = append(rr, r.Address)
		}
	}
	first, last := -1, -1
	for i, u := range rr {
		if s.isSelf(u) || s.isPeerHost(u.Host) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first >= 0 {
		// The callee's side is above this peer's entries, the caller's
		// below (each proxy adds its entry on top, §16.6 step 4).
		above := slices.Clone(rr[:first])
		slices.Reverse(above)
		d.routes[fromCaller] = above
		d.routes[fromCallee] = slices.Clone(rr[last+1:])
	}
	if cs := inv.CSeq(); cs != nil {
		d.lastSeq[fromCaller] = cs.SeqNo
	}
	s.dialogs.put(d)
}

// side tells which side sent an in-dialog request.
func (d *bridgedDialog) side(req *sip.Request) (int, bool) {
	tag := fromTag(req)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch tag {
	case d.callerTag:
		return fromCaller, true
	case d.calleeTag:
		return fromCallee, true
	}
	return 0, false
}

// shift records req's CSeq and returns how far it must move up, past the
// requests this peer sent in the same side's name.
func (d *bridgedDialog) shift(side int, req *sip.Request) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	cs := req.CSeq()
	if cs != nil && cs.MethodName != sip.ACK && cs.SeqNo > d.lastSeq[side] {
		d.lastSeq[side] = cs.SeqNo
	}
	if cs != nil && cs.MethodName == sip.INVITE {
		d.invite[side].seq, d.invite[side].shift = cs.SeqNo, d.sent[side]
	}
	return d.sent[side]
}

// bridgeInDialog handles an in-dialog request of a bridged dialog: the
// offer of a re-INVITE or UPDATE is translated, the CSeq shifted, and a
// BYE ends the media. A non-zero code is the response to give instead.
func (f *fork) bridgeInDialog(d *bridgedDialog) (int, string) {
	side, ok := d.side(f.req)
	if !ok {
		return 0, ""
	}
	if n := d.shift(side, f.req); n > 0 {
		cs := f.req.CSeq()
		f.cseqShift = n
		for _, b := range f.branches {
			b.out.ReplaceHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo + n, MethodName: cs.MethodName})
		}
	}
	switch f.req.Method {
	case sip.BYE:
		d.close()
		return 0, ""
	case sip.INVITE, sip.UPDATE:
	default:
		return 0, ""
	}
	body := f.req.Body()
	fromWeb := (side == fromCaller) == d.callerWeb
	if len(body) == 0 {
		if f.req.Method == sip.INVITE {
			// A re-INVITE without SDP: the other side offers in its 2xx
			// (RFC 3261 §14.1), and this one answers in the ACK.
			for _, b := range f.branches {
				b.media = &branchMedia{d: d, fromWeb: !fromWeb, late: true}
			}
		}
		return 0, "" // an UPDATE without SDP refreshes the session: nothing to translate
	}
	var (
		out []byte
		err error
	)
	if fromWeb {
		out, err = d.sess.OfferFromWebRTC(body)
	} else {
		out, err = d.sess.OfferFromPlain(body)
	}
	if err != nil {
		f.s.log.Info("a bridged re-offer was refused", "call_id", d.callID, "err", err)
		if errors.Is(err, context.Canceled) {
			return 500, "Server Internal Error"
		}
		return 488, "Not Acceptable Here (the new offer cannot be bridged)"
	}
	for _, b := range f.branches {
		b.out.SetBody(out)
		b.media = &branchMedia{d: d, fromWeb: fromWeb}
	}
	return 0, ""
}

// bridgeACK fits the ACK of a 2xx in a bridged dialog to the other side:
// its CSeq moved as its INVITE's was (shiftACK), and the answer of a late
// offer translated (lateAnswerACK).
func (s *Service) bridgeACK(req, out *sip.Request) {
	d := s.dialogs.get(callIDOf(req))
	if d == nil {
		return
	}
	side, ok := d.side(req)
	cs := req.CSeq()
	if !ok || cs == nil {
		return
	}
	d.shiftACK(side, cs, out)
	s.lateAnswerACK(d, side, cs, req, out)
}

// shiftACK moves the CSeq of an ACK (for a re-INVITE's 2xx) as far as
// its INVITE moved (§13.2.2.4: the same CSeq number), however many
// requests this peer sent since.
func (d *bridgedDialog) shiftACK(side int, cs *sip.CSeqHeader, out *sip.Request) {
	d.mu.Lock()
	inv := d.invite[side]
	d.mu.Unlock()
	if cs.SeqNo == inv.seq && inv.shift > 0 {
		out.ReplaceHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo + inv.shift, MethodName: cs.MethodName})
	}
}

// close ends the media of a dialog that ended by SIP.
func (d *bridgedDialog) close() {
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	d.sess.Close()
	d.s.dialogs.drop(d)
}

// end ends a dialog whose media died: a BYE to each side (RFC 3261
// §15.1.1), with a Reason (RFC 3326) that says why.
func (d *bridgedDialog) end(reason string) {
	d.sess.Close()
	if reason == "browser_closed" {
		// A page that hangs up closes its PeerConnection (a DTLS
		// close_notify) as it sends its BYE, and the close may come first:
		// give the BYE time to pass, or the phone gets two (RFC 3261
		// §15.1.2 has it answer the second 481, and some abort the call).
		// A closed tab sends no BYE: the peer's goes out after the wait.
		time.AfterFunc(browserByeGrace, func() { d.endNow(reason) })
		return
	}
	d.endNow(reason)
}

// browserByeGrace is how long the peer waits for the browser's own BYE
// after the browser closed its media (tests shorten it).
var browserByeGrace = 2 * time.Second

// endNow ends the dialog unless SIP already has.
func (d *bridgedDialog) endNow(reason string) {
	d.mu.Lock()
	tracked, ended := d.tracked, d.ended
	d.ended = true
	d.mu.Unlock()
	d.sess.Close()
	d.s.dialogs.drop(d)
	if !tracked || ended {
		return
	}
	d.s.log.Info("ending a bridged call", "call_id", d.callID, "reason", reason)
	d.s.m.bridgeEnded.WithLabelValues(reasonLabel(reason)).Inc()
	why := sip.NewHeader("Reason", fmt.Sprintf(`SIP;cause=200;text=%q`, "media bridge: "+reason))
	for _, side := range []int{fromCaller, fromCallee} {
		d.send(side, sip.BYE, "", nil, why)
	}
}

func reasonLabel(r string) string {
	switch r {
	case "media_timeout", "ice_failed", "browser_closed":
		return r
	}
	return "other"
}

// digit sends a DTMF digit as SIP INFO (application/dtmf-relay, the form
// phones and the softphone read) to the side that cannot take RFC 4733:
// toCallee when the callee is that side.
func (d *bridgedDialog) digit(toCallee bool, digit byte, dur time.Duration) {
	d.mu.Lock()
	ok := d.tracked && !d.ended
	d.mu.Unlock()
	if !ok {
		return
	}
	ms := dur.Milliseconds()
	if ms <= 0 {
		ms = 100
	}
	body := fmt.Appendf(nil, "Signal=%c\r\nDuration=%d\r\n", digit, ms)
	side := fromCallee // the INFO goes to the caller, in the callee's name
	if toCallee {
		side = fromCaller
	}
	d.send(side, sip.INFO, "application/dtmf-relay", body)
}

// send builds an in-dialog request in side's name and sends it along the
// dialog's route (§12.2.1.1).
func (d *bridgedDialog) send(side int, method sip.RequestMethod, ctype string, body []byte, extra ...sip.Header) {
	d.mu.Lock()
	d.sent[side]++
	seq := d.lastSeq[side] + d.sent[side]
	target, routes := d.target[side], slices.Clone(d.routes[side])
	from := &sip.FromHeader{DisplayName: d.caller.DisplayName, Address: d.caller.Address, Params: d.caller.Params.Clone()}
	to := &sip.ToHeader{DisplayName: d.callee.DisplayName, Address: d.callee.Address, Params: d.callee.Params.Clone()}
	if side == fromCallee {
		from = &sip.FromHeader{DisplayName: d.callee.DisplayName, Address: d.callee.Address, Params: d.callee.Params.Clone()}
		to = &sip.ToHeader{DisplayName: d.caller.DisplayName, Address: d.caller.Address, Params: d.caller.Params.Clone()}
	}
	d.mu.Unlock()
	req := sip.NewRequest(method, target)
	for _, r := range routes {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	cid := sip.CallIDHeader(d.callID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, h := range extra {
		req.AppendHeader(h)
	}
	if ctype != "" {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body) // Content-Length even when empty (§18.3 on streams)
	go d.s.sendOwn(req)
}

// sendOwn sends a request this peer built (not forwarded) and waits for
// its final response.
func (s *Service) sendOwn(req *sip.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	ts, code, reason := s.targets(ctx, req, true)
	if code != 0 || len(ts) == 0 {
		s.log.Info("no route for a request of the media bridge", "method", req.Method, "ruri", req.Recipient.String(), "code", code, "reason", reason)
		return
	}
	out := s.prepare(req, ts[0], false, loopHash(req))
	if err := s.dialPeer(ctx, out); err != nil {
		s.log.Info("no stream for a request of the media bridge", "method", req.Method, "err", err)
		return
	}
	tx, err := s.client.TransactionRequest(ctx, out, prebuilt)
	if err != nil {
		s.log.Info("sending a request of the media bridge failed", "method", req.Method, "err", err)
		return
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			s.log.Debug("the media bridge's request answered", "method", req.Method, "code", res.StatusCode)
			return
		case <-tx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

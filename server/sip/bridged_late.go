package sip

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Late offers (RFC 3261 §13.2.1, §14.1; RFC 3264 §4): an INVITE without
// SDP gets the offer in its 2xx and gives the answer in the ACK. Some
// PBXs and trunks call that way, and some send re-INVITEs without SDP to
// refresh a session. Across the bridge the pair maps as for an early
// offer, only carried in other messages:
//
//	phone's INVITE (no SDP) → browser     browser's 2xx (WebRTC offer)
//	  FromWebRTC → plain offer in the 2xx  AnswerFromPlain on the ACK's SDP
//
// and a re-INVITE without SDP from either side maps with OfferFromWebRTC
// or OfferFromPlain on the 2xx and the matching answer on the ACK.

// translateLate handles a response to an INVITE without SDP on a bridged
// branch: the 2xx's offer is translated (a new session for a
// dialog-creating INVITE), and the ACK's answer is expected.
func (f *fork) translateLate(b *branch, res *sip.Response) {
	m := b.media
	switch code := res.StatusCode; {
	case code >= 300:
		m.done = true // no offer was made: nothing to undo
		return
	case code < 200:
		if len(res.Body()) > 0 {
			// An offer in a reliable 18x (RFC 3262) would be answered in
			// the PRACK, which the bridge does not translate; ringing
			// without it is still ringing.
			res.SetBody(nil)
			res.RemoveHeader("Content-Type")
		}
		return
	}
	m.done = true
	d := m.d
	offer := res.Body()
	if len(offer) == 0 {
		return // a 2xx without the offer it owes: the caller's UA ends it
	}
	if m.initial && f.s.cfg.Bridge.Classify(offer) != MediaWebRTC {
		return // a device on a WebSocket that offers plain RTP: nothing to bridge
	}
	out, err := f.lateOffer(m, offer)
	if err != nil {
		f.s.log.Warn("bridging the offer of a 2xx failed; ending the call", "call_id", d.callID, "err", err)
		if m.initial {
			d.sess = noMedia{}
			f.s.trackDialog(d, f.req, res)
		}
		// After the 2xx and its ACK (RFC 3261 §15).
		time.AfterFunc(byeAfter2xx, func() { d.end("the callee's offer cannot be bridged") })
		return
	}
	res.SetBody(out)
	side := fromCaller
	if m.initial {
		f.s.trackDialog(d, f.req, res)
	} else {
		side, _ = d.side(f.req)
	}
	var seq uint32
	if cs := f.req.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	d.mu.Lock()
	d.late = &lateAnswer{side: side, seq: seq, fromWeb: !m.fromWeb}
	d.mu.Unlock()
}

// lateOffer translates the offer of a 2xx: for a dialog-creating INVITE
// it starts the session (the browser offers).
func (f *fork) lateOffer(m *branchMedia, offer []byte) ([]byte, error) {
	d := m.d
	if !m.initial {
		if m.fromWeb {
			return d.sess.OfferFromWebRTC(offer)
		}
		return d.sess.OfferFromPlain(offer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bridgeSetupTimeout)
	defer cancel()
	sess, out, err := f.s.cfg.Bridge.FromWebRTC(ctx, offer, m.place, d.events())
	if err != nil {
		f.s.m.bridgeSetup.WithLabelValues(bridgeFailure(err)).Inc()
		return nil, err
	}
	f.s.m.bridgeSetup.WithLabelValues("ok").Inc()
	d.sess = sess
	return out, nil
}

// lateAnswerACK puts the translated answer into the ACK of a 2xx whose
// offer the bridge translated. A retransmitted ACK gets the same answer.
// An ACK without an answer, or with one the bridge cannot take, is
// forwarded as it is and the call ended.
func (s *Service) lateAnswerACK(d *bridgedDialog, side int, cs *sip.CSeqHeader, req, out *sip.Request) {
	d.mu.Lock()
	la := d.late
	d.mu.Unlock()
	if la == nil || la.side != side || la.seq != cs.SeqNo {
		return
	}
	la.mu.Lock()
	defer la.mu.Unlock()
	if la.out == nil {
		answer := req.Body()
		var err error
		switch {
		case len(answer) == 0:
			err = errNoAnswer
		case la.fromWeb:
			la.out, err = d.sess.AnswerFromWebRTC(answer)
		default:
			la.out, err = d.sess.AnswerFromPlain(answer)
		}
		if err != nil {
			s.log.Warn("bridging the answer in an ACK failed; ending the call", "call_id", d.callID, "err", err)
			time.AfterFunc(byeAfter2xx, func() { d.end("the answer in the ACK cannot be bridged") })
			return
		}
	}
	out.SetBody(la.out)
	if out.ContentType() == nil {
		ct := sip.ContentTypeHeader("application/sdp")
		out.AppendHeader(&ct)
	}
}

// noMedia is the session of a bridged dialog whose bridging failed once
// the dialog existed: the dialog is tracked only to end it.
type noMedia struct{}

func (noMedia) OfferFromWebRTC([]byte) ([]byte, error)  { return nil, errNoMedia }
func (noMedia) AnswerFromPlain([]byte) ([]byte, error)  { return nil, errNoMedia }
func (noMedia) OfferFromPlain([]byte) ([]byte, error)   { return nil, errNoMedia }
func (noMedia) AnswerFromWebRTC([]byte) ([]byte, error) { return nil, errNoMedia }
func (noMedia) Cancel()                                 {}
func (noMedia) Close()                                  {}

// Package bridge joins a browser's WebRTC call leg to a plain RTP/AVP leg,
// so a browser hosted by this peer can talk with an ordinary SIP phone.
//
// A [Session] is one bridged call. Toward the browser it is a WebRTC
// endpoint (pion/webrtc): full ICE, DTLS-SRTP, rtcp-mux, G.711 and
// telephone-event only (RFC 7874 requires browsers to offer PCMU and PCMA,
// so no transcoding is needed to meet a phone). Toward the phone it speaks
// plain RTP/AVP (RFC 3551) from one UDP socket: on this peer's own address
// when the phone can reach it, else on an allocation at an overlay TURN
// relay, so a peer on a LAN that passes only HTTPS still offers a public
// RTP address. RTCP on the plain leg uses the same port (RFC 3605 a=rtcp
// naming it, RFC 5761 demultiplexing), so one socket or one allocation is
// enough.
//
// The SIP side (package server/sip) never touches media: it hands the
// bridge each SDP it sees and puts the translated one into the message it
// forwards. The offer/answer pairs map one to one:
//
//	browser offers (outbound call)   phone offers (inbound call, re-INVITE)
//	OfferFromWebRTC → plain offer     OfferFromPlain → WebRTC offer
//	AnswerFromPlain → WebRTC answer   AnswerFromWebRTC → plain answer
//
// Media is relayed packet by packet, never decoded, except that a PCMU
// payload becomes PCMA (or back) per sample when the two legs chose
// different G.711 laws. Each direction is a short chain: read, map the
// payload type (the browser's telephone-event is 126, a phone's 101),
// convert the law if needed, rewrite SSRC, sequence number and timestamp
// so the receiver sees one continuous stream (a phone that changes SSRC or
// jumps its sequence after a long hold must not trip the browser's SRTP
// replay window, RFC 3711 §3.3.2), write.
//
// The fast path (fastpath.go, icesocket.go): the browser legs of all calls
// share one UDP port, read by the bridge itself (batched recvmmsg). Once a
// call's DTLS handshake is done, the bridge takes the SRTP keys it exported
// (RFC 5764 §4.2) and from then on decrypts the browser's RTP right on that
// reader and encrypts the phone's RTP on the phone leg's reader, each with
// one system call per packet; only ICE checks, DTLS and RTCP go through
// pion's mux and its chain of goroutines. A call whose bridge-side
// candidate is relayed, or whose keys do not decrypt, stays on pion's path.
//
// DTMF: RFC 4733 events pass from the browser to the phone untouched except
// for the header; a phone without telephone-event gets SIP INFO instead,
// and a phone's digits reach the browser as SIP INFO (WebRTC 1.0 cannot
// receive RFC 4733): the session reports digits through [Events] and the
// SIP side sends the INFO.
//
// The session ends itself (Events.OnEnd) when no RTP arrives for
// Config.MediaTimeout while neither side holds, when ICE fails, or when the
// browser's DTLS connection closes; the SIP side then ends both dialogs.
package bridge

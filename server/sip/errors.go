package sip

import "errors"

var (
	// ErrBadConfig means Config.validate refused the configuration.
	ErrBadConfig = errors.New("sip: bad config")
	// ErrBadRequest means a request lacks what the handler needs.
	ErrBadRequest = errors.New("sip: bad request")
	// ErrResolve means RFC 3263 resolution of a SIP URI failed.
	ErrResolve = errors.New("sip: cannot resolve")

	// errPeerGone means a request's stream to a peer closed before it
	// was sent.
	errPeerGone = errors.New("sip: peer stream gone")
	// errTooManyStreams means a peer opened more SIP streams than it may
	// hold.
	errTooManyStreams = errors.New("sip: too many streams from one peer")
	// errTxDone means a final response was already sent on a transaction.
	errTxDone = errors.New("sip: transaction already answered")
	// errNoTxConnection means a server transaction has no connection to
	// send a response outside its state machine on.
	errNoTxConnection = errors.New("sip: the transaction has no connection")
	// errNoAnswer means an ACK owed an answer to the offer of its 2xx
	// (RFC 3261 §13.2.1) and carried none.
	errNoAnswer = errors.New("sip: the ACK carries no answer to the 2xx's offer")
	// errNoMedia means a bridged dialog has no media session: its
	// bridging failed when it began.
	errNoMedia = errors.New("sip: the call's media could not be bridged")
	// errNoUpstream means a response had no Via left for this peer to
	// send it to: it answered a request this peer sent itself.
	errNoUpstream = errors.New("sip: the response has no Via to forward it to")
)

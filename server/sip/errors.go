package sip

import "errors"

var (
	// ErrBadConfig means Config.validate refused the configuration.
	ErrBadConfig = errors.New("sip: bad config")
	// ErrBadRequest means a request lacks what the handler needs.
	ErrBadRequest = errors.New("sip: bad request")
	// ErrResolve means RFC 3263 resolution of a SIP URI failed.
	ErrResolve = errors.New("sip: cannot resolve")

	// errTxDone means a final response was already sent on a transaction.
	errTxDone = errors.New("sip: transaction already answered")
)

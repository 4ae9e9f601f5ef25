package relay

import "errors"

var (
	// ErrBadConfig means Config.validate refused the configuration.
	ErrBadConfig = errors.New("relay: bad config")
	// ErrBadUser means Mint was given a user id that cannot be put in a
	// TURN REST username.
	ErrBadUser = errors.New("relay: bad user id")
	// ErrBadTTL means Mint was asked for a lifetime outside (0, MaxTTL].
	ErrBadTTL = errors.New("relay: bad credential lifetime")
	// ErrMintQuota means the user asked for more credentials than
	// Config.MintsPerMinute allows.
	ErrMintQuota = errors.New("relay: credential minting quota reached")
	// ErrSelfTest means the relay could not allocate on itself.
	ErrSelfTest = errors.New("relay: self-test failed")
	// ErrClosed means the server was closed.
	ErrClosed = errors.New("relay: closed")

	// errAllocQuota means an allocation would exceed a quota; pion turns
	// it into 508 at the socket level, after the QuotaHandler's 486 let a
	// racing request through.
	errAllocQuota = errors.New("relay: allocation quota reached")
	// errNoPort means no free port was found in the relayed range.
	errNoPort = errors.New("relay: no free port in the relayed range")
	// errFamily means a client asked for an address family the relay
	// address does not have.
	errFamily = errors.New("relay: address family not served")
	// errRefused means a peer address was refused (see checkPeer and
	// ownPort).
	errRefused = errors.New("relay: peer address refused")
)

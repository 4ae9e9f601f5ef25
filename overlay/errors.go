package overlay

import "errors"

// Sentinel errors. Callers test them with errors.Is; the overlay wraps them
// with the details (key, peer, reason) using %w.
var (
	// ErrNotFound means no live record exists for the key.
	ErrNotFound = errors.New("overlay: not found")
	// ErrAORHeld means another owner holds the AOR (a live record, or an
	// expired one still inside the hold period).
	ErrAORHeld = errors.New("overlay: AOR is held by another owner")
	// ErrBadSignature means a record's signature or device certificate does
	// not verify.
	ErrBadSignature = errors.New("overlay: bad signature")
	// ErrWrongOverlay means an AOR's host part is not the overlay name, or a
	// joined peer belongs to another overlay.
	ErrWrongOverlay = errors.New("overlay: wrong overlay")
	// ErrExpired means a record is past its expiry and hold period.
	ErrExpired = errors.New("overlay: record expired")
	// ErrBadProof means a batch-signed record's inclusion proof is
	// malformed: index outside the batch, a path whose length does not fit
	// the batch size, hashes that are not 32 bytes, or a proof on a record
	// that is not batch-signed. A well-formed proof that leads to a root
	// the signer did not sign is ErrBadSignature.
	ErrBadProof = errors.New("overlay: bad batch proof")
	// ErrBadRecord means a record is malformed, too large or inconsistent.
	ErrBadRecord = errors.New("overlay: malformed record")
	// ErrStale means a record's sequence number is not newer than the
	// stored one.
	ErrStale = errors.New("overlay: stale record")
	// ErrNotOwner means the writer may not write this key: a service entry
	// of another node, or a registration signed by a key that is neither
	// the owner nor a device the owner certified.
	ErrNotOwner = errors.New("overlay: writer does not own this key")
	// ErrCloseTimeout means a part of the node did not stop in time on
	// Close; the node is closed regardless.
	ErrCloseTimeout = errors.New("overlay: close timed out")
	// ErrClosed means the node has been closed.
	ErrClosed = errors.New("overlay: node closed")
	// ErrBadConfig means Config.validate refused the configuration.
	ErrBadConfig = errors.New("overlay: bad config")
	// ErrJoin means a join URL or bootstrap peer could not be used.
	ErrJoin = errors.New("overlay: join failed")
)

// ErrUnreachable means no connection or stream to a node could be made.
var ErrUnreachable = errors.New("overlay: node unreachable")

package overlay

import (
	"bytes"
	"fmt"
	"time"
)

// MaxDeviceCertLifetime bounds how far ahead a device certificate may
// expire: a peer that signs for a browser must come back to the browser
// for a fresh certificate at least this often.
const MaxDeviceCertLifetime = 7 * 24 * time.Hour

// VerifyDeviceCert checks a certificate a browser (or another owner key)
// issued for deviceKey over aor: the signature, the key it names and the
// expiry window at now. aor must be canonical (see CanonicalAOR).
func VerifyDeviceCert(aor string, c DeviceCert, deviceKey []byte, now time.Time) error {
	if !bytes.Equal(c.Key, deviceKey) {
		return fmt.Errorf("%w: the certificate is for another device key", ErrNotOwner)
	}
	exp := time.Unix(c.Expires, 0)
	if !exp.After(now) {
		return fmt.Errorf("%w: device certificate expired at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if exp.After(now.Add(MaxDeviceCertLifetime + maxClockSkew)) {
		return fmt.Errorf("%w: device certificate expires more than %s ahead", ErrBadRecord, MaxDeviceCertLifetime)
	}
	if err := verifyP256Cached(c.Owner, deviceCertMessage(aor, c), c.Sig); err != nil {
		return fmt.Errorf("device certificate for %s: %w", aor, err)
	}
	return nil
}

// withDeviceCert adds c to certs, or renews the certificate of the same
// device key when c lasts longer: a browser re-certifies the peer's key
// every time it connects, and the record must carry the newest
// certificate, or it stops validating when the first one expires while
// the peer still refreshes the binding.
func withDeviceCert(certs []DeviceCert, c DeviceCert) []DeviceCert {
	for i, d := range certs {
		if bytes.Equal(d.Key, c.Key) {
			if c.Expires > d.Expires {
				certs[i] = c
			}
			return certs
		}
	}
	return append(certs, c)
}

// registerDomain separates a browser's fresh proof of ownership from its
// device certificates.
const registerDomain = "p2psip/register/v1\n"

// ProofWindow is how far a fresh proof's timestamp may be from the
// verifier's clock.
const ProofWindow = 10 * time.Minute

// VerifyOwnerProof checks a browser's fresh proof that it holds the owner
// key right now: a signature by owner over registerDomain ‖ aor ‖ "\n" ‖
// deviceKey ‖ "\n" ‖ ts. The device certificate alone is no proof: it is
// published in the AOR's record, so anyone can copy it; the proof is only
// ever sent to the certified peer.
func VerifyOwnerProof(aor string, owner, deviceKey []byte, ts int64, sig []byte, now time.Time) error {
	if d := now.Sub(time.Unix(ts, 0)); d > ProofWindow || d < -ProofWindow {
		return fmt.Errorf("%w: owner proof made at %s, more than %s from this peer's clock (check the device's clock)",
			ErrExpired, time.Unix(ts, 0).UTC().Format(time.RFC3339), ProofWindow)
	}
	if err := verifyP256(owner, ownerProofMessage(aor, deviceKey, ts), sig); err != nil {
		return fmt.Errorf("owner proof for %s: %w", aor, err)
	}
	return nil
}

// SignOwnerProof makes the fresh proof VerifyOwnerProof checks, for
// clients that hold their owner key outside a browser.
func SignOwnerProof(owner Signer, aor string, deviceKey []byte, ts time.Time) ([]byte, error) {
	return owner.Sign(ownerProofMessage(aor, deviceKey, ts.Unix()))
}

func ownerProofMessage(aor string, deviceKey []byte, ts int64) []byte {
	var msg bytes.Buffer
	msg.WriteString(registerDomain)
	msg.WriteString(aor)
	msg.WriteByte('\n')
	msg.Write(deviceKey)
	fmt.Fprintf(&msg, "\n%d", ts)
	return msg.Bytes()
}

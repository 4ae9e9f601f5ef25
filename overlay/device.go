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

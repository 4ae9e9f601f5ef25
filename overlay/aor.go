package overlay

import (
	"fmt"
	"strings"
)

// maxUserLen bounds the user part of an AOR; SIP allows longer, but an
// overlay name nobody can type is no use and records must stay small.
const maxUserLen = 128

// CanonicalAOR returns the canonical form "sip:user@host" of a SIP or SIPS
// address-of-record and checks that its host is the overlay name.
// RFC 3261 §10.3 step 5: the registrar canonicalises the To URI (scheme and
// host are case-insensitive; the user part is not). Ports, URI parameters
// and headers have no place in an AOR and are refused.
func CanonicalAOR(aor, overlayName string) (string, error) {
	s := strings.TrimSpace(aor)
	if i := strings.IndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		s = s[i+1 : len(s)-1]
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("%w: AOR %q has no scheme", ErrBadRecord, aor)
	}
	switch strings.ToLower(scheme) {
	case "sip", "sips":
	default:
		return "", fmt.Errorf("%w: AOR %q: scheme must be sip or sips", ErrBadRecord, aor)
	}
	user, host, ok := strings.Cut(rest, "@")
	if !ok || user == "" {
		return "", fmt.Errorf("%w: AOR %q has no user part", ErrBadRecord, aor)
	}
	if len(user) > maxUserLen {
		return "", fmt.Errorf("%w: AOR user part longer than %d", ErrBadRecord, maxUserLen)
	}
	if strings.ContainsAny(host, ";?:[]") {
		return "", fmt.Errorf("%w: AOR %q may not carry a port, parameters or headers", ErrBadRecord, aor)
	}
	if !validUser(user) {
		return "", fmt.Errorf("%w: AOR %q: invalid character in user part", ErrBadRecord, aor)
	}
	lower := strings.ToLower(host)
	if lower != strings.ToLower(overlayName) {
		return "", fmt.Errorf("%w: AOR host %q is not the overlay %q", ErrWrongOverlay, lower, overlayName)
	}
	if s == aor && scheme == "sip" && lower == host {
		// Already canonical (what every record and most callers carry):
		// return it rather than build an equal copy; validating a record
		// asks this once per write.
		return aor, nil
	}
	return "sip:" + user + "@" + lower, nil
}

// validUser accepts RFC 3261 §25.1 user characters: unreserved, escaped and
// user-unreserved ("&=+$,;?/"), minus ";" and "?" which start URI params
// and headers and would make the AOR ambiguous.
func validUser(u string) bool {
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_.!~*'()&=+$,/", c) >= 0:
		case c == '%':
			if i+2 >= len(u) || !isHex(u[i+1]) || !isHex(u[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

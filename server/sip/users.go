package sip

import (
	"bufio"
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // RFC 2617 digest is MD5; SIP phones speak nothing else
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"
)

// Users holds the digest credentials of the phones this peer hosts:
// HA1 = MD5(user:realm:password) per user (RFC 2617 §3.2.2.2).
type Users struct {
	mu  sync.Mutex
	ha1 map[string]string // guarded by mu; user → HA1 hex

	secret []byte // nonce HMAC key
}

// LoadUsers reads a file of "user:password" lines ("#" comments allowed).
func LoadUsers(path, realm string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening users file: %w", err)
	}
	defer func() { _ = f.Close() }()
	return ParseUsers(f, realm)
}

// ParseUsers reads "user:password" lines.
func ParseUsers(r io.Reader, realm string) (*Users, error) {
	u := &Users{ha1: map[string]string{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("%w: users file line %d: want user:password", ErrBadConfig, n)
		}
		u.ha1[user] = md5hex(user + ":" + realm + ":" + pass)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading users file: %w", err)
	}
	return u, nil
}

// Has reports whether user has credentials here.
func (u *Users) Has(user string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.ha1[user]
	return ok
}

func (u *Users) key() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.secret == nil {
		u.secret = make([]byte, 32)
		_, _ = rand.Read(u.secret)
	}
	return u.secret
}

// nonceTTL is how long a challenge's nonce stays good.
const nonceTTL = 5 * time.Minute

// Challenge returns a WWW-Authenticate value (RFC 2617 §3.2.1). The nonce
// is a timestamp and its HMAC, so the peer keeps no per-challenge state.
func (u *Users) Challenge(realm string, stale bool) string {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	c := digest.Challenge{Realm: realm, Nonce: ts + "." + u.mac(ts), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	return c.String()
}

func (u *Users) mac(ts string) string {
	m := hmac.New(sha256.New, u.key())
	m.Write([]byte(ts))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// authResult is the outcome of checking an Authorization header.
type authResult int

const (
	authMissing authResult = iota // no usable credentials: challenge
	authStale                     // right password, old nonce: challenge with stale=true
	authFailed                    // wrong user or password
	authOK
)

// Check verifies an Authorization header value for user and method.
func (u *Users) Check(header, user, realm, method string) authResult {
	if header == "" {
		return authMissing
	}
	cred, err := digest.ParseCredentials(header)
	if err != nil || cred.Realm != realm || cred.Username != user {
		return authMissing
	}
	u.mu.Lock()
	ha1, ok := u.ha1[user]
	u.mu.Unlock()
	if !ok {
		return authFailed
	}
	ha2 := md5hex(method + ":" + cred.URI)
	var want string
	if cred.QOP == "" {
		want = md5hex(ha1 + ":" + cred.Nonce + ":" + ha2)
	} else {
		want = md5hex(ha1 + ":" + cred.Nonce + ":" + fmt.Sprintf("%08x", cred.Nc) + ":" + cred.Cnonce + ":" + cred.QOP + ":" + ha2)
	}
	if !hmac.Equal([]byte(want), []byte(cred.Response)) {
		return authFailed
	}
	ts, mac, ok := strings.Cut(cred.Nonce, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(u.mac(ts))) {
		return authMissing
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(t, 0)) > nonceTTL {
		return authStale
	}
	return authOK
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s)) //nolint:gosec // see import
	return hex.EncodeToString(sum[:])
}

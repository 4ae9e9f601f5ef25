package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 7635 / TURN REST: the password is HMAC-SHA1, a MAC, not a hash of a secret.
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Credential is a short-lived TURN credential in the TURN REST scheme
// (draft-uberti-behave-turn-rest, coturn's use-auth-secret, the form
// browsers' RTCIceServer takes): Username is "<unix expiry>:<user id>" and
// Password is base64(HMAC-SHA1(secret, Username)).
type Credential struct {
	Username string
	Password string
	Expires  time.Time
}

// maxUserLen keeps the TURN USERNAME well under its 513-byte limit
// (RFC 8489 §14.3).
const maxUserLen = 128

// secret is one generation of the relay's credential key.
type secret struct {
	gen uint64
	key []byte
}

// keyring holds the current secret and the previous one.
//
// Secrets are random per relay and live in memory only: a credential is
// worth nothing once the relay that minted it restarts (its allocations
// are gone too, and clients fetch fresh credentials on a 401), while a
// secret on disk would outlive its purpose in backups and images.
//
// Which of the two secrets signed a credential is told by the parity of
// its expiry second: Mint moves the expiry by at most one second so that
// expiry%2 == generation%2. The REST username stays the standard
// "<expiry>:<id>", and the auth callback, which must return one key before
// pion checks MESSAGE-INTEGRITY, needs no table of minted names.
type keyring struct {
	mu        sync.RWMutex
	static    []byte
	cur, prev *secret
}

func newSecret(gen uint64) *secret {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return &secret{gen: gen, key: key}
}

// rotate replaces the current secret; the previous one stays accepted.
func (k *keyring) rotate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.prev = k.cur
	k.cur = newSecret(k.prev.gen + 1)
}

// signing returns the key to mint with and the generation parity to give
// the expiry (-1: any, with a static secret).
func (k *keyring) signing() ([]byte, int) {
	if k.static != nil {
		return k.static, -1
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.cur.key, int(k.cur.gen & 1)
}

// verifying returns the key that signed a credential expiring at expiry,
// or nil when that secret is gone.
func (k *keyring) verifying(expiry int64) []byte {
	if k.static != nil {
		return k.static
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, s := range []*secret{k.cur, k.prev} {
		if s != nil && int64(s.gen&1) == expiry&1 {
			return s.key
		}
	}
	return nil
}

func restPassword(key []byte, username string) string {
	mac := hmac.New(sha1.New, key)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Mint returns a fresh credential for user (an opaque id: the overlay
// member or registered user it is minted for), valid for ttl. The caller
// authenticates the asker; Mint enforces the per-user quota
// (Config.MintsPerMinute), so a member cannot stockpile credentials.
func (s *Server) Mint(user string, ttl time.Duration) (Credential, error) {
	if err := checkUser(user); err != nil {
		s.metrics.mints.WithLabelValues("bad_request").Inc()
		return Credential{}, err
	}
	if ttl <= 0 || ttl > s.cfg.MaxTTL {
		s.metrics.mints.WithLabelValues("bad_request").Inc()
		return Credential{}, fmt.Errorf("%w: %v: want (0, %v]", ErrBadTTL, ttl, s.cfg.MaxTTL)
	}
	if !s.mintQuota.take(user, s.now()) {
		s.metrics.mints.WithLabelValues("quota").Inc()
		s.log.Info("relay refused a credential", "reason", "mint_quota", "user", user)
		return Credential{}, fmt.Errorf("%w: %d per minute for %q", ErrMintQuota, s.cfg.MintsPerMinute, user)
	}
	s.metrics.mints.WithLabelValues("ok").Inc()
	return s.mint(user, ttl), nil
}

// mint signs a credential without quota (the self-test's).
func (s *Server) mint(user string, ttl time.Duration) Credential {
	key, parity := s.keys.signing()
	exp := s.now().Add(ttl).Unix()
	if parity >= 0 && int(exp&1) != parity {
		exp++
	}
	username := strconv.FormatInt(exp, 10) + ":" + user
	return Credential{Username: username, Password: restPassword(key, username), Expires: time.Unix(exp, 0)}
}

func checkUser(user string) error {
	if user == "" || len(user) > maxUserLen {
		return fmt.Errorf("%w: %q: want 1 to %d bytes", ErrBadUser, user, maxUserLen)
	}
	for _, r := range user {
		if r <= ' ' || r == 0x7f || r == ':' {
			return fmt.Errorf("%w: %q: no spaces, control characters or ':'", ErrBadUser, user)
		}
	}
	return nil
}

// parseUsername splits "<unix expiry>:<id>".
func parseUsername(username string) (expiry int64, id string, ok bool) {
	ts, id, found := strings.Cut(username, ":")
	if !found || id == "" {
		return 0, "", false
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || expiry <= 0 {
		return 0, "", false
	}
	return expiry, id, true
}

// authHandler is pion's auth callback. It returns the long-term key
// (RFC 8489 §9.2.2: MD5(username:realm:password)); pion then checks
// MESSAGE-INTEGRITY with it, and reports a mismatch through OnAuth.
//
// Expiry is checked on Allocate only: a call must outlive its credential,
// so Refresh, CreatePermission, ChannelBind, Connect and ConnectionBind of
// an allocation made while the credential was valid keep working (pion v5
// binds an allocation to its user id, so nobody else can use it). A new
// Allocate after expiry gets 401 and the client fetches a fresh credential.
func (s *Server) authHandler(ra *turn.RequestAttributes) (string, []byte, bool) {
	expiry, id, ok := parseUsername(ra.Username)
	if !ok {
		s.authFailed("malformed", ra)
		return "", nil, false
	}
	if ra.Method == stun.MethodAllocate && expiry < s.now().Unix() {
		s.authFailed("expired", ra)
		return "", nil, false
	}
	key := s.keys.verifying(expiry)
	if key == nil {
		s.authFailed("stale_secret", ra)
		return "", nil, false
	}
	return id, turn.GenerateAuthKey(ra.Username, ra.Realm, restPassword(key, ra.Username)), true
}

func (s *Server) authFailed(reason string, ra *turn.RequestAttributes) {
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	s.log.Debug("relay auth failed", "reason", reason, "username", ra.Username,
		"method", ra.Method.String(), "client", addrString(ra.SrcAddr))
}

package sip

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/p2psip/p2psip/overlay"
)

// ownerHeader is what the softphone sends: the browser key certifies the
// peer's key for aor.
func ownerHeader(t *testing.T, browser *overlay.P256Key, aor string, peerKey []byte, exp time.Time) string {
	t.Helper()
	c, err := overlay.CertifyDevice(browser, aor, peerKey, exp)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf("%s: key=%s;exp=%d;sig=%s", OwnerHeader, b64(c.Owner), c.Expires, b64(c.Sig))
}

func TestBrowserOwnership(t *testing.T) {
	ts := newTestService(t, nil)
	peerKey := ts.cfg.Owner.PublicKey()
	aor := "sip:bob@" + testDomain
	a, _ := overlay.NewP256Key()
	b, _ := overlay.NewP256Key()
	soon := time.Now().Add(24 * time.Hour)

	reg := func(hdr string) (int, string) {
		res := last(t, ts.handle(parse(t, register("bob", "<sip:x1@abc.invalid;transport=ws>", hdr)...)))
		return res.StatusCode, res.Reason
	}
	if code, reason := reg(ownerHeader(t, a, aor, peerKey, soon)); code != 200 {
		t.Fatalf("browser A registers: %d %s", code, reason)
	}
	if got := ts.loc.owner[aor]; got != string(a.PublicKey()) {
		t.Fatal("the record is not owned by browser A's key")
	}
	// Browser B, another key, cannot take the name while A holds it.
	code, reason := reg(ownerHeader(t, b, aor, peerKey, soon))
	if code != 403 || !strings.Contains(reason, "name taken") {
		t.Fatalf("browser B takeover: %d %s", code, reason)
	}
	// Neither can the peer itself, for a phone without a proof.
	if code, _ := reg(""); code != 403 {
		t.Fatalf("peer-owned takeover: %d", code)
	}
	other, _ := overlay.NewP256Key()
	bad := map[string]string{
		"expired":        ownerHeader(t, a, aor, peerKey, time.Now().Add(-time.Minute)),
		"too far ahead":  ownerHeader(t, a, aor, peerKey, time.Now().Add(30*24*time.Hour)),
		"other aor":      ownerHeader(t, a, "sip:carol@"+testDomain, peerKey, soon),
		"other peer key": ownerHeader(t, a, aor, other.PublicKey(), soon),
		"garbage":        OwnerHeader + ": key=!!;exp=x;sig=",
		"missing sig":    OwnerHeader + ": key=" + base64.RawURLEncoding.EncodeToString(a.PublicKey()) + ";exp=1",
	}
	for name, hdr := range bad {
		if code, reason := reg(hdr); code != 403 || !strings.Contains(reason, "owner proof") {
			t.Errorf("%s: %d %s", name, code, reason)
		}
	}
	if code, reason := reg(ownerHeader(t, a, aor, peerKey, soon)); code != 200 {
		t.Fatalf("browser A refreshes: %d %s", code, reason)
	}
}

func FuzzOwnerHeader(f *testing.F) {
	k, _ := overlay.NewP256Key()
	c, _ := overlay.CertifyDevice(k, "sip:bob@"+testDomain, k.PublicKey(), time.Now().Add(time.Hour))
	b64 := base64.RawURLEncoding.EncodeToString
	f.Add(fmt.Sprintf("key=%s;exp=%d;sig=%s", b64(c.Owner), c.Expires, b64(c.Sig)))
	f.Add("key=;exp=;sig=")
	f.Add(";;;=;=")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseOwnerHeader(v)
		if err == nil && (len(c.Owner) != 65 || len(c.Sig) != 64) {
			t.Fatalf("accepted a malformed header: %q", v)
		}
		_ = overlay.VerifyDeviceCert("sip:bob@"+testDomain, c, c.Owner, time.Now())
	})
}

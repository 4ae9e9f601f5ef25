package sip

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/p2psip/p2psip/overlay"
)

// ownerHeader is what the softphone sends: the browser key certifies the
// peer's key for aor, and signs a fresh proof.
func ownerHeader(t *testing.T, browser *overlay.P256Key, aor string, peerKey []byte, exp time.Time) string {
	return ownerHeaderAt(t, browser, aor, peerKey, exp, time.Now())
}

func ownerHeaderAt(t *testing.T, browser *overlay.P256Key, aor string, peerKey []byte, exp, ts time.Time) string {
	t.Helper()
	c, err := overlay.CertifyDevice(browser, aor, peerKey, exp)
	if err != nil {
		t.Fatal(err)
	}
	rsig, err := overlay.SignOwnerProof(browser, aor, peerKey, ts)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf("%s: key=%s;exp=%d;sig=%s;ts=%d;rsig=%s", OwnerHeader, b64(c.Owner), c.Expires, b64(c.Sig), ts.Unix(), b64(rsig))
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
		"stale proof":    ownerHeaderAt(t, a, aor, peerKey, soon, time.Now().Add(-time.Hour)),
		"proof by other": replaceProof(t, ownerHeader(t, a, aor, peerKey, soon), ownerHeader(t, b, aor, peerKey, soon)),
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
	// Removing is the owner's too: "*" without A's proof is refused and
	// the binding stays; with it, the binding goes.
	unregister := func(hdr string) int {
		return last(t, ts.handle(parse(t, register("bob", "*", "Expires: 0", hdr)...))).StatusCode
	}
	if code := unregister(""); code != 403 {
		t.Fatalf("removal without the owner's proof: %d", code)
	}
	if r, _ := ts.loc.Lookup(t.Context(), aor); len(r.Bindings) != 1 {
		t.Fatalf("bindings after a refused removal: %+v", r.Bindings)
	}
	if code := unregister(ownerHeader(t, a, aor, peerKey, soon)); code != 200 {
		t.Fatalf("removal by the owner: %d", code)
	}
	if r, _ := ts.loc.Lookup(t.Context(), aor); len(r.Bindings) != 0 {
		t.Fatalf("bindings after the owner's removal: %+v", r.Bindings)
	}
}

// replaceProof keeps hdr's certificate and takes ts and rsig from
// other: what a copier of the published certificate could send.
func replaceProof(t *testing.T, hdr, other string) string {
	t.Helper()
	cert, _, _ := strings.Cut(hdr, ";ts=")
	_, proof, _ := strings.Cut(other, ";ts=")
	return cert + ";ts=" + proof
}

func FuzzOwnerHeader(f *testing.F) {
	k, _ := overlay.NewP256Key()
	c, _ := overlay.CertifyDevice(k, "sip:bob@"+testDomain, k.PublicKey(), time.Now().Add(time.Hour))
	b64 := base64.RawURLEncoding.EncodeToString
	rsig, _ := overlay.SignOwnerProof(k, "sip:bob@"+testDomain, k.PublicKey(), time.Now())
	f.Add(fmt.Sprintf("key=%s;exp=%d;sig=%s;ts=%d;rsig=%s", b64(c.Owner), c.Expires, b64(c.Sig), time.Now().Unix(), b64(rsig)))
	f.Add("key=;exp=;sig=")
	f.Add(";;;=;=")
	f.Fuzz(func(t *testing.T, v string) {
		p, err := parseOwnerHeader(v)
		if err == nil && (len(p.cert.Owner) != 65 || len(p.cert.Sig) != 64 || len(p.rsig) != 64) {
			t.Fatalf("accepted a malformed header: %q", v)
		}
		_ = overlay.VerifyDeviceCert("sip:bob@"+testDomain, p.cert, p.cert.Owner, time.Now())
		_ = overlay.VerifyOwnerProof("sip:bob@"+testDomain, p.cert.Owner, p.cert.Owner, p.ts, p.rsig, time.Now())
	})
}

// TestBrowserPublicAccount: the page registers its public account with an
// overlay alias it owns as Contact; the peer registers the alias with the
// page's flow, then relays the REGISTER through the overlay's proxy, and
// calls for the alias come back to the page.
func TestBrowserPublicAccount(t *testing.T) {
	ts := newTestService(t, nil)
	ts.cfg.FindProxy = func(context.Context) ([]string, error) { return []string{otherPeer}, nil }
	browser, _ := overlay.NewP256Key()
	alias := "sip:quiet-otter-pub@" + testDomain
	soon := time.Now().Add(24 * time.Hour)
	publicRegister := func(contact, owner string) []string {
		return []string{
			"REGISTER sip:atlanta.example SIP/2.0",
			"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-pub" + fmt.Sprint(len(owner)),
			"Max-Forwards: 70",
			"From: <sip:alice@atlanta.example>;tag=1",
			"To: <sip:alice@atlanta.example>",
			"Call-ID: pub-1",
			"CSeq: 1 REGISTER",
			"Contact: " + contact,
			"Expires: 600",
			owner,
			"Content-Length: 0",
		}
	}
	contact := `<sip:quiet-otter-pub@` + testDomain + `>;+sip.instance="<urn:uuid:00000000-0000-4000-8000-000000000001>"`

	// A bad proof, or a proof without an overlay Contact, relays nothing.
	other, _ := overlay.NewP256Key()
	if c := codes(ts.handle(parse(t, publicRegister(contact, ownerHeader(t, browser, alias, other.PublicKey(), soon))...))); c[len(c)-1] != 403 {
		t.Fatalf("bad proof: %v", c)
	}
	if c := codes(ts.handle(parse(t, publicRegister("<sip:x@abc.invalid;transport=ws>", ownerHeader(t, browser, alias, ts.cfg.Owner.PublicKey(), soon))...))); c[len(c)-1] != 400 {
		t.Fatalf("no overlay contact: %v", c)
	}
	if n := len(ts.forwarded.Requests()); n != 0 {
		t.Fatalf("%d requests relayed without a valid proof", n)
	}

	res := ts.handle(parse(t, publicRegister(contact, ownerHeader(t, browser, alias, ts.cfg.Owner.PublicKey(), soon))...))
	if c := codes(res); c[len(c)-1] != 200 {
		t.Fatalf("public REGISTER: %v", c)
	}
	if ts.loc.owner[alias] != string(browser.PublicKey()) {
		t.Fatal("the alias is not owned by the browser's key")
	}
	fw := ts.forwarded.Requests()
	proxyHost, _ := PeerHost(otherPeer)
	if len(fw) != 1 || fw[0].GetHeader(OwnerHeader) != nil ||
		fw[0].Route() == nil || fw[0].Route().Address.Host != proxyHost || fw[0].Destination() != ts.peerAddr(otherPeer) {
		t.Fatalf("relayed REGISTER: %v", fw)
	}
	if got := fw[0].Contact().Address.String(); got != "sip:quiet-otter-pub@"+testDomain {
		t.Fatalf("the public registrar would get Contact %s", got)
	}

	// A call the public side sends to the Contact reaches the page's flow.
	in := parse(t, invite("sip:quiet-otter-pub@"+testDomain, "Max-Forwards: 70")...)
	in.SetSource("127.0.0.8:5060")
	if c := codes(ts.handle(in)); c[len(c)-1] != 200 {
		t.Fatalf("inbound call: %v", c)
	}
	fw = ts.forwarded.Requests()
	if got := fw[len(fw)-1]; got.Destination() != "127.0.0.1:5099" {
		t.Fatalf("inbound call went to %s, not the page's flow", got.Destination())
	}
}

// TestPublicAliasInDialog: two pages on this peer register public accounts
// (aliases a-pub and b-pub, both at the overlay's host). A request in a
// dialog of a's public account, whose remote target is a's alias (as JsSIP
// sends it: with ;ob), must go to a's flow, not to whichever alias
// registered last.
func TestPublicAliasInDialog(t *testing.T) {
	ts := newTestService(t, nil)
	ts.cfg.FindProxy = func(context.Context) ([]string, error) { return []string{otherPeer}, nil }
	soon := time.Now().Add(24 * time.Hour)
	regPublic := func(name, source, instance string) {
		browser, _ := overlay.NewP256Key()
		alias := "sip:" + name + "-pub@" + testDomain
		req := parse(t,
			"REGISTER sip:atlanta.example SIP/2.0",
			"Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK-pub"+name,
			"Max-Forwards: 70",
			"From: <sip:"+name+"@atlanta.example>;tag=1",
			"To: <sip:"+name+"@atlanta.example>",
			"Call-ID: pub-"+name,
			"CSeq: 1 REGISTER",
			`Contact: <`+alias+`>;+sip.instance="<urn:uuid:`+instance+`>"`,
			"Expires: 600",
			ownerHeader(t, browser, alias, ts.cfg.Owner.PublicKey(), soon),
			"Content-Length: 0")
		req.SetSource(source)
		if c := codes(ts.handle(req)); c[len(c)-1] != 200 {
			t.Fatalf("public REGISTER of %s: %v", name, c)
		}
	}
	regPublic("a", "127.0.0.1:5098", "00000000-0000-4000-8000-00000000000a")
	regPublic("b", "127.0.0.1:5099", "00000000-0000-4000-8000-00000000000b")

	bye := func(callID string) []int {
		lines := []string{"BYE sip:a-pub@" + testDomain + ";ob SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.8:5060;branch=z9hG4bK-bye" + callID,
			"From: <sip:caller@atlanta.example>;tag=abc", "To: <sip:a@atlanta.example>;tag=xyz", "Call-ID: " + callID,
			"CSeq: 2 BYE", "Max-Forwards: 70", "Content-Length: 0"}
		req := parse(t, lines...)
		route := ts.recordRouteURI(req, "udp")
		req = parse(t, append(lines[:len(lines)-1], "Route: <"+route.String()+">", "Content-Length: 0")...)
		req.SetSource("127.0.0.8:5060")
		return codes(ts.handle(req))
	}
	if c := bye("dlg-a"); c[len(c)-1] != 200 {
		t.Fatalf("in-dialog BYE to a's alias: %v", c)
	}
	fw := ts.forwarded.Requests()
	if got := fw[len(fw)-1].Destination(); got != "127.0.0.1:5098" {
		t.Fatalf("a BYE to a's alias went to %s, not a's flow 127.0.0.1:5098", got)
	}
}

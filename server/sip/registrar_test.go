package sip

import (
	"strings"
	"testing"

	"github.com/icholy/digest"
)

func TestRegister(t *testing.T) {
	ts := newTestService(t, nil)
	res := last(t, ts.handle(parse(t, register("alice", "<sip:alice@127.0.0.1:5099>", "Expires: 600")...)))
	if res.StatusCode != 200 || !strings.Contains(res.GetHeader("Contact").Value(), "sip:alice@127.0.0.1:5099") {
		t.Fatalf("register: %s", res)
	}
	reg, _ := ts.loc.Lookup(t.Context(), "sip:alice@"+testDomain)
	// Other peers reach this one by its node name (peername.go), never by
	// an address of a network they may not be on.
	if len(reg.Bindings) != 1 || reg.Bindings[0].Path[0] != "<sip:"+ts.peerHost+";lr>" {
		t.Fatalf("binding: %+v", reg.Bindings)
	}
	// RFC 3261 §10.3 step 7: too brief → 423 with Min-Expires.
	res = last(t, ts.handle(parse(t, register("alice", "<sip:alice@127.0.0.1:5099>;expires=5")...)))
	if res.StatusCode != 423 || res.GetHeader("Min-Expires").Value() != "60" {
		t.Fatalf("brief: %s", res)
	}
	// Expires: 0 removes.
	res = last(t, ts.handle(parse(t, register("alice", "<sip:alice@127.0.0.1:5099>", "Expires: 0")...)))
	if res.StatusCode != 200 || res.GetHeader("Contact") != nil {
		t.Fatalf("unregister: %s", res)
	}
	// "*" needs Expires: 0.
	if c := codes(ts.handle(parse(t, register("alice", "*", "Expires: 60")...))); c[0] != 400 {
		t.Fatalf("wildcard with expiry: %v", c)
	}
	if c := codes(ts.handle(parse(t, register("alice", "*", "Expires: 0")...))); c[0] != 200 {
		t.Fatalf("wildcard removal: %v", c)
	}
}

func TestRegisterRefusals(t *testing.T) {
	ts := newTestService(t, nil)
	other := parse(t, register("bob", "<sip:bob@127.0.0.1:5099>")...)
	other.To().Address.Host = "other.example"
	if c := codes(ts.handle(other)); c[0] != 403 {
		t.Fatalf("other domain: %v", c)
	}
	// An AOR held by another owner (another peer) stays untouched.
	ts.loc.owner["sip:carol@"+testDomain] = "someone else"
	if c := codes(ts.handle(parse(t, register("carol", "<sip:carol@127.0.0.1:5099>")...))); c[0] != 403 {
		t.Fatalf("held AOR: %v", c)
	}
	if _, err := ts.loc.Lookup(t.Context(), "sip:carol@"+testDomain); err == nil {
		t.Fatal("held AOR got a binding")
	}
	if c := codes(ts.handle(parse(t, register("dan", "<sip:dan@127.0.0.1:5099>;q=7")...))); c[0] != 400 {
		t.Fatalf("bad q: %v", c)
	}
}

func TestRegisterDigest(t *testing.T) {
	users, err := ParseUsers(strings.NewReader("# phones\nalice:secret\n"), testDomain)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestService(t, users)
	req := parse(t, register("alice", "<sip:alice@127.0.0.1:5099>")...)
	res := last(t, ts.handle(req))
	if res.StatusCode != 401 {
		t.Fatalf("no credentials: %s", res)
	}
	answer := func(password string) int {
		chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
		if err != nil {
			t.Fatal(err)
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + testDomain,
			Username: "alice", Password: password, Count: 1, Cnonce: "0a4f113b"})
		if err != nil {
			t.Fatal(err)
		}
		again := parse(t, register("alice", "<sip:alice@127.0.0.1:5099>", "Authorization: "+cred.String())...)
		return last(t, ts.handle(again)).StatusCode
	}
	if c := answer("wrong"); c != 403 {
		t.Fatalf("wrong password: %d", c)
	}
	if c := answer("secret"); c != 200 {
		t.Fatalf("right password: %d", c)
	}
	if _, err := ParseUsers(strings.NewReader("nopassword\n"), testDomain); err == nil {
		t.Fatal("bad users file accepted")
	}
}

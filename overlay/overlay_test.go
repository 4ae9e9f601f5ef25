package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const testNodes = 20

func binding(inst, contact string, ttl time.Duration) Binding {
	return Binding{Instance: inst, Contact: contact, Expires: time.Now().Add(ttl).Unix()}
}

func mustKey(t testing.TB) *P256Key {
	t.Helper()
	k, err := NewP256Key()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func register(t testing.TB, n *Node, aor string, s Signer, b Binding) *Registration {
	t.Helper()
	reg, err := n.Register(ctxT(t), RegisterRequest{AOR: aor, Binding: b, Signer: s})
	if err != nil {
		t.Fatalf("register %s: %v", aor, err)
	}
	return reg
}

// lookupLive returns the live contacts of aor as node n sees them.
func lookupLive(t testing.TB, n *Node, aor string) []string {
	t.Helper()
	reg, err := n.Lookup(ctxT(t), aor)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("lookup %s: %v", aor, err)
	}
	var out []string
	for _, b := range reg.Live(time.Now()) {
		out = append(out, b.Contact)
	}
	return out
}

func TestOverlay(t *testing.T) {
	tn := newTestNet(t, testNodes, nil)
	t.Run("PutLookup", func(t *testing.T) {
		register(t, tn.nodes[3], "sip:alice@test.overlay", mustKey(t), binding("a1", "sip:alice@10.0.0.1", time.Hour))
		for i, n := range tn.nodes {
			if got := lookupLive(t, n, "sip:alice@TEST.overlay"); len(got) != 1 || got[0] != "sip:alice@10.0.0.1" {
				t.Fatalf("node %d sees %v", i, got)
			}
		}
		if _, err := tn.nodes[0].Lookup(ctxT(t), "sip:nobody@test.overlay"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown AOR: %v, want ErrNotFound", err)
		}
	})
	t.Run("TwoDevicesOneAOR", func(t *testing.T) { testTwoDevices(t, tn) })
	t.Run("RefreshRaisesExpiry", func(t *testing.T) {
		owner := mustKey(t)
		r1 := register(t, tn.nodes[4], "sip:rita@test.overlay", owner, binding("r", "sip:rita@10.0.0.4", time.Minute))
		r2 := register(t, tn.nodes[4], "sip:rita@test.overlay", owner, binding("r", "sip:rita@10.0.0.4", time.Hour))
		if r2.Seq != r1.Seq+1 || len(r2.Bindings) != 1 {
			t.Fatalf("refresh: seq %d→%d, %d bindings", r1.Seq, r2.Seq, len(r2.Bindings))
		}
		reg, err := tn.nodes[11].Lookup(ctxT(t), "sip:rita@test.overlay")
		if err != nil || reg.Bindings[0].Expires != r2.Bindings[0].Expires {
			t.Fatalf("lookup after refresh: %v %+v", err, reg)
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		owner := mustKey(t)
		register(t, tn.nodes[5], "sip:eve@test.overlay", owner, binding("e", "sip:eve@10.0.0.5", 2*time.Second))
		if got := lookupLive(t, tn.nodes[9], "sip:eve@test.overlay"); len(got) != 1 {
			t.Fatalf("before expiry: %v", got)
		}
		time.Sleep(2500 * time.Millisecond)
		if got := lookupLive(t, tn.nodes[9], "sip:eve@test.overlay"); len(got) != 0 {
			t.Fatalf("after expiry still live: %v", got)
		}
		// Expired but held: another owner is still refused.
		_, err := tn.nodes[6].Register(ctxT(t), RegisterRequest{AOR: "sip:eve@test.overlay", Signer: mustKey(t), Binding: binding("x", "sip:x@10.0.0.6", time.Hour)})
		if !errors.Is(err, ErrAORHeld) {
			t.Fatalf("takeover of expired, held AOR: %v, want ErrAORHeld", err)
		}
	})
	t.Run("Unregister", func(t *testing.T) {
		owner := mustKey(t)
		register(t, tn.nodes[7], "sip:uma@test.overlay", owner, binding("u", "sip:uma@10.0.0.7", time.Hour))
		if err := tn.nodes[7].Unregister(ctxT(t), "sip:uma@test.overlay", ""); err != nil {
			t.Fatal(err)
		}
		for i, n := range tn.nodes {
			if got := lookupLive(t, n, "sip:uma@test.overlay"); len(got) != 0 {
				t.Fatalf("node %d still sees %v", i, got)
			}
		}
	})
	t.Run("Refused", func(t *testing.T) { testRefusedWrites(t, tn) })
	t.Run("Services", func(t *testing.T) { testServices(t, tn) })
}

func testTwoDevices(t *testing.T, tn *testNet) {
	owner, device := mustKey(t), mustKey(t)
	aor := "sip:bob@test.overlay"
	register(t, tn.nodes[1], aor, owner, binding("phone", "sip:bob@10.0.0.1", time.Hour))
	cert, err := CertifyDevice(owner, aor, device.PublicKey(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.nodes[2].Register(ctxT(t), RegisterRequest{
		AOR: aor, Signer: device, Device: &cert, Binding: binding("laptop", "sip:bob@10.0.0.2", time.Hour),
	}); err != nil {
		t.Fatalf("second device: %v", err)
	}
	got := lookupLive(t, tn.nodes[15], aor)
	if len(got) != 2 {
		t.Fatalf("want both devices, got %v", got)
	}
	// A browser re-certifies the device key on every connection: the record
	// keeps one certificate per key, the one that lasts longest.
	renewed, _ := CertifyDevice(owner, aor, device.PublicKey(), time.Now().Add(2*time.Hour))
	if _, err := tn.nodes[2].Register(ctxT(t), RegisterRequest{
		AOR: aor, Signer: device, Device: &renewed, Binding: binding("laptop", "sip:bob@10.0.0.2", time.Hour),
	}); err != nil {
		t.Fatalf("renewed certificate: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		reg, err := tn.nodes[16].Lookup(ctxT(t), aor)
		if err == nil && len(reg.Devices) == 1 && reg.Devices[0].Expires == renewed.Expires {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record does not carry just the renewed certificate: %+v %v", reg, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A device key without a certificate is not the owner.
	_, err = tn.nodes[2].Register(ctxT(t), RegisterRequest{AOR: aor, Signer: mustKey(t), Binding: binding("rogue", "sip:x@10.6.6.6", time.Hour)})
	if !errors.Is(err, ErrAORHeld) {
		t.Fatalf("uncertified device: %v, want ErrAORHeld", err)
	}
	// Each hosting peer removes only its own device.
	if err := tn.nodes[1].Unregister(ctxT(t), aor, "phone"); err != nil {
		t.Fatal(err)
	}
	if got := lookupLive(t, tn.nodes[15], aor); len(got) != 1 || got[0] != "sip:bob@10.0.0.2" {
		t.Fatalf("after removing the phone: %v", got)
	}
}

// rogue is a DHT node of the same overlay whose validator accepts
// anything: it sends forged records straight to the honest nodes, so the
// test shows that the storing nodes, not the writer, refuse them.
func rogue(t *testing.T, tn *testNet) *dht.IpfsDHT {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	d, err := dht.New(h, dht.Mode(dht.ModeServer), dht.ProtocolPrefix(protocol.ID("/p2psip/test.overlay")),
		dht.Validator(record.NamespacedValidator{"sip": acceptAll{}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(); _ = h.Close() })
	for i := range tn.nodes {
		if err := h.Connect(ctxT(t), tn.info(i)); err != nil {
			t.Fatal(err)
		}
	}
	for d.RoutingTable().Size() < len(tn.nodes)/2 {
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

type acceptAll struct{}

func (acceptAll) Validate(string, []byte) error        { return nil }
func (acceptAll) Select(string, [][]byte) (int, error) { return 0, nil }

// storedAnywhere reports whether any honest node stores exactly value.
func storedAnywhere(tn *testNet, key string, value []byte) bool {
	for _, n := range tn.nodes {
		if bytes.Equal(n.localValue(key), value) {
			return true
		}
	}
	return false
}

func testRefusedWrites(t *testing.T, tn *testNet) {
	owner, thief := mustKey(t), mustKey(t)
	aor := "sip:carol@test.overlay"
	orig := register(t, tn.nodes[8], aor, owner, binding("c", "sip:carol@10.0.0.8", time.Hour))
	bad := rogue(t, tn)
	put := func(key string, value []byte) {
		t.Helper()
		_ = bad.PutValue(ctxT(t), key, value) // errors come from the honest nodes
	}
	// Control: a valid record sent the same way is stored, so the refusals
	// below are the honest nodes' doing and not a path that never delivers.
	other := mustKey(t)
	valid, _ := SignRegistration(&Registration{AOR: "sip:ok@test.overlay", Owner: other.PublicKey(), Seq: 1,
		Created: time.Now().Unix(), Expires: time.Now().Add(time.Hour).Unix()}, other)
	put(RegistrationKey("sip:ok@test.overlay"), valid)
	if !storedAnywhere(tn, RegistrationKey("sip:ok@test.overlay"), valid) {
		t.Fatal("control: the rogue's valid record reached no honest node")
	}

	t.Run("ForeignOwnerOnHeldAOR", func(t *testing.T) {
		_, err := tn.nodes[9].Register(ctxT(t), RegisterRequest{AOR: aor, Signer: thief, Binding: binding("t", "sip:thief@10.6.6.6", time.Hour)})
		if !errors.Is(err, ErrAORHeld) {
			t.Fatalf("honest peer let a thief register: %v", err)
		}
		forged, _ := SignRegistration(&Registration{AOR: aor, Owner: thief.PublicKey(), Seq: 99, Created: orig.Created,
			Expires: time.Now().Add(time.Hour).Unix(), Bindings: []Binding{{Instance: "t", Node: tn.nodes[9].ID(),
				Contact: "sip:thief@10.6.6.6", Expires: time.Now().Add(time.Hour).Unix()}}}, thief)
		put(RegistrationKey(aor), forged)
		if storedAnywhere(tn, RegistrationKey(aor), forged) {
			t.Fatal("an honest node stored a foreign owner's record of a held AOR")
		}
		for i, n := range tn.nodes {
			if got := lookupLive(t, n, aor); len(got) != 1 || got[0] != "sip:carol@10.0.0.8" {
				t.Fatalf("node %d: %v", i, got)
			}
		}
	})
	t.Run("BadSignature", func(t *testing.T) {
		reg := *orig
		reg.Seq += 10
		reg.Bindings = []Binding{{Instance: "c", Node: tn.nodes[8].ID(), Contact: "sip:evil@10.6.6.6", Expires: reg.Expires}}
		value, _ := SignRegistration(&reg, owner)
		env, _ := decodeEnvelope(value)
		env.Sig[5] ^= 0xff
		tampered, _ := encodeEnvelope(env)
		if err := tn.nodes[3].put(ctxT(t), RegistrationKey(aor), tampered); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("local put of a bad signature: %v, want ErrBadSignature", err)
		}
		put(RegistrationKey(aor), tampered)
		if storedAnywhere(tn, RegistrationKey(aor), tampered) {
			t.Fatal("an honest node stored a record with a bad signature")
		}
	})
	t.Run("ForgedBatch", func(t *testing.T) {
		// Control: a valid batch record from the rogue is stored.
		stamp := time.Now().UnixNano()
		okRegs := batchRegs(t, other, fmt.Sprintf("okbatch%d-", stamp), 3)
		okValues := batchValues(t, other, okRegs)
		put(RegistrationKey(okRegs[1].AOR), okValues[1])
		if !storedAnywhere(tn, RegistrationKey(okRegs[1].AOR), okValues[1]) {
			t.Fatal("control: the rogue's valid batch record reached no honest node")
		}
		// The owner's batch, with carol's record swapped in for another
		// one under the same proof and signature.
		regs := batchRegs(t, owner, fmt.Sprintf("batch%d-", stamp), 3)
		values := batchValues(t, owner, regs)
		evil := *orig
		evil.Seq += 20
		evil.Bindings = []Binding{{Instance: "c", Node: tn.nodes[8].ID(), Contact: "sip:evil@10.6.6.6", Expires: orig.Expires}}
		swapped := editEnvelope(t, values[0], func(e *Envelope) { e.Body = mustJSON(t, &evil) })
		// A sibling changed under a record of the owner's batch.
		sibling := editEnvelope(t, values[1], func(e *Envelope) { e.Proof.Path[0][0] ^= 0x80 })
		// The thief batch-signs carol's AOR as its own.
		thiefReg := evil
		thiefReg.Owner = thief.PublicKey()
		thiefValues := batchValues(t, thief, []*Registration{&thiefReg, batchRegs(t, thief, fmt.Sprintf("thief%d-", stamp), 1)[0]})
		for name, c := range map[string]struct {
			key   string
			value []byte
		}{
			"swapped body":    {RegistrationKey(aor), swapped},
			"changed sibling": {RegistrationKey(regs[1].AOR), sibling},
			"held AOR":        {RegistrationKey(aor), thiefValues[0]},
		} {
			put(c.key, c.value)
			if storedAnywhere(tn, c.key, c.value) {
				t.Fatalf("%s: an honest node stored a forged batch record", name)
			}
		}
		for i, n := range tn.nodes {
			if got := lookupLive(t, n, aor); len(got) != 1 || got[0] != "sip:carol@10.0.0.8" {
				t.Fatalf("node %d: %v", i, got)
			}
		}
	})
	t.Run("HostNotOverlay", func(t *testing.T) {
		_, err := tn.nodes[2].Register(ctxT(t), RegisterRequest{AOR: "sip:dan@other.example", Signer: thief, Binding: binding("d", "sip:dan@10.0.0.2", time.Hour)})
		if !errors.Is(err, ErrWrongOverlay) {
			t.Fatalf("foreign host part: %v, want ErrWrongOverlay", err)
		}
		key := RegistrationKey("sip:dan@other.example")
		value, _ := SignRegistration(&Registration{AOR: "sip:dan@other.example", Owner: thief.PublicKey(), Seq: 1,
			Created: time.Now().Unix(), Expires: time.Now().Add(time.Hour).Unix()}, thief)
		put(key, value)
		if storedAnywhere(tn, key, value) {
			t.Fatal("an honest node stored an AOR of another domain")
		}
	})
}

func testServices(t *testing.T, tn *testNet) {
	for _, i := range []int{1, 2} {
		if err := tn.nodes[i].Announce(ctxT(t), ServiceEntry{Service: ServiceProxy, URIs: []string{fmt.Sprintf("sip:proxy%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	found, err := tn.nodes[17].FindService(ctxT(t), ServiceProxy, 10)
	if err != nil || len(found) != 2 {
		t.Fatalf("find proxies: %v %+v", err, found)
	}
	// A node signs an entry under node 1's key with its own key.
	bad := rogue(t, tn)
	victim := tn.nodes[1].ID()
	e := ServiceEntry{Service: ServiceProxy, Node: victim, URIs: []string{"sip:evil"}, Seq: 1000, Expires: time.Now().Add(time.Minute).Unix()}
	body := mustJSON(t, e)
	priv, _, _ := crypto.GenerateEd25519Key(nil)
	sig, _ := priv.Sign(append([]byte(recordDomain), body...))
	pub, _ := crypto.MarshalPublicKey(priv.GetPublic())
	forged, _ := encodeEnvelope(&Envelope{Alg: AlgLibp2p, Body: body, Signer: pub, Sig: sig})
	_ = bad.PutValue(ctxT(t), ServiceKey(ServiceProxy, victim), forged)
	if storedAnywhere(tn, ServiceKey(ServiceProxy, victim), forged) {
		t.Fatal("an honest node stored another node's service entry")
	}
	found, err = tn.nodes[12].FindService(ctxT(t), ServiceProxy, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		if f.Node == victim && f.URIs[0] != "sip:proxy1" {
			t.Fatalf("node 1's entry was overwritten: %+v", f)
		}
	}
	if err := tn.nodes[2].Withdraw(ctxT(t), ServiceProxy); err != nil {
		t.Fatal(err)
	}
	found, err = tn.nodes[17].FindService(ctxT(t), ServiceProxy, 10)
	if err != nil || len(found) != 1 || found[0].Node != victim {
		t.Fatalf("after withdrawal: %v %+v", err, found)
	}
}

// TestServiceOfALonePeerIsFoundWhenOthersJoin: a node that announced a
// service while alone must be findable as soon as another node joins it,
// not only after its refresh interval.
func TestServiceOfALonePeerIsFoundWhenOthersJoin(t *testing.T) {
	tn := newTestNet(t, 1, func(c *Config) { c.RefreshInterval = time.Hour; c.ServiceTTL = 2 * time.Hour })
	if err := tn.nodes[0].Announce(ctxT(t), ServiceEntry{Service: ServiceProxy, URIs: []string{"sip:lone"}}); err != nil {
		t.Fatal(err)
	}
	joiner, err := New(testConfig(t, func(c *Config) { c.RefreshInterval = time.Hour; c.ServiceTTL = 2 * time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(joiner) })
	if err := joiner.Connect(ctxT(t), tn.info(0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		found, err := joiner.FindService(ctxT(t), ServiceProxy, 5)
		if err == nil && len(found) == 1 && found[0].URIs[0] == "sip:lone" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lone node's service is not found: %v %v", found, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLonePutValidates: a node without peers stores writes without the
// DHT's put, but still validates them and keeps the better value.
func TestLonePutValidates(t *testing.T) {
	tn := newTestNet(t, 1, nil)
	n := tn.nodes[0]
	owner := mustKey(t)
	reg := sampleReg(t, owner)
	reg.AOR = fmt.Sprintf("sip:lone%d@test.overlay", time.Now().UnixNano())
	key := RegistrationKey(reg.AOR)
	v1 := sign(t, reg, owner)
	reg.Seq++
	v2 := sign(t, reg, owner)
	tampered := editEnvelope(t, v2, func(e *Envelope) { e.Sig[3] ^= 1 })
	if err := n.put(ctxT(t), key, tampered); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: %v, want ErrBadSignature", err)
	}
	if n.localValue(key) != nil {
		t.Fatal("a refused value was stored")
	}
	if err := n.put(ctxT(t), key, v2); err != nil {
		t.Fatal(err)
	}
	if err := n.put(ctxT(t), key, v1); !errors.Is(err, ErrStale) {
		t.Fatalf("older value: %v, want ErrStale", err)
	}
	if err := n.put(ctxT(t), key, v2); err != nil {
		t.Fatalf("republishing the stored value: %v", err)
	}
	if !bytes.Equal(n.localValue(key), v2) || !n.unspread.Load() {
		t.Fatal("the newer value is not stored, or not marked for spreading")
	}
	thief := mustKey(t)
	stolen := sampleReg(t, thief)
	stolen.AOR = reg.AOR
	if err := n.put(ctxT(t), key, sign(t, stolen, thief)); !errors.Is(err, ErrAORHeld) {
		t.Fatalf("another owner's record: %v, want ErrAORHeld", err)
	}
}

package overlay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DHT key layout. Every key lives in the "sip" namespace so that one
// validator sees every write.
const (
	keyNamespace   = "sip"
	regKeyPrefix   = "/sip/reg/"
	svcKeyPrefix   = "/sip/svc/"
	maxRecordBytes = 8 << 10 // a record is a handful of bindings; bound it
	maxBindings    = 16      // devices per AOR
	maxDevices     = 16      // device certificates per AOR
	maxClockSkew   = 5 * time.Minute
)

// Signature domains keep a signature over one kind of message from being
// replayed as another.
const (
	recordDomain = "p2psip/record/v1\n"
	deviceDomain = "p2psip/device/v1\n"
)

// Algorithms of an Envelope's signer.
const (
	AlgP256      = "p256"       // registration records: owner or device P-256 key
	AlgP256Batch = "p256-batch" // the same keys, signing a batch of records (Envelope.Proof)
	AlgLibp2p    = "libp2p"     // service entries: the announcing node's libp2p key
)

// Envelope is the value stored in the DHT: opaque body bytes and a
// signature over them. Signing the exact bytes avoids any canonical JSON
// rule, so a browser can build and sign a body with JSON.stringify.
type Envelope struct {
	Alg    string `json:"alg"`
	Body   []byte `json:"body"`   // JSON of Registration or ServiceEntry
	Signer []byte `json:"signer"` // P-256 raw point, or marshalled libp2p public key
	Sig    []byte `json:"sig"`    // over recordDomain ‖ Body; for AlgP256Batch over the batch (batchMessage)
	// Proof places Body in a batch signed once (AlgP256Batch only); absent
	// for every other Alg, so plain records encode as they always have.
	Proof *BatchProof `json:"proof,omitempty"`
}

// Binding is one device's contact under an AOR (RFC 3261 §10, RFC 5626).
type Binding struct {
	// Instance identifies the device (+sip.instance, or a generated id).
	Instance string `json:"instance"`
	// RegID is the RFC 5626 reg-id, 0 when absent.
	RegID int `json:"reg_id,omitempty"`
	// Node is the peer ID of the peer that hosts the device; calls for the
	// binding are routed to that peer.
	Node string `json:"node"`
	// Contact is the device's SIP contact URI.
	Contact string `json:"contact"`
	// Path is the RFC 3327 Path the hosting peer inserted, if any.
	Path []string `json:"path,omitempty"`
	// Expires is the binding's expiry, Unix seconds.
	Expires int64 `json:"expires"`
	// Q is the contact's preference, 0..1 (RFC 3261 §10.2.1.2).
	Q float64 `json:"q,omitempty"`
}

// ExpiresAt returns the binding's expiry time.
func (b Binding) ExpiresAt() time.Time { return time.Unix(b.Expires, 0) }

// DeviceCert lets a further device of the user sign the AOR's record: the
// owner key signs the device key, the AOR and an expiry.
type DeviceCert struct {
	Owner   []byte `json:"owner"` // the certifying owner key
	Key     []byte `json:"key"`   // the device key
	Expires int64  `json:"expires"`
	Sig     []byte `json:"sig"` // by Owner over deviceDomain ‖ aor ‖ Key ‖ Expires
}

// Registration is the body of an AOR's record: every binding of the AOR.
type Registration struct {
	AOR string `json:"aor"`
	// Owner is the P-256 key that owns the AOR; only it, or devices it
	// certified, may update the record.
	Owner []byte `json:"owner"`
	// Seq orders updates by the same owner; a write must raise it.
	Seq uint64 `json:"seq"`
	// Created is when the owner first claimed the AOR, Unix seconds.
	Created int64 `json:"created"`
	// Expires is the record's expiry, Unix seconds: at least the latest
	// binding expiry. A record with no bindings is a tombstone that keeps
	// the AOR held for the overlay's hold period.
	Expires  int64        `json:"expires"`
	Devices  []DeviceCert `json:"devices,omitempty"`
	Bindings []Binding    `json:"bindings"`
}

// clone copies the record deeply: changing the copy leaves r alone.
func (r *Registration) clone() *Registration {
	c := *r
	c.Owner = slices.Clone(r.Owner)
	c.Devices = slices.Clone(r.Devices)
	for i, d := range c.Devices {
		c.Devices[i].Owner, c.Devices[i].Key, c.Devices[i].Sig = slices.Clone(d.Owner), slices.Clone(d.Key), slices.Clone(d.Sig)
	}
	c.Bindings = slices.Clone(r.Bindings)
	for i := range c.Bindings {
		c.Bindings[i].Path = slices.Clone(c.Bindings[i].Path)
	}
	return &c
}

// ExpiresAt returns the record's expiry time.
func (r *Registration) ExpiresAt() time.Time { return time.Unix(r.Expires, 0) }

// Live returns the bindings that have not expired at now.
func (r *Registration) Live(now time.Time) []Binding {
	var out []Binding
	for _, b := range r.Bindings {
		if b.Expires > now.Unix() {
			out = append(out, b)
		}
	}
	return out
}

// ServiceEntry is one node's entry under a service name (proxy, relay):
// each node writes only its own key, /sip/svc/<service>/<peer id>.
type ServiceEntry struct {
	Service string            `json:"service"`
	Node    string            `json:"node"`
	Addrs   []string          `json:"addrs,omitempty"` // multiaddrs
	URIs    []string          `json:"uris,omitempty"`  // e.g. SIP or TURN URIs
	Data    map[string]string `json:"data,omitempty"`  // role data
	Seq     uint64            `json:"seq"`
	Expires int64             `json:"expires"`
}

// RegistrationKey is the DHT key of an AOR's record.
func RegistrationKey(canonicalAOR string) string { return regKeyPrefix + canonicalAOR }

// ServiceKey is the DHT key of a node's entry under a service.
func ServiceKey(service, nodeID string) string {
	return svcKeyPrefix + service + "/" + nodeID
}

// SignRegistration encodes and signs a registration body.
func SignRegistration(reg *Registration, s Signer) ([]byte, error) {
	value, _, err := signRegistration(reg, s)
	return value, err
}

func signRegistration(reg *Registration, s Signer) ([]byte, *Envelope, error) {
	body, err := encodeRegistration(reg)
	if err != nil {
		return nil, nil, err
	}
	var sig []byte
	var proof *BatchProof
	if k, ok := s.(*P256Key); ok && fitsWithProof(body, k) {
		// A local key may sign this record together with others signed
		// at the same time (see batch.go); alone, it signs it plainly.
		sig, proof, err = k.signRecord(body)
	} else {
		sig, err = s.Sign(append([]byte(recordDomain), body...))
	}
	if err != nil {
		return nil, nil, err
	}
	env := &Envelope{Alg: AlgP256, Body: body, Signer: s.PublicKey(), Sig: sig, Proof: proof}
	if proof != nil {
		env.Alg = AlgP256Batch
	}
	value, err := encodeEnvelope(env)
	if err != nil {
		return nil, nil, err
	}
	return value, env, nil
}

// CertifyDevice lets the owner key admit a device key to the AOR until
// expires.
func CertifyDevice(owner Signer, aor string, deviceKey []byte, expires time.Time) (DeviceCert, error) {
	c := DeviceCert{Owner: owner.PublicKey(), Key: deviceKey, Expires: expires.Unix()}
	sig, err := owner.Sign(deviceCertMessage(aor, c))
	if err != nil {
		return DeviceCert{}, err
	}
	c.Sig = sig
	return c, nil
}

func deviceCertMessage(aor string, c DeviceCert) []byte {
	var b bytes.Buffer
	b.WriteString(deviceDomain)
	b.WriteString(aor)
	b.WriteByte('\n')
	b.Write(c.Key)
	fmt.Fprintf(&b, "\n%d", c.Expires)
	return b.Bytes()
}

// encodeRegistration is json.Marshal(reg), faster (see recordjson.go).
func encodeRegistration(reg *Registration) ([]byte, error) {
	if body, ok := appendRegistrationJSON(make([]byte, 0, registrationJSONSize(reg)), reg); ok {
		return body, nil
	}
	body, err := json.Marshal(reg)
	if err != nil {
		return nil, fmt.Errorf("encoding registration: %w", err)
	}
	return body, nil
}

func encodeEnvelope(e *Envelope) ([]byte, error) {
	out, ok := appendEnvelopeJSON(nil, e)
	if !ok {
		var err error
		if out, err = json.Marshal(e); err != nil {
			return nil, fmt.Errorf("encoding envelope: %w", err)
		}
	}
	if len(out) > maxRecordBytes {
		return nil, fmt.Errorf("%w: record is %d bytes, limit %d", ErrBadRecord, len(out), maxRecordBytes)
	}
	return out, nil
}

// decodeEnvelope parses an envelope strictly: unknown fields are refused
// so that a record means the same thing to every node.
func decodeEnvelope(value []byte) (*Envelope, error) {
	if len(value) > maxRecordBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadRecord, len(value), maxRecordBytes)
	}
	var e Envelope
	if err := strictUnmarshal(value, &e); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrBadRecord, err)
	}
	return &e, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// ParseRegistration decodes a stored registration value without checking
// its signature; use it for display. Validation is Validator's job.
func ParseRegistration(value []byte) (*Registration, *Envelope, error) {
	env, err := decodeEnvelope(value)
	if err != nil {
		return nil, nil, err
	}
	var reg Registration
	if err := strictUnmarshal(env.Body, &reg); err != nil {
		return nil, nil, fmt.Errorf("%w: registration: %v", ErrBadRecord, err)
	}
	return &reg, env, nil
}

// ParseServiceEntry decodes a stored service value without checking its
// signature.
func ParseServiceEntry(value []byte) (*ServiceEntry, *Envelope, error) {
	env, err := decodeEnvelope(value)
	if err != nil {
		return nil, nil, err
	}
	var e ServiceEntry
	if err := strictUnmarshal(env.Body, &e); err != nil {
		return nil, nil, fmt.Errorf("%w: service entry: %v", ErrBadRecord, err)
	}
	return &e, env, nil
}

// validServiceName keeps service names short path segments.
func validServiceName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

package sip

import (
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// flow is how this peer reaches one device registered here: the source
// address and transport of its REGISTER (RFC 5626 §5), which works where
// the Contact does not (NAT, .invalid hosts of WebSocket clients).
type flow struct {
	aor       string
	instance  string
	contact   string
	hostPort  string // the contact's host:port, for dialog remote targets
	source    string // host:port the REGISTER came from
	transport string // UDP, TCP, TLS, WS, WSS
	expires   time.Time
}

// flows is the peer's local location service. Every lookup on the
// request path is a map access: the indexes are kept on put and remove.
//
// Expired flows are only hidden by the lookups (live); put drops them,
// all at once every flowSweepEvery or when the flows have doubled since
// the last sweep (so a sweep costs O(1) a put, amortised), and those of
// one source when that source is at its cap. Nothing runs in the
// background: there is nothing to stop when the Service closes.
type flows struct {
	mu        sync.Mutex
	byAOR     map[string][]*flow        // guarded by mu; aor → its flows, one per instance
	byContact map[string]*flow          // guarded by mu; contact URI → flow
	byHP      map[string]*flow          // guarded by mu; contact host:port → flow
	bySrc     map[string]*flow          // guarded by mu; source host:port → flow
	perSrc    map[string]map[*flow]bool // guarded by mu; source host:port → its flows (UDP ones only under a cap)
	n         int                       // guarded by mu; flows in byAOR
	sweepAt   int                       // guarded by mu; n at which put sweeps
	swept     time.Time                 // guarded by mu; when put last swept
	maxPerSrc int                       // flows one source may hold
}

const (
	// maxFlowsPerSource caps the flows one source address (host:port)
	// holds, so that a client registering name after name cannot grow
	// the indexes without bound. A phone has one flow per AOR it
	// registers; 64 leaves room for a PBX or gateway with many lines.
	maxFlowsPerSource = 64
	// flowSweepEvery is how often put drops every expired flow.
	flowSweepEvery = time.Minute
	minFlowSweepAt = 1024
)

// errTooManyFlows: the source of a REGISTER holds maxFlowsPerSource live
// flows already.
var errTooManyFlows = errors.New("sip: too many registrations from this address")

// newFlows makes the index; maxPerSrc < 0 means no cap per source.
func newFlows(maxPerSrc int) *flows {
	return &flows{byAOR: map[string][]*flow{}, byContact: map[string]*flow{},
		byHP: map[string]*flow{}, bySrc: map[string]*flow{}, perSrc: map[string]map[*flow]bool{},
		sweepAt: minFlowSweepAt, swept: time.Now(), maxPerSrc: maxPerSrc}
}

// contactHostPort is the host:port a contact URI names (port 0 if none).
func contactHostPort(contact string) string {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return ""
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}

// put adds fl, replacing the flow of its AOR and instance; it fails
// with errTooManyFlows when fl's source is at its cap.
func (f *flows) put(fl *flow) error {
	if fl.hostPort == "" {
		fl.hostPort = contactHostPort(fl.contact)
	}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n >= f.sweepAt || now.Sub(f.swept) >= flowSweepEvery {
		f.sweep(now)
	}
	old := f.get(fl.aor, fl.instance)
	if err := f.room(fl.source, old, now); err != nil {
		return err
	}
	if old != nil {
		f.drop(old)
	}
	// A slice, not a map: an AOR has a device or two, and a map per
	// AOR would cost an allocation and a hash table per registration.
	f.byAOR[fl.aor] = append(f.byAOR[fl.aor], fl)
	f.n++
	f.byContact[fl.contact] = fl
	f.byHP[fl.hostPort] = fl
	f.bySrc[fl.source] = fl
	if f.maxPerSrc < 0 && fl.transport == "UDP" {
		// perSrc serves the cap and dropSource (a closed connection);
		// with neither, one busy UDP source (a gateway, a load test)
		// would only grow one huge set.
		return nil
	}
	src := f.perSrc[fl.source]
	if src == nil {
		src = map[*flow]bool{}
		f.perSrc[fl.source] = src
	}
	src[fl] = true
	return nil
}

// admit tells whether put would take a flow of aor and instance from
// source (errTooManyFlows if not), so that the registrar can refuse a
// REGISTER before it writes the binding to the overlay.
func (f *flows) admit(aor, instance, source string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.room(source, f.get(aor, instance), time.Now())
}

// get finds the flow of aor and instance (mu held).
func (f *flows) get(aor, instance string) *flow {
	for _, fl := range f.byAOR[aor] {
		if fl.instance == instance {
			return fl
		}
	}
	return nil
}

// room checks that source may add a flow, old (if set) being the one it
// replaces; the source's expired flows go first (mu held).
func (f *flows) room(source string, old *flow, now time.Time) error {
	if f.maxPerSrc < 0 || len(f.perSrc[source]) < f.maxPerSrc {
		return nil // no cap, or room even if none has expired: no scan
	}
	n := 0
	for fl := range f.perSrc[source] {
		switch {
		case now.After(fl.expires):
			f.drop(fl)
		case fl != old:
			n++
		}
	}
	if n >= f.maxPerSrc {
		return errTooManyFlows
	}
	return nil
}

// sweep drops every expired flow (mu held).
func (f *flows) sweep(now time.Time) {
	var expired []*flow
	for _, list := range f.byAOR {
		for _, fl := range list {
			if now.After(fl.expires) {
				expired = append(expired, fl)
			}
		}
	}
	for _, fl := range expired { // not while ranging: drop edits the lists
		f.drop(fl)
	}
	f.sweepAt = max(2*f.n, minFlowSweepAt)
	f.swept = now
}

// drop removes fl from every index, if it is still there (mu held).
func (f *flows) drop(fl *flow) {
	list := f.byAOR[fl.aor]
	if i := slices.Index(list, fl); i >= 0 {
		list = slices.Delete(list, i, i+1)
		if len(list) == 0 {
			delete(f.byAOR, fl.aor)
		} else {
			f.byAOR[fl.aor] = list
		}
		f.n--
	}
	f.unindex(fl)
	if src := f.perSrc[fl.source]; src != nil {
		delete(src, fl)
		if len(src) == 0 {
			delete(f.perSrc, fl.source)
		}
	}
}

// unindex removes fl from the secondary indexes (mu held).
func (f *flows) unindex(fl *flow) {
	for _, idx := range []struct {
		m   map[string]*flow
		key string
	}{{f.byContact, fl.contact}, {f.byHP, fl.hostPort}, {f.bySrc, fl.source}} {
		if idx.m[idx.key] == fl {
			delete(idx.m, idx.key)
		}
	}
}

func (f *flows) remove(aor, instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.get(aor, instance); fl != nil {
		f.drop(fl)
	}
}

// all returns the live flows of aor.
func (f *flows) all(aor string) []*flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*flow
	for _, fl := range f.byAOR[aor] {
		if time.Now().Before(fl.expires) {
			out = append(out, fl)
		}
	}
	return out
}

// instances returns every instance registered for aor.
func (f *flows) instances(aor string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, fl := range f.byAOR[aor] {
		out = append(out, fl.instance)
	}
	return out
}

// live returns fl if it has not expired.
func live(fl *flow) *flow {
	if fl == nil || time.Now().After(fl.expires) {
		return nil
	}
	return fl
}

// byContactURI finds a live flow by its contact URI.
func (f *flows) byContactURI(contact string) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return live(f.byContact[contact])
}

// byHostPort finds a live flow whose contact has this host and port (a
// dialog's remote target is often the registered contact without its
// user part).
func (f *flows) byHostPort(host string, port int) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return live(f.byHP[net.JoinHostPort(host, strconv.Itoa(port))])
}

// bySource finds a live flow by the address its device sends from.
func (f *flows) bySource(source string) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return live(f.bySrc[source])
}

// dropSource removes every flow that used a closed connection.
func (f *flows) dropSource(transport, source string) []*flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gone []*flow
	for fl := range f.perSrc[source] {
		if fl.transport == transport {
			gone = append(gone, fl)
			f.drop(fl)
		}
	}
	return gone
}

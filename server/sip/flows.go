package sip

import (
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
	source    string // host:port the REGISTER came from
	transport string // UDP, TCP, TLS, WS, WSS
	expires   time.Time
}

// flows is the peer's local location service.
type flows struct {
	mu        sync.Mutex
	byAOR     map[string]map[string]*flow // guarded by mu; aor → instance → flow
	byContact map[string]*flow            // guarded by mu; contact URI → flow
}

func newFlows() *flows {
	return &flows{byAOR: map[string]map[string]*flow{}, byContact: map[string]*flow{}}
}

func (f *flows) put(fl *flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.byAOR[fl.aor]
	if m == nil {
		m = map[string]*flow{}
		f.byAOR[fl.aor] = m
	}
	if old := m[fl.instance]; old != nil {
		delete(f.byContact, old.contact)
	}
	m[fl.instance] = fl
	f.byContact[fl.contact] = fl
}

func (f *flows) remove(aor, instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.byAOR[aor][instance]; fl != nil {
		delete(f.byContact, fl.contact)
		delete(f.byAOR[aor], instance)
		if len(f.byAOR[aor]) == 0 {
			delete(f.byAOR, aor)
		}
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
	for inst := range f.byAOR[aor] {
		out = append(out, inst)
	}
	return out
}

// byContactURI finds a live flow by its contact URI.
func (f *flows) byContactURI(contact string) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.byContact[contact]
	if fl == nil || time.Now().After(fl.expires) {
		return nil
	}
	return fl
}

// dropSource removes every flow that used a closed connection.
func (f *flows) dropSource(transport, source string) []*flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gone []*flow
	for aor, m := range f.byAOR {
		for inst, fl := range m {
			if fl.source == source && fl.transport == transport {
				gone = append(gone, fl)
				delete(f.byContact, fl.contact)
				delete(m, inst)
			}
		}
		if len(m) == 0 {
			delete(f.byAOR, aor)
		}
	}
	return gone
}

// byHostPort finds a live flow whose contact has this host and port (a
// dialog's remote target is often the registered contact without its
// user part).
func (f *flows) byHostPort(host string, port int) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.byContact {
		var u sip.Uri
		if err := sip.ParseUri(fl.contact, &u); err != nil || time.Now().After(fl.expires) {
			continue
		}
		if u.Host == host && u.Port == port {
			return fl
		}
	}
	return nil
}

// bySource finds a live flow by the address its device sends from.
func (f *flows) bySource(source string) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.byAOR {
		for _, fl := range m {
			if fl.source == source && time.Now().Before(fl.expires) {
				return fl
			}
		}
	}
	return nil
}

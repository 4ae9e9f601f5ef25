package sip

import (
	"net"
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
type flows struct {
	mu        sync.Mutex
	byAOR     map[string]map[string]*flow // guarded by mu; aor → instance → flow
	byContact map[string]*flow            // guarded by mu; contact URI → flow
	byHP      map[string]*flow            // guarded by mu; contact host:port → flow
	bySrc     map[string]*flow            // guarded by mu; source host:port → flow
}

func newFlows() *flows {
	return &flows{byAOR: map[string]map[string]*flow{}, byContact: map[string]*flow{},
		byHP: map[string]*flow{}, bySrc: map[string]*flow{}}
}

// contactHostPort is the host:port a contact URI names (port 0 if none).
func contactHostPort(contact string) string {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return ""
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}

func (f *flows) put(fl *flow) {
	fl.hostPort = contactHostPort(fl.contact)
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.byAOR[fl.aor]
	if m == nil {
		m = map[string]*flow{}
		f.byAOR[fl.aor] = m
	}
	if old := m[fl.instance]; old != nil {
		f.unindex(old)
	}
	m[fl.instance] = fl
	f.byContact[fl.contact] = fl
	f.byHP[fl.hostPort] = fl
	f.bySrc[fl.source] = fl
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
	if fl := f.byAOR[aor][instance]; fl != nil {
		f.unindex(fl)
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
	for aor, m := range f.byAOR {
		for inst, fl := range m {
			if fl.source == source && fl.transport == transport {
				gone = append(gone, fl)
				f.unindex(fl)
				delete(m, inst)
			}
		}
		if len(m) == 0 {
			delete(f.byAOR, aor)
		}
	}
	return gone
}

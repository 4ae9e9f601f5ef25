package bridge

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// A small, tolerant SDP reader (RFC 8866) for what the bridge needs from
// either side: phones send SDP of every vintage, and one odd line must not
// cost a call. Unknown lines are skipped; what is read is checked.

// direction is a stream's media direction attribute (RFC 3264 §5.1),
// from the point of view of the description's author.
type direction uint8

const (
	sendrecv direction = iota
	sendonly
	recvonly
	inactive
)

func (d direction) String() string {
	return [...]string{"sendrecv", "sendonly", "recvonly", "inactive"}[d]
}

func (d direction) sends() bool { return d == sendrecv || d == sendonly }
func (d direction) recvs() bool { return d == sendrecv || d == recvonly }

// dirOf makes a direction from whether its author sends and receives.
func dirOf(send, recv bool) direction {
	switch {
	case send && recv:
		return sendrecv
	case send:
		return sendonly
	case recv:
		return recvonly
	}
	return inactive
}

func parseDirection(a string) (direction, bool) {
	switch a {
	case "sendrecv":
		return sendrecv, true
	case "sendonly":
		return sendonly, true
	case "recvonly":
		return recvonly, true
	case "inactive":
		return inactive, true
	}
	return 0, false
}

// mediaDesc is one m= section.
type mediaDesc struct {
	kind, proto string
	port        int
	fmts        []string
	conn        netip.Addr // c= of the section, else the session's
	rtpmap      map[uint8]string
	fmtp        map[uint8]string
	rtcpPort    int        // a=rtcp (RFC 3605), 0 when absent
	rtcpAddr    netip.Addr // a=rtcp's address, when it has one
	mux         bool       // a=rtcp-mux (RFC 5761)
	dir         direction
	explicitDir bool // dir came from the section, not the session
	fingerprint bool // a=fingerprint here or at session level (DTLS)
	crypto      bool // a=crypto (SDES, RFC 4568)
	ice         bool // a=ice-ufrag here or at session level
	ptime       int
}

// sessionDesc is a parsed description.
type sessionDesc struct {
	media []mediaDesc
}

// maxSDP bounds what is parsed: a real audio offer is a few kB.
const maxSDP = 64 << 10

// parseSDP reads the parts of b the bridge uses.
func parseSDP(b []byte) (*sessionDesc, error) {
	if len(b) > maxSDP {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadSDP, len(b))
	}
	var (
		sd                              sessionDesc
		sessConn                        netip.Addr
		sessDir                         = sendrecv
		sessFP, sessICE, sawV, sessHasD bool
		cur                             *mediaDesc
		hasConn                         []bool
	)
	for _, line := range bytes.Split(b, []byte("\n")) {
		l := strings.TrimRight(string(line), "\r")
		if len(l) < 2 || l[1] != '=' {
			continue
		}
		key, val := l[0], l[2:]
		switch key {
		case 'v':
			sawV = true
		case 'c':
			ip, err := parseConn(val)
			if err != nil {
				return nil, err
			}
			if cur == nil {
				sessConn = ip
			} else {
				cur.conn = ip
				hasConn[len(hasConn)-1] = true
			}
		case 'm':
			md, err := parseM(val)
			if err != nil {
				return nil, err
			}
			sd.media = append(sd.media, md)
			hasConn = append(hasConn, false)
			cur = &sd.media[len(sd.media)-1]
		case 'a':
			name, value, _ := strings.Cut(val, ":")
			if d, ok := parseDirection(name); ok {
				if cur == nil {
					sessDir, sessHasD = d, true
				} else {
					cur.dir, cur.explicitDir = d, true
				}
				continue
			}
			switch name {
			case "fingerprint":
				if cur == nil {
					sessFP = true
				} else {
					cur.fingerprint = true
				}
			case "ice-ufrag":
				if cur == nil {
					sessICE = true
				} else {
					cur.ice = true
				}
			}
			if cur != nil {
				if err := cur.attr(name, value); err != nil {
					return nil, err
				}
			}
		}
	}
	if !sawV {
		return nil, fmt.Errorf("%w: no v= line", ErrBadSDP)
	}
	for i := range sd.media {
		m := &sd.media[i]
		if !hasConn[i] {
			m.conn = sessConn
		}
		m.fingerprint = m.fingerprint || sessFP
		m.ice = m.ice || sessICE
		if !m.explicitDir && sessHasD {
			m.dir = sessDir
		}
	}
	return &sd, nil
}

func parseConn(v string) (netip.Addr, error) {
	f := strings.Fields(v)
	if len(f) != 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
		return netip.Addr{}, fmt.Errorf("%w: c=%s", ErrBadSDP, v)
	}
	addr, _, _ := strings.Cut(f[2], "/") // multicast TTL
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		// A host name is allowed (RFC 8866 §5.7) but the bridge cannot
		// resolve names on the media path.
		return netip.Addr{}, fmt.Errorf("%w: c= address %q is not an IP address", ErrBadSDP, addr)
	}
	return ip, nil
}

func parseM(v string) (mediaDesc, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return mediaDesc{}, fmt.Errorf("%w: m=%s", ErrBadSDP, v)
	}
	p, _, _ := strings.Cut(f[1], "/")
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return mediaDesc{}, fmt.Errorf("%w: m= port %q", ErrBadSDP, f[1])
	}
	return mediaDesc{kind: f[0], port: port, proto: f[2], fmts: f[3:],
		rtpmap: map[uint8]string{}, fmtp: map[uint8]string{}}, nil
}

// attr applies one media-level attribute.
func (m *mediaDesc) attr(name, value string) error {
	switch name {
	case "rtpmap", "fmtp":
		pt, rest, ok := strings.Cut(value, " ")
		n, err := strconv.Atoi(pt)
		if !ok || err != nil || n < 0 || n > 127 {
			return nil // a payload type the bridge cannot use: ignore
		}
		if name == "rtpmap" {
			m.rtpmap[uint8(n)] = strings.TrimSpace(rest)
		} else {
			m.fmtp[uint8(n)] = strings.TrimSpace(rest)
		}
	case "rtcp":
		f := strings.Fields(value)
		if len(f) == 0 {
			return nil
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n <= 0 || n > 65535 {
			return nil
		}
		m.rtcpPort = n
		if len(f) == 4 {
			if ip, err := netip.ParseAddr(f[3]); err == nil {
				m.rtcpAddr = ip
			}
		}
	case "rtcp-mux":
		m.mux = true
	case "crypto":
		m.crypto = true
	case "ptime":
		if n, err := strconv.Atoi(strings.TrimSpace(value)); err == nil && n > 0 && n <= 200 {
			m.ptime = n
		}
	}
	return nil
}

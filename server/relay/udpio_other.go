//go:build !linux || 386

package relay

import (
	"net"
	"net/netip"
)

// rawUDP is Linux only (but 32-bit x86); elsewhere newRawUDP returns nil and the sockets'
// own methods are used.
type rawUDP struct{}

func newRawUDP(*net.UDPConn) *rawUDP { return nil }

func (*rawUDP) readFrom([]byte) (int, netip.AddrPort, error) { panic("relay: rawUDP is Linux only") }

func (*rawUDP) writeTo([]byte, *net.UDPAddr) (int, error) { panic("relay: rawUDP is Linux only") }

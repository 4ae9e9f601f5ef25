//go:build !linux || 386

package udpraw

import (
	"net"
	"net/netip"
)

// Conn is Linux only (but 32-bit x86); elsewhere New returns nil and the sockets'
// own methods are used.
type Conn struct{}

// New returns nil: use the socket's own methods.
func New(*net.UDPConn) *Conn { return nil }

// ReadFrom is not reached (New returned nil).
func (*Conn) ReadFrom([]byte) (int, netip.AddrPort, error) { panic("udpraw: Conn is Linux only") }

// WriteTo is not reached (New returned nil).
func (*Conn) WriteTo([]byte, *net.UDPAddr) (int, error) { panic("udpraw: Conn is Linux only") }

// WriteToAddrPort is not reached (New returned nil).
func (*Conn) WriteToAddrPort([]byte, netip.AddrPort) (int, error) {
	panic("udpraw: Conn is Linux only")
}

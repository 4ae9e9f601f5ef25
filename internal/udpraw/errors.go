package udpraw

import "errors"

// errSockaddr: the kernel returned a source address of a family other
// than IPv4 or IPv6 (cannot happen on a UDP socket).
var errSockaddr = errors.New("recvfrom: unexpected address family")

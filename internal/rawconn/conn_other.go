//go:build !linux || 386

package rawconn

import "net"

// Wrap returns c: raw system calls are used on Linux only (doc.go).
func Wrap(c net.Conn) net.Conn { return c }

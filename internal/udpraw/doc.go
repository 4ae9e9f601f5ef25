// Package udpraw reads and writes UDP sockets with raw system calls:
// recvmmsg(2) batches on the read side, sendto(2) on the write side, both
// through the socket's syscall.RawConn so that the runtime's network
// poller, deadlines and Close still apply. The TURN relay and the media
// bridge move every media packet through such sockets; on one busy core the
// blocking-syscall bookkeeping of net.UDPConn costs more than the relaying
// (see Conn).
//
// It works on Linux but 32-bit x86 (which has no SYS_RECVFROM and
// SYS_SENDTO); elsewhere New returns nil and callers use the socket's own
// methods.
package udpraw

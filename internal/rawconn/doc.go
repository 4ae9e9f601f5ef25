// Package rawconn reads and writes a stream socket (the TCP connection
// under an overlay link) with raw read(2) and send(2) system calls,
// through the socket's syscall.RawConn, so that the runtime's network
// poller, deadlines and Close still apply.
//
// Why: the socket is non-blocking, so the calls never block, but
// net.TCPConn makes them as blocking system calls (entersyscall and
// exitsyscall around each). A write to a loopback or LAN peer runs the
// kernel's whole transmit path, often more than the 20 µs after which the
// runtime's sysmon thread takes the P of a goroutine "in a system call"
// and hands it to another thread. On a peer with one busy core that costs
// two thread switches per SIP message and keeps sysmon polling every
// 20 µs (bench/README.md, "Raw system calls under the overlay's TCP"); the
// same reason made the TURN relay use internal/udpraw.
//
// It works on Linux but 32-bit x86 (no SYS_SENDTO there); elsewhere Wrap
// returns the connection unchanged.
package rawconn

//go:build !386

package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write are raw system calls on the
// socket of the connection it wraps; everything else (addresses,
// deadlines, Close) is the wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// One preallocated system call per direction (no closure per call).
	// The locks keep concurrent Reads (or Writes) from sharing one op;
	// the poller's own locks serialize them anyway.
	rmu sync.Mutex
	rd  op
	wmu sync.Mutex
	wr  op
}

// op is one call's buffer and results; its methods are bound once so
// that RawConn.Read and Write get a func value without an allocation.
type op struct {
	p     []byte
	n     int
	errno syscall.Errno
	read  func(fd uintptr) bool
	write func(fd uintptr) bool
}

// Wrap returns c reading and writing through raw system calls when c is
// a stream socket (it has a SyscallConn and SO_TYPE SOCK_STREAM), else c.
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	typ := -1
	if err := rc.Control(func(fd uintptr) {
		typ, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil || typ != syscall.SOCK_STREAM {
		return c
	}
	r := &Conn{Conn: c, rc: rc}
	r.rd.read = r.rd.doRead
	r.wr.write = r.wr.doWrite
	return r
}

func (o *op) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(o.p))), uintptr(len(o.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller
		}
		o.n, o.errno = int(n), e
		return true
	}
}

// doWrite sends all of o.p, resuming after partial writes; MSG_NOSIGNAL:
// a peer that closed gives EPIPE, not a SIGPIPE.
func (o *op) doWrite(fd uintptr) bool {
	for o.n < len(o.p) {
		rest := o.p[o.n:]
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			o.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until the socket is writable
		default:
			o.errno = e
			return true
		}
	}
	return true
}

// Read is net.Conn's Read: io.EOF at the end of the stream.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	o := &c.rd
	o.p, o.n, o.errno = p, 0, 0
	err := c.rc.Read(o.read)
	o.p = nil // do not keep the caller's buffer alive
	n, errno := o.n, o.errno
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write is net.Conn's Write: all of p, or an error.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	o := &c.wr
	o.p, o.n, o.errno = p, 0, 0
	err := c.rc.Write(o.write)
	o.p = nil
	n, errno := o.n, o.errno
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError makes err what net.TCPConn returns: a *net.OpError, so that
// callers' Timeout() and errors.Is(err, net.ErrClosed) checks hold.
func (c *Conn) opError(op string, err error) error {
	if ne, ok := err.(*net.OpError); ok { // RawConn's own "raw-read" or "raw-write"
		err = ne.Err
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

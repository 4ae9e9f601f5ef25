//go:build !386

// 32-bit x86 Linux has no SYS_RECVFROM/SYS_SENDTO (socketcall): it uses the
// portable path of udpio_other.go.

package udpraw

import (
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Batched reads: one recvmmsg(2) fetches every datagram queued on a socket
// (up to recvBatchSize), and the reads after it are served from memory
// without a system call. On the VM this was measured on, entering and
// leaving the kernel cost about half of a small datagram's recvfrom, and
// datagrams do queue: every client sends to the one listening socket, and a relayed
// socket gets its peer's packets in bursts (a client's media is paced by
// a timer; an echo peer sends back what arrived together).
//
// A socket holds a batch only between the recvmmsg that fills it and the
// one that finds the socket empty: then the batch goes back to a pool
// before the goroutine waits for the poller. So thousands of idle relayed
// sockets hold no buffers, and busy ones share a few.

const (
	// recvBatchSize is the most datagrams one recvmmsg returns. recvmmsg
	// returns what is queued (the socket is non-blocking), so a large
	// batch costs nothing when few are.
	recvBatchSize = 32
	// minBatchSlot is the smallest per-datagram buffer of a batch (pion
	// reads with 1600 bytes); a read with a larger buffer grows the
	// slots of an empty batch.
	minBatchSlot = 2048
	// maxBatchSlot: a read with a larger buffer is one recvfrom into it
	// (once no datagram is pending), rather than growing every slot.
	maxBatchSlot = 16 << 10
)

// mmsghdr is struct mmsghdr of <sys/socket.h>: a msghdr and the length
// the kernel received into it (Go pads it as C does).
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

// recvBatch holds the datagrams of one recvmmsg until they are read.
type recvBatch struct {
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrAny
	buf   []byte // slot bytes per datagram
	slot  int
	n     int // datagrams in the batch
	next  int // the next one to read
}

var recvBatches = sync.Pool{New: func() any { return newRecvBatch(recvBatchSize) }}

func newRecvBatch(size int) *recvBatch {
	b := &recvBatch{
		hdrs:  make([]mmsghdr, size),
		iovs:  make([]syscall.Iovec, size),
		names: make([]syscall.RawSockaddrAny, size),
	}
	for i := range b.hdrs {
		h := &b.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = syscall.SizeofSockaddrAny
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
	}
	b.resize(minBatchSlot)
	return b
}

// empty reports whether b (nil: none held) has no datagram left.
func (b *recvBatch) empty() bool { return b == nil || b.next >= b.n }

// resize gives every datagram slot bytes; only when the batch is empty.
func (b *recvBatch) resize(slot int) {
	b.slot = slot
	b.buf = make([]byte, slot*len(b.hdrs))
	for i := range b.iovs {
		b.iovs[i].Base = &b.buf[i*slot]
		b.iovs[i].SetLen(slot)
	}
}

// recvmmsg refills the empty b from fd; errno EAGAIN: nothing queued.
func (b *recvBatch) recvmmsg(fd uintptr) syscall.Errno {
	// The kernel rewrote the name lengths of the datagrams it returned.
	for i := range b.n {
		b.hdrs[i].hdr.Namelen = syscall.SizeofSockaddrAny
	}
	b.n, b.next = 0, 0
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b.hdrs))), uintptr(len(b.hdrs)),
			syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e == 0 && n == 0:
			return syscall.EAGAIN // cannot happen with vlen > 0; never report an empty batch as read
		case e == 0:
			b.n = int(n)
		}
		return e
	}
}

// doRecv is the RawConn.Read callback of batched reads. RawConn.Read
// checks Close and the read deadline before it, as for any read, so a
// datagram in the batch is not handed out past either (net.UDPConn leaves
// them queued in the kernel then, too). It takes a batch if the socket
// holds none, refills an empty one, or, when nothing is queued, gives the
// batch back and asks the poller to wait.
func (r *Conn) doRecv(fd uintptr) bool {
	if !r.batch.empty() {
		return true
	}
	b := r.batch
	if b == nil {
		b = recvBatches.Get().(*recvBatch)
		r.batch = b
	}
	if b.slot < r.want {
		b.resize(r.want)
	}
	switch e := b.recvmmsg(fd); e {
	case 0:
		return true
	case syscall.EAGAIN:
		r.dropBatch()
		return false // wait for the poller
	default:
		r.errno = e
		return true
	}
}

// dropBatch gives an empty batch back to the pool.
func (r *Conn) dropBatch() {
	if b := r.batch; b != nil && b.empty() {
		r.batch = nil
		recvBatches.Put(b)
	}
}

// readBatched is ReadFrom through a batch; r.rmu is held and is unlocked
// here.
//
// Truncation is recvfrom's: a datagram longer than its slot is cut to the
// slot (the kernel flags it MSG_TRUNC and reports the slot's length), and
// copying it to p cuts it to len(p) ≤ slot, so the caller gets
// min(datagram, len(p)) bytes either way. (Only a read with a larger p than
// the one that filled the batch could get a shorter datagram than
// recvfrom would give it; pion reads each socket with one buffer.)
func (r *Conn) readBatched(p []byte) (int, netip.AddrPort, error) {
	r.want = max(len(p), minBatchSlot)
	if err := r.rc.Read(r.recv); err != nil {
		r.dropBatch() // a closed socket keeps no buffers
		r.rmu.Unlock()
		return 0, netip.AddrPort{}, r.opError("read", nil, err)
	}
	if errno := r.errno; errno != 0 {
		r.errno = 0
		r.rmu.Unlock()
		return 0, netip.AddrPort{}, r.opError("read", nil, os.NewSyscallError("recvmmsg", errno))
	}
	b := r.batch
	i := b.next
	b.next++
	off := i * b.slot
	n := copy(p, b.buf[off:off+int(b.hdrs[i].len)])
	ap, ok := sockaddrAddrPort(&b.names[i])
	r.rmu.Unlock()
	if !ok {
		return 0, netip.AddrPort{}, r.opError("read", nil, errSockaddr)
	}
	return n, ap, nil
}

// Package locap reads the UDP packets on the loopback interface with the
// kernel's timestamps, for the peer benchmark's measuring tools (siprtt,
// hopsplit): an AF_PACKET socket with a BPF filter and SO_TIMESTAMPNS.
//
// Loopback shows each packet twice, once sent and once received; only the
// received copy is passed on. Its timestamp is taken when the sender's
// write queued it (net.core.netdev_tstamp_prequeue), so it is the time the
// packet left the sender, whatever happens on the receiver's core after.
//
// Linux only; needs CAP_NET_RAW.
package locap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Packet is one UDP datagram seen on lo.
type Packet struct {
	At           int64 // kernel timestamp, Unix ns
	Src, Dst     net.IP
	Sport, Dport int
	Payload      []byte // valid until the next Read
}

// Conn is an open capture.
type Conn struct {
	fd       int
	buf, oob []byte
}

// Open captures the UDP packets from or to ip on lo, or all UDP packets
// on lo if ip is nil. Read returns ErrTimeout after 200 ms without one.
func Open(ip net.IP) (*Conn, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	proto := htons(syscall.ETH_P_IP)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(proto))
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	// Cooked (SOCK_DGRAM) packets start at the IP header.
	filter := []syscall.SockFilter{
		{Code: 0x30, K: 9},         // ldb [9]        protocol
		{Code: 0x15, Jf: 1, K: 17}, // jeq #17        else drop
		{Code: 0x06, K: 0x40000},   // ret #262144    accept
		{Code: 0x06, K: 0},         // ret #0         drop
	}
	if ip4 := ip.To4(); ip4 != nil {
		a := uint32(ip4[0])<<24 | uint32(ip4[1])<<16 | uint32(ip4[2])<<8 | uint32(ip4[3])
		filter = []syscall.SockFilter{
			{Code: 0x30, K: 9},         // ldb [9]        protocol
			{Code: 0x15, Jf: 5, K: 17}, // jeq #17        else drop
			{Code: 0x20, K: 12},        // ld [12]        source
			{Code: 0x15, Jt: 2, K: a},  // jeq ip         accept
			{Code: 0x20, K: 16},        // ld [16]        destination
			{Code: 0x15, Jf: 1, K: a},  // jeq ip         else drop
			{Code: 0x06, K: 0x40000},   // ret #262144    accept
			{Code: 0x06, K: 0},         // ret #0         drop
		}
	}
	//lint:ignore SA1019 one fixed filter does not need golang.org/x/net/bpf
	if err := syscall.AttachLsf(fd, filter); err != nil {
		return nil, fmt.Errorf("attach filter: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: lo.Index}); err != nil {
		return nil, fmt.Errorf("bind lo: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20); err != nil {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<20)
	}
	tv := syscall.Timeval{Sec: 0, Usec: 200000}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	return &Conn{fd: fd, buf: make([]byte, 1<<16), oob: make([]byte, 256)}, nil
}

// ErrTimeout: no packet within the receive timeout.
var ErrTimeout = errors.New("locap: no packet")

// Read returns the next UDP packet received on lo.
func (c *Conn) Read() (Packet, error) {
	for {
		n, oobn, _, from, err := syscall.Recvmsg(c.fd, c.buf, c.oob, 0)
		if err != nil {
			if err == syscall.EAGAIN || err == syscall.EINTR {
				return Packet{}, ErrTimeout
			}
			return Packet{}, fmt.Errorf("recvmsg: %w", err)
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue // keep the receive side
		}
		p := c.buf[:n]
		if len(p) < 28 || p[9] != 17 {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 {
			continue
		}
		at := stamp(c.oob[:oobn])
		if at == 0 {
			at = time.Now().UnixNano()
		}
		return Packet{At: at, Src: p[12:16], Dst: p[16:20],
			Sport: int(p[ihl])<<8 | int(p[ihl+1]), Dport: int(p[ihl+2])<<8 | int(p[ihl+3]),
			Payload: p[ihl+8:]}, nil
	}
}

// Drops is the number of packets the kernel dropped for the capture
// (PACKET_STATISTICS; x/sys goes through socketcall where the
// architecture has no getsockopt system call, as on 386).
func (c *Conn) Drops() uint32 {
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return st.Drops
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// stamp is the SO_TIMESTAMPNS time of a packet in ns, 0 if absent.
func stamp(oob []byte) int64 {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&m.Data[0]))
			return ts.Nano()
		}
	}
	return 0
}

// Header returns the value of the first header named long or short (case
// insensitive) in a SIP message.
func Header(msg []byte, long, short string) string {
	for len(msg) > 0 {
		line, rest, _ := bytes.Cut(msg, []byte("\r\n"))
		if len(line) == 0 {
			return "" // end of headers
		}
		msg = rest
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte(long)) || (short != "" && bytes.EqualFold(name, []byte(short))) {
			return string(bytes.TrimSpace(val))
		}
	}
	return ""
}

// StartLine is the first line of a SIP message.
func StartLine(msg []byte) []byte {
	line, _, _ := bytes.Cut(msg, []byte("\r\n"))
	return line
}

// Is200ToInvite reports whether msg is a 200 response to an INVITE.
func Is200ToInvite(msg []byte) bool {
	return bytes.HasPrefix(StartLine(msg), []byte("SIP/2.0 200")) && bytes.Contains([]byte(Header(msg, "cseq", "")), []byte("INVITE"))
}

// Capture opens a capture of ip (nil: all UDP on lo), tells stderr
// "<name>: capturing" (the benchmark script waits for that line), and
// hands every packet to f until SIGINT or SIGTERM, or until d has passed
// if d > 0. It returns the packets the kernel dropped for it.
func Capture(name string, ip net.IP, d time.Duration, f func(Packet)) (drops uint32, err error) {
	c, err := Open(ip)
	if err != nil {
		return 0, err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	fmt.Fprintln(os.Stderr, name+": capturing")
	for {
		select {
		case <-stop:
			return c.Drops(), nil
		default:
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return c.Drops(), nil
		}
		p, err := c.Read()
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			return c.Drops(), err
		}
		f(p)
	}
}

// Pct is the nearest-rank percentile p of sorted values, "-" if none.
func Pct(v []int64, p int) string {
	if len(v) == 0 {
		return "-"
	}
	return strconv.FormatInt(v[max(1, (len(v)*p+99)/100)-1], 10)
}

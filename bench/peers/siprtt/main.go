// Command siprtt measures a sipp UAC's INVITE response times from the
// kernel's packet timestamps, in microseconds.
//
// sipp's own response times come from a coarse clock (4 ms steps on the
// benchmark machine), too coarse for a per-hop target of 2 ms. siprtt reads
// every UDP packet to or from the UAC's address on the loopback interface
// (an AF_PACKET socket with a BPF filter and SO_TIMESTAMPNS), notes per
// Call-ID when the first INVITE left the UAC and when the first 180 and the
// first 200 (CSeq INVITE) reached it, and on SIGINT/SIGTERM (or after -for)
// prints one line:
//
//	calls=N with180=N with200=N p50_180=µs p99_180=µs p50_200=µs p99_200=µs max_200=µs drops=N first=<unix s>
//
// (first: when the first INVITE left; the times in -csv count from it).
//
// Linux only; needs CAP_NET_RAW. Used by bench/peers/run.sh.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type call struct {
	invite, r180, r200 int64 // ns, 0: not seen
}

func main() {
	ipFlag := flag.String("ip", "", "the UAC's IPv4 address (required)")
	port := flag.Int("port", 5080, "the UAC's UDP port")
	dur := flag.Duration("for", 0, "stop after this long (0: at SIGINT or SIGTERM)")
	skip := flag.Duration("skip", time.Second, "leave out calls whose INVITE left within this long of the first INVITE (warm-up)")
	csvPath := flag.String("csv", "", "also write one line per call here: INVITE time (s since the first), INVITE->180 and INVITE->200 (us, -1: none), Call-ID")
	flag.Parse()
	ip := net.ParseIP(*ipFlag).To4()
	if ip == nil {
		fmt.Fprintln(os.Stderr, "siprtt: -ip must be an IPv4 address")
		os.Exit(2)
	}
	fd, err := open(ip)
	if err != nil {
		fmt.Fprintln(os.Stderr, "siprtt:", err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	var deadline time.Time
	if *dur > 0 {
		deadline = time.Now().Add(*dur)
	}
	fmt.Fprintln(os.Stderr, "siprtt: capturing")

	calls := map[string]*call{}
	buf := make([]byte, 1<<16)
	oob := make([]byte, 256)
	var first int64
	for {
		select {
		case <-stop:
			report(calls, first, skip.Nanoseconds(), fd, *csvPath)
			return
		default:
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			report(calls, first, skip.Nanoseconds(), fd, *csvPath)
			return
		}
		n, oobn, _, from, err := syscall.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, "siprtt: recvmsg:", err)
			os.Exit(1)
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue // loopback shows each packet twice: keep the receive side
		}
		ts := stamp(oob[:oobn])
		if ts == 0 {
			ts = time.Now().UnixNano()
		}
		p := buf[:n]
		if len(p) < 28 || p[9] != 17 {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 {
			continue
		}
		src, dst := p[12:16], p[16:20]
		sport := int(p[ihl])<<8 | int(p[ihl+1])
		dport := int(p[ihl+2])<<8 | int(p[ihl+3])
		payload := p[ihl+8:]
		out := bytes.Equal(src, ip) && sport == *port
		in := bytes.Equal(dst, ip) && dport == *port
		if !out && !in {
			continue
		}
		line, _, _ := bytes.Cut(payload, []byte("\r\n"))
		id := header(payload, "call-id", "i")
		if id == "" {
			continue
		}
		switch {
		case out && bytes.HasPrefix(line, []byte("INVITE ")):
			c := calls[id]
			if c == nil {
				c = &call{}
				calls[id] = c
			}
			if c.invite == 0 {
				c.invite = ts
				if first == 0 {
					first = ts
				}
			}
		case in && bytes.HasPrefix(line, []byte("SIP/2.0 180")):
			if c := calls[id]; c != nil && c.r180 == 0 {
				c.r180 = ts
			}
		case in && bytes.HasPrefix(line, []byte("SIP/2.0 200")):
			if c := calls[id]; c != nil && c.r200 == 0 && bytes.Contains([]byte(header(payload, "cseq", "")), []byte("INVITE")) {
				c.r200 = ts
			}
		}
	}
}

// open returns an AF_PACKET socket on lo that passes only UDP packets from
// or to ip, with kernel receive timestamps and a 1 s receive timeout.
func open(ip net.IP) (int, error) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return -1, err
	}
	proto := htons(syscall.ETH_P_IP)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(proto))
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	a := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	// Cooked (SOCK_DGRAM) packets start at the IP header.
	filter := []syscall.SockFilter{
		{Code: 0x30, K: 9},         // ldb [9]        protocol
		{Code: 0x15, Jf: 5, K: 17}, // jeq #17        else drop
		{Code: 0x20, K: 12},        // ld [12]        source
		{Code: 0x15, Jt: 2, K: a},  // jeq ip         accept
		{Code: 0x20, K: 16},        // ld [16]        destination
		{Code: 0x15, Jf: 1, K: a},  // jeq ip         else drop
		{Code: 0x06, K: 0x40000},   // ret #262144    accept
		{Code: 0x06, K: 0},         // ret #0         drop
	}
	//lint:ignore SA1019 one fixed filter does not need golang.org/x/net/bpf
	if err := syscall.AttachLsf(fd, filter); err != nil {
		return -1, fmt.Errorf("attach filter: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: lo.Index}); err != nil {
		return -1, fmt.Errorf("bind lo: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return -1, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20); err != nil {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<20)
	}
	tv := syscall.Timeval{Sec: 0, Usec: 200000}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return -1, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	return fd, nil
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

// header returns the value of the first header named long or short (case
// insensitive) in a SIP message.
func header(msg []byte, long, short string) string {
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

func report(calls map[string]*call, first, skip int64, fd int, csvPath string) {
	var d180, d200 []int64
	type row struct {
		t    int64
		line string
	}
	var rows []row
	n := 0
	for id, c := range calls {
		if c.invite == 0 || c.invite < first+skip {
			continue
		}
		n++
		r180, r200 := int64(-1), int64(-1)
		if c.r180 > c.invite {
			r180 = (c.r180 - c.invite) / 1000
			d180 = append(d180, r180)
		}
		if c.r200 > c.invite {
			r200 = (c.r200 - c.invite) / 1000
			d200 = append(d200, r200)
		}
		if csvPath != "" {
			rows = append(rows, row{c.invite, fmt.Sprintf("%.6f,%d,%d,%s", float64(c.invite-first)/1e9, r180, r200, id)})
		}
	}
	if csvPath != "" {
		slices.SortFunc(rows, func(a, b row) int { return int(a.t - b.t) })
		var b strings.Builder
		b.WriteString("t_s,invite_180_us,invite_200_us,call_id\n")
		for _, r := range rows {
			b.WriteString(r.line + "\n")
		}
		if err := os.WriteFile(csvPath, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "siprtt:", err)
		}
	}
	slices.Sort(d180)
	slices.Sort(d200)
	fmt.Printf("calls=%d with180=%d with200=%d p50_180=%s p99_180=%s p50_200=%s p99_200=%s max_200=%s drops=%d first=%.6f\n",
		n, len(d180), len(d200), pct(d180, 50), pct(d180, 99), pct(d200, 50), pct(d200, 99), pct(d200, 100), drops(fd), float64(first)/1e9)
}

// pct is the nearest-rank percentile of sorted values, "-" if none.
func pct(v []int64, p int) string {
	if len(v) == 0 {
		return "-"
	}
	i := (len(v)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return fmt.Sprint(v[i-1])
}

// drops is the number of packets the kernel dropped for the socket
// (PACKET_STATISTICS; x/sys goes through socketcall where the architecture
// has no getsockopt system call, as on 386).
func drops(fd int) uint32 {
	st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0
	}
	return st.Drops
}

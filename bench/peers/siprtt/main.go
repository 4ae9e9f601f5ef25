// Command siprtt measures a sipp UAC's INVITE response times from the
// kernel's packet timestamps, in microseconds.
//
// sipp's own response times come from a coarse clock (4 ms steps on the
// benchmark machine), too coarse for a per-hop target of 2 ms. siprtt reads
// every UDP packet to or from the UAC's address on the loopback interface
// (an AF_PACKET socket with a BPF filter and SO_TIMESTAMPNS), notes per
// Call-ID when the first INVITE left the UAC and when the first 180 and the
// first 200 (CSeq INVITE) reached it (see package locap for the capture), and on SIGINT/SIGTERM (or after -for)
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
	"slices"
	"strings"
	"time"

	"github.com/p2psip/p2psip/bench/peers/internal/locap"
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
	calls := map[string]*call{}
	var first int64
	drops, err := locap.Capture("siprtt", ip, *dur, func(pkt locap.Packet) {
		out := pkt.Src.Equal(ip) && pkt.Sport == *port
		in := pkt.Dst.Equal(ip) && pkt.Dport == *port
		if !out && !in {
			return
		}
		id := locap.Header(pkt.Payload, "call-id", "i")
		if id == "" {
			return
		}
		line := locap.StartLine(pkt.Payload)
		switch {
		case out && bytes.HasPrefix(line, []byte("INVITE ")):
			c := calls[id]
			if c == nil {
				c = &call{}
				calls[id] = c
			}
			if c.invite == 0 {
				c.invite = pkt.At
				if first == 0 {
					first = pkt.At
				}
			}
		case in && bytes.HasPrefix(line, []byte("SIP/2.0 180")):
			if c := calls[id]; c != nil && c.r180 == 0 {
				c.r180 = pkt.At
			}
		case in && locap.Is200ToInvite(pkt.Payload):
			if c := calls[id]; c != nil && c.r200 == 0 {
				c.r200 = pkt.At
			}
		}
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "siprtt:", err)
		os.Exit(1)
	}
	report(calls, first, skip.Nanoseconds(), drops, *csvPath)
}

func report(calls map[string]*call, first, skip int64, drops uint32, csvPath string) {
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
		n, len(d180), len(d200), locap.Pct(d180, 50), locap.Pct(d180, 99), locap.Pct(d200, 50), locap.Pct(d200, 99), locap.Pct(d200, 100), drops, float64(first)/1e9)
}

// Command hopsplit splits each call's INVITE -> 200 time in the peer
// benchmark into the peers' time and the UAS's time, from the kernel's
// packet timestamps on lo (see package locap).
//
// Per Call-ID it notes when the first INVITE left the UAC (t0) and
// reached a UAS (t1), and when the UAS's first 200 to it left (t2) and
// reached the UAC (t3): fwd = t1-t0 is the peers on the way in, uas =
// t2-t1 the UAS, back = t3-t2 the peers on the way out. On SIGINT or
// SIGTERM it prints one line (µs; the first second is left out, as in
// siprtt):
//
//	calls=N peers_p50=µs peers_p99=µs fwd_p99=µs uas_p50=µs uas_p99=µs back_p99=µs
//
// and with -csv writes one line per call. A call's peers time leaves the
// UAS out, which siprtt's INVITE -> 200 cannot: it tells a hop's own
// tail from a UAS that shares the hop's core. The capture takes every
// UDP packet on lo, so it costs more than siprtt's; bench/peers/run.sh
// runs it only with SPLIT=1. Linux only; needs CAP_NET_RAW.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/p2psip/p2psip/bench/peers/internal/locap"
)

type call struct {
	t0, t1, t2, t3 int64
	uas            string
}

type endpoint struct {
	ip   net.IP
	port int
	name string
}

func main() {
	uacFlag := flag.String("uac", "127.0.0.55:5080", "the UAC's address")
	uasFlag := flag.String("uas", "127.0.0.53:5070,127.0.0.54:5070", "the UASes' addresses, comma-separated")
	csvPath := flag.String("csv", "", "also write one line per call here")
	flag.Parse()
	uac, err := parse(*uacFlag)
	var uases []endpoint
	for _, a := range strings.Split(*uasFlag, ",") {
		e, perr := parse(a)
		err = errors.Join(err, perr)
		uases = append(uases, e)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hopsplit:", err)
		os.Exit(2)
	}
	calls := map[string]*call{}
	if _, err := locap.Capture("hopsplit", nil, 0, func(p locap.Packet) { note(calls, p, uac, uases) }); err != nil {
		fmt.Fprintln(os.Stderr, "hopsplit:", err)
		os.Exit(1)
	}
	report(calls, *csvPath)
}

func parse(addr string) (endpoint, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return endpoint{}, err
	}
	port, err := strconv.Atoi(p)
	ip := net.ParseIP(h).To4()
	if err != nil || ip == nil {
		return endpoint{}, fmt.Errorf("%q: want IPv4:port", addr)
	}
	return endpoint{ip, port, addr}, nil
}

func (e endpoint) from(p locap.Packet) bool { return p.Src.Equal(e.ip) && p.Sport == e.port }
func (e endpoint) to(p locap.Packet) bool   { return p.Dst.Equal(e.ip) && p.Dport == e.port }

// note records what pkt tells about its call.
func note(calls map[string]*call, pkt locap.Packet, uac endpoint, uases []endpoint) {
	id := locap.Header(pkt.Payload, "call-id", "i")
	if id == "" {
		return
	}
	invite := bytes.HasPrefix(locap.StartLine(pkt.Payload), []byte("INVITE "))
	c := calls[id]
	if c == nil {
		if invite && uac.from(pkt) {
			calls[id] = &call{t0: pkt.At}
		}
		return
	}
	ok200 := locap.Is200ToInvite(pkt.Payload)
	if ok200 && uac.to(pkt) && c.t3 == 0 {
		c.t3 = pkt.At
	}
	for _, u := range uases {
		if invite && u.to(pkt) && c.t1 == 0 {
			c.t1, c.uas = pkt.At, u.name
		}
		if ok200 && u.from(pkt) && c.t2 == 0 {
			c.t2 = pkt.At
		}
	}
}

func report(calls map[string]*call, csvPath string) {
	var first int64
	for _, c := range calls {
		if first == 0 || c.t0 < first {
			first = c.t0
		}
	}
	var peers, fwd, uas, back []int64
	var b strings.Builder
	b.WriteString("t0_s,uas,fwd_us,uas_us,back_us,call_id\n")
	for id, c := range calls {
		if c.t1 == 0 || c.t2 < c.t1 || c.t3 < c.t2 || c.t0 < first+1e9 {
			continue
		}
		f, u, k := (c.t1-c.t0)/1000, (c.t2-c.t1)/1000, (c.t3-c.t2)/1000
		peers, fwd, uas, back = append(peers, f+k), append(fwd, f), append(uas, u), append(back, k)
		fmt.Fprintf(&b, "%.6f,%s,%d,%d,%d,%s\n", float64(c.t0-first)/1e9, c.uas, f, u, k, id)
	}
	if csvPath != "" {
		if err := os.WriteFile(csvPath, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "hopsplit:", err)
		}
	}
	for _, v := range [][]int64{peers, fwd, uas, back} {
		slices.Sort(v)
	}
	fmt.Printf("calls=%d peers_p50=%s peers_p99=%s fwd_p99=%s uas_p50=%s uas_p99=%s back_p99=%s\n",
		len(peers), locap.Pct(peers, 50), locap.Pct(peers, 99), locap.Pct(fwd, 99), locap.Pct(uas, 50), locap.Pct(uas, 99), locap.Pct(back, 99))
}

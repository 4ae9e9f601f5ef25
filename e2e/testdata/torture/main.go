// Command torture sends SIP torture messages (RFC 4475 *.dat files) to one SIP
// element and reports, as one JSON object per line, what came back and whether
// the element still answered an OPTIONS afterwards. It judges nothing: the e2e
// test (rfc4475_test.go) holds the expectations.
//
// Run it only where the messages' addresses cannot leave the machine (a network
// namespace whose only interface is lo): the element answers to Via addresses
// such as 192.0.2.x and may forward to others.
//
// Over UDP each message is sent from 127.0.0.1 at the port of its top Via's
// sent-by (default 5060), since an element without rport support answers there
// (RFC 3261 §18.2.2: received = the source address, port from sent-by). Over TCP
// each message gets a fresh connection.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type result struct {
	Name      string   `json:"name"`
	Transport string   `json:"transport"`
	From      string   `json:"from,omitempty"`   // local address sent from
	Replies   []string `json:"replies"`          // status lines of responses for this message, in order
	First     string   `json:"first,omitempty"`  // the first final response, capped
	Stray     []string `json:"stray,omitempty"`  // other datagrams/messages that arrived
	Closed    bool     `json:"closed,omitempty"` // TCP: the element closed the connection
	Err       string   `json:"err,omitempty"`    // sending failed
	Alive     string   `json:"alive"`            // status line of the OPTIONS answer after it, "" = none
	AliveMS   int64    `json:"alive_ms"`         // how long that answer took
	AliveErr  string   `json:"alive_err,omitempty"`
}

var (
	target  = flag.String("target", "127.0.0.1:5090", "SIP element address (UDP and TCP)")
	dir     = flag.String("dir", "", "directory of *.dat messages")
	only    = flag.String("only", "", "comma-separated message names (default all)")
	trans   = flag.String("transport", "udp,tcp", "transports to use, comma-separated")
	wait    = flag.Duration("wait", 2*time.Second, "how long to wait for replies to a message")
	aliveTO = flag.Duration("alive", 2*time.Second, "how long the element may take to answer the OPTIONS after each message")
)

func main() {
	flag.Parse()
	files, err := filepath.Glob(filepath.Join(*dir, "*.dat"))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "torture: no *.dat in %q (%v)\n", *dir, err)
		os.Exit(2)
	}
	sort.Strings(files)
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	enc := json.NewEncoder(os.Stdout)
	for _, tr := range strings.Split(*trans, ",") {
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".dat")
			if len(want) > 0 && !want[name] {
				continue
			}
			msg, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "torture:", err)
				os.Exit(2)
			}
			r := result{Name: name, Transport: tr, Replies: []string{}}
			switch tr {
			case "udp":
				sendUDP(&r, msg)
			case "tcp":
				sendTCP(&r, msg)
			default:
				fmt.Fprintln(os.Stderr, "torture: unknown transport", tr)
				os.Exit(2)
			}
			alive(&r)
			_ = enc.Encode(r)
		}
	}
}

// headerPart is the message up to the first blank line.
func headerPart(msg []byte) string {
	s := string(msg)
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		return s[:i]
	}
	if i := strings.Index(s, "\n\n"); i >= 0 {
		return s[:i]
	}
	return s
}

var (
	viaRE    = regexp.MustCompile(`(?im)^(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*[0-9.]+[ \t]*/[ \t]*[A-Za-z]+[ \t]+([^;,\s]+)`)
	callIDRE = regexp.MustCompile(`(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)`)
)

// viaPort is the port of the top Via's sent-by (5060 when absent).
func viaPort(msg []byte) int {
	m := viaRE.FindStringSubmatch(headerPart(msg))
	if m == nil {
		return 5060
	}
	host := m[1]
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		if p, err := strconv.Atoi(host[i+1:]); err == nil && p > 0 && p < 65536 {
			return p
		}
	}
	return 5060
}

// callIDs are the Call-ID values in a message's header.
func callIDs(msg []byte) map[string]bool {
	ids := map[string]bool{}
	for _, m := range callIDRE.FindAllStringSubmatch(headerPart(msg), -1) {
		ids[m[1]] = true
	}
	return ids
}

func statusLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r")
}

func statusCode(line string) int {
	f := strings.Fields(line)
	// Any version: an element may answer a SIP/7.0 request in kind.
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0
	}
	c, _ := strconv.Atoi(f[1])
	return c
}

func capStr(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// record files one received message: a response to this message (its Call-ID
// is one the message carried, or the message had none) or a stray one. It
// reports whether it was a final response to the message.
func record(r *result, ids map[string]bool, b []byte) bool {
	line := statusLine(b)
	code := statusCode(line)
	var cid string
	if m := callIDRE.FindStringSubmatch(headerPart(b)); m != nil {
		cid = m[1]
	}
	if code == 0 || (len(ids) > 0 && !ids[cid]) {
		r.Stray = append(r.Stray, capStr(line, 200))
		return false
	}
	r.Replies = append(r.Replies, capStr(line, 200))
	if code >= 200 && r.First == "" {
		r.First = capStr(string(b), 2000)
		return true
	}
	return false
}

func sendUDP(r *result, msg []byte) {
	ids := callIDs(msg)
	laddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: viaPort(msg)}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		// The Via port is taken (the element itself?): send from any port.
		if conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			r.Err = err.Error()
			return
		}
	}
	defer conn.Close()
	r.From = conn.LocalAddr().String()
	dst, err := net.ResolveUDPAddr("udp", *target)
	if err != nil {
		r.Err = err.Error()
		return
	}
	if _, err := conn.WriteToUDP(msg, dst); err != nil {
		r.Err = err.Error()
		return
	}
	deadline := time.Now().Add(*wait)
	// A message whose top Via says TCP may be answered over a new TCP
	// connection to the Via port (RFC 3261 §18.2.2), so listen there too.
	tcpMsgs := make(chan []byte, 16)
	if ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: conn.LocalAddr().(*net.UDPAddr).Port}); err == nil {
		defer ln.Close()
		_ = ln.SetDeadline(deadline)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(deadline)
					br := bufio.NewReader(c)
					for {
						b, err := readMessage(br)
						if len(bytes.TrimSpace(b)) > 0 {
							select {
							case tcpMsgs <- b:
							default:
							}
						}
						if err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	udpMsgs := make(chan []byte)
	go func() {
		defer close(udpMsgs)
		buf := make([]byte, 65535)
		for {
			_ = conn.SetReadDeadline(deadline)
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return // deadline (or an ICMP error)
			}
			udpMsgs <- append([]byte(nil), buf[:n]...)
		}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	graceSet := false
	for {
		var b []byte
		viaTCP := false
		select {
		case m, ok := <-udpMsgs:
			if !ok {
				udpMsgs = nil
				continue
			}
			b = m
		case m := <-tcpMsgs:
			b, viaTCP = m, true
		case <-timer.C:
			_ = conn.SetReadDeadline(time.Now())
			if udpMsgs != nil {
				for range udpMsgs {
				}
			}
			return
		}
		n := len(r.Replies)
		final := record(r, ids, b)
		if viaTCP && len(r.Replies) > n {
			r.Replies[n] += " [over TCP]"
		}
		if final && !graceSet {
			// A final answer: wait a little for a second one (dblreq carries
			// two requests in one datagram), then stop.
			graceSet = true
			timer.Reset(200 * time.Millisecond)
		}
	}
}

func sendTCP(r *result, msg []byte) {
	ids := callIDs(msg)
	conn, err := net.DialTimeout("tcp", *target, *wait)
	if err != nil {
		r.Err = err.Error()
		return
	}
	defer conn.Close()
	r.From = conn.LocalAddr().String()
	deadline := time.Now().Add(*wait)
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(msg); err != nil {
		r.Err = err.Error()
		return
	}
	// Most corpus messages carry a UDP Via; an element may answer such a
	// request over UDP to the Via port (RFC 3261 §18.2.2 keys the choice on
	// the Via's sent-protocol), so listen there too.
	udpMsgs := make(chan []byte, 16)
	if uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: viaPort(msg)}); err == nil {
		defer uc.Close()
		_ = uc.SetReadDeadline(deadline)
		go func() {
			defer close(udpMsgs)
			buf := make([]byte, 65535)
			for {
				n, _, err := uc.ReadFromUDP(buf)
				if err != nil {
					return
				}
				select {
				case udpMsgs <- append([]byte(nil), buf[:n]...):
				default: // more than 16 datagrams: drop
				}
			}
		}()
	} else {
		close(udpMsgs)
	}
	type streamMsg struct {
		b   []byte
		err error
	}
	tcpMsgs := make(chan streamMsg)
	go func() {
		br := bufio.NewReader(conn)
		for {
			b, err := readMessage(br)
			tcpMsgs <- streamMsg{b, err}
			if err != nil {
				close(tcpMsgs)
				return
			}
		}
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	graceSet := false
	grace := func() {
		if !graceSet {
			graceSet = true
			timer.Reset(200 * time.Millisecond)
		}
	}
	for tcpMsgs != nil || udpMsgs != nil {
		select {
		case m, ok := <-tcpMsgs:
			if !ok {
				tcpMsgs = nil
				continue
			}
			if len(bytes.TrimSpace(m.b)) > 0 && record(r, ids, m.b) {
				grace()
			}
			if m.err != nil {
				var ne net.Error
				if !(errors.As(m.err, &ne) && ne.Timeout()) {
					r.Closed = true
				}
			}
		case b, ok := <-udpMsgs:
			if !ok {
				udpMsgs = nil
				continue
			}
			n := len(r.Replies)
			final := record(r, ids, b)
			if len(r.Replies) > n {
				r.Replies[n] += " [over UDP]"
			}
			if final {
				grace()
			}
		case <-timer.C:
			_ = conn.SetReadDeadline(time.Now()) // ends the reader
			if tcpMsgs == nil {
				return
			}
			for m := range tcpMsgs {
				if len(bytes.TrimSpace(m.b)) > 0 {
					record(r, ids, m.b)
				}
			}
			return
		}
	}
}

// readMessage reads one SIP message from a stream: header lines up to a blank
// line, then Content-Length (or l) bytes.
func readMessage(br *bufio.Reader) ([]byte, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			return head.Bytes(), err
		}
		if strings.TrimRight(line, "\r\n") == "" {
			if strings.TrimSpace(head.String()) == "" {
				head.Reset() // CRLF keep-alives
				continue
			}
			break
		}
	}
	n := 0
	if m := regexp.MustCompile(`(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)`).FindStringSubmatch(head.String()); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	if n > 1<<20 {
		n = 1 << 20
	}
	body := make([]byte, n)
	k, err := io.ReadFull(br, body)
	return append(head.Bytes(), body[:k]...), err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// alive sends OPTIONS for the element itself over UDP and records the answer.
func alive(r *result) {
	start := time.Now()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.AliveErr = err.Error()
		return
	}
	defer conn.Close()
	dst, err := net.ResolveUDPAddr("udp", *target)
	if err != nil {
		r.AliveErr = err.Error()
		return
	}
	local := conn.LocalAddr().String()
	callID := "alive-" + randHex(8)
	req := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:torture@127.0.0.1>;tag=%s\r\n"+
		"To: <sip:%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n", *target, local, randHex(8), randHex(4), *target, callID)
	deadline := start.Add(*aliveTO)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := conn.WriteToUDP([]byte(req), dst); err != nil {
			r.AliveErr = err.Error()
			return
		}
		// Retransmit every 500 ms (timer E) until the deadline.
		_ = conn.SetReadDeadline(minTime(deadline, time.Now().Add(500*time.Millisecond)))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			b := buf[:n]
			m := callIDRE.FindStringSubmatch(headerPart(b))
			if m == nil || m[1] != callID || statusCode(statusLine(b)) < 200 {
				continue
			}
			r.Alive = statusLine(b)
			r.AliveMS = time.Since(start).Milliseconds()
			return
		}
	}
	r.AliveErr = fmt.Sprintf("no final answer to OPTIONS within %s", *aliveTO)
	r.AliveMS = time.Since(start).Milliseconds()
}

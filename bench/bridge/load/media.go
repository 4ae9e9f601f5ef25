package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Every packet a browser sends carries in its first payloadHeader bytes a
// magic, the call's index and a per-call counter (the low 16 bits of which
// are the RTP sequence number); the rest is PCMU silence. The daemons pass
// G.711 payloads through untouched, so the counter comes back with the
// echo.
const (
	magic         = 0x62726467 // "brdg"
	payloadHeader = 12
	payloadSize   = 160 // 20 ms of PCMU
	ring          = 512 // packets of history per call (10 s at 50/s)
	ringMask      = ring - 1
)

// stamp is a time with the sequence number it belongs to, so a stale ring
// slot is never taken for the current packet.
type stamp struct {
	seq atomic.Uint32
	ns  atomic.Int64
}

func (s *stamp) set(seq uint16, ns int64) {
	s.ns.Store(ns)
	s.seq.Store(uint32(seq))
}

func (s *stamp) get(seq uint16) int64 {
	ns := s.ns.Load()
	if s.seq.Load() != uint32(seq) {
		return 0
	}
	return ns
}

// enableTimestamps asks the kernel for receive timestamps (SO_TIMESTAMPNS)
// on c and makes its buffers large.
func enableTimestamps(c *net.UDPConn) error {
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	return serr
}

// rxTime reads the SCM_TIMESTAMPNS control message out of oob (unix ns),
// or returns 0.
func rxTime(oob []byte) int64 {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SO_TIMESTAMPNS && l-hdr >= 16 {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[hdr]))
			return ts.Nano()
		}
		oob = oob[(l+7)&^7:]
	}
	return 0
}

// rtpHeader tells plain or SRTP RTP (not RTCP, STUN or DTLS) by its first
// two bytes and returns the cleartext SSRC and sequence number.
func rtpHeader(b []byte) (ssrc uint32, seq uint16, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint16(b[2:4]), true
}

// rtpPayload is the payload of a plain RTP packet.
func rtpPayload(b []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	h := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < h+4 {
			return nil
		}
		h += 4 + 4*int(binary.BigEndian.Uint16(b[h+2:h+4]))
	}
	if len(b) < h {
		return nil
	}
	return b[h:]
}

// browserConn is a browser's UDP socket (under pion's ICE UDP mux): it
// notes when each browser RTP packet leaves (just before sendmsg, by the
// browser's SSRC) and when each packet from a daemon arrived (the
// kernel's receive timestamp, by the daemon's SSRC). SRTP
// leaves the RTP header in clear, so both can be read here; the payload
// is matched later, after decryption, by SSRC and sequence number.
type browserConn struct {
	*net.UDPConn
	oob [128]byte // the mux reads from one goroutine

	mux io.Closer            // pion's ICE UDP mux on it; closing it closes the socket
	tx  atomic.Pointer[call] // the call, once its SSRC is known

	mu sync.RWMutex
	rx map[uint32]*[ring]stamp // guarded by mu; by the daemon's SSRC
}

func (c *browserConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, oobn, _, addr, err := c.ReadMsgUDPAddrPort(b, c.oob[:])
	if err != nil {
		return n, addr, err
	}
	if ssrc, seq, ok := rtpHeader(b[:n]); ok {
		t := rxTime(c.oob[:oobn])
		c.mu.RLock()
		r := c.rx[ssrc]
		c.mu.RUnlock()
		if r == nil {
			r = new([ring]stamp)
			c.mu.Lock()
			if old := c.rx[ssrc]; old != nil {
				r = old
			} else {
				c.rx[ssrc] = r
			}
			c.mu.Unlock()
		}
		r[seq&ringMask].set(seq, t)
	}
	return n, addr, nil
}

func (c *browserConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if ssrc, seq, ok := rtpHeader(b); ok {
		if cl := c.tx.Load(); cl != nil && cl.ssrc == ssrc {
			cl.sentAt[seq&ringMask].set(seq, time.Now().UnixNano())
		}
	}
	return c.WriteToUDPAddrPort(b, addr)
}

func (c *browserConn) rxStamp(ssrc uint32, seq uint16) int64 {
	c.mu.RLock()
	r := c.rx[ssrc]
	c.mu.RUnlock()
	if r == nil {
		return 0
	}
	return r[seq&ringMask].get(seq)
}

// runPhone is the phone of one call: it echoes every RTP packet back to
// where it came from (symmetric RTP), with its own SSRC, and notes the
// kernel's receive time and the time it sent the echo.
func (lg *loadgen) runPhone(c *call) {
	buf := make([]byte, 1500)
	oob := make([]byte, 128)
	for {
		n, oobn, _, from, err := c.phone.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := buf[:n]
		_, seq, ok := rtpHeader(p)
		if !ok {
			continue // RTCP: a phone would read it; the echo has no use for it
		}
		t2 := rxTime(oob[:oobn])
		pl := rtpPayload(p)
		if len(pl) >= payloadHeader && binary.BigEndian.Uint32(pl) == magic && int(binary.BigEndian.Uint32(pl[4:])) == c.idx {
			if t1 := c.sentAt[seq&ringMask].get(seq); t1 != 0 && t2 != 0 {
				c.up[seq&ringMask].set(seq, t2-t1)
			}
			if n := binary.BigEndian.Uint32(pl[8:]); n >= c.winLo.Load() && n < c.winHi.Load() {
				c.winPhoneRx.Add(1)
			}
		}
		binary.BigEndian.PutUint32(p[8:12], binary.BigEndian.Uint32(p[8:12])^0x5a5a5a5a)
		c.echoAt[seq&ringMask].set(seq, time.Now().UnixNano())
		_, _ = c.phone.WriteToUDPAddrPort(p, from)
	}
}

// readBrowser is the browser's receiver: it matches each echoed packet to
// the one it sent by the counter in the payload and records
//
//	up   = daemon's packet reached the phone socket − browser's sendmsg
//	down = daemon's packet reached the browser socket − phone's sendmsg
//	added = up + down (what the daemon added to the round trip, plus two
//	        loopback hops; see the loopback probe)
//	rtt  = the browser's read of the echo − its sendmsg (includes the load
//	       generator's own scheduling)
func (lg *loadgen) readBrowser(c *call, tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			if c.closed.Load() {
				return
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		hl, err := h.Unmarshal(buf[:n])
		if err != nil || n-hl < payloadHeader {
			continue
		}
		pl := buf[hl:n]
		if binary.BigEndian.Uint32(pl) != magic || int(binary.BigEndian.Uint32(pl[4:])) != c.idx {
			lg.foreign.Add(1)
			continue
		}
		cnt := binary.BigEndian.Uint32(pl[8:])
		if cnt >= c.winLo.Load() && cnt < c.winHi.Load() {
			c.winBrowserRx.Add(1)
		}
		if !lg.recording.Load() {
			continue
		}
		seq := uint16(cnt)
		t1 := c.sentAt[seq&ringMask].get(seq)
		up := c.up[seq&ringMask].get(seq)
		t3 := c.echoAt[seq&ringMask].get(seq)
		t4 := c.bconn.rxStamp(h.SSRC, h.SequenceNumber)
		if t1 != 0 {
			lg.hRTT.add(now - t1)
		}
		if up != 0 && t3 != 0 && t4 != 0 {
			lg.hUp.add(up)
			lg.hDown.add(t4 - t3)
			lg.hAdded.add(up + t4 - t3)
		} else {
			lg.unmatched.Add(1)
		}
	}
}

// sendLoop sends one packet per live call every 20 ms, the calls spread
// over 20 slots of 1 ms so the load is even.
func (lg *loadgen) sendLoop() {
	const slots = 20
	payload := make([]byte, payloadSize)
	for i := range payload {
		payload[i] = 0xff // PCMU silence
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0}, Payload: payload}
	start := time.Now()
	for tick := 0; ; tick++ {
		due := start.Add(time.Duration(tick) * time.Millisecond)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if lag := time.Since(due); lg.recording.Load() {
			lg.hLag.add(int64(lag))
			for {
				m := lg.maxLag.Load()
				if int64(lag) <= m || lg.maxLag.CompareAndSwap(m, int64(lag)) {
					break
				}
			}
		}
		select {
		case <-lg.stop:
			return
		default:
		}
		lg.mu.Lock()
		calls := lg.live
		lg.mu.Unlock()
		for i := tick % slots; i < len(calls); i += slots {
			c := calls[i]
			if c.closed.Load() {
				continue
			}
			n := c.counter.Load() + 1
			binary.BigEndian.PutUint32(payload[0:], magic)
			binary.BigEndian.PutUint32(payload[4:], uint32(c.idx))
			binary.BigEndian.PutUint32(payload[8:], n)
			pkt.SequenceNumber = uint16(n)
			pkt.Timestamp = n * payloadSize
			_ = c.track.WriteRTP(pkt) // a failed write counts as lost
			c.counter.Store(n)
		}
	}
}

// loopProbe measures the loopback hop the added latency includes twice:
// sendmsg on one socket to the kernel's receive timestamp on another, at
// 50 packets/s, in the same process and on the same core as the load.
func (lg *loadgen) loopProbe(ip netip.Addr) error {
	a, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return err
	}
	b, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return err
	}
	if err := enableTimestamps(b); err != nil {
		return err
	}
	to := b.LocalAddr().(*net.UDPAddr).AddrPort()
	go func() {
		buf := make([]byte, 1500)
		oob := make([]byte, 128)
		for {
			n, oobn, _, _, err := b.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				return
			}
			if n < 8 || !lg.recording.Load() {
				continue
			}
			if t := rxTime(oob[:oobn]); t != 0 {
				lg.hLoop.add(t - int64(binary.BigEndian.Uint64(buf)))
			}
		}
	}()
	go func() {
		msg := make([]byte, 172)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-lg.stop:
				_ = a.Close()
				_ = b.Close()
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
			_, _ = a.WriteToUDPAddrPort(msg, to)
		}
	}()
	return nil
}

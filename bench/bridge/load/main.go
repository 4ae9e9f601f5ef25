// Command load is the media bridge benchmark's load generator: N
// concurrent calls, each a pion PeerConnection playing a browser
// (Chromium-like G.711 offer: PCMU, PCMA, telephone-event/8000 at 126;
// sends PCMU, 20 ms packets) and a UDP socket playing a phone that echoes
// every RTP packet back. The calls are set up through a media daemon's ng
// control protocol (rtpengine, or ngd around package bridge) exactly the
// same way for either daemon, so the media path is
//
//	browser ─SRTP→ daemon ─RTP→ phone (echo) ─RTP→ daemon ─SRTP→ browser
//
// It ramps the number of calls (-steps), and at every step measures over a
// window: round-trip packet loss, the latency the daemon added (kernel
// receive timestamps, see readBrowser), the daemon's CPU time and RSS. One
// tab-separated line per step goes to stdout (header first, "#"); progress
// goes to stderr. It stops at the first step with more than -max-loss
// percent loss or failed set-ups, and then tries once halfway back.
//
//	load -ng 127.0.0.1:22223 -pid $(pidof rtpengine) -name rtpengine
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2psip/p2psip/bench/bridge/ng"
	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

type loadgen struct {
	cert         webrtc.Certificate
	ng           *ng.Client
	browserIP    netip.Addr
	srtp         string
	phoneIP      netip.Addr
	setupTimeout time.Duration
	dumpSDP      atomic.Bool
	logf         func(string, ...any)

	mu    sync.Mutex
	live  []*call // guarded by mu; replaced, never changed in place
	stop  chan struct{}
	calls []*call // the ramp's only: every live call, in order
	next  int     // the ramp's only: the next call index

	recording                atomic.Bool
	hAdded, hUp, hDown, hRTT hist
	hLoop                    hist
	hLag                     hist // how late the send loop woke up
	maxLag                   atomic.Int64
	unmatched, foreign       atomic.Uint64
	setupMu                  sync.Mutex
	setupDurs                []time.Duration // guarded by setupMu
}

func main() {
	ngAddr := flag.String("ng", "127.0.0.1:22223", "the daemon's ng control address")
	pid := flag.Int("pid", 0, "the daemon's process id (CPU and RSS)")
	name := flag.String("name", "daemon", "name in the output")
	stepsFlag := flag.String("steps", "50,100,200,400,600,800,1000,1200,1600", "concurrent calls per step, ascending")
	window := flag.Duration("window", 6*time.Second, "measuring window per step")
	settle := flag.Duration("settle", 2*time.Second, "wait after a step's set-ups before measuring")
	maxLoss := flag.Float64("max-loss", 0.1, "a step passes with at most this round-trip loss, percent")
	maxP99 := flag.Duration("max-p99", 20*time.Millisecond, "and with at most this p99 added latency (a relay past its ceiling queues rather than drops)")
	browserIP := flag.String("browser-ip", "127.0.0.71", "address of the browsers' ICE sockets (one per browser)")
	phoneIP := flag.String("phone-ip", "127.0.0.72", "address of the phone sockets")
	par := flag.Int("par", 32, "call set-ups in parallel")
	srtpFlag := flag.String("srtp", "gcm", "SRTP profile the browsers offer: gcm (AEAD_AES_128_GCM), cm (AES128_CM_HMAC_SHA1_80) or all (pion's default list)")
	profileURL := flag.String("pprof", "", "the daemon's net/http/pprof base URL: take a CPU profile over every window and a heap profile after it")
	outDir := flag.String("out", ".", "where profiles go")
	dump := flag.Bool("dump-sdp", false, "log the SDPs of the first call")
	mid := flag.Bool("midpoint", true, "after the first failing step, try once halfway back")
	lgMaxCPU := flag.Float64("max-load-cpu", 90, "a step where the load generator used more of its core than this (percent), or fell more than -max-lag behind its 20 ms schedule, is load-generator bound: the ramp stops there")
	lgMaxLag := flag.Duration("max-lag", 50*time.Millisecond, "see -max-load-cpu")
	cpuProfile := flag.String("cpuprofile", "", "write the load generator's own CPU profile here")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	logf := func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "[%s] %s: %s\n", time.Now().Format("15:04:05"), *name, fmt.Sprintf(f, a...))
	}

	var steps []int
	for _, s := range strings.Split(*stepsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			log.Fatalf("-steps: %q", s)
		}
		steps = append(steps, n)
	}
	lg := &loadgen{phoneIP: netip.MustParseAddr(*phoneIP), setupTimeout: 20 * time.Second, logf: logf, stop: make(chan struct{})}
	lg.dumpSDP.Store(*dump)
	if err := lg.init(netip.MustParseAddr(*browserIP), *srtpFlag); err != nil {
		log.Fatal(err)
	}
	cl, err := ng.Dial(*ngAddr)
	if err != nil {
		log.Fatal(err)
	}
	lg.ng = cl
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := cl.Do(ctx, map[string]any{"command": "ping"}); err != nil {
		log.Fatalf("%s at %s does not answer ping: %v", *name, *ngAddr, err)
	}
	cancel()
	if err := lg.loopProbe(lg.phoneIP); err != nil {
		log.Fatal(err)
	}
	go lg.sendLoop()

	rss0 := procRSS(*pid)
	logf("pid %d, RSS %d KiB idle, %d threads; load generator GOMAXPROCS %d", *pid, rss0, procThreads(*pid), runtime.GOMAXPROCS(0))
	fmt.Println("#name\tcalls\tsetup_failed\tsent\tphone_rx\tbrowser_rx\tloss_pct\tloss_up_pct\tsilent_calls\t" +
		"added_p50_us\tadded_p99_us\tadded_max_us\tup_p50_us\tup_p99_us\tdown_p50_us\tdown_p99_us\trtt_p50_us\trtt_p99_us\t" +
		"loop_p50_us\tloop_p99_us\tdaemon_cpu_pct\tcalls_per_core\trss_kib\tkib_per_call\tload_cpu_pct\tmax_lag_ms\tlag_p99_us\tsetup_p50_ms\tsetup_p99_ms\tpass\tload_bound")

	m := &measure{lg: lg, pid: *pid, name: *name, window: *window, settle: *settle, maxLoss: *maxLoss, maxP99: *maxP99, rss0: rss0,
		profileURL: *profileURL, outDir: *outDir, par: *par, lgMaxCPU: *lgMaxCPU, lgMaxLag: *lgMaxLag}
	lastOK, firstFail, stop := 0, 0, "last-step"
	for _, n := range steps {
		why, lgBound := m.step(n)
		if why == "" {
			lastOK = n
		} else {
			firstFail, stop = n, why
		}
		if lgBound {
			stop = "load-generator"
		}
		if why != "" || lgBound {
			break
		}
	}
	if *mid && firstFail > 0 && stop != "load-generator" && firstFail-lastOK > max(lastOK/10, 1) {
		half := (lastOK + firstFail) / 2
		if why, _ := m.step(half); why == "" {
			lastOK = half
		}
	}
	fmt.Printf("#best\t%s\t%d\t%d\t%s\n", *name, lastOK, firstFail, stop)
	logf("best step %d calls (first failing step %d, stopped by %s); hanging up", lastOK, firstFail, stop)
	close(lg.stop)
	lg.resize(0, *par)
}

// init checks the options and makes the browsers' shared DTLS certificate
// (set-up cost is not what is measured).
func (lg *loadgen) init(browserIP netip.Addr, srtp string) error {
	switch srtp {
	case "gcm", "cm", "all":
	default:
		return fmt.Errorf("-srtp %q: gcm, cm or all", srtp)
	}
	lg.browserIP, lg.srtp = browserIP, srtp
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	cert, err := webrtc.GenerateCertificate(key)
	if err != nil {
		return err
	}
	lg.cert = *cert
	return nil
}

// browserAPI opens one browser's ICE socket (which timestamps packets) and
// builds its pion API on it: Chromium's G.711 codecs, RTCP reports, no
// mDNS. Every browser has its own socket, as every Chromium
// PeerConnection has its own ports: a daemon that serves all browser legs
// on one port (ICE mux) tells calls apart by the browser's address, so
// browsers sharing one socket would be one 5-tuple to it.
func (lg *loadgen) browserAPI() (*webrtc.API, *browserConn, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000}, PayloadType: 126},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, nil, err
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, nil, err
	}
	uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lg.browserIP, 0)))
	if err != nil {
		return nil, nil, err
	}
	if err := enableTimestamps(uc); err != nil {
		_ = uc.Close()
		return nil, nil, err
	}
	bc := &browserConn{UDPConn: uc, rx: map[uint32]*[ring]stamp{}}
	se := webrtc.SettingEngine{}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	se.LoggerFactory = lf
	mux := webrtc.NewICEUDPMux(lf.NewLogger("mux"), bc)
	bc.mux = mux
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A daemon's answer may name no a=ssrc (rtpengine's does not);
	// Chromium plays such a stream, pion as the offerer only with this.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	switch lg.srtp {
	case "gcm":
		se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM)
	case "cm":
		se.SetSRTPProtectionProfiles(dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), bc, nil
}

// resize sets up or hangs up calls until n are live; it returns how many
// set-ups failed.
func (lg *loadgen) resize(n, par int) int {
	if n < len(lg.calls) {
		drop := lg.calls[n:]
		lg.calls = lg.calls[:n:n]
		lg.mu.Lock()
		lg.live = slices.Clone(lg.calls)
		lg.mu.Unlock()
		var wg sync.WaitGroup
		sem := make(chan struct{}, par)
		for _, c := range drop {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				lg.teardown(c, true)
				<-sem
			}()
		}
		wg.Wait()
		return 0
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
		ok     []*call
		sem    = make(chan struct{}, par)
		first  error
	)
	for range n - len(lg.calls) {
		c := &call{idx: lg.next, id: "bench-" + strconv.Itoa(lg.next)}
		lg.next++
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			err := lg.setup(context.Background(), c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if first == nil {
					first = err
				}
				return
			}
			lg.setupMu.Lock()
			lg.setupDurs = append(lg.setupDurs, time.Since(t0))
			lg.setupMu.Unlock()
			ok = append(ok, c)
			// Live at once: a call sends as soon as it is connected.
			lg.mu.Lock()
			lg.live = append(slices.Clone(lg.live), c)
			lg.mu.Unlock()
		}()
	}
	wg.Wait()
	lg.calls = append(lg.calls, ok...)
	if first != nil {
		lg.logf("%d of %d set-ups failed; first: %v", failed, failed+len(ok), first)
	}
	return failed
}

type measure struct {
	lg         *loadgen
	pid        int
	name       string
	window     time.Duration
	settle     time.Duration
	maxLoss    float64
	maxP99     time.Duration
	rss0       int64
	profileURL string
	outDir     string
	par        int
	lgMaxCPU   float64
	lgMaxLag   time.Duration
}

// step brings the load to n calls and measures one window. It passes (why
// is "") with every call set up and heard, at most -max-loss loss and at
// most -max-p99 added latency; else why is "setup", "silence", "loss" or
// "latency". lgBound is the load generator at its own limit.
func (m *measure) step(n int) (why string, lgBound bool) {
	lg := m.lg
	lg.setupMu.Lock()
	lg.setupDurs = nil
	lg.setupMu.Unlock()
	t0 := time.Now()
	failed := lg.resize(n, m.par)
	lg.setupMu.Lock()
	durs := slices.Clone(lg.setupDurs)
	lg.setupMu.Unlock()
	slices.Sort(durs)
	sp50, sp99 := pct(durs, 0.5), pct(durs, 0.99)
	lg.logf("%d calls live (%d set-ups failed) after %.1f s; set-up p50 %.0f ms p99 %.0f ms", len(lg.calls), failed,
		time.Since(t0).Seconds(), sp50, sp99)
	time.Sleep(m.settle)

	for _, h := range []*hist{&lg.hAdded, &lg.hUp, &lg.hDown, &lg.hRTT, &lg.hLoop, &lg.hLag} {
		h.reset()
	}
	lg.maxLag.Store(0)
	lg.unmatched.Store(0)
	const drain = 300 * time.Millisecond // longer than any round trip that counts as delivered
	calls := lg.calls
	for _, c := range calls {
		c.winPhoneRx.Store(0)
		c.winBrowserRx.Store(0)
		c.winHi.Store(math.MaxUint32)
		c.winLo.Store(c.counter.Load() + 1)
	}
	cpu0, _ := procCPU(m.pid)
	self0, _ := procCPU(os.Getpid())
	wt0 := time.Now()
	var prof sync.WaitGroup
	if m.profileURL != "" {
		prof.Add(1)
		go func() {
			defer prof.Done()
			m.fetch(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", m.profileURL, int(m.window.Seconds())),
				filepath.Join(m.outDir, fmt.Sprintf("%s-%d.cpu.pprof", m.name, n)))
		}()
	}
	lg.recording.Store(true)
	time.Sleep(m.window)
	var sent, ph, rx uint64
	for _, c := range calls {
		hi := c.counter.Load() + 1
		c.winHi.Store(hi)
		sent += uint64(hi - c.winLo.Load())
	}
	cpu1, _ := procCPU(m.pid)
	self1, _ := procCPU(os.Getpid())
	wt := time.Since(wt0)
	lg.recording.Store(false)
	time.Sleep(drain)
	silent := 0
	for _, c := range calls {
		r := c.winBrowserRx.Load()
		if r == 0 {
			silent++
		}
		rx += r
		ph += c.winPhoneRx.Load()
	}
	prof.Wait()
	rss := procRSS(m.pid)
	if m.profileURL != "" {
		m.fetch(m.profileURL+"/debug/pprof/heap", filepath.Join(m.outDir, fmt.Sprintf("%s-%d.heap.pprof", m.name, n)))
	}

	loss := 100 * (1 - float64(rx)/float64(max(sent, 1)))
	lossUp := 100 * (1 - float64(ph)/float64(max(sent, 1)))
	cpuPct := 100 * float64(cpu1-cpu0) / float64(wt)
	selfPct := 100 * float64(self1-self0) / float64(wt)
	perCore := 0.0
	if cpuPct > 0 {
		perCore = float64(len(lg.calls)) / (cpuPct / 100)
	}
	kibPerCall := float64(rss-m.rss0) / float64(max(len(lg.calls), 1))
	switch p99 := lg.hAdded.quantile(0.99); {
	case failed > 0:
		why = "setup"
	case silent > 0 || sent == 0:
		why = "silence"
	case loss > m.maxLoss:
		why = "loss"
	case p99 < 0 || p99 > float64(m.maxP99.Microseconds()):
		why = "latency"
	}
	pass := why == ""
	lgBound = selfPct > m.lgMaxCPU || time.Duration(lg.maxLag.Load()) > m.lgMaxLag
	q := func(h *hist, p float64) string { return fmt.Sprintf("%.0f", h.quantile(p)) }
	fmt.Printf("%s\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%d\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%s\t%.0f\t%.0f\t%v\t%v\n",
		m.name, len(lg.calls), failed, sent, ph, rx, loss, lossUp, silent,
		q(&lg.hAdded, 0.5), q(&lg.hAdded, 0.99), float64(lg.hAdded.maxNs.Load())/1000,
		q(&lg.hUp, 0.5), q(&lg.hUp, 0.99), q(&lg.hDown, 0.5), q(&lg.hDown, 0.99),
		q(&lg.hRTT, 0.5), q(&lg.hRTT, 0.99), q(&lg.hLoop, 0.5), q(&lg.hLoop, 0.99),
		cpuPct, perCore, rss, kibPerCall, selfPct, float64(lg.maxLag.Load())/1e6, q(&lg.hLag, 0.99), sp50, sp99, pass, lgBound)
	lg.logf("%d calls: sent %d, echoed back %d, loss %.3f %% (to the phone %.3f %%), %d silent calls; added p50 %s µs p99 %s µs "+
		"(loopback hop p50 %s µs); daemon CPU %.1f %% (%.0f calls/core), RSS %d KiB (%.1f KiB/call); load gen CPU %.0f %%, max lag %.1f ms, %d unmatched, %d foreign -> pass %v %s, load-generator bound %v",
		len(lg.calls), sent, rx, loss, lossUp, silent, q(&lg.hAdded, 0.5), q(&lg.hAdded, 0.99), q(&lg.hLoop, 0.5),
		cpuPct, perCore, rss, kibPerCall, selfPct, float64(lg.maxLag.Load())/1e6, lg.unmatched.Load(), lg.foreign.Load(), pass, why, lgBound)
	return why, lgBound
}

func (m *measure) fetch(url, file string) {
	resp, err := http.Get(url)
	if err != nil {
		m.lg.logf("profile %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		m.lg.logf("profile: %v", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// pct is the nearest-rank quantile of sorted durations, in ms.
func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return -1
	}
	i := int(q*float64(len(d))+0.999999) - 1
	i = max(0, min(i, len(d)-1))
	return float64(d[i]) / float64(time.Millisecond)
}

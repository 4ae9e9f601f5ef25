//go:build e2e

package e2e

// A harness for baresip 1.0 (Debian's baresip-core), a real SIP phone that
// sends and receives plain RTP/AVP audio (G.711), for media tests:
//
//	b := startBaresip(t, baresipOpts{name: "carol", wrap: ns, ip: "127.0.0.5",
//		account: baresipAccount("carol", "atlanta.example", "carolpw", "127.0.0.2:5060", 600)})
//	b.Dial(t, "sip:bob@atlanta.example")
//	b.WaitEstablished(t)
//	b.SendDTMF(t, "123#")
//	b.Hangup(t)
//	st := b.WaitStats(t, 1) // RTP packets sent/received/lost at hang-up
//
// Two channels observe the phone:
//
//   - its log (stdout+stderr of `baresip -v`, kept in the run dir as
//     baresip.log, its tail logged when the test fails): registration,
//     call established/closed with a reason, received DTMF digits and the RTP
//     statistics printed at hang-up (parseBaresipLog);
//   - its ctrl_tcp control connection (netstring-framed JSON): commands and
//     their responses, and UA events (CALL_ESTABLISHED, CALL_CLOSED with the
//     reason, CALL_DTMF_START, and CALL_RTCP with live RTCP statistics every
//     ~5 s) — see WaitEvent.
//
// baresip 1.0 quirks this harness works around (found by running it):
//
//   - No sound card: the ALSA "null" device works but its playback thread
//     spins a whole core per call (it has no clock). The player here is the
//     aubridge module (device "sink"): with no aubridge source on the same
//     device its thread never starts, received audio is decoded and dropped,
//     and RTP receive statistics are unaffected.
//   - aufile (the WAV "microphone") closes the call with reason "end of file"
//     when the WAV ends: the tone is as long as toneSecs (default 120 s).
//   - The WAV must be 8 kHz mono 16-bit for G.711 (ausine is 48 kHz only).
//   - telephone-event/8000 (PT 101) is always offered; 1.0 has no setting to
//     leave it out.
//   - RTP sockets are bound to 0.0.0.0 (from rtp_ports), not to net_interface:
//     the SDP says c=<ip> but on lo the packets leave from 127.0.0.1.
//   - SIGINT and SIGTERM are handled alike: the first de-REGISTERs and waits
//     for that transaction (up to 32 s when the registrar is gone); a second
//     signal exits at once. Stop sends SIGINT, SIGINT again, then SIGKILL.
//   - ctrl_tcp accepts one connection at a time (a new one replaces the old)
//     and sends events only to a connected client.
//   - rtcpsummary's PR=/PS= and rtp_stats' pkt.report row come from the last
//     RTCP report (every ~5 s; none in a call shorter than that: "ERROR=No
//     RTCP stats collected"): count packets with the "packets:" row, which
//     also counts telephone-event packets.
//   - ;audio_codecs= is case-insensitive. PCMA-only calling PCMU-only: the
//     caller's call closes with "488 Not Acceptable Here", the callee's with
//     "No audio codecs".
//   - Live counters mid-call: the audio_debug command (LiveStats) and the
//     CALL_RTCP events; callstat prints only the SDP, not statistics.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// baresipReadyTimeout bounds start-up: "baresip is ready.", the
	// registration (when registering) and the control connection.
	baresipReadyTimeout = 15 * time.Second
	// baresipCmdTimeout bounds one ctrl_tcp command round trip.
	baresipCmdTimeout = 5 * time.Second
	// baresipWaitTimeout is the default wait for an event or a log line.
	baresipWaitTimeout = 15 * time.Second
	// baresipSignalGrace is how long Stop waits after each SIGINT.
	baresipSignalGrace = 3 * time.Second
	// baresipPacketsPerSec is the G.711 packet rate at ptime 20 ms.
	baresipPacketsPerSec = 50
	// baresipModulePath is where Debian's baresip-core puts its modules.
	baresipModulePath = "/usr/lib/baresip/modules"
)

// baresipOpts says how to run one baresip.
type baresipOpts struct {
	name string   // label in logs; default "baresip"
	wrap []string // command prefix, e.g. ip netns exec NS (newNetns)
	// ip is the phone's address: net_interface (baresip wants an IP there,
	// not an interface name), the SIP listen address and, by default, the
	// ctrl_tcp address. Required.
	ip      string
	sipPort int // SIP UDP/TCP listen port; default 5060
	// account is the accounts-file line without answermode/audio_codecs,
	// e.g. baresipAccount(...) or
	// `<sip:carol@atlanta.example>;auth_pass=carolpw;outbound="sip:127.0.0.2:5060;transport=udp";regint=600`.
	// With ;regint=0 the phone does not register; otherwise startBaresip
	// waits for the registrar's 2xx. Default: <sip:NAME@IP>;regint=0.
	account string
	// codecs limits the audio codecs (account ;audio_codecs=), e.g.
	// {"PCMU"}, {"PCMA"} or {"PCMU", "PCMA"} (offer order). nil: PCMU, PCMA.
	codecs []string
	// autoAnswer answers incoming calls at once (;answermode=auto);
	// otherwise they wait for Answer (;answermode=manual).
	autoAnswer bool
	ctrlAddr   string // ctrl_tcp listen address; default IP:4444
	// rtpPorts is the RTP/RTCP port range (rtp_ports); default 10000-10999.
	// RTP binds to 0.0.0.0: give phones in one namespace disjoint ranges.
	rtpPorts [2]int
	// rtpTimeout closes a call when no RTP arrived for this long (rtp_timeout,
	// whole seconds; 0: never). The CALL_CLOSED reason is then
	// "rtp stream error".
	rtpTimeout time.Duration
	toneHz     float64  // the WAV microphone's tone; default 440 Hz
	toneSecs   float64  // its length; default 120 s (the call ends with it)
	extra      []string // more config lines, e.g. "jitter_buffer_delay 1-4"
}

// baresipAccount builds an accounts line for user@domain registering with
// password through outbound (host:port, UDP) every regint seconds (0: no
// registration; calls still go through outbound).
func baresipAccount(user, domain, password, outbound string, regint int) string {
	s := "<sip:" + user + "@" + domain + ">"
	if password != "" {
		s += ";auth_pass=" + password
	}
	if outbound != "" {
		s += `;outbound="sip:` + outbound + `;transport=udp"`
	}
	return s + ";regint=" + strconv.Itoa(regint)
}

// baresipProc is a running baresip.
type baresipProc struct {
	name    string
	Dir     string // run dir: config, accounts, tone.wav, baresip.log
	LogPath string
	IP      string // the phone's address (SDP c=, SIP); RTP leaves from 127.0.0.1 on lo
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	ctrl    io.ReadWriteCloser
	writeMu sync.Mutex
	tokens  atomic.Int64

	mu       sync.Mutex
	pending  map[string]chan baresipResponse
	ctrlErr  error // set when the control connection is gone
	events   []baresipEvent
	consumed map[string]int // per event type: how many WaitEvent returned
}

// baresipResponse is ctrl_tcp's answer to a command.
type baresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// baresipEvent is a UA event from ctrl_tcp, e.g.
//
//	{"event":true,"type":"CALL_CLOSED","class":"call","accountaor":"sip:bob@atlanta.example",
//	 "direction":"incoming","peeruri":"sip:carol@atlanta.example","id":"d340…","param":"Connection reset by peer"}
type baresipEvent struct {
	Time      time.Time `json:"-"`
	Type      string    `json:"type"` // CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED, CALL_DTMF_START, CALL_DTMF_END, CALL_RTCP, REGISTER_OK, …
	Class     string    `json:"class"`
	AOR       string    `json:"accountaor"`
	Direction string    `json:"direction"` // incoming, outgoing
	PeerURI   string    `json:"peeruri"`
	CallID    string    `json:"id"`
	// Param: CALL_CLOSED the reason ("Connection reset by user" after our
	// hang-up, "Connection reset by peer" after the peer's BYE, "486 Busy
	// Here", "rtp stream error", "end of file", …); CALL_DTMF_START the
	// digit; CALL_RTCP the media ("audio").
	Param string               `json:"param"`
	RTCP  *baresipRTCPSnapshot `json:"rtcp_stats"` // CALL_RTCP only
}

// baresipRTCPSnapshot is the stream's RTCP statistics when a CALL_RTCP event
// was sent (on each RTCP packet received, about every 5 s): tx = what we sent
// and how much of it the peer reports lost; rx = what we received and lost.
// Jitter in µs, RTT in µs.
type baresipRTCPSnapshot struct {
	TX  baresipRTCPDir `json:"tx"`
	RX  baresipRTCPDir `json:"rx"`
	RTT int            `json:"rtt"`
}

type baresipRTCPDir struct {
	Sent   int `json:"sent"`
	Lost   int `json:"lost"`
	Jitter int `json:"jit"`
}

// startBaresip writes a config, accounts file and tone WAV into a fresh run
// dir, starts `baresip -f DIR -v` (under o.wrap), waits until it is ready and,
// unless the account says ;regint=0, registered, and connects to its ctrl_tcp
// port. Cleanup stops it (SIGINT, SIGINT, SIGKILL) and, when the test failed,
// logs the tail of its log and its last events.
func startBaresip(t *testing.T, o baresipOpts) *baresipProc {
	t.Helper()
	bin := requireTool(t, "baresip", "baresip-core")
	if len(o.wrap) > 0 {
		requireTool(t, "nc", "netcat-openbsd") // ctrl_tcp inside the namespace
	}
	if o.ip == "" {
		t.Fatal("startBaresip: opts.ip is required (baresip's net_interface must be an IP address)")
	}
	if o.name == "" {
		o.name = "baresip"
	}
	if o.sipPort == 0 {
		o.sipPort = 5060
	}
	if o.ctrlAddr == "" {
		o.ctrlAddr = net.JoinHostPort(o.ip, "4444")
	}
	if o.rtpPorts == [2]int{} {
		o.rtpPorts = [2]int{10000, 10999}
	}
	if o.toneHz == 0 {
		o.toneHz = 440
	}
	if o.toneSecs == 0 {
		o.toneSecs = 120
	}
	if o.account == "" {
		o.account = "<sip:" + o.name + "@" + o.ip + ">;regint=0"
	}
	if _, err := os.Stat(baresipModulePath); err != nil {
		failOrSkip(t, fmt.Sprintf("baresip modules not found in %s (Debian package baresip-core): %v", baresipModulePath, err))
	}

	dir := t.TempDir()
	tone := filepath.Join(dir, "tone.wav")
	if err := writeToneWAV(tone, o.toneHz, o.toneSecs); err != nil {
		t.Fatal(err)
	}
	account := o.account
	if !strings.Contains(account, ";answermode=") {
		if o.autoAnswer {
			account += ";answermode=auto"
		} else {
			account += ";answermode=manual"
		}
	}
	if len(o.codecs) > 0 && !strings.Contains(account, ";audio_codecs=") {
		account += ";audio_codecs=" + strings.Join(o.codecs, ",")
	}
	registering := !regexp.MustCompile(`;regint=0(;|$)`).MatchString(account)
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(baresipConfig(o, tone)), 0o644); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(dir, "baresip.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	full := append(append([]string(nil), o.wrap...), bin, "-f", dir, "-v")
	b := &baresipProc{
		name: o.name, Dir: dir, LogPath: logPath, IP: o.ip, logFile: logFile,
		done: make(chan struct{}), pending: map[string]chan baresipResponse{}, consumed: map[string]int{},
	}
	b.cmd = exec.Command(full[0], full[1:]...)
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = logFile, logFile // stdin: /dev/null
	// Own process group (a terminal's ^C does not reach it); Pdeathsig: it
	// dies with the test binary. ip netns exec execs baresip: same PID.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	t.Logf("%s: starting %s (run dir %s, account %s)", b.name, strings.Join(full, " "), dir, account)
	if err := b.cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("%s: start: %v", b.name, err)
	}
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		b.Stop(t)
		b.closeCtrl()
		_ = b.logFile.Close()
		if t.Failed() {
			b.logTail(t)
		}
	})

	deadline := time.Now().Add(baresipReadyTimeout)
	for {
		v := b.ParseLog()
		if len(v.RegFailures) > 0 {
			b.logTail(t)
			t.Fatalf("%s: registration failed: %s", b.name, v.RegFailures[0])
		}
		if v.Ready && (!registering || len(v.Registered) > 0) {
			break
		}
		if !b.Running() {
			b.logTail(t)
			t.Fatalf("%s: exited before it was ready (ready=%v, registered=%v): %v", b.name, v.Ready, v.Registered, b.waitErr)
		}
		if time.Now().After(deadline) {
			b.logTail(t)
			t.Fatalf("%s: not ready within %s (ready=%v; registering=%v, registered=%v)", b.name, baresipReadyTimeout, v.Ready, registering, v.Registered)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.connectCtrl(t, o.wrap, o.ctrlAddr, deadline)
	t.Logf("%s: ready on %s:%d (ctrl %s)", b.name, o.ip, o.sipPort, o.ctrlAddr)
	return b
}

// baresipConfig is the config file for o; tone is the WAV microphone.
func baresipConfig(o baresipOpts, tone string) string {
	lines := []string{
		"# written by e2e/baresip_harness_test.go for baresip 1.0",
		"poll_method\t\tepoll",
		"sip_listen\t\t" + net.JoinHostPort(o.ip, strconv.Itoa(o.sipPort)),
		"net_interface\t\t" + o.ip, // an IP: an interface name such as lo does not work
		"call_local_timeout\t120",
		"call_max_calls\t\t4",
		"# microphone: an 8 kHz mono 16-bit WAV (aufile; the call closes when it ends)",
		"audio_source\t\taufile," + tone,
		"# speaker and ringer: aubridge devices nobody reads (ALSA null spins a core)",
		"audio_player\t\taubridge,sink",
		"audio_alert\t\taubridge,alert",
		fmt.Sprintf("rtp_ports\t\t%d-%d", o.rtpPorts[0], o.rtpPorts[1]),
		"rtcp_mux\t\tno",
		"jitter_buffer_delay\t5-10",
		"# packets sent/received/lost printed at hang-up",
		"rtp_stats\t\tyes",
	}
	if o.rtpTimeout > 0 {
		secs := int(math.Ceil(o.rtpTimeout.Seconds()))
		lines = append(lines, "rtp_timeout\t\t"+strconv.Itoa(secs))
	}
	lines = append(lines,
		"module_path\t\t"+baresipModulePath,
		"module\t\t\tg711.so",
		"module\t\t\taufile.so",
		"module\t\t\taubridge.so",
		"module\t\t\trtcpsummary.so", // EX=BareSip;… line per stream at hang-up
		"module_app\t\taccount.so",   // reads the accounts file
		"module_app\t\tmenu.so",      // the commands: dial, hangup, accept, sndcode, audio_debug, …
		"module_app\t\tctrl_tcp.so",
		"ctrl_tcp_listen\t\t"+o.ctrlAddr,
	)
	lines = append(lines, o.extra...)
	return strings.Join(lines, "\n") + "\n"
}

// writeToneWAV writes secs seconds of a hz sine tone as an 8 kHz mono 16-bit
// PCM WAV file (what aufile needs for G.711).
func writeToneWAV(path string, hz, secs float64) error {
	const rate = 8000
	n := int(secs * rate)
	data := make([]byte, 44+2*n)
	copy(data[0:], "RIFF")
	binary.LittleEndian.PutUint32(data[4:], uint32(36+2*n))
	copy(data[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(data[16:], 16)     // fmt chunk size
	binary.LittleEndian.PutUint16(data[20:], 1)      // PCM
	binary.LittleEndian.PutUint16(data[22:], 1)      // mono
	binary.LittleEndian.PutUint32(data[24:], rate)   // sample rate
	binary.LittleEndian.PutUint32(data[28:], rate*2) // byte rate
	binary.LittleEndian.PutUint16(data[32:], 2)      // block align
	binary.LittleEndian.PutUint16(data[34:], 16)     // bits per sample
	copy(data[36:], "data")
	binary.LittleEndian.PutUint32(data[40:], uint32(2*n))
	for i := 0; i < n; i++ {
		v := int16(0.3 * 32767 * math.Sin(2*math.Pi*hz*float64(i)/rate))
		binary.LittleEndian.PutUint16(data[44+2*i:], uint16(v))
	}
	return os.WriteFile(path, data, 0o644)
}

// Running reports whether the process is still running.
func (b *baresipProc) Running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// Stop ends baresip: SIGINT (it de-REGISTERs), a second SIGINT after
// baresipSignalGrace (it exits at once), SIGKILL after another grace period.
// It is a no-op when baresip has exited.
func (b *baresipProc) Stop(t *testing.T) {
	t.Helper()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGINT} {
		if !b.Running() {
			return
		}
		_ = b.cmd.Process.Signal(sig)
		select {
		case <-b.done:
			return
		case <-time.After(baresipSignalGrace):
		}
	}
	if b.Running() {
		t.Logf("%s: still running after two SIGINTs: SIGKILL", b.name)
		b.Kill()
	}
}

// Kill SIGKILLs baresip (a phone that dies mid-call: no BYE, no
// de-REGISTER) and waits for it to exit.
func (b *baresipProc) Kill() {
	_ = b.cmd.Process.Kill()
	<-b.done
	b.closeCtrl()
}

// ---- ctrl_tcp ---------------------------------------------------------------

// connectCtrl opens the control connection (directly, or through nc under
// wrap when baresip runs in a namespace) and checks it with a command.
func (b *baresipProc) connectCtrl(t *testing.T, wrap []string, addr string, deadline time.Time) {
	t.Helper()
	var lastErr error
	for time.Now().Before(deadline) {
		conn, err := dialBaresipCtrl(wrap, addr)
		if err == nil {
			b.startCtrl(conn)
			var data string
			data, err = b.command("reginfo", "", 2*time.Second)
			if err == nil {
				t.Logf("%s: ctrl_tcp %s connected; reginfo: %s", b.name, addr, strings.TrimSpace(stripANSI(data)))
				return
			}
			b.closeCtrl()
		}
		lastErr = err
		if !b.Running() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.logTail(t)
	t.Fatalf("%s: no ctrl_tcp connection to %s: %v", b.name, addr, lastErr)
}

// dialBaresipCtrl connects to addr: directly without wrap; with a wrap (a
// namespace) through `WRAP nc HOST PORT`, since the namespace's loopback is
// not ours.
func dialBaresipCtrl(wrap []string, addr string) (io.ReadWriteCloser, error) {
	if len(wrap) == 0 {
		return net.DialTimeout("tcp", addr, time.Second)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	argv := append(append([]string(nil), wrap...), "nc", host, port)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return &pipeConn{cmd: cmd, stdin: stdin, stdout: stdout}, nil
}

// pipeConn is a connection through a child process's stdin/stdout (nc).
type pipeConn struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.ReadCloser
	once   sync.Once
}

func (c *pipeConn) Read(p []byte) (int, error)  { return c.stdout.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error) { return c.stdin.Write(p) }
func (c *pipeConn) Close() error {
	c.once.Do(func() {
		_ = c.stdin.Close()
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
	return nil
}

func (b *baresipProc) startCtrl(conn io.ReadWriteCloser) {
	b.mu.Lock()
	b.ctrl, b.ctrlErr = conn, nil
	b.mu.Unlock()
	go b.readCtrl(conn)
}

func (b *baresipProc) closeCtrl() {
	b.mu.Lock()
	conn := b.ctrl
	b.ctrl = nil
	b.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

// readCtrl reads netstrings ("LEN:JSON,") and dispatches responses (by
// token) and events until the connection ends.
func (b *baresipProc) readCtrl(conn io.ReadWriteCloser) {
	br := bufio.NewReader(conn)
	err := func() error {
		for {
			lenStr, err := br.ReadString(':')
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
			if err != nil || n < 0 || n > 1<<20 {
				return fmt.Errorf("bad netstring length %q", lenStr)
			}
			msg := make([]byte, n+1)
			if _, err := io.ReadFull(br, msg); err != nil {
				return err
			}
			if msg[n] != ',' {
				return fmt.Errorf("netstring not terminated by ',': %q", msg)
			}
			msg = msg[:n]
			var kind struct {
				Response bool `json:"response"`
				Event    bool `json:"event"`
			}
			if err := json.Unmarshal(msg, &kind); err != nil {
				return fmt.Errorf("not JSON: %v: %q", err, msg)
			}
			switch {
			case kind.Response:
				var r baresipResponse
				if err := json.Unmarshal(msg, &r); err != nil {
					return fmt.Errorf("bad response: %v: %q", err, msg)
				}
				b.mu.Lock()
				ch := b.pending[r.Token]
				delete(b.pending, r.Token)
				b.mu.Unlock()
				if ch != nil {
					ch <- r
				}
			case kind.Event:
				ev := baresipEvent{Time: time.Now()}
				if err := json.Unmarshal(msg, &ev); err != nil {
					return fmt.Errorf("bad event: %v: %q", err, msg)
				}
				b.mu.Lock()
				b.events = append(b.events, ev)
				b.mu.Unlock()
			}
		}
	}()
	if errors.Is(err, io.EOF) {
		err = errors.New("connection closed by baresip")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctrl == conn || b.ctrl == nil {
		b.ctrlErr = err
		for tok, ch := range b.pending {
			close(ch)
			delete(b.pending, tok)
		}
	}
}

// command sends one ctrl_tcp command and waits for its response. err is
// non-nil when there is no response (connection gone, timeout) or baresip
// answered ok=false (then data is its message).
func (b *baresipProc) command(name, params string, timeout time.Duration) (string, error) {
	token := fmt.Sprintf("%s-%d", b.name, b.tokens.Add(1))
	req := map[string]string{"command": name, "token": token}
	if params != "" {
		req["params"] = params
	}
	msg, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	ch := make(chan baresipResponse, 1)
	b.mu.Lock()
	conn, cerr := b.ctrl, b.ctrlErr
	if conn == nil || cerr != nil {
		b.mu.Unlock()
		return "", fmt.Errorf("no control connection: %v", cerr)
	}
	b.pending[token] = ch
	b.mu.Unlock()

	b.writeMu.Lock()
	_, err = fmt.Fprintf(conn, "%d:%s,", len(msg), msg)
	b.writeMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("send %s: %w", name, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r, ok := <-ch:
		if !ok {
			b.mu.Lock()
			cerr = b.ctrlErr
			b.mu.Unlock()
			return "", fmt.Errorf("%s: control connection lost: %v", name, cerr)
		}
		if !r.OK {
			return r.Data, fmt.Errorf("%s %s: baresip says: %s", name, params, r.Data)
		}
		return r.Data, nil
	case <-timer.C:
		b.mu.Lock()
		delete(b.pending, token)
		b.mu.Unlock()
		return "", fmt.Errorf("%s: no response within %s", name, timeout)
	}
}

// Command runs a baresip command (a menu long command: dial, hangup, accept,
// sndcode, audio_debug, listcalls, reginfo, answermode, …) over ctrl_tcp and
// returns its output. err is baresip's refusal (ok=false); a lost connection
// or no response fails the test.
func (b *baresipProc) Command(t *testing.T, name, params string) (string, error) {
	t.Helper()
	data, err := b.command(name, params, baresipCmdTimeout)
	if err != nil && !strings.Contains(err.Error(), "baresip says:") {
		t.Fatalf("%s: %v", b.name, err)
	}
	return data, err
}

// mustCommand is Command that fails the test on a refusal too.
func (b *baresipProc) mustCommand(t *testing.T, name, params string) string {
	t.Helper()
	data, err := b.Command(t, name, params)
	if err != nil {
		t.Fatalf("%s: %v", b.name, err)
	}
	return data
}

// Dial calls uri (e.g. sip:bob@atlanta.example). Wait for the outcome with
// WaitEstablished / WaitClosed.
func (b *baresipProc) Dial(t *testing.T, uri string) {
	t.Helper()
	b.mustCommand(t, "dial", uri)
}

// Hangup hangs up the current call (BYE, or CANCEL while it rings).
func (b *baresipProc) Hangup(t *testing.T) {
	t.Helper()
	b.mustCommand(t, "hangup", "")
}

// Answer accepts the incoming call (for answermode manual).
func (b *baresipProc) Answer(t *testing.T) {
	t.Helper()
	b.mustCommand(t, "accept", "")
}

// SendDTMF sends digits (0-9 * # A-D) in the current call as RFC 4733
// telephone-events (menu's sndcode command).
func (b *baresipProc) SendDTMF(t *testing.T, digits string) {
	t.Helper()
	b.mustCommand(t, "sndcode", digits)
}

// baresipLiveStats is the current call's audio RTP counters, from the
// audio_debug command ("TX: packets=N" and the RTCP members' "rcvd=N").
type baresipLiveStats struct {
	TxPackets int // RTP packets sent
	RxPackets int // RTP packets received (all remote SSRCs)
	RxLost    int // lost, as counted from received sequence numbers
	Raw       string
}

var (
	reLiveTx     = regexp.MustCompile(`TX: packets=(\d+)`)
	reLiveRcvd   = regexp.MustCompile(`psent=\d+ rcvd=(\d+)`)
	reLiveMember = regexp.MustCompile(`member 0x[0-9a-f]+: lost=(-?\d+)`)
)

// LiveStats reads the current call's RTP counters now (mid-call).
func (b *baresipProc) LiveStats(t *testing.T) baresipLiveStats {
	t.Helper()
	raw := b.mustCommand(t, "audio_debug", "")
	s := baresipLiveStats{Raw: raw}
	m := reLiveTx.FindStringSubmatch(raw)
	if m == nil {
		t.Fatalf("%s: audio_debug has no \"TX: packets=\" (no current call?):\n%s", b.name, raw)
	}
	s.TxPackets, _ = strconv.Atoi(m[1])
	for _, m := range reLiveRcvd.FindAllStringSubmatch(raw, -1) {
		n, _ := strconv.Atoi(m[1])
		s.RxPackets += n
	}
	for _, m := range reLiveMember.FindAllStringSubmatch(raw, -1) {
		n, _ := strconv.Atoi(m[1])
		s.RxLost += n
	}
	return s
}

// Events returns a copy of the ctrl_tcp events received so far.
func (b *baresipProc) Events() []baresipEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]baresipEvent(nil), b.events...)
}

// WaitEvent returns the next event of type typ that no earlier WaitEvent
// returned (so two calls return the first and the second CALL_ESTABLISHED),
// waiting up to timeout.
func (b *baresipProc) WaitEvent(t *testing.T, typ string, timeout time.Duration) baresipEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b.mu.Lock()
		seen := 0
		for _, ev := range b.events {
			if ev.Type != typ {
				continue
			}
			if seen == b.consumed[typ] {
				b.consumed[typ]++
				b.mu.Unlock()
				return ev
			}
			seen++
		}
		cerr := b.ctrlErr
		b.mu.Unlock()
		if cerr != nil {
			t.Fatalf("%s: waiting for %s: control connection gone: %v", b.name, typ, cerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s event within %s; events: %s", b.name, typ, timeout, b.eventSummary(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitEstablished waits for the next CALL_ESTABLISHED event.
func (b *baresipProc) WaitEstablished(t *testing.T) baresipEvent {
	t.Helper()
	return b.WaitEvent(t, "CALL_ESTABLISHED", baresipWaitTimeout)
}

// WaitClosed waits for the next CALL_CLOSED event; its Param is the reason.
func (b *baresipProc) WaitClosed(t *testing.T) baresipEvent {
	t.Helper()
	return b.WaitEvent(t, "CALL_CLOSED", baresipWaitTimeout)
}

// eventSummary lists the last n events, one per line.
func (b *baresipProc) eventSummary(n int) string {
	evs := b.Events()
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	var sb strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&sb, "\n  %s %s %s peer=%s param=%q", ev.Time.Format("15:04:05.000"), ev.Type, ev.Direction, ev.PeerURI, ev.Param)
		if ev.RTCP != nil {
			fmt.Fprintf(&sb, " rtcp=%+v", *ev.RTCP)
		}
	}
	if sb.Len() == 0 {
		return "(none)"
	}
	return sb.String()
}

// ---- the log --------------------------------------------------------------------

// baresipLogView is what parseBaresipLog found in a baresip log.
type baresipLogView struct {
	Ready       bool            // "baresip is ready."
	Registered  []string        // AORs with a 2xx to REGISTER
	RegFailures []string        // "reg: AOR: 401 Unauthorized (…)" and the like
	Established []string        // peer URI per "AOR: Call established: PEER"
	Closed      []baresipClosed // per call that ended
	DTMF        string          // digits received as telephone-events, in order
	Stats       []baresipRTPStats
}

// baresipClosed is a call's end as the log tells it.
type baresipClosed struct {
	Peer string
	// Reason: "local hangup" ("call: terminate call …"), the peer's or the
	// SIP stack's reason ("PEER: session closed: Connection reset by peer",
	// "…: 486 Busy Here"), "rtp stream error: Connection timed out", or ""
	// when the log says no more than that the call ended.
	Reason   string
	Duration string // from "Call with PEER terminated (duration: 7 secs)"; "" if never established
}

// baresipRTPStats is one media stream's statistics printed at hang-up:
// the rtp_stats block
//
//	audio           Transmit:     Receive:
//	packets:            398          350
//	avg. bitrate:      64.3         64.0  (kbit/s)
//	errors:               0            0
//	pkt.report:         250          250     } only when RTCP was
//	lost:                 0            0     } exchanged (the first
//	jitter:             1.0          1.2  (ms)} report comes after ~5 s)
//
// and rtcpsummary's line before it:
//
//	EX=BareSip;CS=0;CD=7;PR=250;PS=250;PL=0,0;PD=0,0;JI=1.2,1.0;DL=0.0;IP=0.0.0.0:10052,127.0.0.6:10006;
//
// or "EX=BareSip;ERROR=No RTCP stats collected;".
type baresipRTPStats struct {
	Media                string // "audio"
	TxPackets, RxPackets int    // RTP packets sent/received (telephone-events included)
	TxKbps, RxKbps       float64
	TxErrors, RxErrors   int
	// From RTCP (the last report, up to ~5 s old at hang-up):
	HaveRTCP               bool
	TxReported, RxReported int     // pkt.report
	TxLost, RxLost         int     // tx: lost as the peer reported; rx: lost as we counted
	TxJitter, RxJitter     float64 // ms
	Summary                string  // rtcpsummary's EX= line ("" if none)
}

var (
	reANSI       = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	reStatusLine = regexp.MustCompile(`^\[\d+:\d\d:\d\d\](?: \w+=\d+/\d+)* \(bit/s\)\s*`)
	reRegOK      = regexp.MustCompile(`^(\S+): \{\d+/\w+/\w+\} (2\d\d) `)
	reRegFail    = regexp.MustCompile(`^reg: (\S+): (\d{3} .*|Register: .*)$`)
	reEstab      = regexp.MustCompile(`^(\S+): Call established: (\S+)`)
	reSessClosed = regexp.MustCompile(`^(\S+): session closed(?:: (.*))?$`)
	reTerminate  = regexp.MustCompile(`^call: terminate call '\S*' with (\S+)`)
	reStreamErr  = regexp.MustCompile(`^call: error in "\w+" rtp stream \((.*)\)`)
	reSummary    = regexp.MustCompile(`^(\S+): Call with (\S+) terminated \(duration: (.*)\)`)
	reDTMF       = regexp.MustCompile(`^received event: '(.)' \(end=0\)`)
	reStatsHead  = regexp.MustCompile(`^(\w+)\s+Transmit:\s+Receive:`)
	reStatsRow   = regexp.MustCompile(`^(packets|avg\. bitrate|errors|pkt\.report|lost|jitter):\s+(-?[\d.]+)\s+(-?[\d.]+)`)
)

func stripANSI(s string) string { return reANSI.ReplaceAllString(s, "") }

// baresipLogLines splits a log into lines, without colours and without the
// call status that menu rewrites in place ("\r[0:00:06] audio=64000/64000
// (bit/s)    ", which other output then follows on the same line).
func baresipLogLines(log string) []string {
	log = stripANSI(log)
	var out []string
	for _, l := range strings.FieldsFunc(log, func(r rune) bool { return r == '\n' || r == '\r' }) {
		l = reStatusLine.ReplaceAllString(l, "")
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// parseBaresipLog reads registration, call, DTMF and RTP statistics lines.
func parseBaresipLog(log string) baresipLogView {
	var v baresipLogView
	var summary string // rtcpsummary line waiting for its stats block
	var cur *baresipRTPStats
	lastPeer := ""
	closeCall := func(peer, reason string) {
		if peer == "" {
			peer = lastPeer
		}
		v.Closed = append(v.Closed, baresipClosed{Peer: peer, Reason: reason})
	}
	for _, l := range baresipLogLines(log) {
		if cur != nil {
			if m := reStatsRow.FindStringSubmatch(l); m != nil {
				a, _ := strconv.ParseFloat(m[2], 64)
				c, _ := strconv.ParseFloat(m[3], 64)
				switch m[1] {
				case "packets":
					cur.TxPackets, cur.RxPackets = int(a), int(c)
				case "avg. bitrate":
					cur.TxKbps, cur.RxKbps = a, c
				case "errors":
					cur.TxErrors, cur.RxErrors = int(a), int(c)
				case "pkt.report":
					cur.HaveRTCP = true
					cur.TxReported, cur.RxReported = int(a), int(c)
				case "lost":
					cur.TxLost, cur.RxLost = int(a), int(c)
				case "jitter":
					cur.TxJitter, cur.RxJitter = a, c
				}
				continue
			}
			v.Stats = append(v.Stats, *cur)
			cur = nil
		}
		switch {
		case l == "baresip is ready.":
			v.Ready = true
		case reRegOK.MatchString(l):
			v.Registered = append(v.Registered, reRegOK.FindStringSubmatch(l)[1])
		case reRegFail.MatchString(l):
			v.RegFailures = append(v.RegFailures, l)
		case reEstab.MatchString(l):
			summary = "" // an earlier call's, which had no stats block (never set up)
			lastPeer = reEstab.FindStringSubmatch(l)[2]
			v.Established = append(v.Established, lastPeer)
		case reSessClosed.MatchString(l):
			m := reSessClosed.FindStringSubmatch(l)
			closeCall(m[1], m[2])
		case reTerminate.MatchString(l):
			closeCall(reTerminate.FindStringSubmatch(l)[1], "local hangup")
		case reStreamErr.MatchString(l):
			closeCall("", "rtp stream error: "+reStreamErr.FindStringSubmatch(l)[1])
		case reSummary.MatchString(l):
			m := reSummary.FindStringSubmatch(l)
			found := false
			for i := len(v.Closed) - 1; i >= 0; i-- {
				if v.Closed[i].Peer == m[2] && v.Closed[i].Duration == "" {
					v.Closed[i].Duration, found = m[3], true
					break
				}
			}
			if !found {
				v.Closed = append(v.Closed, baresipClosed{Peer: m[2], Duration: m[3]})
			}
		case reDTMF.MatchString(l):
			v.DTMF += reDTMF.FindStringSubmatch(l)[1]
		case strings.HasPrefix(l, "EX=BareSip;"):
			summary = l
		case reStatsHead.MatchString(l):
			cur = &baresipRTPStats{Media: reStatsHead.FindStringSubmatch(l)[1], Summary: summary}
			summary = ""
		}
	}
	if cur != nil {
		v.Stats = append(v.Stats, *cur)
	}
	return v
}

// Log returns the whole log so far.
func (b *baresipProc) Log() string {
	data, err := os.ReadFile(b.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", b.LogPath, err)
	}
	return string(data)
}

// ParseLog parses the log so far.
func (b *baresipProc) ParseLog() baresipLogView { return parseBaresipLog(b.Log()) }

// WaitLog polls the parsed log until cond holds (or baresip has exited and
// the log still says no).
func (b *baresipProc) WaitLog(t *testing.T, what string, timeout time.Duration, cond func(baresipLogView) bool) baresipLogView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		running := b.Running()
		v := b.ParseLog()
		if cond(v) {
			return v
		}
		if !running {
			t.Fatalf("%s: exited (%v) and the log never showed %s", b.name, b.waitErr, what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the log shows no %s within %s (parsed: established=%q closed=%+v dtmf=%q stats=%d)",
				b.name, what, timeout, v.Established, v.Closed, v.DTMF, len(v.Stats))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitDTMF waits until the log shows digits received (all DTMF received so
// far, in order, must end with digits).
func (b *baresipProc) WaitDTMF(t *testing.T, digits string) {
	t.Helper()
	b.WaitLog(t, fmt.Sprintf("received DTMF %q", digits), baresipWaitTimeout, func(v baresipLogView) bool {
		return strings.HasSuffix(v.DTMF, digits)
	})
}

// WaitStats waits for the n-th (1-based) stream statistics block, printed
// when a call's stream is torn down after hang-up.
func (b *baresipProc) WaitStats(t *testing.T, n int) baresipRTPStats {
	t.Helper()
	v := b.WaitLog(t, fmt.Sprintf("RTP statistics block #%d", n), baresipWaitTimeout, func(v baresipLogView) bool {
		return len(v.Stats) >= n
	})
	return v.Stats[n-1]
}

// logTail logs the end of the log (without the status lines) and the last
// ctrl_tcp events.
func (b *baresipProc) logTail(t *testing.T) {
	t.Helper()
	lines := baresipLogLines(b.Log())
	if len(lines) > 150 {
		lines = lines[len(lines)-150:]
	}
	t.Logf("%s: log %s (last %d lines, status lines left out):\n%s", b.name, b.LogPath, len(lines), strings.Join(lines, "\n"))
	t.Logf("%s: last ctrl_tcp events:%s", b.name, b.eventSummary(30))
}

// ---- Kamailio as atlanta.example -----------------------------------------------

// atlantaKamailio is Kamailio running e2e/testdata/proxy/kamailio.cfg: the
// registrar + proxy of atlanta.example on pxKamIP:5060 (users alice/alicepw,
// bob/bobpw, carol/carolpw), logging every message it receives (PXLOG).
type atlantaKamailio struct {
	*pxDaemon
	run  string
	wrap []string
}

// startAtlantaKamailio starts Kamailio under wrap (nil: this namespace, where
// 127.0.0.2:5060 must be free) and waits until it answers kamcmd and
// listens. Cleanup stops it.
func startAtlantaKamailio(t *testing.T, wrap []string) *atlantaKamailio {
	t.Helper()
	kamailio := requireTool(t, "kamailio", "kamailio")
	requireTool(t, "kamcmd", "kamailio")
	requireTool(t, "ss", "iproute2")
	k := &atlantaKamailio{run: t.TempDir(), wrap: wrap}
	tmpl, err := os.ReadFile(filepath.Join(moduleRoot, "e2e", "testdata", "proxy", "kamailio.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(k.run, "kamailio.cfg")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(tmpl), "@RUNDIR@", k.run)), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(k.run, "kamailio.pid")
	argv := append(append([]string(nil), wrap...), kamailio,
		"-f", cfg, "-DD", "-E", "-P", pidFile, "-Y", k.run, "-m", "64", "-M", "8")
	k.pxDaemon = pxStartDaemon(t, "kamailio", pidFile, argv...)
	eventually(t, 10*time.Second, 100*time.Millisecond, "kamailio answers kamcmd and listens on udp "+pxAddr(pxKamIP, 5060), func() (bool, string) {
		if !k.running() {
			t.Fatalf("kamailio exited:\n%s", k.out.String())
		}
		if out, err := k.kamcmd(t, "core.version"); err != nil {
			return false, out
		}
		out, err := pxRun(t, wrap, "ss", "-Hlun")
		return err == nil && strings.Contains(out, pxAddr(pxKamIP, 5060)+" "), out
	})
	return k
}

func (k *atlantaKamailio) kamcmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return pxRun(t, k.wrap, append([]string{"kamcmd", "-s", "unix:" + filepath.Join(k.run, "kamailio_ctl")}, args...)...)
}

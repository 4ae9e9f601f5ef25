//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const pebbleVersion = "v2.10.1" // keep in step with scripts/install-test-deps.sh

// TestACMECertificate: with --acme the peer gets its HTTPS certificate for
// --fqdn from an ACME CA (pebble, Let's Encrypt's test CA), which validates
// the name against the peer's own ports through a DNS server of the test's;
// it then serves that certificate with HSTS, keeps the self-signed one for
// clients that connect by address, and --http redirects to HTTPS.
func TestACMECertificate(t *testing.T) {
	pebble := requireGoTool(t, "pebble")
	certs := filepath.Join(goEnv(t, "GOMODCACHE"), "github.com/letsencrypt/pebble/v2@"+pebbleVersion, "test/certs")
	if _, err := os.Stat(certs); err != nil {
		failOrSkip(t, "pebble's test certificates are missing (scripts/install-test-deps.sh installs pebble): "+err.Error())
	}
	const fqdn = "phone.acme-test.p2psip"
	dnsAddr := acmeDNS(t, fqdn)
	httpPort, tlsPort, dirPort, mgmtPort := freePort(t), freePort(t), freePort(t), freePort(t)

	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", dirPort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    filepath.Join(certs, "localhost/cert.pem"),
		"privateKey":                     filepath.Join(certs, "localhost/key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 86400}},
	}}
	cfgFile := filepath.Join(t.TempDir(), "pebble.json")
	data, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd := exec.Command(pebble, "-config", cfgFile, "-dnsserver", dnsAddr)
	// No artificial validation delays or nonce rejections: the test is about
	// the peer, not about pebble's chaos options.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pebble output:\n%s", out.String())
		}
	})
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", dirPort), 20*time.Second)

	dir := finalizeLocationProxy(t, fmt.Sprintf("https://127.0.0.1:%d", dirPort), certs)
	p := startPeerOpts(t, peerOpts{
		args: []string{"--https", fmt.Sprintf("127.0.0.1:%d", tlsPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
			"--acme", "--fqdn", fqdn, "--acme-directory", dir + "/dir"},
		// The peer trusts pebble's directory through the test's CA bundle.
		env: append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(certs, "pebble.minica.pem")),
	})

	roots := pebbleRoots(t, mgmtPort)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: fqdn},
	}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// The first handshake for fqdn makes the peer order the certificate;
	// the CA validates through DNS and the peer's ports meanwhile.
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", tlsPort))
	if err != nil {
		t.Fatalf("HTTPS with the ACME certificate for %s: %v\npeer log:\n%s", fqdn, err, p.stderr.String())
	}
	_ = resp.Body.Close()
	leaf := resp.TLS.PeerCertificates[0]
	if resp.StatusCode != 200 || leaf.VerifyHostname(fqdn) != nil {
		t.Fatalf("status %d, certificate for %v", resp.StatusCode, leaf.DNSNames)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(hsts, "max-age=") {
		t.Fatalf("no HSTS with a trusted certificate: %v", resp.Header)
	}
	if _, err := os.Stat(filepath.Join(p.DataDir, "acme", fqdn)); err != nil {
		t.Fatalf("the certificate is not kept in the data dir: %v", err)
	}

	// Clients that connect by address (other peers, join URLs) still get the
	// self-signed certificate, whose fingerprint the ready block prints.
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	byIP := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	if byIP.Equal(leaf) || byIP.Issuer.String() == leaf.Issuer.String() {
		t.Fatalf("a client without SNI got the ACME certificate (issuer %s)", byIP.Issuer)
	}

	// fqdn resolves only in the test's DNS: ask by address with its Host header.
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/api/config?x=1", httpPort), nil)
	req.Host = fqdn
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if want := fmt.Sprintf("https://%s:%d/api/config?x=1", fqdn, tlsPort); resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Fatalf("--http: %d %q, want 301 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// finalizeLocationProxy puts a proxy in front of pebble that adds the
// order's Location to finalize responses. Pebble finalizes asynchronously
// and answers "processing" without a Location, from which
// golang.org/x/crypto/acme cannot find the order to wait for; Let's
// Encrypt's Boulder sends the Location, so production is unaffected. Every
// pebble URL in bodies and headers is rewritten to the proxy's.
func finalizeLocationProxy(t *testing.T, pebbleBase, certs string) string {
	t.Helper()
	target, _ := url.Parse(pebbleBase)
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "localhost/cert.pem"), filepath.Join(certs, "localhost/key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		body = []byte(strings.ReplaceAll(string(body), pebbleBase, base))
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
		for _, h := range []string{"Location", "Link"} {
			for i, v := range resp.Header.Values(h) {
				resp.Header[h][i] = strings.ReplaceAll(v, pebbleBase, base)
			}
		}
		if id, ok := strings.CutPrefix(resp.Request.URL.Path, "/finalize-order/"); ok && resp.Header.Get("Location") == "" {
			resp.Header.Set("Location", base+"/my-order/"+id)
		}
		return nil
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return base
}

// acmeDNS answers A queries for fqdn with 127.0.0.1 and nothing else, so
// the CA's validation reaches the peer on loopback only. It serves UDP and
// TCP on one port (pebble asks over TCP).
func acmeDNS(t *testing.T, fqdn string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if strings.EqualFold(question.Name, fqdn+".") && question.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(fqdn + ". 60 IN A 127.0.0.1")
				m.Answer = append(m.Answer, rr)
			}
		}
		if !strings.EqualFold(q.Question[0].Name, fqdn+".") {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// pebbleRoots fetches the root that pebble (re)generated at start.
func pebbleRoots(t *testing.T, mgmtPort int) *x509.CertPool {
	t.Helper()
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := insecure.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
	if err != nil {
		t.Fatalf("pebble management API: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	pem, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble root: %s", pem)
	}
	return pool
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func waitTCP(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after %s", addr, within)
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// requireGoTool finds a Go tool that scripts/install-test-deps.sh installs
// into GOBIN or GOPATH/bin (which PATH may lack).
func requireGoTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{goEnv(t, "GOBIN"), filepath.Join(goEnv(t, "GOPATH"), "bin")} {
		if p := filepath.Join(dir, name); dir != "" && isExecutable(p) {
			return p
		}
	}
	failOrSkip(t, name+" not found: run scripts/install-test-deps.sh (it installs it with go install)")
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

// failOrSkip skips a test whose tool or privilege is missing, and fails it
// in CI, where every test must run.
func failOrSkip(t *testing.T, msg string) {
	t.Helper()
	if inCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

//go:build e2e

package e2e

import (
	"context"
	"debug/elf"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRunsLikeTheImage builds the binary the way the Dockerfile does (static, no
// cgo) and runs it the way the distroless image does: configured by environment
// only, no flags, a minimal environment (no HOME, no PATH) and, when we can, as
// the image's nonroot user (uid 65532).
func TestRunsLikeTheImage(t *testing.T) {
	// Not t.TempDir: its 0700 parents would keep uid 65532 out.
	dir, err := os.MkdirTemp("", "p2psip-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "p2psip")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./server")
	build.Dir = moduleRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}

	// distroless/static has no dynamic loader or libc: the binary must need none.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("binary has a PT_INTERP segment (dynamically linked); the image cannot run it")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}
	f.Close()

	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		const nonroot = 65532 // distroless "nonroot"
		if err := os.Chown(data, nonroot, nonroot); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: nonroot, Gid: nonroot}
	}

	p := startPeerOpts(t, peerOpts{
		name:       "image",
		bin:        bin,
		noDefaults: true,
		cred:       cred,
		// As the image: P2PSIP_DATA and P2PSIP_HTTPS. The port is free-picked and
		// mDNS off so the test neither clashes with nor discovers other peers.
		env: []string{
			"P2PSIP_DATA=" + data,
			"P2PSIP_HTTPS=127.0.0.1:0",
			"P2PSIP_MDNS=false",
			"P2PSIP_P2P_HOST=127.0.0.1",
			"P2PSIP_SIP=127.0.0.1:0",
			"P2PSIP_SIPS=127.0.0.1:0",
		},
	})
	if code, body := get(t, p.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	entries, err := os.ReadDir(data)
	if err != nil || len(entries) == 0 {
		t.Errorf("P2PSIP_DATA=%s holds nothing after start (err %v): the env var was not used", data, err)
	}
	if code, elapsed, timedOut := p.stop(t); code != 0 || timedOut {
		t.Errorf("after SIGTERM: exit %d after %s (timed out %v)", code, elapsed, timedOut)
	}
}

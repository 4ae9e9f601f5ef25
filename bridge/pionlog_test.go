package bridge

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

func TestPionLogLevels(t *testing.T) {
	var buf bytes.Buffer
	l := pionLogs{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}.NewLogger("srtp")
	l.Tracef("trace %d", 1)
	l.Debug("debug")
	l.Infof("replayed %d", 7)
	l.Warn("warn")
	l.Errorf("failed %s", "x")
	if got := buf.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, `level=WARN msg="failed x" pion=srtp`) {
		t.Fatalf("at info, want pion's error alone as a warning:\n%s", got)
	}
	buf.Reset()
	l = pionLogs{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: levelTrace}))}.NewLogger("ice")
	l.Trace("t")
	l.Infof("i %d", 2)
	if got := buf.String(); !strings.Contains(got, `msg=t pion=ice`) || !strings.Contains(got, `level=DEBUG msg="i 2"`) {
		t.Fatalf("at trace:\n%s", got)
	}
}

// Browser legs share the bridge's DTLS certificate: the answers of two
// calls carry one fingerprint.
func TestSharedCertificate(t *testing.T) {
	b := newTestBridge(t)
	fp := regexp.MustCompile(`a=fingerprint:sha-256 \S+`)
	var prints []string
	for range 2 {
		ph := newFakePhone(t)
		s, offer, err := b.OfferFromPlain(context.Background(), ph.sdp("pcmu", "sendrecv"), Leg{IP: netip.MustParseAddr("127.0.0.1")}, Events{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		prints = append(prints, fp.FindString(string(offer)))
	}
	if prints[0] == "" || prints[0] != prints[1] {
		t.Fatalf("fingerprints %q, want one shared", prints)
	}
	// An old certificate is replaced for new calls.
	b.mu.Lock()
	old := b.cert
	b.certAt = b.certAt.Add(-certMaxAge - 1)
	b.mu.Unlock()
	if _, err := b.certificate(); err != nil {
		t.Fatal(err)
	}
	if b.cert == old {
		t.Fatal("a certificate older than certMaxAge was kept")
	}
}

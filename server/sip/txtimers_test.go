package sip

import (
	"reflect"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// TestTxTimerFields pins the sipgo field releaseServerTx reads.
func TestTxTimerFields(t *testing.T) {
	f := reflect.ValueOf(&sip.ServerTx{}).Elem().FieldByName("timer_l")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*time.Timer]() {
		t.Fatalf("sip.ServerTx has no timer_l *time.Timer (sipgo changed): releaseServerTx stops nothing")
	}
	if sip.Timer_M != sip.T1 {
		t.Fatalf("Timer M is %v, want T1 (%v)", sip.Timer_M, sip.T1)
	}
}

// TestReleaseServerTx: a 2xx on a reliable INVITE server transaction
// starts Timer L, and releaseServerTx stops it; over UDP it keeps running.
func TestReleaseServerTx(t *testing.T) {
	for _, c := range []struct {
		transport string
		stopped   bool
	}{{"TCP", true}, {"UDP", false}} {
		t.Run(c.transport, func(t *testing.T) {
			req := carol.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "timers-"+c.transport, 1, nil, nil)
			req.SetTransport(c.transport)
			rec := siptest.NewServerTxRecorder(req)
			defer rec.Terminate()
			if err := rec.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil)); err != nil {
				t.Fatal(err)
			}
			timer := timerField(rec.ServerTx, "timer_l")
			if timer == nil {
				t.Fatal("no Timer L after a 2xx")
			}
			releaseServerTx(rec.ServerTx, req)
			if running := timer.Stop(); running == c.stopped {
				t.Fatalf("Timer L running after release: %v, want %v", running, !c.stopped)
			}
		})
	}
}

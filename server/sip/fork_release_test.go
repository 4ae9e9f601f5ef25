package sip

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// TestForkReleasesBranches: soon after a fork is over, what its branches
// held (the forwarded copy, its client transaction, the responses) is
// garbage, although the server transaction, which keeps the fork through
// its CANCEL callback, lives on (32 s over UDP: RFC 6026 Timer L).
func TestForkReleasesBranches(t *testing.T) {
	e := newBridgeEnv(t)
	released := make(chan struct{}, 1)
	e.down.setScript(func(req *sip.Request) []*sip.Response {
		if req.Method == sip.INVITE {
			runtime.AddCleanup(req, func(ch chan struct{}) { ch <- struct{}{} }, released)
		}
		return nil
	})
	// carol's phone here calls bob's phone at another peer: no bridging.
	req := carol.request(t, sip.INVITE, "sip:bob@"+testDomain, "bob", "", "release-1", 1, nil, plainSDP("carol-offer"))
	rec := siptest.NewServerTxRecorder(req)
	e.onRequest(req, rec)
	if res := last(t, rec.Result()); res.StatusCode != 200 {
		t.Fatalf("call answered %s", res.StartLine())
	}
	defer runtime.KeepAlive(rec)
	// The branch's client transaction lives on for Timer M (T1 here).
	for range 300 {
		dropStoppedTimers()
		runtime.GC()
		select {
		case <-released:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the forwarded INVITE is still reachable after its fork ended")
}

// dropStoppedTimers makes the runtime forget stopped timers. A stopped
// timer stays in its P's timer heap, closure and all, until its time
// comes or until a quarter of that heap is stopped timers (Go 1.23+); a
// stopped sipgo transaction timer (Timer B: 32 s) would keep its
// transaction reachable that long in a test, where heaps hold few
// timers. Stopping many timers on every P tips that balance.
func dropStoppedTimers() {
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := make([]*time.Timer, 1024)
			for i := range ts {
				ts[i] = time.AfterFunc(time.Hour, func() {})
			}
			for _, t := range ts {
				t.Stop()
			}
			runtime.Gosched()
		}()
	}
	wg.Wait()
}

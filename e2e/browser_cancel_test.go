//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cancelRounds is how many calls testCancelWhileRinging cancels: the fault
// it keeps fixed (issue 10 §4) lost the CANCEL every time.
const cancelRounds = 3

// cancelLimit is how soon the callee's page must leave the ringing state
// after the caller's click.
const cancelLimit = time.Second

// hangupClickJS records, in the page, the wall-clock time (ms since the
// epoch) of every click on #hangup, before the page's own handler runs.
const hangupClickJS = `(() => {
  if (!window.__e2eHangupClicks) {
    window.__e2eHangupClicks = [];
    document.addEventListener('click', e => {
      if (e.target && e.target.closest && e.target.closest('#hangup'))
        window.__e2eHangupClicks.push(performance.timeOrigin + performance.now());
    }, true);
  }
  return window.__e2eHangupClicks.length;
})()`

// callLeft is what the callee's page recorded after the caller's click:
// its #call-state transitions since then and its clock's origin.
type callLeft struct {
	Origin      float64  `json:"origin"`
	Transitions []string `json:"transitions"`
}

// testCancelWhileRinging: A (on peer 1) calls B (on peer 2); while B rings,
// A hangs up. The CANCEL crosses from peer 1 to peer 2 over the overlay's
// stream, and B's page leaves the ringing state (#call-state incoming)
// within cancelLimit of A's click; neither page ends up in a call.
func (s *softphoneEnv) testCancelWhileRinging(t *testing.T) {
	a, b := s.a, s.b
	t.Cleanup(func() { hangUpAll(a, b) })
	evalIn[bool](t, b, `window.__e2e.autoAnswer = false`)
	a.typeInto(t, "#dial", s.bName)
	var took []time.Duration
	for round := 1; round <= cancelRounds; round++ {
		// The page shows "ended" for a few seconds; a call may start from it.
		a.waitCall(t, "idle", "ended")
		b.waitCall(t, "idle", "ended")
		a.click(t, "#call")
		b.waitCall(t, "incoming")
		// A rings: a provisional answer came back, so the INVITE's
		// transaction at peer 2 can be cancelled (not merely abandoned).
		a.waitCall(t, "ringing")

		clicks := evalIn[int](t, a, hangupClickJS)
		mark := evalIn[int](t, b, `window.__e2e.transitions.length`)
		clicked := time.Now()
		a.click(t, "#hangup")

		st := b.waitForWithin(t, browserWait, fmt.Sprintf("round %d: B leaves the ringing state after A hung up", round), func(st phoneState) bool {
			return st.Call != "incoming"
		})
		seen := time.Since(clicked)
		if st.Call != "ended" && st.Call != "idle" {
			t.Errorf("round %d: B's #call-state went from incoming to %q after A cancelled; want ended or idle: %s", round, st.Call, st)
		}
		a.waitCall(t, "ended", "idle")

		// The interval from the pages' own clocks (one host, one wall
		// clock): A's click on #hangup to B's first #call-state change.
		clickAt := evalIn[[]float64](t, a, `window.__e2eHangupClicks`)
		left := evalIn[callLeft](t, b, fmt.Sprintf(`({origin: performance.timeOrigin, transitions: window.__e2e.transitions.slice(%d)})`, mark))
		leftAt, ok := firstCallChange(left)
		var d time.Duration
		if len(clickAt) > clicks && ok {
			d = time.Duration((leftAt - clickAt[clicks]) * float64(time.Millisecond)).Round(time.Millisecond)
			t.Logf("round %d: B left ringing %s after A's click (pages' clocks; %s as the test polled); B's transitions: %q",
				round, d, seen.Round(time.Millisecond), left.Transitions)
		} else {
			// No in-page record: the test's own clock bounds it from above.
			d = seen.Round(time.Millisecond)
			t.Logf("round %d: B left ringing within %s of A's click (the test's poll; in-page clicks %v, B's transitions %q)",
				round, d, clickAt, left.Transitions)
		}
		took = append(took, d)
		if d >= cancelLimit {
			t.Errorf("round %d: B's page left the ringing state %s after A hung up; want under %s (the CANCEL across the peers was late or lost)",
				round, d, cancelLimit)
		}
	}
	t.Logf("cancel while ringing, A's click → B leaves ringing: %v", took)
}

// firstCallChange returns the wall-clock time (ms since the epoch) of the
// first #call-state transition in l that leaves "incoming".
func firstCallChange(l callLeft) (float64, bool) {
	for _, tr := range l.Transitions {
		rest, ok := strings.CutPrefix(tr, "call-state=")
		if !ok {
			continue
		}
		state, at, ok := strings.Cut(rest, "@")
		if !ok || state == "incoming" {
			continue
		}
		ms, err := strconv.ParseFloat(at, 64)
		if err != nil {
			return 0, false
		}
		return l.Origin + ms, true
	}
	return 0, false
}

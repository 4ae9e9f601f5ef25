package sip

import (
	"reflect"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
)

// Transactions that outlive their use.
//
// sipgo (v1.7.3) does not stop an INVITE transaction's Accepted-state
// timer when the transaction is terminated: Timer M of a client
// transaction and Timer L of a server transaction (RFC 6026 §8.4, §8.7)
// run for 64*T1 = 32 s whatever happened, and each timer's closure keeps
// its transaction, the request and the responses reachable all that
// time. At hundreds of calls a second those dead transactions were most of
// a peer's live heap, and the garbage collector's mark phase over them
// was the peer's tail latency on one core (bench/README.md, issue 10).
//
//   - Timer M only lets a client transaction pass 2xx retransmissions up
//     in the Accepted state. This peer terminates every client transaction
//     as soon as it has its final response (fork, CANCEL, its own BYE and
//     INFO), so the timer served nothing: it is cut to T1. The 2xx
//     retransmissions reach onStrayResponse instead (accepted.go).
//   - Timer L lets a server transaction absorb the INVITE's
//     retransmissions. Over UDP the table of finished transactions does
//     that instead (udpfinal.go), which terminates the transaction and
//     stops the timer. Over a reliable transport sipgo terminates the
//     transaction when the handler returns; releaseServerTx stops the
//     timer then.
func init() {
	sip.Timer_M = sip.T1
}

// releaseServerTx stops the Timer L of a finished INVITE server
// transaction on a reliable transport (sipgo terminates those when the
// handler returns, but leaves the timer running). The field is read by
// reflection: TestTxTimerFields fails if a sipgo upgrade renames it, and
// until then nothing is stopped (memory as before, no harm).
func releaseServerTx(stx sip.ServerTransaction, req *sip.Request) {
	tx, ok := stx.(*sip.ServerTx)
	if !ok || !req.IsInvite() || !sip.IsReliable(req.Transport()) {
		return
	}
	stopTimerL(tx)
}

// stopTimerL stops a terminated server transaction's Timer L, by
// reflection (see releaseServerTx).
func stopTimerL(tx *sip.ServerTx) {
	if t := timerField(tx, "timer_l"); t != nil {
		t.Stop()
	}
}

// timerField reads a *time.Timer field of a sipgo transaction; nil when
// there is none by that name (or it is not set).
func timerField(tx any, name string) *time.Timer {
	v := reflect.ValueOf(tx)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[*time.Timer]() {
		return nil
	}
	return *(**time.Timer)(unsafe.Pointer(f.UnsafeAddr()))
}

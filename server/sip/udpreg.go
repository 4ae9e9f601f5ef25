package sip

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
)

// The UDP registrar path. A REGISTER for an overlay AOR that arrives over
// UDP is answered here, next to the socket, instead of through sipgo's
// transaction layer: sipgo would parse it a second time (the guard has
// parsed it already), start a goroutine for it whose stack grows on every
// message, and keep a full server transaction with its timers for 32 s to
// answer retransmissions. Here a fixed pool of workers runs the same
// registrar (onRegister), and a table keeps each final response's bytes
// for Timer J, which is all a non-INVITE server transaction needs to do
// (RFC 3261 §17.2.2). The concurrency of the pool is also what lets the
// overlay sign the records of REGISTERs that arrive together in one batch.
//
// Everything else (other methods, REGISTERs of public AORs, which the
// proxy relays with a client transaction, and REGISTERs over TCP, TLS and
// WebSocket) stays on sipgo.

const (
	// udpRegWorkers bounds the REGISTERs being processed at once. A
	// REGISTER waits for the overlay (a DHT round trip when other peers
	// hold the record), so the pool is much larger than the core count.
	udpRegWorkers = 128
	// udpRegIdle is how long a worker waits for work before it ends.
	// Workers start on demand: idle goroutines parked on a channel
	// would pull down the runtime's average stack size, which new
	// goroutines (sipgo starts one per message) start with, and make
	// every other message's goroutine grow its stack.
	udpRegIdle = 5 * time.Second
	// udpRegQueue is the backlog in front of the workers. It absorbs a
	// second or two of load at thousands of REGISTERs a second, the
	// length of a GC cycle over a large registration table on one core;
	// a REGISTER waiting in it is retransmitted (Timer E) and the
	// retransmissions are absorbed.
	udpRegQueue = 16384
	// udpRegShed is the number of times a REGISTER (its first sending
	// and its retransmissions) may find the queue full on the parsed
	// way: the first udpRegShed-1 times it is dropped, as a full socket
	// buffer would drop it, the udpRegShed-th time it gets 503. Dropping
	// first rides out a dip in capacity (a GC cycle): the client
	// retransmits at 0.5 and 1.5 s (Timer E, RFC 3261 §17.1.2.2) and is
	// served late rather than refused. A REGISTER still refused then
	// meets a lasting overload, and 503 with Retry-After tells its
	// client to back off (RFC 3261 §21.5.4) where more retransmissions,
	// each parsed again, would only deepen it.
	udpRegShed = 3
	// maxShed bounds the dropped REGISTERs kept in the table (their
	// keys are the sender's to choose, up to a datagram's size): past
	// it a REGISTER that finds the queue full gets 503 at once.
	maxShed = 4096
	// udpRegPersist is how many seconds in a row the registrar drops
	// REGISTERs unread (see dropUnread) before it takes the overload for
	// a lasting one and answers 503 instead: longer than the slowdown of
	// a GC cycle over a large heap on one core.
	udpRegPersist = 10
	// timerJ is how long a final response is kept to answer
	// retransmissions of its request: 64*T1 over UDP (RFC 3261 §17.2.2).
	timerJ = 64 * 500 * time.Millisecond
	// maxRegTx bounds the kept answers (about 600 bytes each, see
	// keptAnswers): past it the oldest go early (a late retransmission of theirs
	// is then processed again, which for a REGISTER rewrites the same
	// binding). 2^19 covers Timer J at 16000 REGISTERs a second.
	maxRegTx = 1 << 19
)

// udpRegistrar runs REGISTERs received on one UDP socket.
type udpRegistrar struct {
	s    *Service
	conn *guardConn
	jobs chan *regTx

	workers atomic.Int32 // running workers
	idle    atomic.Int32 // workers waiting for a job
	dropSec atomic.Int64 // Unix second of the last REGISTER dropped unread
	dropRun atomic.Int64 // seconds in a row, up to dropSec, with such drops
	stopped chan struct{}

	mu   sync.Mutex
	txs  map[string]*regTx // guarded by mu; in progress or shed, by RFC 3261 §17.2.3 key
	kept *keptAnswers      // guarded by mu; completed: their final responses
	done []doneTx          // guarded by mu; shed ones, in order of expiry
	head int               // guarded by mu; first live index of done
}

type doneTx struct {
	key string
	at  time.Time // expiry
}

func newUDPRegistrar(s *Service, conn *guardConn) *udpRegistrar {
	return &udpRegistrar{s: s, conn: conn, jobs: make(chan *regTx, udpRegQueue), txs: map[string]*regTx{}, kept: newKeptAnswers(),
		stopped: make(chan struct{})}
}

// stop ends the workers; call it once the socket is closed.
func (r *udpRegistrar) stop() { close(r.stopped) }

// work runs queued REGISTERs until it has been idle for udpRegIdle.
func (r *udpRegistrar) work() {
	defer func() {
		if r.workers.Add(-1) == 0 {
			// Quiet now: nothing calls complete to drop the kept
			// responses, so drop them once their Timer J has run.
			time.AfterFunc(timerJ, func() { r.sweep(time.Now()) })
		}
	}()
	idle := time.NewTimer(udpRegIdle)
	defer idle.Stop()
	for {
		r.idle.Add(1)
		select {
		case tx := <-r.jobs:
			r.idle.Add(-1)
			r.s.onRegister(tx.req, tx)
			tx.finish()
			// The table keeps the entry for Timer J: not the parsed
			// request, which would keep the GC busy for nothing.
			tx.req, tx.raw = nil, nil
			idle.Reset(udpRegIdle)
		case <-idle.C:
			r.idle.Add(-1)
			if len(r.jobs) > 0 {
				// A job came with the timer, counting on this worker.
				idle.Reset(udpRegIdle)
				continue
			}
			return
		case <-r.stopped:
			r.idle.Add(-1)
			return
		}
	}
}

// enqueue queues tx and starts a worker when none is waiting; false when
// the queue is full.
func (r *udpRegistrar) enqueue(tx *regTx) bool {
	select {
	case r.jobs <- tx:
	default:
		return false
	}
	if r.idle.Load() == 0 && r.workers.Load() < udpRegWorkers {
		r.workers.Add(1)
		go r.work()
	}
	return true
}

// take handles req if it is a REGISTER this path serves, and reports
// whether it did; false hands it to sipgo.
func (r *udpRegistrar) take(req *sip.Request, raw []byte, from net.Addr) bool {
	if req.Method != sip.REGISTER {
		return false
	}
	to := req.To()
	if to == nil || !r.s.isOverlayHost(to.Address.Host) {
		return false // 400 from the registrar, or relayed by sipgo
	}
	key, ok := regTxKey(req)
	if !ok {
		return false
	}
	// The key also names the source: the branch and sent-by are the
	// client's to choose, so another client (a copied or weak branch, a
	// shared private sent-by behind NATs) must not match this entry and
	// have its request swallowed while the kept answer goes elsewhere.
	key = string(appendSource(append([]byte(key), '|'), from))
	r.mu.Lock()
	tx := r.txs[key]
	if tx != nil && !tx.shed {
		res := tx.last
		r.mu.Unlock()
		// §17.2.2: a retransmission in the Trying state is absorbed;
		// later ones get the last response again.
		if res != nil {
			r.conn.send(res, tx.addr)
		}
		return true
	}
	if tx == nil {
		if res := r.kept.get(key); res != nil {
			r.mu.Unlock()
			r.conn.send(res, from) // the key names the source
			return true
		}
		tx = &regTx{r: r, key: key, addr: from}
		r.txs[key] = tx
	}
	// A new transaction, or the retransmission of one the full queue
	// dropped: it takes this request.
	tx.req, tx.raw, tx.shed = req, bytes.Clone(raw), false
	r.mu.Unlock()
	if !r.enqueue(tx) {
		r.overloaded(tx, req)
	}
	return true
}

// overloaded deals with a REGISTER that found the queue full: dropped,
// kept in the table as shed so that its retransmission is tried again,
// until udpRegShed drops, then answered 503 (see udpRegShed). Either
// way the overload does not reach sipgo's costlier path.
func (r *udpRegistrar) overloaded(tx *regTx, req *sip.Request) {
	r.mu.Lock()
	tx.drops++
	if tx.drops < udpRegShed && len(r.done)-r.head < maxShed {
		tx.shed = true
		tx.req, tx.raw = nil, nil
		// Goes after Timer J should the client give up; an entry
		// queued again by then is left alone (dropExpired). Each drop
		// adds one, so that none is left without.
		r.done = append(r.done, doneTx{key: tx.key, at: time.Now().Add(timerJ)})
		r.mu.Unlock()
		r.s.m.registersShed.Inc()
		return
	}
	r.mu.Unlock()
	// The answer is kept like any other, so retransmissions get it too.
	r.s.m.requests.WithLabelValues("REGISTER").Inc()
	r.s.respond(tx, req, 503, "Service Unavailable (registrar busy)", sip.NewHeader("Retry-After", "5"))
	tx.finish()
	tx.req, tx.raw = nil, nil
}

// regTxKey is the server transaction key of RFC 3261 §17.2.3: the top
// Via's branch and sent-by, and the method. The guard has given RFC 2543
// requests a branch already (addRFC2543Branch).
func regTxKey(req *sip.Request) (string, bool) { return txKey(req, sip.REGISTER, "") }

// txKey is req's transaction key (see regTxKey) as method, followed by
// "|" and source unless source is empty.
func txKey(req *sip.Request, method sip.RequestMethod, source string) (string, bool) {
	via := req.Via()
	if via == nil {
		return "", false
	}
	branch, ok := via.Params.Get("branch")
	if !ok || !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) || len(branch) == len(sip.RFC3261BranchMagicCookie) {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(branch) + len(via.Host) + len(method) + len(source) + 12)
	b.WriteString(branch)
	b.WriteByte('|')
	b.WriteString(strings.ToLower(via.Host))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(via.Port))
	b.WriteByte('|')
	b.WriteString(string(method))
	if source != "" {
		b.WriteByte('|')
		b.WriteString(source)
	}
	return b.String(), true
}

// complete moves tx's final response to the kept answers for Timer J,
// and drops expired ones.
func (r *udpRegistrar) complete(tx *regTx, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.txs[tx.key] == tx {
		delete(r.txs, tx.key)
	}
	r.kept.put(tx.key, tx.last, now.Add(timerJ))
	r.dropExpired(now)
}

// sweep drops the kept responses whose Timer J has fired.
func (r *udpRegistrar) sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropExpired(now)
}

// dropExpired drops expired answers, the oldest ones past maxRegTx, and
// shed transactions whose client gave up (mu held).
func (r *udpRegistrar) dropExpired(now time.Time) {
	r.kept.expire(now, maxRegTx)
	for r.head < len(r.done) && r.done[r.head].at.Before(now) {
		if tx := r.txs[r.done[r.head].key]; tx != nil && tx.shed {
			delete(r.txs, r.done[r.head].key)
		}
		r.done[r.head] = doneTx{}
		r.head++
	}
	// Reuse the slice's front once half of it is spent.
	if r.head > 1024 && r.head*2 >= len(r.done) {
		n := copy(r.done, r.done[r.head:])
		clear(r.done[n:])
		r.done = r.done[:n]
		r.head = 0
	}
}

// forget drops tx without keeping a response: the handler sent none, so
// a retransmission is processed anew.
func (r *udpRegistrar) forget(tx *regTx) {
	r.mu.Lock()
	if r.txs[tx.key] == tx {
		delete(r.txs, tx.key)
	}
	r.mu.Unlock()
}

// pending is the number of transactions in the table, in progress or
// kept (tests, metrics).
func (r *udpRegistrar) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.txs) + r.kept.len()
}

// regTx is a non-INVITE server transaction over UDP (RFC 3261 §17.2.2)
// reduced to what a registrar needs: it sends responses to the request's
// source (§18.2.2, RFC 3581) and keeps the last one to answer
// retransmissions; it has no ACKs and no CANCEL (§9.2: a REGISTER is
// answered at once).
type regTx struct {
	r    *udpRegistrar
	key  string
	req  *sip.Request
	raw  []byte // the request as screened, for rawAnswer; nil: sipgo builds answers
	addr net.Addr

	// done is made only if someone asks (Done): the table keeps
	// completed transactions for Timer J, so each byte counts.
	doneMu     sync.Mutex
	done       chan struct{} // guarded by doneMu
	terminated bool          // guarded by doneMu
	final      bool          // set by the worker's goroutine only
	last       []byte        // guarded by r.mu; the last response sent
	drops      int           // guarded by r.mu; times the queue was full for it
	shed       bool          // guarded by r.mu; its latest sending was dropped (see overloaded)
}

var _ sip.ServerTransaction = (*regTx)(nil)

// Respond sends res and, if final, completes the transaction.
func (tx *regTx) Respond(res *sip.Response) error {
	if tx.final {
		return errTxDone
	}
	var buf bytes.Buffer
	buf.Grow(768) // a REGISTER's answer, with a few Contacts, in one allocation
	res.StringWrite(&buf)
	return tx.answer(buf.Bytes(), res.IsProvisional())
}

// answer sends a serialised response and, unless provisional, completes
// the transaction.
func (tx *regTx) answer(out []byte, provisional bool) error {
	if tx.final {
		return errTxDone
	}
	tx.r.mu.Lock()
	tx.last = out
	tx.r.mu.Unlock()
	if err := tx.r.conn.send(out, tx.addr); err != nil {
		return err
	}
	if provisional {
		return nil
	}
	tx.final = true
	tx.r.complete(tx, time.Now())
	tx.Terminate()
	return nil
}

// finish runs after the handler: without a final response there is
// nothing to repeat, so the entry goes.
func (tx *regTx) finish() {
	if !tx.final {
		tx.r.forget(tx)
		tx.Terminate()
	}
}

// Acks implements sip.ServerTransaction; a REGISTER has none.
func (tx *regTx) Acks() <-chan *sip.Request { return nil }

// OnCancel implements sip.ServerTransaction; a REGISTER is not cancelled.
func (tx *regTx) OnCancel(sip.FnTxCancel) bool { return false }

// Terminate implements sip.Transaction.
func (tx *regTx) Terminate() {
	tx.doneMu.Lock()
	defer tx.doneMu.Unlock()
	if !tx.terminated {
		tx.terminated = true
		if tx.done != nil {
			close(tx.done)
		}
	}
}

// OnTerminate implements sip.Transaction; nobody on this path uses it.
func (tx *regTx) OnTerminate(sip.FnTxTerminate) bool { return false }

// Done implements sip.Transaction.
func (tx *regTx) Done() <-chan struct{} {
	tx.doneMu.Lock()
	defer tx.doneMu.Unlock()
	if tx.done == nil {
		tx.done = make(chan struct{})
		if tx.terminated {
			close(tx.done)
		}
	}
	return tx.done
}

// Err implements sip.Transaction.
func (tx *regTx) Err() error { return nil }

// absorbed answers a retransmission of a REGISTER the table holds
// (§17.2.2) straight from the datagram, before the guard parses it: under
// overload the retransmissions come by the tens of thousands, and parsing
// each only to find it in the table deepened the overload. A miss (or a
// top Via this quick reading does not take) goes the usual way, where
// take finds the entry again if there is one, so this is only a shortcut.
func (r *udpRegistrar) absorbed(msg []byte, from net.Addr) bool {
	if !bytes.HasPrefix(msg, []byte("REGISTER ")) {
		return false
	}
	// The key is built on the stack: most of these datagrams are only
	// looked up and dropped or answered.
	var buf [256]byte
	kb, ok := appendRawTxKey(buf[:0], msg)
	if !ok {
		return false
	}
	kb = appendSource(append(kb, '|'), from)
	key := unsafe.String(unsafe.SliceData(kb), len(kb)) // not kept: lookups only
	r.mu.Lock()
	tx := r.txs[key]
	var res []byte
	shed := false
	if tx == nil {
		res = r.kept.get(key)
	} else {
		res, shed = tx.last, tx.shed
	}
	r.mu.Unlock()
	switch {
	case tx == nil && res == nil:
		// New: take queues it, unless the queue is full.
		return r.dropUnread(msg)
	case shed:
		return false // dropped before: take tries to queue it again
	}
	if res != nil {
		r.conn.send(res, from) // the key names the source
	}
	return true
}

// dropUnread drops a new REGISTER for this registrar's domain when the
// queue is full, before the guard parses it, as a full socket buffer
// would drop it. Under overload most of the CPU went into parsing
// REGISTERs only to find the queue full, then their retransmissions, so
// that overload fed itself until steps of load failed whole; unread,
// they cost next to nothing, the queue is served at full speed, and the
// client's retransmission (Timer E) gets in when there is room. A
// lasting overload (drops in each of udpRegPersist seconds) goes back to
// the parsed way, where a REGISTER that keeps finding the queue full
// gets 503 and its client backs off (see overloaded). It goes by the
// Request-URI (the registrar's domain, RFC 3261 §10.2), not the To: a
// REGISTER for a public AOR sent to this domain, which sipgo would relay,
// is dropped too while the queue is full.
func (r *udpRegistrar) dropUnread(msg []byte) bool {
	if len(r.jobs) < cap(r.jobs) || !r.s.isOverlayHost(rawRequestHost(msg)) {
		return false
	}
	now := time.Now().Unix()
	switch last := r.dropSec.Swap(now); {
	case last == now:
	case last == now-1:
		r.dropRun.Add(1)
	default:
		r.dropRun.Store(1)
	}
	if r.dropRun.Load() > udpRegPersist {
		return false
	}
	r.s.m.registersShed.Inc()
	return true
}

// rawRequestHost is the host of a request line's SIP URI, as sent ("" if
// it does not read as one): "REGISTER sip:host[:port][;…] SIP/2.0".
func rawRequestHost(msg []byte) string {
	line, _, _ := bytes.Cut(msg, []byte("\r\n"))
	_, uri, _ := bytes.Cut(line, []byte(" "))
	uri, _, _ = bytes.Cut(uri, []byte(" "))
	rest, ok := bytes.CutPrefix(uri, []byte("sip:"))
	if !ok {
		return ""
	}
	if at := bytes.IndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	if end := bytes.IndexAny(rest, ":;?>"); end >= 0 {
		rest = rest[:end]
	}
	return string(rest)
}

// rawTxKey is regTxKey read from a REGISTER's raw top Via, for the plain
// form phones send ("SIP/2.0/UDP host[:port];…;branch=z9hG4bK…"); ok is
// false for anything else (IPv6 references, white space around
// separators, folding), which then takes the parsed way.
func rawTxKey(msg []byte) (string, bool) {
	k, ok := appendRawTxKey(nil, msg)
	return string(k), ok
}

// appendRawTxKey appends rawTxKey's key to dst.
func appendRawTxKey(dst, msg []byte) ([]byte, bool) {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	_, fields, _ := bytes.Cut(head, []byte("\r\n"))
	for len(fields) > 0 {
		var line []byte
		line, fields, _ = bytes.Cut(fields, []byte("\r\n"))
		if len(line) > 0 && isWSP(line[0]) {
			continue // the continuation of a folded field, not a field
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || fieldKind(bytes.TrimSpace(line[:colon])) != viaField {
			continue
		}
		if len(fields) > 0 && isWSP(fields[0]) {
			return dst, false // folded
		}
		return appendViaTxKey(dst, bytes.TrimLeft(line[colon+1:], " \t"))
	}
	return dst, false
}

// appendViaTxKey appends the transaction key of a top Via field's value
// to dst.
func appendViaTxKey(dst, v []byte) ([]byte, bool) {
	proto, rest, ok := bytes.Cut(v, []byte(" "))
	if !ok || !bytes.EqualFold(proto, []byte("SIP/2.0/UDP")) {
		return dst, false
	}
	if end := bytes.IndexByte(rest, ','); end >= 0 {
		rest = rest[:end]
	}
	sentBy, params, _ := bytes.Cut(rest, []byte(";"))
	if len(sentBy) == 0 || hasCtlOrSpace(params) || bytes.IndexByte(params, '"') >= 0 {
		return dst, false // quoted strings may hide ';': left to the parse
	}
	host, port := sentBy, 0
	if h, p, ok := bytes.Cut(sentBy, []byte(":")); ok {
		n, err := strconv.Atoi(string(p))
		if err != nil || n <= 0 || n > 65535 {
			return dst, false
		}
		host, port = h, n
	}
	if !plainHost(host) {
		return dst, false // IPv6 references and anything odd: left to the parse
	}
	var branch []byte
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		if len(p) == 0 {
			return dst, false // ";;": left to the parse, which reads it its own way
		}
		name, value, _ := bytes.Cut(p, []byte("="))
		if !bytes.Equal(name, []byte("branch")) {
			continue // as regTxKey, which sipgo's case-sensitive Params.Get reads
		}
		if branch != nil {
			return dst, false // two: sipgo keeps the last, leave it to the parse
		}
		branch = value
	}
	if len(branch) <= len(sip.RFC3261BranchMagicCookie) || !bytes.HasPrefix(branch, []byte(sip.RFC3261BranchMagicCookie)) ||
		!isToken(branch) {
		return dst, false
	}
	dst = append(append(dst, branch...), '|')
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return append(strconv.AppendInt(append(dst, '|'), int64(port), 10), "|REGISTER"...), true
}

// plainHost reports whether h is a host name or IPv4 address in the
// plain form the raw reading takes: letters, digits, '.' and '-'.
func plainHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// isToken reports whether b is an RFC 3261 token (§25.1), the grammar of
// a branch value.
func isToken(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// hasCtlOrSpace reports whether b holds a byte sipgo would trim or split
// on (white space, CR, VT, FF and other controls): such keys are left to
// the parse.
func hasCtlOrSpace(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// appendSource appends the source address that completes a transaction
// key (see take), the same way for the parsed and the raw lookups.
func appendSource(dst []byte, from net.Addr) []byte {
	if u, ok := from.(*net.UDPAddr); ok {
		return u.AddrPort().AppendTo(dst)
	}
	return append(dst, from.String()...)
}

package main

// stream.go is the engine both ends share: it moves a test's bytes over
// its stream connections, counts them, and cuts the counts into
// intervals. The client and the server only differ in how they set a test
// up and how they report it.

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The payload pool: random, incompressible bytes that senders take their
// frames from at rotating offsets, so no compressing middlebox flatters
// the result and no sender spends time making new random data.
var payloadPool struct {
	sync.Mutex
	buf []byte
}

// poolFor returns the shared pool, grown to hold at least one message of
// length bytes with room to rotate.
func poolFor(length int) []byte {
	payloadPool.Lock()
	defer payloadPool.Unlock()
	want := max(4<<20, length+1<<20)
	if len(payloadPool.buf) < want {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(rand.Uint32())
		}
		buf := make([]byte, want)
		rand.NewChaCha8(seed).Read(buf)
		payloadPool.buf = buf
	}
	return payloadPool.buf
}

// poolReader hands out pool slices at rotating offsets.
type poolReader struct {
	pool []byte
	off  int
}

func newPoolReader(length int) *poolReader {
	p := poolFor(length)
	return &poolReader{pool: p, off: rand.IntN(len(p) - length)}
}

// next returns n bytes of the pool. Each frame skips a prime number of
// bytes past the last, so frames do not line up with pages or repeat.
func (p *poolReader) next(n int) []byte {
	if p.off+n > len(p.pool) {
		p.off = (p.off + n) % (len(p.pool) - n)
	}
	b := p.pool[p.off : p.off+n]
	p.off += n + 4093
	return b
}

// stream is one connection's share of a test, as seen from this end.
type stream struct {
	id      int
	sending bool // this end sends on it
	conn    *wsConn

	moved atomic.Int64 // payload bytes handed to the kernel, or received
	endAt atomic.Int64 // nanoseconds from the run's start until it finished; 0 while running
	err   error        // why it failed, if it did
	// finalTCP is TCP_INFO as the sender finished, before closing.
	finalTCP atomic.Pointer[tcpRaw]

	// Owned by the run's clock goroutine.
	lastMoved int64         // moved at the previous mark
	lastAt    time.Duration // when the previous mark was taken
	baseline  int64         // moved when the omitted period ended
	tcpBase   int64         // retransmits when the omitted period ended
	lastRetr  int64
	intervals []interval
	totals    tcpTotals
	rttSum    int64
	rttCount  int64
	hasTCP    bool
}

// testRun is one end's part of a test: its streams, clock and limits.
type testRun struct {
	length   int
	interval time.Duration // 0: no periodic reports
	omit     time.Duration
	duration time.Duration // measured time for a timed test; 0 otherwise
	target   int64         // bytes per direction for a sized test; 0 otherwise
	idle     time.Duration // longest wait on any read or write
	hardStop time.Duration // the run ends here whatever happens
	streams  []*stream
	// onMark, when set, runs on the clock goroutine each time an interval
	// closes on every stream; the streams' latest intervals are the new ones.
	onMark func(final bool)
	// keepIntervals keeps every interval for the final report; otherwise
	// only the latest is kept, so a long test's memory stays flat.
	keepIntervals bool

	start time.Time
	// acct guards the send budget and the end of the omitted period, so a
	// byte is counted as omitted or measured, never both nor neither.
	acct     sync.Mutex
	budget   int64 // bytes the senders of this end may still send
	omitting bool  // the omitted period runs: sending is not budgeted
	stopping chan struct{}
	stopOnce sync.Once
	cpuUser  time.Duration
	cpuSys   time.Duration
	cpu      cpuPercent
	// congestion is the algorithm of a sending stream (any stream if this
	// end only receives), read while the sockets are open.
	congestion string
}

// newTestRun builds a run from a request; the caller adds streams.
func newTestRun(req *testRequest, idle, hardStop time.Duration) *testRun {
	r := &testRun{
		length:   req.Length,
		interval: seconds2dur(req.Interval),
		omit:     seconds2dur(req.Omit),
		target:   req.byteTarget(),
		idle:     idle,
		hardStop: hardStop,
		stopping: make(chan struct{}),
	}
	if r.target == 0 {
		r.duration = seconds2dur(req.Time)
	}
	return r
}

func seconds2dur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// stop tells this end's senders to finish after their current write.
func (r *testRun) stop() { r.stopOnce.Do(func() { close(r.stopping) }) }

func (r *testRun) stopped() bool {
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

// run moves the bytes until every stream has ended, then takes the last
// marks. Streams end when their sender is done: this end's senders stop
// at the time or byte limit, on stop(), or when ctx ends; its receivers
// run until the peer closes. The first stream failure is returned; the
// measurements are valid either way.
func (r *testRun) run(ctx context.Context) error {
	r.start = time.Now()
	r.cpuUser, r.cpuSys = processCPU()
	for i, s := range r.streams {
		if s.sending || i == len(r.streams)-1 {
			r.congestion = congestionOf(s.conn.netConn())
			break
		}
	}
	r.budget, r.omitting = math.MaxInt64, r.omit > 0
	if r.target > 0 {
		r.budget = r.target
	}
	// Retransmits count from here: slow start's belong to the first interval.
	for _, s := range r.streams {
		if !s.sending {
			continue
		}
		if raw, ok := readTCPInfo(s.conn.netConn()); ok {
			s.lastRetr, s.tcpBase, s.hasTCP = raw.totalRetrans, raw.totalRetrans, true
		}
	}
	if r.duration > 0 {
		t := time.AfterFunc(r.omit+r.duration, r.stop)
		defer t.Stop()
	}
	hard := time.AfterFunc(r.hardStop, func() {
		r.stop()
		for _, s := range r.streams {
			s.conn.Abort()
		}
	})
	defer hard.Stop()
	stopOnCancel := context.AfterFunc(ctx, r.stop)
	defer stopOnCancel()

	allDone := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range r.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.sending {
				s.err = r.send(s)
			} else {
				s.err = r.receive(s)
			}
			s.endAt.CompareAndSwap(0, int64(time.Since(r.start)))
		}()
	}
	clockDone := make(chan struct{})
	go func() {
		defer close(clockDone)
		r.clock(allDone)
	}()
	wg.Wait()
	close(allDone)
	<-clockDone
	r.cpu = r.cpuSince()
	for _, s := range r.streams {
		if s.err != nil {
			return s.err
		}
	}
	return nil
}

// reserve takes up to want bytes from the send budget; during the
// omitted period it takes them unbudgeted, and says so.
func (r *testRun) reserve(want int64) (n int64, duringOmit bool) {
	r.acct.Lock()
	defer r.acct.Unlock()
	if r.omitting {
		return want, true
	}
	n = min(want, max(r.budget, 0))
	r.budget -= n
	return n, false
}

// settle counts n sent bytes. Bytes reserved during the omitted period
// that went out after it ended are measured, so they come out of the
// budget now: a sized test sends exactly its size after the omit.
func (r *testRun) settle(s *stream, n int64, duringOmit bool) {
	r.acct.Lock()
	defer r.acct.Unlock()
	s.moved.Add(n)
	if duringOmit && !r.omitting {
		r.budget -= n
	}
}

// maxKeptIntervals bounds the intervals one run keeps for its report
// (about 100 bytes each), whatever -P, -t and -i a client asks for. Past
// it, the report's last interval absorbs the rest; totals are not affected.
const maxKeptIntervals = 250_000

// streamReadBuffer is a receiving stream's read size: large, so one
// system call brings many frames (or a good part of a large one), within
// a budget per test, so -P 128 does not cost a router its memory.
func streamReadBuffer(length, streams int) int {
	const perTest = 16 << 20
	return min(max(64<<10, perTest/max(streams, 1)), max(256<<10, length), 1<<20)
}

// streamMaxMessage is the message limit on a stream: the test's length,
// and never less than the control messages' limit.
func streamMaxMessage(length int) int64 { return int64(max(length, maxControlMessage)) }

// Batching: a sender hands the kernel up to batchBytes per system call,
// fewer when writes start to block, so the end of a timed test on a slow
// link is not late by a whole batch.
const (
	batchBytes    = 4 << 20
	batchMaxFlush = 10 * time.Millisecond
	batchMinFlush = time.Millisecond
)

// send is a sending stream's loop.
func (r *testRun) send(s *stream) error {
	maxFrames := max(1, min(64, batchBytes/r.length))
	batch := s.conn.newBatch(maxFrames, 0)
	src := newPoolReader(r.length)
	frames := 1
	for !r.stopped() {
		n, duringOmit := r.reserve(int64(frames) * int64(r.length))
		if n == 0 {
			break
		}
		for left := n; left > 0; {
			m := min(left, int64(r.length))
			batch.add(opBinary, nil, src.next(int(m)))
			left -= m
		}
		t0 := time.Now()
		s.conn.SetWriteDeadline(t0.Add(r.idle))
		if err := batch.flush(); err != nil {
			return err
		}
		r.settle(s, n, duringOmit)
		switch took := time.Since(t0); {
		case took < batchMinFlush && frames < maxFrames:
			frames *= 2
		case took > batchMaxFlush && frames > 1:
			frames /= 2
		}
		frames = min(frames, maxFrames)
	}
	s.endAt.CompareAndSwap(0, int64(time.Since(r.start)))
	// The socket's counters may reset once the connection closes, so
	// the last interval uses a sample taken while it is still open.
	if raw, ok := readTCPInfo(s.conn.netConn()); ok {
		s.finalTCP.Store(&raw)
	}
	return s.conn.Close(statusNormal, "done")
}

// receive is a receiving stream's loop: it counts payload and throws it
// away, until the peer's normal close.
func (r *testRun) receive(s *stream) error {
	var deadline time.Time
	// The deadline moves on only when half of it is used up, so a
	// busy stream does not reset its timer on every read.
	refresh := func() {
		if now := time.Now(); deadline.Sub(now) < r.idle/2 {
			deadline = now.Add(r.idle)
			s.conn.SetReadDeadline(deadline)
		}
	}
	// The stream's measured time ends with its last byte, not with the
	// close handshake after it.
	var lastByte time.Time
	ended := func(err error) error {
		if !lastByte.IsZero() {
			s.endAt.CompareAndSwap(0, int64(lastByte.Sub(r.start)))
		}
		return endOfStream(err)
	}
	for {
		refresh()
		if _, _, _, err := s.conn.NextFrame(); err != nil {
			return ended(err)
		}
		for {
			refresh()
			n, err := s.conn.Discard()
			if n > 0 {
				s.moved.Add(int64(n))
				lastByte = time.Now()
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return ended(err)
			}
		}
	}
}

// endOfStream tells a sender's normal close from a failure.
func endOfStream(err error) error {
	var ce *closeError
	if errors.As(err, &ce) && !ce.Local && ce.Code == statusNormal {
		return nil
	}
	return err
}

// clock closes intervals on schedule until allDone, then takes the final
// mark. A timed test's last scheduled mark waits briefly for the streams
// to finish, so their last bytes land in it rather than in a sliver of
// an interval of their own.
func (r *testRun) clock(allDone <-chan struct{}) {
	var last time.Duration
	for {
		next, isEnd := r.nextMark(last)
		finished := next < 0 || !waitFor(next-time.Since(r.start), allDone) ||
			isEnd && !waitFor(max(r.interval/10, 50*time.Millisecond), allDone)
		if finished {
			<-allDone
			r.mark(time.Since(r.start), true)
			return
		}
		r.mark(next, false)
		last = next
	}
}

// waitFor sleeps for d and reports true, or reports false as soon as
// done closes.
func waitFor(d time.Duration, done <-chan struct{}) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
		return false
	case <-timer.C:
		return true
	}
}

// nextMark returns when the interval after last closes, counted from the
// start, and whether that is the scheduled end of a timed test; -1 when
// only the final mark (when every stream has ended) is left.
func (r *testRun) nextMark(last time.Duration) (time.Duration, bool) {
	end := time.Duration(-1)
	if r.duration > 0 {
		end = r.omit + r.duration
		if last >= end {
			return -1, false
		}
	}
	var next time.Duration
	switch {
	case last < r.omit && r.interval > 0:
		next = min(last+r.interval, r.omit)
	case last < r.omit:
		next = r.omit
	case r.interval > 0:
		next = r.omit + ((last-r.omit)/r.interval+1)*r.interval
	default:
		return -1, false // -i 0: one interval, closed when the streams end
	}
	if end >= 0 && (next < 0 || next >= end) {
		return end, true
	}
	return next, false
}

// mark closes the current interval of every stream at offset at (from
// the start). Intervals in the omitted period count from the start and are
// flagged; later ones count from the end of the omitted period, as iperf3
// shows them.
func (r *testRun) mark(at time.Duration, final bool) {
	if final && r.nothingSinceLastMark() {
		return
	}
	omitted := r.omit > 0 && at <= r.omit
	if omitted && at == r.omit {
		// Senders wait while the omitted period closes, so each byte
		// lands on exactly one side of it.
		r.acct.Lock()
		defer r.acct.Unlock()
	}
	for _, s := range r.streams {
		r.markStream(s, at, final, omitted)
	}
	if omitted && at == r.omit {
		r.omitEnded()
	}
	if r.onMark != nil {
		r.onMark(final)
	}
}

// nothingSinceLastMark is true when no stream moved a byte since the last
// mark, so a final mark would only add an empty sliver of an interval.
func (r *testRun) nothingSinceLastMark() bool {
	marked := false
	for _, s := range r.streams {
		if s.moved.Load() != s.lastMoved {
			return false
		}
		marked = marked || len(s.intervals) > 0
	}
	return marked
}

// omitEnded restarts the counts: what came before is not measured.
func (r *testRun) omitEnded() {
	for _, s := range r.streams {
		s.baseline = s.lastMoved
		s.tcpBase = s.lastRetr
	}
	r.omitting = false
}

func (r *testRun) markStream(s *stream, at time.Duration, final, omitted bool) {
	moved := s.moved.Load()
	start, end := s.lastAt, at
	if e := time.Duration(s.endAt.Load()); final && e > 0 && e < at {
		end = max(e, start)
	}
	base := r.omit
	if omitted {
		base = 0
	}
	iv := interval{
		Start:   (start - base).Seconds(),
		End:     (end - base).Seconds(),
		Bytes:   moved - s.lastMoved,
		Omitted: omitted,
	}
	if s.sending {
		iv.TCP = s.sampleTCP(omitted)
	}
	s.lastMoved = moved
	s.lastAt = end
	switch {
	case !r.keepIntervals:
		s.intervals = append(s.intervals[:0], iv)
	case len(s.intervals)*len(r.streams) >= maxKeptIntervals:
		// Full: the last interval grows instead, so the list still adds
		// up to the totals.
		last := &s.intervals[len(s.intervals)-1]
		last.End, last.Bytes, last.TCP = iv.End, last.Bytes+iv.Bytes, iv.TCP
	default:
		s.intervals = append(s.intervals, iv)
	}
}

// sampleTCP reads TCP_INFO for an interval's end; nil where unavailable.
func (s *stream) sampleTCP(omitted bool) *tcpSnapshot {
	raw, ok := readTCPInfo(s.conn.netConn())
	if final := s.finalTCP.Load(); final != nil {
		raw, ok = *final, true
	}
	// A reset socket's counters start again from zero: no sample then.
	if !ok || (s.hasTCP && raw.totalRetrans < s.lastRetr) {
		return nil
	}
	if !s.hasTCP {
		s.lastRetr, s.tcpBase, s.hasTCP = raw.totalRetrans, raw.totalRetrans, true
	}
	snap := &tcpSnapshot{
		Retransmits: raw.totalRetrans - s.lastRetr,
		SndCwnd:     raw.sndCwnd,
		SndWnd:      raw.sndWnd,
		RTT:         raw.rtt,
		RTTVar:      raw.rttVar,
		PMTU:        raw.pmtu,
	}
	s.lastRetr = raw.totalRetrans
	if !omitted {
		s.addTCPSample(raw)
	}
	return snap
}

func (s *stream) addTCPSample(raw tcpRaw) {
	t := &s.totals
	t.MaxSndCwnd = max(t.MaxSndCwnd, raw.sndCwnd)
	t.MaxSndWnd = max(t.MaxSndWnd, raw.sndWnd)
	t.MaxRTT = max(t.MaxRTT, raw.rtt)
	if s.rttCount == 0 || raw.rtt < t.MinRTT {
		t.MinRTT = raw.rtt
	}
	s.rttSum += raw.rtt
	s.rttCount++
	t.MeanRTT = s.rttSum / s.rttCount
	t.Retransmits = raw.totalRetrans - s.tcpBase
}

// summaries are the results without their intervals: what one side
// tells the other, whose reports need only the totals.
func (r *testRun) summaries() []streamResult {
	out := r.results()
	for i := range out {
		out[i].Intervals = nil
	}
	return out
}

// results summarises every stream over the measured (not omitted) time.
func (r *testRun) results() []streamResult {
	out := make([]streamResult, 0, len(r.streams))
	for _, s := range r.streams {
		end := time.Duration(s.endAt.Load()) - r.omit
		res := streamResult{
			ID:        s.id,
			Sender:    s.sending,
			Bytes:     s.moved.Load() - s.baseline,
			Seconds:   max(end, 0).Seconds(),
			End:       max(end, 0).Seconds(),
			Intervals: s.intervals,
		}
		if s.hasTCP {
			t := s.totals
			res.TCP = &t
		}
		out = append(out, res)
	}
	return out
}

// latestIntervals is each stream's most recent interval, for a live
// report.
func (r *testRun) latestIntervals() []streamResult {
	out := make([]streamResult, 0, len(r.streams))
	for _, s := range r.streams {
		iv := s.intervals[len(s.intervals)-1]
		out = append(out, streamResult{ID: s.id, Sender: s.sending, Intervals: []interval{iv}})
	}
	return out
}

// connections are the streams' socket addresses, and the socket facts
// iperf3 reports, read from the first stream.
func (r *testRun) connections() ([]connInfo, socketInfo) {
	var conns []connInfo
	for _, s := range r.streams {
		nc := s.conn.netConn()
		conns = append(conns, connInfo{id: s.id, local: nc.LocalAddr(), remote: nc.RemoteAddr()})
	}
	var sock socketInfo
	if len(r.streams) > 0 {
		sock = socketFacts(r.streams[0].conn.netConn())
	}
	return conns, sock
}

// cpuSince is this process's CPU use since the run started, as a share of
// the wall time.
func (r *testRun) cpuSince() cpuPercent {
	user, sys := processCPU()
	wall := time.Since(r.start)
	if wall <= 0 {
		return cpuPercent{}
	}
	pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(wall) }
	u, s := pct(user-r.cpuUser), pct(sys-r.cpuSys)
	return cpuPercent{Total: u + s, User: u, System: s}
}

func abortAll(streams []*stream) {
	for _, s := range streams {
		s.conn.Abort()
	}
}

// sortStreams orders streams by id, the order every report uses.
func sortStreams(ss []*stream) {
	sort.Slice(ss, func(i, j int) bool { return ss[i].id < ss[j].id })
}

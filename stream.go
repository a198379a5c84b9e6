package main

// stream.go is the engine both ends share: it moves a test's bytes over
// its stream connections and counts them; stream_intervals.go cuts the
// counts into intervals. The client and the server only differ in how
// they set a test up and how they report it.

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The payload pool: random, incompressible bytes that senders take their
// frames from at rotating offsets, so no compressing middlebox flatters
// the result and no sender spends time making new random data. A message
// is one contiguous slice of it, so nothing repeats inside a message.
var payloadPool struct {
	sync.Mutex
	buf []byte
}

// The pool is about one message long, and never under 1 MiB, so that it
// stays in a core's L2 cache (1 MiB on current x86 cores) instead of
// being streamed from memory on every write. A 4-5 MiB pool cost -l 1M
// a tenth to a quarter of its rate; for 64 KiB messages, pools of
// 256 KiB, 1 MiB and 4 MiB measured alike on a 32 MiB L3. The slack is
// what the offsets of a message as long as the pool rotate over.
const (
	poolMin   = 1 << 20
	poolSlack = 64 << 10
)

// poolFor returns the shared pool, grown to hold at least one message of
// length bytes with room to rotate, cut to the size for that length.
func poolFor(length int) []byte {
	payloadPool.Lock()
	defer payloadPool.Unlock()
	want := poolSize(length)
	if len(payloadPool.buf) < want {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(rand.Uint32())
		}
		buf := make([]byte, want)
		rand.NewChaCha8(seed).Read(buf)
		payloadPool.buf = buf
	}
	// After a test of longer messages grew the pool, shorter ones still
	// rotate over a cache-sized part of it.
	return payloadPool.buf[:want]
}

// poolSize is how much of the pool messages of length bytes rotate over.
func poolSize(length int) int { return max(poolMin, length+poolSlack) }

// poolReader hands out pool slices at rotating offsets.
type poolReader struct {
	pool []byte
	off  int
	page int // if set, slices start on a multiple of it
}

func newPoolReader(length int) *poolReader {
	p := poolFor(length)
	return &poolReader{pool: p, off: rand.IntN(len(p) - length)}
}

// next returns n bytes of the pool. Each frame skips a prime number of
// bytes past the last, so frames do not line up with pages or repeat;
// with page set they start on a page instead (for zero-copy sends), at
// least a page past the last.
func (p *poolReader) next(n int) []byte {
	if p.off+n > len(p.pool) {
		p.off = (p.off + n) % (len(p.pool) - n)
	}
	if p.page > 0 {
		p.off -= p.off % p.page
	}
	b := p.pool[p.off : p.off+n]
	p.off += n + max(4093, p.page)
	return b
}

// stream is one connection's share of a test, as seen from this end.
type stream struct {
	id      int
	sending bool            // this end sends on it
	conn    *wsConn         // nil for a UDP test's stream over real UDP
	dgram   *datagramStream // a UDP test's datagram state; nil for TCP
	// loop, when set, replaces the engine's loop: the old protocol frames
	// its data its own way (legacy_link.go).
	loop func(run *testRun, s *stream) error

	moved atomic.Int64 // payload bytes handed to the kernel, or received
	endAt atomic.Int64 // nanoseconds from the run's start until it finished; 0 while running
	err   error        // why it failed, if it did
	// finalTCP is TCP_INFO as the sender finished, before closing.
	finalTCP atomic.Pointer[tcpRaw]

	// Owned by the run's clock goroutine.
	lastMoved int64         // moved when the previous interval closed
	lastAt    time.Duration // when the previous interval closed
	baseline  int64         // moved when the omitted period ended
	tcpBase   int64         // retransmits when the omitted period ended
	lastRetr  int64
	intervals []interval
	totals    tcpTotals
	rttSum    int64
	rttCount  int64
	hasTCP    bool
	lastUDP   udpCounts // UDP counts when the previous interval closed
	udpBase   udpCounts // UDP counts when the omitted period ended

	// omitMark is moved where the sender's in-band mark ended the
	// omitted period in this stream's bytes (sent here, or seen here);
	// -1 until then. The stream's goroutine sets it, the clock reads it.
	omitMark atomic.Int64
	fromMark bool // owned by the clock: an interval has counted from the mark
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
	// onIntervalClosed, when set, runs on the clock goroutine each time an interval
	// closes on every stream; the streams' latest intervals are the new ones.
	onIntervalClosed func(final bool)
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
	// udp: the streams carry paced datagrams (udp_stream.go).
	udp  bool
	rate float64 // bits/s per sending stream; 0 unpaced
	// onSendersDone, when set, runs once every sending stream of this
	// end has finished: over real UDP the peer learns of it on the
	// control connection, as datagrams carry no close.
	onSendersDone func()
	peerDone      chan struct{} // closed when the peer's senders are done
	peerDoneOnce  sync.Once
	// congestion is the algorithm of a sending stream (any stream if this
	// end only receives), read while the sockets are open.
	congestion string
	// hold keeps the senders quiet at the start, for idle latency probes.
	hold     time.Duration
	zeroCopy bool // senders hand the kernel pool pages instead of copies (-Z)
	// omitMarks: both ends agreed (omit_mark) that each sender marks the
	// end of the omitted period in its stream, so that both ends omit
	// the same bytes whatever their clocks say (see markOmitEnd).
	omitMarks bool
	sock      socketInfo // see socketFacts
	sockOnce  sync.Once
}

// newTestRun builds a run from a request; the caller adds streams.
func newTestRun(req *testRequest, idle, hardStop time.Duration) *testRun {
	run := &testRun{
		length:   req.Length,
		interval: seconds2dur(req.Interval),
		omit:     seconds2dur(req.Omit),
		target:   req.byteTarget(),
		idle:     idle,
		hardStop: hardStop,
		stopping: make(chan struct{}),
		udp:      req.udp(),
		rate:     req.Rate,
		peerDone: make(chan struct{}),
		zeroCopy: req.ZeroCopy,
	}
	if run.target == 0 {
		run.duration = seconds2dur(req.Time)
	}
	return run
}

// stop tells this end's senders to finish after their current write.
func (run *testRun) stop() { run.stopOnce.Do(func() { close(run.stopping) }) }

func (run *testRun) stopped() bool {
	select {
	case <-run.stopping:
		return true
	default:
		return false
	}
}

// run moves the bytes until every stream has ended, then closes the last
// intervals. Streams end when their sender is done: this end's senders stop
// at the time or byte limit, on stop(), or when ctx ends; its receivers
// run until the peer closes. The first stream failure is returned; the
// measurements are valid either way.
func (run *testRun) run(ctx context.Context) error {
	run.socketFacts()
	run.start = time.Now()
	run.cpuUser, run.cpuSys = processCPU()
	for i, s := range run.streams {
		if !run.udp && (s.sending || i == len(run.streams)-1) {
			run.congestion = congestionOf(s.conn.NetConn())
			break
		}
	}
	run.budget, run.omitting = math.MaxInt64, run.omit > 0
	run.omitMarks = run.omitMarks && run.omit > 0 && !run.udp
	for _, s := range run.streams {
		s.omitMark.Store(-1)
	}
	if run.target > 0 {
		run.budget = run.target
	}
	// Retransmits count from here: slow start's belong to the first interval.
	for _, s := range run.streams {
		if !s.sending || run.udp {
			continue
		}
		if raw, ok := readTCPInfo(s.conn.NetConn()); ok {
			s.lastRetr, s.tcpBase, s.hasTCP = raw.totalRetrans, raw.totalRetrans, true
		}
	}
	if run.duration > 0 {
		t := time.AfterFunc(run.omit+run.duration, run.stop)
		defer t.Stop()
	}
	hard := time.AfterFunc(run.hardStop, func() {
		run.stop()
		abortAll(run.streams)
	})
	defer hard.Stop()
	stopOnCancel := context.AfterFunc(ctx, run.stop)
	defer stopOnCancel()

	allDone := make(chan struct{})
	var wg, senders sync.WaitGroup
	for _, s := range run.streams {
		wg.Add(1)
		if s.sending {
			senders.Add(1)
		}
		go func() {
			defer wg.Done()
			if s.sending {
				run.holdLoad()
			}
			switch {
			case s.loop != nil:
				s.err = s.loop(run, s)
				if s.sending {
					senders.Done()
				}
			case s.dgram != nil && s.sending:
				if s.conn != nil {
					go s.conn.AnswerControl() // the peer may ping a stream it only reads
				}
				s.err = run.sendDatagrams(s)
				senders.Done()
			case s.dgram != nil:
				s.err = run.receiveDatagrams(s)
			case s.sending:
				go s.conn.AnswerControl() // the peer may ping a stream it only reads
				s.err = run.send(s)
				senders.Done()
			default:
				s.err = run.receive(s)
			}
			s.endAt.CompareAndSwap(0, int64(time.Since(run.start)))
		}()
	}
	hooked := make(chan struct{})
	go func() {
		defer close(hooked)
		if senders.Wait(); run.onSendersDone != nil {
			run.onSendersDone()
		}
	}()
	// The peer hears that our senders are done before anything this
	// end says after the run, such as its results.
	defer func() { <-hooked }()
	clockDone := make(chan struct{})
	go func() {
		defer close(clockDone)
		run.clock(allDone)
	}()
	wg.Wait()
	close(allDone)
	<-clockDone
	run.cpu = run.cpuSince()
	for _, s := range run.streams {
		if s.err != nil {
			return s.err
		}
	}
	return nil
}

// reserve takes up to want bytes from the send budget; during the
// omitted period it takes them unbudgeted, and says so.
func (run *testRun) reserve(want int64) (n int64, duringOmit bool) {
	run.acct.Lock()
	defer run.acct.Unlock()
	if run.omitting {
		return want, true
	}
	n = min(want, max(run.budget, 0))
	run.budget -= n
	return n, false
}

// refund returns bytes that were reserved but not sent to the budget.
func (run *testRun) refund(n int64) {
	run.acct.Lock()
	run.budget += n
	run.acct.Unlock()
}

// settle counts n sent bytes. Bytes reserved during the omitted period
// that went out after it ended are measured, so they come out of the
// budget now: a sized test sends exactly its size after the omit. With
// marks they went out before the mark, so they stay omitted.
func (run *testRun) settle(s *stream, n int64, duringOmit bool) {
	run.acct.Lock()
	defer run.acct.Unlock()
	s.moved.Add(n)
	if duringOmit && !run.omitting && !run.omitMarks {
		run.budget -= n
	}
}

// markOmitEnd ends the omitted period inside the stream: an empty text
// message (data messages are binary) goes out between the last omitted
// byte and the first measured one. Each end counts from it, so the
// bytes still in flight when the sender's clock ended the omitted period
// are omitted on both ends, and the receiver never counts more than the
// sender: iperf3's receiver may, when its own clock ends it first.
func (run *testRun) markOmitEnd(s *stream) error {
	s.conn.SetWriteDeadline(time.Now().Add(run.idle))
	if err := s.conn.WriteMessage(opText, nil); err != nil {
		return err
	}
	s.omitMark.Store(s.moved.Load())
	return nil
}

// sawOmitMark records where the sender's mark arrived in the stream.
func (s *stream) sawOmitMark() { s.omitMark.CompareAndSwap(-1, s.moved.Load()) }

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

// bulkBatch is a batch of frames a sender fills and flushes: ws_batch.go's
// frameBatch, which copies, or zeroCopyBatch, which does not.
type bulkBatch interface {
	Add(op opcode, prefix, filler []byte)
	Flush() error
}

// newBatch returns a sender's batch of up to frames frames, the pool
// reader its filler must come from, and what to call when done. With
// -Z, where it cannot work, the stream copies after one line on stderr.
func (run *testRun) newBatch(c *wsConn, frames int) (bulkBatch, *poolReader, func()) {
	if run.zeroCopy {
		zb, src, release, err := newZeroCopyBatch(c, frames, run.length, streamReadBuffer(run.length, len(run.streams)))
		if err == nil {
			return zb, src, release
		}
		warnZeroCopy(err)
	}
	return c.NewBatch(frames, 0), newPoolReader(run.length), func() {}
}

// send is a sending stream's loop.
func (run *testRun) send(s *stream) error {
	maxFrames := max(1, min(64, batchBytes/run.length))
	batch, src, release := run.newBatch(s.conn, maxFrames)
	defer release()
	frames := 1
	pace := newTCPPacer(run.rate, run.length)
	if pace != nil {
		defer pace.timer.Stop()
		maxFrames = pace.frames
	}
	var sent int64
	for !run.stopped() {
		if pace != nil && !pace.wait(sent, run.stopping) {
			break
		}
		n, duringOmit := run.reserve(int64(frames) * int64(run.length))
		if n == 0 {
			break
		}
		if !duringOmit && run.omitMarks && s.omitMark.Load() < 0 {
			if err := run.markOmitEnd(s); err != nil {
				s.endAt.CompareAndSwap(0, int64(time.Since(run.start)))
				return err
			}
		}
		for left := n; left > 0; {
			m := min(left, int64(run.length))
			batch.Add(opBinary, nil, src.next(int(m)))
			left -= m
		}
		t0 := time.Now()
		s.conn.SetWriteDeadline(t0.Add(run.idle))
		if err := batch.Flush(); err != nil {
			// The stream ended with its last write that went through:
			// the stall before this one failed moved nothing.
			s.endAt.CompareAndSwap(0, int64(t0.Sub(run.start)))
			return err
		}
		run.settle(s, n, duringOmit)
		sent += n
		switch took := time.Since(t0); {
		case took < batchMinFlush && frames < maxFrames:
			frames *= 2
		case took > batchMaxFlush && frames > 1:
			frames /= 2
		}
		frames = min(frames, maxFrames)
	}
	s.endAt.CompareAndSwap(0, int64(time.Since(run.start)))
	// The socket's counters may reset once the connection closes, so
	// the last interval uses a sample taken while it is still open.
	if raw, ok := readTCPInfo(s.conn.NetConn()); ok {
		s.finalTCP.Store(&raw)
	}
	return s.conn.Close(statusNormal, "done")
}

// tcpPaceSlice is how much of a -b TCP sender's schedule one batch
// covers: fine enough that the rate holds within each report interval,
// coarse enough that a slow rate needs few wake-ups. The kernel spreads
// each batch's packets (SO_MAX_PACING_RATE, sys.go) where it can.
const (
	tcpPaceSlice   = time.Millisecond
	tcpPaceMaxDebt = 100 * time.Millisecond
)

// tcpPacer keeps a TCP sender to -b, as iperf3 does: the batch that
// follows sent bytes leaves no earlier than start + sent/rate. A sender
// held up for longer than tcpPaceMaxDebt (a stalled path) does not make
// up for all of it in one burst.
type tcpPacer struct {
	bytesPerSec float64
	start       time.Time
	frames      int // messages per batch
	timer       *time.Timer
}

// newTCPPacer returns nil for an unpaced test (rate 0).
func newTCPPacer(rate float64, length int) *tcpPacer {
	if rate <= 0 {
		return nil
	}
	bytesPerSec := rate / 8
	frames := int(bytesPerSec * tcpPaceSlice.Seconds() / float64(length))
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &tcpPacer{bytesPerSec: bytesPerSec, start: time.Now(), frames: max(1, min(frames, 64)), timer: t}
}

// wait sleeps until the schedule lets the bytes after sent go; false
// means the run is stopping.
func (p *tcpPacer) wait(sent int64, stopping <-chan struct{}) bool {
	due := p.start.Add(time.Duration(float64(sent) / p.bytesPerSec * float64(time.Second)))
	ahead := time.Until(due)
	if ahead < -tcpPaceMaxDebt {
		p.start = p.start.Add(-ahead - tcpPaceMaxDebt)
	}
	if ahead <= 0 {
		return true
	}
	p.timer.Reset(ahead)
	select {
	case <-p.timer.C:
		return true
	case <-stopping:
		return false
	}
}

// receive is a receiving stream's loop: it counts payload and throws it
// away, until the peer's normal close.
func (run *testRun) receive(s *stream) error {
	if d := run.newDrain(s); d != nil {
		s.conn.SetDrain(d)
		defer func() {
			s.conn.SetDrain(nil)
			d.close()
		}()
	}
	var deadline time.Time
	// The deadline moves on only when half of it is used up, so a
	// busy stream does not reset its timer on every read.
	refresh := func() {
		if now := time.Now(); deadline.Sub(now) < run.idle/2 {
			deadline = now.Add(run.idle)
			s.conn.SetReadDeadline(deadline)
		}
	}
	// The stream's measured time ends with its last byte, not with the
	// close handshake after it.
	var lastByte time.Time
	ended := func(err error) error {
		if !lastByte.IsZero() {
			s.endAt.CompareAndSwap(0, int64(lastByte.Sub(run.start)))
		}
		return endOfStream(err)
	}
	for {
		refresh()
		op, _, _, err := s.conn.NextFrame()
		if err != nil {
			return ended(err)
		}
		if op == opText && run.omitMarks {
			s.sawOmitMark()
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

// newDrain gives a receiving stream of large messages a splice drain,
// so its payload is thrown away without being copied (zerocopy.go); nil
// where that is off, not worth it or not possible.
func (run *testRun) newDrain(s *stream) *spliceDrain {
	if noZeroCopy.Load() || run.length < spliceMinFrame {
		return nil
	}
	// The connection itself, not NetConn: beneath TLS the socket carries
	// records, not frames, and must not be drained behind TLS's back.
	return newSpliceDrain(s.conn.nc, streamReadBuffer(run.length, len(run.streams)))
}

// endOfStream tells a sender's normal close from a failure.
func endOfStream(err error) error {
	var ce *closeError
	if errors.As(err, &ce) && !ce.Local && ce.Code == statusNormal {
		return nil
	}
	return err
}

func abortAll(streams []*stream) {
	for _, s := range streams {
		s.abort()
	}
}

// abort drops the stream's connection (or datagram socket) at once.
func (s *stream) abort() {
	if s.conn != nil {
		s.conn.Abort()
	}
	if s.dgram != nil {
		s.dgram.abort()
	}
}

// addrs are the stream's socket addresses.
func (s *stream) addrs() (local, remote net.Addr) {
	if s.conn != nil {
		nc := s.conn.NetConn()
		return nc.LocalAddr(), nc.RemoteAddr()
	}
	return s.dgram.addrs()
}

// sortStreams orders streams by id, the order every report uses.
func sortStreams(ss []*stream) {
	sort.Slice(ss, func(i, j int) bool { return ss[i].id < ss[j].id })
}

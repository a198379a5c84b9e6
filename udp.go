package main

// udp.go holds the transport-independent pieces of a UDP test: the -b
// rate syntax, the datagram header, the receiver's loss/jitter/reorder
// accounting, the sender's pacing schedule, and the drop rule that turns
// a backed-up WebSocket stream into datagram loss. The same pieces serve
// real UDP sockets (udp_net.go) and datagrams carried one per binary
// WebSocket message.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ---- rate syntax ----

// Bounds of -b. A bare number is Mbit/s, as in the original wperf; a
// suffix makes it iperf3's syntax. 100 Gbit/s is far above what one host
// can pace through user space, so anything beyond is a typo.
const (
	defaultRateUnit = 1e6
	maxRate         = 100e9
	minRate         = 1 // bit/s; below it the schedule's slot times overflow
)

var (
	errRateSyntax = errors.New("bad rate: want a number with an optional K, M, G or T suffix")
	errRateRange  = errors.New("rate out of range")
)

// parseRate reads a -b value into bits per second; 0 means unpaced.
func parseRate(s string) (float64, error) {
	num, unit := s, defaultRateUnit
	if n := len(s); n > 0 {
		if m, ok := rateSuffix(s[n-1]); ok {
			num, unit = s[:n-1], m
		}
	}
	if !isPlainDecimal(num) {
		if len(num) > 0 && num[0] == '-' {
			return 0, fmt.Errorf("%w: %q is negative", errRateRange, s)
		}
		return 0, fmt.Errorf("%w: %q", errRateSyntax, s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", errRateSyntax, s)
	}
	bps := v * unit
	switch {
	case bps == 0:
		return 0, nil
	case bps < minRate || bps > maxRate || math.IsInf(bps, 0):
		return 0, fmt.Errorf("%w: %q is outside 1 bit/s to 100 Gbit/s", errRateRange, s)
	}
	return bps, nil
}

// rateSuffix maps iperf3's decimal suffixes, either case, to multipliers.
func rateSuffix(c byte) (float64, bool) {
	switch c | 0x20 { // lower case
	case 'k':
		return 1e3, true
	case 'm':
		return 1e6, true
	case 'g':
		return 1e9, true
	case 't':
		return 1e12, true
	}
	return 0, false
}

// isPlainDecimal admits digits with at most one point, so ParseFloat's
// extras (signs, exponents, hex, "inf", "nan", underscores) stay out.
func isPlainDecimal(s string) bool {
	digits, points := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			points++
		default:
			return false
		}
	}
	return digits > 0 && points <= 1
}

// ---- datagram header ----

// Every test datagram starts with this header; the rest is padding.
// The sequence number starts at 1, so the first byte of a data datagram
// is zero for the first 2^56 datagrams; control datagrams (udp_net.go)
// start with a non-zero byte and can never be mistaken for data.
const (
	datagramHeaderLen = 16 // seq uint64, then send time int64, both big-endian
	minDatagram       = datagramHeaderLen
	maxDatagram       = 65507 // the largest UDP payload over IPv4
	defaultDatagram   = 1400  // fits a 1500-byte MTU with IPv6 and some tunnelling
)

// putDatagramHeader writes seq and the sender's clock (ns since its own
// epoch; the receiver only ever compares differences) into b's front.
func putDatagramHeader(b []byte, seq uint64, sentNs int64) {
	_ = b[datagramHeaderLen-1]
	binary.BigEndian.PutUint64(b[0:8], seq)
	binary.BigEndian.PutUint64(b[8:16], uint64(sentNs))
}

// readDatagramHeader parses a data datagram's header. It refuses short
// datagrams, sequence 0, and anything whose first byte is set (control
// datagrams, or garbage).
func readDatagramHeader(b []byte) (seq uint64, sentNs int64, ok bool) {
	if len(b) < datagramHeaderLen || b[0] != 0 {
		return 0, 0, false
	}
	seq = binary.BigEndian.Uint64(b[0:8])
	if seq == 0 {
		return 0, 0, false
	}
	return seq, int64(binary.BigEndian.Uint64(b[8:16])), true
}

// datagramPadding is random, incompressible filler that senders copy
// behind headers once, when they build their reusable batch buffers; a
// compressing link cannot flatter a UDP result either.
var datagramPadding = sync.OnceValue(func() []byte {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	b := make([]byte, 256<<10)
	rand.NewChaCha8(seed).Read(b)
	return b
})

// fillDatagramPadding fills b with padding, starting at a random offset so
// concurrent senders' batches differ.
func fillDatagramPadding(b []byte) {
	pad := datagramPadding()
	off := rand.IntN(len(pad))
	for n := 0; n < len(b); {
		c := copy(b[n:], pad[off:])
		n += c
		off = 0
	}
}

// ---- receiver statistics ----

// udpStats are a receiver's counts over some span: totals since the
// start, or the difference between two of those (an interval).
type udpStats struct {
	Packets    int64   // datagrams that arrived, duplicates excluded
	Bytes      int64   // their payload bytes
	Lost       int64   // datagrams never seen (see udpCounter)
	OutOfOrder int64   // arrived after a higher sequence number
	Duplicates int64   // arrived again; touch neither Lost nor OutOfOrder
	JitterMs   float64 // RFC 3550 interarrival jitter at the span's end
	Highest    uint64  // the highest sequence number seen
}

// minus is the interval from earlier to s. Jitter is a running estimate,
// not a count, so an interval reports the value at its end. An interval's
// Lost can be negative: a datagram counted lost in an earlier interval
// arrived, late, in this one.
func (s udpStats) minus(earlier udpStats) udpStats {
	return udpStats{
		Packets:    s.Packets - earlier.Packets,
		Bytes:      s.Bytes - earlier.Bytes,
		Lost:       s.Lost - earlier.Lost,
		OutOfOrder: s.OutOfOrder - earlier.OutOfOrder,
		Duplicates: s.Duplicates - earlier.Duplicates,
		JitterMs:   s.JitterMs,
		Highest:    s.Highest,
	}
}

// LostPercent is iperf3's lost_percent: lost over the datagrams the
// sender is known (or, from sequence numbers, presumed) to have sent.
func (s udpStats) LostPercent() float64 {
	if sent := s.Packets + s.Lost; sent > 0 {
		return 100 * float64(s.Lost) / float64(sent)
	}
	return 0
}

// The duplicate detector remembers this many recent sequence numbers. A
// datagram older than that is taken as late, never as a duplicate, as
// iperf3 would; 4096 datagrams is about 50 ms at 1 Gbit/s of 1400 bytes.
const (
	seenWindowBits  = 4096
	seenWindowWords = seenWindowBits / 64
)

// udpCounter is one receiving stream's accounting. Loss and reordering
// follow iperf3: a forward gap adds the skipped datagrams to Lost; a
// datagram below the highest seen counts as out of order and takes one
// back off Lost (never below zero). Duplicates, recognised by a bitmap
// of recent sequence numbers, are counted apart.
//
// One goroutine feeds it with observe and calls publish after each batch
// it read; any other goroutine may take snapshots. Only publish and the
// snapshots lock, so the cost per datagram is a few plain stores.
type udpCounter struct {
	live udpStats // owned by the observing goroutine
	rfc3550Jitter
	seen [seenWindowWords]uint64

	mu        sync.Mutex
	published udpStats // live as of the last publish
	lastSnap  udpStats // published as of the last interval snapshot
}

// observe accounts one datagram: its header fields, when it arrived on
// the receiver's own clock (ns since its own epoch), and its size.
func (c *udpCounter) observe(seq uint64, sentNs, arrivalNs int64, size int) {
	l := &c.live
	switch {
	case seq > l.Highest:
		if seq > l.Highest+1 {
			l.Lost += int64(seq - l.Highest - 1)
		}
		c.advanceWindow(seq)
		l.Highest = seq
	case l.Highest-seq < seenWindowBits && c.wasSeen(seq):
		l.Duplicates++
		return
	default:
		l.OutOfOrder++
		if l.Lost > 0 {
			l.Lost--
		}
		if l.Highest-seq < seenWindowBits { // an older one's bit is a newer number's now
			c.markSeen(seq)
		}
	}
	l.Packets++
	l.Bytes += int64(size)
	c.updateJitter(arrivalNs - sentNs)
}

// rfc3550Jitter is RFC 3550 §6.4.1's running jitter estimate, shared by
// UDP receivers (fed one-way transit times) and latency probes (fed
// round-trip times, whose changes it smooths the same way).
type rfc3550Jitter struct {
	jitterNs    float64
	prevTransit int64
	haveTransit bool
}

// updateJitter is RFC 3550 §6.4.1: J += (|D| - J) / 16, where D is the
// change in one-way transit time. Clock offsets cancel in D, so the two
// ends need no common clock.
func (c *rfc3550Jitter) updateJitter(transit int64) {
	if c.haveTransit {
		d := float64(transit - c.prevTransit)
		c.jitterNs += (math.Abs(d) - c.jitterNs) / 16
	}
	c.prevTransit, c.haveTransit = transit, true
}

// advanceWindow forgets the sequence numbers that slide out as the
// highest moves up to seq, and marks seq itself.
func (c *udpCounter) advanceWindow(seq uint64) {
	if seq-c.live.Highest >= seenWindowBits {
		clear(c.seen[:])
	} else {
		for s := c.live.Highest + 1; s < seq; s++ {
			c.seen[s/64%seenWindowWords] &^= 1 << (s % 64)
		}
	}
	c.markSeen(seq)
}

func (c *udpCounter) markSeen(seq uint64) { c.seen[seq/64%seenWindowWords] |= 1 << (seq % 64) }

func (c *udpCounter) wasSeen(seq uint64) bool {
	return c.seen[seq/64%seenWindowWords]&(1<<(seq%64)) != 0
}

// publish makes everything observed so far visible to snapshots.
func (c *udpCounter) publish() {
	c.mu.Lock()
	c.published = c.live
	c.published.JitterMs = c.jitterNs / 1e6
	c.mu.Unlock()
}

// totals are the published counts since the start.
func (c *udpCounter) totals() udpStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.published
}

// interval returns what was published since the previous interval call,
// and starts the next interval there.
func (c *udpCounter) interval() udpStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.published.minus(c.lastSnap)
	c.lastSnap = c.published
	return d
}

// finalStats settles loss once the sender's count is known: whatever it
// sent and never arrived is lost, including a tail after the highest
// sequence number, which gaps alone cannot see. It returns the totals
// with Lost = sent - Packets (at least 0) and Packets unchanged; the
// report's "packets" is then sent, and lost_percent Lost/sent×100.
func finalStats(t udpStats, sent int64) udpStats {
	if sent > 0 {
		t.Lost = max(sent-t.Packets, 0)
	}
	return t
}

// ---- pacing ----

// How a late sender catches up. Go's timers wake about 1 ms late on
// Linux, and on a busy small machine a sender is descheduled for 5-50 ms
// at times. Slots it missed by up to pacerMaxDebt are still sent, so such
// stalls cost no rate, but at most pacerMaxBurst's worth per wake-up (890
// datagrams of 1400 bytes at 1 Gbit/s), so the catch-up comes as a
// series of short bursts. Slots older than pacerMaxDebt are given up: a
// sender stalled for seconds resumes at its rate, never with a burst of
// seconds.
const (
	pacerMaxDebt  = 100 * time.Millisecond
	pacerMaxBurst = 10 * time.Millisecond
)

// pacer hands out send slots on an absolute schedule: datagram n is due
// at start + n × size × 8 / rate. Because the schedule is absolute, late
// wake-ups cost no rate; the caller sends every due datagram per wake-up
// and sleeps only until the next one is due. Not safe for concurrent use.
type pacer struct {
	start   time.Time
	slotNs  float64 // ns between datagrams; 0 means unpaced
	next    int64   // the first slot not yet handed out
	debt    int64   // most missed slots still sent
	burst   int64   // most slots one call hands out
	skipped int64   // slots given up after stalls
	end     time.Time
	endSlot int64 // with end set: the first slot at or after it
	timer   *time.Timer
}

// newPacer schedules datagrams of size bytes at rate bits/s from start;
// rate 0 lets every call take all it asks for.
func newPacer(rate float64, size int, start time.Time) *pacer {
	p := &pacer{start: start, timer: time.NewTimer(time.Hour)}
	p.timer.Stop()
	if rate > 0 {
		p.slotNs = float64(size) * 8 * 1e9 / rate
		p.debt = max(1, int64(float64(pacerMaxDebt)/p.slotNs))
		p.burst = max(1, int64(float64(pacerMaxBurst)/p.slotNs))
	}
	return p
}

// stopAt ends the schedule: no slot at or after end is handed out, so a
// timed test sends exactly its share however late it is stopped.
func (p *pacer) stopAt(end time.Time) {
	p.end = end
	if p.slotNs > 0 {
		p.endSlot = int64(math.Ceil(float64(end.Sub(p.start)) / p.slotNs))
	}
}

// finished says whether the schedule has ended (see stopAt).
func (p *pacer) finished(now time.Time) bool {
	switch {
	case p.end.IsZero():
		return false
	case p.slotNs == 0:
		return !now.Before(p.end)
	}
	return p.next >= p.endSlot
}

// take hands out up to limit slots that are due at now, at most
// pacerMaxBurst's worth, skipping slots older than pacerMaxDebt. The
// caller sends one datagram per slot.
func (p *pacer) take(now time.Time, limit int) int {
	if p.finished(now) {
		return 0
	}
	if p.slotNs == 0 {
		return limit
	}
	elapsed := now.Sub(p.start)
	if elapsed < 0 {
		return 0
	}
	// The tiny bias keeps a slot due exactly now from rounding away.
	due := int64(float64(elapsed)/p.slotNs*(1+1e-12)) + 1
	if stale := due - p.debt; stale > p.next {
		if !p.end.IsZero() {
			stale = min(stale, p.endSlot)
		}
		p.skipped += stale - p.next
		p.next = stale
	}
	if !p.end.IsZero() {
		due = min(due, p.endSlot)
	}
	avail := due - p.next
	if avail <= 0 {
		return 0
	}
	n := min(avail, p.burst, int64(limit))
	p.next += n
	return int(n)
}

// nextDue is when the next slot falls due.
func (p *pacer) nextDue() time.Time {
	return p.start.Add(time.Duration(float64(p.next) * p.slotNs))
}

// wait sleeps until the next slot is due, or ctx ends. It reuses one
// timer, so pacing allocates nothing.
func (p *pacer) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil || p.slotNs == 0 {
		return err
	}
	d := time.Until(p.nextDue())
	if d <= 0 {
		return nil
	}
	p.timer.Reset(d)
	select {
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	case <-p.timer.C:
		return nil
	}
}

// ---- datagrams over WebSocket: the sender's drop rule ----

// wsQueueTime is how much of the target rate may wait unsent in a
// stream's socket before new datagrams are dropped. TCP never loses
// data: on a path slower than -b its send queue grows, and without a
// bound the test would measure seconds of queueing where UDP would show
// loss. 50 ms is a typical bottleneck router's queue: shorter would drop
// on TCP's ordinary ack-clocked bursts, longer would let latency grow
// that UDP would have shed.
const wsQueueTime = 50 * time.Millisecond

// wsDropLimit is the unsent-byte bound for datagrams of frameBytes (on
// the wire, frame header included) at rate bits/s: wsQueueTime's worth,
// and never less than two frames, so one can wait while one is sent. An
// unpaced test (rate 0) has no bound: it sends as fast as TCP takes it.
func wsDropLimit(rate float64, frameBytes int) int {
	if rate <= 0 {
		return math.MaxInt
	}
	return max(int(rate/8*wsQueueTime.Seconds()), 2*frameBytes)
}

// wsFrameBytes is the wire size of one datagram as a binary WebSocket
// message: payload, header, and a client's masking key.
func wsFrameBytes(payload int, masked bool) int {
	n := 2 + payload
	switch {
	case payload > 0xffff:
		n += 8
	case payload > 125:
		n += 2
	}
	if masked {
		n += 4
	}
	return n
}

// wsSendGate applies the drop rule with the socket's own send queue,
// where the kernel reports it (sendQueueRoom): one probe per wake-up of
// the sender, not one per datagram.
type wsSendGate struct {
	probe *sendQueueProbe
	limit int // unsent bytes beyond which datagrams are dropped
	frame int
}

// newWSSendGate gates datagram frames of frameBytes at rate on nc; false
// means this system cannot see nc's queue: use wsDatagramQueue instead.
func newWSSendGate(nc net.Conn, rate float64, frameBytes int) (*wsSendGate, bool) {
	p, ok := newSendQueueProbe(nc)
	if !ok {
		return nil, false
	}
	return &wsSendGate{probe: p, limit: wsDropLimit(rate, frameBytes), frame: frameBytes}, true
}

// admit says how many of the n datagrams due now may be written; the
// others are dropped. Writing whole frames under the limit never blocks
// for long, as the limit stays far below the socket's buffer.
func (g *wsSendGate) admit(n int) int {
	unsent, ok := g.probe.queued()
	if !ok || g.limit == math.MaxInt {
		return n
	}
	return min(n, max(g.limit-unsent, 0)/g.frame)
}

// datagramWriter is the part of a WebSocket connection a datagram sender
// needs; *wsConn has it.
type datagramWriter interface {
	WriteMessage(op opcode, p []byte) error
}

// wsDatagramQueue is the portable form of the drop rule, for systems
// where the socket's unsent bytes cannot be read (sendQueueRoom says
// !ok): a fixed ring of datagram buffers handed to a writer goroutine.
// A datagram that finds the ring full is dropped, never waited for, and
// the writer always writes whole messages. Nothing is allocated per
// datagram: buffers and the channels' slots are made once.
type wsDatagramQueue struct {
	w     datagramWriter
	slots [][]byte
	free  chan int // indices of buffers the writer is done with
	ready chan int // indices of buffers waiting to be written
	done  chan struct{}
	err   error // the writer's failure; read after done closes
}

// newWSDatagramQueue queues up to depth datagrams of size bytes for w.
// depth is wsDropLimit / frame size, at least 2.
func newWSDatagramQueue(w datagramWriter, size, depth int) *wsDatagramQueue {
	depth = max(depth, 2)
	q := &wsDatagramQueue{
		w:     w,
		slots: make([][]byte, depth),
		free:  make(chan int, depth),
		ready: make(chan int, depth),
		done:  make(chan struct{}),
	}
	for i := range q.slots {
		q.slots[i] = make([]byte, size)
		fillDatagramPadding(q.slots[i])
		q.free <- i
	}
	go q.write()
	return q
}

// errQueueClosed is returned by offer after the writer failed.
var errQueueClosed = errors.New("datagram writer stopped")

// offer queues one datagram, or reports false when the queue is full:
// the datagram is then lost, as at a full router queue, and its sequence
// number stays used so the receiver counts it. Only the sending
// goroutine calls offer, and never after close.
func (q *wsDatagramQueue) offer(seq uint64, sentNs int64) (bool, error) {
	select {
	case <-q.done:
		return false, errQueueClosed
	default:
	}
	select {
	case i := <-q.free:
		putDatagramHeader(q.slots[i], seq, sentNs)
		q.ready <- i // never blocks: ready has room for every slot
		return true, nil
	default:
		return false, nil
	}
}

// write is the writer goroutine: it sends queued datagrams in order
// until close or the first error.
func (q *wsDatagramQueue) write() {
	defer close(q.done)
	for i := range q.ready {
		if q.err == nil {
			q.err = q.w.WriteMessage(opBinary, q.slots[i])
		}
		if q.err != nil {
			return
		}
		q.free <- i
	}
}

// close lets the writer finish what is queued and returns its error.
func (q *wsDatagramQueue) close() error {
	close(q.ready)
	<-q.done
	return q.err
}

// wsDatagramSender sends one stream's datagrams as binary WebSocket
// messages, one datagram each, under the drop rule: through wsSendGate
// where the kernel shows the socket's queue, through wsDatagramQueue
// elsewhere, and with plain blocking writes when unpaced (rate 0), where
// TCP's own back-pressure is the point. Dropped datagrams use up their
// sequence numbers, so the receiver counts them lost.
type wsDatagramSender struct {
	w     datagramWriter
	gate  *wsSendGate      // set where the kernel reports the queue
	queue *wsDatagramQueue // set otherwise, for a paced test
	batch *frameBatch      // one writev per send, when w is a *wsConn
	buf   []byte
	seq   uint64
	epoch time.Time

	packets atomic.Int64 // datagrams numbered: the sender's count for loss
	dropped atomic.Int64 // of those, dropped at a full queue
	bytes   atomic.Int64 // payload handed on to the connection
}

// wsQueueMaxBytes bounds the portable queue's memory per stream.
const wsQueueMaxBytes = 4 << 20

// newWSDatagramSender sends size-byte datagrams at rate over w, whose
// TCP connection is nc; masked is true on the client side.
func newWSDatagramSender(w datagramWriter, nc net.Conn, rate float64, size int, masked bool, epoch time.Time) *wsDatagramSender {
	s := &wsDatagramSender{w: w, buf: make([]byte, size), epoch: epoch}
	fillDatagramPadding(s.buf)
	if c, ok := w.(*wsConn); ok {
		s.batch = c.NewBatch(udpSendBatch, datagramHeaderLen)
	}
	if rate <= 0 {
		return s
	}
	frame := wsFrameBytes(size, masked)
	if gate, ok := newWSSendGate(nc, rate, frame); ok {
		s.gate = gate
		return s
	}
	depth := min(wsDropLimit(rate, frame), wsQueueMaxBytes) / frame
	s.queue = newWSDatagramQueue(w, size, depth)
	return s
}

// send sends or drops the next n datagrams and returns n, the count
// numbered; it fails only when the connection does.
func (s *wsDatagramSender) send(n int) (int, error) {
	sentNs := int64(time.Since(s.epoch))
	if s.queue != nil {
		return s.sendQueued(n, sentNs)
	}
	room := n
	if s.gate != nil {
		room = s.gate.admit(n)
	}
	if s.batch != nil {
		return n, s.sendBatch(room, n, sentNs)
	}
	for i := 0; i < room; i++ {
		putDatagramHeader(s.buf, s.seq+1, sentNs)
		if err := s.w.WriteMessage(opBinary, s.buf); err != nil {
			return i, err
		}
		s.seq++
		s.packets.Add(1)
		s.bytes.Add(int64(len(s.buf)))
	}
	s.skip(n - room)
	return n, nil
}

// sendBatch writes room datagrams in one writev and drops the rest of n.
// Each frame's header goes in the batch's scratch; the padding is the
// same bytes every time, so nothing is copied per datagram.
func (s *wsDatagramSender) sendBatch(room, n int, sentNs int64) error {
	var head [datagramHeaderLen]byte
	for i := range min(room, udpSendBatch) {
		putDatagramHeader(head[:], s.seq+uint64(i)+1, sentNs)
		s.batch.Add(opBinary, head[:], s.buf[datagramHeaderLen:])
	}
	room = min(room, udpSendBatch)
	if room > 0 {
		if err := s.batch.Flush(); err != nil {
			return err
		}
	}
	s.seq += uint64(room)
	s.packets.Add(int64(room))
	s.bytes.Add(int64(room * len(s.buf)))
	s.skip(n - room)
	return nil
}

func (s *wsDatagramSender) sendQueued(n int, sentNs int64) (int, error) {
	for i := 0; i < n; i++ {
		ok, err := s.queue.offer(s.seq+1, sentNs)
		if err != nil {
			return i, err
		}
		if !ok {
			s.skip(1)
			continue
		}
		s.seq++
		s.packets.Add(1)
		s.bytes.Add(int64(len(s.buf)))
	}
	return n, nil
}

// skip numbers and drops k datagrams.
func (s *wsDatagramSender) skip(k int) {
	s.seq += uint64(k)
	s.packets.Add(int64(k))
	s.dropped.Add(int64(k))
}

// close waits for queued datagrams to be written.
func (s *wsDatagramSender) close() error {
	if s.queue != nil {
		return s.queue.close()
	}
	return nil
}

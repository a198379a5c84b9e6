package main

// legacy_link.go runs one old-protocol connection's data inside a testRun
// (legacy.go has the protocol): this end's sending, a reader for the whole
// connection, and its end, which the old protocol marks with EOT_C and
// EOT_S and the close handshake. Both ends use it; they differ in who
// decides that a test is over.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// legacyRun is a testRun whose streams speak the old protocol, with what
// its links share.
type legacyRun struct {
	*testRun
	client bool
	idle   time.Duration
	// rxTarget is the bytes a client receives in all before it hangs up
	// (-n or -k in reverse or bidir): old servers cannot be told a size.
	rxTarget   int64
	rxTotal    atomic.Int64
	rxFull     chan struct{} // closed once rxTotal reaches rxTarget
	rxFullOnce sync.Once
}

func newLegacyRun(run *testRun, client bool) *legacyRun {
	return &legacyRun{testRun: run, client: client, idle: run.idle, rxFull: make(chan struct{})}
}

// received adds n to the bytes all links received, for rxTarget.
func (lr *legacyRun) received(n int) {
	if lr.rxTarget > 0 && lr.rxTotal.Add(int64(n)) >= lr.rxTarget {
		lr.rxFullOnce.Do(func() { close(lr.rxFull) })
	}
}

// legacyLink is one old-protocol connection as one end runs it: the
// stream it sends on and the one it receives on (either may be nil; a
// bidir link has both), a reader that runs for the connection's whole
// life (it answers the peer's pings even while this end only sends), and
// a closer that ends the connection once this end is done with it.
type legacyLink struct {
	lr     *legacyRun
	conn   *wsConn
	tx, rx *stream
	eot    string         // the marker this end sends after its data
	srv    *server        // the server end; nil on a client
	udp    *legacyUDPSide // a UDP test's extra state; nil for TCP

	txDone   chan struct{} // closed when this end's sending is over (at once without tx)
	rxEnd    chan struct{} // closed when this end counts no more (at once without rx)
	rxOnce   sync.Once
	readDone chan struct{} // closed when the reader returned
	readErr  error         // the reader's result; read after readDone
	start    sync.Once
	lastByte atomic.Int64 // ns from the run's start to the last byte counted

	eotSent   atomic.Bool // this end's marker is on its way
	peerEnded atomic.Bool // the peer sent its marker or closed
	closing   atomic.Bool // the closer began the close handshake
}

// legacyUDPSide marks a UDP test's link; on a client it holds the
// server's report.
type legacyUDPSide struct {
	report   []byte        // client: the server's report, as received
	reportIn chan struct{} // client: closed when it arrived
	early    atomic.Bool   // client: it arrived before our sending ended
}

// newLegacyLink makes a link on c with the given streams, which it wires
// to itself: their loops become the link's.
func newLegacyLink(lr *legacyRun, c *wsConn, tx, rx *stream) *legacyLink {
	l := &legacyLink{lr: lr, conn: c, tx: tx, rx: rx, eot: legacyEOTServer,
		txDone: make(chan struct{}), rxEnd: make(chan struct{}), readDone: make(chan struct{})}
	if lr.client {
		l.eot = legacyEOTClient
	}
	if tx == nil {
		close(l.txDone)
	} else {
		tx.conn = c
		tx.loop = func(_ *testRun, s *stream) error { return l.send(s) }
	}
	if rx == nil {
		l.rxOnce.Do(func() { close(l.rxEnd) })
	} else {
		rx.conn = c
		rx.loop = func(*testRun, *stream) error { return l.receive() }
	}
	if (tx != nil && tx.dgram != nil) || (rx != nil && rx.dgram != nil) {
		l.udp = &legacyUDPSide{reportIn: make(chan struct{})}
	}
	return l
}

// streams are the link's streams for the run.
func (l *legacyLink) streams() []*stream {
	var out []*stream
	for _, s := range []*stream{l.tx, l.rx} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// begin starts the closer, and the reader when no stream loop runs it;
// whichever stream loop comes first calls it.
func (l *legacyLink) begin() {
	l.start.Do(func() {
		go l.closeWhenDone()
		if l.rx == nil {
			go l.readAll()
		}
		if l.tx != nil && !l.lr.client {
			go l.resetWhenStuck()
		}
	})
}

// Old clients end a reverse test by closing while the server sends, and
// stop reading as they close. The server's sending then blocks on a full
// socket, its close reply waits behind the data, and the client waits out
// its own close timeouts (half a minute). So once the client's close has
// come and the sending has moved nothing for stuckAfterClose, the server
// resets the connection instead. A client that still reads, however
// slowly, keeps the sending moving and gets its close reply.
const stuckAfterClose = 2 * time.Second

// resetWhenStuck watches a server's sending link for that case.
func (l *legacyLink) resetWhenStuck() {
	tick := time.NewTicker(stuckAfterClose / 20)
	defer tick.Stop()
	var since time.Time
	var moved int64
	for {
		select {
		case <-l.txDone:
			return
		case now := <-tick.C:
			if !l.conn.peerClosed() {
				continue
			}
			if m := l.tx.moved.Load(); since.IsZero() || m != moved {
				since, moved = now, m
				continue
			}
			if now.Sub(since) >= stuckAfterClose {
				if tc, ok := l.conn.NetConn().(*net.TCPConn); ok {
					tc.SetLinger(0) // a reset: the unsent data is dropped at once
				}
				l.conn.Abort()
				return
			}
		}
	}
}

// peerClosed tells whether the peer's close frame has arrived, even while
// the reply to it waits for a blocked writer.
func (c *wsConn) peerClosed() bool { return c.peerClose.Load() != nil }

func (l *legacyLink) readAll() {
	l.readErr = l.read()
	close(l.readDone)
}

// receive is the receiving stream's loop: the reader itself.
func (l *legacyLink) receive() error {
	l.begin()
	l.readAll()
	return l.readErr
}

// send is the sending stream's loop: data, then this end's marker. A
// link that only sends returns once the reader saw the connection end,
// so a refusal the peer sends at the close is not lost.
func (l *legacyLink) send(s *stream) error {
	l.begin()
	var err error
	if s.dgram != nil {
		err = l.sendDatagrams(s)
	} else {
		err = l.sendData(s)
	}
	if raw, ok := readTCPInfo(l.conn.NetConn()); ok {
		s.finalTCP.Store(&raw)
	}
	s.endAt.CompareAndSwap(0, int64(time.Since(l.lr.start)))
	if err == nil {
		l.eotSent.Store(true)
		l.conn.SetWriteDeadline(time.Now().Add(closeWait))
		err = l.conn.WriteMessage(opText, []byte(l.eot))
	}
	close(l.txDone)
	if err = l.sendEnded(err); err != nil {
		l.conn.Abort() // the reader, waiting for a close, ends too
	}
	<-l.readDone
	switch {
	case l.udp != nil && l.udp.early.Load():
		return errLegacyEarlyReport
	case l.readErr != nil:
		return l.readErr // the peer's reason, rather than a broken pipe
	}
	return err
}

// sendEnded judges a send error: a server's sending ends when the
// client hangs up, which is how old clients end a reverse test.
func (l *legacyLink) sendEnded(err error) error {
	if err == nil || l.lr.client {
		return err
	}
	select {
	case <-l.readDone:
	case <-time.After(closeWait):
	}
	if l.peerEnded.Load() {
		return nil
	}
	return err
}

// sendData sends binary messages of the run's length, each with its
// sequence number in front, in batches as the engine's sender does.
func (l *legacyLink) sendData(s *stream) error {
	run := l.lr.testRun
	maxFrames := max(1, min(64, batchBytes/run.length))
	batch := l.conn.NewBatch(maxFrames, legacySeqLen)
	src := newPoolReader(run.length)
	var head [legacySeqLen]byte
	var seq uint64
	frames := 1
	for !run.stopped() {
		n, duringOmit := run.reserve(int64(frames) * int64(run.length))
		if n == 0 {
			break
		}
		for left := n; left > 0; {
			m := int(min(left, int64(run.length)))
			binary.BigEndian.PutUint64(head[:], seq)
			seq++
			k := min(m, legacySeqLen)
			batch.Add(opBinary, head[:k], src.next(m-k))
			left -= int64(m)
		}
		t0 := time.Now()
		l.conn.SetWriteDeadline(t0.Add(run.idle))
		if err := batch.Flush(); err != nil {
			return err
		}
		run.settle(s, n, duringOmit)
		frames = nextBatchSize(frames, maxFrames, time.Since(t0))
	}
	return nil
}

// nextBatchSize grows a batch while writes return at once and shrinks it
// when they block, as the engine's sender does.
func nextBatchSize(frames, maxFrames int, took time.Duration) int {
	switch {
	case took < batchMinFlush && frames < maxFrames:
		frames *= 2
	case took > batchMaxFlush && frames > 1:
		frames /= 2
	}
	return min(frames, maxFrames)
}

// sendDatagrams is the client's UDP sending: datagrams of the run's
// length on the pacer's schedule, each with its sequence number (from 0)
// and the send time in Unix nanoseconds in front of zero padding. The
// whole datagram is masked, so the server reads zeros after the header.
// Where the socket's queue is visible, datagrams that find it backed up
// are dropped as the engine's WebSocket sender drops them.
func (l *legacyLink) sendDatagrams(s *stream) error {
	run := l.lr.testRun
	ctx, cancel := contextUntil(run.stopping)
	defer cancel()
	p := newPacer(run.rate, run.length, run.start)
	if run.duration > 0 {
		p.stopAt(run.start.Add(run.omit + run.duration))
	}
	gate, gated := newWSSendGate(l.conn.NetConn(), run.rate, wsFrameBytes(run.length, true))
	batch := l.conn.NewBatch(udpSendBatch, run.length)
	dgram := make([]byte, run.length)
	var seq uint64
	send := func(n int) (int, int, error) {
		fit := n
		if gated {
			fit = gate.admit(n)
		}
		for range fit {
			binary.BigEndian.PutUint64(dgram[0:8], seq)
			binary.BigEndian.PutUint64(dgram[8:16], uint64(time.Now().UnixNano()))
			batch.Add(opBinary, dgram, nil)
			seq++
		}
		seq += uint64(n - fit)
		s.dgram.dropped.Add(int64(n - fit))
		if fit > 0 {
			l.conn.SetWriteDeadline(time.Now().Add(run.idle))
			if err := batch.Flush(); err != nil {
				return 0, 0, err
			}
			s.dgram.packets.Add(int64(fit))
		}
		return fit, n, nil
	}
	err := sendPaced(ctx, p, udpSendBatch, func(n int) (int, error) { return run.sendBudgeted(s, n, send) })
	if errors.Is(err, errBudgetSpent) {
		err = nil
	}
	return err
}

// ---- reading ----

// read is the link's reader: binary messages are counted (or, for the
// server's UDP test, their headers observed) and thrown away; text
// messages go to onText. It returns when the connection ends: nil when
// the close was orderly.
func (l *legacyLink) read() error {
	var text []byte
	continuing := false
	deadline := l.nextDeadline(time.Time{})
	for {
		deadline = l.nextDeadline(deadline)
		op, length, fin, err := l.conn.NextFrame()
		if err != nil {
			return l.readEnded(err)
		}
		first := !continuing
		continuing = !fin
		switch {
		case op == opText:
			if first {
				text = text[:0]
			}
			if text, err = readTextFrame(l.conn, text); err != nil {
				return l.readEnded(err)
			}
			if fin {
				l.onText(text)
			}
		case first && l.rx != nil && l.rx.dgram != nil:
			err = l.observeDatagram(length)
		default:
			err = l.countFrame()
		}
		if err != nil {
			return l.readEnded(err)
		}
	}
}

// nextDeadline keeps the read deadline: an idle timeout, moved on when
// half of it is used, while this end expects data; otherwise one far
// deadline (the run's hard stop), since a peer that only receives, or
// has finished, sends nothing but its pings.
func (l *legacyLink) nextDeadline(d time.Time) time.Time {
	now := time.Now()
	if l.rx != nil && !isClosed(l.rxEnd) {
		if d.Sub(now) < l.lr.idle/2 {
			d = now.Add(l.lr.idle)
			l.conn.SetReadDeadline(d)
		}
		return d
	}
	far := l.lr.start.Add(l.lr.hardStop + l.lr.idle)
	if !d.Equal(far) {
		l.conn.SetReadDeadline(far)
	}
	return far
}

// readTextFrame appends the current frame's payload to text, within
// legacyMaxText.
func readTextFrame(c *wsConn, text []byte) ([]byte, error) {
	var buf [4 << 10]byte
	for {
		n, err := c.ReadPayload(buf[:])
		if len(text)+n > legacyMaxText {
			c.Close(statusMessageTooBig, errLegacyTextTooLong.Error())
			return text, errLegacyTextTooLong
		}
		text = append(text, buf[:n]...)
		if err == io.EOF {
			return text, nil
		}
		if err != nil {
			return text, err
		}
	}
}

// countFrame counts the current binary frame's payload for the
// receiving stream, while it counts, and throws it away.
func (l *legacyLink) countFrame() error {
	for {
		n, err := l.conn.Discard()
		if n > 0 && l.counting() {
			l.rx.moved.Add(int64(n))
			l.lastByte.Store(int64(time.Since(l.lr.start)))
			l.lr.received(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// counting says whether bytes arriving now belong to the measurement.
func (l *legacyLink) counting() bool {
	return l.rx != nil && !isClosed(l.rxEnd) && !l.lr.stopped() && !isClosed(l.lr.rxFull)
}

// observeDatagram reads a datagram's header (sequence number from 0,
// send time in Unix nanoseconds) into the receiving stream's counter.
// The counter numbers from 1, so the sequence number moves up by one.
func (l *legacyLink) observeDatagram(length int64) error {
	var head [datagramHeaderLen]byte
	got, err := readFrameHead(l.conn, head[:])
	if err == nil {
		err = discardFrame(l.conn)
	}
	if err != nil || got < datagramHeaderLen || !l.counting() {
		return err
	}
	seq := binary.BigEndian.Uint64(head[0:8])
	if seq >= 1<<62 {
		return nil // no real test gets there; the counter's sums would overflow
	}
	now := time.Now()
	c := l.rx.dgram.counter
	c.observe(seq+1, int64(binary.BigEndian.Uint64(head[8:16])), now.UnixNano(), int(length))
	c.publish()
	l.lastByte.Store(int64(now.Sub(l.lr.start)))
	return nil
}

// onText handles a whole text message from the peer.
func (l *legacyLink) onText(msg []byte) {
	switch {
	case !l.lr.client && string(msg) == legacyEOTClient:
		l.peerEnded.Store(true)
		l.endRx()
		if l.udp != nil {
			sendJSON(l.conn, l.rx.dgram.counter.legacyReport())
		}
		l.lr.stop()
	case l.lr.client && string(msg) == legacyEOTServer:
		l.peerEnded.Store(true)
		l.endRx()
	case l.lr.client && l.udp != nil && !isClosed(l.udp.reportIn):
		var rep legacyUDPReport
		if json.Unmarshal(msg, &rep) == nil {
			l.udp.report = append([]byte(nil), msg...)
			l.udp.early.Store(!l.eotSent.Load())
			close(l.udp.reportIn)
		}
	}
}

// readEnded turns the reader's last error into its result: an orderly
// close by either end is no failure. A server takes any close frame
// from an old client as the end of its test.
func (l *legacyLink) readEnded(err error) error {
	l.endRx()
	var ce *closeError
	peerClose := errors.As(err, &ce) && !ce.Local
	if peerClose {
		l.peerEnded.Store(true)
	}
	if !l.lr.client {
		l.lr.stop()
	}
	switch {
	case peerClose && (ce.Code == statusNormal || !l.lr.client):
		return nil
	case l.closing.Load() && !errors.As(err, &ce):
		return nil // our close handshake timed out: the data was over
	case peerClose:
		return fmt.Errorf("the server closed the connection: %s (%d)", cleanText(ce.Reason, maxControlPayload), ce.Code)
	}
	return err
}

// endRx ends the receiving stream's count; its time ends with its last
// byte.
func (l *legacyLink) endRx() {
	l.rxOnce.Do(func() {
		if lb := l.lastByte.Load(); lb > 0 {
			l.rx.endAt.CompareAndSwap(0, lb)
		}
		close(l.rxEnd)
	})
}

// closeWhenDone waits until this end is done with the connection, then
// runs the close handshake.
func (l *legacyLink) closeWhenDone() {
	code, reason := statusNormal, "done"
	if l.lr.client {
		l.clientDone()
	} else {
		code, reason = l.serverDone()
	}
	l.endRx()
	l.closing.Store(true)
	l.conn.Close(code, reason)
}

// clientDone waits for the client's side of the test to end: its sending
// (and a UDP test's report), and its receiving, which ends at the
// server's marker, at the client's own time or size, or when the
// connection does.
func (l *legacyLink) clientDone() {
	lr := l.lr
	select {
	case <-l.txDone:
	case <-l.readDone:
	}
	if l.udp != nil {
		select {
		case <-l.udp.reportIn:
		case <-l.readDone:
		case <-time.After(lr.idle):
		}
	}
	select {
	case <-l.rxEnd:
	case <-lr.stopping:
	case <-lr.rxFull:
	case <-l.readDone:
	}
}

// serverDone waits for the server's side to end: the client's marker or
// close, the server's own limit or shutdown. Then the server's sending
// ends with its marker, and the close says why.
func (l *legacyLink) serverDone() (statusCode, string) {
	select {
	case <-l.lr.stopping:
	case <-l.readDone:
	}
	<-l.txDone
	switch {
	case l.peerEnded.Load():
		return statusNormal, "done"
	case l.srv.ctx.Err() != nil:
		return statusGoingAway, "server shutting down"
	}
	return statusPolicyViolation, fmt.Sprintf("the test reached this server's limit of %g s (--max-duration)", l.srv.cfg.maxDuration)
}

// legacyReport is the old server's UDP report from the counter. Its
// numbering starts at 1, so its highest sequence number is the old
// protocol's highest plus one: the count the loss percentage divides by.
func (c *udpCounter) legacyReport() legacyUDPReport {
	t := c.totals()
	rep := legacyUDPReport{JitterMs: t.JitterMs, LostPackets: t.Lost, TotalPackets: t.Packets}
	if t.Highest > 0 {
		rep.LossPercent = 100 * float64(t.Lost) / float64(t.Highest)
	}
	return rep
}

// contextUntil is a context that ends when done closes, or on cancel.
func contextUntil(done <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

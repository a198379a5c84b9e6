package main

// udp_stream.go is the engine's side of a UDP test: each stream's
// datagrams go out on the pacer's schedule and are counted as they
// arrive, over real UDP (udp_net.go) or one per binary WebSocket message,
// and the stream's intervals report their counts. The rest of the run
// (clock, omit, budget, results) is the same as for TCP (stream.go).

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// datagramStream is what a UDP test's stream has beyond its byte count.
type datagramStream struct {
	client  *udpClientConn                   // the client's end over real UDP
	peer    *udpPeer                         // the server's end over real UDP
	counter *udpCounter                      // the receiver's accounting; nil on a sender
	packets atomic.Int64                     // datagrams sent, unless ws counts them
	dropped atomic.Int64                     // datagrams dropped, likewise
	ws      atomic.Pointer[wsDatagramSender] // the sender over WebSocket

	local, remote net.Addr      // the server's end over real UDP
	aborted       chan struct{} // closed by abort
	abortOnce     sync.Once
}

func newDatagramStream(receiving bool) *datagramStream {
	d := &datagramStream{aborted: make(chan struct{})}
	if receiving {
		d.counter = &udpCounter{}
	}
	return d
}

func (d *datagramStream) abort() {
	d.abortOnce.Do(func() { close(d.aborted) })
	if d.client != nil {
		d.client.close()
	}
}

func (d *datagramStream) addrs() (net.Addr, net.Addr) {
	if d.client != nil {
		return d.client.conn.LocalAddr(), d.client.conn.RemoteAddr()
	}
	return d.local, d.remote
}

// How a receiver over real UDP ends: datagrams carry no close, so once
// the peer says (on the control connection) that its senders are done,
// the receiver waits for the path to drain. It stops after
// udpDrainQuiet without a new datagram, and never later than
// udpDrainMax, however deep the queue that keeps it busy.
const (
	udpDrainPoll  = 10 * time.Millisecond
	udpDrainQuiet = 250 * time.Millisecond
	udpDrainMax   = 3 * time.Second
)

// errBudgetSpent ends a sized test's sender: not a failure.
var errBudgetSpent = errors.New("byte budget spent")

// movedBytes is the stream's payload bytes so far: sent, or counted on
// arrival (a server's real-UDP receiver is fed by the shared listener,
// not by a loop of its own).
func (s *stream) movedBytes() int64 {
	if s.dgram != nil && !s.sending {
		return s.dgram.counter.totals().Bytes
	}
	return s.moved.Load()
}

// peerSendersDone records that the peer has sent its last datagram.
func (run *testRun) peerSendersDone() {
	run.peerDoneOnce.Do(func() { close(run.peerDone) })
}

// sendDatagrams is a UDP sending stream's loop: the pacer's schedule,
// the byte budget of a sized test, and the transport's send.
func (run *testRun) sendDatagrams(s *stream) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-run.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	p := newPacer(run.rate, run.length, run.start)
	if run.duration > 0 {
		p.stopAt(run.start.Add(run.omit + run.duration))
	}
	send, batch, finish := run.datagramTransport(s)
	err := sendPaced(ctx, p, batch, func(n int) (int, error) { return run.sendBudgeted(s, n, send) })
	if errors.Is(err, errBudgetSpent) {
		err = nil
	}
	s.endAt.CompareAndSwap(0, int64(time.Since(run.start)))
	return errors.Join(err, finish())
}

// datagramSend sends up to n datagrams and says how many went out and
// how many of the schedule's slots it used: a datagram dropped at a
// backed-up WebSocket uses its slot without moving a byte.
type datagramSend func(n int) (sent, used int, err error)

// sendBudgeted sends up to n datagrams within the byte budget of a sized
// test, and counts what went out.
func (run *testRun) sendBudgeted(s *stream, n int, send datagramSend) (int, error) {
	size := int64(run.length)
	granted, duringOmit := run.reserve(int64(n) * size)
	if granted == 0 {
		return 0, errBudgetSpent
	}
	// A sized test's last datagram is whole, even where the size is not
	// a multiple of the datagram's.
	want := int((granted + size - 1) / size)
	sent, used, err := send(want)
	run.settle(s, int64(sent)*size, duringOmit)
	if unused := granted - int64(used)*size; unused > 0 && !duringOmit {
		run.refund(unused)
	}
	return used, err
}

// datagramTransport picks the stream's way of sending n datagrams: the
// socket's batch send over real UDP, or frames over its WebSocket.
// finish ends the stream once the last datagram is out.
func (run *testRun) datagramTransport(s *stream) (send datagramSend, batch int, finish func() error) {
	d := s.dgram
	var sender *udpSender
	switch {
	case d.client != nil:
		sender = d.client.newSender(run.length, run.start)
	case d.peer != nil:
		sender = d.peer.newSender(run.length, run.start)
	default:
		return run.wsDatagrams(s)
	}
	send = func(n int) (int, int, error) {
		m, err := sender.send(n)
		d.packets.Add(int64(m))
		return m, m, err
	}
	return send, sender.batch(), func() error { return nil }
}

// wsDatagrams sends a stream's datagrams as binary messages, one frame
// each, with the drop rule of wsDatagramSender. finish closes the stream
// as a TCP sender does, so the receiver counts every datagram before the
// close.
func (run *testRun) wsDatagrams(s *stream) (datagramSend, int, func() error) {
	w := newWSDatagramSender(s.conn, s.conn.NetConn(), run.rate, run.length, s.conn.isClient, run.start)
	s.dgram.ws.Store(w)
	send := func(n int) (int, int, error) {
		s.conn.SetWriteDeadline(time.Now().Add(run.idle))
		before := w.packets.Load() - w.dropped.Load()
		used, err := w.send(n)
		return int(w.packets.Load() - w.dropped.Load() - before), used, err
	}
	finish := func() error { return errors.Join(w.close(), s.conn.Close(statusNormal, "done")) }
	return send, udpSendBatch, finish
}

// receiveDatagrams is a UDP receiving stream's loop.
func (run *testRun) receiveDatagrams(s *stream) error {
	if s.conn != nil {
		return run.receiveWSDatagrams(s)
	}
	d := s.dgram
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	failed := make(chan error, 1)
	if d.client != nil {
		go func() { failed <- d.client.receive(ctx, d.counter, run.length, run.start) }()
		go d.client.keepalive(ctx, udpKeepalivePeriod)
	}
	return run.awaitDrained(s, failed)
}

// awaitDrained returns once the peer's senders are done and the path has
// drained (see udpDrainQuiet), or the stream fails or is aborted. The
// stream's end is its last arrival, to the poll's resolution.
func (run *testRun) awaitDrained(s *stream, failed <-chan error) error {
	tick := time.NewTicker(udpDrainPoll)
	defer tick.Stop()
	var seen int64
	var lastArrival, doneAt time.Time
	for {
		select {
		case err := <-failed:
			return err
		case <-s.dgram.aborted:
			return net.ErrClosed
		case now := <-tick.C:
			if n := s.dgram.counter.totals().Packets; n != seen {
				seen, lastArrival = n, now
			}
			if doneAt.IsZero() && isClosed(run.peerDone) {
				doneAt = now
			}
			if !doneAt.IsZero() && (now.Sub(lastArrival) >= udpDrainQuiet || now.Sub(doneAt) >= udpDrainMax) {
				if !lastArrival.IsZero() {
					s.endAt.CompareAndSwap(0, int64(lastArrival.Sub(run.start)))
				}
				return nil
			}
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// receiveWSDatagrams counts datagrams that arrive as binary messages: it
// reads each one's header and discards the padding unread.
func (run *testRun) receiveWSDatagrams(s *stream) error {
	counter := s.dgram.counter
	var head [datagramHeaderLen]byte
	var lastByte time.Time
	for {
		s.conn.SetReadDeadline(time.Now().Add(run.idle))
		_, length, _, err := s.conn.NextFrame()
		if err != nil {
			if !lastByte.IsZero() {
				s.endAt.CompareAndSwap(0, int64(lastByte.Sub(run.start)))
			}
			return endOfStream(err)
		}
		got, err := readFrameHead(s.conn, head[:])
		if err == nil {
			err = discardFrame(s.conn)
		}
		if err != nil {
			return endOfStream(err)
		}
		lastByte = time.Now()
		if seq, sentNs, ok := readDatagramHeader(head[:got]); ok {
			counter.observe(seq, sentNs, int64(lastByte.Sub(run.start)), int(length))
			counter.publish()
		}
	}
}

// readFrameHead reads up to len(p) bytes of the current frame's payload.
func readFrameHead(c *wsConn, p []byte) (int, error) {
	got := 0
	for got < len(p) {
		n, err := c.ReadPayload(p[got:])
		got += n
		if err != nil {
			if err == io.EOF {
				return got, nil
			}
			return got, err
		}
	}
	return got, nil
}

// discardFrame skips the rest of the current frame's payload.
func discardFrame(c *wsConn) error {
	for {
		_, err := c.Discard()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// udpCumulative is the stream's counts since the run started.
func (s *stream) udpCumulative() udpCounts {
	d := s.dgram
	switch ws := d.ws.Load(); {
	case s.sending && ws != nil:
		dropped := ws.dropped.Load()
		return udpCounts{Packets: ws.packets.Load() - dropped, Dropped: dropped}
	case s.sending:
		return udpCounts{Packets: d.packets.Load(), Dropped: d.dropped.Load()}
	}
	t := d.counter.totals()
	return udpCounts{Packets: t.Packets, Lost: t.Lost, OutOfOrder: t.OutOfOrder, Duplicates: t.Duplicates, JitterMs: t.JitterMs}
}

// udpInterval is the counts since the previous interval closed. Called
// on the clock goroutine.
func (s *stream) udpInterval() *udpCounts {
	now := s.udpCumulative()
	iv := now.minus(s.lastUDP)
	s.lastUDP = now
	return &iv
}

// udpTotals is the counts over the measured (not omitted) time.
func (s *stream) udpTotals() *udpCounts {
	t := s.udpCumulative().minus(s.udpBase)
	return &t
}

// minus is the span from earlier to c; jitter is the value at its end.
func (c udpCounts) minus(earlier udpCounts) udpCounts {
	return udpCounts{
		Packets:    c.Packets - earlier.Packets,
		Lost:       c.Lost - earlier.Lost,
		OutOfOrder: c.OutOfOrder - earlier.OutOfOrder,
		Duplicates: c.Duplicates - earlier.Duplicates,
		Dropped:    c.Dropped - earlier.Dropped,
		JitterMs:   c.JitterMs,
	}
}

// addUDP joins two consecutive spans' counts.
func addUDP(a, b *udpCounts) *udpCounts {
	if a == nil || b == nil {
		return b
	}
	sum := udpCounts{
		Packets:    a.Packets + b.Packets,
		Lost:       a.Lost + b.Lost,
		OutOfOrder: a.OutOfOrder + b.OutOfOrder,
		Duplicates: a.Duplicates + b.Duplicates,
		Dropped:    a.Dropped + b.Dropped,
		JitterMs:   b.JitterMs,
	}
	return &sum
}

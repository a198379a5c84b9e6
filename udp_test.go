package main

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		err  error
	}{
		{"0", 0, nil},
		{"0M", 0, nil},
		{"10", 10e6, nil}, // bare number: Mbit/s
		{"1.5", 1.5e6, nil},
		{"64k", 64e3, nil},
		{"64K", 64e3, nil},
		{"100m", 100e6, nil},
		{"100M", 100e6, nil},
		{"1g", 1e9, nil},
		{"2.5G", 2.5e9, nil},
		{"0.1T", 100e9, nil},
		{"100G", 100e9, nil},
		{".5M", 0.5e6, nil},
		{"1000", 1e9, nil},
		{"1", 1e6, nil},
		{"1T", 0, errRateRange},
		{"101G", 0, errRateRange},
		{"0.0000001", 0, errRateRange}, // 0.1 bit/s
		{"-1", 0, errRateRange},
		{"-5M", 0, errRateRange},
		{"", 0, errRateSyntax},
		{"M", 0, errRateSyntax},
		{"abc", 0, errRateSyntax},
		{"1e3", 0, errRateSyntax},
		{"NaN", 0, errRateSyntax},
		{"Inf", 0, errRateSyntax},
		{"+1", 0, errRateSyntax},
		{"1.2.3", 0, errRateSyntax},
		{"10 M", 0, errRateSyntax},
		{"10MB", 0, errRateSyntax},
		{"10x", 0, errRateSyntax},
		{"0x10", 0, errRateSyntax},
		{"1_000", 0, errRateSyntax},
		{"10M/100", 0, errRateSyntax}, // iperf3's burst syntax is not supported
	}
	for _, tt := range tests {
		got, err := parseRate(tt.in)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestDatagramHeader(t *testing.T) {
	tests := []struct {
		name   string
		b      []byte
		seq    uint64
		sentNs int64
		ok     bool
	}{
		{"first", dgHeader(1, 0), 1, 0, true},
		{"big", dgHeader(1<<56-1, 1<<62), 1<<56 - 1, 1 << 62, true},
		{"negative time", dgHeader(7, -5), 7, -5, true},
		{"with padding", append(dgHeader(9, 3), make([]byte, 1384)...), 9, 3, true},
		{"seq zero", dgHeader(0, 1), 0, 0, false},
		{"control byte", dgHeader(1<<56, 1), 0, 0, false},
		{"hello", putControl(make([]byte, udpControlLen), udpKindHello, 1, udpSecret{}), 0, 0, false},
		{"short", dgHeader(5, 5)[:15], 0, 0, false},
		{"empty", nil, 0, 0, false},
	}
	for _, tt := range tests {
		seq, sentNs, ok := readDatagramHeader(tt.b)
		if seq != tt.seq || sentNs != tt.sentNs || ok != tt.ok {
			t.Errorf("%s: got %d, %d, %v; want %d, %d, %v", tt.name, seq, sentNs, ok, tt.seq, tt.sentNs, tt.ok)
		}
	}
}

func dgHeader(seq uint64, sentNs int64) []byte {
	b := make([]byte, datagramHeaderLen)
	putDatagramHeader(b, seq, sentNs)
	return b
}

func FuzzReadDatagramHeader(f *testing.F) {
	f.Add(dgHeader(1, 2))
	f.Add(dgHeader(0, 0))
	f.Add(putControl(make([]byte, udpControlLen), udpKindAck, 3, udpSecret{1}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, sentNs, ok := readDatagramHeader(b)
		if !ok {
			return
		}
		if seq == 0 || len(b) < datagramHeaderLen || b[0] != 0 {
			t.Fatalf("accepted %x as seq %d", b, seq)
		}
		again := dgHeader(seq, sentNs)
		if string(again) != string(b[:datagramHeaderLen]) {
			t.Fatalf("round trip of %x gave %x", b[:datagramHeaderLen], again)
		}
		var c udpCounter
		c.observe(seq, sentNs, sentNs+1, len(b))
		c.observe(seq, sentNs, sentNs+1, len(b))
		if c.live.Packets != 1 || c.live.Duplicates != 1 || c.live.Lost != int64(seq-1) {
			t.Fatalf("counter after %d twice: %+v", seq, c.live)
		}
	})
}

func TestUDPCounter(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint64
		want udpStats // JitterMs not compared here
	}{
		{"in order", []uint64{1, 2, 3, 4}, udpStats{Packets: 4, Highest: 4}},
		{"gap", []uint64{1, 2, 5, 6}, udpStats{Packets: 4, Lost: 2, Highest: 6}},
		{"first lost", []uint64{3, 4}, udpStats{Packets: 2, Lost: 2, Highest: 4}},
		{"reorder", []uint64{1, 3, 2, 4}, udpStats{Packets: 4, OutOfOrder: 1, Highest: 4}},
		{"reorder and gap", []uint64{1, 4, 2, 6}, udpStats{Packets: 4, Lost: 2, OutOfOrder: 1, Highest: 6}},
		{"duplicate", []uint64{1, 2, 2, 3}, udpStats{Packets: 3, Duplicates: 1, Highest: 3}},
		{"duplicate of reordered", []uint64{1, 3, 2, 2, 3}, udpStats{Packets: 3, OutOfOrder: 1, Duplicates: 2, Highest: 3}},
		{"duplicate of first", []uint64{1, 1, 1}, udpStats{Packets: 1, Duplicates: 2, Highest: 1}},
		// iperf3 never takes loss below zero, so a reordered datagram
		// with nothing lost (a duplicate beyond memory) leaves it at 0.
		{"late beyond window", []uint64{1, 2, 5000, 2}, udpStats{Packets: 4, Lost: 4996, OutOfOrder: 1, Highest: 5000}},
		{"late fills gap beyond window", []uint64{1, 5000, 3}, udpStats{Packets: 3, Lost: 4997, OutOfOrder: 1, Highest: 5000}},
		{"window wraps", udpSeqRange(1, 3*seenWindowBits+5), udpStats{Packets: 3*seenWindowBits + 5, Highest: 3*seenWindowBits + 5}},
		{"duplicate after wrap", append(udpSeqRange(1, seenWindowBits+10), seenWindowBits+9, 12), udpStats{
			Packets: seenWindowBits + 10, Duplicates: 2, Highest: seenWindowBits + 10}},
		// 12 is now 4096 behind the highest: older than the window, so
		// taken as late (out of order), as iperf3 would.
		{"old duplicate is late", append(udpSeqRange(1, seenWindowBits+12), 12), udpStats{
			Packets: seenWindowBits + 13, OutOfOrder: 1, Highest: seenWindowBits + 12}},
		// 4098 shares a bit with 2; the jump past the window cleared it.
		{"jump clears window", []uint64{1, 2, seenWindowBits + 102, seenWindowBits + 2}, udpStats{
			Packets: 4, Lost: seenWindowBits + 98, OutOfOrder: 1, Highest: seenWindowBits + 102}},
		// A gap inside the window clears the skipped numbers' bits one by one.
		{"gap clears aliases", append(udpSeqRange(1, 10), seenWindowBits+9, seenWindowBits+4), udpStats{
			Packets: 12, Lost: seenWindowBits - 3, OutOfOrder: 1, Highest: seenWindowBits + 9}},
	}
	for _, tt := range tests {
		var c udpCounter
		for _, s := range tt.seqs {
			c.observe(s, 0, 0, 100)
		}
		c.publish()
		got := c.totals()
		tt.want.Bytes = tt.want.Packets * 100
		got.JitterMs = 0
		if got != tt.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func udpSeqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestUDPCounterJitter(t *testing.T) {
	tests := []struct {
		name    string
		transit []int64 // ns, per datagram
		wantMs  float64
	}{
		{"steady", []int64{5e6, 5e6, 5e6}, 0},
		{"one step", []int64{0, 16e6}, 1},                  // |D| = 16 ms, J = 16/16
		{"two steps", []int64{0, 16e6, 0}, 1 + 15.0/16},    // J = 1 + (16-1)/16
		{"offset clocks", []int64{-9e18, -9e18 + 16e6}, 1}, // only differences count
	}
	for _, tt := range tests {
		var c udpCounter
		for i, tr := range tt.transit {
			sent := int64(i) * 1e6
			c.observe(uint64(i+1), sent, sent+tr, 16)
		}
		c.publish()
		if got := c.totals().JitterMs; got < tt.wantMs-1e-9 || got > tt.wantMs+1e-9 {
			t.Errorf("%s: jitter %v ms, want %v", tt.name, got, tt.wantMs)
		}
	}
}

func TestUDPCounterSnapshots(t *testing.T) {
	var c udpCounter
	feed := func(seqs ...uint64) {
		for _, s := range seqs {
			c.observe(s, 0, 0, 10)
		}
		c.publish()
	}
	feed(1, 2, 4)
	first := c.interval()
	feed(3, 5, 5, 8)
	second := c.interval()
	c.observe(9, 0, 0, 10) // observed, not yet published
	third := c.interval()
	want := []udpStats{
		{Packets: 3, Bytes: 30, Lost: 1, Highest: 4},
		{Packets: 3, Bytes: 30, Lost: 1, OutOfOrder: 1, Duplicates: 1, Highest: 8}, // 3 came back (-1), 6 and 7 lost (+2)
		{Highest: 8},
	}
	for i, got := range []udpStats{first, second, third} {
		if got != want[i] {
			t.Errorf("interval %d:\n got %+v\nwant %+v", i+1, got, want[i])
		}
	}
	total := c.totals()
	if total.Packets != 6 || total.Lost != 2 || total.LostPercent() != 25 {
		t.Errorf("totals %+v, %v%%", total, total.LostPercent())
	}
	tests := []struct {
		sent     int64
		lost     int64
		lostPerc float64
	}{
		{0, 2, 25},  // sender's count unknown: gaps only
		{8, 2, 25},  // agrees with the gaps
		{10, 4, 40}, // the last two never came: tail loss
		{5, 0, 0},   // fewer than arrived (a bad count) never goes negative
		{12, 6, 50}, // lost_percent is lost over sent
		{6, 0, 0},   // all arrived
		{100, 94, 94},
	}
	for _, tt := range tests {
		f := finalStats(total, tt.sent)
		if f.Lost != tt.lost || f.Packets != 6 || (tt.sent > 0 && 100*float64(f.Lost)/float64(tt.sent) != tt.lostPerc) {
			t.Errorf("finalStats(sent %d) = %+v, want lost %d", tt.sent, f, tt.lost)
		}
	}
}

// TestUDPCounterConcurrent runs an observer against a snapshot taker
// under -race: intervals must add up to the totals.
func TestUDPCounterConcurrent(t *testing.T) {
	var c udpCounter
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := uint64(1); s <= 200_000; s++ {
			if s%7 != 0 {
				c.observe(s, 0, 0, 1)
			}
			if s%64 == 0 {
				c.publish()
			}
		}
		c.publish()
	}()
	var sum udpStats
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		d := c.interval()
		sum.Packets += d.Packets
		sum.Lost += d.Lost
	}
	sum.Packets += c.interval().Packets
	if tot := c.totals(); sum.Packets != tot.Packets || sum.Lost != tot.Lost || tot.Lost != 200_000/7 {
		t.Fatalf("intervals sum to %+v, totals %+v", sum, tot)
	}
}

func TestPacer(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	type step struct {
		at    time.Duration
		limit int
		want  int
	}
	tests := []struct {
		name        string
		rate        float64
		size        int
		steps       []step
		wantSkipped int64
		end         time.Duration // stopAt, if set
	}{
		{"ends at 10 ms: slots 0-9", 8e6, 1000, []step{
			{5 * time.Millisecond, 100, 6},
			{9 * time.Millisecond, 100, 4},
			{time.Hour, 100, 0},
		}, 0, 10 * time.Millisecond},
		{"stall past the end sends nothing late", 8e6, 1000, []step{
			{5 * time.Millisecond, 100, 6},
			{time.Hour, 100, 0},
		}, 4, 10 * time.Millisecond},
		{"stall into the end", 8e6, 1000, []step{
			{0, 100, 1},
			{14 * time.Millisecond, 100, 9}, // slots 1-9: late, but within the debt; cut at the end
		}, 0, 10 * time.Millisecond},
		{"end between slots", 8e6, 1000, []step{
			{5 * time.Millisecond, 100, 6},
			{10400 * time.Microsecond, 100, 5}, // slots 6-10: slot 10 is at 10 ms < 10.5 ms
		}, 0, 10500 * time.Microsecond},
		{"unpaced end", 0, 1000, []step{
			{time.Second - 1, 5, 5},
			{time.Second, 5, 0},
		}, 0, time.Second},
		{"1 ms slots", 8e6, 1000, []step{
			{-time.Second, 100, 0}, // before the start
			{0, 100, 1},            // slot 0 is due at the start
			{0, 100, 0},
			{999 * time.Microsecond, 100, 0},
			{time.Millisecond, 100, 1},
			{3 * time.Millisecond, 100, 2},
			{3 * time.Millisecond, 100, 0},
			{4500 * time.Microsecond, 100, 1},
		}, 0, 0},
		{"batch limit", 8e6, 1000, []step{
			{4 * time.Millisecond, 2, 2},
			{4 * time.Millisecond, 2, 2},
			{4 * time.Millisecond, 2, 1},
			{4 * time.Millisecond, 2, 0},
		}, 0, 0},
		{"stall of 2 s catches up 100 ms, 10 ms at a time", 8e6, 1000, []step{
			{0, 1000, 1},
			{2 * time.Second, 1000, 10},
			{2*time.Second + time.Millisecond, 1000, 10},
		}, 2000 - 100, 0},
		{"stall of 50 ms costs no slot", 8e6, 1000, []step{
			{0, 1000, 1},
			{50 * time.Millisecond, 1000, 10},
			{50 * time.Millisecond, 1000, 10},
			{50 * time.Millisecond, 1000, 10},
			{50 * time.Millisecond, 1000, 10},
			{50 * time.Millisecond, 1000, 10},
			{50 * time.Millisecond, 1000, 0},
		}, 0, 0},
		{"slow rate stall catches up one", 64e3, 1400, []step{ // 175 ms slots
			{0, 10, 1},
			{174 * time.Millisecond, 10, 0},
			{175 * time.Millisecond, 10, 1},
			{2 * time.Second, 10, 1},
			{2100 * time.Millisecond, 10, 1}, // slot 12 at 2.1 s
		}, 9, 0},
		{"unpaced", 0, 1400, []step{
			{0, 64, 64},
			{0, 64, 64},
			{-time.Hour, 7, 7},
		}, 0, 0},
		{"1 Gbit/s exact count", 1e9, 1250, []step{ // 10 µs slots
			{time.Second - 1, 1 << 30, 1000}, // 100 ms of debt kept, 10 ms at a time
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 1000},
			{time.Second - 1, 1 << 30, 0},
			{time.Second, 1 << 30, 1},                           // slot 100000
			{time.Second + 49*time.Microsecond, 1 << 30, 4},     // slots 100001-100004
			{time.Second + 50*time.Microsecond - 1, 1 << 30, 0}, // slot 100005 not yet
			{time.Second + 50*time.Microsecond, 1 << 30, 1},     // now
		}, 100000 - 10000, 0},
	}
	for _, tt := range tests {
		p := newPacer(tt.rate, tt.size, start)
		if tt.end != 0 {
			p.stopAt(at(tt.end))
		}
		for i, s := range tt.steps {
			if got := p.take(at(s.at), s.limit); got != s.want {
				t.Errorf("%s: step %d at %v: took %d, want %d", tt.name, i, s.at, got, s.want)
			}
		}
		if p.skipped != tt.wantSkipped {
			t.Errorf("%s: skipped %d, want %d", tt.name, p.skipped, tt.wantSkipped)
		}
	}
}

func TestPacerNextDueAndWait(t *testing.T) {
	start := time.Now()
	p := newPacer(8e6, 1000, start) // 1 ms slots
	p.take(start.Add(9*time.Millisecond), 100)
	if got := p.nextDue().Sub(start); got != 10*time.Millisecond {
		t.Fatalf("next due at %v, want 10ms", got)
	}
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 10*time.Millisecond {
		t.Fatalf("woke after %v, before the slot", time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); err == nil {
		t.Fatal("wait ignored a cancelled context")
	}
	if err := newPacer(0, 1000, start).wait(context.Background()); err != nil {
		t.Fatal("an unpaced wait failed:", err)
	}
}

func TestWSDropLimit(t *testing.T) {
	tests := []struct {
		rate  float64
		frame int
		want  int
	}{
		{0, 1406, int(^uint(0) >> 1)},
		{100e6, 1406, 625_000},
		{1e9, 1406, 6_250_000},
		{64e3, 1406, 2812}, // 50 ms is 400 bytes: two frames instead
	}
	for _, tt := range tests {
		if got := wsDropLimit(tt.rate, tt.frame); got != tt.want {
			t.Errorf("wsDropLimit(%v, %d) = %d, want %d", tt.rate, tt.frame, got, tt.want)
		}
	}
	frames := []struct {
		payload int
		masked  bool
		want    int
	}{{16, false, 18}, {125, true, 131}, {126, false, 130}, {1400, true, 1408}, {65507, false, 65511}, {65507, true, 65515}}
	for _, f := range frames {
		if got := wsFrameBytes(f.payload, f.masked); got != f.want {
			t.Errorf("wsFrameBytes(%d, %v) = %d, want %d", f.payload, f.masked, got, f.want)
		}
	}
}

// TestUDPSendQueueRoomDrops: on loopback, a receiver that does not read
// makes the WebSocket datagram sender drop instead of block; once the
// receiver drains the socket, what it counts lost is what was dropped.
func TestUDPSendQueueRoomDrops(t *testing.T) {
	a, b := udpTCPPair(t)
	a.(*net.TCPConn).SetWriteBuffer(1 << 20)
	b.(*net.TCPConn).SetReadBuffer(32 << 10)
	if _, ok := sendQueueRoom(a); !ok {
		t.Skip("this system does not report a TCP send queue; wsDatagramQueue covers it")
	}
	const rate, size = 40e6, 1400
	s := newWSDatagramSender(&udpRawFrameWriter{nc: a}, a, rate, size, true, time.Now())
	if s.gate == nil {
		t.Fatal("no kernel gate on a TCP socket")
	}
	a.SetWriteDeadline(time.Now().Add(5 * time.Second)) // a blocked write fails the test
	p := newPacer(rate, size, time.Now())
	p.stopAt(time.Now().Add(600 * time.Millisecond))
	if err := sendPaced(context.Background(), p, 64, s.send); err != nil {
		t.Fatalf("sender blocked or failed after %d datagrams, %d dropped: %v", s.packets.Load(), s.dropped.Load(), err)
	}
	unsent, _ := sendQueueRoom(a)
	sent, dropped := s.packets.Load()-s.dropped.Load(), s.dropped.Load()
	t.Logf("sent %d, dropped %d, unsent %d bytes (limit %d)", sent, dropped, unsent, s.gate.limit)
	if dropped == 0 || sent == 0 || unsent > s.gate.limit+s.gate.frame {
		t.Fatalf("sent %d, dropped %d, unsent %d: want drops and a bounded queue", sent, dropped, unsent)
	}
	var c udpCounter
	udpReadFrames(t, b, sent, &c)
	if got := finalStats(c.totals(), s.packets.Load()); got.Packets != sent || got.Lost != dropped || got.Duplicates+got.OutOfOrder != 0 {
		t.Fatalf("receiver counted %+v; sender sent %d, dropped %d", got, sent, dropped)
	}
}

// udpReadFrames reads n of udpRawFrameWriter's frames from nc into c.
func udpReadFrames(t *testing.T, nc net.Conn, n int64, c *udpCounter) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [8]byte
	buf := make([]byte, 64<<10)
	for i := int64(0); i < n; i++ {
		if _, err := io.ReadFull(nc, hdr[:]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		p := buf[:int(hdr[2])<<8|int(hdr[3])]
		if _, err := io.ReadFull(nc, p); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		seq, sentNs, ok := readDatagramHeader(p)
		if !ok {
			t.Fatalf("frame %d: no datagram header", i)
		}
		c.observe(seq, sentNs, sentNs, len(p))
	}
	c.publish()
}

// TestUDPDatagramSenderPortable: without a kernel view of the socket
// (net.Pipe here), the bounded queue drops while the peer does not read.
func TestUDPDatagramSenderPortable(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	const rate, size = 40e6, 1400
	s := newWSDatagramSender(&udpRawFrameWriter{nc: a}, a, rate, size, true, time.Now())
	if s.queue == nil || s.gate != nil {
		t.Fatal("a pipe should get the portable queue")
	}
	p := newPacer(rate, size, time.Now())
	p.stopAt(time.Now().Add(200 * time.Millisecond))
	if err := sendPaced(context.Background(), p, 64, s.send); err != nil {
		t.Fatal(err)
	}
	queued := s.packets.Load() - s.dropped.Load()
	if s.dropped.Load() == 0 || queued != int64(len(s.queue.slots))+1 && queued != int64(len(s.queue.slots)) {
		t.Fatalf("numbered %d, dropped %d, queue of %d", s.packets.Load(), s.dropped.Load(), len(s.queue.slots))
	}
	b.Close() // the stuck writer fails, and close reports it
	if err := s.close(); err == nil {
		t.Fatal("close hid the writer's failure")
	}
}

// TestUDPDatagramSenderUnpaced: at rate 0 every datagram is written,
// blocking as TCP pushes back, and none is dropped.
func TestUDPDatagramSenderUnpaced(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	s := newWSDatagramSender(&udpRawFrameWriter{nc: a}, a, 0, 200, true, time.Now())
	if s.queue != nil || s.gate != nil {
		t.Fatal("rate 0 should write directly")
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.send(50)
		done <- err
	}()
	var c udpCounter
	udpReadFrames(t, b, 50, &c)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.totals(); got.Packets != 50 || got.Lost != 0 || s.dropped.Load() != 0 {
		t.Fatalf("received %+v, dropped %d", got, s.dropped.Load())
	}
}

// TestUDPDatagramQueueDrops: the portable form drops when its writer is
// stuck, and writes whole messages in order once it is not.
func TestUDPDatagramQueueDrops(t *testing.T) {
	w := &udpBlockingWriter{release: make(chan struct{})}
	q := newWSDatagramQueue(w, 100, 4)
	var accepted, dropped int
	for seq := uint64(1); seq <= 20; seq++ {
		ok, err := q.offer(seq, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			accepted++
		} else {
			dropped++
		}
	}
	// The writer holds one datagram, four wait: five at most got in.
	if accepted < 4 || accepted > 5 || dropped != 20-accepted {
		t.Fatalf("accepted %d, dropped %d", accepted, dropped)
	}
	close(w.release)
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	if len(w.seqs) != accepted || w.seqs[0] != 1 || w.sizes != 100*accepted {
		t.Fatalf("writer got %v (%d bytes)", w.seqs, w.sizes)
	}
	failing := newWSDatagramQueue(udpFailingWriter{}, 100, 2)
	failing.offer(1, 0)
	<-failing.done
	if _, err := failing.offer(2, 0); !errors.Is(err, errQueueClosed) {
		t.Fatalf("offer after the writer failed: %v", err)
	}
}

type udpBlockingWriter struct {
	release chan struct{}
	seqs    []uint64
	sizes   int
}

func (w *udpBlockingWriter) WriteMessage(op opcode, p []byte) error {
	<-w.release
	seq, _, _ := readDatagramHeader(p)
	w.seqs = append(w.seqs, seq)
	w.sizes += len(p)
	return nil
}

type udpFailingWriter struct{}

func (udpFailingWriter) WriteMessage(opcode, []byte) error { return net.ErrClosed }

// udpRawFrameWriter writes client frames (masked, with a zero key, so
// the payload reads as is) straight to a connection: enough to fill a
// socket the way wsConn would.
type udpRawFrameWriter struct {
	nc  net.Conn
	buf []byte
}

func (w *udpRawFrameWriter) WriteMessage(op opcode, p []byte) error {
	w.buf = append(w.buf[:0], 0x80|byte(op), 0xfe, byte(len(p)>>8), byte(len(p)), 0, 0, 0, 0)
	w.buf = append(w.buf, p...)
	_, err := w.nc.Write(w.buf)
	return err
}

// udpTCPPair is two ends of one loopback TCP connection, closed when the
// test ends; tests of several files share it.
func udpTCPPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

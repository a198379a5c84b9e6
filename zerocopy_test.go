package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// zcConnPair is a client and a server wsConn joined by loopback TCP.
func zcConnPair(t *testing.T, readBuffer int) (client, server *wsConn) {
	t.Helper()
	cn, sn := udpTCPPair(t)
	opt := connOptions{maxMessage: 4 << 20, readBuffer: readBuffer}
	client, server = newConn(cn, true, opt, nil), newConn(sn, false, opt, nil)
	t.Cleanup(func() {
		client.Abort()
		server.Abort()
	})
	return client, server
}

// zcSetSplice turns splice receiving on or off for one test.
func zcSetSplice(t *testing.T, on bool) {
	was := noZeroCopy.Load()
	noZeroCopy.Store(!on)
	t.Cleanup(func() { noZeroCopy.Store(was) })
}

// TestStreamZeroCopyCounts runs the engine's loops, in both directions,
// copying and with -Z, receiving by splice and by reading, for a sized
// test whose last message is short: the receiver must count exactly
// what the sender sent, and both exactly the size asked for.
func TestStreamZeroCopyCounts(t *testing.T) {
	const length = 1<<20 + 1
	for _, clientSends := range []bool{true, false} {
		for _, zeroCopy := range []bool{false, true} {
			for _, splice := range []bool{false, true} {
				name := fmt.Sprintf("clientSends=%v/zerocopy=%v/splice=%v", clientSends, zeroCopy, splice)
				t.Run(name, func(t *testing.T) {
					zcSetSplice(t, splice)
					client, server := zcConnPair(t, streamReadBuffer(length, 1))
					from, to := client, server
					if !clientSends {
						from, to = server, client
					}
					req := &testRequest{Length: length, Bytes: 3*length + 777, ZeroCopy: zeroCopy}
					sent := zcMove(t, req, from, to)
					if sent != req.Bytes {
						t.Fatalf("sent %d bytes, want %d", sent, req.Bytes)
					}
				})
			}
		}
	}
}

// zcMove runs a sending test run on from and a receiving one on to, and
// returns what was sent once both agree on the count.
func zcMove(t *testing.T, req *testRequest, from, to *wsConn) int64 {
	t.Helper()
	sender := newTestRun(req, 10*time.Second, time.Minute)
	sender.streams = []*stream{{id: 1, sending: true, conn: from}}
	receiver := newTestRun(req, 10*time.Second, time.Minute)
	receiver.streams = []*stream{{id: 1, conn: to}}
	done := make(chan error, 1)
	go func() { done <- receiver.run(context.Background()) }()
	if err := sender.run(context.Background()); err != nil {
		t.Fatalf("sender: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("receiver: %v", err)
	}
	sent, got := sender.streams[0].moved.Load(), receiver.streams[0].moved.Load()
	if got != sent {
		t.Fatalf("received %d bytes, sent %d", got, sent)
	}
	return sent
}

// TestStreamSmallMessagesAreRead: messages under spliceMinFrame are read
// many at a time; the stream gets no drain.
func TestStreamSmallMessagesAreRead(t *testing.T) {
	zcSetSplice(t, true)
	_, server := zcConnPair(t, 0)
	s := &stream{conn: server}
	small := &testRun{length: spliceMinFrame - 1, streams: []*stream{s}}
	if d := small.newDrain(s); d != nil {
		d.close()
		t.Fatalf("a stream of %d-byte messages got a splice drain", small.length)
	}
	noZeroCopy.Store(true)
	large := &testRun{length: 1 << 20, streams: []*stream{s}}
	if d := large.newDrain(s); d != nil {
		d.close()
		t.Fatal("--no-zerocopy: a stream still got a splice drain")
	}
}

// TestZeroCopyE2E: whole sized tests, client and server in this process,
// with -Z in every direction and with a small window (the receiver's
// low-water mark must not hold it up): every byte asked for arrives.
func TestZeroCopyE2E(t *testing.T) {
	zcSetSplice(t, true)
	srv := startE2EServer(t)
	tests := [][]string{
		{"-Z", "-l", "1M", "-n", "5M"},
		{"-Z", "-R", "-l", "1M", "-n", "5M"},
		{"-Z", "--bidir", "-l", "256K", "-n", "3M"},
		{"-Z", "-n", "2M"},
		{"-l", "1M", "-w", "32K", "-n", "8M"},
		{"-R", "-l", "1M", "-w", "32K", "-n", "8M"},
	}
	for _, args := range tests {
		start := time.Now()
		doc := e2eDecode(t, srv.mustRun(t, append(args, "-J", "-i", "0")...).stdout)
		want, _ := parseSize(args[len(args)-1])
		paths := []string{"end.sum_sent.bytes", "end.sum_received.bytes"}
		if args[1] == "--bidir" {
			paths = append(paths, "end.sum_sent_bidir_reverse.bytes", "end.sum_received_bidir_reverse.bytes")
		}
		for _, p := range paths {
			if got := e2eInt(t, doc, p); got != want {
				t.Errorf("%q: %s = %d, want %d", args, p, got, want)
			}
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%q took %v", args, took)
		}
	}
}

// TestPoolReaderPageAligned: a reader for zero-copy sends starts every
// slice on a page and still stays inside the pool and moves on.
func TestPoolReaderPageAligned(t *testing.T) {
	for _, length := range []int{1, 4093, 64 << 10, 1<<20 + 1} {
		pool := poolFor(length)
		p := &poolReader{pool: pool, off: 12345, page: 4096}
		seen := map[int]bool{}
		for range 100 {
			n := length // a sender's messages are all this long but the last
			b := p.next(n)
			off := cap(pool) - cap(b)
			if len(b) != n || off%4096 != 0 {
				t.Fatalf("length %d: a slice of %d bytes at offset %d", length, len(b), off)
			}
			seen[off] = true
		}
		if len(seen) < 2 {
			t.Fatalf("length %d: every slice at the same offset", length)
		}
	}
}

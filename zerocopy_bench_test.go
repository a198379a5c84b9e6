package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkStreamBulk runs the engine's send and receive loops (client
// sends, server receives, as in an upload) for b.N messages of each size:
// sending by copying or as -Z does, receiving as by default (splice from
// spliceMinFrame up) or as with --no-zerocopy. Besides the rate it reports
// the process's CPU seconds per GB moved, which a busy machine disturbs
// less than the rate. allocs/op tends to the allocations per message,
// which must be 0.
//
//	go test -run '^$' -bench StreamBulk -benchmem .
func BenchmarkStreamBulk(b *testing.B) {
	for _, length := range []int{64 << 10, 256 << 10, 1 << 20} {
		for _, send := range []string{"copy", "Z"} {
			for _, recv := range []string{"default", "no-zerocopy"} {
				b.Run(fmt.Sprintf("%dK/send=%s/recv=%s", length>>10, send, recv), func(b *testing.B) {
					was := noZeroCopy.Load()
					noZeroCopy.Store(recv == "no-zerocopy")
					defer noZeroCopy.Store(was)
					benchBulk(b, length, send == "Z")
				})
			}
		}
	}
}

// benchBulk moves b.N messages of length bytes from a sending run to a
// receiving one over loopback TCP.
func benchBulk(b *testing.B, length int, zeroCopy bool) {
	client, server := benchPair(b)
	server.SetLimits(streamMaxMessage(length), streamReadBuffer(length, 1))
	req := &testRequest{Length: length, Bytes: int64(b.N) * int64(length), ZeroCopy: zeroCopy}
	sender := newTestRun(req, time.Minute, time.Hour)
	sender.streams = []*stream{{id: 1, sending: true, conn: client}}
	receiver := newTestRun(req, time.Minute, time.Hour)
	receiver.streams = []*stream{{id: 1, conn: server}}
	b.SetBytes(int64(length))
	b.ReportAllocs()
	user0, sys0 := processCPU()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() { done <- receiver.run(context.Background()) }()
	if err := sender.run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got := receiver.streams[0].moved.Load(); got != req.Bytes {
		b.Fatalf("received %d bytes, sent %d", got, req.Bytes)
	}
	user1, sys1 := processCPU()
	b.ReportMetric((user1-user0+sys1-sys0).Seconds()/(float64(req.Bytes)/1e9), "cpu-s/GB")
}

package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// benchServer starts an in-process server on loopback for benchmarks.
func benchServer(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.mode = modeServer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, ln, &lineWriter{w: &bytes.Buffer{}}) }()
	b.Cleanup(func() { cancel(); <-done })
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// benchTransfer moves b.N × 64 MiB through the whole engine (client and
// server in this process), so -cpuprofile shows both ends' hot paths.
func benchTransfer(b *testing.B, extra ...string) {
	port := benchServer(b)
	const chunk = 64 << 20
	b.SetBytes(chunk)
	b.ResetTimer()
	args := append([]string{"-c", "127.0.0.1", "-p", port, "-n", strconv.Itoa(b.N * chunk), "-i", "0"}, extra...)
	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != 0 {
		b.Fatalf("exit %d: %s", code, errOut.String())
	}
}

func BenchmarkTransferUpload(b *testing.B)   { benchTransfer(b) }
func BenchmarkTransferDownload(b *testing.B) { benchTransfer(b, "-R") }

// BenchmarkStreamFrame runs the engine's own loops, a sending testRun on
// the client end and a receiving one on the server end, for b.N frames of
// 64 KiB. Setup is constant, so allocs/op tends to the allocations per
// frame, which must be 0.
func BenchmarkStreamFrame(b *testing.B) { benchStreamFrame(b, 0) }

// BenchmarkStreamFramePaced is the same with -b on TCP: the pacer's wait
// per batch must not allocate either. 2 Gbit/s keeps it waiting often
// without making the benchmark slow (5000 frames: 1.3 s).
func BenchmarkStreamFramePaced(b *testing.B) { benchStreamFrame(b, 2e9) }

func benchStreamFrame(b *testing.B, rate float64) {
	client, server := benchPair(b)
	server.SetLimits(streamMaxMessage(64<<10), streamReadBuffer(64<<10, 1))
	req := &testRequest{Length: 64 << 10, Bytes: int64(b.N) * 64 << 10, Rate: rate}
	sender := newTestRun(req, time.Minute, time.Hour)
	sender.streams = []*stream{{id: 1, sending: true, conn: client}}
	receiver := newTestRun(req, time.Minute, time.Hour)
	receiver.streams = []*stream{{id: 1, conn: server}}
	b.SetBytes(64 << 10)
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() { done <- receiver.run(context.Background()) }()
	if err := sender.run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if got := receiver.streams[0].moved.Load(); got != req.Bytes {
		b.Fatalf("received %d bytes, sent %d", got, req.Bytes)
	}
}

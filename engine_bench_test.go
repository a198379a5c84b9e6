package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"testing"
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

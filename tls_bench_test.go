package main

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// benchPairTLS is benchPair over TLS: the server end with a self-signed
// certificate, the client end checking nothing (--insecure).
func benchPairTLS(b *testing.B) (client, server *wsConn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cert, err := makeSelfSigned("")
	if err != nil {
		b.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		tc := newTLSConn(nc, func(raw net.Conn) *tls.Conn {
			return tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{*cert}, DynamicRecordSizingDisabled: true})
		})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil {
			accepted <- nil
			return
		}
		tc.SetDeadline(time.Time{})
		accepted <- tc
	}()
	cn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tcn, err := tlsClient(ctx, cn, "localhost", &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err != nil {
		b.Fatal(err)
	}
	sn := <-accepted
	if sn == nil {
		b.Fatal("TLS accept failed")
	}
	opt := connOptions{readBuffer: 64 << 10}
	client, server = newConn(tcn, true, opt, nil), newConn(sn, false, opt, nil)
	b.Cleanup(func() {
		client.Abort()
		server.Abort()
	})
	return client, server
}

// benchEngine runs the engine's own loops, a sending testRun on the
// client end and a receiving one on the server end, for b.N frames of 64
// KiB. Setup is constant, so allocs/op tends to the allocations per
// frame. Beside MB/s (which depends on what else the machine runs) it
// reports the CPU time both ends spent per MB, which mostly does not.
func benchEngine(b *testing.B, client, server *wsConn) {
	server.SetLimits(streamMaxMessage(64<<10), streamReadBuffer(64<<10, 1))
	req := &testRequest{Length: 64 << 10, Bytes: int64(b.N) * 64 << 10}
	sender := newTestRun(req, time.Minute, time.Hour)
	sender.streams = []*stream{{id: 1, sending: true, conn: client}}
	receiver := newTestRun(req, time.Minute, time.Hour)
	receiver.streams = []*stream{{id: 1, conn: server}}
	b.SetBytes(64 << 10)
	b.ReportAllocs()
	b.ResetTimer()
	u0, s0 := processCPU()
	done := make(chan error, 1)
	go func() { done <- receiver.run(context.Background()) }()
	if err := sender.run(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	u1, s1 := processCPU()
	b.ReportMetric(float64(u1-u0+s1-s0)/1e6/(float64(req.Bytes)/1e6), "cpu-ms/MB")
	if got := receiver.streams[0].moved.Load(); got != req.Bytes {
		b.Fatalf("received %d bytes, sent %d", got, req.Bytes)
	}
}

// BenchmarkEngineWS and BenchmarkEngineWSS compare the bulk path over
// plain TCP and over TLS: the second must allocate nothing per frame on
// the sending side (crypto/tls's reader allocates a few bytes per socket
// read), and its cpu-ms/MB over the first's is what TLS costs.
func BenchmarkEngineWS(b *testing.B) {
	client, server := benchPair(b)
	benchEngine(b, client, server)
}

func BenchmarkEngineWSS(b *testing.B) {
	client, server := benchPairTLS(b)
	benchEngine(b, client, server)
}

package main

// Benchmarks of the bulk-data paths. Frames go through a real loopback
// TCP connection with a wsConn at each end; the far end drains or feeds
// in a goroutine, and its allocations count too, so 0 allocs/op means
// neither side allocates per frame.
//
//	go test -run XXX -bench 'Mask|Frame|Batch' -benchmem -count 5 .

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

const benchFrame = 64 << 10

var benchSink uint32

func BenchmarkMask(b *testing.B) {
	p := make([]byte, benchFrame)
	key := uint32(0x3d21fa37)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		key = mask(key, p)
	}
	benchSink = key
}

// BenchmarkMaskBytewise is the plain reading of RFC 6455 §5.3, as a
// yardstick for BenchmarkMask.
func BenchmarkMaskBytewise(b *testing.B) {
	p := make([]byte, benchFrame)
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], 0x3d21fa37)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		for i := range p {
			p[i] ^= key[i&3]
		}
	}
	benchSink = uint32(p[0])
}

// benchPair is a connected client and server over loopback TCP.
func benchPair(b *testing.B) (client, server *wsConn) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			nc = nil
		}
		accepted <- nc
	}()
	cn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	sn := <-accepted
	if sn == nil {
		b.Fatal("accept failed")
	}
	opt := connOptions{readBuffer: 64 << 10}
	client, server = newConn(cn, true, opt, nil), newConn(sn, false, opt, nil)
	b.Cleanup(func() {
		client.Abort()
		server.Abort()
	})
	return client, server
}

// benchBackground runs f in a goroutine and, at cleanup, drops both
// connections and waits for it.
func benchBackground(b *testing.B, client, server *wsConn, f func()) {
	var wg sync.WaitGroup
	wg.Go(f)
	b.Cleanup(func() {
		client.Abort()
		server.Abort()
		wg.Wait()
	})
}

// benchDrain reads and drops frames until the connection fails.
func benchDrain(c *wsConn) {
	for {
		if _, _, _, err := c.NextFrame(); err != nil {
			return
		}
		for {
			if _, err := c.Discard(); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return
			}
		}
	}
}

// BenchmarkWriteFrame: a client sends masked 64 KiB binary frames.
func BenchmarkWriteFrame(b *testing.B) {
	client, server := benchPair(b)
	benchBackground(b, client, server, func() { benchDrain(server) })
	p := make([]byte, benchFrame)
	client.WriteMessage(opBinary, p) // the write buffer is made on first use
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		if err := client.WriteMessage(opBinary, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFrameServer: a server sends 64 KiB binary frames, header
// and payload in one writev.
func BenchmarkWriteFrameServer(b *testing.B) {
	client, server := benchPair(b)
	benchBackground(b, client, server, func() { benchDrain(client) })
	p := make([]byte, benchFrame)
	server.WriteMessage(opBinary, p) // the write buffer is made on first use
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		if err := server.WriteMessage(opBinary, p); err != nil {
			b.Fatal(err)
		}
	}
}

// benchReadFrame reads one frame's payload into buf.
func benchReadFrame(b *testing.B, c *wsConn, buf []byte) {
	if _, _, _, err := c.NextFrame(); err != nil {
		b.Fatal(err)
	}
	for {
		_, err := c.ReadPayload(buf)
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadFrame: a client reads 64 KiB frames from a server into a
// reusable buffer (the download direction).
func BenchmarkReadFrame(b *testing.B) {
	client, server := benchPair(b)
	benchBackground(b, client, server, func() {
		p := make([]byte, benchFrame)
		for server.WriteMessage(opBinary, p) == nil {
		}
	})
	buf := make([]byte, benchFrame)
	benchReadFrame(b, client, buf) // the feeder has made its write buffer
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		benchReadFrame(b, client, buf)
	}
}

// BenchmarkReadFrameMasked: a server reads and unmasks 64 KiB client
// frames (the upload direction). The feeder writes frames masked in
// advance, so its own cost stays out of the way.
func BenchmarkReadFrameMasked(b *testing.B) {
	client, server := benchPair(b)
	var frames []byte
	for i := range 8 {
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], 0x9e3779b9*uint32(i+1))
		frames = append(frames, wtMaskedFrame(0x82, make([]byte, benchFrame), key)...)
	}
	raw := client.NetConn()
	benchBackground(b, client, server, func() {
		for {
			if _, err := raw.Write(frames); err != nil {
				return
			}
		}
	})
	buf := make([]byte, benchFrame)
	benchReadFrame(b, server, buf)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		benchReadFrame(b, server, buf)
	}
}

// BenchmarkWriteBatch: a client sends 16 frames of 4 KiB filler, each
// with an 8-byte masked sequence number, in one writev per batch.
func BenchmarkWriteBatch(b *testing.B) {
	const frames, filler = 16, 4 << 10
	client, server := benchPair(b)
	benchBackground(b, client, server, func() { benchDrain(server) })
	batch := client.NewBatch(frames, 8)
	fill := make([]byte, filler)
	var seq [8]byte
	var n uint64
	b.SetBytes(frames * (filler + 8))
	b.ReportAllocs()
	for b.Loop() {
		for range frames {
			n++
			binary.BigEndian.PutUint64(seq[:], n)
			batch.Add(opBinary, seq[:], fill)
		}
		if err := batch.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

package main

// ws_limits_test.go pins the engine's limits against a hostile peer: a
// frame header that announces more than it sends costs no memory, and a
// peer that pings and never reads cannot hold the reader. Each test talks
// to a wsConn over loopback TCP with frames written by hand.

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// limPair is a server-side wsConn and the raw client socket facing it.
func limPair(t *testing.T, opt connOptions, clientRcvBuf int) (*wsConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		if clientRcvBuf == 0 {
			return nil
		}
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, clientRcvBuf)
		})
	}}
	raw, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(nc, false, opt, nil)
	t.Cleanup(func() { c.Abort(); raw.Close() })
	return c, raw.(*net.TCPConn)
}

// limFrame is a masked client frame (the key is fixed: the server must
// not care).
func limFrame(first byte, payload []byte) []byte {
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	b := limHeader(first, uint64(len(payload)), key)
	for i, p := range payload {
		b = append(b, p^key[i%4])
	}
	return b
}

// limHeader is a masked client frame header announcing length bytes.
func limHeader(first byte, length uint64, key [4]byte) []byte {
	b := []byte{first, 0x80}
	switch {
	case length < 126:
		b[1] |= byte(length)
	case length <= 0xffff:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(length))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, length)
	}
	return append(b, key[:]...)
}

// TestReadMessageGrowsWithArrival: a header that announces a message up
// to the limit, followed by a few bytes and silence, costs a few KiB, not
// the announced size. Before, ReadMessage allocated the announced length
// at once: 16 MiB per /echo connection for 14 bytes of attack.
func TestReadMessageGrowsWithArrival(t *testing.T) {
	cases := []struct {
		name  string
		limit int64
		send  []byte
	}{
		{"one 16 MiB frame", 16 << 20, limHeader(0x82, 16<<20, [4]byte{1, 2, 3, 4})},
		{"a 1 MiB control message", maxControlMessage, limHeader(0x81, maxControlMessage, [4]byte{1, 2, 3, 4})},
		{"a fragment, then a 16 MiB continuation", 32 << 20,
			append(limFrame(0x02, make([]byte, 100)), limHeader(0x80, 16<<20, [4]byte{5, 6, 7, 8})...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, raw := limPair(t, connOptions{maxMessage: tc.limit}, 0)
			if _, err := raw.Write(append(tc.send, "only this"...)); err != nil {
				t.Fatal(err)
			}
			raw.CloseWrite()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err := c.ReadMessage(nil)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("ReadMessage = %v, want an unexpected EOF", err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10 {
				t.Errorf("reading a header and a few bytes allocated %d KiB", got>>10)
			}
		})
	}
}

// TestReadMessageFirstMessageLimit: before a connection says what it
// is, the server takes no more than maxFirstMessage from it.
func TestReadMessageFirstMessageLimit(t *testing.T) {
	c, raw := limPair(t, connOptions{maxMessage: maxFirstMessage}, 0)
	go raw.Write(limHeader(0x81, maxFirstMessage+1, [4]byte{}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(nil); !errors.Is(err, errMessageTooBig) {
		t.Fatalf("a first message over %d bytes: %v, want %v", maxFirstMessage, err, errMessageTooBig)
	}
}

// limPong waits for a pong on raw, skipping data frames.
func limPong(t *testing.T, raw net.Conn, within time.Duration) {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(within))
	for {
		var h [2]byte
		if _, err := io.ReadFull(raw, h[:]); err != nil {
			t.Fatalf("no pong within %v: %v", within, err)
		}
		n := int64(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			io.ReadFull(raw, l[:])
			n = int64(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(raw, l[:])
			n = int64(binary.BigEndian.Uint64(l[:]))
		}
		if _, err := io.CopyN(io.Discard, raw, n); err != nil {
			t.Fatalf("reading a frame: %v", err)
		}
		if opcode(h[0]&0x0f) == opPong {
			return
		}
	}
}

// TestPongDeadline: the reader's pong keeps to a deadline of its own, not
// to one the caller set for a write long done, and not to none at all.
func TestPongDeadline(t *testing.T) {
	cases := []struct {
		name     string
		deadline func(c *wsConn)
	}{
		{"deadline set and cleared, as sendJSON does", func(c *wsConn) {
			c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			c.SetWriteDeadline(time.Time{})
		}},
		{"deadline left set and past", func(c *wsConn) { c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)) }},
		{"no deadline ever", func(*wsConn) {}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, raw := limPair(t, connOptions{}, 0)
			tc.deadline(c)
			time.Sleep(100 * time.Millisecond)
			go func() {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				c.ReadMessage(nil)
			}()
			raw.Write(limFrame(0x89, []byte("keepalive")))
			limPong(t, raw, 2*time.Second)
		})
	}
}

// TestPingFloodWithoutReading: a peer that floods pings and never reads
// fills its socket with pongs; the reader's pong write then gives up
// within controlReplyWait and the read fails, where before it blocked for
// good, past any read deadline, pinning the socket buffers.
func TestPingFloodWithoutReading(t *testing.T) {
	c, raw := limPair(t, connOptions{}, 4<<10)
	c.NetConn().(*net.TCPConn).SetWriteBuffer(4 << 10)
	ended := make(chan error, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _, err := c.ReadMessage(nil)
		ended <- err
	}()
	ping := limFrame(0x89, make([]byte, maxControlPayload))
	flood := make([]byte, 0, 64*len(ping))
	for range 64 {
		flood = append(flood, ping...)
	}
	raw.SetWriteDeadline(time.Now().Add(3 * time.Second))
	for range 200 {
		if _, err := raw.Write(flood); err != nil {
			break // the server has stopped reading: its pongs are stuck
		}
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("ReadMessage returned a message; the peer sent only pings")
		}
	case <-time.After(500*time.Millisecond + controlReplyWait + 3*time.Second):
		t.Fatal("the reader is still blocked writing a pong to a peer that never reads")
	}
}

// TestAnswerControl: a connection that only sends still answers pings.
func TestAnswerControl(t *testing.T) {
	c, raw := limPair(t, connOptions{}, 0)
	go c.AnswerControl()
	raw.Write(limFrame(0x89, []byte("are you there")))
	limPong(t, raw, 2*time.Second)
	raw.Write(limFrame(0x88, binary.BigEndian.AppendUint16(nil, uint16(statusNormal))))
	c.Close(statusNormal, "")
}

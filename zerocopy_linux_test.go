package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// zcSplicePair is a server wsConn whose binary payload goes to a splice
// drain, and the raw TCP connection of its client, which writes frames
// by hand (TCP_NODELAY, so each write leaves as its own segments).
func zcSplicePair(t *testing.T) (c *wsConn, d *spliceDrain, peer *net.TCPConn) {
	t.Helper()
	pc, sn := udpTCPPair(t)
	peer = pc.(*net.TCPConn)
	peer.SetNoDelay(true)
	c = newConn(sn, false, connOptions{maxMessage: 4 << 20, readBuffer: 1 << 20}, nil)
	if d = newSpliceDrain(sn, 256<<10); d == nil {
		t.Fatal("no splice drain on a loopback TCP socket")
	}
	c.SetDrain(d)
	t.Cleanup(func() {
		c.SetDrain(nil)
		d.close()
		c.Abort()
		peer.Close()
	})
	return c, d, peer
}

// zcClientFrame is one masked client frame.
func zcClientFrame(op opcode, payload []byte) []byte {
	key := rand.Uint32()
	b := make([]byte, maxHeaderLen, maxHeaderLen+len(payload))
	b = append(b[:putFrameHeader(b, true, op, len(payload), true, key)], payload...)
	mask(key, b[len(b)-len(payload):])
	return b
}

// zcCloseFrame is a client's close frame with code and reason.
func zcCloseFrame(code statusCode, reason string) []byte {
	p := append([]byte{byte(code >> 8), byte(code)}, reason...)
	return zcClientFrame(opClose, p)
}

// zcReceive reads frames as a receiving stream does, until reading
// fails, and returns each data frame's payload length as counted.
func zcReceive(c *wsConn) (lengths []int64, err error) {
	for {
		if _, _, _, err := c.NextFrame(); err != nil {
			return lengths, err
		}
		var n int64
		for {
			m, err := c.Discard()
			n += int64(m)
			if err == io.EOF {
				break
			}
			if err != nil {
				return append(lengths, n), err
			}
		}
		lengths = append(lengths, n)
	}
}

// zcPeerClosed checks that reading ended with the peer's normal close.
func zcPeerClosed(t *testing.T, err error) {
	t.Helper()
	var ce *closeError
	if !errors.As(err, &ce) || ce.Local || ce.Code != statusNormal {
		t.Fatalf("reading ended with %v, want the peer's close 1000", err)
	}
}

// zcParseFrames splits what a server sent into its frames.
func zcParseFrames(t *testing.T, b []byte) (ops []opcode, payloads [][]byte) {
	t.Helper()
	for len(b) > 0 {
		h, n, err := parseFrameHeader(b)
		if err != nil || n == 0 || int64(len(b)-n) < h.length {
			t.Fatalf("bad frame from the server (%v) in % x", err, b)
		}
		ops = append(ops, h.op)
		payloads = append(payloads, b[n:n+int(h.length)])
		b = b[n+int(h.length):]
	}
	return ops, payloads
}

// TestSpliceDiscardAwkwardSizes: frames of every length form, a ping
// between data frames and a close right behind the last payload, all in
// one write. The splice drain must count each frame exactly, answer the
// ping, see the close and stay in use throughout.
func TestSpliceDiscardAwkwardSizes(t *testing.T) {
	c, _, peer := zcSplicePair(t)
	sizes := []int64{0, 1, 125, 126, 65535, 65536, 1<<20 + 1, 200000}
	var wire []byte
	for i, n := range sizes {
		if i == 5 {
			wire = append(wire, zcClientFrame(opPing, []byte("between"))...)
		}
		wire = append(wire, zcClientFrame(opBinary, make([]byte, n))...)
	}
	wire = append(wire, zcCloseFrame(statusNormal, "done")...)
	go peer.Write(wire)

	lengths, err := zcReceive(c)
	zcPeerClosed(t, err)
	if !slicesEqual(lengths, sizes) {
		t.Fatalf("counted frames of %v bytes, sent %v", lengths, sizes)
	}
	if c.drain == nil {
		t.Fatal("the connection fell back to reading")
	}
	back, _ := io.ReadAll(peer)
	ops, payloads := zcParseFrames(t, back)
	if len(ops) != 2 || ops[0] != opPong || string(payloads[0]) != "between" || ops[1] != opClose {
		t.Fatalf("server answered %v %q, want a pong and a close", ops, payloads)
	}
}

func slicesEqual(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSpliceSplitSegments: a frame header cut across two TCP segments at
// every point, and payloads that end exactly where a segment ends, with
// the drain and without.
func TestSpliceSplitSegments(t *testing.T) {
	for _, drain := range []bool{true, false} {
		t.Run(map[bool]string{true: "splice", false: "read"}[drain], func(t *testing.T) {
			c, d, peer := zcSplicePair(t)
			if !drain {
				c.SetDrain(nil)
			}
			var sizes []int64
			done := make(chan error, 1)
			frames := [][]byte{zcClientFrame(opBinary, make([]byte, 70000)), zcClientFrame(opBinary, make([]byte, 300))}
			go func() {
				for _, f := range frames {
					_, n, _ := parseFrameHeader(f)
					for cut := 1; cut < n; cut++ {
						peer.Write(f[:cut])
						time.Sleep(2 * time.Millisecond)
						peer.Write(f[cut:]) // the payload ends with this segment
						time.Sleep(2 * time.Millisecond)
					}
				}
				_, err := peer.Write(zcCloseFrame(statusNormal, ""))
				done <- err
			}()
			for _, f := range frames {
				_, n, _ := parseFrameHeader(f)
				for range n - 1 {
					sizes = append(sizes, int64(len(f)-n))
				}
			}
			lengths, err := zcReceive(c)
			zcPeerClosed(t, err)
			if werr := <-done; werr != nil {
				t.Fatal(werr)
			}
			if !slicesEqual(lengths, sizes) {
				t.Fatalf("counted %d frames %v, want %d %v", len(lengths), lengths, len(sizes), sizes)
			}
			if drain && c.drain != d {
				t.Fatal("the connection fell back to reading")
			}
		})
	}
}

// TestSpliceUnsupportedFallsBack: where splice fails (here: its pipe is
// not a pipe, so the kernel answers EINVAL), the connection reads from
// then on and loses no byte.
func TestSpliceUnsupportedFallsBack(t *testing.T) {
	c, d, peer := zcSplicePair(t)
	realPipe := d.pipe[1]
	d.pipe[1] = devNull()
	defer func() { d.pipe[1] = realPipe }()
	sizes := []int64{1 << 20, 131072, 5}
	var wire []byte
	for _, n := range sizes {
		wire = append(wire, zcClientFrame(opBinary, make([]byte, n))...)
	}
	go peer.Write(append(wire, zcCloseFrame(statusNormal, "")...))
	lengths, err := zcReceive(c)
	zcPeerClosed(t, err)
	if !slicesEqual(lengths, sizes) {
		t.Fatalf("counted frames of %v bytes, sent %v", lengths, sizes)
	}
	if c.drain != nil {
		t.Fatal("splice failed, yet the connection kept the drain")
	}
}

// TestSpliceReadDeadline: a peer that stalls inside a payload meets the
// read deadline, as it would on the read path.
func TestSpliceReadDeadline(t *testing.T) {
	c, _, peer := zcSplicePair(t)
	f := zcClientFrame(opBinary, make([]byte, 1<<20))
	peer.Write(f[:len(f)/2])
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	start := time.Now()
	_, err := zcReceive(c)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled peer: got %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the deadline took %v to act", took)
	}
}

// TestZeroCopySendWire: what a -Z batch puts on the wire is well-formed
// frames whose payload is the pool's bytes as they lie; a client's carry
// a fresh masking key each (RFC 6455 §5.3), a server's none.
func TestZeroCopySendWire(t *testing.T) {
	for _, isClient := range []bool{true, false} {
		t.Run(map[bool]string{true: "client", false: "server"}[isClient], func(t *testing.T) {
			client, server := zcConnPair(t, 0)
			from, to := client, server
			if !isClient {
				from, to = server, client
			}
			const length, frames = 100000, 24
			b, src, release, err := newZeroCopyBatch(from, frames, length, 256<<10)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			sent := make(chan error, 1)
			go func() {
				for i := range frames {
					b.Add(opBinary, nil, src.next(length-i))
				}
				sent <- b.Flush()
			}()
			var raw []byte
			buf := make([]byte, 1<<20)
			to.SetReadDeadline(time.Now().Add(10 * time.Second))
			for !zcWhole(raw, frames) {
				n, err := to.NetConn().Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				raw = append(raw, buf[:n]...)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			zcCheckWire(t, raw, frames, length, isClient, src.pool)
		})
	}
}

// zcWhole says whether b holds n whole frames.
func zcWhole(b []byte, n int) bool {
	for range n {
		h, hn, err := parseFrameHeader(b)
		if err != nil || hn == 0 || int64(len(b)-hn) < h.length {
			return false
		}
		b = b[hn+int(h.length):]
	}
	return true
}

func zcCheckWire(t *testing.T, raw []byte, frames, length int, masked bool, pool []byte) {
	t.Helper()
	keys := map[uint32]bool{}
	for i := range frames {
		h, n, err := parseFrameHeader(raw)
		switch {
		case err != nil || n == 0:
			t.Fatalf("frame %d: bad header (%v)", i, err)
		case !h.fin || h.op != opBinary || h.masked != masked || h.length != int64(length-i):
			t.Fatalf("frame %d: header %+v, want a final binary frame of %d bytes, masked %v", i, h, length-i, masked)
		case masked && keys[h.key]:
			t.Fatalf("frame %d: masking key %08x used twice", i, h.key)
		case !bytes.Contains(pool, raw[n:n+int(h.length)]):
			t.Fatalf("frame %d: payload is not a slice of the pool", i)
		}
		keys[h.key] = true
		raw = raw[n+int(h.length):]
	}
	if len(raw) != 0 {
		t.Fatalf("%d bytes after the last frame", len(raw))
	}
}

// TestSpliceLowatLearns: the low-water mark grows while waits are short
// and shrinks when they are long, within its bounds.
func TestSpliceLowatLearns(t *testing.T) {
	d := &spliceDrain{size: 1 << 20, mark: lowatMin}
	for range 20 {
		d.learn(lowatWait / 10)
	}
	if d.mark != d.size {
		t.Fatalf("after quick waits the mark is %d, want the pipe's %d", d.mark, d.size)
	}
	d.learn(lowatWait) // about right: kept
	if d.mark != d.size {
		t.Fatalf("a wait of lowatWait moved the mark to %d", d.mark)
	}
	for range 20 {
		d.learn(10 * lowatWait)
	}
	if d.mark != lowatMin {
		t.Fatalf("after slow waits the mark is %d, want %d", d.mark, lowatMin)
	}
}

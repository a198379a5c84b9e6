package main

// Tests of the connection in ws.go: the close handshake, deadlines,
// concurrent reading and writing, and unit tests of reading and writing
// through a scripted net.Conn. The conformance table and its raw client
// are in ws_conformance_test.go, the frame codec's tests in
// ws_frame_test.go, the handshakes' in ws_handshake_test.go. Everything
// talks to loopback only.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// wtDeadline bounds every raw exchange, so a server that stops answering
// fails the test instead of hanging it.
const wtDeadline = 20 * time.Second

// ---- close handshake and deadlines ----

// TestClientRejectsMaskedServerFrame: a server must not mask (§5.1); our
// client fails the connection with 1002 and tells the server so.
func TestClientRejectsMaskedServerFrame(t *testing.T) {
	serverSaw := make(chan []byte, 1)
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		nc.Write(wtMaskedFrame(0x81, []byte("masked!"), [4]byte{1, 2, 3, 4}))
		rc := &wtRaw{t: t, nc: nc, br: br}
		first, p, err := rc.readClientFrame()
		if err != nil || opcode(first&0x0f) != opClose {
			serverSaw <- nil
			return
		}
		serverSaw <- p
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	_, _, err = c.ReadMessage(nil)
	if got := closeStatus(err); got != statusProtocolError {
		t.Fatalf("ReadMessage error %v, close status %d, want 1002", err, got)
	}
	var ce *closeError
	if !errors.As(err, &ce) || !ce.Local {
		t.Errorf("error %v should say we closed", err)
	}
	p := <-serverSaw
	if len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
		t.Errorf("server got close payload %q, want code 1002", p)
	}
}

// TestCloseWaitsForPeerClose: Close sends our code and reason, and does
// not return until the peer's close frame has come (or closeWait passes).
func TestCloseWaitsForPeerClose(t *testing.T) {
	gotClose := make(chan []byte, 1)
	reply := make(chan struct{})
	clientGone := make(chan error, 1)
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		rc := &wtRaw{t: t, nc: nc, br: br}
		_, p, err := rc.readClientFrame()
		if err != nil {
			gotClose <- nil
			return
		}
		gotClose <- p
		<-reply
		nc.Write(wtUnmaskedFrame(0x88, p[:2]))
		// Like a server, drop our half first; the client must then drop
		// TCP too, without sending more.
		nc.(*net.TCPConn).CloseWrite()
		_, err = br.ReadByte()
		clientGone <- err
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close(4321, "test over") }()

	p := <-gotClose
	if len(p) < 2 || binary.BigEndian.Uint16(p) != 4321 || string(p[2:]) != "test over" {
		t.Fatalf("server got close payload %q, want 4321 \"test over\"", p)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the peer answered", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(reply)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(closeWait - time.Second):
		t.Fatal("Close did not return promptly after the peer's close")
	}
	if err := <-clientGone; err != io.EOF {
		t.Errorf("after the handshake the server read %v, want EOF", err)
	}
}

// TestCloseSilentPeerIsBounded: a peer that never answers our close does
// not hold Close beyond closeWait.
func TestCloseSilentPeerIsBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		<-release
	})
	defer close(release)
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		c.Close(statusNormal, "")
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeWait + 10*time.Second):
		t.Fatal("Close hangs on a silent peer")
	}
	t.Logf("Close took %v (closeWait %v)", time.Since(start), closeWait)
	if err := c.WriteMessage(opText, []byte("x")); !errors.Is(err, errConnClosed) {
		t.Errorf("write after Close: %v, want errConnClosed", err)
	}
}

// TestCloseWithConcurrentReader: while another goroutine reads, Close
// leaves reading to it; the reader sees the peer's echoed close.
func TestCloseWithConcurrentReader(t *testing.T) {
	srv := httptest.NewServer(echoHandler(1<<20, wtDeadline))
	defer srv.Close()
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	readErr := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		for {
			if _, _, err := c.ReadMessage(nil); err != nil {
				readErr <- err
				return
			}
		}
	}()
	<-started
	c.WriteMessage(opText, []byte("one"))
	time.Sleep(50 * time.Millisecond) // let the reader block in a read
	if err := c.Close(statusGoingAway, "leaving"); err != nil {
		t.Fatal(err)
	}
	err = <-readErr
	var ce *closeError
	if !errors.As(err, &ce) || ce.Local || ce.Code != statusGoingAway {
		t.Fatalf("reader got %v, want the peer's close with 1001", err)
	}
}

// TestCloseTrimsLongReasonToUTF8: a reason longer than a close frame can
// carry is cut, but never inside a code point.
func TestCloseTrimsLongReasonToUTF8(t *testing.T) {
	gotClose := make(chan []byte, 1)
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		rc := &wtRaw{t: t, nc: nc, br: br}
		_, p, err := rc.readClientFrame()
		if err != nil {
			gotClose <- nil
			return
		}
		gotClose <- p
		nc.Write(wtUnmaskedFrame(0x88, p[:2]))
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reason := strings.Repeat("é", 100) // 200 bytes; 123 would split a code point
	if err := c.Close(statusNormal, reason); err != nil {
		t.Fatal(err)
	}
	p := <-gotClose
	if len(p) < 2 || len(p) > maxControlPayload {
		t.Fatalf("close payload of %d bytes", len(p))
	}
	if _, _, err := parseClosePayload(p); err != nil {
		t.Fatalf("the close we sent is invalid: %v (reason %q)", err, p[2:])
	}
	if !strings.HasPrefix(reason, string(p[2:])) || len(p) < maxControlPayload-3 {
		t.Errorf("reason cut to %d bytes: %q", len(p)-2, p[2:])
	}
}

func TestWSReadDeadlineHonoured(t *testing.T) {
	srv := httptest.NewServer(echoHandler(1<<20, wtDeadline))
	defer srv.Close()
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, _, err = c.ReadMessage(nil)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMessage with nothing to read: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the 100ms deadline fired after %v", d)
	}
	// The failure is sticky.
	if _, _, _, err2 := c.NextFrame(); err2 == nil {
		t.Error("NextFrame after a failed read succeeded")
	}
}

// TestWSConcurrentReadWriteWithPings runs a writer and a reader on each end
// at once while the server pings the client: the client's reader answers
// with pongs between the writer's frames, and every message must arrive
// whole on both sides. The batch variant exercises frameBatch, whose
// masking keys come from the same store as the pongs'. Run with -race.
func TestWSConcurrentReadWriteWithPings(t *testing.T) {
	for _, batch := range []bool{false, true} {
		name := "WriteMessage"
		if batch {
			name = "frameBatch"
		}
		t.Run(name, func(t *testing.T) {
			const n = 1000
			serverErr := make(chan error, 2)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
				c, err := upgrade(w, hr, upgradeOptions{})
				if err != nil {
					serverErr <- err
					return
				}
				defer c.Abort()
				c.SetReadDeadline(time.Now().Add(wtDeadline))
				var wg sync.WaitGroup
				wg.Go(func() { // pings and messages for the client
					for i := range n {
						if err := c.Ping([]byte(fmt.Sprint(i))); err != nil {
							serverErr <- err
							return
						}
						if err := c.WriteMessage(opBinary, binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
							serverErr <- err
							return
						}
					}
				})
				var buf []byte
				for i := range n {
					op, msg, err := c.ReadMessage(buf)
					if err != nil {
						serverErr <- fmt.Errorf("server read %d: %w", i, err)
						return
					}
					if op != opBinary || len(msg) < 8 || binary.BigEndian.Uint64(msg) != uint64(i) {
						serverErr <- fmt.Errorf("server message %d: op %d, % x", i, op, msg[:min(8, len(msg))])
						return
					}
					buf = msg
				}
				wg.Wait()
				// Stay until the client closes, so its pongs have somewhere to go.
				_, _, err = c.ReadMessage(buf)
				if ce := (*closeError)(nil); !errors.As(err, &ce) || ce.Local {
					serverErr <- fmt.Errorf("server, waiting for the client's close: %w", err)
					return
				}
				serverErr <- nil
			}))
			defer srv.Close()
			c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), dialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Abort()
			c.SetReadDeadline(time.Now().Add(wtDeadline))
			var wg sync.WaitGroup
			wg.Go(func() {
				filler := make([]byte, 1000)
				var fb *frameBatch
				if batch {
					fb = c.NewBatch(4, 8)
				}
				for i := range n {
					seq := binary.BigEndian.AppendUint64(nil, uint64(i))
					if !batch {
						if err := c.WriteMessage(opBinary, append(seq, filler...)); err != nil {
							t.Errorf("client write %d: %v", i, err)
							return
						}
						continue
					}
					fb.Add(opBinary, seq, filler)
					if (i+1)%4 == 0 || i == n-1 {
						if err := fb.Flush(); err != nil {
							t.Errorf("client batch flush at %d: %v", i, err)
							return
						}
					}
				}
			})
			var buf []byte
			for i := range n {
				op, msg, err := c.ReadMessage(buf)
				if err != nil {
					t.Fatalf("client read %d: %v", i, err)
				}
				if op != opBinary || len(msg) != 8 || binary.BigEndian.Uint64(msg) != uint64(i) {
					t.Fatalf("client message %d: op %d % x", i, op, msg)
				}
				buf = msg
			}
			wg.Wait()
			if err := c.Close(statusNormal, ""); err != nil {
				t.Fatal(err)
			}
			if err := <-serverErr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// ---- unit tests ----

func TestWSStatusForMapsSentinels(t *testing.T) {
	cases := []struct {
		err  error
		want statusCode
	}{
		{fmt.Errorf("x: %w", errProtocol), statusProtocolError},
		{fmt.Errorf("x: %w", errInvalidUTF8), statusInvalidPayload},
		{fmt.Errorf("x: %w", errMessageTooBig), statusMessageTooBig},
		{io.ErrUnexpectedEOF, statusInternalError},
	}
	for _, tc := range cases {
		if got := statusFor(tc.err); got != tc.want {
			t.Errorf("statusFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestShortReasonFitsAndStaysUTF8(t *testing.T) {
	for _, s := range []string{"short", strings.Repeat("x", 200), strings.Repeat("é", 100), strings.Repeat("😀", 40)} {
		got := shortReason(errors.New(s))
		if len(got) > maxControlPayload-2 || !utf8.ValidString(got) || !strings.HasPrefix(s, got) {
			t.Errorf("shortReason(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
	}
}

// wtScriptConn is a net.Conn that reads from a fixed script and swallows
// writes; for exercising a wsConn without a socket.
type wtScriptConn struct {
	r *bytes.Reader
	net.Conn
}

func (c *wtScriptConn) Read(p []byte) (int, error)        { return c.r.Read(p) }
func (c *wtScriptConn) Write(p []byte) (int, error)       { return len(p), nil }
func (c *wtScriptConn) Close() error                      { return nil }
func (c *wtScriptConn) SetDeadline(time.Time) error       { return nil }
func (c *wtScriptConn) SetReadDeadline(time.Time) error   { return nil }
func (c *wtScriptConn) SetWriteDeadline(time.Time) error  { return nil }
func (c *wtScriptConn) LocalAddr() net.Addr               { return &net.TCPAddr{} }
func (c *wtScriptConn) RemoteAddr() net.Addr              { return &net.TCPAddr{} }
func (c *wtScriptConn) CloseWrite() error                 { return nil }
func (c *wtScriptConn) reset(script []byte) *wtScriptConn { c.r = bytes.NewReader(script); return c }
func wtServerConn(script []byte, opt connOptions) *wsConn {
	return newConn((&wtScriptConn{}).reset(script), false, opt, nil)
}
func wtClientConn(script []byte, opt connOptions) *wsConn {
	return newConn((&wtScriptConn{}).reset(script), true, opt, nil)
}

// TestWSReadMessageManySmallFragments: reassembling a message from many
// small fragments must grow the buffer geometrically. Growing it by one
// fragment at a time costs an allocation and a copy of everything so far
// per fragment, quadratic work a peer could ask for on purpose.
func TestWSReadMessageManySmallFragments(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	msg := wtBinary(r, 256<<10)
	script := wtConcat(wtFragments(byte(opBinary), msg, 64)...)
	var got []byte
	allocs := testing.AllocsPerRun(2, func() {
		c := wtServerConn(script, connOptions{})
		_, m, err := c.ReadMessage(nil)
		if err != nil {
			t.Fatal(err)
		}
		got = m
	})
	if !bytes.Equal(got, msg) {
		t.Fatal("message reassembled wrong")
	}
	// 4096 fragments; a geometric buffer needs a few dozen allocations.
	if allocs > 200 {
		t.Errorf("%v allocations to read one message of 4096 fragments", allocs)
	}
}

// TestWSReadPayloadAndDiscard walks frames with the streaming calls.
func TestWSReadPayloadAndDiscard(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a, b := wtBinary(r, 70000), wtText(r, 5000)
	script := wtConcat(
		wtFrame(0x02, a[:30000]), wtFrame(0x89, []byte("hi")), wtFrame(0x80, a[30000:]),
		wtFrame(0x81, b),
		wtFrame(0x82, []byte("last")),
	)
	c := wtServerConn(script, connOptions{readBuffer: 1000})

	op, n, fin, err := c.NextFrame()
	if err != nil || op != opBinary || n != 30000 || fin {
		t.Fatalf("frame 1: %d %d %v %v", op, n, fin, err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		m, err := c.ReadPayload(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	op, n, fin, err = c.NextFrame() // the ping in between is answered on the way
	if err != nil || op != opBinary || n != 40000 || !fin {
		t.Fatalf("frame 2: %d %d %v %v", op, n, fin, err)
	}
	for {
		m, err := c.ReadPayload(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, a) {
		t.Fatal("fragmented binary payload differs")
	}
	op, n, fin, err = c.NextFrame()
	if err != nil || op != opText || n != int64(len(b)) || !fin {
		t.Fatalf("frame 3: %d %d %v %v", op, n, fin, err)
	}
	total := 0
	for {
		m, err := c.Discard()
		total += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != len(b) {
		t.Fatalf("Discard dropped %d bytes, want %d", total, len(b))
	}
	// NextFrame also skips an unread frame by itself.
	if _, _, _, err := c.NextFrame(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.NextFrame(); err == nil {
		t.Fatal("NextFrame past the end of the script succeeded")
	}
}

// TestWSTinyReadBufferStillReads: a read buffer smaller than a header or a
// control frame is raised to fit them, rather than leaving fill waiting
// for room that never comes.
func TestWSTinyReadBufferStillReads(t *testing.T) {
	ping := bytes.Repeat([]byte{'p'}, maxControlPayload)
	script := wtConcat(wtFrame(0x89, ping), wtFrame(0x82, make([]byte, 70000)), wtFrame(0x81, []byte("end")))
	done := make(chan error, 1)
	go func() {
		c := wtServerConn(script, connOptions{readBuffer: 1})
		if _, msg, err := c.ReadMessage(nil); err != nil || len(msg) != 70000 {
			done <- fmt.Errorf("first message: %d bytes, %v", len(msg), err)
			return
		}
		_, msg, err := c.ReadMessage(nil)
		if err == nil && string(msg) != "end" {
			err = fmt.Errorf("second message %q", msg)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wtDeadline):
		t.Fatal("reading with a 1-byte read buffer hangs")
	}
}

// TestWSDiscardStillValidatesText: throwing text away must not skip the
// UTF-8 check.
func TestWSDiscardStillValidatesText(t *testing.T) {
	c := wtServerConn(wtFrame(0x81, []byte("fine, fine, fine \xff")), connOptions{})
	if _, _, _, err := c.NextFrame(); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = c.Discard()
	}
	if closeStatus(err) != statusInvalidPayload {
		t.Fatalf("Discard of bad text: %v, want 1007", err)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	c := wtClientConn(nil, connOptions{})
	c.Close(statusNormal, "")
	for name, err := range map[string]error{
		"WriteMessage": c.WriteMessage(opText, []byte("x")),
		"Ping":         c.Ping(nil),
		"batch":        func() error { b := c.NewBatch(1, 0); b.Add(opBinary, nil, []byte("x")); return b.Flush() }(),
	} {
		if !errors.Is(err, errConnClosed) {
			t.Errorf("%s after Close: %v, want errConnClosed", name, err)
		}
	}
	if err := c.Ping(make([]byte, 126)); err == nil {
		t.Error("Ping with 126 bytes accepted")
	}
}

// TestClientMasksEveryFrame: frames from our client carry a mask and
// unmask to what was written, for every write path.
func TestClientMasksEveryFrame(t *testing.T) {
	var sink bytes.Buffer
	c := newConn(&wtSinkConn{w: &sink}, true, connOptions{}, nil)
	r := rand.New(rand.NewPCG(9, 10))
	big := wtBinary(r, 200<<10) // more than one write buffer
	c.WriteMessage(opBinary, []byte("small"))
	c.WriteMessage(opBinary, big)
	c.WriteFrame(opText, false, []byte("frag"))
	c.WriteFrame(opContinuation, true, []byte("ment"))
	c.Ping([]byte("p"))
	rc := &wtRaw{t: t, br: bufio.NewReader(&sink)}
	want := []struct {
		first byte
		p     []byte
	}{{0x82, []byte("small")}, {0x82, big}, {0x01, []byte("frag")}, {0x80, []byte("ment")}, {0x89, []byte("p")}}
	for i, w := range want {
		first, p, err := rc.readClientFrame()
		if err != nil || first != w.first || !bytes.Equal(p, w.p) {
			t.Fatalf("frame %d: first 0x%02x, %d bytes, %v", i, first, len(p), err)
		}
	}
}

// wtSinkConn collects writes.
type wtSinkConn struct {
	wtScriptConn
	w io.Writer
}

func (c *wtSinkConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// TestWriteWithinSharedConnection: two goroutines send control messages
// on one connection to a peer that never reads. Each send fails within
// its bound (closeWait); one lifting its deadline never frees the other's write
// from it (the server's progress and goodbye messages share a control
// connection this way).
func TestWriteWithinSharedConnection(t *testing.T) {
	t.Parallel()
	a, _ := udpTCPPair(t) // the other end never reads
	c := newConn(a, false, connOptions{}, nil)
	big := strings.Repeat("x", 16<<20) // more than both sockets' buffers hold
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- sendJSON(c, big) }()
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("write to a peer that never reads: %v, want a deadline error", err)
			}
		case <-time.After(3*closeWait + 5*time.Second):
			t.Fatal("a bounded write hangs: another writer lifted its deadline")
		}
	}
}

package main

// attack_test.go probes wperf -s the way an attacker or a careless client
// would, on loopback only, each probe bounded in connections and time. A
// client appears to come from 127.0.0.N by binding its source address;
// the whole of 127/8 is this machine.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- harness ----

// atkLog is the server's output, readable while it is written.
type atkLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *atkLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *atkLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// atkServer is wperf -s in this process, on 127.0.0.1.
type atkServer struct {
	addr   string
	port   string
	log    *atkLog
	cancel context.CancelFunc
	done   chan struct{}
}

func startAtk(t *testing.T, flags ...string) *atkServer {
	t.Helper()
	cfg, err := parseArgs(append([]string{"-s"}, flags...))
	if err != nil {
		t.Fatalf("server options %q: %v", flags, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &atkServer{addr: ln.Addr().String(), log: &atkLog{}, cancel: cancel, done: make(chan struct{})}
	_, s.port, _ = net.SplitHostPort(s.addr)
	go func() {
		defer close(s.done)
		serve(ctx, cfg, ln, &lineWriter{w: s.log})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			t.Errorf("serve still running 15 s after shutdown")
		}
	})
	return s
}

// client runs wperf -c against the server from source address from.
func (s *atkServer) client(from string, extra ...string) (code int, stdout, stderr string) {
	var out, errOut atkLog
	args := append([]string{"-c", "127.0.0.1", "-p", s.port, "-B", from}, extra...)
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// atkConn is a raw WebSocket client: it writes frames by hand, as an
// attacker would, and reads the server's with a decoder of its own.
type atkConn struct {
	t  testing.TB
	nc *net.TCPConn
	br *bufio.Reader
}

// atkDial connects from source address from and sends an opening
// handshake for path with extra header lines; it returns the connection
// and the server's status code.
func atkDial(t testing.TB, s *atkServer, from, path, extra string) (*atkConn, int) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	c := &atkConn{t: t, nc: nc.(*net.TCPConn), br: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Protocol: %s\r\n%s\r\n", path, s.addr, subprotocolV1, extra)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		return c, 0
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
	}
	return c, resp.StatusCode
}

// atkUpgrade is atkDial that must succeed.
func atkUpgrade(t testing.TB, s *atkServer, from, path, extra string) *atkConn {
	t.Helper()
	c, code := atkDial(t, s, from, path, extra)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade from %s: status %d", from, code)
	}
	return c
}

// send writes one masked frame.
func (c *atkConn) send(first byte, payload []byte) error {
	_, err := c.nc.Write(limFrame(first, payload))
	return err
}

// sendJSON writes v as one text message.
func (c *atkConn) sendJSON(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	if err := c.send(0x81, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// atkFrame is one frame from the server; data payloads are dropped unless
// asked for.
type atkFrame struct {
	op      opcode
	fin     bool
	length  int64
	payload []byte
}

// next reads the server's next frame within d.
func (c *atkConn) next(d time.Duration, keep bool) (atkFrame, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return atkFrame{}, err
	}
	f := atkFrame{op: opcode(h[0] & 0x0f), fin: h[0]&0x80 != 0, length: int64(h[1] & 0x7f)}
	if h[1]&0x80 != 0 {
		return f, errors.New("the server masked a frame")
	}
	switch f.length {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return f, err
		}
		f.length = int64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return f, err
		}
		f.length = int64(binary.BigEndian.Uint64(l[:]))
	}
	if keep || f.op.isControl() || f.op == opText {
		f.payload = make([]byte, f.length)
		_, err := io.ReadFull(c.br, f.payload)
		return f, err
	}
	_, err := io.CopyN(io.Discard, c.br, f.length)
	return f, err
}

// expectJSON reads text messages until one of type kind arrives, and
// fails on any other message type.
func (c *atkConn) expectJSON(kind string, d time.Duration) []byte {
	c.t.Helper()
	for {
		f, err := c.next(d, true)
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", kind, err)
		}
		if f.op != opText {
			continue
		}
		if got, _ := messageType(f.payload); got != kind {
			c.t.Fatalf("got %s, want a %q message", f.payload, kind)
		}
		return f.payload
	}
}

// expectClose reads until the server's close frame and returns its code.
func (c *atkConn) expectClose(d time.Duration) statusCode {
	c.t.Helper()
	for {
		f, err := c.next(d, false)
		if err != nil {
			c.t.Fatalf("waiting for a close frame: %v", err)
		}
		if f.op == opClose && len(f.payload) >= 2 {
			return statusCode(binary.BigEndian.Uint16(f.payload))
		}
	}
}

// atkRequest is a test request as a third-party client would send it.
func atkRequest(dir string, seconds float64) testRequest {
	return testRequest{Type: msgTest, Version: protocolVersion, Cookie: newCookie(), Direction: dir,
		Protocol: "tcp", Time: seconds, Length: 64 << 10, Parallel: 1, Interval: 1}
}

// ---- 1: memory from a declared length ----

// TestAttackDeclaredLength: three waves of 100 /echo connections, each
// sending one frame header that announces 16 MiB and then nothing. The
// server used to allocate the 16 MiB at once: 1.2-1.7 GB of RSS for 50 KB
// of attack. Now its heap grows by what arrives. The caps are raised so
// every connection gets in; the default caps would refuse most of them.
func TestAttackDeclaredLength(t *testing.T) {
	s := startAtk(t, "--max-connections", "1000", "--max-connections-per-ip", "1000")
	header := limHeader(0x82, 16<<20, [4]byte{1, 2, 3, 4})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 3 {
		var wave []*atkConn
		for range 100 {
			c := atkUpgrade(t, s, "127.0.0.1", "/echo", "")
			if _, err := c.nc.Write(header); err != nil {
				t.Fatal(err)
			}
			wave = append(wave, c)
		}
		time.Sleep(200 * time.Millisecond) // the server reads the headers
		for _, c := range wave {
			c.nc.Close()
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("300 headers announcing 16 MiB made the server allocate %d MiB", grew>>20)
	}
}

// TestAttackConnectionCaps: connections outside tests are capped per
// address and in all; the caps turn the excess away with a 503 before
// it costs more than a socket, and a test's own connections are exempt.
func TestAttackConnectionCaps(t *testing.T) {
	t.Parallel()
	t.Run("per address", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, "--max-connections-per-ip", "3")
		for range 3 {
			atkUpgrade(t, s, "127.0.0.11", "/echo", "")
		}
		if _, code := atkDial(t, s, "127.0.0.11", "/echo", ""); code != http.StatusServiceUnavailable {
			t.Errorf("a fourth connection from one address: status %d, want 503", code)
		}
		atkUpgrade(t, s, "127.0.0.12", "/echo", "") // another address is not held back
	})
	t.Run("in all", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, "--max-connections", "4")
		for i := range 4 {
			atkUpgrade(t, s, "127.0.1."+strconv.Itoa(i+1), "/echo", "")
		}
		if _, code := atkDial(t, s, "127.0.1.9", "/echo", ""); code != http.StatusServiceUnavailable {
			t.Errorf("a fifth connection in all: status %d, want 503", code)
		}
	})
	t.Run("a test's streams are exempt", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, "--max-connections-per-ip", "2")
		if code, _, stderr := s.client("127.0.0.13", "-n", "4M", "-P", "8", "--bidir"); code != exitOK {
			t.Errorf("-P 8 --bidir (17 connections) under a cap of 2: exit %d: %s", code, stderr)
		}
	})
	t.Run("the client sees why", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, "--max-connections-per-ip", "1")
		atkUpgrade(t, s, "127.0.0.14", "/echo", "")
		code, _, stderr := s.client("127.0.0.14", "-n", "1M")
		if code != exitRuntime || !strings.Contains(stderr, "503") || !strings.Contains(stderr, "--max-connections-per-ip") {
			t.Errorf("exit %d, stderr %q: want 1 and the 503 with its reason", code, stderr)
		}
	})
}

// TestAttackFirstMessageLimit: a connection that has not said what it is
// may send at most maxFirstMessage.
func TestAttackFirstMessageLimit(t *testing.T) {
	t.Parallel()
	s := startAtk(t)
	c := atkUpgrade(t, s, "127.0.0.15", "/", "")
	go c.nc.Write(limHeader(0x81, maxFirstMessage+1, [4]byte{}))
	if code := c.expectClose(5 * time.Second); code != statusMessageTooBig {
		t.Errorf("a first message over %d bytes: close %d, want %d", maxFirstMessage, code, statusMessageTooBig)
	}
}

// ---- 2: pongs to a peer that never reads ----

// TestAttackPingFlood: a client that floods pings before its first message
// and never reads used to block the server's reader for good, past the
// idle timeout. Now the pong write gives up and the connection's place
// (here, the only one its address may hold) is free again.
func TestAttackPingFlood(t *testing.T) {
	t.Parallel()
	s := startAtk(t, "--idle-timeout", "1", "--max-connections-per-ip", "1")
	c := atkUpgrade(t, s, "127.0.0.16", "/", "")
	c.nc.SetReadBuffer(4 << 10)
	ping := limFrame(0x89, make([]byte, maxControlPayload))
	flood := bytes.Repeat(ping, 64)
	c.nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
	for range 2000 {
		if _, err := c.nc.Write(flood); err != nil {
			break
		}
	}
	// idle (1 s) + the pong's deadline + room for a busy machine; the
	// flooder still has not read a byte.
	deadline := time.Now().Add(8 * time.Second)
	for {
		probe, code := atkDial(t, s, "127.0.0.16", "/echo", "")
		probe.nc.Close()
		if code == http.StatusSwitchingProtocols {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooder's connection still holds its place (status %d)", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- 3: keepalive pings ----

// TestKeepalivePings: a client that pings its control and stream
// connections during a 10 s test, as browsers and WebSocket libraries do,
// gets every pong within a second, 6 s and 9 s into the test too (after
// the control channel's 5 s write deadline used to expire), on the stream
// the server sends on as well as the one it reads.
func TestKeepalivePings(t *testing.T) {
	t.Parallel()
	s := startAtk(t)
	req := atkRequest(dirBidir, 10)
	req.Window = 64 << 10
	ctrl := atkUpgrade(t, s, "127.0.0.17", "/", "")
	ctrl.sendJSON(req)
	ctrl.expectJSON(msgAccept, 5*time.Second)
	up := atkUpgrade(t, s, "127.0.0.17", "/", "")
	up.sendJSON(streamHello{Type: msgStream, Cookie: req.Cookie, ID: 1, Direction: streamUp})
	down := atkUpgrade(t, s, "127.0.0.17", "/", "")
	down.nc.SetReadBuffer(64 << 10)
	down.sendJSON(streamHello{Type: msgStream, Cookie: req.Cookie, ID: 2, Direction: streamDown})
	ctrl.expectJSON(msgStart, 12*time.Second)
	start := time.Now()

	conns := map[string]*atkConn{"control": ctrl, "up": up, "down": down}
	pongs := map[string]chan time.Time{}
	var wg sync.WaitGroup
	var downClosed atomic.Bool
	for name, c := range conns {
		pongs[name] = make(chan time.Time, 8)
		wg.Go(func() {
			for {
				f, err := c.next(15*time.Second, false)
				if err != nil {
					return
				}
				switch {
				case f.op == opPong:
					pongs[name] <- time.Now()
				case f.op == opClose:
					if name == "down" {
						downClosed.Store(true)
						c.send(0x88, f.payload[:2])
					}
					return
				case f.op == opText && name == "control":
					return // the server's results
				case name == "down":
					time.Sleep(2 * time.Millisecond) // read at a modest rate
				}
			}
		})
	}
	// The upload: a small message every 10 ms, until the test's end.
	var sendMu sync.Mutex
	upSend := func(first byte, p []byte) {
		sendMu.Lock()
		defer sendMu.Unlock()
		up.send(first, p)
	}
	wg.Go(func() {
		chunk := make([]byte, 1024)
		for time.Since(start) < 10*time.Second {
			upSend(0x82, chunk)
			time.Sleep(10 * time.Millisecond)
		}
		upSend(0x88, binary.BigEndian.AppendUint16(nil, uint16(statusNormal)))
	})
	for _, at := range []time.Duration{time.Second, 6 * time.Second, 9 * time.Second} {
		time.Sleep(time.Until(start.Add(at)))
		for name, c := range conns {
			sent := time.Now()
			if name == "up" {
				upSend(0x89, []byte("keepalive"))
			} else {
				c.send(0x89, []byte("keepalive"))
			}
			select {
			case <-pongs[name]:
			case <-time.After(2 * time.Second):
				t.Errorf("%v into the test: no pong on the %s connection within 2 s of %v", at, name, sent.Sub(start).Round(time.Millisecond))
			}
		}
	}
	time.Sleep(time.Until(start.Add(11 * time.Second)))
	if !downClosed.Load() {
		t.Errorf("the server's stream did not end normally")
	}
	ctrl.sendJSON(resultsMsg{Type: msgResults, Streams: []streamResult{{ID: 1, Sender: true, Bytes: 1, Seconds: 10}, {ID: 2, Bytes: 1, Seconds: 10}}})
	wg.Wait()
	if strings.Contains(s.log.String(), "error") {
		t.Errorf("the server logged a failure:\n%s", s.log.String())
	}
}

// ---- 4: --max-duration holds for sized tests ----

// TestMaxDurationSizedTests: byte and block tests stop at --max-duration
// with "max-duration reached", instead of running on for the idle
// timeout and ending in a socket error.
func TestMaxDurationSizedTests(t *testing.T) {
	t.Parallel()
	for i, args := range [][]string{{"-n", "1T"}, {"-n", "1T", "-R"}, {"-k", "1G", "-l", "1K", "-R"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			s := startAtk(t, "--max-duration", "2", "--idle-timeout", "5")
			began := time.Now()
			code, _, stderr := s.client("127.0.2."+strconv.Itoa(i+1), args...)
			took := time.Since(began)
			if code != exitRuntime || !strings.Contains(stderr, "max-duration reached") {
				t.Errorf("exit %d, stderr %q: want 1 and \"max-duration reached\"", code, stderr)
			}
			if took > 4*time.Second {
				t.Errorf("the test ran %v under --max-duration 2", took.Round(time.Millisecond))
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(s.log.String(), "error: max-duration reached") && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(s.log.String(), "error: max-duration reached") {
				t.Errorf("the server's log lacks the reason:\n%s", s.log.String())
			}
		})
	}
}

// ---- 5: one client must not hold every slot ----

// TestSquatters: 16 control connections from one address that ask for a
// test and never open its streams (the default --max-clients) used to
// leave a real client no slot in 25 tries. Now that address holds at
// most --max-clients-per-ip of them.
func TestSquatters(t *testing.T) {
	t.Parallel()
	s := startAtk(t)
	var held int
	for range 16 {
		c, code := atkDial(t, s, "127.0.0.20", "/", "")
		if code != http.StatusSwitchingProtocols {
			continue // turned away by the connection cap
		}
		c.sendJSON(atkRequest(dirDownload, 10))
		if f, err := c.next(5*time.Second, true); err == nil {
			if kind, _ := messageType(f.payload); kind == msgAccept {
				held++
			}
		}
	}
	if held > 4 {
		t.Errorf("one address holds %d test slots, want at most 4 (--max-clients-per-ip)", held)
	}
	ok := 0
	for range 25 {
		if code, _, _ := s.client("127.0.0.21", "-n", "1M"); code == exitOK {
			ok++
		}
	}
	if ok != 25 {
		t.Errorf("a real client beside the squatters: %d of 25 tests passed", ok)
	}
}

// TestSlotFreedWhenClientLeaves: a client that leaves while its streams
// join frees its slot at once, not after the 10 s join timeout.
func TestSlotFreedWhenClientLeaves(t *testing.T) {
	t.Parallel()
	s := startAtk(t, "--max-clients", "1")
	c := atkUpgrade(t, s, "127.0.0.22", "/", "")
	c.sendJSON(atkRequest(dirUpload, 5))
	c.expectJSON(msgAccept, 5*time.Second)
	c.nc.Close()
	left := time.Now()
	for {
		code, _, stderr := s.client("127.0.0.23", "-n", "1M")
		if code == exitOK {
			break
		}
		if time.Since(left) > 3*time.Second {
			t.Fatalf("the slot is still taken %v after its client left: %s", time.Since(left).Round(time.Millisecond), stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlotFreedBeforeRefusal: a refused test gives its slot back before
// the close handshake, which a client that never answers would stretch to
// 5 s.
func TestSlotFreedBeforeRefusal(t *testing.T) {
	t.Parallel()
	s := startAtk(t, "--max-clients", "1")
	req := atkRequest(dirUpload, 5)
	req.Congestion = "no-such-algorithm" // the server fails to apply it
	c := atkUpgrade(t, s, "127.0.0.24", "/", "")
	c.sendJSON(req)
	c.expectJSON(msgAccept, 5*time.Second)
	st := atkUpgrade(t, s, "127.0.0.24", "/", "")
	st.sendJSON(streamHello{Type: msgStream, Cookie: req.Cookie, ID: 1, Direction: streamUp})
	c.expectJSON(msgRefuse, 5*time.Second) // and never answer the close
	began := time.Now()
	if code, _, stderr := s.client("127.0.0.25", "-n", "1M"); code != exitOK {
		t.Fatalf("the next client: exit %d: %s", code, stderr)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("the next client waited %v for the slot", took.Round(time.Millisecond))
	}
}

// ---- 6: malformed messages ----

// TestMalformedResults: results the server cannot read are refused at
// once with 1008; they used to go unanswered for the idle timeout.
func TestMalformedResults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		first byte
		body  string
	}{
		{"not JSON", 0x81, `{"type":"results","streams":[`},
		{"wrong shape", 0x81, `{"type":"results","streams":"many"}`},
		{"binary", 0x82, `{"type":"results","streams":[]}`},
		{"no type", 0x81, `{"streams":[]}`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startAtk(t)
			from := "127.0.3." + strconv.Itoa(i+1)
			req := atkRequest(dirUpload, 0.3)
			ctrl := atkUpgrade(t, s, from, "/", "")
			ctrl.sendJSON(req)
			ctrl.expectJSON(msgAccept, 5*time.Second)
			st := atkUpgrade(t, s, from, "/", "")
			st.sendJSON(streamHello{Type: msgStream, Cookie: req.Cookie, ID: 1, Direction: streamUp})
			ctrl.expectJSON(msgStart, 5*time.Second)
			st.send(0x82, make([]byte, 1000))
			time.Sleep(400 * time.Millisecond)
			st.send(0x88, binary.BigEndian.AppendUint16(nil, uint16(statusNormal)))
			ctrl.send(tc.first, []byte(tc.body))
			sent := time.Now()
			ctrl.expectJSON(msgRefuse, 3*time.Second)
			if code := ctrl.expectClose(3 * time.Second); code != statusPolicyViolation {
				t.Errorf("close %d, want %d", code, statusPolicyViolation)
			}
			if took := time.Since(sent); took > 2*time.Second {
				t.Errorf("the refusal took %v", took.Round(time.Millisecond))
			}
		})
	}
}

// TestMalformedFirstMessage: the first message is JSON text with a type;
// anything else is refused at once with 1008.
func TestMalformedFirstMessage(t *testing.T) {
	t.Parallel()
	s := startAtk(t)
	for _, tc := range []struct {
		name  string
		first byte
		body  string
	}{
		{"binary", 0x82, `{"type":"test"}`},
		{"not JSON", 0x81, `hello`},
		{"no type", 0x81, `{"cookie":"x"}`},
	} {
		c := atkUpgrade(t, s, "127.0.0.26", "/", "")
		c.send(tc.first, []byte(tc.body))
		if code := c.expectClose(2 * time.Second); code != statusPolicyViolation {
			t.Errorf("%s: close %d, want %d", tc.name, code, statusPolicyViolation)
		}
		c.nc.Close()
	}
}

// ---- 7: reverse traceroute ----

// atkTrace asks for a reverse trace from source address from and returns
// the server's first answer: a trace_start or a refusal.
func atkTrace(t *testing.T, s *atkServer, from, extra string) (kind string, msg []byte, c *atkConn) {
	t.Helper()
	c, code := atkDial(t, s, from, "/", extra)
	if code != http.StatusSwitchingProtocols {
		return "status " + strconv.Itoa(code), nil, c
	}
	c.sendJSON(traceRequest{Type: msgTrace, Version: protocolVersion, Proto: "udp", MaxHops: 64, Queries: 5, Timeout: 0.5})
	f, err := c.next(10*time.Second, true)
	if err != nil {
		return "error " + err.Error(), nil, c
	}
	kind, _ = messageType(f.payload)
	return kind, f.payload, c
}

// TestReverseTraceCaps: 50 traces asked for at once from one host used to
// all run: about 20,000 probes in 3 s. Now one host, and one /24, has one
// trace at a time; --max-reverse-traces bounds them all; and traces take
// --max-clients slots as tests do.
func TestReverseTraceCaps(t *testing.T) {
	t.Parallel()
	flags := []string{"--no-geo", "--dns", "127.0.0.1:1", "--max-connections-per-ip", "64"}
	t.Run("fifty at once from one host", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, flags...)
		var started atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if kind, _, _ := atkTrace(t, s, "127.0.4.1", ""); kind == msgTraceStart {
					started.Add(1)
				}
			})
		}
		wg.Wait()
		if n := started.Load(); n != 1 {
			t.Errorf("%d of 50 simultaneous traces ran, want 1", n)
		}
	})
	t.Run("one per network", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, flags...)
		if kind, _, _ := atkTrace(t, s, "127.0.5.1", ""); kind != msgTraceStart {
			t.Fatalf("first trace: %s", kind)
		}
		kind, msg, _ := atkTrace(t, s, "127.0.5.2", "")
		if kind != msgRefuse || !strings.Contains(string(msg), "127.0.5.0/24") {
			t.Errorf("a second trace in the same /24: %s %s, want a refusal naming the network", kind, msg)
		}
		if kind, _, _ := atkTrace(t, s, "127.0.6.1", ""); kind != msgTraceStart {
			t.Errorf("a trace from another /24 was refused: %s", kind)
		}
	})
	t.Run("at most --max-reverse-traces", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, append(flags, "--max-reverse-traces", "2")...)
		for _, from := range []string{"127.0.7.1", "127.0.8.1"} {
			if kind, _, _ := atkTrace(t, s, from, ""); kind != msgTraceStart {
				t.Fatalf("trace from %s: %s", from, kind)
			}
		}
		kind, msg, c := atkTrace(t, s, "127.0.9.1", "")
		if kind != msgRefuse || !strings.Contains(string(msg), "--max-reverse-traces") {
			t.Errorf("a third trace: %s %s", kind, msg)
		}
		if code := c.expectClose(3 * time.Second); code != statusTryAgainLater {
			t.Errorf("busy: close %d, want %d", code, statusTryAgainLater)
		}
	})
	t.Run("traces take --max-clients slots", func(t *testing.T) {
		t.Parallel()
		s := startAtk(t, append(flags, "--max-clients", "1")...)
		if kind, _, _ := atkTrace(t, s, "127.0.10.1", ""); kind != msgTraceStart {
			t.Fatalf("trace: %s", kind)
		}
		code, _, stderr := s.client("127.0.11.1", "-n", "1M", "--no-latency") // no idle second, in which the trace could end
		if code != exitRuntime || !strings.Contains(stderr, "busy") {
			t.Errorf("a test while a trace holds the only slot: exit %d, %q", code, stderr)
		}
	})
}

// TestReverseTraceProxyHeader: --trust-proxy believes exactly the header
// the operator chose, never the other one, and the log names the TCP
// peer beside the address traced.
func TestReverseTraceProxyHeader(t *testing.T) {
	t.Parallel()
	const both = "X-Forwarded-For: 198.18.0.1, 127.0.12.7\r\nX-Real-IP: 127.0.12.8\r\n"
	cases := []struct {
		flag, header, want string // want "" means refused
	}{
		{"--trust-proxy", both, "127.0.12.7"},
		{"--trust-proxy=x-forwarded-for", both, "127.0.12.7"},
		{"--trust-proxy=x-real-ip", both, "127.0.12.8"},
		{"--trust-proxy", "X-Real-IP: 127.0.12.8\r\n", ""},
		{"--trust-proxy=x-real-ip", "X-Forwarded-For: 127.0.12.7\r\n", ""},
		{"--trust-proxy=x-real-ip", "X-Real-IP: not-an-address\r\n", ""},
	}
	for _, tc := range cases {
		s := startAtk(t, "--no-geo", "--dns", "127.0.0.1:1", tc.flag)
		kind, msg, c := atkTrace(t, s, "127.0.12.1", tc.header)
		var start traceStartMsg
		json.Unmarshal(msg, &start)
		switch {
		case tc.want == "" && kind != msgRefuse:
			t.Errorf("%s with %q: %s %s, want a refusal", tc.flag, tc.header, kind, msg)
		case tc.want != "" && start.Target != tc.want:
			t.Errorf("%s with %q: traced %q (%s), want %s", tc.flag, tc.header, start.Target, kind, tc.want)
		case tc.want != "":
			for f, err := c.next(10*time.Second, true); err == nil && f.op != opClose; f, err = c.next(10*time.Second, true) {
			}
			logged := regexp.MustCompile(`127\.0\.12\.1:\d+ reverse traceroute \(udp\) to ` + regexp.QuoteMeta(tc.want))
			deadline := time.Now().Add(5 * time.Second)
			for !logged.MatchString(s.log.String()) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if !logged.MatchString(s.log.String()) {
				t.Errorf("%s: the log does not show the TCP peer beside the target:\n%s", tc.flag, s.log.String())
			}
		}
	}
}

// TestPacedProber: a reverse trace's probes leave at most one per
// reverseProbeGap, under 1,000 a second, however many hops it asks for.
func TestPacedProber(t *testing.T) {
	t.Parallel()
	var sent []time.Time
	p := &pacedProber{prober: atkProber(func() { sent = append(sent, time.Now()) }), gap: reverseProbeGap}
	for i := range 100 {
		p.send(i, 1)
	}
	took := sent[len(sent)-1].Sub(sent[0])
	if rate := float64(len(sent)-1) / took.Seconds(); rate >= 1000 {
		t.Errorf("100 probes in %v: %.0f a second", took, rate)
	}
}

// atkProber counts sends.
type atkProber func()

func (p atkProber) send(int, int) (time.Time, error) { p(); return time.Now(), nil }
func (atkProber) close()                             {}

// ---- 8: failed authentication ----

// TestAuthFailures: wrong tokens are logged, without the token and
// rationed, and each one from the same address waits longer for its 401;
// 200 wrong tokens used to take 21 ms. The right token passes at once,
// whatever the case of "Bearer" (RFC 7235 §2.1).
func TestAuthFailures(t *testing.T) {
	t.Parallel()
	s := startAtk(t, "--token", "right-token")
	var last time.Duration
	for i := range 6 {
		began := time.Now()
		if _, code := atkDial(t, s, "127.0.0.30", "/echo", "Authorization: Bearer wrong-"+strconv.Itoa(i)+"\r\n"); code != http.StatusUnauthorized {
			t.Fatalf("wrong token: status %d", code)
		}
		last = time.Since(began)
	}
	if want := authDelay(6); last < want*9/10 {
		t.Errorf("the sixth wrong token was answered in %v, want at least %v", last, want)
	}
	began := time.Now()
	if _, code := atkDial(t, s, "127.0.0.31", "/echo", "Authorization: Bearer wrong\r\n"); code != http.StatusUnauthorized || time.Since(began) > time.Second {
		t.Errorf("another address's first failure: status %d after %v", code, time.Since(began))
	}
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		if _, code := atkDial(t, s, "127.0.0.30", "/echo", "Authorization: "+scheme+" right-token\r\n"); code != http.StatusSwitchingProtocols {
			t.Errorf("the right token with scheme %q: status %d", scheme, code)
		}
	}
	log := s.log.String()
	if n := strings.Count(log, "authentication failed"); n == 0 || n > logBurst {
		t.Errorf("%d log lines for 7 failures, want 1 to %d:\n%s", n, logBurst, log)
	}
	if strings.Contains(log, "wrong-") {
		t.Errorf("the log shows a token:\n%s", log)
	}
}

func TestTokenMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"Bearer s3cret", true},
		{"bearer s3cret", true},
		{"BeArEr  s3cret", true},
		{"Bearer s3cret2", false},
		{"Basic s3cret", false},
		{"Bearers3cret", false},
		{"s3cret", false},
		{"", false},
	} {
		if got := tokenMatches(tc.header, "s3cret"); got != tc.ok {
			t.Errorf("tokenMatches(%q) = %v, want %v", tc.header, got, tc.ok)
		}
	}
}

// ---- 10: smaller points ----

// TestShutdownWithPartialHeaders: connections that are still sending
// their request headers do not hold up the shutdown (they held it 5 s).
func TestShutdownWithPartialHeaders(t *testing.T) {
	t.Parallel()
	s := startAtk(t)
	for range 10 {
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: x\r\n")
	}
	atkUpgrade(t, s, "127.0.0.32", "/", "") // upgraded, no first message yet
	time.Sleep(100 * time.Millisecond)
	s.cancel()
	began := time.Now()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("shutdown took %v", took.Round(time.Millisecond))
	}
}

// TestFailedDownloadLogRate: a -R test whose client stops reading fails
// after the idle timeout; the server's log line measures the stream up to
// its last write that went through, not through the stall.
func TestFailedDownloadLogRate(t *testing.T) {
	t.Parallel()
	s := startAtk(t, "--idle-timeout", "1.5")
	req := atkRequest(dirDownload, 10)
	req.Window = 64 << 10
	ctrl := atkUpgrade(t, s, "127.0.0.33", "/", "")
	ctrl.sendJSON(req)
	ctrl.expectJSON(msgAccept, 5*time.Second)
	st := atkUpgrade(t, s, "127.0.0.33", "/", "")
	st.nc.SetReadBuffer(64 << 10)
	st.sendJSON(streamHello{Type: msgStream, Cookie: req.Cookie, ID: 1, Direction: streamDown})
	ctrl.expectJSON(msgStart, 5*time.Second)
	for began := time.Now(); time.Since(began) < 500*time.Millisecond; {
		if _, err := st.next(time.Second, false); err != nil {
			t.Fatal(err)
		}
	}
	// Stop reading; the server's writes stall and fail after 1.5 s.
	re := regexp.MustCompile(`download P=1 (\d+\.\d\d) sec .* error:`)
	deadline := time.Now().Add(8 * time.Second)
	var m []string
	for m == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		m = re.FindStringSubmatch(s.log.String())
	}
	if m == nil {
		t.Fatalf("no failed download in the log:\n%s", s.log.String())
	}
	if secs, _ := strconv.ParseFloat(m[1], 64); secs > 1.2 {
		t.Errorf("the log counts %s s for a stream that moved data for 0.5 s and then stalled", m[1])
	}
}

// TestBusyRefusalsRationed: a crowd of busy refusals makes a few log
// lines, not one each.
func TestBusyRefusalsRationed(t *testing.T) {
	t.Parallel()
	s := startAtk(t, "--max-clients", "1")
	hold := atkUpgrade(t, s, "127.0.0.34", "/", "")
	hold.sendJSON(atkRequest(dirUpload, 10))
	hold.expectJSON(msgAccept, 5*time.Second)
	for i := range 20 {
		c := atkUpgrade(t, s, "127.0.13."+strconv.Itoa(i+1), "/", "")
		c.sendJSON(atkRequest(dirUpload, 1))
		c.expectJSON(msgRefuse, 5*time.Second)
		c.nc.Close()
	}
	if n := strings.Count(s.log.String(), "refused"); n == 0 || n > logBurst {
		t.Errorf("%d log lines for 20 busy refusals, want 1 to %d:\n%s", n, logBurst, s.log.String())
	}
}

package main

// legacy_test.go covers the original wperf's protocol on loopback. The
// server side is driven by oldClient, a client written from the
// protocol's rules with hand-made frames (ws_conformance_test.go's), so
// the server is never checked against wperf's own client. The client side
// runs against oldServer, a server of the old rules built on the engine's
// plain message API. Real peers, testdata/legacy's Python client and
// server, run both ways when Debian's python3-websockets is there.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- the request ----

func TestLegacyRequestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg  string
		want legacyKind
	}{
		{`UDP`, legacyUDP},
		{`upload`, legacyUpload},
		{`UPLOAD`, legacyUpload},
		{`reverse`, legacyReverse},
		{`REVERSE`, legacyReverse},
		{`bidir`, legacyBidir},
		{`BIDIR`, legacyBidir},
		{`udp`, legacyUpload}, // only the upper case word
		{`Reverse`, legacyUpload},
		{`anything`, legacyUpload},
		{``, legacyUpload},
		{`{"mode": "reverse", "simulation_options": {"sim_mtu": 1400}}`, legacyReverse},
		{`{"mode": "bidir"}`, legacyBidir},
		{`{"mode": "upload"}`, legacyUpload},
		{`{"mode": 7}`, legacyUpload},
		{`{"simulation_options": {}}`, legacyUpload}, // no mode: upload
		{`{"command": "ping"}`, legacyPing},
		{`{"command": "reverse_traceroute"}`, legacyTrace},
		{`{"command": "dance"}`, legacyUpload},
		{`{"mode": "reverse", "command": "ping"}`, legacyReverse}, // a mode wins
		{`"REVERSE"`, legacyUpload},                               // JSON, but not an object
		{`[1, 2]`, legacyUpload},
		{`null`, legacyUpload},
	} {
		if got := parseLegacyRequest([]byte(tc.msg)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.msg, got, tc.want)
		}
	}
}

// ---- the test client of the old rules ----

// oldClient is one connection of the test's old-protocol client.
type oldClient struct{ *wtRaw }

// dialOld upgrades without offering any subprotocol, as old clients do.
func dialOld(t testing.TB, addr string) *oldClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write([]byte(wtRequest(addr, "/", wtRFCKey, ""))); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading the handshake answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wtRFCAccept {
		t.Fatalf("handshake answered %s, accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		t.Fatalf("the server chose subprotocol %q, which nobody offered", p)
	}
	return &oldClient{&wtRaw{t: t, nc: nc, br: br}}
}

func (c *oldClient) text(s string)   { c.write(wtFrame(bitFIN|byte(opText), []byte(s)), 0) }
func (c *oldClient) binary(p []byte) { c.write(wtFrame(bitFIN|byte(opBinary), p), 0) }
func (c *oldClient) close(code statusCode) {
	c.write(wtFrame(bitFIN|byte(opClose), wtClosePayload(uint16(code), "")), 0)
}

// dataMessage is the old protocol's data: a big-endian sequence number,
// then the chunk.
func dataMessage(seq uint64, chunk int) []byte {
	b := make([]byte, 8+chunk)
	binary.BigEndian.PutUint64(b, seq)
	return b
}

// oldSeen is what the server sent on one connection up to its close.
type oldSeen struct {
	bytes    int64    // binary payload
	messages int      // binary messages
	seqGap   bool     // a data message's sequence number did not follow the last
	texts    []string // text messages, in order
	code     statusCode
	reason   string
}

// untilClose reads until the server's close frame, answers it, and
// expects TCP to end.
func (c *oldClient) untilClose() oldSeen { return c.readUntilClose(true) }

// hangUp closes as old clients end a test, then reads until the server's
// answer and the end of TCP.
func (c *oldClient) hangUp() oldSeen {
	c.close(statusNormal)
	return c.readUntilClose(false)
}

func (c *oldClient) readUntilClose(answer bool) oldSeen {
	c.t.Helper()
	var s oldSeen
	for {
		ev, err := c.nextEvent()
		if err != nil {
			c.t.Fatalf("before the server's close: %v (so far %+v)", err, s)
		}
		switch ev.op {
		case opBinary:
			if len(ev.payload) < 8 || binary.BigEndian.Uint64(ev.payload) != uint64(s.messages) {
				s.seqGap = true
			}
			s.bytes += int64(len(ev.payload))
			s.messages++
		case opText:
			s.texts = append(s.texts, string(ev.payload))
		case opClose:
			if len(ev.payload) >= 2 {
				s.code, s.reason = statusCode(binary.BigEndian.Uint16(ev.payload)), string(ev.payload[2:])
			}
			if answer {
				c.close(s.code)
			}
			c.expectEOF()
			return s
		}
	}
}

// nextText reads the server's next text message, failing on anything else.
func (c *oldClient) nextText() string {
	c.t.Helper()
	ev, err := c.nextEvent()
	if err != nil || ev.op != opText {
		c.t.Fatalf("want a text message, got %v, %v", ev, err)
	}
	return string(ev.payload)
}

// legacyLogs are the server's -J records of old-protocol tests so far.
func legacyLogs(s *e2eServer) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.out.String(), "\n") {
		var doc map[string]any
		if json.Unmarshal([]byte(line), &doc) == nil && doc["legacy"] != nil {
			out = append(out, doc)
		}
	}
	return out
}

// waitLegacyLogs waits for n records and returns them.
func waitLegacyLogs(t *testing.T, s *e2eServer, n int) []map[string]any {
	t.Helper()
	e2eWaitFor(t, 15*time.Second, fmt.Sprintf("%d legacy records in the server's log", n), func() bool { return len(legacyLogs(s)) >= n })
	return legacyLogs(s)
}

// logBytes sums a record's bytes on the server's receiving (or sending)
// streams.
func logBytes(t *testing.T, doc map[string]any, side string) int64 {
	var n int64
	for _, st := range e2eList(t, doc, "end.streams") {
		if v, ok := e2eGet(st, side+".bytes"); ok {
			f, _ := v.(float64)
			n += int64(f)
		}
	}
	return n
}

// ---- the server, driven by the old rules ----

func TestLegacyServerUpload(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J")
	c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
	c.text("upload")
	for seq := range 40 {
		c.binary(dataMessage(uint64(seq), 64<<10))
	}
	c.text(legacyEOTClient)
	if seen := c.untilClose(); seen.code != statusNormal || seen.bytes != 0 {
		t.Errorf("after EOT_C: want an empty, normal close, got %+v", seen)
	}
	doc := waitLegacyLogs(t, srv, 1)[0]
	if got, want := logBytes(t, doc, "receiver"), int64(40*(8+64<<10)); got != want {
		t.Errorf("the server counted %d bytes, the client sent %d", got, want)
	}
	if mode, _ := e2eGet(doc, "legacy.mode"); mode != "upload" {
		t.Errorf("logged mode %v", mode)
	}
}

func TestLegacyServerReverse(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J")
	c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
	c.text("REVERSE")
	var got int64
	for msgs := 0; got < 4<<20; msgs++ {
		ev, err := c.nextEvent()
		if err != nil || ev.op != opBinary || binary.BigEndian.Uint64(ev.payload) != uint64(msgs) {
			t.Fatalf("message %d: want data with sequence number %d, got %v, %v", msgs, msgs, ev, err)
		}
		got += int64(len(ev.payload))
	}
	seen := c.hangUp() // as old clients end a reverse test

	if seen.code != statusNormal || slices.Contains(seen.texts, legacyEOTServer) {
		t.Errorf("after the client's close: %+v", seen)
	}
	doc := waitLegacyLogs(t, srv, 1)[0]
	if sent := logBytes(t, doc, "sender"); sent < got {
		t.Errorf("the server logged %d bytes sent, the client got %d", sent, got)
	}
	if e, ok := doc["error"]; ok {
		t.Errorf("the server logged an error: %v", e)
	}
}

func TestLegacyServerBidir(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J")
	c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
	c.text(`{"mode": "bidir", "simulation_options": {"sim_latency": 20}}`)
	sent := make(chan error, 1)
	go func() { // the frames are made up front: no t.Fatal off the test goroutine
		var frames []byte
		for seq := range 30 {
			frames = append(frames, wtFrame(bitFIN|byte(opBinary), dataMessage(uint64(seq), 32<<10))...)
		}
		frames = append(frames, wtFrame(bitFIN|byte(opText), []byte(legacyEOTClient))...)
		_, err := c.nc.Write(frames)
		sent <- err
	}()
	seen := c.untilClose()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if seen.messages == 0 || seen.seqGap || len(seen.texts) != 1 || seen.texts[0] != legacyEOTServer || seen.code != statusNormal {
		t.Errorf("want data, then EOT_S, then a normal close; got %+v", seen)
	}
	doc := waitLegacyLogs(t, srv, 1)[0]
	if got := logBytes(t, doc, "receiver"); got != 30*(8+32<<10) {
		t.Errorf("the server counted %d bytes of the client's", got)
	}
	if got := logBytes(t, doc, "sender"); got != seen.bytes {
		t.Errorf("the server logged %d bytes sent, the client got %d", got, seen.bytes)
	}
}

// TestLegacyServerParallel: an old client's -P 3 is three connections,
// each with its own request; the server takes them as one test, in one
// slot.
func TestLegacyServerParallel(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J", "--max-clients", "1")
	addr := net.JoinHostPort(srv.host, srv.port)
	var conns []*oldClient
	for range 3 {
		c := dialOld(t, addr)
		c.text("UPLOAD")
		conns = append(conns, c)
	}
	for i, c := range conns {
		for seq := range 10 + i {
			c.binary(dataMessage(uint64(seq), 16<<10))
		}
	}
	// The old protocol names no test: the server groups connections that
	// are open together. Give it time to read every request (a loaded CI
	// machine under -race is slow to) before the first one ends.
	time.Sleep(300 * time.Millisecond)
	for _, c := range conns {
		c.text(legacyEOTClient)
		if seen := c.untilClose(); seen.code != statusNormal {
			t.Errorf("close %+v", seen)
		}
	}
	var streams []int
	var total int64
	for _, doc := range waitLegacyLogs(t, srv, 3) {
		n, _ := e2eGet(doc, "legacy.stream")
		streams = append(streams, int(n.(float64)))
		total += logBytes(t, doc, "receiver")
	}
	slices.Sort(streams)
	if !slices.Equal(streams, []int{1, 2, 3}) || total != (10+11+12)*(8+16<<10) {
		t.Errorf("streams %v, %d bytes", streams, total)
	}
}

func TestLegacyServerUDP(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J")
	c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
	c.text("UDP")
	start := time.Now().UnixNano()
	for seq := range 100 {
		if seq >= 10 && seq < 20 {
			continue // lost on the way
		}
		d := make([]byte, 1400)
		binary.BigEndian.PutUint64(d[0:8], uint64(seq))
		binary.BigEndian.PutUint64(d[8:16], uint64(start+int64(seq)*1e6))
		c.binary(d)
	}
	c.text(legacyEOTClient)
	report := c.nextText()
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(report), &keys); err != nil {
		t.Fatalf("report %q: %v", report, err)
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			yield(k)
		}
	})
	if want := []string{"jitter_ms", "loss_percent", "lost_packets", "total_packets"}; !slices.Equal(got, want) {
		t.Errorf("report keys %v, want %v", got, want)
	}
	var rep legacyUDPReport
	json.Unmarshal([]byte(report), &rep)
	if rep.TotalPackets != 90 || rep.LostPackets != 10 || math.Abs(rep.LossPercent-10) > 1e-9 || rep.JitterMs < 0 {
		t.Errorf("report %+v: want 90 received, 10 lost, 10%% of 100", rep)
	}
	if seen := c.untilClose(); seen.code != statusNormal {
		t.Errorf("close %+v", seen)
	}
	if mode, _ := e2eGet(waitLegacyLogs(t, srv, 1)[0], "legacy.mode"); mode != "udp" {
		t.Errorf("logged mode %v", mode)
	}
}

func TestLegacyServerPing(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
	c.text(`{"command": "ping"}`)
	for _, seq := range []string{"0", "1", `"seven"`} {
		c.text(`{"type": "ping", "seq": ` + seq + `}`)
		c.text(`{"type": "not a ping"}`) // ignored
		var pong struct {
			Type string          `json:"type"`
			Seq  json.RawMessage `json:"seq"`
		}
		if err := json.Unmarshal([]byte(c.nextText()), &pong); err != nil || pong.Type != "pong" || string(pong.Seq) != seq {
			t.Errorf("ping %s: pong %+v, %v", seq, pong, err)
		}
	}
	c.hangUp()
	e2eWaitFor(t, 10*time.Second, "the ping's log line", func() bool { return strings.Contains(srv.out.String(), "legacy ping 3 pongs") })
}

func TestLegacyServerToken(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--token", "s3cret", "-J")
	addr := net.JoinHostPort(srv.host, srv.port)
	t.Run("right token", func(t *testing.T) {
		c := dialOld(t, addr)
		c.text("s3cret")
		c.text("upload")
		c.binary(dataMessage(0, 100))
		c.text(legacyEOTClient)
		if seen := c.untilClose(); seen.code != statusNormal {
			t.Errorf("close %+v", seen)
		}
	})
	for _, first := range []string{"wrong", "upload", ""} {
		t.Run("token "+strconv.Quote(first), func(t *testing.T) {
			c := dialOld(t, addr)
			c.text(first)
			if seen := c.untilClose(); seen.code != statusPolicyViolation || !strings.Contains(seen.reason, "token") {
				t.Errorf("want close 1008 for the token, got %+v", seen)
			}
		})
	}
	t.Run("binary first", func(t *testing.T) {
		c := dialOld(t, addr)
		c.binary([]byte("s3cret"))
		if seen := c.untilClose(); seen.code != statusPolicyViolation {
			t.Errorf("want close 1008, got %+v", seen)
		}
	})
}

// TestLegacyServerRefusals: --no-legacy, the caps, and a text message
// beyond the old protocol's size.
func TestLegacyServerRefusals(t *testing.T) {
	t.Parallel()
	t.Run("no legacy", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t, "--no-legacy")
		c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
		if seen := c.untilClose(); seen.code != statusPolicyViolation || !strings.Contains(seen.reason, "--no-legacy") {
			t.Errorf("want close 1008 naming --no-legacy, got %+v", seen)
		}
		srv.mustRun(t, "-t", "0.2") // wperf.v1 still works
	})
	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t, "--max-clients", "1")
		first := e2eStart(srv.args("-t", "3")...)
		e2eWaitFor(t, 10*time.Second, "the first test to start", func() bool { return strings.Contains(first.out.String(), "connected to") })
		c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
		c.text("upload")
		if seen := c.untilClose(); seen.code != statusTryAgainLater || !strings.Contains(seen.reason, "busy") {
			t.Errorf("want close 1013, busy, got %+v", seen)
		}
		first.wait(t, 20*time.Second)
		if !strings.Contains(srv.out.String(), "legacy upload: server is busy") {
			t.Errorf("the refusal is not in the log:\n%s", srv.out.String())
		}
	})
	t.Run("max duration", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t, "--max-duration", "1")
		c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
		c.text("REVERSE")
		if seen := c.untilClose(); seen.code != statusPolicyViolation || !strings.Contains(seen.reason, "--max-duration") || !slices.Contains(seen.texts, legacyEOTServer) {
			t.Errorf("want EOT_S and close 1008 naming --max-duration, got code %d %q, texts %q", seen.code, seen.reason, seen.texts)
		}
	})
	t.Run("long text", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t)
		c := dialOld(t, net.JoinHostPort(srv.host, srv.port))
		c.text("upload")
		c.text(strings.Repeat("x", legacyMaxText+1))
		if seen := c.untilClose(); seen.code != statusMessageTooBig {
			t.Errorf("want close 1009, got %+v", seen)
		}
	})
	t.Run("other subprotocols are not old clients", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t)
		resp := rawUpgrade(t, net.JoinHostPort(srv.host, srv.port), "/", "Sec-WebSocket-Protocol: wperf.v9\r\n")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("wperf.v9: %s, want 400", resp.Status)
		}
		if resp := rawUpgrade(t, net.JoinHostPort(srv.host, srv.port), "/echo", ""); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("/echo: %s", resp.Status)
		}
	})
}

// rawUpgrade sends an opening handshake and returns the answer.
func rawUpgrade(t *testing.T, addr, path, extra string) *http.Response {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write([]byte(wtRequest(addr, path, wtRFCKey, extra)))
	resp, err := http.ReadResponse(bufio.NewReader(nc), &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestLegacyServerTraceShape runs an old-protocol reverse traceroute to
// loopback: hops in the old shape, then the end. The routed version is
// lab_legacy_test.go's.
func TestLegacyServerTraceShape(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--no-geo", "--reverse-traceroute-limit", "1")
	addr := net.JoinHostPort(srv.host, srv.port)
	hops, errs := oldTrace(t, addr)
	if len(errs) == 0 && (len(hops) == 0 || hops[len(hops)-1]["ip"] != "127.0.0.1") {
		t.Errorf("hops %v: want the trace to end at 127.0.0.1", hops)
	}
	for _, h := range hops {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range h {
				yield(k)
			}
		})
		if !slices.Equal(keys, []string{"asn", "country", "ip", "name", "rtt", "ttl"}) {
			t.Errorf("hop %v: keys %v", h, keys)
		}
	}
	// the limit of one a minute for this address
	if _, errs := oldTrace(t, addr); len(errs) != 1 || !strings.Contains(errs[0], "too many") {
		t.Errorf("second trace: want the rate limit's error, got %q", errs)
	}
}

// oldTrace runs one reverse traceroute as an old client and returns its
// hops and error messages.
func oldTrace(t *testing.T, addr string) (hops []map[string]any, errs []string) {
	c := dialOld(t, addr)
	c.text(`{"command": "reverse_traceroute"}`)
	for {
		var m struct {
			Type    string         `json:"type"`
			Data    map[string]any `json:"data"`
			Message string         `json:"message"`
		}
		if err := json.Unmarshal([]byte(c.nextText()), &m); err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case "hop":
			hops = append(hops, m.Data)
		case "error":
			errs = append(errs, m.Message)
		case "end":
			c.untilClose()
			return hops, errs
		default:
			t.Fatalf("unexpected message type %q", m.Type)
		}
	}
}

// ---- a server of the old rules, for the client ----

// oldServer speaks the old protocol's server side from its rules.
type oldServer struct {
	addr     string
	token    string
	sendFor  time.Duration // how long it sends in reverse and bidir: its own -t
	udpLimit time.Duration // when it ends a UDP test on its own
	mu       sync.Mutex
	conns    []oldServed
}

// oldServed is what the old server saw on one connection.
type oldServed struct {
	mode           string
	received, sent int64
	eot            bool
}

func startOldServer(t *testing.T, token string, sendFor time.Duration) *oldServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &oldServer{addr: ln.Addr().String(), token: token, sendFor: sendFor, udpLimit: 12 * time.Second}
	hs := &http.Server{Handler: o}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return o
}

func (o *oldServer) served() []oldServed {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.conns)
}

// wait waits until the old server has finished n connections.
func (o *oldServer) wait(t *testing.T, n int) []oldServed {
	t.Helper()
	e2eWaitFor(t, 10*time.Second, fmt.Sprintf("%d connections at the old server", n), func() bool { return len(o.served()) >= n })
	return o.served()
}

// ServeHTTP upgrades whatever the client offers, choosing no subprotocol,
// as old servers do.
func (o *oldServer) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	c, err := upgrade(w, hr, upgradeOptions{connOptions: connOptions{maxMessage: 32 << 20}})
	if err != nil {
		return
	}
	defer c.Abort()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var s oldServed
	if o.token != "" {
		if _, tok, err := c.ReadMessage(nil); err != nil || string(tok) != o.token {
			c.Close(statusPolicyViolation, "Invalid token")
			return
		}
	}
	_, req, err := c.ReadMessage(nil)
	if err != nil {
		return
	}
	s.mode = oldMode(req)
	o.serve(c, &s)
	o.mu.Lock()
	o.conns = append(o.conns, s)
	o.mu.Unlock()
}

// oldMode is the request's mode by the rules (the test's own reading).
func oldMode(req []byte) string {
	var obj map[string]any
	if json.Unmarshal(req, &obj) != nil {
		switch string(req) {
		case "UDP":
			return "udp"
		case "reverse", "REVERSE":
			return "reverse"
		case "bidir", "BIDIR":
			return "bidir"
		}
		return "upload"
	}
	if m, ok := obj["mode"].(string); ok {
		return oldMode([]byte(m))
	}
	switch obj["command"] {
	case "ping":
		return "ping"
	case "reverse_traceroute":
		return "trace"
	}
	return "upload"
}

func (o *oldServer) serve(c *wsConn, s *oldServed) {
	switch s.mode {
	case "upload":
		o.receive(c, s)
	case "reverse":
		done := make(chan struct{})
		go func() { o.receive(c, s); close(done) }() // until the client hangs up
		o.send(c, s)
		<-done
	case "bidir":
		done := make(chan struct{})
		go func() { o.send(c, s); close(done) }()
		o.receive(c, s)
		<-done
	case "udp":
		o.udp(c, s)
	case "ping":
		o.pong(c)
	case "trace":
		for _, m := range []string{
			`{"type": "hop", "data": {"ttl": 1, "ip": "127.0.0.1", "name": "client.test", "rtt": 0.5, "country": "ZZ", "asn": "AS64500 TEST-NET"}}`,
			`{"type": "hop", "data": {"ttl": 2, "ip": "*", "name": "*", "rtt": -1, "country": "", "asn": ""}}`,
			`{"type": "end"}`} {
			c.WriteMessage(opText, []byte(m))
		}
	}
	c.Close(statusNormal, "")
}

// receive counts binary messages until EOT_C or the connection's end.
func (o *oldServer) receive(c *wsConn, s *oldServed) {
	for {
		op, msg, err := c.ReadMessage(nil)
		switch {
		case err != nil:
			return
		case op == opText && string(msg) == legacyEOTClient:
			s.eot = true
			return
		case op == opBinary:
			atomic.AddInt64(&s.received, int64(len(msg)))
		}
	}
}

// send sends data for the server's own time, then EOT_S.
func (o *oldServer) send(c *wsConn, s *oldServed) {
	end := time.Now().Add(o.sendFor)
	for seq := uint64(0); time.Now().Before(end); seq++ {
		m := dataMessage(seq, 64<<10)
		if c.WriteMessage(opBinary, m) != nil {
			return
		}
		atomic.AddInt64(&s.sent, int64(len(m)))
	}
	c.WriteMessage(opText, []byte(legacyEOTServer))
}

// udp counts datagrams until EOT_C or its own limit, then reports.
func (o *oldServer) udp(c *wsConn, s *oldServed) {
	msgs := make(chan []byte, 64)
	go func() {
		defer close(msgs)
		for {
			op, msg, err := c.ReadMessage(nil)
			if err != nil {
				return
			}
			if op == opText {
				msg = append([]byte("text:"), msg...)
			}
			msgs <- msg
		}
	}()
	limit := time.After(o.udpLimit)
	highest, lost := int64(-1), int64(0)
	for {
		var msg []byte
		select {
		case msg = <-msgs:
		case <-limit:
		}
		if len(msg) < 16 {
			s.eot = string(msg) == "text:"+legacyEOTClient
			break
		}
		seq := int64(binary.BigEndian.Uint64(msg))
		if seq > highest+1 {
			lost += seq - highest - 1
		}
		highest = max(highest, seq)
		s.received++
	}
	pct := 0.0
	if highest >= 0 {
		pct = 100 * float64(lost) / float64(highest+1)
	}
	sendJSON(c, legacyUDPReport{JitterMs: 0.125, LostPackets: lost, TotalPackets: s.received, LossPercent: pct})
}

func (o *oldServer) pong(c *wsConn) {
	for {
		_, msg, err := c.ReadMessage(nil)
		if err != nil {
			return
		}
		var p legacyPingMsg
		if json.Unmarshal(msg, &p) == nil && p.Type == "ping" {
			sendJSON(c, legacyPingMsg{Type: "pong", Seq: p.Seq})
		}
	}
}

// ---- the client against an old server ----

func (o *oldServer) args(extra ...string) []string {
	return append([]string{"-c", "ws://" + o.addr + "/"}, extra...)
}

func mustLegacyRun(t *testing.T, args ...string) e2eResult {
	t.Helper()
	r := e2eRun(args...)
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("wperf %q: %v", args, r)
	}
	return r
}

func TestLegacyClientUpload(t *testing.T) {
	t.Parallel()
	o := startOldServer(t, "", time.Second)
	r := mustLegacyRun(t, o.args("--legacy", "-t", "0.5", "-J")...)
	doc := e2eDecode(t, r.stdout)
	sent := e2eInt(t, doc, "end.sum_sent.bytes")
	if got := o.wait(t, 1); len(got) != 1 || got[0].mode != "upload" || !got[0].eot || got[0].received != sent {
		t.Errorf("the old server saw %+v; the client reports %d bytes sent", got, sent)
	}
	for _, path := range []string{"end.sum_received", "end.cpu_utilization_percent.remote_total"} {
		if v, ok := e2eGet(doc, path); !ok || v != nil {
			t.Errorf("%s: want null (not reported), got %v", path, v)
		}
	}
	if v, ok := e2eGet(e2eList(t, doc, "end.streams")[0], "receiver"); !ok || v != nil {
		t.Errorf("end.streams[0].receiver: want null, got %v", v)
	}
	if p, _ := e2eGet(doc, "legacy.protocol"); p != legacyProtocolName {
		t.Errorf("legacy.protocol %v", p)
	}
	text := mustLegacyRun(t, o.args("--legacy", "-t", "0.3")...).stdout
	if !regexp.MustCompile(`\] +0\.00-0\.\d+ +sec  not reported by the old server +receiver\n`).MatchString(text) {
		t.Errorf("the text report does not say the receiver is not reported:\n%s", text)
	}
}

func TestLegacyClientReverse(t *testing.T) {
	t.Parallel()
	t.Run("the server's time ends it", func(t *testing.T) {
		t.Parallel()
		o := startOldServer(t, "", 300*time.Millisecond)
		start := time.Now()
		doc := e2eDecode(t, mustLegacyRun(t, o.args("--legacy", "-R", "-t", "5", "-J")...).stdout)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("the test took %v: EOT_S should have ended it", took)
		}
		got := o.wait(t, 1)
		if recv := e2eInt(t, doc, "end.sum_received.bytes"); len(got) != 1 || got[0].sent != recv {
			t.Errorf("the old server sent %+v; the client counted %d", got, recv)
		}
		if v, ok := e2eGet(doc, "end.sum_sent"); !ok || v != nil {
			t.Errorf("sum_sent %v: want null", v)
		}
	})
	t.Run("the client's time ends it", func(t *testing.T) {
		t.Parallel()
		o := startOldServer(t, "", 20*time.Second)
		start := time.Now()
		r := mustLegacyRun(t, o.args("--legacy", "-R", "-t", "0.5")...)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the test took %v", took)
		}
		if !regexp.MustCompile(`not reported by the old server +sender\n`).MatchString(r.stdout) {
			t.Errorf("no unreported sender row:\n%s", r.stdout)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		o := startOldServer(t, "", 20*time.Second)
		doc := e2eDecode(t, mustLegacyRun(t, o.args("--legacy", "-R", "-n", "1M", "-P", "2", "-J")...).stdout)
		if got := e2eInt(t, doc, "end.sum_received.bytes"); got < 1<<20 || got > 1<<20+2*(8+64<<10) {
			t.Errorf("received %d bytes for -n 1M", got)
		}
	})
}

func TestLegacyClientBidirParallel(t *testing.T) {
	t.Parallel()
	o := startOldServer(t, "", 300*time.Millisecond)
	doc := e2eDecode(t, mustLegacyRun(t, o.args("--legacy", "--bidir", "-P", "2", "-t", "0.6", "-J")...).stdout)
	got := o.wait(t, 2)
	if len(got) != 2 {
		t.Fatalf("the old server saw %d connections", len(got))
	}
	var up, down int64
	for _, s := range got {
		up += s.received
		down += s.sent
		if s.mode != "bidir" || !s.eot {
			t.Errorf("connection %+v", s)
		}
	}
	if e2eInt(t, doc, "end.sum_sent.bytes") != up || e2eInt(t, doc, "end.sum_received_bidir_reverse.bytes") != down {
		t.Errorf("the server saw %d up, %d down; the report differs", up, down)
	}
	for _, path := range []string{"end.sum_received", "end.sum_sent_bidir_reverse"} {
		if v, ok := e2eGet(doc, path); !ok || v != nil {
			t.Errorf("%s: want null, got %v", path, v)
		}
	}
}

func TestLegacyClientSized(t *testing.T) {
	t.Parallel()
	o := startOldServer(t, "", time.Second)
	mustLegacyRun(t, o.args("--legacy", "-n", "1M")...)
	if got := o.wait(t, 1); len(got) != 1 || got[0].received != 1<<20 {
		t.Errorf("the old server saw %+v for -n 1M", got)
	}
}

func TestLegacyClientUDP(t *testing.T) {
	t.Parallel()
	o := startOldServer(t, "", time.Second)
	doc := e2eDecode(t, mustLegacyRun(t, o.args("--legacy", "-u", "-b", "2M", "-t", "0.5", "-J")...).stdout)
	got := o.wait(t, 1)
	if len(got) != 1 || got[0].mode != "udp" || !got[0].eot {
		t.Fatalf("the old server saw %+v", got)
	}
	if sent := e2eInt(t, doc, "end.sum_sent.packets"); sent != got[0].received {
		t.Errorf("sent %d datagrams, the server got %d", sent, got[0].received)
	}
	if j := e2eFloat(t, doc, "end.sum.jitter_ms"); j != 0.125 {
		t.Errorf("jitter %v: want the server's 0.125", j)
	}
	if reps := e2eList(t, doc, "legacy.udp_reports"); len(reps) != 1 {
		t.Errorf("udp_reports %v", reps)
	}
	o.udpLimit = 200 * time.Millisecond
	r := e2eRun(o.args("--legacy", "-u", "-t", "2")...)
	if r.code != exitRuntime || !strings.Contains(r.stderr, "-t 10 or less") {
		t.Errorf("a server that ends the test early: want exit 1 and advice, got %v", r)
	}
}

func TestLegacyClientPingTraceToken(t *testing.T) {
	t.Parallel()
	o := startOldServer(t, "s3cret", time.Second)
	r := mustLegacyRun(t, o.args("--ping", "--ping-count", "3", "-i", "0.1", "--token", "s3cret")...)
	if n := strings.Count(r.stdout, "rtt="); n != 3 || !strings.Contains(r.stdout, "3 pings sent, 3 pongs received, 0% lost") {
		t.Errorf("ping output:\n%s", r.stdout)
	}
	r = mustLegacyRun(t, o.args("--legacy", "--reverse-traceroute", "--token", "s3cret")...)
	if lines := e2eLines(r.stdout); len(lines) != 3 || !strings.HasPrefix(lines[1], " 1  [ZZ, AS64500 TEST-NET]  client.test (127.0.0.1)  0.5 ms") || lines[2] != " 2  *" {
		t.Errorf("trace output:\n%s", r.stdout)
	}
	r = e2eRun(o.args("--legacy", "-t", "0.3", "--token", "wrong")...)
	if r.code != exitRuntime || !strings.Contains(r.stderr, "Invalid token (1008)") {
		t.Errorf("wrong token: %v", r)
	}
}

// TestLegacyAutoDetect: without --legacy, a server that does not answer
// wperf.v1 gets one retry in the old protocol, and the output says so.
func TestLegacyAutoDetect(t *testing.T) {
	t.Parallel()
	o := startOldServer(t, "", time.Second)
	r := mustLegacyRun(t, o.args("-t", "0.3")...)
	if n := strings.Count(r.stdout, "looks like an old wperf"); n != 1 || !strings.Contains(r.stdout, "retrying with --legacy") {
		t.Errorf("want one line about the retry:\n%s", r.stdout)
	}
	doc := e2eDecode(t, mustLegacyRun(t, o.args("-t", "0.3", "-J")...).stdout)
	if !e2eBool(t, doc, "legacy.auto_detected") {
		t.Errorf("legacy.auto_detected is not true")
	}
	r = mustLegacyRun(t, o.args("--reverse-traceroute")...)
	if !strings.Contains(r.stdout, "retrying with --legacy") || !strings.Contains(r.stdout, "client.test") {
		t.Errorf("reverse traceroute:\n%s", r.stdout)
	}
	r = e2eRun(o.args("-t", "0.3", "--get-server-output")...)
	if r.code != exitRuntime || !strings.Contains(r.stderr, "old wperf") || !strings.Contains(r.stderr, "--get-server-output") {
		t.Errorf("a test the old protocol cannot run: %v", r)
	}
	time.Sleep(100 * time.Millisecond) // nothing more may come
	if got := len(o.wait(t, 3)); got != 3 {
		t.Errorf("the old server saw %d tests, want 3 (the last is refused before it asks)", got)
	}
}

// TestLegacyBothEnds runs wperf's client against wperf's server over the
// old protocol in every mode.
func TestLegacyBothEnds(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--token", "tok")
	for _, args := range [][]string{
		{"-t", "0.3"}, {"-t", "0.3", "-R"}, {"-t", "0.3", "--bidir", "-P", "2"}, {"-t", "0.3", "-u", "-b", "5M"},
		{"-n", "2M", "-R"}, {"--ping", "--ping-count", "2", "-i", "0.1"},
	} {
		r := srv.mustRun(t, append([]string{"--legacy", "--token", "tok"}, args...)...)
		if !strings.Contains(r.stdout, "wperf Done.") && !strings.Contains(r.stdout, "2 pongs received") {
			t.Errorf("%q:\n%s", args, r.stdout)
		}
	}
	// The server logs a test once its connection is over, which may be
	// just after the client has printed its last line.
	e2eWaitFor(t, 3*time.Second, "7 legacy lines in the server's log", func() bool {
		return strings.Count(srv.out.String(), " legacy ") == 7
	})
}

// ---- options ----

func TestLegacyOptions(t *testing.T) {
	t.Parallel()
	bad := []struct {
		args    []string
		mention string
	}{
		{[]string{"--ping-count", "3"}, "--ping-count needs --ping"},
		{[]string{"--ping", "-R"}, "--reverse"},
		{[]string{"--ping", "-R"}, "--reverse"},
		{[]string{"--ping", "--ping-count", "0"}, "--ping-count"},
		{[]string{"--legacy", "-u", "-R"}, "only uploads"},
		{[]string{"--legacy", "-u", "--udp-transport", "udp"}, "--udp-transport"},
		{[]string{"--legacy", "-u", "-O", "1"}, "-O"},
		{[]string{"--legacy", "-l", "2M"}, "1 MiB"},
		{[]string{"--legacy", "--get-server-output"}, "--get-server-output"},
		{[]string{"--sim-loss", "101"}, "--sim-loss"},
		{[]string{"--sim-latency", "-5"}, "--sim-latency"},
		{[]string{"--sim-mtu", "big"}, "--sim-mtu"},
		{[]string{"--sim-tcp-nodelay=1"}, "--sim-tcp-nodelay"},
		{[]string{"-s", "--legacy"}, "--legacy"},
	}
	for _, tc := range bad {
		args := tc.args
		if args[0] != "-s" {
			args = append([]string{"-c", noServer}, args...)
		}
		code, stdout, stderr := runArgs(t, args...)
		if code != exitUsage || stdout != "" || len(e2eLines(stderr)) != 2 || !strings.Contains(stderr, tc.mention) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line naming %s", args, code, stderr, tc.mention)
		}
	}
	c, err := parseArgs([]string{"-c", "h", "--sim-latency", "200", "--sim-jitter", "30", "--sim-loss", "1.5",
		"--sim-mtu", "1400", "--sim-sndbuf", "128K", "--sim-rcvbuf", "1M", "--sim-tcp-nodelay", "--sim-loss", "2"})
	if err != nil || len(c.warnings) != 1 || !strings.Contains(c.warnings[0], "simulates nothing") || strings.Count(c.warnings[0], "--sim-loss") != 1 {
		t.Errorf("--sim-*: %v, warnings %q", err, c.warnings)
	}
	if c, err := parseArgs([]string{"-c", "h", "-v"}); err != nil || c.mode != modeVersion {
		t.Errorf("-v without --legacy: want --version, got %v, %+v", err, c)
	}
	if c, err := parseArgs([]string{"-c", "h", "-v", "--legacy"}); err != nil || c.mode != modeClient || !c.verbose {
		t.Errorf("-v with --legacy: want --verbose, got %v, %+v", err, c)
	}
	if c, err := parseArgs([]string{"-c", "h", "--legacy", "--reverse-traceroute", "--tr-max-hops", "200", "--tr-timeout", "5"}); err != nil || len(c.warnings) != 1 {
		t.Errorf("the original's --tr-* with --legacy: %v, warnings %q", err, c.warnings)
	}
}

// TestLegacySimWarning: the warning is one line on standard error, and
// the test runs.
func TestLegacySimWarning(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	r := e2eRun(srv.args("-t", "0.2", "--sim-latency", "100", "--sim-tcp-nodelay")...)
	if r.code != exitOK || len(e2eLines(r.stderr)) != 1 || !strings.HasPrefix(r.stderr, "wperf: warning: --sim-latency, --sim-tcp-nodelay") {
		t.Errorf("%v", r)
	}
}

// ---- real peers: the Python client and server ----

// pythonPeer finds Debian's python3 with its websockets module. Without
// them the test skips, except under CI=1, where it fails.
func pythonPeer(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	out, err := exec.Command(py, "-c", "import websockets; print(websockets.__version__)").CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("the Python peers need %s with websockets (apt-get install python3-websockets): %v: %s", py, err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

// pyClientRun runs testdata/legacy/client.py and decodes its line.
func pyClientRun(t *testing.T, py, url string, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"testdata/legacy/client.py", "--url", url}, args...)...)
	out, err := cmd.Output()
	var res map[string]any
	if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = append(out, ee.Stderr...)
		}
		t.Fatalf("client.py %q: %v, %v:\n%s", args, err, jerr, out)
	}
	return res
}

// pyStreams are the Python client's per-connection results.
func pyStreams(t *testing.T, res map[string]any) []map[string]any {
	var out []map[string]any
	for _, s := range e2eList(t, res, "streams") {
		out = append(out, s.(map[string]any))
	}
	return out
}

func TestLegacyPythonClient(t *testing.T) {
	t.Parallel()
	py := pythonPeer(t)
	srv := startE2EServer(t, "-J", "--token", "tok")
	url := "ws://" + net.JoinHostPort(srv.host, srv.port) + "/"
	tok := []string{"--token", "tok", "-t", "0.5"}
	logs := 0
	check := func(mode string, want int) []map[string]any {
		t.Helper()
		logs += want
		docs := waitLegacyLogs(t, srv, logs)[logs-want:]
		for _, d := range docs {
			if m, _ := e2eGet(d, "legacy.mode"); m != mode {
				t.Errorf("logged mode %v, want %s", m, mode)
			}
			if e, ok := d["error"]; ok {
				t.Errorf("%s: the server logged an error: %v", mode, e)
			}
		}
		return docs
	}

	res := pyStreams(t, pyClientRun(t, py, url, append(tok, "--mode", "upload", "-P", "3")...))
	var sent, got int64
	for _, s := range res {
		sent += int64(s["sent"].(float64))
	}
	for _, d := range check("upload", 3) {
		got += logBytes(t, d, "receiver")
	}
	if sent != got {
		t.Errorf("upload -P 3: the client sent %d bytes, the server counted %d", sent, got)
	}

	res = pyStreams(t, pyClientRun(t, py, url, append(tok, "--mode", "reverse", "--style", "json")...))
	if res[0]["received"].(float64) == 0 {
		t.Errorf("reverse: nothing received: %v", res)
	}
	check("reverse", 1)

	res = pyStreams(t, pyClientRun(t, py, url, append(tok, "--mode", "bidir")...))
	if !res[0]["eot"].(bool) || res[0]["received"].(float64) == 0 {
		t.Errorf("bidir: want data and EOT_S: %v", res)
	}
	if d := check("bidir", 1)[0]; logBytes(t, d, "receiver") != int64(res[0]["sent"].(float64)) {
		t.Errorf("bidir: the client sent %v, the server counted %d", res[0]["sent"], logBytes(t, d, "receiver"))
	}

	res = pyStreams(t, pyClientRun(t, py, url, append(tok, "--mode", "udp", "--rate", "2")...))
	rep, _ := res[0]["report"].(map[string]any)
	if rep == nil || rep["total_packets"] != res[0]["sent_packets"] || rep["lost_packets"] != 0.0 || rep["loss_percent"] != 0.0 {
		t.Errorf("udp: sent %v, report %v", res[0]["sent_packets"], rep)
	}
	check("udp", 1)

	res = pyStreams(t, pyClientRun(t, py, url, "--token", "tok", "--mode", "ping", "--count", "3"))
	if pongs, _ := res[0]["pongs"].([]any); len(pongs) != 3 {
		t.Errorf("ping: %v", res)
	}

	res = pyStreams(t, pyClientRun(t, py, url, "--token", "tok", "--mode", "trace"))
	if _, ok := res[0]["hops"]; !ok {
		t.Errorf("trace: %v", res)
	}

	res = pyStreams(t, pyClientRun(t, py, url, "--token", "nope", "--mode", "ping"))
	if res[0]["close_code"] != 1008.0 {
		t.Errorf("wrong token: want close 1008, got %v", res)
	}
}

// pyServer is testdata/legacy/server.py, started for one test.
type pyServer struct {
	url   string
	mu    sync.Mutex
	lines []map[string]any
}

func startPyServer(t *testing.T, py string, args ...string) *pyServer {
	t.Helper()
	cmd := exec.Command(py, append([]string{"testdata/legacy/server.py"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening ") {
		t.Fatalf("server.py did not start: %q", sc.Text())
	}
	s := &pyServer{url: "ws://127.0.0.1:" + strings.TrimPrefix(sc.Text(), "listening ") + "/"}
	go func() {
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				s.mu.Lock()
				s.lines = append(s.lines, m)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// waitSeen waits for n connection records from the Python server.
func (s *pyServer) waitSeen(t *testing.T, n int) []map[string]any {
	t.Helper()
	e2eWaitFor(t, 20*time.Second, fmt.Sprintf("%d records from server.py", n), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.lines) >= n
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

func TestLegacyPythonServer(t *testing.T) {
	t.Parallel()
	py := pythonPeer(t)
	ps := startPyServer(t, py, "--token", "tok", "-t", "0.4")
	run := func(args ...string) e2eResult {
		t.Helper()
		return mustLegacyRun(t, append([]string{"-c", ps.url, "--legacy", "--token", "tok"}, args...)...)
	}
	seen := 0
	next := func(n int) []map[string]any {
		t.Helper()
		seen += n
		return ps.waitSeen(t, seen)[seen-n:]
	}

	doc := e2eDecode(t, run("-t", "0.5", "-P", "2", "-J").stdout)
	var got int64
	for _, l := range next(2) {
		got += int64(l["received"].(float64))
	}
	if sent := e2eInt(t, doc, "end.sum_sent.bytes"); sent != got {
		t.Errorf("upload -P 2: sent %d, server.py received %d", sent, got)
	}

	doc = e2eDecode(t, run("-R", "-t", "3", "-J").stdout)
	l := next(1)[0]
	if recv := e2eInt(t, doc, "end.sum_received.bytes"); recv != int64(l["sent"].(float64)) || e2eFloat(t, doc, "end.sum_received.seconds") > 2.5 {
		t.Errorf("reverse: received %d in %v s, server.py sent %v in its 0.4 s", recv, e2eFloat(t, doc, "end.sum_received.seconds"), l["sent"])
	}

	doc = e2eDecode(t, run("--bidir", "-t", "0.6", "-J").stdout)
	l = next(1)[0]
	if up, down := e2eInt(t, doc, "end.sum_sent.bytes"), e2eInt(t, doc, "end.sum_received_bidir_reverse.bytes"); up != int64(l["received"].(float64)) || down != int64(l["sent"].(float64)) {
		t.Errorf("bidir: up %d down %d, server.py %v", up, down, l)
	}

	doc = e2eDecode(t, run("-u", "-b", "2M", "-t", "0.5", "-J").stdout)
	l = next(1)[0]
	// on a busy machine wperf may drop datagrams that find the
	// connection backed up: they count as lost, never as sent
	sent, lost := e2eInt(t, doc, "end.sum_sent.packets"), e2eInt(t, doc, "end.sum.lost_packets")
	if sent != int64(l["received"].(float64)) || lost != e2eInt(t, doc, "end.sum.packets")-sent {
		t.Errorf("udp: sent %d (lost %d), server.py got %v", sent, lost, l["received"])
	}

	r := run("--ping", "--ping-count", "2", "-i", "0.1")
	if !strings.Contains(r.stdout, "2 pongs received") {
		t.Errorf("ping:\n%s", r.stdout)
	}
	next(1)
	r = run("--reverse-traceroute")
	if !strings.Contains(r.stdout, "client.test (127.0.0.1)") {
		t.Errorf("trace:\n%s", r.stdout)
	}
	next(1)

	// found on its own
	r = mustLegacyRun(t, "-c", ps.url, "--token", "tok", "-t", "0.3")
	if !strings.Contains(r.stdout, "looks like an old wperf") || !strings.Contains(r.stdout, "wperf Done.") {
		t.Errorf("auto-detection:\n%s", r.stdout)
	}
	// server.py saw the first, wperf.v1 handshake too (the idle phase's
	// latency probe): a connection that closed before its request
	if l := next(2); l[0]["mode"] != nil || l[1]["mode"] != "upload" || l[1]["eot"] != true {
		t.Errorf("auto-detection: server.py saw %v", l)
	}
}

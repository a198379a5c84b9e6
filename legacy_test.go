package main

// legacy_test.go covers the original wperf's protocol on loopback. The
// server side is driven by oldClient, a client written from the
// protocol's rules with hand-made frames (ws_conformance_test.go's), so
// the server is never checked against wperf's own client. The client side
// runs against oldServer (legacy_client_test.go), a server of the old
// rules built on the engine's plain message API. Real peers, testdata/
// legacy's Python client and server, run both ways in
// legacy_python_test.go when Debian's python3-websockets is there.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
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

package main

// legacy_client_test.go runs wperf's client against oldServer, a server
// written from the original wperf's rules, and checks the legacy options.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
		{[]string{"--legacy", "--cport", "40100"}, "--cport"},
		{[]string{"--legacy", "-6", "-L", "7"}, "-L/--flowlabel"},
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

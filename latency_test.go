package main

// latency_test.go covers latency probes on loopback: the statistics, RPM
// and grade; the matching of replies to probes; --ping against wperf's
// server and against a server that answers one probe late; its option
// checks; and the latency block of TCP and UDP tests.

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLatencyStats(t *testing.T) {
	t.Parallel()
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100 .. 1, unsorted
	}
	for _, tc := range []struct {
		name                    string
		values                  []float64
		min, med, p90, p99, max float64
		trimmed                 float64
	}{
		{"one", []float64{7}, 7, 7, 7, 7, 7, 7},
		{"two", []float64{3, 1}, 1, 1, 3, 3, 3, 2},
		{"ten", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 1, 5, 9, 10, 10, 5.5},
		// The top 5 % (96..100) leave the trimmed mean: mean of 1..95.
		{"hundred", hundred, 1, 50, 90, 99, 100, 48},
	} {
		st := newStats(tc.values, 0)
		got := []float64{st.MinMs, st.MedianMs, st.P90Ms, st.P99Ms, st.MaxMs, st.TrimmedMs}
		want := []float64{tc.min, tc.med, tc.p90, tc.p99, tc.max, tc.trimmed}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: min/median/p90/p99/max/trimmed = %v, want %v", tc.name, got, want)
				break
			}
		}
	}
	if newStats(nil, 0) != nil {
		t.Error("no values and no loss should give no statistics")
	}
	if st := newStats(nil, 3); st == nil || st.Lost != 3 || st.Count != 0 {
		t.Errorf("only lost probes: got %+v", st)
	}
}

func TestBufferbloatGrade(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		increase float64
		want     string
	}{
		{-1, "A+"}, {0, "A+"}, {4.9, "A+"}, {5, "A"}, {29.9, "A"}, {30, "B"}, {59, "B"}, {60, "C"},
		{199, "C"}, {200, "D"}, {399, "D"}, {400, "F"}, {5000, "F"},
	} {
		if got := bufferbloatGrade(tc.increase); got != tc.want {
			t.Errorf("increase %g ms: grade %s, want %s", tc.increase, got, tc.want)
		}
	}
}

func TestResponsiveness(t *testing.T) {
	t.Parallel()
	ms := func(v float64) *latencyStats { return newStats([]float64{v}, 0) }
	for _, tc := range []struct {
		name                 string
		connect, up, echo, s *latencyStats
		want                 float64
	}{
		// draft-03 §4.3.1: 60000 / (1/6 (10+20+30) + 1/2 × 40) = 2000.
		{"both kinds", ms(10), ms(20), ms(30), ms(40), 2000},
		{"foreign only", ms(10), ms(20), ms(30), nil, 3000},
		{"self only", nil, nil, nil, ms(60), 1000},
		{"nothing", nil, nil, nil, nil, 0},
		{"foreign lost", newStats(nil, 2), newStats(nil, 2), newStats(nil, 2), ms(100), 600},
	} {
		if got := responsiveness(tc.connect, tc.up, tc.echo, tc.s); got != tc.want {
			t.Errorf("%s: %g RPM, want %g", tc.name, got, tc.want)
		}
	}
}

// TestProbeBook: replies match by number; a reply after the timeout is
// late and lost, and never taken for another probe's.
func TestProbeBook(t *testing.T) {
	t.Parallel()
	type outcome struct {
		seq  uint64
		lost bool
		late bool
	}
	var got []outcome
	b := newProbeBook(time.Second, func(seq uint64, s probeSample, late bool) {
		got = append(got, outcome{seq, s.Lost, late})
	})
	b.expired = map[uint64]time.Time{}
	t0 := time.Now()
	one := b.add(probeSample{sent: t0})
	two := b.add(probeSample{sent: t0.Add(500 * time.Millisecond)})
	b.expire(t0.Add(1200 * time.Millisecond)) // one is overdue, two is not
	b.reply(one, t0.Add(1300*time.Millisecond))
	b.reply(two, t0.Add(1400*time.Millisecond))
	b.reply(two, t0.Add(1500*time.Millisecond)) // a duplicate is ignored
	b.reply(99, t0)                             // so is a number never sent
	want := []outcome{{one, true, false}, {one, true, true}, {two, false, false}}
	if len(got) != len(want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("outcomes %v, want %v", got, want)
		}
	}
	if b.outstanding() != 0 {
		t.Errorf("%d probes still out", b.outstanding())
	}
}

// pingLineRE is one reply line of --ping.
var pingLineRE = regexp.MustCompile(`^64 bytes from 127\.0\.0\.1: seq=(\d+) time=(\d+\.\d{3}) ms$`)

func TestPingLoopback(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	r := srv.mustRun(t, "--ping", "--ping-count", "5", "-i", "0.2")
	var seqs []int
	for _, l := range e2eLines(r.stdout) {
		m := pingLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		seq, _ := strconv.Atoi(m[1])
		rtt, _ := strconv.ParseFloat(m[2], 64)
		seqs = append(seqs, seq)
		if rtt <= 0 || rtt > 500 {
			t.Errorf("%q: not a sane loopback round trip", l)
		}
	}
	if len(seqs) != 5 || seqs[0] != 1 || seqs[4] != 5 {
		t.Errorf("want replies 1..5, got %v:\n%s", seqs, r.stdout)
	}
	for _, want := range []string{"first request: TCP connect ", "5 transmitted, 5 received, 0% packet loss", "rtt min/avg/max/mdev = ", "jitter "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}

	doc := e2eDecode(t, srv.mustRun(t, "--ping", "--ping-count", "5", "-i", "0.2", "-J").stdout)
	if n := len(e2eList(t, doc, "replies")); n != 5 {
		t.Errorf("-J: %d replies, want 5", n)
	}
	if e2eInt(t, doc, "end.received") != 5 || e2eFloat(t, doc, "end.median_ms") <= 0 || e2eFloat(t, doc, "start.connect_ms") <= 0 {
		t.Errorf("-J: bad summary %v / %v", doc["end"], doc["start"])
	}
	e2eWaitFor(t, 5*time.Second, "the server to log the ping sessions", func() bool {
		return strings.Count(srv.out.String(), " ping 5 probes echoed") == 2
	})
}

// lateEchoServer speaks the probe protocol and holds the echo of probe
// number late back by delay; every other echo goes at once.
func lateEchoServer(t *testing.T, late uint64, delay time.Duration) string {
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		c, err := upgrade(w, hr, upgradeOptions{subprotocols: []string{subprotocolV1}})
		if err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, kind, err := readControlMessage(c, 10*time.Second); err != nil || kind != msgPing {
			c.Abort()
			return
		}
		for {
			_, msg, err := c.ReadMessage(nil)
			if err != nil {
				return
			}
			if binary.BigEndian.Uint64(msg) != late {
				c.WriteMessage(opBinary, msg)
				continue
			}
			wg.Add(1)
			time.AfterFunc(delay, func() { defer wg.Done(); c.WriteMessage(opBinary, msg) })
		}
	}))
	t.Cleanup(func() { wg.Wait(); hs.Close() })
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
}

// TestPingLateReply: a reply after its timeout is lost and said to be
// late, and the next probe's reply is its own.
func TestPingLateReply(t *testing.T) {
	t.Parallel()
	url := lateEchoServer(t, 3, time.Second)
	r := e2eRun("-c", url, "--ping", "--ping-count", "8", "-i", "0.3", "--ping-timeout", "0.5")
	if r.code != exitOK {
		t.Fatalf("want exit 0 (some replies came), got %v", r)
	}
	lines := e2eLines(r.stdout)
	var inTime []string
	late, lost := 0, 0
	for _, l := range lines {
		switch {
		case strings.Contains(l, "seq=3 ") && strings.HasSuffix(l, "(late: counted lost)"):
			late++
		case strings.HasPrefix(l, "no reply from"):
			lost++
			if !strings.Contains(l, "seq=3 ") {
				t.Errorf("%q: only probe 3 was held back", l)
			}
		case pingLineRE.MatchString(l):
			inTime = append(inTime, pingLineRE.FindStringSubmatch(l)[1])
			if rtt, _ := strconv.ParseFloat(pingLineRE.FindStringSubmatch(l)[2], 64); rtt > 500 {
				t.Errorf("%q: an in-time reply slower than the timeout", l)
			}
		}
	}
	if late != 1 || lost != 1 || strings.Join(inTime, ",") != "1,2,4,5,6,7,8" {
		t.Errorf("want probe 3 lost and late, 1,2,4..8 in time; got late %d, lost %d, in time %v:\n%s", late, lost, inTime, r.stdout)
	}
	if !strings.Contains(r.stdout, "8 transmitted, 7 received, 12.5% packet loss") || !strings.Contains(r.stdout, ", 1 late") {
		t.Errorf("summary:\n%s", r.stdout)
	}
}

// TestLatencyFlagErrors: bad values and misplaced latency options exit 2
// with one line that names the option.
func TestLatencyFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"--ping", "-i", "0.001"}, "-i"},
		{[]string{"--ping", "-i", "0"}, "-i"},
		{[]string{"--ping", "-l", "8"}, "-l"},
		{[]string{"--ping", "-l", "65537"}, "-l"},
		{[]string{"--ping", "--ping-count", "0"}, "--ping-count"},
		{[]string{"--ping", "--ping-count", "many"}, "--ping-count"},
		{[]string{"--ping", "--ping-timeout", "0"}, "--ping-timeout"},
		{[]string{"--ping", "--ping-timeout", "61"}, "--ping-timeout"},
		{[]string{"--ping", "-R"}, "--reverse"},
		{[]string{"--ping", "-P", "2"}, "--parallel"},
		{[]string{"--ping", "--no-latency"}, "--no-latency"},
		{[]string{"--ping", "-J", "--json-stream"}, "-J"},
		{[]string{"--ping-count", "3"}, "--ping-count"},
		{[]string{"--ping-timeout", "1"}, "--ping-timeout"},
		{[]string{"--latency-interval", "0.001"}, "--latency-interval"},
		{[]string{"--latency-interval", "x"}, "--latency-interval"},
		{[]string{"--no-latency", "--latency-interval", "1"}, "--no-latency"},
		{[]string{"--notsent-lowat", "100"}, "--notsent-lowat"},
		{[]string{"--notsent-lowat", "2G"}, "--notsent-lowat"},
		{[]string{"--ping", "--notsent-lowat", "128K"}, "--notsent-lowat"},
	} {
		code, stdout, stderr := runArgs(t, append([]string{"-c", noServer}, tc.args...)...)
		lines := e2eLines(stderr)
		if code != exitUsage || stdout != "" || len(lines) != 2 || !strings.Contains(lines[0], tc.mention) {
			t.Errorf("%q: want exit 2 and one line naming %s; got exit %d, stderr %q", tc.args, tc.mention, code, stderr)
		}
	}
	if _, err := parseArgs([]string{"-s", "--ping"}); err == nil {
		t.Error("--ping on a server should be refused")
	}
}

// TestLatencyUnderLoad: TCP tests carry the latency block in text, -J
// (end and intervals, with every sample) and the server's output, with
// the idle phase before the test or inside -O.
func TestLatencyUnderLoad(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J") // -J: server_output_json
	doc := e2eDecode(t, srv.mustRun(t, "-t", "1", "-i", "0.5", "-J", "--get-server-output").stdout)
	lat, _ := e2eGet(doc, "end.wperf.latency")
	if p := e2eGet2(t, lat, "idle_phase"); p != idleBeforeIt {
		t.Errorf("idle phase %q, want %q", p, idleBeforeIt)
	}
	for _, path := range []string{"idle.median_ms", "foreign.echo.p90_ms", "foreign.connect.median_ms", "foreign.upgrade.median_ms", "self.up.p99_ms", "loaded_p90_ms", "rpm"} {
		if v := e2eFloat(t, lat, path); v <= 0 || v > 60000 {
			t.Errorf("end.wperf.latency.%s = %g: not a sane loopback value", path, v)
		}
	}
	if g := e2eGet2(t, lat, "grade"); !strings.Contains("A+ A B C D F", g) || g == "" {
		t.Errorf("grade %q", g)
	}
	samples := e2eList(t, lat, "samples")
	if len(samples) < 15 {
		t.Errorf("%d samples in a 1 s test with 0.1 s probes and an idle second", len(samples))
	}
	for _, k := range []int{0, 1} {
		if _, ok := e2eGet(e2eList(t, doc, "intervals")[k], "wperf.latency.foreign.median_ms"); !ok {
			t.Errorf("intervals[%d].wperf.latency lacks foreign probes", k)
		}
	}
	if _, ok := e2eGet(doc, "server_output_json.end.wperf.latency.loaded_p90_ms"); !ok {
		t.Error("the server's output lacks the latency summary")
	}

	r := srv.mustRun(t, "-t", "1", "-O", "2", "-R")
	for _, want := range []string{"idle in the first second of -O, senders quiet", "  foreign   median ", "  self down median ", "Latency: idle "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("-O 2 -R: output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := srv.mustRun(t, "-t", "0.5", "--no-latency"); strings.Contains(r.stdout, "Latency") {
		t.Errorf("--no-latency still reports latency:\n%s", r.stdout)
	}
	// Both ends cap their senders' unsent bytes; self probes still run.
	doc = e2eDecode(t, srv.mustRun(t, "-t", "0.5", "--bidir", "--notsent-lowat", "128K", "-J").stdout)
	if e2eInt(t, doc, "start.test_parameters.notsent_lowat") != 128<<10 {
		t.Error("the request lacks notsent_lowat")
	}
	for _, dir := range []string{"up", "down"} {
		if e2eFloat(t, doc, "end.wperf.latency.self."+dir+".median_ms") <= 0 {
			t.Errorf("--bidir: no self probes on the %s streams", dir)
		}
	}
}

// TestLatencyUDP: a UDP test has the same block; over real UDP only
// foreign probes exist, over WebSocket self probes too.
func TestLatencyUDP(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	for _, tc := range []struct {
		transport string
		self      bool
	}{{"udp", false}, {"ws", true}} {
		r := srv.mustRun(t, "-u", "-b", "20M", "-t", "1", "--udp-transport", tc.transport)
		headline := regexp.MustCompile(`(?m)^Latency: idle \d+\.\d+ ms \| loaded p90 \S+ ms \([+-]\d+\) \| \d+ RPM \| grade (A\+|A|B|C|D|F)$`)
		if !headline.MatchString(r.stdout) || !strings.Contains(r.stdout, "  foreign   median ") {
			t.Errorf("UDP over %s: no latency block:\n%s", tc.transport, r.stdout)
		}
		if got := strings.Contains(r.stdout, "  self up   median "); got != tc.self {
			t.Errorf("UDP over %s: self probes %v, want %v:\n%s", tc.transport, got, tc.self, r.stdout)
		}
	}
}

// e2eGet2 is a string at a path.
func e2eGet2(t *testing.T, v any, path string) string {
	t.Helper()
	x, _ := e2eGet(v, path)
	s, _ := x.(string)
	return s
}

// BenchmarkProbeRoundTrip compares a --ping probe's round trip (64 bytes
// over wperf.v1, to wperf's server) with the floor: the same request and
// response over a plain TCP socket to a tiny echo, in the same run and
// process, one probe every millisecond. It reports each one's median in
// µs (median-µs); wperf's should be within 30 µs of the floor's.
func BenchmarkProbeRoundTrip(b *testing.B) {
	const size, pause = defaultProbeSize, time.Millisecond
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.Copy(c, c)
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		msg := make([]byte, size)
		benchRoundTrips(b, pause, func() error {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			_, err := io.ReadFull(c, msg)
			return err
		})
	})
	b.Run("wperf", func(b *testing.B) {
		cfg := defaultConfig()
		cfg.mode, cfg.host, cfg.port = modeClient, "127.0.0.1", 0
		cfg.port, _ = strconv.Atoi(benchServer(b))
		u, err := targetURL(cfg)
		if err != nil {
			b.Fatal(err)
		}
		d := probeDialer{cfg: cfg, u: u}
		c, _, err := d.open(context.Background(), pingPurposeProbe)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(statusNormal, "done")
		msg := make([]byte, size)
		var buf []byte
		benchRoundTrips(b, pause, func() error {
			putDatagramHeader(msg, 1, 0)
			if err := c.WriteMessage(opBinary, msg); err != nil {
				return err
			}
			_, reply, err := c.ReadMessage(buf)
			buf = reply
			return err
		})
	})
}

// benchRoundTrips times b.N round trips, pause apart, and reports their
// median in µs.
func benchRoundTrips(b *testing.B, pause time.Duration, roundTrip func() error) {
	rtts := make([]float64, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := roundTrip(); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, float64(time.Since(t0).Nanoseconds())/1e3)
		time.Sleep(pause)
	}
	b.StopTimer()
	b.ReportMetric(newStats(rtts, 0).MedianMs, "median-µs")
}

// TestPingCtrlC: SIGINT ends --ping with the summary so far and exit 0,
// as ping does.
func TestPingCtrlC(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("there is no SIGINT to send a process on Windows")
	}
	srv := startE2EServer(t)
	var out e2eBuffer
	cmd := exec.Command(wperfBinary(t), srv.args("--ping", "--ping-count", "1000", "-i", "0.05")...)
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e2eWaitFor(t, 10*time.Second, "three replies", func() bool { return strings.Contains(out.String(), "seq=3 ") })
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGINT: %v, want 0 as some probes were answered", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10 s after SIGINT:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^\d+ transmitted, \d+ received, `).MatchString(out.String()) || strings.Contains(out.String(), "1000 transmitted") {
		t.Errorf("no summary of the probes so far:\n%s", out.String())
	}
}

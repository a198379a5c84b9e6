package main

// bandwidth_test.go runs whole bandwidth tests on loopback: the server
// in-process through serve, the client in-process through run (and, for
// Ctrl-C, as the built binary). It checks the -J document against real
// iperf3 3.12 output (testdata/iperf3), the text layout, --json-stream,
// token authentication, failures and their exit codes, the server's caps,
// log and shutdown, and what a vanished client leaves behind.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- harness ----

// e2eBuffer is a writer that a test may read while it is being written.
type e2eBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *e2eBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *e2eBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// e2eWaitFor polls cond every 20 ms until it holds, failing the test
// after limit.
func e2eWaitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// e2eServer is a wperf -s running in this process on a loopback port.
type e2eServer struct {
	host     string
	port     string
	out      *e2eBuffer // what the server prints
	cancel   context.CancelFunc
	finished chan struct{} // closed when serve returns
	err      error         // serve's result, once finished is closed
}

// startE2EServer starts serve with the given server options (as on the
// command line, after -s); the test's cleanup shuts it down and insists
// that serve returns.
func startE2EServer(t *testing.T, flags ...string) *e2eServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startE2EServerOn(t, ln, flags...)
}

// startE2EServerOn is startE2EServer on a listener of the caller's.
func startE2EServerOn(t *testing.T, ln net.Listener, flags ...string) *e2eServer {
	t.Helper()
	cfg, err := parseArgs(append([]string{"-s"}, flags...))
	if err != nil {
		ln.Close()
		t.Fatalf("server options %q: %v", flags, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &e2eServer{
		host:     ln.Addr().(*net.TCPAddr).IP.String(),
		port:     strconv.Itoa(ln.Addr().(*net.TCPAddr).Port),
		out:      &e2eBuffer{},
		cancel:   cancel,
		finished: make(chan struct{}),
	}
	go func() {
		defer close(s.finished)
		s.err = serve(ctx, cfg, ln, &lineWriter{w: s.out})
	}()
	t.Cleanup(func() {
		cancel()
		if !s.wait(20 * time.Second) {
			t.Errorf("serve still running 20 s after its context ended")
		}
	})
	return s
}

// wait reports whether serve returned within limit.
func (s *e2eServer) wait(limit time.Duration) bool {
	select {
	case <-s.finished:
		return true
	case <-time.After(limit):
		return false
	}
}

// args is a client command line aimed at this server.
func (s *e2eServer) args(extra ...string) []string {
	return append([]string{"-c", s.host, "-p", s.port}, extra...)
}

// e2eResult is how one wperf invocation ended.
type e2eResult struct {
	code           int
	stdout, stderr string
}

func (r e2eResult) String() string {
	return fmt.Sprintf("exit %d\n--- stderr:\n%s--- stdout:\n%s", r.code, r.stderr, r.stdout)
}

// e2eRun runs wperf in this process and waits for it.
func e2eRun(args ...string) e2eResult {
	var out, errOut e2eBuffer
	code := run(args, &out, &errOut)
	return e2eResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustRun runs a client that has to succeed.
func (s *e2eServer) mustRun(t *testing.T, extra ...string) e2eResult {
	t.Helper()
	r := e2eRun(s.args(extra...)...)
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("wperf %q: want exit 0 and a quiet stderr, got %v", extra, r)
	}
	return r
}

// e2eAsync is a wperf run in the background, readable as it goes.
type e2eAsync struct {
	out, errOut e2eBuffer
	done        chan int
}

func e2eStart(args ...string) *e2eAsync {
	a := &e2eAsync{done: make(chan int, 1)}
	go func() { a.done <- run(args, &a.out, &a.errOut) }()
	return a
}

func (a *e2eAsync) wait(t *testing.T, limit time.Duration) e2eResult {
	t.Helper()
	select {
	case code := <-a.done:
		return e2eResult{code: code, stdout: a.out.String(), stderr: a.errOut.String()}
	case <-time.After(limit):
		t.Fatalf("wperf still running after %v; output so far:\n%s", limit, a.out.String())
		return e2eResult{}
	}
}

// ---- JSON documents ----

// e2eDecode parses one JSON document (numbers kept exact) and nothing
// after it.
func e2eDecode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, s)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("more than one JSON document in:\n%s", s)
	}
	return doc
}

// e2eGet follows a dotted path of object keys.
func e2eGet(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func e2eInt(t *testing.T, v any, path string) int64 {
	t.Helper()
	x, _ := e2eGet(v, path)
	n, ok := x.(json.Number)
	if !ok {
		t.Fatalf("%s: want a number, got %#v", path, x)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%s: want a whole number, got %s", path, n)
	}
	return i
}

func e2eFloat(t *testing.T, v any, path string) float64 {
	t.Helper()
	x, _ := e2eGet(v, path)
	n, ok := x.(json.Number)
	if !ok {
		t.Fatalf("%s: want a number, got %#v", path, x)
	}
	f, _ := n.Float64()
	return f
}

func e2eBool(t *testing.T, v any, path string) bool {
	t.Helper()
	x, _ := e2eGet(v, path)
	b, ok := x.(bool)
	if !ok {
		t.Fatalf("%s: want true or false, got %#v", path, x)
	}
	return b
}

func e2eList(t *testing.T, v any, path string) []any {
	t.Helper()
	x, _ := e2eGet(v, path)
	l, ok := x.([]any)
	if !ok {
		t.Fatalf("%s: want an array, got %#v", path, x)
	}
	return l
}

// e2eKeyPaths lists every key path of a JSON value the way jq spells
// them, with [] standing for any array element: .end.sum_sent.bytes,
// .intervals[].streams[].rtt.
func e2eKeyPaths(v any) map[string]bool {
	paths := map[string]bool{}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				paths[at+"."+k] = true
				walk(e, at+"."+k)
			}
		case []any:
			for _, e := range x {
				walk(e, at+"[]")
			}
		}
	}
	walk(v, "")
	return paths
}

// e2eReference is one of iperf3 3.12's own outputs, kept in testdata.
func e2eReference(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "iperf3", name))
	if err != nil {
		t.Fatal(err)
	}
	return e2eDecode(t, string(b))
}

// e2eMayLack says which of iperf3's keys wperf may leave out, and why.
func e2eMayLack(path string) bool {
	switch path[strings.LastIndexByte(path, '.')+1:] {
	case "retransmits", "snd_cwnd", "snd_wnd", "rtt", "rttvar", "pmtu",
		"max_snd_cwnd", "max_snd_wnd", "max_rtt", "min_rtt", "mean_rtt",
		"sender_tcp_congestion", "receiver_tcp_congestion":
		// TCP_INFO and the congestion algorithm's name: only Linux
		// tells wperf these, and where it cannot measure them it
		// leaves the keys out rather than report zeros.
		return !tcpInfoAvailable
	}
	return false
}

// e2eHasReferenceKeys checks that doc has every key path of iperf3's
// output ref (under prefix in doc, as for server_output_json).
func e2eHasReferenceKeys(t *testing.T, doc any, ref, prefix string) {
	t.Helper()
	ours := e2eKeyPaths(doc)
	var missing []string
	for p := range e2eKeyPaths(e2eReference(t, ref)) {
		if !ours[prefix+p] && !e2eMayLack(p) {
			missing = append(missing, prefix+p)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("keys of iperf3's %s missing here:\n  %s", ref, strings.Join(missing, "\n  "))
	}
}

// ---- what a finished -J document must say ----

// e2eShape is what a client asked for, as far as the checks care.
type e2eShape struct {
	dir      string // dirUpload, dirDownload or dirBidir
	parallel int
	target   int64 // bytes per direction for -n or -k; 0 for a timed test
	omitted  bool  // -O was given
}

// e2eCheckDoc checks a client's -J document of a completed test: its
// streams, that every byte sent was received, that the sums add up, and
// that the intervals add up to the totals.
func e2eCheckDoc(t *testing.T, doc map[string]any, want e2eShape) {
	t.Helper()
	if _, ok := doc["error"]; ok {
		t.Fatalf("completed test has an error: %v", doc["error"])
	}
	nStreams := want.parallel
	if want.dir == dirBidir {
		nStreams *= 2
	}
	if got := e2eInt(t, doc, "start.test_start.num_streams"); got != int64(want.parallel) {
		t.Errorf("test_start.num_streams = %d, want %d", got, want.parallel)
	}
	if got := e2eInt(t, doc, "start.test_start.reverse"); got != int64(b2i(want.dir == dirDownload)) {
		t.Errorf("test_start.reverse = %d for a %s test", got, want.dir)
	}
	connected := e2eList(t, doc, "start.connected")
	sockets := map[int64]bool{}
	for _, c := range connected {
		sockets[e2eInt(t, c, "socket")] = true
	}
	if len(connected) != nStreams || len(sockets) != nStreams {
		t.Errorf("start.connected has %d entries with %d distinct sockets, want %d", len(connected), len(sockets), nStreams)
	}

	// Per stream: the receiver got exactly what the sender sent. With -O
	// each end starts counting at the end of its own omitted period, so
	// the bytes in flight at that moment land on different sides of it
	// (iperf3 behaves the same); only a positive count is checked then.
	ends := e2eList(t, doc, "end.streams")
	if len(ends) != nStreams {
		t.Fatalf("end.streams has %d entries, want %d", len(ends), nStreams)
	}
	localTotal := map[int64]int64{} // socket → bytes this side counted
	sentBy := map[bool]int64{}      // sum of sender bytes by "client sends"
	recvBy := map[bool]int64{}
	for _, e := range ends {
		id := e2eInt(t, e, "sender.socket")
		if rid := e2eInt(t, e, "receiver.socket"); rid != id || !sockets[id] {
			t.Errorf("end stream sender socket %d, receiver socket %d, connected %v", id, rid, sockets)
		}
		sent, recv := e2eInt(t, e, "sender.bytes"), e2eInt(t, e, "receiver.bytes")
		clientSends := e2eBool(t, e, "sender.sender")
		// (With -n or -k the streams of a direction share one budget, so
		// on a fast link one stream may take all of a small one.)
		if want.target == 0 && (sent <= 0 || recv <= 0) {
			t.Errorf("stream %d: sent %d, received %d; both should be positive", id, sent, recv)
		}
		if !want.omitted && sent != recv {
			t.Errorf("stream %d: sender counted %d bytes, receiver %d", id, sent, recv)
		}
		if want.target > 0 && want.parallel == 1 && sent != want.target {
			t.Errorf("stream %d: sent %d bytes, want exactly %d", id, sent, want.target)
		}
		sentBy[clientSends] += sent
		recvBy[clientSends] += recv
		if clientSends {
			localTotal[id] = sent
		} else {
			localTotal[id] = recv
		}
	}

	// Per direction: the sums, and who sends.
	type dirSums struct{ sent, received string }
	dirs := []dirSums{{"end.sum_sent", "end.sum_received"}}
	if want.dir == dirBidir {
		dirs = append(dirs, dirSums{"end.sum_sent_bidir_reverse", "end.sum_received_bidir_reverse"})
	}
	for i, d := range dirs {
		clientSends := want.dir != dirDownload && i == 0
		for _, p := range []string{d.sent, d.received} {
			if got := e2eBool(t, doc, p+".sender"); got != clientSends {
				t.Errorf("%s.sender = %v, want %v", p, got, clientSends)
			}
		}
		sent, recv := e2eInt(t, doc, d.sent+".bytes"), e2eInt(t, doc, d.received+".bytes")
		if sent != sentBy[clientSends] || recv != recvBy[clientSends] {
			t.Errorf("%s/%s = %d/%d, but their streams add up to %d/%d", d.sent, d.received, sent, recv, sentBy[clientSends], recvBy[clientSends])
		}
		if sent <= 0 || recv <= 0 {
			t.Errorf("%s = %d, %s = %d: both should be positive", d.sent, sent, d.received, recv)
		}
		if !want.omitted && sent != recv {
			t.Errorf("%s = %d but %s = %d", d.sent, sent, d.received, recv)
		}
		if want.target > 0 && (sent != want.target || recv != want.target) {
			t.Errorf("%s = %d, %s = %d; want exactly %d each", d.sent, sent, d.received, recv, want.target)
		}
	}
	if want.dir != dirBidir {
		for _, p := range []string{"end.sum_sent_bidir_reverse", "end.sum_received_bidir_reverse"} {
			if _, ok := e2eGet(doc, p); ok {
				t.Errorf("%s in a %s test", p, want.dir)
			}
		}
	}

	// Intervals: each stream's measured intervals add up to its total,
	// and each interval's sums to its streams.
	intervals := e2eList(t, doc, "intervals")
	if len(intervals) == 0 {
		t.Fatal("no intervals")
	}
	inIntervals := map[int64]int64{}
	for k, iv := range intervals {
		streams := e2eList(t, iv, "streams")
		if len(streams) == 0 || len(streams) > nStreams {
			t.Errorf("interval %d has %d streams, want 1 to %d", k, len(streams), nStreams)
		}
		omitted := e2eBool(t, streams[0], "omitted")
		bySide := map[bool]int64{}
		for _, s := range streams {
			if e2eBool(t, s, "omitted") != omitted {
				t.Errorf("interval %d: streams disagree on omitted", k)
			}
			n := e2eInt(t, s, "bytes")
			bySide[e2eBool(t, s, "sender")] += n
			if !omitted {
				inIntervals[e2eInt(t, s, "socket")] += n
			}
		}
		sums := []string{"sum"}
		if want.dir == dirBidir {
			sums = append(sums, "sum_bidir_reverse")
		}
		for i, name := range sums {
			clientSends := want.dir != dirDownload && i == 0
			if got := e2eInt(t, iv, name+".bytes"); got != bySide[clientSends] {
				t.Errorf("interval %d: %s.bytes = %d, its streams add up to %d", k, name, got, bySide[clientSends])
			}
			if got := e2eBool(t, iv, name+".omitted"); got != omitted {
				t.Errorf("interval %d: %s.omitted = %v, streams say %v", k, name, got, omitted)
			}
		}
	}
	for id, total := range localTotal {
		if inIntervals[id] != total {
			t.Errorf("stream %d: measured intervals add up to %d bytes, the summary says %d", id, inIntervals[id], total)
		}
	}
}

// ---- every mode, -J ----

// TestE2EModes runs each kind of test with -J and checks the document
// against iperf3's output for the same mode and against itself.
func TestE2EModes(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	cases := []struct {
		name  string
		args  []string
		ref   string
		shape e2eShape
		extra func(t *testing.T, doc map[string]any)
	}{
		{"upload", []string{"-t", "0.6"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, nil},
		{"reverse", []string{"-t", "0.6", "-R"}, "tcp-reverse.json", e2eShape{dir: dirDownload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			for _, e := range e2eList(t, doc, "end.streams") {
				if e2eBool(t, e, "sender.sender") || e2eBool(t, e, "receiver.sender") {
					t.Errorf("-R: the client sends on no stream, yet %v", e)
				}
			}
		}},
		{"bidir", []string{"-t", "0.6", "--bidir"}, "tcp-bidir.json", e2eShape{dir: dirBidir, parallel: 1}, func(t *testing.T, doc map[string]any) {
			for k, iv := range e2eList(t, doc, "intervals") {
				if _, ok := e2eGet(iv, "sum_bidir_reverse"); !ok {
					t.Errorf("interval %d lacks sum_bidir_reverse", k)
				}
			}
		}},
		{"parallel 4", []string{"-t", "0.6", "-P", "4"}, "tcp-p4.json", e2eShape{dir: dirUpload, parallel: 4}, nil},
		{"bytes", []string{"-n", "20M"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, target: 20 << 20}, nil},
		{"bytes, reverse, odd size", []string{"-n", "3000001", "-R", "-P", "2"}, "tcp-reverse.json", e2eShape{dir: dirDownload, parallel: 2, target: 3000001}, nil},
		{"bytes, bidir", []string{"-n", "8M", "--bidir", "-P", "2"}, "tcp-bidir.json", e2eShape{dir: dirBidir, parallel: 2, target: 8 << 20}, nil},
		{"blocks", []string{"-k", "300", "-l", "16K"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, target: 300 * 16 << 10}, func(t *testing.T, doc map[string]any) {
			if e2eInt(t, doc, "start.test_start.blocks") != 300 || e2eInt(t, doc, "start.test_start.blksize") != 16<<10 {
				t.Errorf("test_start: %v", doc["start"].(map[string]any)["test_start"])
			}
		}},
		{"intervals", []string{"-t", "1.2", "-i", "0.5"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			// Intervals close at 0.5 and 1.0 s on the clock, and the
			// third when the streams finish, just after 1.2 s. On a busy
			// machine they may finish after the clock's short grace at
			// 1.2 s: their last bytes then get a fourth interval of
			// their own, from 1.2 s. Never more.
			ivs := e2eList(t, doc, "intervals")
			if n := len(ivs); n != 3 && n != 4 {
				t.Fatalf("-t 1.2 -i 0.5: %d intervals, want 3 (or 4 on a busy machine)", n)
			}
			near := func(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }
			for k, iv := range ivs {
				start, end := e2eFloat(t, iv, "sum.start"), e2eFloat(t, iv, "sum.end")
				want := []float64{0, 0.5, 1.0, 1.2}[k]
				if !near(start, want) {
					t.Errorf("interval %d starts at %g, want %g", k, start, want)
				}
				switch {
				case k < 2 && !near(end-start, 0.5):
					t.Errorf("interval %d lasts %g s, want 0.5", k, end-start)
				case k == 2 && len(ivs) == 4 && !near(end, 1.2):
					t.Errorf("interval 2 ends at %g s, want 1.2 as a fourth follows", end)
				case k >= 2 && (end < 1.2-1e-6 || end > 3):
					t.Errorf("interval %d ends at %g s, want just after 1.2", k, end)
				}
			}
		}},
		{"omit", []string{"-O", "0.5", "-t", "1"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, omitted: true}, func(t *testing.T, doc map[string]any) {
			ivs := e2eList(t, doc, "intervals")
			var omitted, measured, omittedBytes, measuredBytes int64
			for k, iv := range ivs {
				if e2eBool(t, iv, "sum.omitted") {
					if measured > 0 {
						t.Errorf("interval %d is omitted but follows measured ones", k)
					}
					omitted++
					omittedBytes += e2eInt(t, iv, "sum.bytes")
					if end := e2eFloat(t, iv, "sum.end"); end > 0.5+1e-6 {
						t.Errorf("omitted interval %d ends at %g s, after the 0.5 s omitted", k, end)
					}
				} else {
					measured++
					measuredBytes += e2eInt(t, iv, "sum.bytes")
				}
			}
			if omitted == 0 || measured == 0 || omittedBytes == 0 {
				t.Fatalf("-O 0.5: %d omitted intervals (%d bytes), %d measured", omitted, omittedBytes, measured)
			}
			if sent := e2eInt(t, doc, "end.sum_sent.bytes"); sent != measuredBytes {
				t.Errorf("sum_sent.bytes = %d, the measured intervals hold %d (the omitted %d must not count)", sent, measuredBytes, omittedBytes)
			}
			// The summary covers the 1 s measured, not the 1.5 s run.
			if secs := e2eFloat(t, doc, "end.sum_sent.seconds"); secs < 1-1e-6 || secs >= 1.5 {
				t.Errorf("sum_sent.seconds = %g, want the measured 1 s (and a little)", secs)
			}
			if first := e2eFloat(t, ivs[omitted], "sum.start"); first != 0 {
				t.Errorf("the first measured interval starts at %g, want 0", first)
			}
		}},
		{"one interval with -i 0", []string{"-t", "0.6", "-i", "0"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			// iperf3 -i 0 reports the whole test as one interval.
			ivs := e2eList(t, doc, "intervals")
			if len(ivs) != 1 || e2eFloat(t, ivs[0], "sum.start") != 0 || e2eFloat(t, ivs[0], "sum.end") < 0.6 {
				t.Errorf("-i 0: want one interval from 0 to the end, got %v", ivs)
			}
		}},
		{"bytes after omit", []string{"-n", "50M", "-O", "0.3"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, omitted: true}, func(t *testing.T, doc map[string]any) {
			// What was sent during the omitted period does not count
			// against -n, even a write that straddled its end.
			if sent := e2eInt(t, doc, "end.sum_sent.bytes"); sent != 50<<20 {
				t.Errorf("-n 50M -O 0.3: sent %d bytes after the omitted period, want exactly %d", sent, 50<<20)
			}
		}},
		{"server output", []string{"-t", "0.6", "--get-server-output"}, "tcp-getserverjson.json", e2eShape{dir: dirUpload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			server, ok := doc["server_output_json"].(map[string]any)
			if !ok {
				t.Fatalf("server_output_json is %#v", doc["server_output_json"])
			}
			e2eHasReferenceKeys(t, server, "server-side.json", "")
			if got, want := e2eInt(t, server, "end.sum_received.bytes"), e2eInt(t, doc, "end.sum_received.bytes"); got != want {
				t.Errorf("the server says it received %d bytes, the client's report %d", got, want)
			}
			if _, ok := e2eGet(server, "start.accepted_connection.port"); !ok {
				t.Error("server_output_json lacks start.accepted_connection")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := srv.mustRun(t, append(tc.args, "-J")...)
			doc := e2eDecode(t, r.stdout)
			e2eHasReferenceKeys(t, doc, tc.ref, "")
			e2eCheckDoc(t, doc, tc.shape)
			if tc.extra != nil {
				tc.extra(t, doc)
			}
			if t.Failed() {
				t.Logf("document:\n%s", r.stdout)
			}
		})
	}
}

// TestJSONTimestamp: start.timestamp reads as iperf3 writes it.
func TestJSONTimestamp(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	before := time.Now().Add(-time.Second)
	doc := e2eDecode(t, srv.mustRun(t, "-n", "1M", "-J").stdout)
	ref := e2eReference(t, "tcp.json")
	refTime, _ := e2eGet(ref, "start.timestamp.time")
	layout := "Mon, 02 Jan 2006 15:04:05 GMT"
	if _, err := time.Parse(layout, refTime.(string)); err != nil {
		t.Fatalf("the layout does not read iperf3's own timestamp: %v", err)
	}
	s, _ := e2eGet(doc, "start.timestamp.time")
	str, _ := s.(string)
	ts, err := time.Parse(layout, str)
	if err != nil {
		t.Fatalf("start.timestamp.time %q is not in iperf3's layout: %v", str, err)
	}
	if secs := e2eInt(t, doc, "start.timestamp.timesecs"); secs != ts.Unix() || ts.Before(before.Truncate(time.Second)) || ts.After(time.Now()) {
		t.Errorf("timestamp %q / %d does not match the test's time", str, secs)
	}
}

// ---- text output ----

// e2eTextRef is iperf3's text report, for its exact header lines.
func e2eTextRef(t *testing.T) (header, separator, summaryHeader string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "iperf3", "tcp-text-output.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "[ ID]") && strings.HasSuffix(l, "Cwnd"):
			header = l
		case strings.HasPrefix(l, "[ ID]"):
			summaryHeader = l
		case strings.HasPrefix(l, "- - -"):
			separator = l
		}
	}
	if header == "" || separator == "" || summaryHeader == "" {
		t.Fatal("tcp-text-output.txt lacks the header lines")
	}
	return header, separator, summaryHeader
}

var (
	e2eConnectedRE = regexp.MustCompile(`^\[ *(\d+)\] local 127\.0\.0\.1 port \d+ connected to 127\.0\.0\.1 port (\d+)$`)
	// A row: id (and --bidir role), interval, transfer, rate.
	e2eRowRE = regexp.MustCompile(`^\[( *\d+|SUM)\](\[[TR]X-C\])? +(\d+\.\d\d)-(\d+\.\d\d) +sec +\d+(\.\d+)? [KMGT]?Bytes +\d+(\.\d+)? ([KMGT]?(bits|Bytes))/sec`)
)

// e2eTextShape is what a text report should show.
type e2eTextShape struct {
	port     string
	streams  int  // connections
	sums     bool // -P > 1: [SUM] rows
	reverse  bool
	bidir    bool
	sendsTCP bool // the client sends, so Retr and Cwnd columns (Linux)
}

// e2eCheckText checks a client's text report line by line in iperf3's
// layout; lines must already be without any -T prefix.
func e2eCheckText(t *testing.T, lines []string, want e2eTextShape) {
	t.Helper()
	header, separator, summaryHeader := e2eTextRef(t)
	if !want.sendsTCP || !tcpInfoAvailable {
		header = strings.TrimSuffix(header, "         Retr  Cwnd")
	}
	if want.bidir {
		header = strings.Replace(header, "[ ID]", "[ ID][Role]", 1)
		summaryHeader = strings.Replace(summaryHeader, "[ ID]", "[ ID][Role]", 1)
	}
	if len(lines) < 8 {
		t.Fatalf("report too short:\n%s", strings.Join(lines, "\n"))
	}
	if want := "Connecting to host 127.0.0.1, port " + want.port; !strings.HasPrefix(lines[0], want) {
		t.Errorf("first line %q, want it to start %q", lines[0], want)
	}
	i := 1
	if want.reverse {
		// As iperf3 has it: before the connected lines.
		if lines[i] != "Reverse mode, remote host 127.0.0.1 is sending" {
			t.Errorf("line %d: %q, want the reverse mode notice", i, lines[i])
		}
		i++
	}
	for id := 1; id <= want.streams; id, i = id+1, i+1 {
		m := e2eConnectedRE.FindStringSubmatch(lines[i])
		if m == nil || m[1] != strconv.Itoa(id) || m[2] != want.port {
			t.Errorf("line %d: %q, want stream %d's connected line", i, lines[i], id)
		}
	}
	if lines[i] != header {
		t.Errorf("line %d: %q, want the header %q", i, lines[i], header)
	}
	if n := len(lines); lines[n-2] != "" || lines[n-1] != "wperf Done." {
		t.Errorf("report ends %q, want a blank line and \"wperf Done.\"", lines[n-2:])
	}
	// The summary: after the last separator, its header, then sender and
	// receiver rows until the blank line.
	last := -1
	for k, l := range lines {
		if l == separator {
			last = k
		}
	}
	if last < 0 || last+1 >= len(lines) || lines[last+1] != summaryHeader {
		t.Fatalf("no separator and summary header %q", summaryHeader)
	}
	counts := map[string]int{}
	for _, l := range lines[last+2 : len(lines)-2] {
		m := e2eRowRE.FindStringSubmatch(l)
		if m == nil || !(strings.HasSuffix(l, " sender") || strings.HasSuffix(l, " receiver")) {
			t.Errorf("summary row %q is not a sender or receiver row", l)
			continue
		}
		role := l[strings.LastIndexByte(l, ' ')+1:]
		id := strings.TrimSpace(m[1])
		counts[id+m[2]+" "+role]++
		if m[3] != "0.00" {
			t.Errorf("summary row %q does not start at 0.00", l)
		}
	}
	for id := 1; id <= want.streams; id++ {
		for _, role := range []string{"sender", "receiver"} {
			tag := ""
			if want.bidir && id > want.streams/2 {
				tag = "[RX-C]"
			} else if want.bidir {
				tag = "[TX-C]"
			}
			if counts[strconv.Itoa(id)+tag+" "+role] != 1 {
				t.Errorf("summary: want one %s row for stream %d%s, have %v", role, id, tag, counts)
			}
		}
	}
	if want.sums {
		tags := []string{""}
		if want.bidir {
			tags = []string{"[TX-C]", "[RX-C]"}
		}
		for _, tag := range tags {
			if counts["SUM"+tag+" sender"] != 1 || counts["SUM"+tag+" receiver"] != 1 {
				t.Errorf("summary: want [SUM]%s sender and receiver rows, have %v", tag, counts)
			}
		}
	} else if counts["SUM sender"]+counts["SUM[TX-C] sender"] > 0 {
		t.Errorf("[SUM] rows with a single stream: %v", counts)
	}
	// Interval rows between the header and the summary.
	rows, sums := 0, 0
	for _, l := range lines[i+1 : last] {
		if l == separator {
			continue
		}
		m := e2eRowRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("interval row %q is not in iperf3's layout", l)
			continue
		}
		if want.bidir && m[2] == "" {
			t.Errorf("--bidir row %q has no [TX-C]/[RX-C] tag", l)
		}
		rows++
		if m[1] == "SUM" {
			sums++
		}
	}
	if rows == 0 || (want.sums != (sums > 0)) {
		t.Errorf("%d interval rows, %d of them [SUM]; want rows, and [SUM] rows only with -P > 1", rows, sums)
	}
}

func e2eLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// e2eRateUnits lists the units of the rate column, row by row.
func e2eRateUnits(lines []string) map[string]int {
	units := map[string]int{}
	for _, l := range lines {
		if m := e2eRowRE.FindStringSubmatch(l); m != nil {
			units[m[7]]++
		}
	}
	return units
}

// TestTextOutput checks the report without -J in iperf3's layout, with
// the options that change it.
func TestTextOutput(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	base := e2eTextShape{port: srv.port, streams: 1, sendsTCP: true}
	cases := []struct {
		name  string
		args  []string
		shape func(e2eTextShape) e2eTextShape
		extra func(t *testing.T, lines []string)
	}{
		{"upload", []string{"-t", "0.6"}, nil, nil},
		{"parallel", []string{"-t", "0.6", "-P", "4", "-i", "0.25"}, func(s e2eTextShape) e2eTextShape {
			s.streams, s.sums = 4, true
			return s
		}, nil},
		{"reverse", []string{"-t", "0.6", "-R"}, func(s e2eTextShape) e2eTextShape {
			s.reverse, s.sendsTCP = true, false
			return s
		}, nil},
		{"bidir", []string{"-t", "0.6", "--bidir"}, func(s e2eTextShape) e2eTextShape {
			s.streams, s.bidir = 2, true
			return s
		}, nil},
		{"bidir parallel", []string{"-t", "0.6", "--bidir", "-P", "2"}, func(s e2eTextShape) e2eTextShape {
			s.streams, s.bidir, s.sums = 4, true, true
			return s
		}, nil},
		{"omit", []string{"-t", "0.6", "-O", "0.3", "-i", "0.2"}, nil, func(t *testing.T, lines []string) {
			n := 0
			for _, l := range lines {
				if strings.HasSuffix(l, "(omitted)") {
					n++
				}
			}
			if n == 0 {
				t.Error("no (omitted) rows with -O")
			}
		}},
		{"format m", []string{"-t", "0.6", "-f", "m"}, nil, func(t *testing.T, lines []string) {
			if units := e2eRateUnits(lines); len(units) != 1 || units["Mbits"] == 0 {
				t.Errorf("-f m: rate units %v, want Mbits only", units)
			}
		}},
		{"format M", []string{"-t", "0.6", "-f", "M"}, nil, func(t *testing.T, lines []string) {
			if units := e2eRateUnits(lines); len(units) != 1 || units["MBytes"] == 0 {
				t.Errorf("-f M: rate units %v, want MBytes only", units)
			}
		}},
		{"server output", []string{"-t", "0.6", "--get-server-output"}, nil, func(t *testing.T, lines []string) {
			k := slices.Index(lines, "Server output:")
			if k < 0 || k+1 >= len(lines) {
				t.Fatal("no \"Server output:\" section")
			}
			if !strings.HasPrefix(lines[k+1], "Accepted connection from 127.0.0.1, port ") {
				t.Errorf("server output starts %q", lines[k+1])
			}
			var sender, receiver bool
			for _, l := range lines[k:] {
				sender = sender || strings.HasSuffix(l, " sender")
				receiver = receiver || strings.HasSuffix(l, " receiver")
			}
			if !sender || !receiver {
				t.Error("the server's output has no summary rows")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := srv.mustRun(t, tc.args...)
			shape := base
			if tc.shape != nil {
				shape = tc.shape(shape)
			}
			lines := e2eLines(r.stdout)
			if tc.name == "server output" {
				// The server's part comes after the client's summary.
				// The server's part follows the client's summary and
				// a blank line.
				if k := slices.Index(lines, "Server output:"); k > 1 && lines[k-1] == "" {
					lines = append(lines[:k-1:k-1], lines[len(lines)-2:]...)
				}
			}
			e2eCheckText(t, lines, shape)
			if tc.extra != nil {
				tc.extra(t, e2eLines(r.stdout))
			}
			if t.Failed() {
				t.Logf("output:\n%s", r.stdout)
			}
		})
	}
}

// TestTextTitleAndLogfile: -T prefixes every line; --logfile takes the
// report instead of standard output.
func TestTextTitleAndLogfile(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	shape := e2eTextShape{port: srv.port, streams: 1, sendsTCP: true}

	t.Run("title", func(t *testing.T) {
		t.Parallel()
		r := srv.mustRun(t, "-t", "0.5", "-T", "lab 1")
		var lines []string
		for _, l := range e2eLines(r.stdout) {
			rest, ok := strings.CutPrefix(l, "lab 1:  ")
			if !ok {
				t.Errorf("line %q lacks the -T prefix", l)
			}
			lines = append(lines, rest)
		}
		e2eCheckText(t, lines, shape)
	})
	t.Run("logfile", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "wperf.log")
		r := srv.mustRun(t, "-t", "0.5", "--logfile", path)
		if r.stdout != "" {
			t.Errorf("--logfile: stdout should be empty, got %q", r.stdout)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		e2eCheckText(t, e2eLines(string(b)), shape)
	})
}

// ---- --json-stream ----

// TestJSONStream: one JSON object per line, each an event; a start, at
// least one interval, then the end (and the server's output, asked for).
func TestJSONStream(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	r := srv.mustRun(t, "-t", "0.6", "-i", "0.2", "--json-stream", "--get-server-output")
	var events []string
	for _, l := range e2eLines(r.stdout) {
		obj := e2eDecode(t, l)
		ev, _ := obj["event"].(string)
		switch ev {
		case "start", "interval", "end", "error", "server_output_json":
		default:
			t.Errorf("line with event %q: %s", ev, l)
		}
		if _, ok := obj["data"].(map[string]any); !ok && ev != "error" {
			t.Errorf("event %q without an object as data: %s", ev, l)
		}
		events = append(events, ev)
	}
	n := len(events)
	if n < 4 || events[0] != "start" || events[1] != "interval" || events[n-2] != "end" || events[n-1] != "server_output_json" {
		t.Errorf("events %v: want start, intervals, end, server_output_json", events)
	}
	for _, ev := range events[1 : n-2] {
		if ev != "interval" {
			t.Errorf("events %v: only intervals between start and end", events)
			break
		}
	}
	end := e2eDecode(t, e2eLines(r.stdout)[n-2])
	sent, recv := e2eInt(t, end, "data.sum_sent.bytes"), e2eInt(t, end, "data.sum_received.bytes")
	if sent <= 0 || sent != recv {
		t.Errorf("end event: sent %d, received %d", sent, recv)
	}
}

// ---- token authentication ----

// TestTokenAuth: a server with --token admits only clients with the same
// token, and refuses the others with 401 before any upgrade.
func TestTokenAuth(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--token", "s3cret")

	t.Run("right token", func(t *testing.T) {
		t.Parallel()
		srv.mustRun(t, "-t", "0.3", "--token", "s3cret")
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"wrong token", []string{"--token", "guess"}},
		{"no token", nil},
		{"token as prefix", []string{"--token", "s3cre"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e2eRun(srv.args(append([]string{"-t", "0.3"}, tc.args...)...)...)
			if r.code != exitRuntime || !strings.Contains(r.stderr, "authentication failed") {
				t.Errorf("want exit 1 and \"authentication failed\", got %v", r)
			}
			j := e2eRun(srv.args(append([]string{"-t", "0.3", "-J"}, tc.args...)...)...)
			if j.code == exitOK {
				t.Errorf("-J: exit 0 for a refused token")
			}
			doc := e2eDecode(t, j.stdout)
			if msg, _ := doc["error"].(string); !strings.Contains(msg, "authentication failed") {
				t.Errorf("-J: error %q, want it to say authentication failed", msg)
			}
		})
	}

	// By hand: the refusal is an HTTP 401, not a WebSocket close.
	for _, tc := range []struct {
		name, path, auth string
		status           int
	}{
		{"raw without token", "/", "", http.StatusUnauthorized},
		{"raw with wrong token", "/", "Bearer guess", http.StatusUnauthorized},
		{"raw with basic auth", "/", "Basic czNjcmV0", http.StatusUnauthorized},
		{"raw echo without token", "/echo", "", http.StatusUnauthorized},
		{"raw with token", "/", "Bearer s3cret", http.StatusSwitchingProtocols},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := net.DialTimeout("tcp", "127.0.0.1:"+srv.port, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			req := "GET " + tc.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wperf.v1\r\n"
			if tc.auth != "" {
				req += "Authorization: " + tc.auth + "\r\n"
			}
			if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusUnauthorized {
				if resp.Header.Get("Upgrade") != "" || resp.Header.Get("Sec-WebSocket-Accept") != "" {
					t.Errorf("401 carries upgrade headers: %v", resp.Header)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
}

// ---- failures ----

// e2eClosedPort is a loopback port nothing listens on.
func e2eClosedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

// TestClientConnectionRefused: no server → exit 1 with iperf3's words,
// and with -J iperf3's error document.
func TestClientConnectionRefused(t *testing.T) {
	t.Parallel()
	port := e2eClosedPort(t)
	r := e2eRun("-c", "127.0.0.1", "-p", port, "-t", "1")
	if r.code != exitRuntime || !strings.Contains(r.stderr, "unable to connect") || !strings.Contains(r.stderr, "refused") {
		t.Errorf("want exit 1 and \"unable to connect ... refused\", got %v", r)
	}

	j := e2eRun("-c", "127.0.0.1", "-p", port, "-t", "1", "-J")
	if j.code != exitRuntime {
		t.Errorf("-J: exit %d, want 1", j.code)
	}
	doc := e2eDecode(t, j.stdout)
	ours, theirs := e2eKeyPaths(doc), e2eKeyPaths(e2eReference(t, "error.json"))
	if !maps.Equal(ours, theirs) {
		t.Errorf("error document keys %v, iperf3's error.json has %v", slices.Sorted(maps.Keys(ours)), slices.Sorted(maps.Keys(theirs)))
	}
	if msg, _ := doc["error"].(string); !strings.Contains(msg, "unable to connect") {
		t.Errorf("error = %q", msg)
	}
	if c := e2eList(t, doc, "start.connected"); len(c) != 0 {
		t.Errorf("start.connected = %v, want []", c)
	}
	if iv := e2eList(t, doc, "intervals"); len(iv) != 0 {
		t.Errorf("intervals = %v, want []", iv)
	}
	if end, ok := doc["end"].(map[string]any); !ok || len(end) != 0 {
		t.Errorf("end = %#v, want {}", doc["end"])
	}

	s := e2eRun("-c", "127.0.0.1", "-p", port, "-t", "1", "--json-stream")
	lines := e2eLines(s.stdout)
	last := e2eDecode(t, lines[len(lines)-1])
	if msg, _ := last["data"].(string); s.code != exitRuntime || last["event"] != "error" || !strings.Contains(msg, "unable to connect") {
		t.Errorf("--json-stream: want exit 1 and an error event last, got %v", s)
	}
}

// TestE2EIPv6Loopback: a test over ::1, with -6.
func TestE2EIPv6Loopback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	srv := startE2EServerOn(t, ln)
	doc := e2eDecode(t, srv.mustRun(t, "-6", "-n", "4M", "-J").stdout)
	e2eCheckDoc(t, doc, e2eShape{dir: dirUpload, parallel: 1, target: 4 << 20})
	for _, c := range e2eList(t, doc, "start.connected") {
		if h, _ := e2eGet(c, "remote_host"); h != "::1" {
			t.Errorf("connected to %v, want ::1", h)
		}
	}
	if !strings.Contains(srv.out.String(), "[::1]:") {
		t.Errorf("the server's log does not show the IPv6 peer:\n%s", srv.out.String())
	}
}

// TestServerCaps: tests beyond the server's limits are refused with a
// reason that names the limit, and exit 1.
func TestServerCaps(t *testing.T) {
	t.Parallel()
	t.Run("max clients", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t, "--max-clients", "1")
		first := e2eStart(srv.args("-t", "3")...)
		e2eWaitFor(t, 10*time.Second, "the first test to start", func() bool {
			return strings.Contains(first.out.String(), "connected to")
		})
		r := e2eRun(srv.args("-t", "0.5")...)
		if r.code != exitRuntime || !strings.Contains(r.stderr, "busy") {
			t.Errorf("second client: want exit 1 and \"busy\", got %v", r)
		}
		j := e2eRun(srv.args("-t", "0.5", "-J")...)
		if msg, _ := e2eDecode(t, j.stdout)["error"].(string); j.code != exitRuntime || !strings.Contains(msg, "busy") {
			t.Errorf("second client, -J: exit %d, error %q", j.code, msg)
		}
		if res := first.wait(t, 20*time.Second); res.code != exitOK {
			t.Errorf("the first test suffered: %v", res)
		}
		srv.mustRun(t, "-t", "0.3") // the slot is free again
	})
	for _, tc := range []struct {
		name        string
		server      []string
		client      []string
		mention     []string
		allowedArgs []string // a request just within the limit
	}{
		{"max duration", []string{"--max-duration", "5"}, []string{"-t", "10"}, []string{"--max-duration", "5 s"}, []string{"-t", "0.3", "-O", "0.2"}},
		{"max duration with omit", []string{"--max-duration", "5"}, []string{"-t", "3", "-O", "3"}, []string{"--max-duration"}, nil},
		{"max parallel", []string{"--max-parallel", "2"}, []string{"-t", "0.3", "-P", "3"}, []string{"--max-parallel", "2"}, []string{"-t", "0.3", "-P", "2"}},
		{"max parallel, bidir", []string{"--max-parallel", "2"}, []string{"-t", "0.3", "-P", "3", "--bidir"}, []string{"--max-parallel"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startE2EServer(t, tc.server...)
			r := e2eRun(srv.args(tc.client...)...)
			if r.code != exitRuntime || !strings.Contains(r.stderr, "refused") {
				t.Errorf("want exit 1 and a refusal, got %v", r)
			}
			for _, m := range tc.mention {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("refusal %q does not mention %q", r.stderr, m)
				}
			}
			if tc.allowedArgs != nil {
				srv.mustRun(t, tc.allowedArgs...)
			}
			if !strings.Contains(srv.out.String(), "refused 127.0.0.1:") {
				t.Errorf("the server did not log the refusal:\n%s", srv.out.String())
			}
		})
	}
}

// ---- server behaviours ----

// TestServerOneOff: with -1 the server returns after one test.
func TestServerOneOff(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-1")
	srv.mustRun(t, "-t", "0.3")
	if !srv.wait(10 * time.Second) {
		t.Fatal("-1: serve still running 10 s after its test")
	}
	if srv.err != nil {
		t.Errorf("-1: serve returned %v", srv.err)
	}
}

var e2eLogRE = regexp.MustCompile(`^(\S+) 127\.0\.0\.1:\d+ (upload|download|bidir) P=(\d+) (\d+\.\d\d) sec +(\d+(\.\d+)? [KMGT]?Bytes) +\d+(\.\d+)? [KMGT]?bits/sec$`)

// TestServerLog: one line per test with peer, mode, streams, duration,
// bytes and rate; with -J one JSON document per line.
func TestServerLog(t *testing.T) {
	t.Parallel()
	t.Run("text", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t)
		srv.mustRun(t, "-t", "0.3")
		srv.mustRun(t, "-n", "5M", "-R")
		srv.mustRun(t, "-n", "2M", "--bidir", "-P", "2")
		lines := e2eLines(srv.out.String())
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "Server listening on 127.0.0.1:"+srv.port) {
			t.Fatalf("want a listening line and one line per test, got:\n%s", srv.out.String())
		}
		want := []struct{ mode, streams, bytes string }{
			{"upload", "1", ""}, {"download", "1", "5.00 MBytes"}, {"bidir", "2", "4.00 MBytes"},
		}
		for k, w := range want {
			l := lines[k+1]
			m := e2eLogRE.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("log line %q: want time, peer, mode, P=, seconds, bytes, rate", l)
				continue
			}
			if _, err := time.Parse(time.RFC3339, m[1]); err != nil {
				t.Errorf("log line %q: time: %v", l, err)
			}
			if m[2] != w.mode || m[3] != w.streams || (w.bytes != "" && m[5] != w.bytes) {
				t.Errorf("log line %q: want %s, P=%s, %q", l, w.mode, w.streams, w.bytes)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		srv := startE2EServer(t, "-J")
		srv.mustRun(t, "-t", "0.3")
		srv.mustRun(t, "-n", "5M", "-R")
		lines := e2eLines(srv.out.String())
		if len(lines) != 2 {
			t.Fatalf("want one JSON line per test, got:\n%s", srv.out.String())
		}
		up, down := e2eDecode(t, lines[0]), e2eDecode(t, lines[1])
		e2eHasReferenceKeys(t, up, "server-side.json", "")
		if got := e2eInt(t, down, "end.sum_sent.bytes"); got != 5<<20 || !e2eBool(t, down, "end.sum_sent.sender") {
			t.Errorf("-R: the server's log says it sent %d bytes, want %d", got, 5<<20)
		}
		if got := e2eInt(t, up, "end.sum_received.bytes"); got <= 0 || e2eBool(t, up, "end.sum_received.sender") {
			t.Errorf("upload: the server's log says it received %d bytes as sender=%v", got, e2eBool(t, up, "end.sum_received.sender"))
		}
	})
}

// e2eRawTest is a test started by hand over the wire protocol, as a
// third-party client would, left for the test to finish or abandon.
type e2eRawTest struct {
	ctrl    *wsConn
	streams []*wsConn
}

// e2eRawStart asks for req, opens its upload streams and waits for the
// server's start.
func e2eRawStart(t *testing.T, port string, req testRequest) *e2eRawTest {
	t.Helper()
	dial := func() *wsConn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := dialWS(ctx, "ws://127.0.0.1:"+port+"/", dialOptions{subprotocols: []string{subprotocolV1}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		return c
	}
	rt := &e2eRawTest{ctrl: dial()}
	t.Cleanup(rt.drop)
	if err := sendJSON(rt.ctrl, req); err != nil {
		t.Fatal(err)
	}
	rt.expect(t, msgAccept)
	for i := range req.streamCount() {
		c := dial()
		rt.streams = append(rt.streams, c)
		if err := sendJSON(c, streamHello{Type: msgStream, Cookie: req.Cookie, ID: i + 1, Direction: streamUp}); err != nil {
			t.Fatal(err)
		}
	}
	rt.expect(t, msgStart)
	return rt
}

func (rt *e2eRawTest) expect(t *testing.T, kind string) {
	t.Helper()
	rt.ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := rt.ctrl.ReadMessage(nil)
	if err != nil {
		t.Fatalf("waiting for %q: %v", kind, err)
	}
	if got, _ := messageType(msg); got != kind {
		t.Fatalf("got %s, want a %q message", msg, kind)
	}
}

// drop drops every connection without a close handshake.
func (rt *e2eRawTest) drop() {
	rt.ctrl.Abort()
	for _, c := range rt.streams {
		c.Abort()
	}
}

// TestServerVanishedClient: a client that goes silent, or whose
// connections drop, mid-test is noticed within --idle-timeout, logged,
// and its slot freed for the next client.
func TestServerVanishedClient(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"silent", "dropped"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			srv := startE2EServer(t, "--idle-timeout", "1", "--max-clients", "1")
			rt := e2eRawStart(t, srv.port, testRequest{
				Type: msgTest, Version: 1, Cookie: newCookie(), Direction: dirUpload, Protocol: "tcp",
				Time: 8, Length: 64 << 10, Parallel: 1, Interval: 1,
			})
			payload := make([]byte, 64<<10)
			for range 4 {
				if err := rt.streams[0].WriteMessage(opBinary, payload); err != nil {
					t.Fatal(err)
				}
			}
			gone := time.Now()
			if how == "dropped" {
				rt.drop()
			}
			e2eWaitFor(t, 8*time.Second, "the server to log the failed test", func() bool {
				return strings.Contains(srv.out.String(), " error: ")
			})
			// --idle-timeout 1, plus room for a busy machine.
			if took := time.Since(gone); took > 4*time.Second {
				t.Errorf("the server noticed after %v", took)
			}
			r := e2eRun(srv.args("-t", "0.3")...)
			if r.code != exitOK {
				t.Errorf("the next client (--max-clients 1): %v", r)
			}
			if how == "silent" {
				// Come back and answer the server's close, so its
				// goodbye does not wait out closeWait at shutdown.
				rt.ctrl.Close(statusNormal, "")
			}
		})
	}
}

// TestServerShutdownDuringTest: ending the server mid-test ends the test
// at once; the client fails with the reason and serve returns nil.
func TestServerShutdownDuringTest(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	cl := e2eStart(srv.args("-t", "20", "-i", "0.2", "-P", "2")...)
	e2eWaitFor(t, 10*time.Second, "the first interval", func() bool {
		return strings.Contains(cl.out.String(), " sec ")
	})
	srv.cancel()
	stopped := time.Now()
	if !srv.wait(10 * time.Second) {
		t.Fatal("serve still running 10 s after shutdown began")
	}
	if took := time.Since(stopped); took > 4*time.Second {
		t.Errorf("serve took %v to shut down", took)
	}
	if srv.err != nil {
		t.Errorf("serve returned %v, want nil", srv.err)
	}
	r := cl.wait(t, 10*time.Second)
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("the client took %v to give up", took)
	}
	if r.code != exitRuntime || !strings.Contains(r.stderr, "shutting down") {
		t.Errorf("client: want exit 1 and the server's reason, got %v", r)
	}
}

// ---- Ctrl-C, on the real binary ----

// TestCtrlC: SIGINT mid-test stops both ends' senders, prints the
// summary and exits 1 with "interrupt", as iperf3 does.
func TestCtrlC(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("there is no SIGINT to send a process on Windows")
	}
	bin := wperfBinary(t) // lab_test.go builds it once per run
	for _, tc := range []struct {
		name string
		args []string
	}{{"upload", nil}, {"reverse", []string{"-R"}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startE2EServer(t)
			var out, errOut e2eBuffer
			cmd := exec.Command(bin, srv.args(append([]string{"-t", "30", "-i", "0.5"}, tc.args...)...)...)
			cmd.Stdout, cmd.Stderr = &out, &errOut
			began := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			t.Cleanup(func() {
				select {
				case <-exited:
				default:
					cmd.Process.Kill()
					<-exited
				}
			})
			e2eWaitFor(t, 10*time.Second, "the test to start", func() bool {
				return strings.Contains(out.String(), "connected to")
			})
			time.Sleep(time.Until(began.Add(1500 * time.Millisecond)))
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled := time.Now()
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10 s after SIGINT; output:\n%s", out.String())
			}
			if took := time.Since(signalled); took > 5*time.Second {
				t.Errorf("took %v to exit after SIGINT", took)
			}
			r := e2eResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
			if r.code != exitRuntime || !strings.Contains(r.stderr, "interrupt") {
				t.Errorf("want exit 1 and \"interrupt\", got %v", r)
			}
			var sender, receiver string
			for _, l := range e2eLines(r.stdout) {
				if strings.HasSuffix(l, " sender") {
					sender = l
				}
				if strings.HasSuffix(l, " receiver") {
					receiver = l
				}
			}
			if sender == "" || receiver == "" {
				t.Fatalf("no summary after SIGINT: %v", r)
			}
			// The summary (and the server's own record) end near the
			// interrupt, not at -t 30.
			for _, row := range []string{sender, receiver} {
				m := e2eRowRE.FindStringSubmatch(row)
				if end, err := strconv.ParseFloat(m[4], 64); err != nil || end > 15 {
					t.Errorf("summary row %q: the test should have ended at the interrupt", row)
				}
			}
			e2eWaitFor(t, 5*time.Second, "the server to log the test", func() bool {
				return e2eLogRE.MatchString(e2eLines(srv.out.String())[len(e2eLines(srv.out.String()))-1])
			})
			logged := e2eLines(srv.out.String())
			m := e2eLogRE.FindStringSubmatch(logged[len(logged)-1])
			if secs, _ := strconv.ParseFloat(m[4], 64); secs > 15 {
				t.Errorf("the server's record %q: it kept going after the interrupt", m[0])
			}
		})
	}
}

// TestCtrlCWhileConnecting: a server that accepts TCP but never answers
// the handshake must not hold the client for the whole connect timeout
// once the user presses Ctrl-C.
func TestCtrlCWhileConnecting(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("there is no SIGINT to send a process on Windows")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	var out, errOut e2eBuffer
	cmd := exec.Command(wperfBinary(t), "-c", "127.0.0.1", "-p", port, "--connect-timeout", "30")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	time.Sleep(time.Second)
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("still connecting 10 s after SIGINT (connect timeout 30 s)")
	}
	if code := cmd.ProcessState.ExitCode(); code != exitRuntime || !strings.Contains(errOut.String(), "interrupt") {
		t.Errorf("want exit 1 and \"interrupt\", got exit %d: %s", code, errOut.String())
	}
}

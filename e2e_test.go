package main

// e2e_test.go is the harness of the end-to-end tests: a wperf -s running
// in this process on a loopback port, wperf client runs in-process (to the
// end, or in the background), and readers for the -J documents they print,
// including the comparison of key paths with iperf3 3.12's own output in
// testdata/iperf3.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
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
		s.err = serve(ctx, cfg, ln, &lineWriter{w: s.out, title: cfg.title, stamps: cfg.timestamps})
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

// e2eMeasured says whether a key of iperf3's output holds what only a
// measurement knows: TCP_INFO and the congestion algorithm's name.
func e2eMeasured(path string) bool {
	switch path[strings.LastIndexByte(path, '.')+1:] {
	case "retransmits", "snd_cwnd", "snd_wnd", "rtt", "rttvar", "pmtu",
		"max_snd_cwnd", "max_snd_wnd", "max_rtt", "min_rtt", "mean_rtt",
		"sender_tcp_congestion", "receiver_tcp_congestion":
		return true
	}
	return false
}

// e2eMayLack says which of iperf3's keys wperf may leave out, and why.
func e2eMayLack(path string) bool {
	// TCP_INFO and the congestion algorithm's name: only Linux tells
	// wperf these, and where it cannot measure them it leaves the keys
	// out rather than report zeros.
	return e2eMeasured(path) && !tcpInfoAvailable
}

// e2eHasReferenceKeys checks that doc has every key path of iperf3's
// output ref (under prefix in doc, as for server_output_json).
func e2eHasReferenceKeys(t *testing.T, doc any, ref, prefix string) {
	t.Helper()
	e2eHasKeysOf(t, doc, ref, prefix, func(string) bool { return true })
}

// e2eHasMeasuredKeys checks that doc has those key paths of iperf3's
// output ref that only a measurement fills in (e2eMeasured): a real run
// must have found what the golden report tests give their views by hand.
func e2eHasMeasuredKeys(t *testing.T, doc any, ref string) {
	t.Helper()
	e2eHasKeysOf(t, doc, ref, "", e2eMeasured)
}

func e2eHasKeysOf(t *testing.T, doc any, ref, prefix string, which func(path string) bool) {
	t.Helper()
	ours := e2eKeyPaths(doc)
	var missing []string
	for p := range e2eKeyPaths(e2eReference(t, ref)) {
		if which(p) && !ours[prefix+p] && !e2eMayLack(p) {
			missing = append(missing, prefix+p)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("keys of iperf3's %s missing here:\n  %s", ref, strings.Join(missing, "\n  "))
	}
}

// ---- text reports ----

func e2eLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// e2eRowRE is a row of a client's text report: id (and --bidir role),
// interval, transfer, rate.
var e2eRowRE = regexp.MustCompile(`^\[( *\d+|SUM)\](\[[TR]X-C\])? +(\d+\.\d\d)-(\d+\.\d\d) +sec +\d+(\.\d+)? [KMGT]?Bytes +\d+(\.\d+)? ([KMGT]?(bits|Bytes))/sec`)

// e2eConnectedRE is a stream's connected line: its id, and the server's port.
var e2eConnectedRE = regexp.MustCompile(`^\[ *(\d+)\] local 127\.0\.0\.1 port \d+ connected to 127\.0\.0\.1 port (\d+)$`)

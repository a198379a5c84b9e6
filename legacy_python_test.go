package main

// legacy_python_test.go runs the original wperf's own Python client and
// server (testdata/legacy) against wperf, both ways.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

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

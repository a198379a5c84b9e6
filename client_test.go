package main

// client_test.go runs the client's side of things end to end on
// loopback: a server that wants a token, no server at all (in text, -J
// and --json-stream), and Ctrl-C on the built binary, mid-test and while
// still connecting.

import (
	"bufio"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ---- token authentication ----

// TestTokenAuth: a server with --token admits only clients with the same
// token; the others fail with "authentication failed", in text and in -J.
// (server_test.go's TestServerTokenAuth checks the refusal on the wire.)
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
	hint := "is `wperf -s` running on 127.0.0.1, port " + port + "?"
	if r.code != exitRuntime || !strings.Contains(r.stderr, "unable to connect") || !strings.Contains(r.stderr, "refused") || !strings.Contains(r.stderr, hint) {
		t.Errorf("want exit 1 and \"unable to connect ... refused: %s\", got %v", hint, r)
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

// ---- peers that are not wperf servers ----

// TestClientAgainstNonWperfServers: an iperf3 server and a web server
// each get one line on standard error that says they are not wperf
// servers, within firstAnswerWait, and never the web server's page.
func TestClientAgainstNonWperfServers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		start func(t *testing.T) string // the peer's port
		want  string
	}{
		{"iperf3 -s", startIperf3Server, "accepted TCP but answered the WebSocket upgrade with bytes that are not HTTP"},
		{"web server", startWebServer, "server answered 404 Not Found to the WebSocket upgrade: it is not a wperf server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			port := tc.start(t)
			start := time.Now()
			r := e2eRun("-c", "127.0.0.1", "-p", port, "-t", "1")
			took := time.Since(start)
			lines := e2eLines(r.stderr)
			if r.code != exitRuntime || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || strings.Contains(r.stderr, "<") {
				t.Errorf("want exit 1 and one line with %q, got %v", tc.want, r)
			}
			if took > firstAnswerWait+time.Second {
				t.Errorf("the verdict took %v, want it within %v", took, firstAnswerWait)
			}
		})
	}
}

// startIperf3Server runs iperf3 -s -1 on a free loopback port until the
// test ends. It is ready once it says so: a probe connection would be
// the one test -1 allows.
func startIperf3Server(t *testing.T) string {
	labNeeds(t, "iperf3")
	port := e2eClosedPort(t)
	cmd := exec.Command("iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", port, "--forceflush")
	out, err := cmd.StdoutPipe()
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
	ready := make(chan bool, 1)
	go func() {
		defer close(ready)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Server listening on") {
				ready <- true
				io.Copy(io.Discard, out)
				return
			}
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("iperf3 -s ended without listening")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("iperf3 -s did not say it listens within 5 s")
	}
	return port
}

// startWebServer serves an HTML 404 page on every path, as a web server
// that knows nothing of wperf would.
func startWebServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1>\n<p>nothing here</p></body></html>\n")
	}))
	t.Cleanup(srv.Close)
	return strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
}

// ---- Ctrl-C, on the real binary ----

// TestCtrlC: SIGINT mid-test stops both ends' senders, prints the
// summary and exits 1 with "interrupt", as iperf3 does.
func TestCtrlC(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("there is no SIGINT to send a process on Windows")
	}
	bin := wperfBinary(t) // lab_helpers_test.go builds it once per run
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
			if m[9] != "the client stopped it (Ctrl-C)" {
				t.Errorf("the server's record %q: want it cut short by the client", m[0])
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
	cmd := exec.Command(wperfBinary(t), "-c", "127.0.0.1", "-p", port, "--connect-timeout", "30s")
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

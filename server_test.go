package main

// server_test.go runs the server's side of things end to end on
// loopback: its caps and the refusals that name them, token checks at the
// HTTP level, -1, its log, a client that vanishes mid-test (driven by hand
// over the wire protocol, as a third-party client would), and shutdown
// during a test.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

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

// TestServerTokenAuth: a server with --token refuses a client without the
// same token with an HTTP 401, not a WebSocket close, before any upgrade.
// (client_test.go's TestTokenAuth is the same from the client's side.)
func TestServerTokenAuth(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--token", "s3cret")
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

var e2eLogRE = regexp.MustCompile(`^(\S+) 127\.0\.0\.1:\d+ (upload|download|bidir) P=(\d+) (\d+\.\d\d) sec +(\d+(\.\d+)? [KMGT]?Bytes) +\d+(\.\d+)? [KMGT]?bits/sec((?: \S+=\S+)*)(?: cut short(?: by an error)?: (.*))?$`)

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
		want := []struct{ mode, streams, bytes, fields string }{
			{"upload", "1", "", " proto=tcp time=0.3 omit=0"},
			{"download", "1", "5.00 MBytes", " proto=tcp bytes=5242880 omit=0"},
			{"bidir", "2", "4.00 MBytes", " proto=tcp bytes=2097152 omit=0"},
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
			if !strings.HasPrefix(m[8], w.fields) || tcpInfoAvailable != strings.Contains(m[8], " retr=") || m[9] != "" {
				t.Errorf("log line %q: want the request%q, retransmits where TCP_INFO is, and no cut short", l, w.fields)
			}
			if dirs := strings.Contains(m[8], " up=2.00MBytes down=2.00MBytes"); dirs != (w.mode == "bidir") {
				t.Errorf("log line %q: per-direction totals %v, want them for --bidir only", l, dirs)
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

// e2eRawDial opens a wperf.v1 connection to a loopback server, as every
// connection of a raw test does.
func e2eRawDial(t *testing.T, port string) *wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, "ws://127.0.0.1:"+port+"/", dialOptions{subprotocols: []string{subprotocolV1}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// e2eRawStart asks for req, opens its upload streams and waits for the
// server's start.
func e2eRawStart(t *testing.T, port string, req testRequest) *e2eRawTest {
	t.Helper()
	dial := func() *wsConn { return e2eRawDial(t, port) }
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
	lines := e2eLines(srv.out.String())
	if len(lines) != 3 || !strings.HasSuffix(lines[1], " server shutting down (1 tests cut short)") {
		t.Fatalf("server log: want the listening line, the shutdown and the test's line, got:\n%s", srv.out.String())
	}
	if m := e2eLogRE.FindStringSubmatch(lines[2]); m == nil || m[9] != "server shutting down" {
		t.Errorf("the test's log line %q: want it cut short by the shutdown, with that reason only", lines[2])
	}
}

// TestServerClosesNonHTTPClients: a client whose first bytes cannot
// begin an HTTP request is closed at once, with one log line naming its
// address, while an HTTP client's first bytes pass.
func TestServerClosesNonHTTPClients(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	cases := []struct {
		name   string
		first  string
		closed bool
	}{
		{"iperf3's cookie", "blzh6grtc5ttt4y3mpwxq2jcs4hm3cuqwz5a\x00", true},
		{"SSH banner", "SSH-2.0-OpenSSH_9.6\r\n", true},
		{"lower-case method", "get / HTTP/1.1\r\n", true},
		{"HTTP request line", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", net.JoinHostPort(srv.host, srv.port))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(3 * time.Second))
			io.WriteString(nc, tc.first)
			answer, err := io.ReadAll(io.LimitReader(nc, 1<<10))
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatalf("no answer and no close within 3 s (got %q)", answer)
			case tc.closed && len(answer) > 0:
				t.Errorf("closed after an answer %q, want a bare close", answer)
			case !tc.closed && !strings.HasPrefix(string(answer), "HTTP/1.1 200"):
				t.Errorf("answer %q, want HTTP/1.1 200", answer)
			}
		})
	}
	log := srv.out.String()
	if n := strings.Count(log, "not an HTTP request"); n != 3 {
		t.Errorf("server log has %d lines about non-HTTP clients, want 3:\n%s", n, log)
	}
	if !strings.Contains(log, `closed 127.0.0.1: its first bytes "blzh6grt" are not an HTTP request`) {
		t.Errorf("server log does not name the address and the first bytes:\n%s", log)
	}
}

// TestServerAgainstIperf3Client: iperf3 -c at a wperf server fails within
// a few seconds instead of hanging, and the server says why in its log.
func TestServerAgainstIperf3Client(t *testing.T) {
	t.Parallel()
	labNeeds(t, "iperf3")
	srv := startE2EServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "iperf3", "-c", srv.host, "-p", srv.port, "-t", "1").CombinedOutput()
	took := time.Since(start)
	if err == nil || ctx.Err() != nil || took > 3*time.Second {
		t.Errorf("iperf3 -c: %v after %v, want a failure within 3 s\n%s", err, took, out)
	}
	e2eWaitFor(t, time.Second, "the server's log line", func() bool {
		return strings.Contains(srv.out.String(), "are not an HTTP request (an iperf3 client?)")
	})
}

func TestMayStartRequest(t *testing.T) {
	cases := []struct {
		first string
		want  bool
	}{
		{"G", true},
		{"GET / HTTP/1.1", true},
		{"OPTIONS * HTTP/1.1", true},
		{"UPDATEREDIRECTREF /", true},
		{"\x16\x03\x01\x02\x00", true}, // a TLS ClientHello: net/http answers it
		{" GET", false},
		{"get /", false},
		{"abcdefgh", false},
		{"SSH-2.0", false},
		{"\x00\x00\x00\x01", false},
		{strings.Repeat("A", maxMethodLen+1), false},
	}
	for _, tc := range cases {
		if got := mayStartRequest([]byte(tc.first)); got != tc.want {
			t.Errorf("mayStartRequest(%q) = %v, want %v", tc.first, got, tc.want)
		}
	}
}

// TestServerShutdownLogJSON: with -J the shutdown is an event line, and
// the test it cuts short names the shutdown as its error, not the
// closed sockets it left behind.
func TestServerShutdownLogJSON(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "-J")
	cl := e2eStart(srv.args("-t", "20", "-i", "0.2")...)
	e2eWaitFor(t, 10*time.Second, "the first interval", func() bool {
		return strings.Contains(cl.out.String(), " sec ")
	})
	srv.cancel()
	if !srv.wait(10 * time.Second) {
		t.Fatal("serve still running 10 s after shutdown began")
	}
	cl.wait(t, 10*time.Second)
	lines := e2eLines(srv.out.String())
	if len(lines) != 2 {
		t.Fatalf("want the shutdown event and the test's document, got:\n%s", srv.out.String())
	}
	ev := e2eDecode(t, lines[0])
	if ev["event"] != "shutdown" || e2eInt(t, ev, "tests_cut_short") != 1 {
		t.Errorf("first line %s: want the shutdown event with 1 test cut short", lines[0])
	}
	if doc := e2eDecode(t, lines[1]); doc["error"] != "server shutting down" {
		t.Errorf("the test's error is %q, want \"server shutting down\"", doc["error"])
	}
}

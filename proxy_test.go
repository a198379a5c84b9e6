package main

// proxy_test.go runs tests through a CONNECT proxy written here (with
// and without basic authentication, plain and TLS inside), checks the
// choice of proxy from the environment in a child process, the reverse
// proxy's signs, and the keep-alive pings against a relay that drops
// quiet connections as nginx does.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connectProxy is a small HTTP CONNECT proxy on loopback. With auth set
// it wants that Proxy-Authorization; it counts the tunnels it opened.
type connectProxy struct {
	ln      net.Listener
	auth    string
	tunnels atomic.Int32
	mu      sync.Mutex
	targets []string
}

func startConnectProxy(t *testing.T, auth string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln, auth: auth}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *connectProxy) url(user string) string {
	if user != "" {
		user += "@"
	}
	return "http://" + user + p.ln.Addr().String()
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	switch {
	case req.Method != http.MethodConnect:
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	case p.auth != "" && req.Header.Get("Proxy-Authorization") != p.auth:
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"lab\"\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	p.mu.Lock()
	p.targets = append(p.targets, req.Host)
	p.mu.Unlock()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	c.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// proxyLoopback lets tests send loopback targets through a proxy, which
// wperf never does otherwise. Tests that use it must not be parallel.
func proxyLoopback(t *testing.T) {
	proxyAlsoLoopback = true
	t.Cleanup(func() { proxyAlsoLoopback = false })
}

// TestProxyEndToEnd runs tests through the CONNECT proxy: every
// connection of a test goes through it, plain and TLS, with basic
// authentication; a wrong password is exit 1 with the proxy's status line.
func TestProxyEndToEnd(t *testing.T) {
	proxyLoopback(t)
	srv := startE2EServer(t)
	tlsSrv, fp := startE2ETLSServer(t, "--tls")
	open := startConnectProxy(t, "")
	locked := startConnectProxy(t, "Basic "+base64.StdEncoding.EncodeToString([]byte("wperf:s3cr:et")))

	t.Run("plain, every connection", func(t *testing.T) {
		// Without latency probes, which would add a tunnel each.
		r := srv.mustRun(t, "-t", "0.3", "-P", "3", "--bidir", "--proxy", open.url(""), "-J", "--no-latency")
		if n := open.tunnels.Load(); n != 1+6 {
			t.Errorf("%d tunnels, want 7 (control, 3 streams each way)", n)
		}
		doc := e2eDecode(t, r.stdout)
		for path, want := range map[string]string{
			"start.wperf.proxy.kind":    "forward",
			"start.wperf.proxy.address": open.ln.Addr().String(),
			"start.wperf.proxy.source":  "--proxy",
		} {
			if got, _ := e2eGet(doc, path); got != want {
				t.Errorf("%s = %v, want %q", path, got, want)
			}
		}
	})
	t.Run("TLS inside the tunnel, with authentication", func(t *testing.T) {
		r := tlsSrv.mustRunURL(t, tlsSrv.wss(), "--fingerprint", fp, "-t", "0.3", "-R", "--proxy", locked.url("wperf:s3cr%3Aet"), "--no-latency")
		if !strings.Contains(r.stdout, "Through HTTP proxy "+locked.ln.Addr().String()) {
			t.Errorf("no proxy line in:\n%s", r.stdout)
		}
		if locked.tunnels.Load() != 2 {
			t.Errorf("%d tunnels, want 2", locked.tunnels.Load())
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		r := e2eRun(srv.args("-t", "0.3", "--proxy", locked.url("wperf:guess"))...)
		if r.code != exitRuntime || !strings.Contains(r.stderr, "407 Proxy Authentication Required") {
			t.Errorf("want exit 1 with the proxy's 407, got %v", r)
		}
	})
	t.Run("no password", func(t *testing.T) {
		r := e2eRun(srv.args("-t", "0.3", "--proxy", locked.url(""))...)
		if r.code != exitRuntime || !strings.Contains(r.stderr, "HTTP/1.1 407") {
			t.Errorf("want exit 1 with the proxy's 407, got %v", r)
		}
	})
	t.Run("no proxy there", func(t *testing.T) {
		r := e2eRun(srv.args("-t", "0.3", "--proxy", "http://127.0.0.1:"+e2eClosedPort(t))...)
		if r.code != exitRuntime || !strings.Contains(r.stderr, "proxy 127.0.0.1:") {
			t.Errorf("want exit 1 naming the proxy, got %v", r)
		}
	})
}

// TestConnectTunnelRequest: the CONNECT request is RFC 7231 §4.3.6's,
// with RFC 7617's credentials (its own example), and bytes the proxy
// passes on right behind its answer are not lost.
func TestConnectTunnelRequest(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	got := make(chan string, 1)
	go func() {
		defer server.Close()
		req, err := http.ReadRequest(bufio.NewReader(server))
		if err != nil {
			got <- err.Error()
			return
		}
		got <- fmt.Sprintf("%s %s %s %s", req.Method, req.RequestURI, req.Host, req.Header.Get("Proxy-Authorization"))
		io.WriteString(server, "HTTP/1.1 200 OK\r\n\r\nearly")
	}()
	proxy, _ := url.Parse("http://Aladdin:open%20sesame@proxy:3128")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tunnel, err := connectTunnel(ctx, client, "server.example:443", proxy)
	if err != nil {
		t.Fatal(err)
	}
	want := "CONNECT server.example:443 server.example:443 Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
	if g := <-got; g != want {
		t.Errorf("proxy saw %q, want %q", g, want)
	}
	tunnel.SetReadDeadline(time.Now().Add(5 * time.Second))
	early, _ := io.ReadAll(tunnel)
	if string(early) != "early" {
		t.Errorf("read %q through the tunnel, want the early bytes", early)
	}
}

// TestProxyFromEnvironment runs chooseProxy in a child process with
// proxy variables set (net/http reads them once per process): ws:// takes
// HTTP_PROXY, wss:// HTTPS_PROXY, NO_PROXY and loopback go direct,
// --proxy overrides the environment, and a bad variable is an error.
func TestProxyFromEnvironment(t *testing.T) {
	t.Parallel()
	if os.Getenv("WPERF_PROXY_CHILD") != "" {
		t.Skip("the child's own run")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyChoiceChild$", "-test.v")
	cmd.Env = append(os.Environ(), "WPERF_PROXY_CHILD=1", "REQUEST_METHOD=",
		"HTTP_PROXY=http://plain.proxy:3128", "HTTPS_PROXY=secure.proxy:8080", "NO_PROXY=.internal.example,198.18.0.0/15",
		"http_proxy=", "https_proxy=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS: TestProxyChoiceChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestProxyChoiceChild(t *testing.T) {
	if os.Getenv("WPERF_PROXY_CHILD") == "" {
		t.Skip("runs as TestProxyFromEnvironment's child")
	}
	explicit, _ := parseProxyURL("http://mine:3128")
	for _, c := range []struct {
		target   string
		explicit *url.URL
		want     string // "proxy host (source)", or "" for direct
	}{
		{"ws://server.example:8765/", nil, "plain.proxy:3128 (HTTP_PROXY)"},
		{"wss://server.example/", nil, "secure.proxy:8080 (HTTPS_PROXY)"},
		{"wss://server.example/", explicit, "mine:3128 (--proxy)"},
		{"ws://a.internal.example/", nil, ""},
		{"ws://198.18.3.4:8765/", nil, ""},
		{"ws://127.0.0.1:8765/", nil, ""},
		{"wss://localhost/", explicit, ""},
	} {
		u, err := parseTarget(c.target, 8765, false)
		if err != nil {
			t.Fatal(err)
		}
		r, err := chooseProxy(u, c.explicit)
		got := ""
		if r != nil {
			got = r.proxy.Host + " (" + r.source + ")"
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.target, got, err, c.want)
		}
	}
}

func TestForwardedBy(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{}, ""},
		{http.Header{"X-Forwarded-For": {"198.18.20.1"}}, "X-Forwarded-For: 198.18.20.1"},
		{http.Header{"Via": {"1.1 proxy.example"}, "X-Real-Ip": {"198.18.20.1"}}, "X-Real-IP: 198.18.20.1"},
		{http.Header{"Forwarded": {"for=198.18.20.1"}, "Via": {"1.1 a"}}, "Forwarded: for=198.18.20.1"},
		{http.Header{"Via": {"1.1 a\x1b[31m"}}, "Via: 1.1 a[31m"},
	} {
		if got := forwardedBy(c.h); got != c.want {
			t.Errorf("forwardedBy(%v) = %q, want %q", c.h, got, c.want)
		}
	}
}

// idleRelay forwards loopback TCP connections to target and drops any
// that carries no byte, either way, for idle: the way nginx's
// proxy_read_timeout treats a WebSocket it passes on.
func idleRelay(t *testing.T, target string, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go relayIdle(c, target, idle)
		}
	}()
	return ln.Addr().String()
}

func relayIdle(c net.Conn, target string, idle time.Duration) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	copyAll := func(dst, src net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	done := make(chan struct{}, 2)
	go func() { copyAll(up, c); done <- struct{}{} }()
	go func() { copyAll(c, up); done <- struct{}{} }()
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > idle {
				return // closes both ends
			}
		}
	}
}

// TestKeepAlive: a test longer than a relay's idle timeout passes when
// the keep-alive pings come more often than the timeout, and loses its
// control connection when they do not. (It sets keepAlivePeriod, so it
// is not parallel.)
func TestKeepAlive(t *testing.T) {
	srv := startE2EServer(t)
	relay := idleRelay(t, net.JoinHostPort(srv.host, srv.port), 900*time.Millisecond)
	saved := keepAlivePeriod
	t.Cleanup(func() { keepAlivePeriod = saved })

	keepAlivePeriod = "150ms"
	for _, extra := range [][]string{nil, {"-R"}, {"-u", "--udp-transport", "ws", "-b", "8K", "-l", "100"}} {
		r := e2eRun(append([]string{"-c", relay, "-t", "2", "-i", "0"}, extra...)...)
		if r.code != exitOK {
			t.Errorf("pings every 150 ms through a 900 ms idle timeout %v: %v", extra, r)
		}
	}
	keepAlivePeriod = "1h"
	r := e2eRun("-c", relay, "-t", "2", "-i", "0")
	if r.code != exitRuntime {
		t.Errorf("no pings through a 900 ms idle timeout: want the test to fail, got %v", r)
	}
}

// TestPongsAmidData: pings and pongs between data frames change no
// count of a receiving stream, and the pings are answered.
func TestPongsAmidData(t *testing.T) {
	t.Parallel()
	client, server := reachPair(t)
	req := &testRequest{Length: 1000, Bytes: 1 << 30}
	run := newTestRun(req, 10*time.Second, time.Minute)
	run.streams = []*stream{{id: 1, conn: server}}
	done := make(chan error, 1)
	go func() { done <- run.run(context.Background()) }()
	payload := make([]byte, 1000)
	for i := range 100 {
		if err := client.WriteMessage(opBinary, payload); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			client.Ping([]byte("k"))
			client.WriteFrame(opPong, true, nil) // unsolicited: ignored (§5.5.3)
		}
	}
	// The client reads the pongs to its pings while closing.
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := client.Close(statusNormal, "done"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := run.streams[0].moved.Load(); got != 100*1000 {
		t.Errorf("received %d bytes, want %d", got, 100*1000)
	}
}

// reachPair is a client and a server wsConn over loopback TCP.
func reachPair(t *testing.T) (client, server *wsConn) {
	t.Helper()
	cn, sn := udpTCPPair(t)
	client, server = newConn(cn, true, connOptions{}, nil), newConn(sn, false, connOptions{}, nil)
	t.Cleanup(func() {
		client.Abort()
		server.Abort()
	})
	return client, server
}

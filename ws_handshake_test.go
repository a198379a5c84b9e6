package main

// Tests of the opening handshakes in ws_handshake.go: the server's answers
// to hand-written requests, and the client's dial against servers that
// answer well or badly. Everything talks to loopback only.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- server handshake ----

// wtRawRequest sends a hand-written request and returns the answer.
func wtRawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(wtDeadline))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp
}

// wtProtoHandler upgrades offering our subprotocols, reports the one
// chosen, and echoes.
func wtProtoHandler(ours []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		c, err := upgrade(w, hr, upgradeOptions{subprotocols: ours})
		if err != nil {
			return
		}
		serveEcho(c, wtDeadline)
	})
}

func TestHandshakeServer(t *testing.T) {
	srv := httptest.NewServer(wtProtoHandler([]string{"wperf.v2", "wperf.v1"}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// base is a valid request; each case rewrites some of its lines.
	base := []string{
		"GET /echo HTTP/1.1",
		"Host: " + addr,
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + wtRFCKey,
		"Sec-WebSocket-Version: 13",
	}
	cases := []struct {
		name    string
		edit    map[int]string // line index → replacement ("" drops it)
		extra   []string       // lines added at the end
		status  int
		accept  string            // want Sec-WebSocket-Accept when 101
		headers map[string]string // more response headers that must match ("" = absent)
	}{
		{name: "valid request, RFC example key", status: 101, accept: wtRFCAccept,
			headers: map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Protocol": ""}},
		{name: "POST", edit: map[int]string{0: "POST /echo HTTP/1.1"}, extra: []string{"Content-Length: 0"}, status: 400},
		{name: "PUT", edit: map[int]string{0: "PUT /echo HTTP/1.1"}, extra: []string{"Content-Length: 0"}, status: 400},
		{name: "no Upgrade", edit: map[int]string{2: ""}, status: 400},
		{name: "Upgrade: h2c", edit: map[int]string{2: "Upgrade: h2c"}, status: 400},
		{name: "no Connection", edit: map[int]string{3: ""}, status: 400},
		{name: "Connection: keep-alive only", edit: map[int]string{3: "Connection: keep-alive"}, status: 400},
		{name: "Connection as a token list", edit: map[int]string{3: "Connection: keep-alive, Upgrade"}, status: 101, accept: wtRFCAccept},
		{name: "header values in other cases", edit: map[int]string{2: "Upgrade: WebSocket", 3: "connection: KEEP-ALIVE,upgrade"}, status: 101, accept: wtRFCAccept},
		{name: "version 12", edit: map[int]string{5: "Sec-WebSocket-Version: 12"}, status: 426,
			headers: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "no version", edit: map[int]string{5: ""}, status: 426,
			headers: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "no key", edit: map[int]string{4: ""}, status: 400},
		{name: "key of 15 bytes", edit: map[int]string{4: "Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(make([]byte, 15))}, status: 400},
		{name: "key of 17 bytes", edit: map[int]string{4: "Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(make([]byte, 17))}, status: 400},
		{name: "key not base64", edit: map[int]string{4: "Sec-WebSocket-Key: !!!!not-base64-at-all!!!"}, status: 400},
		{name: "another valid key", edit: map[int]string{4: "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="}, status: 101,
			accept: "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
		{name: "subprotocol: our preference wins", extra: []string{"Sec-WebSocket-Protocol: chat, wperf.v1, wperf.v2"}, status: 101,
			accept: wtRFCAccept, headers: map[string]string{"Sec-WebSocket-Protocol": "wperf.v2"}},
		{name: "subprotocol: offered over two lines", extra: []string{"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: wperf.v1"}, status: 101,
			accept: wtRFCAccept, headers: map[string]string{"Sec-WebSocket-Protocol": "wperf.v1"}},
		{name: "subprotocol: none in common", extra: []string{"Sec-WebSocket-Protocol: chat, superchat"}, status: 101,
			accept: wtRFCAccept, headers: map[string]string{"Sec-WebSocket-Protocol": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			for i, l := range base {
				if e, ok := tc.edit[i]; ok {
					l = e
				}
				if l != "" {
					lines = append(lines, l)
				}
			}
			lines = append(lines, tc.extra...)
			resp := wtRawRequest(t, addr, strings.Join(lines, "\r\n")+"\r\n\r\n")
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 101 {
				if got := resp.Header.Get("Sec-WebSocket-Accept"); got != tc.accept {
					t.Errorf("Sec-WebSocket-Accept = %q, want %q", got, tc.accept)
				}
				if !hasToken(resp.Header, "Connection", "upgrade") {
					t.Errorf("Connection = %q, want Upgrade", resp.Header.Get("Connection"))
				}
			} else {
				for _, h := range []string{"Upgrade", "Sec-WebSocket-Accept"} {
					if v := resp.Header.Get(h); v != "" {
						t.Errorf("refusal carries %s: %q", h, v)
					}
				}
			}
			for h, want := range tc.headers {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
		})
	}
}

func TestAcceptKeyRFCExample(t *testing.T) {
	if got := acceptKey(wtRFCKey); got != wtRFCAccept {
		t.Fatalf("acceptKey(%q) = %q, want %q", wtRFCKey, got, wtRFCAccept)
	}
}

// TestHandshakePipelinedFrame sends the first frame in the same write as
// the upgrade request: the server must not lose it.
func TestHandshakePipelinedFrame(t *testing.T) {
	srv := httptest.NewServer(echoHandler(1<<20, wtDeadline))
	defer srv.Close()
	frames := wtConcat(wtFrame(0x81, []byte("early bird")), wtFrame(0x89, []byte("p")))
	rc := wtDialRaw(t, srv, frames)
	for _, want := range []wtEvent{wtMsg(opText, []byte("early bird")), wtMsg(opPong, []byte("p"))} {
		got, err := rc.nextEvent()
		if err != nil || got.op != want.op || !bytes.Equal(got.payload, want.payload) {
			t.Fatalf("got %v (%v), want %v", got, err, want)
		}
	}
	rc.write(wtFrame(0x88, wtClosePayload(1000, "")), 0)
	rc.expectClose(statusNormal)
}

// ---- client handshake ----

// wtRawServer accepts connections on a loopback listener and hands each,
// with its parsed request, to serve. It returns the ws:// URL.
func wtRawServer(t *testing.T, serve func(nc net.Conn, br *bufio.Reader, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(wtDeadline))
				br := bufio.NewReader(nc)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				serve(nc, br, req)
			})
		}
	})
	return "ws://" + ln.Addr().String() + "/"
}

// wtAnswer101 writes a correct 101 answer plus any extra header lines.
func wtAnswer101(nc net.Conn, req *http.Request, extra string) error {
	_, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n"+extra+"\r\n")
	return err
}

func wtCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wtDeadline)
	t.Cleanup(cancel)
	return ctx
}

// wtEchoOnce checks that a dialled connection works both ways.
func wtEchoOnce(t *testing.T, c *wsConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	if err := c.WriteMessage(opText, []byte("ping?")); err != nil {
		t.Fatal(err)
	}
	op, msg, err := c.ReadMessage(nil)
	if err != nil || op != opText || string(msg) != "ping?" {
		t.Fatalf("echo: op %d %q %v", op, msg, err)
	}
}

func TestDialWSURLForms(t *testing.T) {
	type seen struct{ host, uri string }
	got := make(chan seen, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		got <- seen{hr.Host, hr.RequestURI}
		echoHandler(1<<20, wtDeadline).ServeHTTP(w, hr)
	})
	srv4 := httptest.NewServer(handler)
	defer srv4.Close()
	addr4 := srv4.Listener.Addr().String()
	_, port4, _ := net.SplitHostPort(addr4)

	var addr6 string
	if ln6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		srv6 := httptest.NewUnstartedServer(handler)
		srv6.Listener.Close()
		srv6.Listener = ln6
		srv6.Start()
		defer srv6.Close()
		addr6 = ln6.Addr().String()
	}

	cases := []struct {
		name     string
		url      string
		dialAddr string // want this address dialled (the hook redirects it to srv4)
		host     string // want this Host header
		uri      string // want this request URI
		needV6   bool
	}{
		{name: "host:port", url: "ws://" + addr4, dialAddr: addr4, host: addr4, uri: "/"},
		{name: "host:port with path and query", url: "ws://" + addr4 + "/echo/x?a=1&b=2", dialAddr: addr4, host: addr4, uri: "/echo/x?a=1&b=2"},
		{name: "http scheme", url: "http://" + addr4 + "/p", dialAddr: addr4, host: addr4, uri: "/p"},
		{name: "name without port gets 80", url: "ws://localhost/echo", dialAddr: "localhost:80", host: "localhost", uri: "/echo"},
		{name: "explicit port 80 left out of Host", url: "ws://localhost:80/", dialAddr: "localhost:80", host: "localhost", uri: "/"},
		{name: "IPv6 literal without port", url: "ws://[::1]/six", dialAddr: "[::1]:80", host: "[::1]", uri: "/six"},
		{name: "localhost with port", url: "ws://localhost:" + port4 + "/", dialAddr: "localhost:" + port4, host: "localhost:" + port4, uri: "/"},
		{name: "IPv6 literal with port", url: "ws://" + addr6 + "/v6", host: addr6, uri: "/v6", needV6: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needV6 && addr6 == "" {
				t.Skip("no IPv6 loopback here")
			}
			var opt dialOptions
			var dialled string
			if tc.dialAddr != "" {
				// Every address goes to the loopback test server; the hook
				// only records what dialWS asked for.
				opt.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					dialled = addr
					var d net.Dialer
					return d.DialContext(ctx, "tcp", addr4)
				}
			}
			c, err := dialWS(wtCtx(t), tc.url, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(statusNormal, "")
			if tc.dialAddr != "" && dialled != tc.dialAddr {
				t.Errorf("dialled %q, want %q", dialled, tc.dialAddr)
			}
			s := <-got
			if s.host != tc.host || s.uri != tc.uri {
				t.Errorf("server saw Host %q URI %q, want %q %q", s.host, s.uri, tc.host, tc.uri)
			}
			wtEchoOnce(t, c)
		})
	}
}

func TestDialWSRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"wss://127.0.0.1:1/", "ftp://127.0.0.1/", "ws:///nohost", "::::"} {
		if c, err := dialWS(wtCtx(t), u, dialOptions{}); err == nil {
			c.Abort()
			t.Errorf("dialWS(%q) succeeded", u)
		}
	}
	if _, err := dialWS(wtCtx(t), "ftp://127.0.0.1:1/", dialOptions{}); !errors.Is(err, errUnsupportedURL) {
		t.Errorf("ftp: got %v, want errUnsupportedURL", err)
	}
}

func TestDialWSSendsHeadersAndSubprotocols(t *testing.T) {
	type seen struct{ auth, custom, protos string }
	got := make(chan seen, 1)
	inner := wtProtoHandler([]string{"wperf.v1"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		got <- seen{hr.Header.Get("Authorization"), strings.Join(hr.Header.Values("X-Wperf-Test"), "|"),
			strings.Join(hr.Header.Values("Sec-WebSocket-Protocol"), "|")}
		inner.ServeHTTP(w, hr)
	}))
	defer srv.Close()
	opt := dialOptions{
		header:       http.Header{"Authorization": {"Bearer s3cret"}, "X-Wperf-Test": {"one", "two"}},
		subprotocols: []string{"wperf.v9", "wperf.v1"},
	}
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(statusNormal, "")
	s := <-got
	if s.auth != "Bearer s3cret" || s.custom != "one|two" {
		t.Errorf("server saw Authorization %q, X-Wperf-Test %q", s.auth, s.custom)
	}
	if s.protos != "wperf.v9, wperf.v1" {
		t.Errorf("server saw Sec-WebSocket-Protocol %q", s.protos)
	}
	if c.subprotocol != "wperf.v1" {
		t.Errorf("negotiated subprotocol %q, want wperf.v1", c.subprotocol)
	}
	wtEchoOnce(t, c)
}

func TestDialWSRejectsHeaderWithLineBreak(t *testing.T) {
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		t.Error("a request with an injected header line reached the server")
	})
	_, err := dialWS(wtCtx(t), url, dialOptions{header: http.Header{"X-A": {"b\r\nX-Injected: 1"}}})
	if err == nil {
		t.Fatal("dialWS sent a header value with a line break")
	}
}

func TestDialWSRejectsBadServerAnswers(t *testing.T) {
	cases := []struct {
		name   string
		answer func(nc net.Conn, req *http.Request)
		status int // want a *handshakeError with this status; 0: any errBadHandshake
		msg    string
		notWS  bool // not HTTP at all: any error will do
	}{
		{name: "wrong accept", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Accept: "+wtRFCAccept+"\r\n\r\n")
		}},
		{name: "no accept", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		}},
		{name: "101 without Upgrade", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
		}},
		{name: "subprotocol not offered", answer: func(nc net.Conn, req *http.Request) {
			wtAnswer101(nc, req, "Sec-WebSocket-Protocol: wperf.v7\r\n")
		}},
		{name: "extension not offered", answer: func(nc net.Conn, req *http.Request) {
			wtAnswer101(nc, req, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
		}},
		{name: "403 with a reason", status: 403, msg: "no entry for you", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 403 Forbidden\r\nWperf: wperf 9\r\nContent-Length: 17\r\n\r\nno entry for you\n")
		}},
		{name: "200 OK", status: 200, answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
		}},
		{name: "not HTTP", notWS: true, answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "SSH-2.0-OpenSSH_9.6\r\n")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
				tc.answer(nc, req)
			})
			c, err := dialWS(wtCtx(t), url, dialOptions{subprotocols: []string{"wperf.v1"}})
			if err == nil {
				c.Abort()
				t.Fatal("dialWS accepted the answer")
			}
			if tc.notWS {
				return
			}
			if !errors.Is(err, errBadHandshake) {
				t.Errorf("error %v does not wrap errBadHandshake", err)
			}
			if tc.status != 0 {
				var he *handshakeError
				if !errors.As(err, &he) || he.Status != tc.status {
					t.Fatalf("error %v, want a handshakeError with status %d", err, tc.status)
				}
				if !strings.Contains(he.Message, tc.msg) {
					t.Errorf("message %q does not contain %q", he.Message, tc.msg)
				}
			}
		})
	}
}

// TestDialWSNotWperf pins the one-line verdicts on peers that take the
// connection but are no WebSocket server: silent, closing, or answering
// in another protocol (an iperf3 server sends a state byte), and an HTTP
// server whose page must not reach the message.
func TestDialWSNotWperf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		serve func(nc net.Conn)
		want  string // in the error
		notWS bool   // errNotWperf; else a handshakeError not from wperf
	}{
		{"silent", func(nc net.Conn) { io.Copy(io.Discard, nc) }, "did not answer the WebSocket upgrade within 2s", true},
		{"closes", func(nc net.Conn) { nc.Read(make([]byte, 4096)) }, "closed the connection without answering", true},
		{"iperf3's state byte", func(nc net.Conn) {
			nc.Read(make([]byte, 4096))
			nc.Write([]byte{9})
			io.Copy(io.Discard, nc)
		}, `not HTTP ("\t")`, true},
		{"web page", func(nc net.Conn) {
			nc.Read(make([]byte, 4096))
			page := "<html><body><h1>Not Found</h1></body></html>"
			fmt.Fprintf(nc, "HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s", len(page), page)
			io.Copy(io.Discard, nc)
		}, "server answered 404 Not Found to the WebSocket upgrade: it is not a wperf server", false},
		{"gateway error", func(nc net.Conn) {
			nc.Read(make([]byte, 4096))
			io.WriteString(nc, "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n")
			io.Copy(io.Discard, nc)
		}, "502 Bad Gateway to the WebSocket upgrade: it is not a wperf server, or a proxy in front of one that cannot reach it", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(wtDeadline))
				tc.serve(nc)
			}()
			start := time.Now()
			c, err := dialWS(wtCtx(t), "ws://"+ln.Addr().String()+"/", dialOptions{})
			if err == nil {
				c.Abort()
				t.Fatal("dialWS took the peer for a WebSocket server")
			}
			if d := time.Since(start); d > firstAnswerWait+time.Second {
				t.Errorf("verdict after %v, want it within %v", d, firstAnswerWait)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "<") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line with %q and no page", err, tc.want)
			}
			var he *handshakeError
			if tc.notWS != errors.Is(err, errNotWperf) || !tc.notWS && (!errors.As(err, &he) || he.Wperf || he.Message != "") {
				t.Errorf("error %#v: want errNotWperf %v", err, tc.notWS)
			}
		})
	}
}

// TestDialWSHandshakeTimeout uses a server that accepts TCP but never
// answers the handshake: the context's deadline must end the dial.
func TestDialWSHandshakeTimeout(t *testing.T) {
	release := make(chan struct{})
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		<-release
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := dialWS(ctx, url, dialOptions{})
	if err == nil {
		c.Abort()
		t.Fatal("handshake with a silent server succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("dialWS took %v with a 300ms deadline", d)
	}
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("error %v is not a timeout", err)
	}
}

func TestDialWSHandshakeCancel(t *testing.T) {
	release := make(chan struct{})
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		<-release
	})
	defer close(release)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	c, err := dialWS(ctx, url, dialOptions{})
	if err == nil {
		c.Abort()
		t.Fatal("handshake with a silent server succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not say the dial was cancelled", err)
	}
}

// TestDialWSKeepsBytesAfterHandshake has the server send its first frame
// in the same write as the 101 answer.
func TestDialWSKeepsBytesAfterHandshake(t *testing.T) {
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n"+
			string(wtUnmaskedFrame(0x81, []byte("hello right away"))))
		io.Copy(io.Discard, br)
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	op, msg, err := c.ReadMessage(nil)
	if err != nil || op != opText || string(msg) != "hello right away" {
		t.Fatalf("got op %d %q %v", op, msg, err)
	}
}

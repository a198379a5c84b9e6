package main

// proxy.go is wperf among HTTP proxies. Forward proxies: the client
// tunnels every connection of a test through one with CONNECT (RFC 7231
// §4.3.6), with basic authentication (RFC 7617) when the proxy URL has a
// user, and runs TLS and the WebSocket handshake inside the tunnel.
// Reverse proxies: the server notes the forwarding headers of a test's
// request, so both reports can say that TCP figures describe a proxy's
// leg; and the client pings quiet connections so that a proxy's idle
// timeout does not end a long test.

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Sentinel errors of forward proxies.
var (
	errProxyRefused = errors.New("the proxy refused the tunnel")
	errProxyURL     = errors.New("bad proxy URL")
)

// proxyFromEnv reads HTTPS_PROXY, HTTP_PROXY and NO_PROXY (and their
// lower-case forms). It is net/http's copy of
// golang.org/x/net/http/httpproxy, which the binary carries anyway;
// importing the module's own copy would add golang.org/x/text to go.mod
// and some 200 KB to the binary. It never proxies loopback targets.
var proxyFromEnv = http.ProxyFromEnvironment

// setProxy reads --proxy: http://[user:pass@]host[:port], the scheme
// optional; the port defaults to 80.
func (o *reachOptions) setProxy(v string) error {
	p, err := parseProxyURL(v)
	if err != nil {
		return fmt.Errorf("bad --proxy %q: %v", v, err)
	}
	o.proxy = p
	return nil
}

func parseProxyURL(v string) (*url.URL, error) {
	if !strings.Contains(v, "://") {
		v = "http://" + v
	}
	p, err := url.Parse(v)
	switch {
	case err != nil:
		return nil, errProxyURL
	case p.Scheme != "http":
		return nil, fmt.Errorf("%w: wperf talks to proxies in plain http:// (TLS to the server runs inside the tunnel)", errProxyURL)
	case p.Hostname() == "" || (p.Path != "" && p.Path != "/") || p.RawQuery != "":
		return nil, fmt.Errorf("%w: want http://[user:pass@]host:port", errProxyURL)
	case p.Port() == "":
		p.Host = net.JoinHostPort(p.Hostname(), "80")
	default:
		if err := checkPort(p.Port()); err != nil {
			return nil, fmt.Errorf("%w: %v", errProxyURL, err)
		}
	}
	return p, nil
}

// proxyRoute is the forward proxy a test goes through, and where that
// choice came from ("--proxy", or the environment variable).
type proxyRoute struct {
	proxy  *url.URL
	source string
}

// chooseProxy picks the proxy for target u: --proxy when given, else the
// environment's, with ws:// read as http:// (HTTP_PROXY) and wss:// as
// https:// (HTTPS_PROXY). Loopback targets are never proxied.
func chooseProxy(u *url.URL, explicit *url.URL) (*proxyRoute, error) {
	host := u.Hostname()
	if ip := net.ParseIP(host); !proxyAlsoLoopback && (host == "localhost" || (ip != nil && ip.IsLoopback())) {
		return nil, nil
	}
	if explicit != nil {
		return &proxyRoute{proxy: explicit, source: "--proxy"}, nil
	}
	scheme, variable := "http", "HTTP_PROXY"
	if u.Scheme == "wss" {
		scheme, variable = "https", "HTTPS_PROXY"
	}
	p, err := proxyFromEnv(&http.Request{URL: &url.URL{Scheme: scheme, Host: u.Host}})
	if err != nil {
		return nil, fmt.Errorf("bad %s in the environment: %v", variable, err)
	}
	if p == nil {
		return nil, nil
	}
	if p, err = parseProxyURL(p.String()); err != nil {
		return nil, fmt.Errorf("%s in the environment: %v", variable, err)
	}
	return &proxyRoute{proxy: p, source: variable}, nil
}

// proxyAlsoLoopback lets tests send loopback targets through --proxy.
var proxyAlsoLoopback = false

// dialer wraps a direct dial (which keeps its socket options, -B and
// -4/-6 for the leg to the proxy) into one that opens a tunnel to addr.
func (r *proxyRoute) dialer(direct func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if direct == nil {
		var d net.Dialer
		direct = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := direct(ctx, network, r.proxy.Host)
		if err != nil {
			return nil, fmt.Errorf("proxy %s: %w", r.proxy.Host, err)
		}
		tunnel, err := connectTunnel(ctx, nc, addr, r.proxy)
		if err != nil {
			nc.Close()
			return nil, err
		}
		return tunnel, nil
	}
}

// proxyWait bounds a CONNECT exchange when the caller's context has no
// deadline of its own.
const proxyWait = 30 * time.Second

// connectTunnel asks the proxy on nc for a tunnel to target (host:port)
// and returns the tunnel. A refusal is errProxyRefused with the proxy's
// status line, which says why (407: authentication).
func connectTunnel(ctx context.Context, nc net.Conn, target string, proxy *url.URL) (net.Conn, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(proxyWait)
	}
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var req strings.Builder
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n", target, target, software)
	if proxy.User != nil {
		req.WriteString("Proxy-Authorization: Basic " + basicCredentials(proxy.User) + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(nc, req.String()); err != nil {
		return nil, proxyIOError(ctx, proxy, err)
	}
	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, proxyIOError(ctx, proxy, err)
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: proxy %s answered %s %s", errProxyRefused, proxy.Host, resp.Proto, cleanText(resp.Status, 100))
	}
	nc.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 {
		// The server spoke first and the proxy passed it on already.
		early, _ := br.Peek(n)
		return &replayConn{Conn: nc, first: append([]byte(nil), early...)}, nil
	}
	return nc, nil
}

// basicCredentials is the token of RFC 7617's Basic scheme: user-id ":"
// password, in base64.
func basicCredentials(u *url.Userinfo) string {
	pass, _ := u.Password()
	return base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pass))
}

func proxyIOError(ctx context.Context, proxy *url.URL, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("proxy %s: CONNECT: %w", proxy.Host, err)
}

// ---- reverse proxies ----

// forwardingHeaders are the request headers by which a proxy announces
// itself: RFC 7239's Forwarded, the de-facto X-Forwarded-For and
// X-Real-IP, and HTTP's own Via.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Real-IP", "Via"}

// forwardedBy names the first forwarding header of a request, with its
// value: the sign that a proxy stands between the client and us, so that
// our socket's TCP figures describe the proxy's leg. "" for a direct
// request.
func forwardedBy(h http.Header) string {
	for _, name := range forwardingHeaders {
		if v := h.Get(name); v != "" {
			return cleanText(name+": "+v, 200)
		}
	}
	return ""
}

// proxyFacts say that a test went through a proxy, for the reports.
type proxyFacts struct {
	// Kind is "forward" (the client's CONNECT proxy), "reverse" (one in
	// front of the server), or "forward+reverse".
	Kind     string `json:"kind"`
	Address  string `json:"address,omitempty"`  // the forward proxy, host:port
	Source   string `json:"source,omitempty"`   // "--proxy", or the environment variable
	Evidence string `json:"evidence,omitempty"` // the forwarding header the server saw
}

func (f *proxyFacts) line() string {
	var via []string
	if f.Address != "" {
		via = append(via, "HTTP proxy "+f.Address+" ("+f.Source+")")
	}
	if f.Evidence != "" {
		via = append(via, "a reverse proxy ("+f.Evidence+")")
	}
	return "Through " + strings.Join(via, " and ") + ": TCP figures (Retr, Cwnd, RTT) describe a leg to a proxy, not the whole path"
}

// ---- keep-alive ----

// keepAlivePeriod is how often a test's quiet connections are pinged:
// well inside nginx's default proxy_read_timeout of 60 s, which would
// otherwise end the control connection of a long test. It is a string so
// that a test build can shorten it: -ldflags "-X main.keepAlivePeriod=1s".
var keepAlivePeriod = "20s"

func keepAliveEvery() time.Duration {
	d, err := time.ParseDuration(keepAlivePeriod)
	if err != nil || d <= 0 {
		return 20 * time.Second
	}
	return d
}

// keepAlive pings, every keepAlivePeriod until stop is called, the
// control connection and every receiving stream that got no byte since
// the last round. The peer's reader answers with a pong, so both
// directions of a proxied connection see traffic; our readers skip the
// pongs (ws.go). Sending streams are left alone: they either send, or
// are blocked on a stuck path, and their write deadline is their own.
// stop returns once no more pings will be sent.
func (run *testRun) keepAlive(ctrl *wsConn) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	every := keepAliveEvery()
	go func() {
		defer close(exited)
		tick := time.NewTicker(every)
		defer tick.Stop()
		last := make([]int64, len(run.streams))
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			ping(ctrl)
			for i, s := range run.streams {
				moved := s.moved.Load()
				if !s.sending && s.conn != nil && moved == last[i] {
					ping(s.conn)
				}
				last[i] = moved
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-exited // no ping after stop
	}
}

// ping sends one ping, with a write deadline so that a dead peer cannot
// hold the keep-alive. Errors are the reader's to find.
func ping(c *wsConn) {
	c.SetWriteDeadline(time.Now().Add(closeWait))
	c.Ping(nil)
}

package main

// reach.go is how the two ends get to each other across unfriendly
// networks: the address forms -c takes, the one dial path that every
// connection of a client's test goes through (a forward proxy's tunnel,
// then TLS for wss://, then the WebSocket handshake), the checks of the
// TLS and proxy options, and what the reports say about TLS and proxies.
// tls.go and proxy.go are the two layers themselves.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// errBadAddress is a -c value that is no server address.
var errBadAddress = errors.New("bad server address")

// reachOptions are the TLS and proxy options of the command line, and
// what checkReach derives from them.
type reachOptions struct {
	// server
	certFile, keyFile string
	selfSigned        bool // --tls
	tlsDir            string
	alsoPlain         bool
	serverCert        *tls.Certificate // --cert/--key, loaded by checkReach

	// client
	caFile      string
	fingerprint []byte // SHA-256 of the certificate's DER; nil when not pinned
	insecure    bool
	proxy       *url.URL // --proxy

	clientTLS *tls.Config // for a wss:// target, built by checkReach
	route     *proxyRoute // the forward proxy this target goes through; nil: direct
}

// fileOpt makes the apply function of an option naming a file that must
// exist when wperf starts.
func fileOpt(name string, field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if fi, err := os.Stat(v); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("bad --%s %q: want a readable file", name, v)
		}
		*field(c) = v
		return nil
	}
}

// checkReach applies the TLS and proxy rules that involve other options
// or the target's scheme, and loads the files the options name, so that
// a bad certificate is a usage error rather than a failure later.
func (c *config) checkReach() error {
	if err := c.checkBind(); err != nil {
		return err
	}
	switch c.mode {
	case modeServer:
		return c.reach.checkServer()
	case modeClient:
		u, err := targetURL(c)
		if err != nil {
			return nil // checkClient reports it
		}
		return c.reach.checkClient(u)
	}
	return nil
}

func (o *reachOptions) checkServer() error {
	if o.tlsDir != "" {
		o.selfSigned = true // --tls-dir keeps --tls's certificate
	}
	switch {
	case (o.certFile == "") != (o.keyFile == ""):
		return errors.New("--cert and --key go together")
	case o.certFile != "" && o.selfSigned:
		return errors.New("--cert and --tls (or --tls-dir) exclude each other: one certificate per server")
	case o.alsoPlain && o.certFile == "" && !o.selfSigned:
		return errors.New("--tls-also-plain needs --tls or --cert")
	case o.certFile == "":
		return nil
	}
	cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
	if err != nil {
		return fmt.Errorf("bad --cert/--key: %v", err)
	}
	o.serverCert = &cert
	return nil
}

func (o *reachOptions) checkClient(u *url.URL) error {
	secure := u.Scheme == "wss"
	for _, f := range []struct {
		name string
		set  bool
	}{{"ca", o.caFile != ""}, {"fingerprint", o.fingerprint != nil}, {"insecure", o.insecure}} {
		if f.set && !secure {
			return fmt.Errorf("--%s is for wss:// servers (use -c wss://%s/)", f.name, u.Host)
		}
	}
	switch {
	case o.insecure && (o.caFile != "" || o.fingerprint != nil):
		return errors.New("--insecure checks nothing, so --ca and --fingerprint do not go with it")
	case o.caFile != "" && o.fingerprint != nil:
		return errors.New("--fingerprint accepts one certificate and checks nothing else, so --ca does not go with it")
	}
	route, err := chooseProxy(u, o.proxy)
	if err != nil {
		return err
	}
	o.route = route
	if secure {
		o.clientTLS, err = o.buildClientTLS(u.Hostname())
	}
	return err
}

// warnInsecure says once, on standard error, that --insecure leaves the
// test open to anyone on the path.
func warnInsecure(cfg *config, stderr io.Writer) {
	if cfg.mode == modeClient && cfg.reach.insecure {
		fmt.Fprintln(stderr, "wperf: warning: --insecure: the server's certificate is not checked, so anyone on the path could pose as the server")
	}
}

// ---- the address forms of -c ----

// parseTarget turns -c's value into the server's URL. It takes a name or
// address (IPv6 with or without brackets), HOST:PORT, [IPv6]:PORT, and
// ws:// or wss:// URLs (http:// and https:// mean the same). A bare host
// gets -p's port (8765 by default); a URL without a port gets -p's when it
// was given, else its scheme's (80 or 443). When the value has a port and
// -p names another, neither wins: that is an error.
func parseTarget(raw string, port int, portSet bool) (*url.URL, error) {
	bad := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("%w %q: %s", errBadAddress, raw, why)
	}
	if strings.TrimSpace(raw) != raw || raw == "" {
		return bad("want HOST, HOST:PORT, [IPv6]:PORT or a ws:// or wss:// URL")
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		return parseTargetURL(raw, strings.ToLower(scheme), rest, port, portSet)
	}
	host, p, err := splitTarget(raw)
	if err != nil {
		return bad(err.Error())
	}
	if p == "" {
		p = strconv.Itoa(port)
	} else if portSet && p != strconv.Itoa(port) {
		return bad(fmt.Sprintf("its port %s and -p %d disagree", p, port))
	}
	return &url.URL{Scheme: "ws", Host: net.JoinHostPort(host, p), Path: "/"}, nil
}

// splitTarget splits a -c value without a scheme into host and port
// ("" when it has none).
func splitTarget(raw string) (host, port string, err error) {
	switch {
	case strings.ContainsAny(raw, "/?#@ "):
		return "", "", errors.New("a path or other URL parts need a URL: ws://HOST[:PORT]/path")
	case net.ParseIP(raw) != nil:
		return raw, "", nil // IPv4, or IPv6 without brackets and so without a port
	case strings.HasPrefix(raw, "[") && strings.HasSuffix(raw, "]"):
		host = raw[1 : len(raw)-1]
	case strings.Count(raw, ":") == 0:
		host = raw
	default:
		if host, port, err = net.SplitHostPort(raw); err != nil {
			return "", "", errors.New("want HOST:PORT, or brackets around an IPv6 address: [2001:db8::1]:8765")
		}
		if err := checkPort(port); err != nil {
			return "", "", err
		}
	}
	if bracketed := strings.HasPrefix(raw, "["); bracketed && (net.ParseIP(host) == nil || !strings.Contains(host, ":")) {
		return "", "", errors.New("not an IPv6 address inside the brackets")
	}
	if host == "" {
		return "", "", errors.New("no host")
	}
	return host, port, nil
}

func checkPort(p string) error {
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || p[0] == '0' || p[0] == '+' {
		return fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return nil
}

// parseTargetURL is parseTarget for a value with a scheme; rest is what
// follows "://".
func parseTargetURL(raw, scheme, rest string, port int, portSet bool) (*url.URL, error) {
	bad := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("%w %q: %s", errBadAddress, raw, why)
	}
	switch scheme {
	case "ws", "http":
		scheme = "ws"
	case "wss", "https":
		scheme = "wss"
	default:
		return bad("the scheme must be ws:// or wss://")
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if _, hostPort, ok := strings.Cut(authority, "@"); ok {
		authority = hostPort
	}
	if strings.Count(authority, ":") > 1 && !strings.HasPrefix(authority, "[") {
		return bad("put an IPv6 address in brackets, as in " + scheme + "://[2001:db8::1]:8765/")
	}
	u, err := url.Parse(scheme + "://" + rest)
	if err != nil {
		return bad(strings.TrimPrefix(err.Error(), "parse "))
	}
	switch {
	case u.User != nil:
		return bad("no user or password in the URL: use --token")
	case u.Hostname() == "":
		return bad("no host")
	case u.Port() != "":
		if err := checkPort(u.Port()); err != nil {
			return bad(err.Error())
		}
		if portSet && u.Port() != strconv.Itoa(port) {
			return bad(fmt.Sprintf("its port %s and -p %d disagree", u.Port(), port))
		}
	case portSet:
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	}
	u.Fragment, u.RawFragment = "", ""
	if u.Path == "" {
		u.Path = "/"
	}
	return wsURL(u.String())
}

// ---- the address forms of -B ----

// checkBind reads -B in the forms -c takes, less URLs: an address or a
// name, IPv6 with or without brackets; a server's may carry its port too
// (HOST:PORT, [IPv6]:PORT), which then stands for -p. A client's stays an
// address, as iperf3's does (its port is the system's choice). An
// interface name is the usual slip, and is named as such.
func (c *config) checkBind() error {
	if c.bind == "" || c.mode != modeServer && c.mode != modeClient {
		return nil
	}
	bad := func(why string) error { return fmt.Errorf("bad --bind %q: %s", c.bind, why) }
	if ifi, err := net.InterfaceByName(c.bind); err == nil {
		return bad(fmt.Sprintf("%s is a network interface, not an address: use one of its addresses%s, or --bind-dev %s", c.bind, interfaceAddrs(ifi), c.bind))
	}
	if strings.ContainsAny(c.bind, "/?#@ ") {
		return bad("want an address: ADDR, HOST:PORT or [IPv6]:PORT")
	}
	host, port, err := splitTarget(c.bind)
	switch {
	case err != nil:
		return bad(err.Error())
	case c.mode == modeClient && (port != "" || net.ParseIP(host) == nil):
		return bad("want an IP address (a client's port is --cport's)")
	case port != "" && c.set["port"] && port != strconv.Itoa(c.port):
		return bad(fmt.Sprintf("its port %s and -p %d disagree", port, c.port))
	case port != "":
		c.port, _ = strconv.Atoi(port)
	}
	c.bind = host
	return nil
}

// interfaceAddrs lists an interface's addresses for a hint: " (a, b)",
// or "" when it has none.
func interfaceAddrs(ifi *net.Interface) string {
	addrs, _ := ifi.Addrs()
	var ips []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			ips = append(ips, ipn.IP.String())
		}
	}
	if len(ips) == 0 {
		return ""
	}
	return " (" + strings.Join(ips, ", ") + ")"
}

// ---- the client's dial path ----

// withReach completes a connection's dial options with the way to the
// target: TLS settings for wss://, and the tunnel through the forward
// proxy when one applies. Every connection of a test (control, streams,
// reverse traceroute) is dialled with these options.
func withReach(cfg *config, opt dialOptions) dialOptions {
	opt.tls = cfg.reach.clientTLS
	if r := cfg.reach.route; r != nil {
		opt.dial = r.dialer(opt.dial)
	}
	return opt
}

// ---- what the reports say ----

// reachFacts are how a test's connections reached the other end, for the
// reports: start.wperf.tls and start.wperf.proxy in JSON, a line each in
// text.
type reachFacts struct {
	TLS   *tlsFacts   `json:"tls,omitempty"`
	Proxy *proxyFacts `json:"proxy,omitempty"`
}

// lines are the text report's lines about TLS and proxies.
func (r *reachFacts) lines() []string {
	if r == nil {
		return nil
	}
	var out []string
	if r.TLS != nil {
		out = append(out, r.TLS.line())
	}
	if r.Proxy != nil {
		out = append(out, r.Proxy.line())
	}
	return out
}

// clientReach is what the client knows about its own connections: the
// control connection's TLS, the forward proxy it used, and a reverse
// proxy the server saw in front of itself (via, from its accept).
func clientReach(cfg *config, ctrl *wsConn, via string) *reachFacts {
	r := &reachFacts{TLS: connTLSFacts(ctrl, &cfg.reach)}
	if route := cfg.reach.route; route != nil {
		r.Proxy = &proxyFacts{Kind: "forward", Address: route.proxy.Host, Source: route.source}
	}
	if via != "" {
		if r.Proxy == nil {
			r.Proxy = &proxyFacts{Kind: "reverse"}
		} else {
			r.Proxy.Kind = "forward+reverse"
		}
		r.Proxy.Evidence = cleanText(via, 200)
	}
	if r.TLS == nil && r.Proxy == nil {
		return nil
	}
	return r
}

// serverReach is what the server knows about a test's control
// connection: its TLS, and the forwarding headers of its upgrade request.
func serverReach(ctrl *wsConn) *reachFacts {
	r := &reachFacts{TLS: connTLSFacts(ctrl, nil)}
	if ctrl.forwardedBy != "" {
		r.Proxy = &proxyFacts{Kind: "reverse", Evidence: ctrl.forwardedBy}
	}
	if r.TLS == nil && r.Proxy == nil {
		return nil
	}
	return r
}

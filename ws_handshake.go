package main

// ws_handshake.go is the WebSocket opening handshake (RFC 6455 §4), both
// sides of it: the server's upgrade of an HTTP request it takes over from
// net/http, and the client's dial. Each ends in a wsConn (ws.go).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Sentinel errors of the opening handshake, before there is a connection
// to close.
var (
	errBadHandshake   = errors.New("websocket handshake failed") // HTTP-level
	errUnsupportedURL = errors.New("unsupported URL scheme")
	// errNotWperf is a peer that took the connection but gave no HTTP
	// answer to the upgrade request: an iperf3 server, an SSH daemon, a
	// port that swallows everything.
	errNotWperf = errors.New("it may not be a wperf server")
)

// firstAnswerWait bounds the wait for the first byte of the answer to the
// upgrade request. Any HTTP server answers a request at once, so a silent
// peer is not worth --connect-timeout's whole wait. (The server's delayed
// 401 for repeated token failures, authMaxDelay, stays below it.)
const firstAnswerWait = 2 * time.Second

// wperfHeader is the response header by which a wperf server names
// itself on every HTTP answer (its value is software), so a client can
// tell a wperf server's refusal from another web server's page. Reverse
// proxies pass it through, unlike Server, which many of them rewrite.
const wperfHeader = "Wperf"

// notWperfError says why the peer at Host is not taken for a WebSocket
// server; it wraps errNotWperf.
type notWperfError struct {
	Host string
	Why  string
}

func (e *notWperfError) Error() string {
	return fmt.Sprintf("%s accepted TCP but %s: %v", e.Host, e.Why, errNotWperf)
}

func (e *notWperfError) Unwrap() error { return errNotWperf }

// acceptGUID is the fixed string of §1.3 that proves the server read the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// headerTokens splits every value of a comma-separated header into
// trimmed tokens.
func headerTokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func hasToken(h http.Header, name, token string) bool {
	for _, t := range headerTokens(h, name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// isUpgrade tells a WebSocket opening handshake from a plain request.
func isUpgrade(hr *http.Request) bool {
	return hasToken(hr.Header, "Upgrade", "websocket") && hasToken(hr.Header, "Connection", "upgrade")
}

// upgradeOptions are the server's choices for one upgrade.
type upgradeOptions struct {
	connOptions
	subprotocols []string // ours, most preferred first
}

// upgrade answers a client's opening handshake (§4.2) and takes the
// connection over from net/http. A bad request gets a plain 400 (426 for a
// version we do not speak) and no upgrade.
func upgrade(w http.ResponseWriter, hr *http.Request, opt upgradeOptions) (*wsConn, error) {
	fail := func(status int, why string) (*wsConn, error) {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, why, status)
		return nil, fmt.Errorf("%w: %s", errBadHandshake, why)
	}
	switch {
	case hr.Method != http.MethodGet:
		return fail(http.StatusBadRequest, "websocket handshake must use GET")
	case !hasToken(hr.Header, "Upgrade", "websocket"):
		return fail(http.StatusBadRequest, "missing Upgrade: websocket")
	case !hasToken(hr.Header, "Connection", "upgrade"):
		return fail(http.StatusBadRequest, "missing Connection: upgrade")
	case hr.Header.Get("Sec-WebSocket-Version") != "13":
		return fail(http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (want 13)")
	}
	key := hr.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return fail(http.StatusBadRequest, "bad Sec-WebSocket-Key")
	}
	chosen := chooseSubprotocol(headerTokens(hr.Header, "Sec-WebSocket-Protocol"), opt.subprotocols)
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fail(http.StatusInternalServerError, "connection cannot be taken over")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	nc.SetDeadline(time.Time{}) // net/http's timeouts end with HTTP
	var resp bytes.Buffer
	resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	resp.WriteString(acceptKey(key))
	if chosen != "" {
		resp.WriteString("\r\nSec-WebSocket-Protocol: ")
		resp.WriteString(chosen)
	}
	resp.WriteString("\r\n\r\n")
	nc.SetWriteDeadline(time.Now().Add(closeWait))
	if _, err := nc.Write(resp.Bytes()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	nc.SetWriteDeadline(time.Time{})
	// A client may send its first frame right behind the request; net/http
	// may already have read it.
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	c := newConn(nc, false, opt.connOptions, buffered)
	c.subprotocol = chosen
	c.forwardedBy = forwardedBy(hr.Header)
	return c, nil
}

// chooseSubprotocol picks our most preferred protocol that the client
// offered, or "" when we share none.
func chooseSubprotocol(offered, ours []string) string {
	for _, p := range ours {
		for _, o := range offered {
			if o == p {
				return p
			}
		}
	}
	return ""
}

// dialOptions are the client's choices for one connection.
type dialOptions struct {
	connOptions
	header       http.Header // extra request headers, such as Authorization
	subprotocols []string
	// dial opens the transport; nil means a plain TCP dial. Proxies plug
	// in here (proxy.go).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// tls is a wss:// URL's TLS configuration (tls.go); nil checks the
	// server against the system's roots.
	tls *tls.Config
}

// handshakeError is an HTTP server's refusal to upgrade: its status and,
// from a wperf server (Wperf says so), the first line of its body, which
// says why. Another server's body (an HTML page, say) is left out.
type handshakeError struct {
	Status  int
	Message string
	Wperf   bool
}

func (e *handshakeError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	switch {
	case !e.Wperf && e.Status >= 502 && e.Status <= 504:
		return msg + " to the WebSocket upgrade: it is not a wperf server, or a proxy in front of one that cannot reach it"
	case !e.Wperf:
		return msg + " to the WebSocket upgrade: it is not a wperf server"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func (e *handshakeError) Unwrap() error { return errBadHandshake }

// wsURL parses a ws:// or wss:// (or http://, https://) URL, adding the
// scheme's default port.
func wsURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	port := "80"
	switch u.Scheme {
	case "ws", "http":
	case "wss", "https":
		port = "443"
	default:
		return nil, fmt.Errorf("%w %q (want ws:// or wss://)", errUnsupportedURL, u.Scheme)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// dialWS opens a WebSocket to rawURL (§4.1). The context bounds the TCP
// connect and the handshake together.
func dialWS(ctx context.Context, rawURL string, opt dialOptions) (*wsConn, error) {
	u, err := wsURL(rawURL)
	if err != nil {
		return nil, err
	}
	dial := opt.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if secureScheme(u) {
		tc, err := tlsClient(ctx, nc, u.Hostname(), opt.tls)
		if err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	c, err := clientHandshake(ctx, nc, u, opt)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func clientHandshake(ctx context.Context, nc net.Conn, u *url.URL, opt dialOptions) (*wsConn, error) {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var raw [16]byte
	rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	host := u.Host
	if secureScheme(u) && u.Port() == "443" || !secureScheme(u) && u.Port() == "80" {
		host = u.Host[:len(u.Host)-len(u.Port())-1] // the scheme's default port goes unsaid
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", u.RequestURI(), host)
	fmt.Fprintf(&req, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key)
	if len(opt.subprotocols) > 0 {
		fmt.Fprintf(&req, "Sec-WebSocket-Protocol: %s\r\n", strings.Join(opt.subprotocols, ", "))
	}
	for name, vals := range opt.header {
		for _, v := range vals {
			if strings.ContainsAny(name+v, "\r\n") {
				return nil, fmt.Errorf("header %q has a line break", name)
			}
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := nc.Write(req.Bytes()); err != nil {
		return nil, handshakeIOError(ctx, err)
	}

	br := bufio.NewReaderSize(nc, 4<<10)
	if err := awaitAnswer(ctx, nc, br, u.Host); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, handshakeIOError(ctx, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, answerRefusal(resp)
	}
	switch {
	case !hasToken(resp.Header, "Upgrade", "websocket"), !hasToken(resp.Header, "Connection", "upgrade"):
		return nil, fmt.Errorf("%w: 101 without Upgrade: websocket", errBadHandshake)
	case resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return nil, fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errBadHandshake)
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		// We offer none, so the server may not pick any (§4.1).
		return nil, fmt.Errorf("%w: server chose extensions we did not offer", errBadHandshake)
	}
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	if proto != "" && chooseSubprotocol([]string{proto}, opt.subprotocols) == "" {
		return nil, fmt.Errorf("%w: server chose subprotocol %q, which we did not offer", errBadHandshake, proto)
	}
	nc.SetDeadline(time.Time{})
	buffered, _ := br.Peek(br.Buffered())
	c := newConn(nc, true, opt.connOptions, buffered)
	c.subprotocol = proto
	return c, nil
}

// awaitAnswer waits, within firstAnswerWait, for the first bytes of the
// answer to the upgrade request, and checks that they can begin an HTTP
// response (RFC 9112 §4: "HTTP/"). An iperf3 server, for one, takes the
// request for its cookie and answers with a one-byte state.
func awaitAnswer(ctx context.Context, nc net.Conn, br *bufio.Reader, host string) error {
	ctxDeadline, _ := ctx.Deadline()
	wait := time.Now().Add(firstAnswerWait)
	ctxFirst := !ctxDeadline.IsZero() && ctxDeadline.Before(wait)
	if ctxFirst {
		wait = ctxDeadline
	}
	nc.SetReadDeadline(wait)
	_, err := br.Peek(1)
	nc.SetReadDeadline(ctxDeadline)
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	switch {
	case err != nil && ctx.Err() != nil:
		return handshakeIOError(ctx, err)
	case timeout && ctxFirst:
		// The context's deadline, whose timer may not have fired yet.
		return handshakeIOError(ctx, context.DeadlineExceeded)
	case timeout:
		return &notWperfError{Host: host, Why: fmt.Sprintf("did not answer the WebSocket upgrade within %v", firstAnswerWait)}
	case err != nil:
		return &notWperfError{Host: host, Why: "closed the connection without answering the WebSocket upgrade"}
	}
	got, _ := br.Peek(min(br.Buffered(), len(httpVersionPrefix)))
	if !strings.HasPrefix(httpVersionPrefix, string(got)) {
		return &notWperfError{Host: host, Why: fmt.Sprintf("answered the WebSocket upgrade with bytes that are not HTTP (%q)", got)}
	}
	return nil
}

// httpVersionPrefix starts every HTTP/1.x response.
const httpVersionPrefix = "HTTP/"

// answerRefusal reads a non-101 answer into a handshakeError. Only a wperf
// server's body is kept, and only its first line: another server's body
// is a page meant for a browser.
func answerRefusal(resp *http.Response) error {
	defer resp.Body.Close()
	he := &handshakeError{Status: resp.StatusCode, Wperf: strings.HasPrefix(resp.Header.Get(wperfHeader), "wperf")}
	if he.Wperf {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		he.Message = cleanText(line, 200)
	}
	return he
}

// secureScheme tells a wss:// (or https://) URL, whose connection runs
// over TLS (§3), from a plain one.
func secureScheme(u *url.URL) bool { return u.Scheme == "wss" || u.Scheme == "https" }

// handshakeIOError prefers the context's reason (timeout, cancel) over the
// I/O error it caused.
func handshakeIOError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("websocket handshake: %w", ctx.Err())
	}
	return fmt.Errorf("websocket handshake: %w", err)
}

package main

// guard.go is the server's defence against clients that take more than a
// test needs: it counts connections per client address and turns away
// those over the caps, slows down token guessing, and keeps a flood of
// refusals from becoming a flood of log lines.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"
)

// Errors of the connection caps, sent as the body of a 503.
var (
	errTooManyConns    = errors.New("server is busy: too many connections (--max-connections); try again later")
	errTooManyFromAddr = errors.New("too many connections from your address (--max-connections-per-ip); try again later")
)

// connGuard counts the server's TCP connections by client address. Those
// of an accepted test are reserved for it: its control connection and its
// streams. The others are loose: HTTP requests, handshakes, connections
// that have not said yet what they are, /echo, reverse traces. Loose
// connections are capped in all (maxLoose) and per address (perAddr), so
// neither a crowd nor one address can hold the server's memory, and a
// test's own connections are never turned away.
type connGuard struct {
	maxLoose int
	perAddr  int
	// byProxy is --trust-proxy: every TCP peer is the proxy, and a
	// connection is charged to its client only once a request names it.
	byProxy bool

	mu       sync.Mutex
	open     int // connections counted
	reserved int // places held for accepted tests
	addrs    map[netip.Addr]*addrConns
}

// addrConns is one address's share of the count.
type addrConns struct{ open, reserved int }

func newConnGuard(maxLoose, perAddr int, byProxy bool) *connGuard {
	return &connGuard{maxLoose: maxLoose, perAddr: perAddr, byProxy: byProxy, addrs: map[netip.Addr]*addrConns{}}
}

// roomFor reports why one more loose connection from a may not open, or nil.
func (g *connGuard) roomFor(a netip.Addr, checkAddr bool) error {
	if g.open-g.reserved >= g.maxLoose {
		return errTooManyConns
	}
	if ac := g.addrs[a]; checkAddr && ac != nil && ac.open-ac.reserved >= g.perAddr {
		return errTooManyFromAddr
	}
	return nil
}

// add changes a's counts by open and reserved, forgetting a at zero.
func (g *connGuard) add(a netip.Addr, open, reserved int) {
	ac := g.addrs[a]
	if ac == nil {
		ac = &addrConns{}
		g.addrs[a] = ac
	}
	ac.open += open
	ac.reserved += reserved
	g.open += open
	g.reserved += reserved
	if ac.open == 0 && ac.reserved == 0 {
		delete(g.addrs, a)
	}
}

// enter counts a new connection from a, or says why it may not open.
func (g *connGuard) enter(tc *net.TCPConn, a netip.Addr) (*guardedConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.roomFor(a, !g.byProxy); err != nil {
		return nil, err
	}
	g.add(a, 1, 0)
	return &guardedConn{TCPConn: tc, g: g, addr: a}, nil
}

// charge moves a connection's count to the client a trusted proxy named,
// within that client's cap.
func (g *connGuard) charge(gc *guardedConn, a netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gc.closed || gc.addr == a {
		return nil
	}
	if err := g.roomFor(a, true); err != nil {
		return err
	}
	g.add(gc.addr, -1, 0)
	g.add(a, 1, 0)
	gc.addr = a
	return nil
}

// reserve holds n places for a's accepted test, or gives them back (n < 0).
func (g *connGuard) reserve(a netip.Addr, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.add(a, 0, n)
}

func (g *connGuard) leave(gc *guardedConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gc.closed = true
	g.add(gc.addr, -1, 0)
}

// guardedConn is a counted connection; closing it gives its place back.
// It embeds the *net.TCPConn, so socket options, TCP_INFO and writev work
// on it as on the bare socket.
type guardedConn struct {
	*net.TCPConn
	g      *connGuard
	addr   netip.Addr // whom it is charged to; guarded by g.mu
	closed bool       // guarded by g.mu
	once   sync.Once
	// notHTTP logs a client whose first bytes are no HTTP request; nil
	// skips the check. checked: the first bytes passed (reader only).
	notHTTP func(a netip.Addr, first []byte)
	checked bool
}

// errNotHTTP ends a connection whose first bytes cannot begin an HTTP
// request.
var errNotHTTP = errors.New("not an HTTP client")

// Read checks the first bytes a client sends. One that cannot be HTTP
// (an iperf3 client's cookie, an SSH banner) is closed at once, so that
// it fails now instead of waiting, silent, for net/http's header timeout.
// After that first read it is the socket's Read.
func (gc *guardedConn) Read(p []byte) (int, error) {
	n, err := gc.TCPConn.Read(p)
	if gc.checked || gc.notHTTP == nil || n == 0 {
		return n, err
	}
	gc.checked = true
	if !mayStartRequest(p[:n]) {
		gc.notHTTP(gc.addr, p[:min(n, 8)])
		gc.Close()
		return 0, errNotHTTP
	}
	return n, err
}

// maxMethodLen bounds the method of a request line we take: the longest
// method in IANA's registry (UPDATEREDIRECTREF) has 17 characters.
const maxMethodLen = 20

// mayStartRequest says whether b can be the start of an HTTP/1.x request
// (RFC 9112 §3): a method, then a space. Every registered method is upper
// case letters, with '-' or '_' at most (RFC 9110 §16.1); a TLS record
// header (a wss:// client at a ws:// server) passes too, so net/http can
// answer it with a 400 the client reads as "speaks plain ws://".
func mayStartRequest(b []byte) bool {
	if len(b) > 0 && b[0] == tlsRecordHandshake {
		return true
	}
	for i, c := range b {
		switch {
		case c == ' ':
			return i > 0
		case i >= maxMethodLen:
			return false
		case c >= 'A' && c <= 'Z', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func (gc *guardedConn) Close() error {
	gc.once.Do(func() { gc.g.leave(gc) })
	return gc.TCPConn.Close()
}

// guardedListener admits connections within the guard's caps.
type guardedListener struct {
	net.Listener
	g       *connGuard
	refused func(a netip.Addr, why error)    // logs a turned-away connection
	turning chan struct{}                    // bounds the goroutines that answer them
	notHTTP func(a netip.Addr, first []byte) // logs a client that does not speak HTTP
}

// maxTurning bounds the 503 answers in flight; past it, connections over
// a cap are closed without one.
const maxTurning = 64

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := nc.(*net.TCPConn)
		if !ok {
			return nc, nil
		}
		a := tcpPeerIP(tc.RemoteAddr())
		gc, err := l.g.enter(tc, a)
		if err == nil {
			gc.notHTTP = l.notHTTP
			return gc, nil
		}
		l.refused(a, err)
		select {
		case l.turning <- struct{}{}:
			go func() {
				defer func() { <-l.turning }()
				turnAway(tc, err)
			}()
		default:
			tc.Close()
		}
	}
}

// turnAway answers a connection over a cap with a bare 503 and closes
// it. It reads what the client already sent first: closing a socket with
// unread data resets it, and the client would lose the answer.
func turnAway(nc net.Conn, why error) {
	defer nc.Close()
	msg := why.Error() + "\n"
	nc.SetDeadline(time.Now().Add(500 * time.Millisecond))
	fmt.Fprintf(nc, "HTTP/1.1 503 Service Unavailable\r\n%s: %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", wperfHeader, software, len(msg), msg)
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(nc, 16<<10))
}

// tcpPeerIP is the IP of a socket address as peerIP gives it: unmapped,
// without a zone, so a connection and its test count under one key.
func tcpPeerIP(a net.Addr) netip.Addr {
	ip, err := peerIP(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ip
}

// connKey files the request's connection in its context (http.Server's
// ConnContext), so a handler can charge it to the client a proxy names.
type connKey struct{}

func withConn(ctx context.Context, nc net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, nc)
}

// chargeClient charges the request's connection to the client's address,
// when a trusted proxy named one.
func (g *connGuard) chargeClient(hr *http.Request, a netip.Addr) error {
	gc, ok := hr.Context().Value(connKey{}).(*guardedConn)
	if !ok {
		return nil
	}
	return g.charge(gc, a)
}

// Token guessing: each failed token from an address makes its next 401
// come later, from authBaseDelay doubling up to authMaxDelay, until the
// address has had no failure for authForget. At most authTracked
// addresses are remembered. authMaxDelay stays below the client's
// firstAnswerWait, so that a slow 401 is never taken for a peer that
// does not answer at all.
const (
	authBaseDelay = 50 * time.Millisecond
	authMaxDelay  = 1500 * time.Millisecond
	authForget    = 10 * time.Minute
	authTracked   = 4096
)

// authGuard remembers recent token failures per address.
type authGuard struct {
	mu    sync.Mutex
	fails map[netip.Addr]authFails
}

type authFails struct {
	n    int
	last time.Time
}

func newAuthGuard() *authGuard { return &authGuard{fails: map[netip.Addr]authFails{}} }

// failed records a failure from a at now and returns how many a has had
// and how long its 401 waits.
func (g *authGuard) failed(a netip.Addr, now time.Time) (int, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f, ok := g.fails[a]
	if !ok || now.Sub(f.last) > authForget {
		f = authFails{}
		g.makeRoom(now)
	}
	f.n++
	f.last = now
	g.fails[a] = f
	return f.n, authDelay(f.n)
}

// makeRoom keeps the table within authTracked: it forgets stale entries
// and, if none is stale, one at random.
func (g *authGuard) makeRoom(now time.Time) {
	if len(g.fails) < authTracked {
		return
	}
	for a, f := range g.fails {
		if now.Sub(f.last) > authForget {
			delete(g.fails, a)
		}
	}
	for a := range g.fails {
		if len(g.fails) < authTracked {
			return
		}
		delete(g.fails, a)
	}
}

// passed forgets a's failures: the right token ends the slowdown.
func (g *authGuard) passed(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.fails, a)
}

// authDelay is the wait before the 401 of an address's nth failure.
func authDelay(n int) time.Duration {
	if n > 16 {
		return authMaxDelay
	}
	return min(authBaseDelay<<(n-1), authMaxDelay)
}

// sleepCtx waits for d, or less if ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// A kind of log line that an attacker can cause at will (refusals, failed
// tokens) gets at most logBurst lines per logWindow; the next line let
// through says how many were held back.
const (
	logBurst  = 5
	logWindow = 10 * time.Second
)

// logLimiter rations one kind of log line.
type logLimiter struct {
	mu      sync.Mutex
	start   time.Time
	shown   int
	dropped int
}

// allow reports whether a line may be written at now and, if so, how many
// were held back since the last one.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= logWindow {
		l.start, l.shown = now, 0
	}
	if l.shown >= logBurst {
		l.dropped++
		return false, 0
	}
	l.shown++
	held := l.dropped
	l.dropped = 0
	return true, held
}

// settleAfter is how long the server must have had no test running before
// it hands the memory of finished tests back to the OS. Go's scavenger
// would take minutes; an operator who looks at RSS after a crowd of
// clients, or an attack, should see the baseline again.
const settleAfter = 2 * time.Second

// settleWhenIdle (re)arms the settle timer when the last slot is freed;
// s.mu is held.
func (s *server) settleWhenIdle() {
	if s.running == 0 {
		s.settle.Reset(settleAfter)
	}
}

func (s *server) freeMemory() {
	s.mu.Lock()
	idle := s.running == 0
	s.mu.Unlock()
	if idle {
		debug.FreeOSMemory()
	}
}

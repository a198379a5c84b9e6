package main

// server.go is wperf -s: the HTTP server, its sessions (a test's control
// connection plus its streams, tied by the cookie), the caps that keep it
// from being "busy" for everyone, and the server's side of each test.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

type server struct {
	cfg  *config
	out  *lineWriter
	idle time.Duration

	mu       sync.Mutex
	sessions map[string]*session // by cookie, while streams may join
	running  int                 // tests and reverse traces holding a slot
	tracing  int                 // reverse traces running
	perAddr  map[netip.Addr]int  // tests holding a slot, by client address
	pings    int                 // probe connections open (ping.go)
	admitted int                 // tests ever accepted, for --one-off
	tests    sync.WaitGroup      // every test goroutine
	oneOff   chan struct{}       // closed after the first test with -1
	oneOnce  sync.Once
	ctx      context.Context // ends on shutdown

	traces   *traceLimiter // reverse traceroutes per client address
	resolver *net.Resolver // PTR names and geo lookups for reverse traces
	geo      *geoCache     // nil with --no-geo
	udp      *udpListener  // real UDP for UDP tests; nil with --no-udp

	conns  *connGuard   // connections per client address
	auth   *authGuard   // failed tokens per client address
	settle *time.Timer  // returns memory to the OS once the server is idle
	legacy legacyGroups // old clients' parallel connections (legacy_server.go)
	// Lines a client can cause at will are rationed.
	busyLog, refusedLog, authLog, connLog logLimiter
}

// runServer serves until ctx ends (SIGINT/SIGTERM) or, with -1, after one
// test; then it ends the running tests and returns nil.
func runServer(ctx context.Context, cfg *config, stdout io.Writer) error {
	out, err := openOutput(cfg, stdout)
	if err != nil {
		return err
	}
	defer out.Close()
	network := "tcp"
	if cfg.family != 0 {
		network += strconv.Itoa(cfg.family)
	}
	// --bind-dev binds the listener to its interface; accepted sockets
	// inherit it.
	lc := net.ListenConfig{Control: cfg.socketMarks().control}
	ln, err := lc.Listen(ctx, network, net.JoinHostPort(cfg.bind, strconv.Itoa(cfg.port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if ln, err = listenTLS(cfg, ln, out); err != nil {
		return err
	}
	return serve(ctx, cfg, ln, out)
}

// serve runs the server on a listener; tests call it directly.
func serve(ctx context.Context, cfg *config, ln net.Listener, out *lineWriter) error {
	// The server's own context ends once a shutdown is logged, so that
	// the lines of the tests it cuts short come after that one.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	s := &server{
		cfg:      cfg,
		out:      out,
		idle:     seconds2dur(cfg.idleTimeout),
		sessions: map[string]*session{},
		oneOff:   make(chan struct{}),
		ctx:      sctx,
		traces:   newTraceLimiter(cfg.reverseTraceLimit),
		resolver: lookupResolver(cfg.dnsServer),
		perAddr:  map[netip.Addr]int{},
		conns:    newConnGuard(cfg.maxConns, cfg.maxConnsPerIP, cfg.trustProxy != ""),
		auth:     newAuthGuard(),
	}
	if !cfg.noGeo {
		s.geo = newGeoCache(s.resolver)
	}
	s.settle = time.AfterFunc(time.Hour, s.freeMemory)
	s.settle.Stop()
	defer s.settle.Stop()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.idle,
		IdleTimeout:       s.idle,
		// An opening handshake needs a few hundred bytes; the default
		// (1 MiB) would let each slow client pin that much.
		MaxHeaderBytes: maxHeaderBytes,
		ConnContext:    withConn,
		// A port scan or a half-open client is not worth a log line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if !cfg.noUDP {
		s.udp = s.listenUDP(ln.Addr())
		if s.udp != nil {
			defer s.udp.close()
		}
	}
	ln = &guardedListener{Listener: ln, g: s.conns, refused: s.logTurnedAway, notHTTP: s.logNotHTTP, turning: make(chan struct{}, maxTurning)}
	if !cfg.json {
		out.printf("Server listening on %s (wperf %s, protocol %s)", ln.Addr(), version, subprotocolV1)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
		s.logShutdown()
	case <-s.oneOff:
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	cancel()
	// Close, not Shutdown: Shutdown waits up to 5 s for connections that
	// are still sending their request headers. Upgraded connections are
	// not net/http's any more; tests end through ctx.
	hs.Close()
	s.tests.Wait()
	return nil
}

// maxHeaderBytes bounds an HTTP request's header.
const maxHeaderBytes = 16 << 10

// ServeHTTP routes one request: the connection caps, the original wperf's
// clients (they authenticate in-band), then authentication, the echo
// endpoint and the wperf protocol.
func (s *server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	w.Header().Set(wperfHeader, software)
	peer, named := s.peerAddr(hr)
	addr, _ := peerIP(peer)
	if named {
		if err := s.conns.chargeClient(hr, addr); err != nil {
			s.logTurnedAway(addr, err)
			w.Header().Set("Connection", "close")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	if isUpgrade(hr) && !originAllowed(hr, s.cfg.allowOrigins) {
		s.logRationed(&s.refusedLog, "refused", peer, errCrossOrigin.Error()+": "+hr.Header.Get("Origin"))
		http.Error(w, errCrossOrigin.Error(), http.StatusForbidden)
		return
	}
	// The original wperf's clients send their token in-band.
	if isLegacyUpgrade(hr) {
		s.serveLegacy(w, hr)
		return
	}
	if !isUpgrade(hr) && !s.cfg.noWeb && servePage(w, hr, s.cfg.token != "") {
		return
	}
	if s.cfg.token != "" && !s.authorized(w, hr, peer, addr) {
		return
	}
	if !isUpgrade(hr) {
		if hr.URL.Path == "/" && hr.Method == http.MethodGet {
			fmt.Fprintf(w, "%s server: connect with wperf -c, or a WebSocket to /echo\n", software)
			return
		}
		http.NotFound(w, hr)
		return
	}
	if strings.HasSuffix(hr.URL.Path, "/echo") {
		s.tests.Add(1)
		defer s.tests.Done()
		upgradeEcho(s.ctx, w, hr, defaultMaxMessage, s.idle)
		return
	}
	if chooseSubprotocol(headerTokens(hr.Header, "Sec-WebSocket-Protocol"), []string{subprotocolV1}) == "" {
		http.Error(w, "this server speaks the "+subprotocolV1+" subprotocol; offer it in Sec-WebSocket-Protocol, or use /echo", http.StatusBadRequest)
		return
	}
	c, err := upgrade(w, hr, upgradeOptions{
		subprotocols: []string{subprotocolV1},
		connOptions:  connOptions{maxMessage: maxFirstMessage, readBuffer: 16 << 10},
	})
	if err != nil {
		return
	}
	s.handle(c, clientPeer{peer: peer, tcp: hr.RemoteAddr, named: named})
}

// clientPeer is who is on the other end of a connection.
type clientPeer struct {
	peer  string // the client: the TCP peer, or the address a trusted proxy names
	tcp   string // the TCP peer, which is the proxy when named
	named bool   // a trusted proxy named the client
}

// authorized checks the request's token (the header's, or a browser's in
// the subprotocol list: web.go). A wrong one is logged (without
// the token, and rationed) and answered 401 only after a wait that grows
// with the address's recent failures (authDelay), so guessing is slow.
func (s *server) authorized(w http.ResponseWriter, hr *http.Request, peer string, addr netip.Addr) bool {
	if requestTokenMatches(hr, s.cfg.token) {
		s.auth.passed(addr)
		return true
	}
	n, delay := s.auth.failed(addr, time.Now())
	s.logAuthFailure(peer, n)
	sleepCtx(hr.Context(), delay)
	w.Header().Set("WWW-Authenticate", `Bearer realm="wperf"`)
	http.Error(w, "authentication failed", http.StatusUnauthorized)
	return false
}

// tokenMatches compares a bearer token in constant time. The scheme name
// is case-insensitive (RFC 7235 §2.1), and one or more spaces may follow
// it (RFC 6750 §2.1).
func tokenMatches(header, token string) bool {
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return secretEqual(strings.TrimLeft(got, " "), token)
}

// The headers --trust-proxy may take the client's address from.
const (
	proxyXFF    = "x-forwarded-for"
	proxyRealIP = "x-real-ip"
)

// peerAddr is the client's address: the TCP peer, or with --trust-proxy
// what the reverse proxy in front of us says in the one header the
// operator chose. From X-Forwarded-For that is the last entry, the one
// our proxy appended: the entries before it came from the client and
// could name anyone. named is false when the header is missing or names
// no address; peer is then the TCP peer, the other header never.
func (s *server) peerAddr(hr *http.Request) (peer string, named bool) {
	var v string
	switch s.cfg.trustProxy {
	case proxyXFF:
		if xff := headerTokens(hr.Header, "X-Forwarded-For"); len(xff) > 0 {
			v = xff[len(xff)-1]
		}
	case proxyRealIP:
		v = strings.TrimSpace(hr.Header.Get("X-Real-IP"))
	}
	if a, err := peerIP(v); err == nil {
		return a.String(), true
	}
	return hr.RemoteAddr, false
}

// handle reads a new connection's first message, which says whether it
// is a test's control connection or one of its streams.
func (s *server) handle(c *wsConn, who clientPeer) {
	peer := who.peer
	c.SetReadDeadline(time.Now().Add(s.idle))
	stop := context.AfterFunc(s.ctx, c.Abort) // shutdown does not wait for it
	op, msg, err := c.ReadMessage(nil)
	stop()
	if err != nil {
		c.Abort()
		return
	}
	kind, err := controlType(op, msg)
	if err != nil {
		c.Close(statusPolicyViolation, err.Error())
		return
	}
	switch kind {
	case msgTest:
		var req testRequest
		if err := json.Unmarshal(msg, &req); err != nil {
			refuse(c, statusPolicyViolation, "bad test request: "+err.Error())
			return
		}
		s.tests.Add(1)
		defer s.tests.Done()
		s.control(c, &req, peer)
	case msgStream:
		var hello streamHello
		if err := json.Unmarshal(msg, &hello); err != nil {
			c.Close(statusPolicyViolation, "bad stream hello")
			return
		}
		s.join(c, hello)
	case msgTrace:
		var req traceRequest
		if err := json.Unmarshal(msg, &req); err != nil {
			refuse(c, statusPolicyViolation, "bad trace request: "+err.Error())
			return
		}
		s.tests.Add(1)
		defer s.tests.Done()
		s.reverseTrace(c, &req, who)
	case msgPing:
		s.tests.Add(1)
		defer s.tests.Done()
		s.ping(c, msg, peer)
	default:
		c.Close(statusPolicyViolation, "unexpected first message "+strconv.Quote(kind))
	}
}

// admit checks a request against the server's caps and, when it fits,
// takes a slot and registers the session.
func (s *server) admit(req *testRequest, peer string) (*session, statusCode, error) {
	if err := req.check(); err != nil {
		return nil, statusPolicyViolation, err
	}
	if total := req.plannedSeconds(); total > s.cfg.maxDuration {
		return nil, statusPolicyViolation, fmt.Errorf("a %g s test exceeds this server's limit of %g s (--max-duration)", total, s.cfg.maxDuration)
	}
	if req.Parallel > s.cfg.maxParallel {
		return nil, statusPolicyViolation, fmt.Errorf("%d parallel streams exceed this server's limit of %d (--max-parallel)", req.Parallel, s.cfg.maxParallel)
	}
	if total := req.Rate * float64(req.streamCount()); req.udp() && total > s.cfg.maxUDPRate {
		return nil, statusPolicyViolation, fmt.Errorf("%s/sec of UDP exceeds this server's limit of %s/sec (--max-udp-rate)",
			formatUnits(total/8, 'a'), formatUnits(s.cfg.maxUDPRate/8, 'a'))
	}
	addr, _ := peerIP(peer)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running >= s.cfg.maxClients || (s.cfg.oneOff && s.admitted > 0) {
		return nil, statusTryAgainLater, fmt.Errorf("server is busy: %d tests running, its limit (--max-clients or --one-off); try again later", s.running)
	}
	if n := s.perAddr[addr]; n >= s.cfg.maxClientsPerIP {
		return nil, statusTryAgainLater, fmt.Errorf("server is busy: %d tests from your address are running, its limit per client (--max-clients-per-ip); try again later", n)
	}
	if _, dup := s.sessions[req.Cookie]; dup {
		return nil, statusPolicyViolation, errors.New("a test with this cookie is already running")
	}
	sess := &session{req: *req, peer: peer, addr: addr, joined: make(chan joinedStream, req.streamCount())}
	if req.Direction != dirDownload {
		sess.pendingUp = req.Parallel
	}
	if req.Direction != dirUpload {
		sess.pendingDown = req.Parallel
	}
	s.sessions[req.Cookie] = sess
	s.running++
	s.perAddr[addr]++
	s.admitted++
	s.conns.reserve(addr, sess.connections())
	return sess, 0, nil
}

// listenUDP opens the shared UDP socket on the TCP listener's address
// and port. Without it the server still runs, and UDP tests fall back to
// WebSocket.
func (s *server) listenUDP(tcp net.Addr) *udpListener {
	l, err := listenUDPWith(tcp.String(), s.cfg.socketMarks().control)
	if err != nil {
		s.out.printf("no real UDP (%v): UDP tests will run over WebSocket", err)
		return nil
	}
	return l
}

// release frees a test's slot; with -1 it also ends the server.
func (s *server) release(sess *session) {
	s.mu.Lock()
	if sess.released {
		s.mu.Unlock()
		return
	}
	sess.released = true
	if s.sessions[sess.req.Cookie] == sess {
		delete(s.sessions, sess.req.Cookie)
	}
	s.running--
	s.settleWhenIdle()
	if s.perAddr[sess.addr]--; s.perAddr[sess.addr] == 0 {
		delete(s.perAddr, sess.addr)
	}
	s.conns.reserve(sess.addr, -sess.connections())
	// Streams that joined after the test gave up on them.
	for len(sess.joined) > 0 {
		(<-sess.joined).conn.Abort()
	}
	s.mu.Unlock()
	if s.cfg.oneOff {
		s.oneOnce.Do(func() { close(s.oneOff) })
	}
}

// logJSON writes one record of a -J server's log: one JSON object per
// line, never prefixed by --timestamps, so each line stays valid JSON.
func (s *server) logJSON(rec any) {
	b, _ := json.Marshal(rec)
	s.out.raw(string(b) + "\n")
}

// logShutdown says the server is stopping (on SIGINT or SIGTERM), and how
// many tests that cuts short.
func (s *server) logShutdown() {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if s.cfg.json {
		s.logJSON(map[string]any{"event": "shutdown", "tests_cut_short": running})
		return
	}
	s.out.println(fmt.Sprintf("%s server shutting down (%d tests cut short)", time.Now().UTC().Format(time.RFC3339), running))
}

// logRefusal notes a refused test in the server's log; busy refusals
// (code 1013) and the others are rationed apart.
func (s *server) logRefusal(peer string, code statusCode, err error) {
	lim := &s.refusedLog
	if code == statusTryAgainLater {
		lim = &s.busyLog
	}
	s.logRationed(lim, "refused", peer, err.Error())
}

// logTurnedAway notes a connection turned away by a cap.
func (s *server) logTurnedAway(a netip.Addr, err error) {
	s.logRationed(&s.connLog, "turned away", a.String(), err.Error())
}

// logNotHTTP notes a client closed because its first bytes were no HTTP
// request; they are quoted, escaped, since they say what it was.
func (s *server) logNotHTTP(a netip.Addr, first []byte) {
	s.logRationed(&s.connLog, "closed", a.String(), fmt.Sprintf("its first bytes %q are not an HTTP request (an iperf3 client?)", first))
}

// logAuthFailure notes a wrong or missing token, never the token itself.
func (s *server) logAuthFailure(peer string, n int) {
	s.logRationed(&s.authLog, "authentication failed", peer, fmt.Sprintf("wrong or missing token (%d from this address recently)", n))
}

// logRationed writes one log line of a kind the client controls, within
// lim's ration; the line says how many like it were held back before it.
func (s *server) logRationed(lim *logLimiter, event, peer, why string) {
	ok, held := lim.allow(time.Now())
	if !ok {
		return
	}
	if s.cfg.json {
		rec := map[string]any{"event": strings.ReplaceAll(event, " ", "_"), "peer": peer, "error": why}
		if held > 0 {
			rec["held_back"] = held
		}
		s.logJSON(rec)
		return
	}
	line := fmt.Sprintf("%s %s %s: %s", time.Now().UTC().Format(time.RFC3339), event, peer, why)
	if held > 0 {
		line += fmt.Sprintf(" (%d more like it held back)", held)
	}
	s.out.println(line)
}

// serveEcho returns every text and binary message unchanged, as one frame,
// until the peer closes or stays silent for idle. Any WebSocket client
// reaches it at the path /echo.
func serveEcho(c *wsConn, idle time.Duration) error {
	var buf []byte
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		op, msg, err := c.ReadMessage(buf)
		if err != nil {
			var ce *closeError
			if errors.As(err, &ce) && !ce.Local {
				return nil
			}
			c.Abort()
			return err
		}
		c.SetWriteDeadline(time.Now().Add(idle))
		if err := c.WriteMessage(op, msg); err != nil {
			c.Abort()
			return err
		}
		// An idle connection keeps a small buffer only: its last message
		// may have been 16 MiB.
		buf = nil
		if cap(msg) <= echoKeep {
			buf = msg
		}
	}
}

// echoKeep is the largest buffer an echo connection keeps between
// messages.
const echoKeep = 64 << 10

// upgradeEcho serves one /echo request until the client leaves or ctx
// ends (server shutdown).
func upgradeEcho(ctx context.Context, w http.ResponseWriter, hr *http.Request, maxMessage int64, idle time.Duration) {
	c, err := upgrade(w, hr, upgradeOptions{connOptions: connOptions{maxMessage: maxMessage, readBuffer: 64 << 10}})
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close(statusGoingAway, "server shutting down") })
	defer stop()
	serveEcho(c, idle)
}

// echoHandler is the /echo endpoint alone, on every path: tests use it to
// meet the engine without the rest of the server.
func echoHandler(maxMessage int64, idle time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		upgradeEcho(context.Background(), w, hr, maxMessage, idle)
	})
}

// splitPeer splits "host:port"; a bare address (from a proxy header)
// comes back with port 0.
func splitPeer(peer string) (string, int) {
	h, p, err := net.SplitHostPort(peer)
	if err != nil {
		return peer, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// logTest writes the server's record of one test: one text line, or one
// JSON document on one line with -J. cutShort is why the test ended
// early ("" when it ran its course); runErr is the failure that ended it.
func (s *server) logTest(v *testView, cutShort string, runErr error) {
	if s.cfg.json {
		doc := v.document()
		switch {
		case runErr != nil && cutShort != "":
			doc.Error = cutShort
		case runErr != nil:
			doc.Error = runErr.Error()
		}
		s.logJSON(doc)
		return
	}
	bytes, secs := v.localTotals()
	line := fmt.Sprintf("%s %s %s P=%d %.2f sec %s %s",
		v.started.UTC().Format(time.RFC3339), net.JoinHostPort(v.peerHost, strconv.Itoa(v.peerPort)),
		v.req.Direction, v.req.Parallel, secs, formatUnits(float64(bytes), 'A'), formatUnits(rate(bytes, secs), cmp.Or(s.cfg.format, 'a'))+"/sec")
	line += logRequested(v.req) + logRetransmits(v) + logDirections(v) + v.logUDP() + v.logLatency()
	switch {
	case runErr != nil && cutShort == "":
		line += " cut short by an error: " + runErr.Error()
	case cutShort != "":
		line += " cut short: " + cutShort
	}
	s.out.println(line)
}

// logRequested is what the client asked for, in the log's key=value
// fields: the protocol, the end condition (seconds, bytes or blocks) and
// the omitted seconds.
func logRequested(req *testRequest) string {
	end := fmt.Sprintf("time=%g", req.Time)
	switch {
	case req.Bytes > 0:
		end = fmt.Sprintf("bytes=%d", req.Bytes)
	case req.Blocks > 0:
		end = fmt.Sprintf("blocks=%d", req.Blocks)
	}
	return fmt.Sprintf(" proto=%s %s omit=%g", req.Protocol, end, req.Omit)
}

// logRetransmits is the senders' TCP retransmits, summed over both ends'
// sending streams (the client's came with its results); "" where neither
// end could read TCP_INFO.
func logRetransmits(v *testView) string {
	var retr int64
	seen := false
	for _, res := range [][]streamResult{v.local, v.remote} {
		for _, st := range res {
			if st.Sender && st.TCP != nil {
				retr += st.TCP.Retransmits
				seen = true
			}
		}
	}
	if !seen {
		return ""
	}
	return fmt.Sprintf(" retr=%d", retr)
}

// logDirections splits a --bidir test's total by direction, as this end
// counted it: up is client to server.
func logDirections(v *testView) string {
	if !v.bidir() {
		return ""
	}
	var up, down int64
	for _, st := range v.local {
		if st.Sender {
			down += st.Bytes
		} else {
			up += st.Bytes
		}
	}
	unit := func(n int64) string { return strings.ReplaceAll(formatUnits(float64(n), 'A'), " ", "") }
	return " up=" + unit(up) + " down=" + unit(down)
}

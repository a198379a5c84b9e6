package main

// server.go is wperf -s: the HTTP server, its sessions (a test's control
// connection plus its streams, tied by the cookie), the caps that keep it
// from being "busy" for everyone, and the server's side of each test.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
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
	running  int                 // tests holding a slot
	admitted int                 // tests ever accepted, for --one-off
	tests    sync.WaitGroup      // every test goroutine
	oneOff   chan struct{}       // closed after the first test with -1
	oneOnce  sync.Once
	ctx      context.Context // ends on shutdown

	traces   *traceLimiter // reverse traceroutes per client address
	resolver *net.Resolver // PTR names and geo lookups for reverse traces
	geo      *geoCache     // nil with --no-geo
	udp      *udpListener  // real UDP for UDP tests; nil with --no-udp
}

// session is a test from its request to its end.
type session struct {
	req    testRequest
	peer   string // the client's address as seen here
	joined chan joinedStream
	// streams still expected in each direction; guarded by server.mu
	pendingUp, pendingDown int
	released               bool // its slot is free again; guarded by server.mu
}

// expect reserves a place for a joining stream of direction dir.
func (sess *session) expect(dir string) bool {
	switch {
	case dir == streamUp && sess.pendingUp > 0:
		sess.pendingUp--
	case dir == streamDown && sess.pendingDown > 0:
		sess.pendingDown--
	default:
		return false
	}
	return true
}

type joinedStream struct {
	conn  *wsConn
	hello streamHello
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
	ln, err := net.Listen(network, net.JoinHostPort(cfg.bind, strconv.Itoa(cfg.port)))
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &server{
		cfg:      cfg,
		out:      out,
		idle:     seconds2dur(cfg.idleTimeout),
		sessions: map[string]*session{},
		oneOff:   make(chan struct{}),
		ctx:      ctx,
		traces:   newTraceLimiter(cfg.reverseTraceLimit),
		resolver: lookupResolver(cfg.dnsServer),
	}
	if !cfg.noGeo {
		s.geo = newGeoCache(s.resolver)
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.idle,
		IdleTimeout:       s.idle,
		// A port scan or a half-open client is not worth a log line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if !cfg.noUDP {
		s.udp = s.listenUDP(ln.Addr())
		if s.udp != nil {
			defer s.udp.close()
		}
	}
	if !cfg.json {
		out.printf("Server listening on %s (wperf %s, protocol %s)", ln.Addr(), version, subprotocolV1)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
	case <-s.oneOff:
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), closeWait)
	defer done()
	hs.Shutdown(shutdownCtx)
	s.tests.Wait()
	return nil
}

// ServeHTTP routes one request: authentication first, then the echo
// endpoint, then the wperf protocol.
func (s *server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	if s.cfg.token != "" && !tokenMatches(hr.Header.Get("Authorization"), s.cfg.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="wperf"`)
		http.Error(w, "authentication failed", http.StatusUnauthorized)
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
		connOptions:  connOptions{maxMessage: maxControlMessage, readBuffer: 16 << 10},
	})
	if err != nil {
		return
	}
	s.handle(c, s.peerAddr(hr))
}

// tokenMatches compares a bearer token in constant time. Hashing both
// sides first keeps the comparison's length fixed too.
func tokenMatches(header, token string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// peerAddr is the client's address: the TCP peer, or with --trust-proxy
// what the reverse proxy in front of us says. That is the last
// X-Forwarded-For entry, the one our proxy appended: the entries before it
// came from the client and could name anyone.
func (s *server) peerAddr(hr *http.Request) string {
	if s.cfg.trustProxy {
		if xff := headerTokens(hr.Header, "X-Forwarded-For"); len(xff) > 0 {
			return xff[len(xff)-1]
		}
		if xr := strings.TrimSpace(hr.Header.Get("X-Real-IP")); xr != "" {
			return xr
		}
	}
	return hr.RemoteAddr
}

// handle reads a new connection's first message, which says whether it
// is a test's control connection or one of its streams.
func (s *server) handle(c *wsConn, peer string) {
	c.SetReadDeadline(time.Now().Add(s.idle))
	_, msg, err := c.ReadMessage(nil)
	if err != nil {
		c.Abort()
		return
	}
	kind, err := messageType(msg)
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
		s.reverseTrace(c, &req, peer)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running >= s.cfg.maxClients || (s.cfg.oneOff && s.admitted > 0) {
		return nil, statusTryAgainLater, fmt.Errorf("server is busy: %d tests running, its limit (--max-clients or --one-off); try again later", s.running)
	}
	if _, dup := s.sessions[req.Cookie]; dup {
		return nil, statusPolicyViolation, errors.New("a test with this cookie is already running")
	}
	sess := &session{req: *req, peer: peer, joined: make(chan joinedStream, req.streamCount())}
	if req.Direction != dirDownload {
		sess.pendingUp = req.Parallel
	}
	if req.Direction != dirUpload {
		sess.pendingDown = req.Parallel
	}
	s.sessions[req.Cookie] = sess
	s.running++
	s.admitted++
	return sess, 0, nil
}

// listenUDP opens the shared UDP socket on the TCP listener's address
// and port. Without it the server still runs, and UDP tests fall back to
// WebSocket.
func (s *server) listenUDP(tcp net.Addr) *udpListener {
	l, err := listenUDP(tcp.String())
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
	// Streams that joined after the test gave up on them.
	for len(sess.joined) > 0 {
		(<-sess.joined).conn.Abort()
	}
	s.mu.Unlock()
	if s.cfg.oneOff {
		s.oneOnce.Do(func() { close(s.oneOff) })
	}
}

// join hands a stream connection to its waiting test.
func (s *server) join(c *wsConn, hello streamHello) {
	s.mu.Lock()
	sess := s.sessions[hello.Cookie]
	ok := sess != nil && sess.expect(hello.Direction)
	if ok {
		// Never blocks: the channel has room for every expected stream.
		sess.joined <- joinedStream{conn: c, hello: hello}
	}
	s.mu.Unlock()
	if !ok {
		c.Close(statusPolicyViolation, "no test is waiting for this stream")
	}
}

// control runs one test from the server's side.
func (s *server) control(c *wsConn, req *testRequest, peer string) {
	sess, code, err := s.admit(req, peer)
	if err != nil {
		s.logRefusal(peer, err)
		refuse(c, code, err.Error())
		return
	}
	defer s.release(sess)
	plan := s.planUDP(req)
	defer plan.end()
	if err := sendJSON(c, acceptMsg{Type: msgAccept, Version: protocolVersion, Server: software, Cookie: req.Cookie, UDP: plan.offer, Via: c.forwardedBy}); err != nil {
		c.Abort()
		return
	}
	if req.udp() {
		if err := plan.awaitTransport(c); err != nil {
			s.logRefusal(peer, err)
			refuse(c, statusPolicyViolation, err.Error())
			return
		}
	}
	var streams []joinedStream
	if plan.transport != "udp" {
		streams, err = s.collect(sess)
	}
	defer func() {
		for _, st := range streams {
			st.conn.Abort()
		}
	}()
	if err != nil {
		s.logRefusal(peer, err)
		refuse(c, statusPolicyViolation, err.Error())
		return
	}
	st := &serverTest{srv: s, ctrl: c, sess: sess, streams: streams, udp: plan, startedAt: time.Now()}
	st.run()
}

// collect waits until every stream of the test has joined.
func (s *server) collect(sess *session) ([]joinedStream, error) {
	want := sess.req.streamCount()
	timer := time.NewTimer(streamJoinTimeout)
	defer timer.Stop()
	var got []joinedStream
	for len(got) < want {
		select {
		case js := <-sess.joined:
			got = append(got, js)
		case <-timer.C:
			return got, fmt.Errorf("only %d of %d streams connected within %v", len(got), want, streamJoinTimeout)
		case <-s.ctx.Done():
			return got, errors.New("server shutting down")
		}
	}
	ids := map[int]bool{}
	for _, js := range got {
		if ids[js.hello.ID] {
			return got, fmt.Errorf("two streams with id %d", js.hello.ID)
		}
		ids[js.hello.ID] = true
	}
	return got, nil
}

// serverTest is one accepted test with all its streams.
type serverTest struct {
	srv       *server
	ctrl      *wsConn
	sess      *session
	streams   []joinedStream
	udp       *udpPlan // a UDP test's transport
	startedAt time.Time
	engine    *testRun
	hardStop  time.Duration
	unhook    func() bool // removes the shutdown hook measure installs
	byeOnce   sync.Once
}

func (t *serverTest) run() {
	run, err := t.prepare()
	if err != nil {
		refuse(t.ctrl, statusPolicyViolation, err.Error())
		return
	}
	if err := sendJSON(t.ctrl, startMsg{Type: msgStart}); err != nil {
		t.ctrl.Abort()
		return
	}
	theirs, runErr := t.measure(run)
	defer t.unhook()
	t.finish(run, theirs, runErr)
}

// prepare applies the client's socket options and limits to every stream
// and builds the run.
func (t *serverTest) prepare() (*testRun, error) {
	s, req := t.srv, &t.sess.req
	opts := sockOpts{window: req.Window, congestion: req.Congestion, noDelay: req.NoDelay}
	t.hardStop = req.hardStop(s.idle, seconds2dur(s.cfg.maxDuration)+s.idle)
	run := newTestRun(req, s.idle, t.hardStop)
	run.keepIntervals = s.cfg.json || req.ServerOutput != ""
	t.engine = run
	if run.udp && run.rate == 0 {
		// An unpaced test's server sends no faster than its UDP cap.
		run.rate = s.cfg.maxUDPRate / float64(req.streamCount())
	}
	if t.udp.transport == "udp" {
		run.streams = t.udp.streams(req, s.udp.conn.LocalAddr())
		run.onSendersDone = func() { sendJSON(t.ctrl, sentMsg()) }
		return run, nil
	}
	for _, js := range t.streams {
		if err := opts.applyAccepted(js.conn.NetConn()); err != nil {
			return nil, err
		}
		js.conn.SetLimits(streamMaxMessage(req.Length), streamReadBuffer(req.Length, len(t.streams)))
		st := &stream{id: js.hello.ID, sending: js.hello.Direction == streamDown, conn: js.conn}
		if run.udp {
			st.dgram = newDatagramStream(!st.sending)
		}
		run.streams = append(run.streams, st)
	}
	sortStreams(run.streams)
	return run, nil
}

// measure runs the test and waits for the client's results. On server
// shutdown it tells the client and drops the streams, so no test keeps
// the server waiting.
func (t *serverTest) measure(run *testRun) (*resultsMsg, error) {
	s := t.srv
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	t.unhook = context.AfterFunc(s.ctx, func() {
		t.goodbye()
		abortAll(run.streams)
	})
	watch := watchControl(t.ctrl, t.hardStop+s.idle, "the client", controlEvents{stop: run.stop, sent: run.peerSendersDone, fail: func() {
		cancel()
		run.stop()
	}})
	if err := run.run(ctx); err != nil {
		return nil, err
	}
	select {
	case theirs := <-watch.results:
		return theirs, nil
	case err := <-watch.failed:
		return nil, err
	case <-time.After(s.idle):
		return nil, errors.New("client sent no results")
	}
}

// goodbye tells the client, once, that the server is shutting down.
func (t *serverTest) goodbye() {
	t.byeOnce.Do(func() { sendJSON(t.ctrl, refuseMsg{Type: msgError, Error: "server shutting down"}) })
}

// finish logs the test, frees its slot and sends our results, or the
// reason it failed.
func (t *serverTest) finish(run *testRun, theirs *resultsMsg, runErr error) {
	s, req := t.srv, &t.sess.req
	view := t.view(theirs)
	shuttingDown := s.ctx.Err() != nil
	if runErr != nil && !shuttingDown {
		// A client that vanished never answers the close handshake below,
		// and waiting for it must not keep the next client out; so the
		// slot is free by the time the failure is logged. (With -1,
		// releasing shuts the server down: no goodbye on top of ours.)
		t.unhook()
		s.release(t.sess)
	}
	s.logTest(view, runErr)
	switch {
	case runErr != nil && shuttingDown:
		// The client has been told (goodbye waits for that); a close
		// handshake would wait for it while readControl holds the
		// connection, and hold up the shutdown.
		t.goodbye()
		t.ctrl.Abort()
		return
	case runErr != nil:
		refuse(t.ctrl, statusInternalError, "test failed: "+runErr.Error())
		return
	}
	mine := &resultsMsg{Type: msgResults, Streams: run.summaries(), CPU: run.cpu, Congestion: run.congestion}
	switch req.ServerOutput {
	case "json":
		mine.ServerJSON, _ = json.Marshal(view.document())
	case "text":
		mine.ServerText = view.text()
	}
	if err := sendJSON(t.ctrl, mine); err != nil {
		t.ctrl.Abort()
		return
	}
	// The test is over: free its slot before the close handshake, so the
	// client's next test, which may start the moment ours ends, finds it.
	t.unhook()
	s.release(t.sess)
	// The client closes the control connection once it has our results.
	t.ctrl.SetReadDeadline(time.Now().Add(s.idle))
	t.ctrl.Close(statusNormal, "done")
}

// logRefusal notes a refused test in the server's log.
func (s *server) logRefusal(peer string, err error) {
	if s.cfg.json {
		b, _ := json.Marshal(map[string]string{"event": "refused", "peer": peer, "error": err.Error()})
		s.out.println(string(b))
		return
	}
	s.out.printf("%s refused %s: %v", time.Now().UTC().Format(time.RFC3339), peer, err)
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
		buf = msg
	}
}

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

// view assembles the server's report of a test.
func (t *serverTest) view(client *resultsMsg) *testView {
	v := &testView{
		req:      &t.sess.req,
		isServer: true,
		local:    t.engine.results(),
		localCPU: t.engine.cpu,
		started:  t.startedAt,
		url:      "",
	}
	v.peerHost, v.peerPort = splitPeer(t.sess.peer)
	v.localCong = t.engine.congestion
	v.conns, v.sockInfo = t.engine.connections()
	v.transport, v.transportReason = t.udp.transport, t.udp.reason
	v.reach = serverReach(t.ctrl)
	if client != nil {
		v.remote = client.Streams
		v.remoteCPU = client.CPU
		v.remoteCong = client.Congestion
	}
	return v
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
// JSON document on one line with -J.
func (s *server) logTest(v *testView, runErr error) {
	if s.cfg.json {
		doc := v.document()
		if runErr != nil {
			doc.Error = runErr.Error()
		}
		b, _ := json.Marshal(doc)
		s.out.raw(string(b) + "\n")
		return
	}
	var bytes int64
	var secs float64
	for _, res := range v.local {
		bytes += res.Bytes
		secs = max(secs, res.Seconds)
	}
	line := fmt.Sprintf("%s %s %s P=%d %.2f sec %s %s",
		v.started.UTC().Format(time.RFC3339), net.JoinHostPort(v.peerHost, strconv.Itoa(v.peerPort)),
		v.req.Direction, v.req.Parallel, secs, formatUnits(float64(bytes), 'A'), formatUnits(rate(bytes, secs), 'a')+"/sec")
	line += v.logUDP()
	if runErr != nil {
		line += " error: " + runErr.Error()
	}
	s.out.println(line)
}

package main

// client.go is wperf -c: it asks the server for a test, connects every
// stream, starts them together, moves the bytes, and collects both
// sides' counts for the report.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Errors the client reports in words its users know from iperf3.
var (
	errAuthFailed  = errors.New("authentication failed (wrong or missing --token)")
	errInterrupted = errors.New("interrupt - the test was cut short")
)

func runClient(ctx context.Context, cfg *config, stdout io.Writer) error {
	out, err := openOutput(cfg, stdout)
	if err != nil {
		return err
	}
	defer out.Close()
	// The original wperf's protocol (legacy_client.go): asked for, or
	// once, when the server turns out to be an old wperf.
	if cfg.legacy {
		return runLegacy(ctx, cfg, out, "")
	}
	if cfg.reverseTrace {
		if err := runReverseTrace(ctx, cfg, out); !errors.Is(err, errOldServer) {
			return err
		}
		return retryLegacy(ctx, cfg, out)
	}
	if cfg.ping {
		if err := runPing(ctx, cfg, out); !errors.Is(err, errOldServer) {
			return err
		}
		return retryLegacy(ctx, cfg, out)
	}
	rep := newReporter(cfg, out)
	t := &clientTest{cfg: cfg, rep: rep, idle: seconds2dur(cfg.idleTimeout)}
	if err := t.run(ctx); !errors.Is(err, errOldServer) {
		return rep.finish(err)
	}
	return retryLegacy(ctx, cfg, out)
}

type clientTest struct {
	cfg    *config
	rep    *reporter
	idle   time.Duration
	url    *url.URL
	req    testRequest
	ctrl   *wsConn
	engine *testRun
	// A UDP test's real-UDP offer, and how its datagrams travel.
	offer           *udpOffer
	transport       string
	transportReason string
	// Latency under load: the probes and, after the run, their report.
	probes    *latencyProber
	latency   *latencyReport
	serverVia string // the reverse proxy the server saw, from its accept
	omitMarks bool   // the server agreed to mark the omit's end in-band
	// The first stream socket's buffer sizes before its connect, for
	// start.sndbuf_actual and rcvbuf_actual (bufferSizes).
	buffersOnce    sync.Once
	sndbuf, rcvbuf int
}

// targetURL turns -c and -p into the server's URL (parseTarget, in
// reach.go, has the forms).
func targetURL(cfg *config) (*url.URL, error) {
	return parseTarget(cfg.host, cfg.port, cfg.set["port"])
}

// requestFrom builds the test request from the options.
func requestFrom(cfg *config) testRequest {
	req := testRequest{
		Type:       msgTest,
		Version:    protocolVersion,
		Cookie:     newCookie(),
		Direction:  dirUpload,
		Protocol:   "tcp",
		Time:       cfg.duration,
		Bytes:      cfg.bytes,
		Blocks:     cfg.blocks,
		Length:     cfg.length,
		Parallel:   cfg.parallel,
		Omit:       cfg.omit,
		Interval:   cfg.interval,
		Window:     cfg.window,
		NoDelay:    cfg.noDelay || cfg.udp, // Nagle would delay datagrams sent over WebSocket
		Congestion: cfg.congestion,
		MSS:        cfg.mss,
		ZeroCopy:   cfg.set["zerocopy"],
		Client:     software,
	}
	req.NotSentLowat = cfg.notSentLowat
	req.OmitMark = cfg.omit > 0 && !cfg.udp
	req.Rate, req.FQRate, req.TOS, req.ExtraData = cfg.rate, cfg.fqRate, max(cfg.tos, 0), cfg.extraData
	if cfg.udp {
		req.Protocol, req.UDPTransport = "udp", cfg.udpTransport
	}
	switch {
	case cfg.reverse:
		req.Direction = dirDownload
	case cfg.bidir:
		req.Direction = dirBidir
	}
	if cfg.getServerOutput {
		req.ServerOutput = "text"
		if cfg.json || cfg.jsonStream {
			req.ServerOutput = "json"
		}
	}
	return req
}

// controlDialOptions are the options of a connection to the server that
// carries control messages: the subprotocol, the token, -B and -4/-6.
func controlDialOptions(cfg *config, control sockControl) dialOptions {
	return dialOptionsFrom(cfg, control, cfg.localAddr(0))
}

// localAddr is where -B and a port (--cport) bind a connection; nil
// leaves the choice to the kernel.
func (c *config) localAddr(port int) *net.TCPAddr {
	if c.bind == "" && port == 0 {
		return nil
	}
	return &net.TCPAddr{IP: net.ParseIP(c.bind), Port: port}
}

// dialOptionsFrom is controlDialOptions with the local address to bind
// (nil: none, or the control function binds); every connection gets the
// test's socket marks (-S, --bind-dev, --snd-timeout) before it connects.
func dialOptionsFrom(cfg *config, control sockControl, local *net.TCPAddr) dialOptions {
	marks := cfg.socketMarks()
	marks.reuseAddr = local != nil && local.Port > 0
	d := net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		if err := marks.control(network, address, rc); err != nil || control == nil {
			return err
		}
		return control(network, address, rc)
	}}
	if local != nil {
		d.LocalAddr = local
	}
	network := "tcp"
	if cfg.family != 0 {
		network += strconv.Itoa(cfg.family)
	}
	opt := dialOptions{
		subprotocols: []string{subprotocolV1},
		header:       http.Header{},
		connOptions:  connOptions{maxMessage: maxReportMessage},
		dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				if err = marks.afterDial(nc); err != nil {
					nc.Close()
					return nil, err
				}
			}
			return nc, err
		},
	}
	if cfg.token != "" {
		opt.header.Set("Authorization", "Bearer "+cfg.token)
	}
	return withReach(cfg, opt)
}

// sockControl is a dialer's hook for socket options set before connect.
type sockControl = func(network, address string, rc syscall.RawConn) error

// dialServer opens one connection to the server at u, turning handshake
// refusals into the messages users need.
func dialServer(ctx context.Context, cfg *config, u *url.URL, opt dialOptions) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, seconds2dur(cfg.connectTimeout))
	defer cancel()
	c, err := dialWS(ctx, u.String(), opt)
	var he *handshakeError
	switch {
	case err == nil && len(opt.subprotocols) > 0 && c.subprotocol == "":
		c.Close(statusNormal, "no common subprotocol")
		return nil, errOldServer
	case err == nil:
		return c, nil
	case errors.As(err, &he) && he.Wperf && he.Status == http.StatusUnauthorized:
		return nil, errAuthFailed
	case errors.As(err, &he) && !he.Wperf:
		return nil, fmt.Errorf("%s: %w", u.Host, err)
	case errors.As(err, &he):
		return nil, fmt.Errorf("server %s refused the connection: %w", u.Host, err)
	case errors.Is(err, errNotWperf):
		return nil, err
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("unable to connect to server %s: no answer within %gs (--connect-timeout)", u.Host, cfg.connectTimeout)
	case errors.Is(err, syscall.ECONNREFUSED) && cfg.reach.route == nil:
		return nil, fmt.Errorf("unable to connect to server %s: connection refused: is `wperf -s` running on %s, port %s?", u.Host, u.Hostname(), u.Port())
	}
	return nil, fmt.Errorf("unable to connect to server %s: %w", u.Host, err)
}

// socketMarks are the options every socket of the client's test gets.
func (c *config) socketMarks() socketMarks {
	return socketMarks{tos: max(c.tos, 0), bindDev: c.bindDev, userTimeout: c.sndTimeout}
}

// sockOpts are a stream's options; a sending stream of a paced test also
// gets the kernel's pacing cap.
func (t *clientTest) sockOpts(sending bool) sockOpts {
	o := sockOpts{window: t.cfg.window, mss: t.cfg.mss, congestion: t.cfg.congestion, noDelay: t.req.NoDelay, notSentLowat: t.cfg.notSentLowat, flowLabel: t.cfg.flowLabel}
	if sending && !t.req.udp() && (t.req.Rate > 0 || t.req.FQRate > 0) {
		o.pacingRate = kernelPacingFor(t.req.Rate, t.req.FQRate)
	}
	return o
}

// dial opens the control connection, or with a stream number (from 1) a
// stream, which also gets the socket options, a read buffer sized for the
// test and, with --cport, its own local port.
func (t *clientTest) dial(ctx context.Context, stream int, sending bool) (*wsConn, error) {
	if stream == 0 {
		return dialServer(ctx, t.cfg, t.url, controlDialOptions(t.cfg, nil))
	}
	port := 0
	if t.cfg.cport > 0 {
		port = t.cfg.cport + stream - 1
	}
	so, local := t.sockOpts(sending), t.cfg.localAddr(port)
	if so.flowLabel > 0 {
		// The stream connects in its control function, which binds it first.
		so.local, local = local, nil
	}
	control := func(network, address string, rc syscall.RawConn) error {
		if err := so.preConnect(network, address, rc); err != nil {
			return err
		}
		// iperf3 reads the buffer sizes here: after the options, before
		// connect, while they still say what the options gave.
		t.buffersOnce.Do(func() { t.sndbuf, t.rcvbuf = bufferSizes(rc) })
		return nil
	}
	opt := dialOptionsFrom(t.cfg, control, local)
	opt.readBuffer = streamReadBuffer(t.req.Length, t.req.streamCount())
	opt.maxMessage = streamMaxMessage(t.req.Length)
	return dialServer(ctx, t.cfg, t.url, opt)
}

func (t *clientTest) run(ctx context.Context) error {
	var err error
	if t.url, err = targetURL(t.cfg); err != nil {
		return err
	}
	t.req = requestFrom(t.cfg)
	t.probes = newLatencyProber(t.cfg, t.url)
	t.req.Latency = t.probes.request()
	t.rep.connecting(t.url, &t.req)
	if t.req.udp() && t.req.Rate == 0 && t.rep.text() {
		t.rep.out.println("warning: -b 0 sends as fast as the path takes it, so loss is expected")
	}
	t.probes.idleBefore(ctx)
	if t.probes.foundOldServer() {
		return errOldServer
	}
	if err := t.probes.notWperf(); err != nil {
		return err
	}
	streams, err := t.setUp(ctx)
	defer func() {
		if t.ctrl != nil {
			t.ctrl.Abort()
		}
		abortAll(streams)
	}()
	switch {
	case err != nil && ctx.Err() != nil:
		return errInterrupted
	case err != nil:
		return err
	}
	return t.measure(ctx, streams)
}

// setUp connects, asks for the test, connects the streams and waits for
// the start. Ctrl-C cuts any of these steps short.
func (t *clientTest) setUp(ctx context.Context) ([]*stream, error) {
	var err error
	if t.ctrl, err = t.dial(ctx, 0, false); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, t.ctrl.Abort)
	defer stop()
	if err := t.negotiate(); err != nil {
		return nil, err
	}
	if t.req.udp() {
		streams, err := t.udpStreams(ctx)
		switch {
		case err != nil:
			// The server waits for a transport message that will not
			// come: no start to wait for.
			return nil, err
		case streams != nil:
			return streams, t.awaitStart()
		}
	}
	streams, err := t.openStreams(ctx)
	if err != nil {
		return streams, err
	}
	return streams, t.awaitStart()
}

// negotiate sends the request and reads the server's verdict.
func (t *clientTest) negotiate() error {
	if err := sendJSON(t.ctrl, t.req); err != nil {
		return fmt.Errorf("send test request: %w", err)
	}
	msg, kind, err := readControlMessage(t.ctrl, seconds2dur(t.cfg.connectTimeout))
	if err != nil {
		return fmt.Errorf("waiting for the server's answer: %w", err)
	}
	switch kind {
	case msgAccept:
		var a acceptMsg
		json.Unmarshal(msg, &a)
		t.rep.serverVersion = a.Server
		t.offer = a.UDP
		t.probes.serverAgreed(a.Latency)
		t.serverVia = a.Via
		t.omitMarks = a.OmitMark
		return nil
	case msgRefuse, msgError:
		return refusal(msg)
	}
	return fmt.Errorf("unexpected %q message from the server", kind)
}

// openStreams connects every stream at once and introduces each one.
func (t *clientTest) openStreams(ctx context.Context) ([]*stream, error) {
	n := t.req.streamCount()
	streams := make([]*stream, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range streams {
		sending := t.sendsOn(i)
		dir := streamDown
		if sending {
			dir = streamUp
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := t.dial(ctx, i+1, sending)
			if err != nil {
				errs[i] = err
				return
			}
			streams[i] = &stream{id: i + 1, sending: sending, conn: c}
			if t.req.udp() {
				streams[i].dgram = newDatagramStream(!sending)
			}
			if err := t.sockOpts(sending).applyPortable(c.NetConn()); err != nil {
				errs[i] = fmt.Errorf("socket options: %w", err)
				return
			}
			errs[i] = sendJSON(c, streamHello{Type: msgStream, Cookie: t.req.Cookie, ID: i + 1, Direction: dir})
		}()
	}
	wg.Wait()
	live := streams[:0]
	for _, s := range streams {
		if s != nil {
			live = append(live, s)
		}
	}
	return live, errors.Join(errs...)
}

// sendsOn tells whether the client sends on the stream at index i.
// Upload streams come first, as iperf3 numbers its bidir streams.
func (t *clientTest) sendsOn(i int) bool {
	return t.req.Direction == dirUpload || (t.req.Direction == dirBidir && i < t.req.Parallel)
}

// awaitStart waits for the server's go, or its reason for not giving one.
func (t *clientTest) awaitStart() error {
	msg, kind, err := readControlMessage(t.ctrl, seconds2dur(t.cfg.connectTimeout)+streamJoinTimeout)
	if err != nil {
		return fmt.Errorf("waiting for the test to start: %w", err)
	}
	switch kind {
	case msgStart:
		return nil
	case msgRefuse, msgError:
		return refusal(msg)
	}
	return fmt.Errorf("unexpected %q message from the server", kind)
}

// measure runs the test proper and exchanges results.
func (t *clientTest) measure(ctx context.Context, streams []*stream) error {
	req := &t.req
	// A sized test has no planned end: the server's --max-duration and
	// the idle timeouts bound it.
	hardStop := req.hardStop(t.idle, 365*24*time.Hour)
	run := newTestRun(req, t.idle, hardStop)
	run.keepIntervals = t.cfg.json
	run.omitMarks = t.omitMarks
	if t.transport == "udp" {
		run.onSendersDone = func() { sendJSON(t.ctrl, sentMsg()) }
	}
	run.streams = streams
	t.engine = run
	t.rep.view.transport, t.rep.view.transportReason = t.transport, t.transportReason
	t.rep.view.reach = clientReach(t.cfg, t.ctrl, t.serverVia)
	conns, sock := run.connections()
	if t.sndbuf > 0 {
		sock.sndbuf, sock.rcvbuf = t.sndbuf, t.rcvbuf
	}
	t.rep.started(conns, sock)
	run.onIntervalClosed = func(final bool) {
		t.liveLatency()
		t.rep.intervalClosed(run.latestIntervals(), final)
	}

	// Ctrl-C: our senders stop through the context; the server's stop
	// when we ask.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	onInterrupt := context.AfterFunc(ctx, func() { sendJSON(t.ctrl, map[string]string{"type": msgStop}) })
	defer onInterrupt()

	watch := watchControl(t.ctrl, hardStop+t.idle, "the server", controlEvents{sent: run.peerSendersDone, fail: func() {
		cancelRun()
		abortAll(run.streams)
	}})
	stopPings := run.keepAlive(t.ctrl)
	defer stopPings()

	t.probes.run(run, hardStop)
	runErr := run.run(runCtx)
	t.latency = t.probes.finish()
	if runErr != nil {
		// When the server ends a test it says why on the control
		// connection, which can arrive just after its streams drop: a
		// short wait gets the reason rather than "connection reset".
		select {
		case err := <-watch.failed:
			runErr = err
		case <-time.After(500 * time.Millisecond):
		}
		t.rep.end(t.view(nil))
		return fmt.Errorf("test failed: %w", runErr)
	}
	mine := resultsMsg{Type: msgResults, Streams: run.summaries(), CPU: run.cpu, Congestion: run.congestion, Latency: t.latency.summary()}
	if err := sendJSON(t.ctrl, mine); err != nil {
		return fmt.Errorf("send results: %w", err)
	}
	var server *resultsMsg
	select {
	case server = <-watch.results:
	case err := <-watch.failed:
		t.rep.end(t.view(nil))
		return err
	case <-time.After(t.idle):
		t.rep.end(t.view(nil))
		return errors.New("the server sent no results")
	}
	t.ctrl.Close(statusNormal, "done")
	t.rep.end(t.view(server))
	if ctx.Err() != nil {
		return errInterrupted
	}
	return nil
}

// view assembles the client's report of a test; server may be nil when
// its results never came.
func (t *clientTest) view(server *resultsMsg) *testView {
	v := t.rep.view
	v.local = t.engine.results()
	v.localCPU = t.engine.cpu
	v.localCong = t.engine.congestion
	v.latency = t.latency
	if server != nil {
		v.remote = server.Streams
		v.remoteCPU = server.CPU
		v.remoteCong = server.Congestion
		v.serverText = server.ServerText
		v.serverJSON = server.ServerJSON
	}
	return v
}

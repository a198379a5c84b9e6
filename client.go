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
	"strings"
	"sync"
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
	rep := newReporter(cfg, out)
	t := &clientTest{cfg: cfg, rep: rep, idle: seconds2dur(cfg.idleTimeout)}
	if cfg.reverseTrace {
		return t.reverseTrace(ctx, out)
	}
	return rep.finish(t.run(ctx))
}

type clientTest struct {
	cfg  *config
	rep  *reporter
	idle time.Duration
	url  *url.URL
	req  testRequest
	ctrl *wsConn
	r    *testRun
}

// targetURL turns -c and -p into the server's URL. A bare host gets
// ws://HOST:PORT/; a URL keeps its own path, and its port unless it has
// none and -p was given.
func targetURL(cfg *config) (*url.URL, error) {
	raw := cfg.host
	if !strings.Contains(raw, "://") {
		raw = "ws://" + net.JoinHostPort(strings.Trim(raw, "[]"), strconv.Itoa(cfg.port)) + "/"
	} else if u, err := url.Parse(raw); err == nil && u.Port() == "" && cfg.set["port"] {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(cfg.port))
		raw = u.String()
	}
	u, err := wsURL(raw)
	if err != nil {
		return nil, fmt.Errorf("bad server address %q: %w", cfg.host, err)
	}
	return u, nil
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
		NoDelay:    cfg.noDelay,
		Congestion: cfg.congestion,
		MSS:        cfg.mss,
		Client:     software,
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

// dialOpts are the options for one connection to the server; streams
// also get the socket options and a large read buffer.
func (t *clientTest) dialOpts(isStream bool) dialOptions {
	cfg := t.cfg
	d := net.Dialer{}
	if cfg.bind != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.bind)}
	}
	opt := dialOptions{subprotocols: []string{subprotocolV1}, header: http.Header{}}
	if isStream {
		d.Control = t.sockOpts().preConnect
		opt.readBuffer = streamReadBuffer(t.cfg.length, t.req.streamCount())
		opt.maxMessage = streamMaxMessage(t.cfg.length)
	} else {
		// Room for the server's report of a long test (--get-server-output).
		opt.maxMessage = 64 << 20
	}
	network := "tcp"
	if cfg.family != 0 {
		network += strconv.Itoa(cfg.family)
	}
	opt.dial = func(ctx context.Context, _, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	if cfg.token != "" {
		opt.header.Set("Authorization", "Bearer "+cfg.token)
	}
	return opt
}

func (t *clientTest) sockOpts() sockOpts {
	return sockOpts{window: t.cfg.window, mss: t.cfg.mss, congestion: t.cfg.congestion, noDelay: t.cfg.noDelay}
}

// dial opens one connection, turning handshake refusals into the
// messages users need.
func (t *clientTest) dial(ctx context.Context, isStream bool) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, seconds2dur(t.cfg.connectTimeout))
	defer cancel()
	c, err := dialWS(ctx, t.url.String(), t.dialOpts(isStream))
	var he *handshakeError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &he) && he.Status == http.StatusUnauthorized:
		return nil, errAuthFailed
	case errors.As(err, &he):
		return nil, fmt.Errorf("server %s refused the connection: %w", t.url.Host, err)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("unable to connect to server %s: no answer within %gs (--connect-timeout)", t.url.Host, t.cfg.connectTimeout)
	}
	return nil, fmt.Errorf("unable to connect to server %s: %w", t.url.Host, err)
}

func (t *clientTest) run(ctx context.Context) error {
	var err error
	if t.url, err = targetURL(t.cfg); err != nil {
		return err
	}
	t.req = requestFrom(t.cfg)
	t.rep.connecting(t.url, &t.req)
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
	if t.ctrl, err = t.dial(ctx, false); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, t.ctrl.Abort)
	defer stop()
	if err := t.negotiate(); err != nil {
		return nil, err
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
	msg, kind, err := t.readControl(seconds2dur(t.cfg.connectTimeout))
	if err != nil {
		return fmt.Errorf("waiting for the server's answer: %w", err)
	}
	switch kind {
	case msgAccept:
		var a acceptMsg
		json.Unmarshal(msg, &a)
		t.rep.serverVersion = a.Server
		return nil
	case msgRefuse, msgError:
		return refusal(msg)
	}
	return fmt.Errorf("unexpected %q message from the server", kind)
}

// refusal turns a server's refuse or error message into an error.
func refusal(msg []byte) error {
	return fmt.Errorf("server refused the test: %s", peerReason(msg))
}

// peerReason is the "error" text of a refuse or error message, made safe
// to print: it comes from the network.
func peerReason(msg []byte) string {
	var r refuseMsg
	json.Unmarshal(msg, &r)
	return cleanText(r.Error, maxControlPayload*4)
}

// readControl reads one control message within timeout.
func (t *clientTest) readControl(timeout time.Duration) ([]byte, string, error) {
	t.ctrl.SetReadDeadline(time.Now().Add(timeout))
	_, msg, err := t.ctrl.ReadMessage(nil)
	if err != nil {
		return nil, "", err
	}
	kind, err := messageType(msg)
	return msg, kind, err
}

// openStreams connects every stream at once and introduces each one.
func (t *clientTest) openStreams(ctx context.Context) ([]*stream, error) {
	n := t.req.streamCount()
	streams := make([]*stream, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range streams {
		// Upload streams first, as iperf3 numbers its bidir streams.
		sending := t.req.Direction == dirUpload || (t.req.Direction == dirBidir && i < t.req.Parallel)
		dir := streamDown
		if sending {
			dir = streamUp
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := t.dial(ctx, true)
			if err != nil {
				errs[i] = err
				return
			}
			streams[i] = &stream{id: i + 1, sending: sending, conn: c}
			if err := t.sockOpts().applyPortable(c.netConn()); err != nil {
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

// awaitStart waits for the server's go, or its reason for not giving one.
func (t *clientTest) awaitStart() error {
	msg, kind, err := t.readControl(seconds2dur(t.cfg.connectTimeout) + streamJoinTimeout)
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
	hardStop := 365 * 24 * time.Hour
	if req.byteTarget() == 0 {
		hardStop = seconds2dur(req.Omit+req.Time) + t.idle
	}
	r := newTestRun(req, t.idle, hardStop)
	r.keepIntervals = t.cfg.json
	r.streams = streams
	t.r = r
	for _, s := range streams {
		t.rep.addConn(s)
	}
	t.rep.started(r)
	r.onMark = func(final bool) { t.rep.mark(r, final) }

	// Ctrl-C: our senders stop through the context; the server's stop
	// when we ask.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	onInterrupt := context.AfterFunc(ctx, func() { sendJSON(t.ctrl, map[string]string{"type": msgStop}) })
	defer onInterrupt()

	theirs := make(chan *resultsMsg, 1)
	failed := make(chan error, 1)
	go t.follow(r, cancelRun, theirs, failed, hardStop)

	runErr := r.run(runCtx)
	if runErr != nil {
		// When the server ends a test it says why on the control
		// connection, which can arrive just after its streams drop: a
		// short wait gets the reason rather than "connection reset".
		select {
		case err := <-failed:
			runErr = err
		case <-time.After(500 * time.Millisecond):
		}
		t.rep.end(t.view(nil))
		return fmt.Errorf("test failed: %w", runErr)
	}
	mine := resultsMsg{Type: msgResults, Streams: r.summaries(), CPU: r.cpu, Congestion: r.congestion}
	if err := sendJSON(t.ctrl, mine); err != nil {
		return fmt.Errorf("send results: %w", err)
	}
	var server *resultsMsg
	select {
	case server = <-theirs:
	case err := <-failed:
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

// follow reads the control connection during the test: the server's
// results, or its report that the test failed.
func (t *clientTest) follow(r *testRun, cancel context.CancelFunc, results chan<- *resultsMsg, failed chan<- error, hardStop time.Duration) {
	t.ctrl.SetReadDeadline(time.Now().Add(hardStop + t.idle))
	for {
		_, msg, err := t.ctrl.ReadMessage(nil)
		if err != nil {
			failed <- fmt.Errorf("lost the server: %w", err)
			cancel()
			abortAll(r.streams)
			return
		}
		kind, _ := messageType(msg)
		switch kind {
		case msgResults:
			var res resultsMsg
			if err := json.Unmarshal(msg, &res); err != nil {
				failed <- fmt.Errorf("bad results from the server: %w", err)
				return
			}
			results <- &res
			return
		case msgRefuse, msgError:
			failed <- fmt.Errorf("the server ended the test: %s", peerReason(msg))
			cancel()
			abortAll(r.streams)
			return
		}
	}
}

func abortAll(streams []*stream) {
	for _, s := range streams {
		s.conn.Abort()
	}
}

// reverseTrace asks the server to trace the route back to us and prints
// each hop as it arrives, as a local traceroute would; -J collects them
// into one document instead. It needs no privileges here.
func (t *clientTest) reverseTrace(ctx context.Context, out *lineWriter) error {
	report := reverseTraceReport{traceReport: traceReport{Protocol: t.cfg.trProto, Hops: []traceHop{}}, Reverse: true}
	err := t.followTrace(ctx, func(start traceStartMsg) {
		start.Target, start.Protocol = cleanText(start.Target, 64), cleanText(start.Protocol, 8)
		report.Target, report.Address, report.Protocol = start.Target, start.Target, start.Protocol
		report.From = t.url.Host
		if !t.cfg.json {
			out.printf("reverse traceroute from %s to %s (this client, as the server sees it), %d hops max, %s probes",
				t.url.Host, start.Target, start.MaxHops, start.Protocol)
		}
	}, func(h traceHop) {
		if t.cfg.json {
			report.Hops = append(report.Hops, h)
			return
		}
		out.println(formatHop(h))
	})
	if !t.cfg.json {
		return err
	}
	if err != nil {
		report.Error = err.Error()
	}
	b, _ := json.MarshalIndent(report, "", "\t")
	out.raw(string(b) + "\n")
	if err != nil {
		return fmt.Errorf("%w: %w", errReported, err)
	}
	return nil
}

// reverseTraceReport is the -J document of a reverse traceroute: a
// traceroute's, plus where it ran from.
type reverseTraceReport struct {
	traceReport
	From    string `json:"from"`
	Reverse bool   `json:"reverse"`
}

// followTrace runs the reverse-traceroute exchange on its own control
// connection.
func (t *clientTest) followTrace(ctx context.Context, onStart func(traceStartMsg), onHop func(traceHop)) error {
	var err error
	if t.url, err = targetURL(t.cfg); err != nil {
		return err
	}
	if t.ctrl, err = t.dial(ctx, false); err != nil {
		return err
	}
	defer t.ctrl.Abort()
	stop := context.AfterFunc(ctx, t.ctrl.Abort)
	defer stop()
	req := traceRequest{Type: msgTrace, Version: protocolVersion, Proto: t.cfg.trProto, MaxHops: t.cfg.trMaxHops,
		Queries: t.cfg.trQueries, Timeout: t.cfg.trTimeout, Geo: !t.cfg.noGeo, Client: software}
	if err := sendJSON(t.ctrl, req); err != nil {
		return fmt.Errorf("send trace request: %w", err)
	}
	// A hop can take its probes' timeout plus the server's lookups.
	wait := seconds2dur(t.cfg.connectTimeout) + time.Duration(t.cfg.trQueries)*seconds2dur(t.cfg.trTimeout) + 5*time.Second
	for {
		msg, kind, err := t.readControl(wait)
		if err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			return fmt.Errorf("reverse traceroute: %w", err)
		}
		switch kind {
		case msgTraceStart:
			var m traceStartMsg
			if err := json.Unmarshal(msg, &m); err != nil {
				return fmt.Errorf("bad trace_start from the server: %w", err)
			}
			onStart(m)
		case msgTraceHop:
			var m hopMsg
			if err := json.Unmarshal(msg, &m); err != nil {
				return fmt.Errorf("bad hop from the server: %w", err)
			}
			onHop(m.Hop)
		case msgTraceEnd:
			var m traceEndMsg
			json.Unmarshal(msg, &m)
			t.ctrl.Close(statusNormal, "done")
			if m.Error != "" {
				return fmt.Errorf("reverse traceroute: %s", cleanText(m.Error, maxControlPayload*4))
			}
			return nil
		case msgRefuse, msgError:
			return fmt.Errorf("server refused the reverse traceroute: %s", peerReason(msg))
		default:
			return fmt.Errorf("unexpected %q message from the server", kind)
		}
	}
}

package main

// session.go is one test on the server, from its request to its results:
// the session that streams join by cookie, the wait for them while the
// control connection is watched, the run, and the report of it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// session is a test from its request to its end.
type session struct {
	req    testRequest
	peer   string     // the client's address as seen here
	addr   netip.Addr // its IP, the key of the per-address caps
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

// connections is how many connections a test uses: control and streams.
func (sess *session) connections() int { return 1 + sess.req.streamCount() }

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

// control runs one test from the server's side. From the accept on, the
// control connection is read throughout (controlWatch): a client that
// leaves while its streams join frees its slot at once.
func (s *server) control(c *wsConn, req *testRequest, peer string) {
	sess, code, err := s.admit(req, peer)
	if err != nil {
		s.logRefusal(peer, code, err)
		refuse(c, code, err.Error())
		return
	}
	defer s.release(sess)
	plan := s.planUDP(req)
	defer plan.end()
	c.SetLimits(maxControlMessage, 0)
	accept := acceptMsg{Type: msgAccept, Version: protocolVersion, Server: software, Cookie: req.Cookie, UDP: plan.offer, Latency: req.Latency != nil, Via: c.forwardedBy, OmitMark: omitMarks(req)}
	if req.Progress {
		accept.Client = peer
	}
	if err := sendJSON(c, accept); err != nil {
		c.Abort()
		return
	}
	if req.udp() {
		// Read before the watch starts: it is the only reader after.
		if err := plan.awaitTransport(c); err != nil {
			s.release(sess)
			s.logRefusal(peer, statusPolicyViolation, err)
			refuse(c, statusPolicyViolation, err.Error())
			return
		}
	}
	t := s.newTest(c, sess)
	defer t.leave()
	t.udp = plan
	var streams []joinedStream
	if plan.transport != "udp" {
		streams, err = s.collect(sess, t.watch)
	}
	defer func() {
		for _, st := range streams {
			st.conn.Abort()
		}
	}()
	if err != nil {
		// The slot is free before the close handshake, which may wait
		// for a client that is gone.
		s.release(sess)
		s.logRefusal(peer, statusPolicyViolation, err)
		if errors.Is(err, errClientLeft) {
			c.Abort() // nobody is there to tell
			return
		}
		refuse(c, statusPolicyViolation, err.Error())
		return
	}
	t.streams, t.startedAt = streams, time.Now()
	t.run()
}

// omitMarks tells whether a test's omitted period ends at its senders'
// in-band marks: when the client offers them, for TCP's streams.
func omitMarks(req *testRequest) bool { return req.OmitMark && !req.udp() && req.Omit > 0 }

// errClientLeft is a client that gave up on its test before it started.
var errClientLeft = errors.New("the client left")

// newTest builds the server's side of an accepted test and starts
// following its control connection.
func (s *server) newTest(c *wsConn, sess *session) *serverTest {
	t := &serverTest{srv: s, ctrl: c, sess: sess}
	t.hardStop = sess.req.hardStop(s.idle, seconds2dur(s.cfg.maxDuration)+s.idle)
	t.engine = newTestRun(&sess.req, s.idle, t.hardStop)
	t.gone, t.leave = context.WithCancel(context.Background())
	stop := func() {
		t.clientStopped.Store(true)
		t.engine.stop()
	}
	t.watch = watchControl(c, streamJoinTimeout+t.hardStop+s.idle, "the client",
		controlEvents{stop: stop, sent: t.engine.peerSendersDone, fail: t.leave})
	return t
}

// collect waits until every stream of the test has joined, or the client
// gives up on it.
func (s *server) collect(sess *session, watch *controlWatch) ([]joinedStream, error) {
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
		case err := <-watch.failed:
			if errors.Is(err, errBadControl) {
				return got, err
			}
			return got, fmt.Errorf("%w while its streams joined: %w", errClientLeft, err)
		case <-watch.results:
			return got, fmt.Errorf("%w: results before the start", errBadControl)
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
	watch     *controlWatch
	gone      context.Context // ends when the control connection fails
	leave     func()          // ends gone
	unhook    func() bool     // removes the shutdown hook measure installs
	byeOnce   sync.Once
	overLimit atomic.Bool // --max-duration stopped the test
	// clientStopped: the client asked to stop early (its Ctrl-C).
	clientStopped atomic.Bool
}

func (t *serverTest) run() {
	run, err := t.prepare()
	if err != nil {
		t.srv.release(t.sess)
		refuse(t.ctrl, statusPolicyViolation, err.Error())
		return
	}
	run.answerPings(t.sess.req.Latency, time.Now().Add(t.hardStop+closeWait))
	if err := sendJSON(t.ctrl, startMsg{Type: msgStart}); err != nil {
		t.ctrl.Abort()
		return
	}
	progressSent := func() {}
	if t.sess.req.Progress {
		progressSent = t.reportProgress(run)
	}
	theirs, runErr := t.measure(run)
	progressSent() // every interval message goes before the results
	defer t.unhook()
	t.finish(run, theirs, runErr)
}

// prepare applies the client's socket options and limits to every stream
// and builds the run.
func (t *serverTest) prepare() (*testRun, error) {
	s, req := t.srv, &t.sess.req
	opts := sockOpts{window: req.Window, congestion: req.Congestion, noDelay: req.NoDelay, notSentLowat: req.NotSentLowat, marks: socketMarks{tos: req.TOS}}
	run := t.engine
	run.keepIntervals = s.cfg.json || req.ServerOutput != ""
	run.omitMarks = omitMarks(req)
	if s.cfg.set["interval"] {
		// The server's own -i paces its own report, as iperf3's does.
		run.interval = seconds2dur(s.cfg.interval)
	}
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
		opts := opts
		if js.hello.Direction == streamDown && !run.udp && (req.Rate > 0 || req.FQRate > 0) {
			opts.pacingRate = kernelPacingFor(req.Rate, req.FQRate)
		}
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
	run.socketFacts()
	return run, nil
}

// measure runs the test and waits for the client's results. On server
// shutdown it tells the client and drops the streams, so no test keeps
// the server waiting; so it does when the client's control connection
// fails or --max-duration is reached.
func (t *serverTest) measure(run *testRun) (*resultsMsg, error) {
	s := t.srv
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	t.unhook = context.AfterFunc(s.ctx, func() {
		t.goodbye()
		abortAll(run.streams)
	})
	lost := context.AfterFunc(t.gone, func() {
		cancel()
		abortAll(run.streams)
	})
	defer lost()
	if run.target > 0 {
		// A sized test has no planned end; the limit ends it.
		limit := time.AfterFunc(seconds2dur(s.cfg.maxDuration), func() {
			t.overLimit.Store(true)
			abortAll(run.streams)
			run.stop()
		})
		defer limit.Stop()
	}
	err := run.run(ctx)
	switch {
	case t.overLimit.Load():
		// Whatever the streams made of being cut off.
		return nil, errMaxDuration
	case err != nil:
		return nil, err
	}
	select {
	case theirs := <-t.watch.results:
		return theirs, nil
	case err := <-t.watch.failed:
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
	s.logTest(view, t.cutShort(shuttingDown, runErr), runErr)
	switch {
	case runErr != nil && shuttingDown:
		// The client has been told (goodbye waits for that); a close
		// handshake would wait for it while readControl holds the
		// connection, and hold up the shutdown.
		t.goodbye()
		t.ctrl.Abort()
		return
	case errors.Is(runErr, errBadControl), errors.Is(runErr, errMaxDuration):
		refuse(t.ctrl, statusPolicyViolation, runErr.Error())
		return
	case runErr != nil:
		refuse(t.ctrl, statusInternalError, "test failed: "+runErr.Error())
		return
	}
	mine := &resultsMsg{Type: msgResults, Streams: run.summaries(), CPU: run.cpu, Congestion: run.congestion}
	// The server's own output mode decides the form, as iperf3's does.
	switch {
	case req.ServerOutput == "":
	case s.cfg.json:
		mine.ServerJSON, _ = json.Marshal(view.document())
	default:
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

// cutShort is why a test ended before its planned end, for the log: ""
// when it ran its course or failed (the failure says why). A shutdown's
// aborted streams fail with "use of closed network connection", which
// is not the reason.
func (t *serverTest) cutShort(shuttingDown bool, runErr error) string {
	switch {
	case shuttingDown && runErr != nil:
		return "server shutting down"
	case t.clientStopped.Load():
		return "the client stopped it (Ctrl-C)"
	}
	return ""
}

// errMaxDuration ends a test still running at --max-duration.
var errMaxDuration = errors.New("max-duration reached")

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
	v.unit = t.srv.cfg.format
	v.localCong = t.engine.congestion
	v.conns, v.sockInfo = t.engine.connections()
	v.transport, v.transportReason = t.udp.transport, t.udp.reason
	v.reach = serverReach(t.ctrl)
	if client != nil {
		v.remote = client.Streams
		v.remoteCPU = client.CPU
		v.remoteCong = client.Congestion
		v.latency = client.Latency
	}
	return v
}

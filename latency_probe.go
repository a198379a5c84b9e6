package main

// latency_probe.go sends the latency probes of a test: the idle phase,
// self pings on loaded streams and foreign probes on fresh connections,
// each matched to its reply; latency.go turns the samples into statistics.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"
)

// latencyProber runs a test's probes on the client: the idle phase, then
// foreign and self probes until the senders stop.
type latencyProber struct {
	cfg     *config
	dial    probeDialer
	every   time.Duration
	hold    time.Duration // idle phase at the start of -O; 0 when before the test
	omit    time.Duration
	size    int
	book    *probeBook
	start   time.Time // the test's start (the client's clock)
	stopped chan struct{}

	mu       sync.Mutex
	samples  []probeSample
	refused  error
	note     string // what the report should say it lacks
	inFlight int
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// newLatencyProber makes the prober for a test, or nil with --no-latency.
func newLatencyProber(cfg *config, u *url.URL) *latencyProber {
	if cfg.noLatency {
		return nil
	}
	p := &latencyProber{
		cfg:     cfg,
		dial:    probeDialer{cfg: cfg, u: u},
		every:   seconds2dur(cfg.latencyInterval),
		omit:    seconds2dur(cfg.omit),
		size:    defaultProbeSize,
		stopped: make(chan struct{}),
	}
	if p.omit >= minOmitForIdle {
		p.hold = idlePhase
	}
	p.book = newProbeBook(loadProbeTimeout, func(_ uint64, s probeSample, _ bool) { p.record(s) })
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// request is the request's latency field; nil without probes.
func (p *latencyProber) request() *latencyRequest {
	if p == nil {
		return nil
	}
	return &latencyRequest{Hold: p.hold.Seconds()}
}

// serverAgreed turns the prober off when the server's accept did not
// say it answers probes (an older wperf).
func (p *latencyProber) serverAgreed(ok bool) {
	if p != nil && !ok {
		p.fail(fmt.Errorf("%w: it does not measure latency (an older wperf?)", errPingRefused))
	}
}

func (p *latencyProber) fail(err error) {
	p.mu.Lock()
	if p.refused == nil {
		p.refused = err
	}
	p.mu.Unlock()
	p.cancel()
}

// foundOldServer says whether a probe met an old wperf, which has no
// probes: the run goes straight to the old protocol then.
func (p *latencyProber) foundOldServer() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Is(p.refused, errOldServer)
}

// notWperf is a probe's finding that the peer is no wperf server at
// all, or nil. The run ends with it: the probe's connection may have been
// the only one such a peer takes (iperf3 -s -1 exits after it).
func (p *latencyProber) notWperf() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var nw *notWperfError
	if errors.As(p.refused, &nw) {
		return nw
	}
	return nil
}

func (p *latencyProber) off() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused != nil
}

// record keeps one probe's outcome.
func (p *latencyProber) record(s probeSample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) < maxLatencySamples {
		p.samples = append(p.samples, s)
	}
}

// idleBefore is the idle phase as its own second before the test, when
// -O is too short to hold it: foreign probes alone, as no stream exists.
func (p *latencyProber) idleBefore(ctx context.Context) {
	if p == nil || p.hold > 0 {
		return
	}
	stop := context.AfterFunc(ctx, p.cancel)
	defer stop()
	p.dial.resolve(ctx)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	end := time.Now().Add(idlePhase)
	for now := time.Now(); now.Before(end) && !p.off(); now = <-tick.C {
		p.launchForeign()
		if ctx.Err() != nil {
			break
		}
	}
	p.wg.Wait()
}

// run starts the probes of the test whose run is about to start: self
// probes on every WebSocket stream, foreign probes beside them, until the
// run's senders stop. finish collects them.
func (p *latencyProber) run(run *testRun, hardStop time.Duration) {
	if p == nil {
		return
	}
	p.start = time.Now()
	if p.off() {
		return
	}
	run.hold = p.hold
	p.dial.resolve(p.ctx)
	deadline := p.start.Add(hardStop + closeWait)
	byDir := map[string][]*stream{}
	for _, s := range run.streams {
		if s.conn == nil {
			continue
		}
		s.conn.OnPong(p.pong)
		if s.sending {
			go readControlFrames(s.conn, deadline)
		}
		dir := streamDown
		if s.sending {
			dir = streamUp
		}
		byDir[dir] = append(byDir[dir], s)
	}
	if len(byDir) == 0 {
		p.note = "no self probes: the datagrams travel over real UDP, not over WebSocket"
	}
	for dir, ss := range byDir {
		for i, s := range ss {
			p.wg.Add(1)
			go p.pingStream(s.conn, dir, time.Duration(i)*p.every, time.Duration(len(ss))*p.every, run)
		}
	}
	p.wg.Add(2)
	go p.foreignLoop(run.stopping)
	go p.sweep()
}

// finish ends the probes once the run is over and returns the report.
// Probes still out are dropped: the test, not the path, ended them.
func (p *latencyProber) finish() *latencyReport {
	if p == nil {
		return nil
	}
	p.cancel()
	p.wg.Wait()
	return p.report()
}

// report is the report of the probes so far; nil before the test started.
func (p *latencyProber) report() *latencyReport {
	r := p.samplesSoFar()
	if r != nil {
		r.summarise()
	}
	return r
}

// liveLatency gives --json-stream's interval events the probes so far.
func (t *clientTest) liveLatency() {
	if t.cfg.jsonStream {
		t.rep.view.latency = t.probes.samplesSoFar()
	}
}

// samplesSoFar is a report of the samples so far, placed on the test's
// clock, without its statistics.
func (p *latencyProber) samplesSoFar() *latencyReport {
	if p == nil || p.start.IsZero() {
		return nil
	}
	p.mu.Lock()
	samples := slices.Clone(p.samples)
	refused, note := p.refused, p.note
	p.mu.Unlock()
	r := &latencyReport{Interval: p.every.Seconds(), IdlePhase: idleBeforeIt, Samples: samples}
	if p.hold > 0 {
		r.IdlePhase = idleInOmit
	}
	for i := range r.Samples {
		s := &r.Samples[i]
		at := s.sent.Sub(p.start)
		s.At = math.Round(at.Seconds()*1e6) / 1e6
		s.Phase = p.phase(at)
	}
	slices.SortStableFunc(r.Samples, func(a, b probeSample) int { return a.sent.Compare(b.sent) })
	r.Note = note
	if refused != nil {
		r.Note = refused.Error()
	}
	return r
}

// phase is where a probe sent at offset at from the test's start lies.
func (p *latencyProber) phase(at time.Duration) string {
	switch {
	case at < p.hold || at < 0:
		return phaseIdle
	case at < p.omit:
		return phaseWarmup
	}
	return phaseLoaded
}

// pingStream sends a self probe on c every period, starting after
// offset, so the streams of one direction take turns: one probe per
// interval and direction, whatever -P.
func (p *latencyProber) pingStream(c *wsConn, dir string, offset, period time.Duration, run *testRun) {
	defer p.wg.Done()
	stop := run.stopping
	if !waitFor(offset, stop) {
		return
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	var payload [8]byte
	for {
		seq := p.book.add(probeSample{Kind: probeSelf, Direction: dir, sent: time.Now()})
		binary.BigEndian.PutUint64(payload[:], seq)
		// Ping waits while a batch is being written: that wait is part
		// of what a self probe measures. The deadline is the one a
		// sender sets, so a dead peer cannot hold the probe for ever.
		c.SetWriteDeadline(time.Now().Add(run.idle))
		if c.Ping(payload[:]) != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pong is every stream's OnPong hook.
func (p *latencyProber) pong(payload []byte) {
	if len(payload) == 8 {
		p.book.reply(binary.BigEndian.Uint64(payload), time.Now())
	}
}

// sweep counts self probes past their timeout as lost, until finish.
func (p *latencyProber) sweep() {
	defer p.wg.Done()
	tick := time.NewTicker(min(p.every, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-tick.C:
			p.book.expire(now)
		}
	}
}

// foreignLoop starts a foreign probe every interval until stop.
func (p *latencyProber) foreignLoop(stop <-chan struct{}) {
	defer p.wg.Done()
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for !p.off() {
		p.launchForeign()
		select {
		case <-stop:
			return
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// launchForeign starts one foreign probe, unless too many are out.
func (p *latencyProber) launchForeign() {
	p.mu.Lock()
	if p.inFlight >= maxForeignInFlight {
		p.mu.Unlock()
		return
	}
	p.inFlight++
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		s, err := p.foreign()
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
		switch {
		case errors.Is(err, errPingRefused):
			p.fail(err)
		case p.ctx.Err() == nil:
			p.record(s)
		}
	}()
}

// foreign runs one foreign probe: connect, upgrade, one echo, each timed.
// A probe that takes longer than the timeout in all is lost.
func (p *latencyProber) foreign() (probeSample, error) {
	ctx, cancel := context.WithTimeout(p.ctx, loadProbeTimeout)
	defer cancel()
	s := probeSample{Kind: probeForeign, sent: time.Now()}
	c, times, err := p.dial.open(ctx, pingPurposeProbe)
	if err == nil {
		// The probe is done with its echo: no close handshake, whose
		// frames and wait would only cost both ends CPU.
		defer c.Abort()
		stop := context.AfterFunc(ctx, c.Abort)
		defer stop()
		var rtt time.Duration
		rtt, err = echoOnce(ctx, c, p.size)
		s.RTTMs = millis(rtt)
	}
	s.ConnectMs, s.UpgradeMs = millis(times.connect), millis(times.upgrade)
	if errors.Is(err, errPingRefused) {
		return s, err
	}
	s.Lost = err != nil
	return s, nil
}

// echoOnce sends one probe of size bytes on c and waits for its echo.
func echoOnce(ctx context.Context, c *wsConn, size int) (time.Duration, error) {
	msg := make([]byte, size)
	deadline, _ := ctx.Deadline()
	sent := time.Now()
	putDatagramHeader(msg, 1, 0)
	c.SetWriteDeadline(deadline)
	if err := c.WriteMessage(opBinary, msg); err != nil {
		return 0, err
	}
	c.SetReadDeadline(deadline)
	for {
		op, reply, err := c.ReadMessage(msg[:0])
		if err != nil {
			return 0, probeReadError(err)
		}
		if op == opText {
			return 0, refusedProbe(c, reply)
		}
		if seq, _, ok := readDatagramHeader(reply); ok && seq == 1 {
			return time.Since(sent), nil
		}
	}
}

// refusedProbe reads the close that follows a server's refusal: "busy"
// (1013) makes a lost probe, anything else a refusal.
func refusedProbe(c *wsConn, msg []byte) error {
	_, _, err := c.ReadMessage(nil)
	if closeStatus(err) == statusTryAgainLater {
		return fmt.Errorf("server busy: %s", peerReason(msg))
	}
	return fmt.Errorf("%w: %s", errPingRefused, peerReason(msg))
}

// probeReadError tells a server that closed the probe connection on
// purpose (it does not know the probe, or refused it) from a lost probe.
func probeReadError(err error) error {
	var ce *closeError
	if errors.As(err, &ce) && !ce.Local && ce.Code == statusPolicyViolation {
		return fmt.Errorf("%w: %s", errPingRefused, ce.Reason)
	}
	return err
}

// readControlFrames reads a sending stream's connection, which carries
// nothing but control frames toward its sender: it answers the peer's
// pings (their pongs then queue behind the data, as the peer's self
// probes should) and hands pongs to the OnPong hook. It ends with the
// connection, or at deadline.
func readControlFrames(c *wsConn, deadline time.Time) {
	c.SetReadDeadline(deadline)
	for {
		if _, _, _, err := c.NextFrame(); err != nil {
			return
		}
	}
}

// answerPings readies a run for a client that probes latency: its
// sending streams answer pings, and its senders keep quiet for the idle
// phase. deadline bounds the readers.
func (run *testRun) answerPings(l *latencyRequest, deadline time.Time) {
	if l == nil {
		return
	}
	run.hold = seconds2dur(l.Hold)
	for _, s := range run.streams {
		if s.sending && s.conn != nil {
			go readControlFrames(s.conn, deadline)
		}
	}
}

// holdLoad keeps a sender quiet during the idle phase at the start of the
// omitted period, so the idle probes see an idle path.
func (run *testRun) holdLoad() {
	if run.hold > 0 {
		waitFor(run.hold-time.Since(run.start), run.stopping)
	}
}

// probeDialer opens probe connections to the server, timing the TCP
// connect and the WebSocket upgrade apart. It resolves the server's name
// once, so no probe pays for DNS.
type probeDialer struct {
	cfg  *config
	u    *url.URL
	addr string // host:port to dial, resolved; "" dials u.Host
	dns  time.Duration
}

// probeTimes are a probe connection's set-up, in parts.
type probeTimes struct {
	connect, upgrade time.Duration
}

// resolve looks the server's name up once (an address is kept as is).
func (d *probeDialer) resolve(ctx context.Context) {
	host, port := d.u.Hostname(), d.u.Port()
	if port == "" {
		port = "80"
	}
	if d.addr != "" || net.ParseIP(host) != nil {
		return
	}
	network := "ip"
	if d.cfg.family != 0 {
		network = fmt.Sprintf("ip%d", d.cfg.family)
	}
	t0 := time.Now()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, network, host)
	if err == nil && len(ips) > 0 {
		d.dns = time.Since(t0)
		d.addr = net.JoinHostPort(ips[0].Unmap().String(), port)
	}
}

// open connects, upgrades and introduces a probe connection.
func (d *probeDialer) open(ctx context.Context, purpose string) (*wsConn, probeTimes, error) {
	var times probeTimes
	opt := controlDialOptions(d.cfg, nil)
	dial := opt.dial
	var connected time.Time
	opt.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d.addr != "" {
			addr = d.addr
		}
		t0 := time.Now()
		nc, err := dial(ctx, network, addr)
		connected = time.Now()
		times.connect = connected.Sub(t0)
		return nc, err
	}
	c, err := dialWS(ctx, d.u.String(), opt)
	if err == nil && c.subprotocol == "" {
		// An old wperf: it has no probes, and runClient retries the
		// whole run in its protocol.
		c.Abort()
		return nil, times, fmt.Errorf("%w: %w", errPingRefused, errOldServer)
	}
	if err != nil {
		var he *handshakeError
		if errors.As(err, &he) || errors.Is(err, errNotWperf) {
			err = fmt.Errorf("%w: %w", errPingRefused, err)
		}
		return nil, times, err
	}
	times.upgrade = time.Since(connected)
	hello := pingHello{Type: msgPing, Version: protocolVersion, Purpose: purpose, Client: software}
	b, _ := json.Marshal(hello)
	c.SetWriteDeadline(time.Now().Add(closeWait))
	if err := c.WriteMessage(opText, b); err != nil {
		c.Abort()
		return nil, times, err
	}
	return c, times, nil
}

package main

// ping.go is wperf --ping and the probe connection behind it: a wperf.v1
// connection whose first message is {"type":"ping"}, after which the
// server echoes every binary message. A probe is a binary message that
// starts with a sequence number and the sender's clock (the UDP
// datagram's header), so a browser page, which cannot send WebSocket
// pings, can probe the same way. Tests use the same connection for their
// foreign latency probes (latency.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"sync"
	"time"
)

// Purposes of a probe connection, as its hello names them: the server
// logs --ping sessions, not a test's many foreign probes.
const (
	pingPurposePing  = "ping"
	pingPurposeProbe = "probe"
)

// Bounds of a probe and of --ping.
const (
	minProbeSize     = datagramHeaderLen
	maxProbeSize     = 64 << 10
	defaultProbeSize = 64
	minPingInterval  = 0.01 // seconds
	maxPingCount     = 100_000
	// pingSessionsPerClient sizes the server's cap on probe
	// connections open at once: a test's foreign probes take a few
	// each, more on a slow path.
	pingSessionsPerClient = 16
)

// pingHello is the first message of a probe connection.
type pingHello struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Purpose string `json:"purpose,omitempty"`
	Client  string `json:"client,omitempty"`
}

// ---- the server's side ----

// ping serves one probe connection: it echoes binary messages of up to
// maxProbeSize until the client closes or stays silent for the idle
// timeout, and logs a --ping session when it ends.
func (s *server) ping(c *wsConn, msg []byte, peer string) {
	var h pingHello
	if err := json.Unmarshal(msg, &h); err != nil || h.Version != protocolVersion {
		refuse(c, statusPolicyViolation, fmt.Sprintf("bad ping hello: want version %d", protocolVersion))
		return
	}
	if !s.admitPing() {
		err := errors.New("server is busy: too many probe connections; try again later")
		s.logRefusal(peer, statusPolicyViolation, err)
		refuse(c, statusTryAgainLater, err.Error())
		return
	}
	defer s.releasePing()
	c.SetLimits(maxProbeSize, 0)
	stop := context.AfterFunc(s.ctx, func() { c.Close(statusGoingAway, "server shutting down") })
	defer stop()
	start := time.Now()
	n, err := echoProbes(c, s.idle)
	if h.Purpose == pingPurposePing {
		s.logPing(peer, n, time.Since(start), err)
	}
}

// admitPing takes one of the server's probe connection places.
func (s *server) admitPing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pings >= pingSessionsPerClient*s.cfg.maxClients {
		return false
	}
	s.pings++
	return true
}

func (s *server) releasePing() {
	s.mu.Lock()
	s.pings--
	s.mu.Unlock()
}

// errTextProbe ends a probe connection that sent text: probes are binary.
var errTextProbe = errors.New("probes are binary messages")

// echoProbes returns every binary message unchanged until the peer
// closes (nil) or fails, and counts them.
func echoProbes(c *wsConn, idle time.Duration) (int, error) {
	var buf []byte
	for n := 0; ; n++ {
		c.SetReadDeadline(time.Now().Add(idle))
		op, msg, err := c.ReadMessage(buf)
		if err != nil {
			var ce *closeError
			if errors.As(err, &ce) && !ce.Local {
				return n, nil
			}
			c.Abort()
			return n, err
		}
		if op != opBinary {
			c.Close(statusPolicyViolation, errTextProbe.Error())
			return n, errTextProbe
		}
		c.SetWriteDeadline(time.Now().Add(idle))
		if err := c.WriteMessage(opBinary, msg); err != nil {
			c.Abort()
			return n, err
		}
		buf = msg
	}
}

// logPing notes a --ping session in the server's log.
func (s *server) logPing(peer string, n int, d time.Duration, err error) {
	if s.cfg.json {
		ev := map[string]any{"event": "ping", "peer": peer, "probes": n, "seconds": d.Seconds()}
		if err != nil {
			ev["error"] = err.Error()
		}
		s.logJSON(ev)
		return
	}
	line := fmt.Sprintf("%s %s ping %d probes echoed in %.2f sec", time.Now().UTC().Format(time.RFC3339), peer, n, d.Seconds())
	if err != nil {
		line += " error: " + err.Error()
	}
	s.out.println(line)
}

// ---- wperf --ping ----

// checkPing applies --ping's rules: a probe's size and interval, and no
// option of a bandwidth test.
func (c *config) checkPing() error {
	for _, name := range []string{"reverse", "bidir", "parallel", "udp", "bitrate", "bandwidth", "udp-transport",
		"udp-counters-64bit", "bytes", "blockcount", "omit", "window", "no-delay", "congestion", "set-mss", "notsent-lowat",
		"get-server-output", "format", "reverse-traceroute", "latency-interval", "no-latency"} {
		if c.set[name] {
			return fmt.Errorf("--ping runs no bandwidth test, so --%s does not apply", name)
		}
	}
	if !c.set["length"] {
		c.length = defaultProbeSize
	}
	switch {
	case c.host == "":
		return errors.New("-c needs a host")
	case c.json && c.jsonStream:
		return errors.New("-J and --json-stream exclude each other")
	case c.interval < minPingInterval:
		return fmt.Errorf("-i %g: --ping sends at most one probe every %g s", c.interval, minPingInterval)
	case c.length < minProbeSize || c.length > maxProbeSize:
		return fmt.Errorf("-l %d: a --ping probe is %d to %d bytes", c.length, minProbeSize, maxProbeSize)
	case c.bind != "" && net.ParseIP(c.bind) == nil:
		return fmt.Errorf("bad --bind %q: want an IP address", c.bind)
	}
	_, err := targetURL(c)
	return err
}

// pinger is one --ping run.
type pinger struct {
	cfg      *config
	out      *lineWriter
	u        *url.URL
	host     string
	size     int
	interval time.Duration
	book     *probeBook
	start    time.Time

	mu      sync.Mutex
	replies []pingReply // in the order their outcome became known
	rtts    []float64   // in-time replies, ms, in order of arrival
	jitter  rfc3550Jitter
	sent    int
	late    int
}

// pingReply is one probe's outcome, as -J and --json-stream give it.
type pingReply struct {
	Seq   uint64  `json:"seq"`
	At    float64 `json:"at"` // seconds from the first probe, when sent
	RTTMs float64 `json:"rtt_ms,omitempty"`
	Lost  bool    `json:"lost,omitempty"`
	Late  bool    `json:"late,omitempty"` // answered after its timeout: lost all the same
}

// pingStart is the -J document's start: the target and what the first
// request paid, in parts.
type pingStart struct {
	Host        string  `json:"host"`
	URL         string  `json:"url"`
	Size        int     `json:"size"`
	Count       int     `json:"count"`
	Interval    float64 `json:"interval"`
	Timeout     float64 `json:"timeout"`
	DNSMs       float64 `json:"dns_ms,omitempty"`
	ConnectMs   float64 `json:"connect_ms"`
	UpgradeMs   float64 `json:"upgrade_ms"`
	Subprotocol string  `json:"subprotocol"`
	Version     string  `json:"version"`
}

// pingEnd is ping's summary.
type pingEnd struct {
	Transmitted int     `json:"transmitted"`
	Received    int     `json:"received"`
	Late        int     `json:"late"`
	LossPercent float64 `json:"loss_percent"`
	MinMs       float64 `json:"min_ms"`
	AvgMs       float64 `json:"avg_ms"`
	MaxMs       float64 `json:"max_ms"`
	MdevMs      float64 `json:"mdev_ms"`
	MedianMs    float64 `json:"median_ms"`
	JitterMs    float64 `json:"jitter_ms"`
	Seconds     float64 `json:"seconds"`
}

type pingDoc struct {
	Start   *pingStart  `json:"start,omitempty"`
	Replies []pingReply `json:"replies"`
	End     *pingEnd    `json:"end,omitempty"`
	Title   string      `json:"title,omitempty"`
	Error   string      `json:"error,omitempty"`
}

// errNoReply is --ping's failure when no probe came back in time.
var errNoReply = errors.New("no reply")

// runPing is wperf -c HOST --ping: it prints a line per reply, then
// ping's summary (also after Ctrl-C), and fails only when no probe was
// answered, as ping does.
func runPing(ctx context.Context, cfg *config, out *lineWriter) error {
	u, err := targetURL(cfg)
	if err != nil {
		return err
	}
	p := &pinger{cfg: cfg, out: out, u: u, host: u.Hostname(), size: cfg.length, interval: seconds2dur(cfg.interval)}
	p.book = newProbeBook(seconds2dur(cfg.pingTimeout), p.outcome)
	p.book.expired = map[uint64]time.Time{}
	if cfg.set["time"] {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, seconds2dur(cfg.duration))
		defer cancel()
	}
	start, end, err := p.run(ctx)
	if errors.Is(err, errOldServer) {
		return err // runClient retries in the old protocol; nothing is printed yet
	}
	return p.finish(start, end, err)
}

// run connects, probes and returns the start facts and the summary.
func (p *pinger) run(ctx context.Context) (*pingStart, *pingEnd, error) {
	d := probeDialer{cfg: p.cfg, u: p.u}
	d.resolve(ctx)
	dialCtx, cancel := context.WithTimeout(ctx, seconds2dur(p.cfg.connectTimeout))
	c, times, err := d.open(dialCtx, pingPurposePing)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, errInterrupted
		}
		return nil, nil, fmt.Errorf("unable to reach %s: %w", p.u.Host, err)
	}
	defer c.Close(statusNormal, "done")
	st := &pingStart{Host: p.host, URL: p.u.String(), Size: p.size, Count: p.cfg.pingCount, Interval: p.cfg.interval,
		Timeout: p.cfg.pingTimeout, DNSMs: millis(d.dns), ConnectMs: millis(times.connect), UpgradeMs: millis(times.upgrade),
		Subprotocol: subprotocolV1, Version: software}
	p.started(st)
	p.start = time.Now()
	readErr := make(chan error, 1)
	go func() { readErr <- p.read(c) }()
	err = p.probe(ctx, c, readErr)
	return st, p.summary(), err
}

// probe sends the probes on schedule and waits for the last outcome.
func (p *pinger) probe(ctx context.Context, c *wsConn, readErr <-chan error) error {
	msg := make([]byte, p.size)
	sweep := time.NewTicker(min(max(p.book.timeout/20, 5*time.Millisecond), 100*time.Millisecond))
	defer sweep.Stop()
	next := time.Now()
	for {
		if p.sentCount() < p.cfg.pingCount && !time.Now().Before(next) {
			if err := p.send(c, msg); err != nil {
				return err
			}
			next = next.Add(p.interval)
		}
		if p.sentCount() == p.cfg.pingCount && p.book.outstanding() == 0 {
			return nil
		}
		wait := time.NewTimer(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			wait.Stop()
			return ctxEnd(ctx)
		case err := <-readErr:
			wait.Stop()
			return fmt.Errorf("lost the server: %w", err)
		case now := <-sweep.C:
			p.book.expire(now)
		case <-wait.C:
		}
		wait.Stop()
	}
}

// ctxEnd says why the run's context ended: -t is a normal end, Ctrl-C
// an interruption.
func ctxEnd(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return nil
	}
	return errInterrupted
}

func (p *pinger) sentCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// send writes the next probe: its number and the time since the first.
func (p *pinger) send(c *wsConn, msg []byte) error {
	now := time.Now()
	seq := p.book.add(probeSample{sent: now})
	putDatagramHeader(msg, seq, int64(now.Sub(p.start)))
	p.mu.Lock()
	p.sent++
	p.mu.Unlock()
	c.SetWriteDeadline(now.Add(p.book.timeout + closeWait))
	return c.WriteMessage(opBinary, msg)
}

// read matches echoes to probes until the connection ends.
func (p *pinger) read(c *wsConn) error {
	var buf []byte
	for {
		// The last reply of interest comes one timeout after the last
		// probe; -t and Ctrl-C end the connection sooner.
		c.SetReadDeadline(time.Now().Add(p.interval + p.book.timeout + closeWait))
		op, msg, err := c.ReadMessage(buf)
		if err != nil {
			return err
		}
		if op == opText {
			return refusedProbe(c, msg)
		}
		if seq, _, ok := readDatagramHeader(msg); ok {
			p.book.reply(seq, time.Now())
		}
		buf = msg
	}
}

// outcome is the book's report of one probe: print it and count it.
func (p *pinger) outcome(seq uint64, s probeSample, late bool) {
	r := pingReply{Seq: seq, At: math.Round(s.sent.Sub(p.start).Seconds()*1e6) / 1e6, RTTMs: s.RTTMs, Lost: s.Lost, Late: late}
	p.mu.Lock()
	p.replies = append(p.replies, r)
	switch {
	case late:
		p.late++
	case !s.Lost:
		p.rtts = append(p.rtts, s.RTTMs)
		p.jitter.updateJitter(int64(s.RTTMs * 1e6))
	}
	p.mu.Unlock()
	switch {
	case p.cfg.jsonStream && r.Lost && !r.Late:
		p.event("lost", r)
	case p.cfg.jsonStream:
		p.event("reply", r)
	case p.cfg.json:
	case late:
		p.out.printf("%d bytes from %s: seq=%d time=%.3f ms (late: counted lost)", p.size, p.host, seq, r.RTTMs)
	case r.Lost:
		p.out.printf("no reply from %s: seq=%d within %g s", p.host, seq, p.cfg.pingTimeout)
	default:
		p.out.printf("%d bytes from %s: seq=%d time=%.3f ms", p.size, p.host, seq, r.RTTMs)
	}
}

func (p *pinger) event(name string, data any) {
	b, _ := json.Marshal(map[string]any{"event": name, "data": data})
	p.out.raw(string(b) + "\n")
}

// started prints the first lines: the target, and the first request's
// cost.
func (p *pinger) started(st *pingStart) {
	switch {
	case p.cfg.jsonStream:
		p.event("start", st)
	case !p.cfg.json:
		p.out.printf("PING %s (%s): %d-byte probes over %s", p.host, p.u.String(), p.size, subprotocolV1)
		line := fmt.Sprintf("first request: TCP connect %.3f ms, WebSocket upgrade %.3f ms", st.ConnectMs, st.UpgradeMs)
		if st.DNSMs > 0 {
			line = fmt.Sprintf("first request: DNS %.3f ms, TCP connect %.3f ms, WebSocket upgrade %.3f ms", st.DNSMs, st.ConnectMs, st.UpgradeMs)
		}
		p.out.println(line)
	}
}

// summary is ping's statistics so far. Probes still out count as lost.
func (p *pinger) summary() *pingEnd {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &pingEnd{Transmitted: p.sent, Received: len(p.rtts), Late: p.late, Seconds: time.Since(p.start).Seconds()}
	if e.Transmitted > 0 {
		e.LossPercent = 100 * float64(e.Transmitted-e.Received) / float64(e.Transmitted)
	}
	if st := newStats(p.rtts, 0); st != nil {
		var sum, sq float64
		for _, x := range p.rtts {
			sum, sq = sum+x, sq+x*x
		}
		n := float64(len(p.rtts))
		e.MinMs, e.MaxMs, e.MedianMs = st.MinMs, st.MaxMs, st.MedianMs
		e.AvgMs = sum / n
		e.MdevMs = math.Sqrt(max(sq/n-e.AvgMs*e.AvgMs, 0)) // as ping computes it
		e.JitterMs = p.jitter.jitterNs / 1e6
	}
	return e
}

// finish prints the summary in the chosen format and turns the run's
// end into the exit: no reply at all fails, as with ping.
func (p *pinger) finish(st *pingStart, end *pingEnd, err error) error {
	if err == nil && end != nil && end.Received == 0 {
		err = errNoReply
	}
	if end != nil && end.Received > 0 && errors.Is(err, errInterrupted) {
		err = nil // ping's Ctrl-C: the summary is the result
	}
	switch {
	case p.cfg.json:
		p.mu.Lock()
		doc := pingDoc{Start: st, Replies: append([]pingReply{}, p.replies...), End: end, Title: p.cfg.title}
		p.mu.Unlock()
		if err != nil {
			doc.Error = err.Error()
		}
		b, _ := json.MarshalIndent(doc, "", "\t")
		p.out.raw(string(b) + "\n")
	case p.cfg.jsonStream:
		if end != nil {
			p.event("end", end)
		}
		if err != nil {
			p.event("error", err.Error())
		}
	default:
		if end != nil {
			p.printSummary(end)
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errReported, err)
	}
	return nil
}

func (p *pinger) printSummary(e *pingEnd) {
	p.out.println("")
	p.out.printf("--- %s wperf ping statistics ---", p.host)
	line := fmt.Sprintf("%d transmitted, %d received, %.4g%% packet loss, time %.0fms", e.Transmitted, e.Received, e.LossPercent, e.Seconds*1000)
	if e.Late > 0 {
		line += fmt.Sprintf(", %d late", e.Late)
	}
	p.out.println(line)
	if e.Received > 0 {
		p.out.printf("rtt min/avg/max/mdev = %.3f/%.3f/%.3f/%.3f ms, median %.3f ms, jitter %.3f ms",
			e.MinMs, e.AvgMs, e.MaxMs, e.MdevMs, e.MedianMs, e.JitterMs)
	}
}

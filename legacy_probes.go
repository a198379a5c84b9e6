package main

// legacy_probes.go is the old protocol's ping and reverse traceroute, on
// both ends. Ping: after {"command":"ping"} the client sends
// {"type":"ping","seq":N} about once a second and the server answers
// {"type":"pong","seq":N}. Reverse traceroute: after
// {"command":"reverse_traceroute"} the server sends {"type":"hop",
// "data":{...}} per hop, then {"type":"end"}; errors as {"type":"error",
// "message":"..."}.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// legacyPingMsg is a ping or a pong; the server echoes the seq as given.
type legacyPingMsg struct {
	Type string          `json:"type"`
	Seq  json.RawMessage `json:"seq"`
}

// ---- ping, server ----

// legacyPing answers an old client's pings on its connection until the
// client leaves, for at most --max-duration. A ping takes a slot, as a
// test does.
func (s *server) legacyPing(c *wsConn, peer string) {
	g, _, code, err := s.legacyJoin(legacyPing, peer)
	if err != nil {
		s.logRefusal(peer, statusPolicyViolation, fmt.Errorf("legacy ping: %w", err))
		c.Close(code, shortReason(err))
		return
	}
	s.tests.Add(1)
	defer s.tests.Done()
	defer s.legacyLeave(g)
	stop := context.AfterFunc(s.ctx, c.Abort)
	defer stop()
	started := time.Now()
	pongs, err := answerLegacyPings(c, s.idle, started.Add(seconds2dur(s.cfg.maxDuration)))
	s.logLegacyPing(peer, started, pongs, err)
}

// answerLegacyPings is the server's loop: every ping gets its pong, and
// anything else is ignored. It returns how many pongs it sent.
func answerLegacyPings(c *wsConn, idle time.Duration, end time.Time) (int, error) {
	var buf []byte
	for n := 0; ; {
		deadline := time.Now().Add(idle)
		if deadline.After(end) {
			deadline = end
		}
		c.SetReadDeadline(deadline)
		op, msg, err := c.ReadMessage(buf)
		var ce *closeError
		switch {
		case errors.As(err, &ce) && !ce.Local:
			return n, nil
		case err != nil && !time.Now().Before(end):
			return n, errors.New("the ping reached this server's --max-duration")
		case err != nil:
			return n, err
		}
		buf = msg
		var p legacyPingMsg
		if op != opText || json.Unmarshal(msg, &p) != nil || p.Type != "ping" {
			continue
		}
		if len(p.Seq) == 0 {
			p.Seq = json.RawMessage("null")
		}
		if err := sendJSON(c, legacyPingMsg{Type: "pong", Seq: p.Seq}); err != nil {
			return n, err
		}
		n++
	}
}

func (s *server) logLegacyPing(peer string, started time.Time, pongs int, err error) {
	secs := time.Since(started).Seconds()
	if s.cfg.json {
		rec := map[string]any{"event": "legacy_ping", "peer": peer, "pongs": pongs, "seconds": secs}
		if err != nil {
			rec["error"] = err.Error()
		}
		s.logJSON(rec)
		return
	}
	line := fmt.Sprintf("%s %s legacy ping %d pongs %.2f sec", started.UTC().Format(time.RFC3339), peer, pongs, secs)
	if err != nil {
		line += " error: " + err.Error()
	}
	s.out.println(line)
}

// ---- ping, client ----

// legacyPingReport is --ping's result, and its -J document.
type legacyPingReport struct {
	Target      string             `json:"target"`
	URL         string             `json:"url"`
	Protocol    string             `json:"protocol"`
	Pings       []legacyPingResult `json:"pings"`
	Sent        int                `json:"sent"`
	Received    int                `json:"received"`
	LossPercent float64            `json:"loss_percent"`
	RTTms       *legacyRTTStats    `json:"rtt_ms"` // null without any pong
	Error       string             `json:"error,omitempty"`
}

type legacyPingResult struct {
	Seq   int      `json:"seq"`
	RTTms *float64 `json:"rtt_ms"` // null: no pong
}

type legacyRTTStats struct {
	Min float64 `json:"min"`
	Avg float64 `json:"avg"`
	Max float64 `json:"max"`
}

// legacyPinger is one --ping run: when each ping went out, and its round
// trip once the pong is back.
type legacyPinger struct {
	mu       sync.Mutex
	sent     []time.Time
	rtt      []*float64
	got      int
	allIn    chan struct{} // closed when every ping has its pong
	readDone chan struct{}
	onPong   func(seq int, ms float64)
}

// runLegacyPing is --ping: round trips over an old-protocol connection,
// which wperf -s and old servers both answer.
func runLegacyPing(ctx context.Context, cfg *config, out *lineWriter) error {
	u, err := targetURL(cfg)
	if err != nil {
		return err
	}
	rep := legacyPingReport{Target: u.Host, URL: u.String(), Protocol: legacyProtocolName, Pings: []legacyPingResult{}}
	if !cfg.json {
		out.printf("PING %s (%s): %d WebSocket round trips, old wperf protocol", u.Host, u.String(), cfg.pingCount)
	}
	p := &legacyPinger{sent: make([]time.Time, cfg.pingCount), rtt: make([]*float64, cfg.pingCount),
		allIn: make(chan struct{}), readDone: make(chan struct{})}
	if !cfg.json {
		p.onPong = func(seq int, ms float64) { out.printf("seq=%d rtt=%s ms", seq, formatMillis(ms)) }
	}
	err = p.run(ctx, cfg, u)
	rep.fill(p)
	if err == nil && rep.Received == 0 {
		err = errors.New("no pong came back")
	}
	if ctx.Err() != nil {
		err = errInterrupted
	}
	return rep.print(cfg, out, err)
}

// legacyCommand dials an old server and sends it one command; the
// connection ends when ctx does, so a read waiting on it returns.
func legacyCommand(ctx context.Context, cfg *config, u *url.URL, command string) (*wsConn, error) {
	c, err := dialLegacy(ctx, cfg, u, nil, 0)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, c.Abort)
	if err := sendJSON(c, map[string]string{"command": command}); err != nil {
		c.Abort()
		return nil, fmt.Errorf("send %s request: %w", command, err)
	}
	return c, nil
}

// run dials, sends the pings at their interval and waits for the last
// pongs.
func (p *legacyPinger) run(ctx context.Context, cfg *config, u *url.URL) error {
	c, err := legacyCommand(ctx, cfg, u, "ping")
	if err != nil {
		return err
	}
	defer c.Abort()
	interval := seconds2dur(cfg.interval)
	if interval <= 0 {
		interval = time.Second
	}
	idle := seconds2dur(cfg.idleTimeout)
	go p.read(c, idle)
	for seq := range p.sent {
		if seq > 0 && !p.pause(ctx, interval) {
			break
		}
		p.mu.Lock()
		p.sent[seq] = time.Now()
		p.mu.Unlock()
		if err := sendJSON(c, map[string]any{"type": "ping", "seq": seq}); err != nil {
			return fmt.Errorf("send ping: %w", err)
		}
	}
	select { // the last pongs: within two intervals, and at least 2 s
	case <-p.allIn:
	case <-p.readDone:
	case <-ctx.Done():
	case <-time.After(max(2*interval, 2*time.Second)):
	}
	c.Close(statusNormal, "done")
	return nil
}

// pause waits for the next ping's turn; false when the run is over.
func (p *legacyPinger) pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
	case <-p.readDone:
	}
	return false
}

// read matches pongs to their pings until the connection ends.
func (p *legacyPinger) read(c *wsConn, idle time.Duration) {
	defer close(p.readDone)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		op, msg, err := c.ReadMessage(nil)
		if err != nil {
			return
		}
		var m struct {
			Type string `json:"type"`
			Seq  int    `json:"seq"`
		}
		if op == opText && json.Unmarshal(msg, &m) == nil && m.Type == "pong" {
			p.pong(m.Seq, time.Now())
		}
	}
}

// pong records the round trip of ping seq, once.
func (p *legacyPinger) pong(seq int, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < 0 || seq >= len(p.sent) || p.sent[seq].IsZero() || p.rtt[seq] != nil {
		return
	}
	ms := float64(at.Sub(p.sent[seq])) / 1e6
	p.rtt[seq] = &ms
	if p.onPong != nil {
		p.onPong(seq, ms)
	}
	if p.got++; p.got == len(p.sent) {
		close(p.allIn)
	}
}

// fill sums up the pings that went out.
func (rep *legacyPingReport) fill(p *legacyPinger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sum float64
	for seq, at := range p.sent {
		if at.IsZero() {
			break
		}
		rep.Pings = append(rep.Pings, legacyPingResult{Seq: seq, RTTms: p.rtt[seq]})
		rep.Sent++
		if r := p.rtt[seq]; r != nil {
			if rep.RTTms == nil {
				rep.RTTms = &legacyRTTStats{Min: *r, Max: *r}
			}
			rep.RTTms.Min, rep.RTTms.Max = min(rep.RTTms.Min, *r), max(rep.RTTms.Max, *r)
			sum += *r
			rep.Received++
		}
	}
	if rep.Received > 0 {
		rep.RTTms.Avg = sum / float64(rep.Received)
	}
	if rep.Sent > 0 {
		rep.LossPercent = 100 * float64(rep.Sent-rep.Received) / float64(rep.Sent)
	}
}

// print writes the summary, as ping does, or the -J document.
func (rep *legacyPingReport) print(cfg *config, out *lineWriter, err error) error {
	if cfg.json {
		if err != nil {
			rep.Error = err.Error()
		}
		b, _ := json.MarshalIndent(rep, "", "\t")
		out.raw(string(b) + "\n")
		if err != nil {
			return fmt.Errorf("%w: %w", errReported, err)
		}
		return nil
	}
	out.printf("--- %s ping statistics ---", rep.Target)
	out.printf("%d pings sent, %d pongs received, %.3g%% lost", rep.Sent, rep.Received, rep.LossPercent)
	if r := rep.RTTms; r != nil {
		out.printf("rtt min/avg/max = %s/%s/%s ms", formatMillis(r.Min), formatMillis(r.Avg), formatMillis(r.Max))
	}
	return err
}

// ---- reverse traceroute, server ----

// legacyTraceMsg is one message of an old-protocol reverse traceroute.
type legacyTraceMsg struct {
	Type    string     `json:"type"`
	Data    *legacyHop `json:"data,omitempty"`
	Message string     `json:"message,omitempty"`
}

// legacyHop is a hop as the old protocol has it: one round trip in ms (-1
// without an answer), "*" for the address and name of a silent hop, the
// AS as one string.
type legacyHop struct {
	TTL     int     `json:"ttl"`
	IP      string  `json:"ip"`
	Name    string  `json:"name"`
	RTT     float64 `json:"rtt"`
	Country string  `json:"country"`
	ASN     string  `json:"asn"`
}

// legacyTrace traces the route back to an old client's address, within
// the limits of any reverse traceroute: the peer's own address, one
// trace at a time and --reverse-traceroute-limit a minute per address.
func (s *server) legacyTrace(c *wsConn, peer string) {
	target, err := peerIP(peer)
	if err == nil && s.cfg.noReverseTrace {
		err = errors.New("reverse traceroute is disabled on this server")
	}
	if err == nil {
		err = s.traces.begin(target, time.Now())
	}
	if err != nil {
		s.logRefusal(peer, statusPolicyViolation, fmt.Errorf("legacy reverse traceroute: %w", err))
		sendJSON(c, legacyTraceMsg{Type: "error", Message: err.Error()})
		sendJSON(c, legacyTraceMsg{Type: "end"})
		c.Close(statusPolicyViolation, shortReason(err))
		return
	}
	s.tests.Add(1)
	defer s.tests.Done()
	var endOnce sync.Once
	endTrace := func() { endOnce.Do(func() { s.traces.end(target) }) }
	defer endTrace()
	opt := traceOptions{Names: true, Resolver: s.resolver, Geo: s.geo}.withDefaults()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() { // the trace ends early if the client leaves
		c.SetReadDeadline(time.Now().Add(s.idle + time.Duration(opt.MaxHops*opt.Queries)*opt.Timeout))
		for {
			if _, _, err := c.ReadMessage(nil); err != nil {
				break
			}
		}
		cancel()
	}()
	var sendErr error
	traceErr := traceRoute(ctx, target, opt, func(h traceHop) {
		if sendErr == nil {
			lh := legacyHopOf(h)
			sendErr = sendJSON(c, legacyTraceMsg{Type: "hop", Data: &lh})
		}
	})
	endTrace()
	if sendErr != nil {
		c.Abort()
		return
	}
	if traceErr != nil {
		sendJSON(c, legacyTraceMsg{Type: "error", Message: traceErr.Error()})
	}
	sendJSON(c, legacyTraceMsg{Type: "end"})
	c.Close(statusNormal, "trace done")
	s.logLegacyTrace(peer, target, opt.Proto, traceErr)
}

// legacyHopOf is a hop in the old protocol's shape: its best round trip.
func legacyHopOf(h traceHop) legacyHop {
	lh := legacyHop{TTL: h.TTL, IP: "*", Name: "*", RTT: -1, Country: h.Country}
	if h.Address != "" {
		lh.IP, lh.Name = h.Address, h.Address
		if h.Name != "" {
			lh.Name = h.Name
		}
	}
	for _, r := range h.RTTms {
		if r != nil && (lh.RTT < 0 || *r < lh.RTT) {
			lh.RTT = *r
		}
	}
	if h.ASN != 0 {
		lh.ASN = strings.TrimSpace(fmt.Sprintf("AS%d %s", h.ASN, h.ASName))
	}
	return lh
}

func (s *server) logLegacyTrace(peer string, target netip.Addr, proto string, err error) {
	if s.cfg.json {
		rec := map[string]string{"event": "reverse_traceroute", "legacy": "true", "peer": peer, "target": target.String(), "protocol": proto}
		if err != nil {
			rec["error"] = err.Error()
		}
		s.logJSON(rec)
		return
	}
	line := fmt.Sprintf("%s %s legacy reverse traceroute (%s) to %s", time.Now().UTC().Format(time.RFC3339), peer, proto, target)
	if err != nil {
		line += " error: " + err.Error()
	}
	s.out.println(line)
}

// ---- reverse traceroute, client ----

// legacyTraceWait bounds the wait for each message of a reverse trace:
// an old server probes, and looks up names and the AS, hop by hop.
const legacyTraceWait = 30 * time.Second

// runLegacyTrace is --reverse-traceroute against an old server, printed
// as wperf prints any reverse traceroute. The old server chooses the
// probes and says nothing of them.
func runLegacyTrace(ctx context.Context, cfg *config, out *lineWriter, note string) error {
	u, err := targetURL(cfg)
	if err != nil {
		return err
	}
	report := reverseTraceReport{traceReport: traceReport{Hops: []traceHop{}}, Reverse: true, From: u.Host}
	if !cfg.json {
		out.printf("reverse traceroute from %s to this client, over the old wperf protocol (the server chooses the probes)", u.Host)
	}
	err = followLegacyTrace(ctx, cfg, u, func(h traceHop) {
		if cfg.json {
			report.Hops = append(report.Hops, h)
			return
		}
		out.println(formatHop(h))
	})
	if !cfg.json {
		return err
	}
	if err != nil {
		report.Error = err.Error()
	}
	doc := struct {
		reverseTraceReport
		Legacy legacyInfo `json:"legacy"`
	}{report, legacyInfo{Protocol: legacyProtocolName, AutoDetected: note != "", Note: note}}
	b, _ := json.MarshalIndent(doc, "", "\t")
	out.raw(string(b) + "\n")
	if err != nil {
		return fmt.Errorf("%w: %w", errReported, err)
	}
	return nil
}

// followLegacyTrace asks for the trace and hands over each hop until the
// server's end.
func followLegacyTrace(ctx context.Context, cfg *config, u *url.URL, onHop func(traceHop)) error {
	c, err := legacyCommand(ctx, cfg, u, "reverse_traceroute")
	if err != nil {
		return err
	}
	defer c.Abort()
	var traceErr string
	for {
		msg, err := readLegacyText(c, legacyTraceWait)
		if err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			return fmt.Errorf("reverse traceroute: %w", err)
		}
		var m struct {
			Type    string          `json:"type"`
			Data    json.RawMessage `json:"data"`
			Message string          `json:"message"`
		}
		if json.Unmarshal(msg, &m) != nil {
			continue
		}
		switch m.Type {
		case "hop":
			var lh legacyHop
			if json.Unmarshal(m.Data, &lh) == nil {
				onHop(lh.traceHop())
			}
		case "error":
			traceErr = cleanText(m.Message, maxControlPayload*4)
		case "end":
			c.Close(statusNormal, "done")
			if traceErr != "" {
				return fmt.Errorf("reverse traceroute: %s", traceErr)
			}
			return nil
		}
	}
}

// traceHop is the hop as wperf reports hops; its strings are cleaned when
// printed, as any hop from the network is.
func (lh legacyHop) traceHop() traceHop {
	h := traceHop{TTL: lh.TTL, Country: lh.Country, RTTms: []*float64{nil}}
	if lh.IP != "*" && lh.IP != "" {
		h.Address = lh.IP
		if lh.Name != "*" && lh.Name != lh.IP {
			h.Name = lh.Name
		}
	}
	if lh.RTT >= 0 {
		r := lh.RTT
		h.RTTms = []*float64{&r}
	}
	h.ASName = lh.ASN
	if num, name, _ := strings.Cut(lh.ASN, " "); strings.HasPrefix(num, "AS") {
		if n, err := strconv.ParseUint(num[2:], 10, 32); err == nil {
			h.ASN, h.ASName = uint32(n), name
		}
	}
	return h
}

package main

// reverse_trace.go is both ends of the reverse traceroute: the client
// asks, on a control connection of its own, for the route from the server
// back to the client, and the server traces its peer's address (never one
// the client names) within its limits, streaming each hop as it is final.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"
)

// runReverseTrace is -c HOST --reverse-traceroute: it asks the server to
// trace the route back to us and prints each hop as it arrives, as a local
// traceroute would; -J collects them into one document instead. It needs
// no privileges here.
func runReverseTrace(ctx context.Context, cfg *config, out *lineWriter) error {
	u, err := targetURL(cfg)
	if err != nil {
		return err
	}
	report := reverseTraceReport{traceReport: traceReport{Protocol: cfg.trProto, Hops: []traceHop{}}, Reverse: true}
	err = followTrace(ctx, cfg, u, func(start traceStartMsg) {
		start.Target, start.Protocol = cleanText(start.Target, 64), cleanText(start.Protocol, 8)
		report.Target, report.Address, report.Protocol = start.Target, start.Target, start.Protocol
		report.From = u.Host
		if !cfg.json {
			out.printf("reverse traceroute from %s to %s (this client, as the server sees it), %d hops max, %s probes",
				u.Host, start.Target, start.MaxHops, start.Protocol)
		}
	}, func(h traceHop) {
		if cfg.json {
			report.Hops = append(report.Hops, h)
			return
		}
		out.println(formatHop(h))
	})
	if !cfg.json || errors.Is(err, errOldServer) {
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
func followTrace(ctx context.Context, cfg *config, u *url.URL, onStart func(traceStartMsg), onHop func(traceHop)) error {
	ctrl, err := dialServer(ctx, cfg, u, controlDialOptions(cfg, nil))
	if err != nil {
		return err
	}
	defer ctrl.Abort()
	stop := context.AfterFunc(ctx, ctrl.Abort)
	defer stop()
	req := traceRequest{Type: msgTrace, Version: protocolVersion, Proto: cfg.trProto, MaxHops: cfg.trMaxHops,
		Queries: cfg.trQueries, Timeout: cfg.trTimeout, Geo: !cfg.noGeo, Client: software}
	if err := sendJSON(ctrl, req); err != nil {
		return fmt.Errorf("send trace request: %w", err)
	}
	// A hop can take its probes' timeout plus the server's lookups.
	wait := seconds2dur(cfg.connectTimeout) + time.Duration(cfg.trQueries)*seconds2dur(cfg.trTimeout) + 5*time.Second
	for {
		msg, kind, err := readControlMessage(ctrl, wait)
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
			ctrl.Close(statusNormal, "done")
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

// reverseTrace traces the route from here back to the client and streams
// each hop to it as soon as the hop is known. The target is the client's
// address as this server sees it (or as the trusted proxy says), never an
// address the client names.
func (s *server) reverseTrace(c *wsConn, req *traceRequest, who clientPeer) {
	peer := who.peer
	target, err := peerIP(peer)
	switch {
	case err != nil:
	case s.cfg.noReverseTrace:
		err = errors.New("reverse traceroute is disabled on this server")
	case s.cfg.trustProxy != "" && !who.named:
		// Tracing the TCP peer would trace the proxy.
		err = fmt.Errorf("the server's proxy did not name your address (%s)", s.cfg.trustProxy)
	default:
		err = req.check()
	}
	code := statusPolicyViolation
	if err == nil {
		code, err = s.beginTrace(target)
	}
	if err != nil {
		s.logRefusal(peer, code, err)
		refuse(c, code, err.Error())
		return
	}
	// The trace's place is free once its probes are done, before the
	// close handshake, so a client's next trace never finds it taken.
	var endOnce sync.Once
	endTrace := func() { endOnce.Do(func() { s.endTrace(target) }) }
	defer endTrace()

	opt := traceOptions{
		Proto:    req.Proto,
		MaxHops:  req.MaxHops,
		Queries:  req.Queries,
		Timeout:  seconds2dur(req.Timeout),
		Gap:      reverseProbeGap,
		Names:    true,
		Resolver: s.resolver,
	}
	if req.Geo {
		opt.Geo = s.geo
	}
	opt = opt.withDefaults()
	if err := sendJSON(c, traceStartMsg{Type: msgTraceStart, Target: target.String(), Protocol: opt.Proto, MaxHops: opt.MaxHops}); err != nil {
		c.Abort()
		return
	}
	// The trace ends early if the client goes away or the server stops.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		c.SetReadDeadline(time.Now().Add(s.idle + time.Duration(opt.MaxHops*opt.Queries)*opt.Timeout))
		c.ReadMessage(nil)
		cancel()
	}()
	var sendErr error
	traceErr := traceRoute(ctx, target, opt, func(h traceHop) {
		if sendErr == nil {
			sendErr = sendJSON(c, hopMsg{Type: msgTraceHop, Hop: h})
		}
	})
	endTrace()
	end := traceEndMsg{Type: msgTraceEnd}
	if traceErr != nil {
		end.Error = traceErr.Error()
	}
	if sendErr != nil {
		c.Abort()
		return
	}
	sendJSON(c, end)
	c.Close(statusNormal, "trace done")
	s.logTrace(who, target, opt.Proto, traceErr)
}

// reverseProbeGap paces a reverse trace's probes: at most 500 a second.
// One trace runs at a time per client and per client network, so this is
// also the most any one client can have the server send.
const reverseProbeGap = 2 * time.Millisecond

// beginTrace admits a reverse trace to target: it takes one of the
// --max-clients slots that tests take, and one of --max-reverse-traces,
// within the per-client limits of traceLimiter.
func (s *server) beginTrace(target netip.Addr) (statusCode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.running >= s.cfg.maxClients:
		return statusTryAgainLater, fmt.Errorf("server is busy: %d tests running, its limit (--max-clients); try again later", s.running)
	case s.tracing >= s.cfg.maxReverseTraces:
		return statusTryAgainLater, fmt.Errorf("server is busy: %d reverse traceroutes running, its limit (--max-reverse-traces); try again later", s.tracing)
	}
	if err := s.traces.begin(target, time.Now()); err != nil {
		return statusPolicyViolation, err
	}
	s.running++
	s.tracing++
	return 0, nil
}

func (s *server) endTrace(target netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.traces.end(target)
	s.running--
	s.tracing--
	s.settleWhenIdle()
}

// peerIP is the address in a peer string: "host:port", or the bare
// address a proxy header gives.
func peerIP(peer string) (netip.Addr, error) {
	host := peer
	if h, _, err := net.SplitHostPort(peer); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cannot trace back to %q: not an IP address", peer)
	}
	return a.Unmap().WithZone(""), nil
}

// logTrace notes a reverse trace, with the TCP peer that asked for it
// beside the address traced: behind a proxy, they differ.
func (s *server) logTrace(who clientPeer, target netip.Addr, proto string, err error) {
	if s.cfg.json {
		rec := map[string]string{"event": "reverse_traceroute", "peer": who.peer, "tcp_peer": who.tcp, "target": target.String(), "protocol": proto}
		if err != nil {
			rec["error"] = err.Error()
		}
		s.logJSON(rec)
		return
	}
	line := fmt.Sprintf("%s %s reverse traceroute (%s) to %s", time.Now().UTC().Format(time.RFC3339), who.tcp, proto, target)
	if err != nil {
		line += " error: " + err.Error()
	}
	s.out.println(line)
}

// traceLimiter keeps the server from being turned into a probe cannon.
// It counts traces by client address and by the client's network (its /24
// or /64, where one client's addresses lie): one trace at a time in each,
// and at most perMinute per address, twice that per network, in any
// minute.
type traceLimiter struct {
	mu        sync.Mutex
	perMinute int
	active    map[netip.Prefix]bool
	recent    map[netip.Prefix][]time.Time
}

func newTraceLimiter(perMinute int) *traceLimiter {
	return &traceLimiter{perMinute: perMinute, active: map[netip.Prefix]bool{}, recent: map[netip.Prefix][]time.Time{}}
}

// traceKeys are what a trace to a counts under: the address, and its
// network.
func traceKeys(a netip.Addr) [2]netip.Prefix {
	bits := 24
	if a.Is6() {
		bits = 64
	}
	network, _ := a.Prefix(bits)
	return [2]netip.Prefix{netip.PrefixFrom(a, a.BitLen()), network}
}

// begin admits a trace to a at time now, or says why not.
func (l *traceLimiter) begin(a netip.Addr, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forget(now)
	keys := traceKeys(a)
	for i, k := range keys {
		whom, limit := "your address", l.perMinute
		if i == 1 {
			whom, limit = "your network ("+k.String()+")", 2*l.perMinute
		}
		if l.active[k] {
			return fmt.Errorf("a reverse traceroute to %s is already running", whom)
		}
		if len(l.recent[k]) >= limit {
			return fmt.Errorf("too many reverse traceroutes to %s: at most %d a minute (--reverse-traceroute-limit)", whom, limit)
		}
	}
	for _, k := range keys {
		l.active[k] = true
		l.recent[k] = append(l.recent[k], now)
	}
	return nil
}

// forget drops traces older than a minute.
func (l *traceLimiter) forget(now time.Time) {
	for addr, times := range l.recent {
		kept := times[:0]
		for _, t := range times {
			if now.Sub(t) < time.Minute {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			delete(l.recent, addr)
		} else {
			l.recent[addr] = kept
		}
	}
}

func (l *traceLimiter) end(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range traceKeys(a) {
		delete(l.active, k)
	}
}

// Reverse traceroute: the client asks, on a control connection of its
// own, for the route from the server back to the client's address as the
// server sees it. The client never names the target.
const (
	msgTrace      = "trace"       // client → server: the request
	msgTraceStart = "trace_start" // server → client: whom it traces
)

// traceRequest asks for a reverse traceroute; the server caps every field.
type traceRequest struct {
	Type    string  `json:"type"`
	Version int     `json:"version"`
	Proto   string  `json:"proto"`    // udp, icmp or tcp
	MaxHops int     `json:"max_hops"` // 1..64
	Queries int     `json:"queries"`  // 1..5
	Timeout float64 `json:"timeout"`  // seconds per probe, 0.1..3
	Geo     bool    `json:"geo"`      // ASN and country lookups
	Client  string  `json:"client,omitempty"`
}

// Server-side bounds of a reverse traceroute.
const (
	maxReverseHops    = 64
	maxReverseQueries = 5
	minReverseTimeout = 0.1
	maxReverseTimeout = 3.0
)

// check validates a request and fills its defaults.
func (treq *traceRequest) check() error {
	switch {
	case treq.Version != protocolVersion:
		return fmt.Errorf("protocol version %d is not supported (this server speaks %d)", treq.Version, protocolVersion)
	case treq.Proto == "":
		treq.Proto = "udp"
	case treq.Proto != "udp" && treq.Proto != "icmp" && treq.Proto != "tcp":
		return fmt.Errorf("unknown probe type %q", treq.Proto)
	}
	if treq.MaxHops == 0 {
		treq.MaxHops = 30
	}
	if treq.Queries == 0 {
		treq.Queries = 3
	}
	if treq.Timeout == 0 {
		treq.Timeout = 1
	}
	switch {
	case treq.MaxHops < 1 || treq.MaxHops > maxReverseHops:
		return fmt.Errorf("max_hops %d out of range 1..%d", treq.MaxHops, maxReverseHops)
	case treq.Queries < 1 || treq.Queries > maxReverseQueries:
		return fmt.Errorf("queries %d out of range 1..%d", treq.Queries, maxReverseQueries)
	case !(treq.Timeout >= minReverseTimeout && treq.Timeout <= maxReverseTimeout):
		return fmt.Errorf("timeout %g out of range %g..%g s", treq.Timeout, minReverseTimeout, maxReverseTimeout)
	}
	return nil
}

// traceStartMsg accepts a reverse traceroute and names its target.
type traceStartMsg struct {
	Type     string `json:"type"`
	Target   string `json:"target"` // the client's address as the server sees it
	Protocol string `json:"protocol"`
	MaxHops  int    `json:"max_hops"`
}

// hopMsg carries one hop, sent as soon as the hop is final.
type hopMsg struct {
	Type string   `json:"type"`
	Hop  traceHop `json:"hop"`
}

// traceEndMsg ends a reverse traceroute; Error is set when it failed.
type traceEndMsg struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
}

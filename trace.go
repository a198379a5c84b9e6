package main

// Traceroute: probes with rising TTL, each answer tied to its probe by the
// header that the ICMP error quotes, hops handed on in TTL order as soon as
// each is final.
//
// Layout, by file:
//
//	trace.go         runTraceroute  the --traceroute mode: options, target, text or JSON
//	                 traceRoute     the print-free API: streams traceHop values
//	                 traceState     which probes are out, which hops are final
//	                 annotator      PTR names and ASN/country, bounded in time per hop
//	trace_probe.go   probeSpec      how a probe marks itself, and matching of answers
//	trace_socket.go  socketProber   raw sockets (any OS); trace_linux.go adds the
//	                                unprivileged IP_RECVERR fallback

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	defaultUDPPort = 33434
	defaultTCPPort = 443

	// lookupWait is how long a finished hop waits for its PTR name and
	// ASN/country before it is handed on without them. Lookups start at the
	// hop's first answer, so with a working DNS server they are back long
	// before; with a dead one the whole trace is at most this much later.
	lookupWait = time.Second
	// lookupTimeout bounds one lookup, which may go on after its hop was
	// handed on (its answer then still fills the cache).
	lookupTimeout = 3 * time.Second
	// resolveTimeout bounds the lookup of the target's own name.
	resolveTimeout = 10 * time.Second
)

// runTraceroute is the --traceroute mode: it traces the route to
// cfg.traceHost and writes traceroute-style lines or, with -J, one JSON
// document (with an "error" key when the trace failed).
func runTraceroute(ctx context.Context, cfg *config, w io.Writer) error {
	out, err := openOutput(cfg, w)
	if err != nil {
		return err
	}
	err = traceAndReport(ctx, cfg, out.w)
	if cerr := out.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close --logfile: %w", cerr)
	}
	return err
}

// traceReport is the -J document.
type traceReport struct {
	Target   string     `json:"target"`
	Address  string     `json:"address,omitempty"`
	Protocol string     `json:"protocol"`
	Hops     []traceHop `json:"hops"`
	Error    string     `json:"error,omitempty"`
}

func traceAndReport(ctx context.Context, cfg *config, w io.Writer) error {
	opt := traceOptionsFrom(cfg)
	report := traceReport{Target: cfg.traceHost, Protocol: opt.Proto, Hops: []traceHop{}}
	var werr error // the first failed write of a text line
	writeLine := func(line string) {
		if _, err := fmt.Fprintln(w, line); err != nil && werr == nil {
			werr = fmt.Errorf("write output: %w", err)
		}
	}
	dst, err := resolveTarget(ctx, cfg.traceHost, cfg.family)
	var t *tracer
	if err == nil {
		report.Address = dst.String()
		t, err = openTrace(dst, opt)
	}
	if err == nil {
		if !cfg.json {
			writeLine(fmt.Sprintf("traceroute to %s (%s), %d hops max, %s probes", cfg.traceHost, dst, opt.MaxHops, opt.Proto))
		}
		err = t.run(ctx, func(h traceHop) {
			if cfg.json {
				report.Hops = append(report.Hops, h)
				return
			}
			writeLine(formatHop(h))
		})
	}
	switch {
	case cfg.json:
		return writeTraceJSON(w, report, err)
	case err != nil:
		return fmt.Errorf("traceroute to %s: %w", cfg.traceHost, err)
	}
	return werr
}

// writeTraceJSON writes the -J document; a failed trace is reported inside
// it, so main only sets the exit code.
func writeTraceJSON(w io.Writer, r traceReport, traceErr error) error {
	if traceErr != nil {
		r.Error = fmt.Sprintf("traceroute to %s: %v", r.Target, traceErr)
	}
	b, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return fmt.Errorf("encode traceroute JSON: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write traceroute JSON: %w", err)
	}
	if traceErr != nil {
		return errReported
	}
	return nil
}

// traceOptionsFrom maps the command line onto traceOptions.
func traceOptionsFrom(cfg *config) traceOptions {
	r := lookupResolver(cfg.dnsServer)
	opt := traceOptions{
		Proto:    cfg.trProto,
		Port:     cfg.trPort,
		MaxHops:  cfg.trMaxHops,
		Timeout:  seconds2dur(cfg.trTimeout),
		Queries:  cfg.trQueries,
		Parallel: cfg.trParallel,
		Names:    !cfg.numeric,
		Resolver: r,
	}
	if !cfg.noGeo {
		opt.Geo = newGeoCache(r)
	}
	return opt.withDefaults()
}

// resolveTarget turns HOST into one address of the family asked for (0:
// either), with the pure-Go resolver and the system's DNS configuration.
func resolveTarget(ctx context.Context, host string, family int) (netip.Addr, error) {
	literal := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(literal); err == nil {
		a = a.Unmap().WithZone("")
		if !familyMatches(a, family) {
			return netip.Addr{}, fmt.Errorf("%s is not an IPv%d address", host, family)
		}
		return a, nil
	}
	network := "ip"
	if family != 0 {
		network += strconv.Itoa(family)
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := (&net.Resolver{PreferGo: true}).LookupNetIP(ctx, network, host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if a = a.Unmap().WithZone(""); familyMatches(a, family) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("resolve %s: no IPv%d address", host, family)
}

func familyMatches(a netip.Addr, family int) bool {
	return family == 0 || (family == 4) == a.Is4()
}

// traceOptions shapes one trace. The zero value is a default trace: UDP,
// 30 hops, 1 s per probe, 3 probes per hop, all hops at once, no lookups.
// MaxHops is capped at 255 and Queries at 10.
type traceOptions struct {
	Proto    string        // "udp", "icmp" or "tcp"
	Port     int           // first UDP port or the TCP port; 0: 33434 or 443
	MaxHops  int           // highest TTL probed
	Timeout  time.Duration // wait for each probe's answer
	Queries  int           // probes per hop
	Parallel int           // hops probed at once; 0: all of them
	Gap      time.Duration // least time between two probes; 0: no pacing
	Names    bool          // look up PTR names
	Resolver *net.Resolver // for PTR names; nil: the pure-Go default
	Geo      *geoCache     // ASN/country lookups; nil: none
	// LookupWait is how long a finished hop waits for its lookups; 0:
	// lookupWait.
	LookupWait time.Duration
}

func (o traceOptions) withDefaults() traceOptions {
	if o.Proto == "" {
		o.Proto = "udp"
	}
	if o.Port == 0 {
		o.Port = defaultUDPPort
		if o.Proto == "tcp" {
			o.Port = defaultTCPPort
		}
	}
	if o.MaxHops <= 0 {
		o.MaxHops = 30
	}
	o.MaxHops = min(o.MaxHops, 255) // the largest TTL
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Queries <= 0 {
		o.Queries = 3
	}
	o.Queries = min(o.Queries, 10) // as on the command line; keeps ICMP sequence numbers unique
	if o.Parallel <= 0 || o.Parallel > o.MaxHops {
		o.Parallel = o.MaxHops
	}
	if o.Resolver == nil {
		o.Resolver = &net.Resolver{PreferGo: true}
	}
	if o.LookupWait <= 0 {
		o.LookupWait = lookupWait
	}
	return o
}

// traceHop is one line of a trace, final once handed to onHop. Strings are
// empty and ASN is 0 where nothing is known; a lost probe's RTT is null.
type traceHop struct {
	TTL     int        `json:"ttl"`
	Address string     `json:"address"`
	Name    string     `json:"name"`
	ASN     uint32     `json:"asn"`
	ASName  string     `json:"as_name"`
	Country string     `json:"country"`
	Prefix  string     `json:"prefix"`
	RTTms   []*float64 `json:"rtt_ms"`
	// Unreachable is traceroute's mark for an ICMP destination unreachable
	// that ended the trace at this hop: !N, !H, !P, !X and so on.
	Unreachable string `json:"unreachable,omitempty"`
}

// formatHop renders a hop the way traceroute does, with the registry's
// country and AS in brackets when known:
//
//	3  [US, AS7922 COMCAST]  some.router.com (96.120.88.193)  9.876 ms  9.901 ms  10.2 ms
//
// It also renders hops received from a remote peer, so every string is
// cleaned of what a terminal would interpret.
func formatHop(h traceHop) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%2d  ", h.TTL)
	if h.Address != "" {
		if g := hopGeo(h); g != "" {
			b.WriteString("[" + g + "]  ")
		}
		addr := cleanText(h.Address, 64)
		if name := cleanText(h.Name, 255); name != "" {
			addr = name + " (" + addr + ")"
		}
		b.WriteString(addr + "  ")
	}
	for i, rtt := range h.RTTms {
		if i > 0 {
			b.WriteString("  ")
		}
		if rtt == nil {
			b.WriteString("*")
			continue
		}
		b.WriteString(formatMillis(*rtt) + " ms")
	}
	if h.Unreachable != "" {
		b.WriteString(" " + cleanText(h.Unreachable, 8))
	}
	return b.String()
}

// hopGeo is the inside of the bracket: "US, AS7922 COMCAST", or what of it is known.
func hopGeo(h traceHop) string {
	var parts []string
	if cc := countryCode(h.Country); cc != "" {
		parts = append(parts, cc)
	}
	if h.ASN != 0 {
		as := "AS" + strconv.FormatUint(uint64(h.ASN), 10)
		if name := shortASName(cleanText(h.ASName, asNameMax), h.ASN); name != "" {
			as += " " + name
		}
		parts = append(parts, as)
	}
	return strings.Join(parts, ", ")
}

// formatMillis prints an RTT to the microsecond without trailing zeros
// (9.876, 10.2, 12).
func formatMillis(ms float64) string {
	s := strconv.FormatFloat(ms, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// traceRoute probes the route to dst and calls onHop once per hop, in TTL
// order, as soon as that hop is final: all its probes answered or timed out
// and its lookups back or given up (LookupWait). Hops past the destination,
// or past a hop that answered "unreachable", are not reported. onHop is
// called from one goroutine, and never after traceRoute returns. Nothing is
// printed, so a server can stream hops to a remote client.
func traceRoute(ctx context.Context, dst netip.Addr, opt traceOptions, onHop func(traceHop)) error {
	t, err := openTrace(dst, opt)
	if err != nil {
		return err
	}
	return t.run(ctx, onHop)
}

// tracer is a trace whose sockets are open: what can fail for lack of
// privileges or routes has failed by then, before anything is announced.
type tracer struct {
	opt     traceOptions
	p       prober
	replies chan reply
}

// openTrace opens the sockets of a trace to dst; run it once with run.
func openTrace(dst netip.Addr, opt traceOptions) (*tracer, error) {
	opt = opt.withDefaults()
	spec, err := newProbeSpec(dst.Unmap().WithZone(""), opt)
	if err != nil {
		return nil, err
	}
	replies := make(chan reply, 2*spec.count)
	p, err := openProber(spec, replies)
	if err != nil {
		return nil, err
	}
	if opt.Gap > 0 {
		p = &pacedProber{prober: p, gap: opt.Gap}
	}
	return &tracer{opt: opt, p: p, replies: replies}, nil
}

// pacedProber spaces probes at least gap apart. Each probe's send time is
// still taken as it leaves, so RTTs do not include the wait.
type pacedProber struct {
	prober
	gap  time.Duration
	next time.Time
}

func (p *pacedProber) send(idx, ttl int) (time.Time, error) {
	if wait := time.Until(p.next); wait > 0 {
		time.Sleep(wait)
	}
	sent, err := p.prober.send(idx, ttl)
	p.next = time.Now().Add(p.gap)
	return sent, err
}

// run probes and reports hops as traceRoute describes, then closes the
// sockets.
func (t *tracer) run(ctx context.Context, onHop func(traceHop)) error {
	defer t.p.close()
	return runTrace(ctx, t.p, t.opt, t.replies, onHop)
}

// runTrace drives an open prober to the end of the trace. It is apart from
// traceRoute so that tests can drive a scripted prober.
func runTrace(ctx context.Context, p prober, opt traceOptions, replies <-chan reply, onHop func(traceHop)) error {
	ctx, cancel := context.WithCancel(ctx)
	ann := newAnnotator(ctx, opt)
	defer func() {
		cancel() // lookups still running are of no more use
		ann.wait()
	}()
	finished := make(chan finishedHop, opt.MaxHops)
	var emitter sync.WaitGroup
	emitter.Go(func() {
		for f := range finished {
			onHop(ann.annotate(ctx, f))
		}
	})
	err := newTraceState(opt).run(ctx, p, replies, ann, finished)
	close(finished)
	emitter.Wait()
	return err
}

// prober sends probes and delivers the answers it can tie to them on the
// channel it was opened with. send is called from one goroutine.
type prober interface {
	send(idx, ttl int) (time.Time, error)
	close()
}

type probeStatus uint8

const (
	probeWaiting probeStatus = iota + 1
	probeAnswered
	probeLost
)

type probeSlot struct {
	status   probeStatus
	sent     time.Time
	deadline time.Time
	rtt      time.Duration
}

type hopState struct {
	probes   []probeSlot
	from     netip.Addr // the first address that answered
	flag     string
	open     int // probes still waiting
	launched bool
	doneAt   time.Time
}

// finishedHop is a hop whose probes are done, on its way to the lookups.
type finishedHop struct {
	hop    traceHop
	addr   netip.Addr
	doneAt time.Time
}

// traceState is the bookkeeping of one trace, owned by one goroutine.
type traceState struct {
	opt     traceOptions
	hops    []hopState
	next    int // index of the next hop to launch
	emitted int // hops handed on
	limit   int // hops that count: up to the destination once it answered
}

func newTraceState(opt traceOptions) *traceState {
	s := &traceState{opt: opt, hops: make([]hopState, opt.MaxHops), limit: opt.MaxHops}
	for i := range s.hops {
		s.hops[i].probes = make([]probeSlot, opt.Queries)
	}
	return s
}

// run launches hops as the parallel window allows, records answers and
// timeouts, and hands on finished hops in order until the last one counts.
func (s *traceState) run(ctx context.Context, p prober, replies <-chan reply, ann *annotator, finished chan<- finishedHop) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if err := s.launch(p); err != nil {
			return err
		}
		s.flush(finished)
		if s.emitted >= s.limit {
			return nil
		}
		timer.Reset(time.Until(s.nextDeadline()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-replies:
			if r.err != nil {
				return r.err
			}
			if s.record(r) {
				ann.start(r.from)
			}
		case <-timer.C:
			s.expire(time.Now())
		}
	}
}

// launch sends every probe of the next hops while fewer than Parallel hops
// are waiting for answers.
func (s *traceState) launch(p prober) error {
	for s.next < s.limit && s.busy() < s.opt.Parallel {
		h := &s.hops[s.next]
		ttl := s.next + 1
		h.launched, h.open = true, len(h.probes)
		for q := range h.probes {
			sent, err := p.send(s.next*s.opt.Queries+q, ttl)
			if err != nil {
				return fmt.Errorf("send probe with ttl %d: %w", ttl, err)
			}
			h.probes[q] = probeSlot{status: probeWaiting, sent: sent, deadline: sent.Add(s.opt.Timeout)}
		}
		s.next++
	}
	return nil
}

// busy counts the hops that still wait for answers.
func (s *traceState) busy() int {
	n := 0
	for i := s.emitted; i < s.next && i < s.limit; i++ {
		if s.hops[i].open > 0 {
			n++
		}
	}
	return n
}

// record files an answer; it reports false for answers to probes that are
// no longer waited for (duplicates, late ones, hops past the destination).
func (s *traceState) record(r reply) bool {
	hi, qi := r.idx/s.opt.Queries, r.idx%s.opt.Queries
	if r.idx < 0 || hi >= s.limit || !r.from.IsValid() {
		return false
	}
	h := &s.hops[hi]
	slot := &h.probes[qi]
	if slot.status != probeWaiting {
		return false
	}
	slot.status, slot.rtt = probeAnswered, max(r.at.Sub(slot.sent), 0)
	s.finishProbe(h, r.at)
	if !h.from.IsValid() {
		h.from = r.from
	}
	switch r.kind {
	case replyReached:
		s.limit = min(s.limit, hi+1)
	case replyUnreachable:
		h.flag = r.flag
		s.limit = min(s.limit, hi+1)
	}
	return true
}

// finishProbe counts one probe of h as done.
func (s *traceState) finishProbe(h *hopState, at time.Time) {
	h.open--
	if h.open == 0 {
		h.doneAt = at
	}
}

// expire gives up on the probes whose time is over.
func (s *traceState) expire(now time.Time) {
	for i := s.emitted; i < s.next && i < s.limit; i++ {
		h := &s.hops[i]
		for q := range h.probes {
			if p := &h.probes[q]; p.status == probeWaiting && !now.Before(p.deadline) {
				p.status = probeLost
				s.finishProbe(h, now)
			}
		}
	}
}

// nextDeadline is when the next waiting probe times out.
func (s *traceState) nextDeadline() time.Time {
	next := time.Now().Add(s.opt.Timeout)
	for i := s.emitted; i < s.next && i < s.limit; i++ {
		for _, p := range s.hops[i].probes {
			if p.status == probeWaiting && p.deadline.Before(next) {
				next = p.deadline
			}
		}
	}
	return next
}

// flush hands on the finished hops that have no unfinished hop before them.
// finished has room for every hop, so this never blocks.
func (s *traceState) flush(finished chan<- finishedHop) {
	for s.emitted < s.limit {
		h := &s.hops[s.emitted]
		if !h.launched || h.open > 0 {
			return
		}
		finished <- finishedHop{hop: h.result(s.emitted + 1), addr: h.from, doneAt: h.doneAt}
		s.emitted++
	}
}

func (h *hopState) result(ttl int) traceHop {
	hop := traceHop{TTL: ttl, RTTms: make([]*float64, len(h.probes)), Unreachable: h.flag}
	if h.from.IsValid() {
		hop.Address = h.from.String()
	}
	for i, p := range h.probes {
		if p.status == probeAnswered {
			ms := math.Round(float64(p.rtt)/float64(time.Microsecond)) / 1000
			hop.RTTms[i] = &ms
		}
	}
	return hop
}

// annotator looks up names and ASN/country for the addresses that answer,
// starting at the first answer so the lookups overlap the probing.
type annotator struct {
	ctx context.Context
	opt traceOptions

	mu    sync.Mutex
	notes map[netip.Addr]*hopNote
	wg    sync.WaitGroup
}

// hopNote holds the lookups of one address; each done channel closes when
// its field is written.
type hopNote struct {
	nameDone, geoDone chan struct{}
	name              string
	geo               geoInfo
	geoOK             bool
}

func newAnnotator(ctx context.Context, opt traceOptions) *annotator {
	return &annotator{ctx: ctx, opt: opt, notes: map[netip.Addr]*hopNote{}}
}

// start begins the lookups of a, once per address.
func (a *annotator) start(addr netip.Addr) {
	if !a.opt.Names && a.opt.Geo == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.notes[addr]; ok {
		return
	}
	n := &hopNote{nameDone: make(chan struct{}), geoDone: make(chan struct{})}
	a.notes[addr] = n
	a.wg.Go(func() {
		defer close(n.nameDone)
		if a.opt.Names {
			n.name = a.lookupName(addr)
		}
	})
	a.wg.Go(func() {
		defer close(n.geoDone)
		if a.opt.Geo != nil {
			ctx, cancel := context.WithTimeout(a.ctx, lookupTimeout)
			defer cancel()
			n.geo, n.geoOK = a.opt.Geo.lookup(ctx, addr)
		}
	})
}

func (a *annotator) lookupName(addr netip.Addr) string {
	ctx, cancel := context.WithTimeout(a.ctx, lookupTimeout)
	defer cancel()
	names, err := a.opt.Resolver.LookupAddr(ctx, addr.String())
	if err != nil || len(names) == 0 {
		return ""
	}
	return strings.TrimSuffix(names[0], ".")
}

// annotate fills in what the lookups found by the hop's deadline.
func (a *annotator) annotate(ctx context.Context, f finishedHop) traceHop {
	hop := f.hop
	a.mu.Lock()
	n := a.notes[f.addr]
	a.mu.Unlock()
	if n == nil {
		return hop
	}
	deadline := f.doneAt.Add(a.opt.LookupWait)
	if waitUntil(ctx, n.nameDone, deadline) {
		hop.Name = n.name
	}
	if waitUntil(ctx, n.geoDone, deadline) && n.geoOK {
		hop.ASN, hop.ASName, hop.Country = n.geo.ASN, n.geo.ASName, n.geo.Country
		hop.Prefix = n.geo.Prefix.String()
	}
	return hop
}

// wait returns when every lookup goroutine has ended; they end soon after
// the trace's context is cancelled.
func (a *annotator) wait() { a.wg.Wait() }

// waitUntil reports whether done closed before deadline (and ctx ended).
func waitUntil(ctx context.Context, done <-chan struct{}, deadline time.Time) bool {
	select {
	case <-done:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

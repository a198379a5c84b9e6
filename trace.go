package main

// Traceroute: probes with rising TTL, each answer tied to its probe by the
// header that the ICMP error quotes, hops handed on in TTL order as soon as
// each is final.
//
// Layout of this file, top down:
//
//	runTraceroute   the --traceroute mode: options, target, text or JSON
//	traceRoute      the print-free API: streams traceHop values
//	traceState      which probes are out, which hops are final
//	annotator       PTR names and ASN/country, bounded in time per hop
//	probeSpec       how a probe marks itself, and matching of answers
//	socketProber    raw sockets (any OS); trace_linux.go adds the
//	                unprivileged IP_RECVERR fallback

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
	// readPoll is the read deadline of the reply readers, which see the end
	// of a trace at the latest this long after it (closing their sockets
	// usually wakes them at once), and the write deadline of a probe.
	readPoll = time.Second
	// maxSendAttempts bounds the writes of one probe that fail on errors
	// left by earlier answers (see socketProber.send).
	maxSendAttempts = 8
	// maxReadFailures ends a trace whose socket keeps failing, instead of
	// spinning; single failures are normal (see readPackets).
	maxReadFailures = 100
)

// probePayload fills UDP and ICMP probes, so that a capture says what they are.
var probePayload = []byte("wperf traceroute probe..........")

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
	return &tracer{opt: opt, p: p, replies: replies}, nil
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

// replyKind says what an answer means for the trace.
type replyKind uint8

const (
	replyHop         replyKind = iota // time exceeded: a router on the way
	replyReached                      // the destination answered
	replyUnreachable                  // a router or the destination refused
)

// reply is one answer tied to its probe, or a reader's failure (err).
type reply struct {
	idx  int // the probe: (ttl-1)*queries + query
	from netip.Addr
	at   time.Time
	kind replyKind
	flag string // traceroute's mark for replyUnreachable
	err  error
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

// IP protocol numbers and ICMP types that probes and answers use.
const (
	ipProtoICMP   = 1
	ipProtoTCP    = 6
	ipProtoUDP    = 17
	ipProtoICMPv6 = 58

	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10
)

// probeSpec is how the probes of one trace mark themselves, so that each
// answer can be tied to exactly one probe, idx = (ttl-1)*queries + query:
// UDP by destination port port+idx (and our source port), ICMP by echo
// identifier and sequence idx, TCP by ports and sequence number seqBase+idx.
type probeSpec struct {
	proto   string
	dst     netip.Addr
	src     netip.Addr // our address toward dst, for TCP's checksum
	port    uint16     // first UDP destination port, or the TCP one
	srcPort uint16     // our UDP or TCP port; 0 while unknown
	icmpID  uint16
	seqBase uint32
	count   int // probes in the whole trace
}

func newProbeSpec(dst netip.Addr, opt traceOptions) (*probeSpec, error) {
	count := opt.MaxHops * opt.Queries
	if opt.Proto == "udp" && opt.Port+count-1 > 65535 {
		return nil, fmt.Errorf("udp ports %d and up leave no room for %d probes: choose a lower --tr-port", opt.Port, count)
	}
	src, err := sourceAddr(dst)
	if err != nil {
		return nil, err
	}
	return &probeSpec{
		proto:   opt.Proto,
		dst:     dst,
		src:     src,
		port:    uint16(opt.Port),
		icmpID:  uint16(rand.Uint32()),
		seqBase: rand.Uint32(),
		count:   count,
	}, nil
}

// sourceAddr asks the routing table which of our addresses faces dst; a
// connected UDP socket learns it without sending anything.
func sourceAddr(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, defaultUDPPort)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", dst, err)
	}
	defer c.Close()
	return addrOf(c.LocalAddr()), nil
}

func (s *probeSpec) icmpProto() int {
	if s.dst.Is6() {
		return ipProtoICMPv6
	}
	return ipProtoICMP
}

func (s *probeSpec) echoRequestType() icmp.Type {
	if s.dst.Is6() {
		return ipv6.ICMPTypeEchoRequest
	}
	return ipv4.ICMPTypeEcho
}

func (s *probeSpec) echoReplyType() icmp.Type {
	if s.dst.Is6() {
		return ipv6.ICMPTypeEchoReply
	}
	return ipv4.ICMPTypeEchoReply
}

// echoTypeByte is the echo request type as it appears in a quoted header.
func (s *probeSpec) echoTypeByte() byte {
	if s.dst.Is6() {
		return byte(ipv6.ICMPTypeEchoRequest)
	}
	return byte(ipv4.ICMPTypeEcho)
}

// echo builds the ICMP echo request of probe idx.
func (s *probeSpec) echo(idx int) ([]byte, error) {
	m := icmp.Message{Type: s.echoRequestType(), Body: &icmp.Echo{ID: int(s.icmpID), Seq: idx, Data: probePayload}}
	b, err := m.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("build echo request: %w", err)
	}
	return b, nil
}

// syn builds the TCP SYN of probe idx: 20 bytes of header plus an MSS
// option, as some middleboxes drop SYNs that carry none.
func (s *probeSpec) syn(idx int) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint16(b[0:], s.srcPort)
	binary.BigEndian.PutUint16(b[2:], s.port)
	binary.BigEndian.PutUint32(b[4:], s.seqBase+uint32(idx))
	b[12] = 6 << 4 // header length: 6 words
	b[13] = tcpFlagSYN
	binary.BigEndian.PutUint16(b[14:], 65535)
	b[20], b[21] = 2, 4 // MSS option
	binary.BigEndian.PutUint16(b[22:], 1220)
	binary.BigEndian.PutUint16(b[16:], transportChecksum(s.src, s.dst, ipProtoTCP, b))
	return b
}

// transportChecksum is the Internet checksum of a TCP or UDP segment with
// its pseudo-header. The IPv4 and IPv6 pseudo-headers add up the same way:
// both addresses, the protocol and the segment length.
func transportChecksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	sum := uint32(proto) + uint32(len(seg))
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	add(seg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// parseICMP ties an ICMP message read from the network to a probe. The
// message is hostile input: x/net parses the outer header, and the quoted
// datagram is bounds-checked by matchQuoted.
func (s *probeSpec) parseICMP(b []byte, from netip.Addr, at time.Time) (reply, bool) {
	m, err := icmp.ParseMessage(s.icmpProto(), b)
	if err != nil {
		return reply{}, false
	}
	r := reply{from: from, at: at}
	var ok bool
	switch body := m.Body.(type) {
	case *icmp.TimeExceeded:
		// code 1 is a fragment reassembly timeout, not a hop
		r.idx, ok = s.matchQuoted(body.Data)
		ok = ok && m.Code == 0
	case *icmp.DstUnreach:
		r.idx, ok = s.matchQuoted(body.Data)
		r.kind, r.flag = classifyUnreachable(s.dst.Is6(), m.Code)
	case *icmp.Echo:
		r.idx, r.kind = body.Seq, replyReached
		ok = s.proto == "icmp" && m.Type == s.echoReplyType() && body.ID == int(s.icmpID) &&
			body.Seq >= 0 && body.Seq < s.count
	}
	return r, ok && from.IsValid()
}

// parseTCPAnswer ties a TCP segment read from a raw socket to a probe: the
// destination's SYN-ACK (port open) or RST (closed) acknowledges seq+1.
func (s *probeSpec) parseTCPAnswer(b []byte, from netip.Addr, at time.Time) (reply, bool) {
	if s.proto != "tcp" || from != s.dst || len(b) < 20 {
		return reply{}, false
	}
	flags := b[13]
	if binary.BigEndian.Uint16(b[0:]) != s.port || binary.BigEndian.Uint16(b[2:]) != s.srcPort ||
		flags&tcpFlagACK == 0 || flags&(tcpFlagSYN|tcpFlagRST) == 0 {
		return reply{}, false
	}
	d := binary.BigEndian.Uint32(b[8:]) - 1 - s.seqBase
	if d >= uint32(s.count) {
		return reply{}, false
	}
	return reply{idx: int(d), from: from, at: at, kind: replyReached}, true
}

// matchQuoted finds the probe whose header an ICMP error quotes: q starts
// with the original IP header, followed by at least 8 bytes of transport
// header (RFC 792), enough for ports and the TCP sequence number.
func (s *probeSpec) matchQuoted(q []byte) (int, bool) {
	proto, dst, l4, ok := splitQuotedIP(q)
	if !ok || dst != s.dst {
		return 0, false
	}
	return s.matchTransport(proto, l4)
}

// splitQuotedIP reads the protocol and destination of a quoted IPv4 or
// IPv6 header and returns what follows it.
func splitQuotedIP(q []byte) (proto uint8, dst netip.Addr, l4 []byte, ok bool) {
	if len(q) == 0 {
		return 0, netip.Addr{}, nil, false
	}
	switch q[0] >> 4 {
	case 4:
		ihl := int(q[0]&0x0f) * 4
		// a later fragment carries no transport header to match
		if ihl < 20 || len(q) < ihl || binary.BigEndian.Uint16(q[6:])&0x1fff != 0 {
			return 0, netip.Addr{}, nil, false
		}
		return q[9], netip.AddrFrom4([4]byte(q[16:20])), q[ihl:], true
	case 6:
		if len(q) < 40 {
			return 0, netip.Addr{}, nil, false
		}
		return q[6], netip.AddrFrom16([16]byte(q[24:40])), q[40:], true
	}
	return 0, netip.Addr{}, nil, false
}

// matchTransport checks the first 8 bytes of a quoted transport header
// against our probes and returns the probe's index.
func (s *probeSpec) matchTransport(proto uint8, l4 []byte) (int, bool) {
	if len(l4) < 8 {
		return 0, false
	}
	sport, dport := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	switch s.proto {
	case "udp":
		if proto != ipProtoUDP || (s.srcPort != 0 && sport != s.srcPort) {
			return 0, false
		}
		return s.index(int(dport) - int(s.port))
	case "tcp":
		if proto != ipProtoTCP || sport != s.srcPort || dport != s.port {
			return 0, false
		}
		d := binary.BigEndian.Uint32(l4[4:]) - s.seqBase
		if d >= uint32(s.count) {
			return 0, false
		}
		return int(d), true
	case "icmp":
		if int(proto) != s.icmpProto() {
			return 0, false
		}
		return s.matchEcho(l4)
	}
	return 0, false
}

// matchEcho reads a quoted echo request header: type, code, checksum,
// identifier, sequence.
func (s *probeSpec) matchEcho(h []byte) (int, bool) {
	if len(h) < 8 || h[0] != s.echoTypeByte() || binary.BigEndian.Uint16(h[4:]) != s.icmpID {
		return 0, false
	}
	return s.index(int(binary.BigEndian.Uint16(h[6:])))
}

func (s *probeSpec) index(i int) (int, bool) {
	return i, i >= 0 && i < s.count
}

// traceroute's marks for ICMP and ICMPv6 destination-unreachable codes:
// network, host, protocol, fragmentation needed, source route failed,
// administratively prohibited, host precedence violation, precedence cutoff.
var (
	unreachableMarks4 = map[int]string{0: "!N", 1: "!H", 2: "!P", 4: "!F", 5: "!S", 9: "!X", 10: "!X", 13: "!X", 14: "!V", 15: "!C"}
	unreachableMarks6 = map[int]string{0: "!N", 1: "!X", 3: "!H", 5: "!X", 6: "!X"}
)

// classifyUnreachable maps a destination-unreachable code to what it means
// for the trace: "port unreachable" is the destination's answer to a UDP
// probe; anything else ends the trace with traceroute's mark.
func classifyUnreachable(v6 bool, code int) (replyKind, string) {
	port, marks := 3, unreachableMarks4
	if v6 {
		port, marks = 4, unreachableMarks6
	}
	if code == port {
		return replyReached, ""
	}
	if m, ok := marks[code]; ok {
		return replyUnreachable, m
	}
	return replyUnreachable, "!" + strconv.Itoa(code)
}

// Values of Linux's struct sock_extended_err and sockaddr, which the
// IP_RECVERR fallback reads (trace_linux.go). They are parsed here, apart
// from the system calls, so the parsing is tested on any OS.
const (
	eeOriginICMP  = 2
	eeOriginICMP6 = 3
	linuxAFInet   = 2
	linuxAFInet6  = 10
)

// queuedError is one entry of a socket's error queue: an ICMP error that
// the kernel already tied to the socket whose packet caused it.
type queuedError struct {
	origin   uint8
	icmpType uint8
	icmpCode uint8
	offender netip.Addr // who sent the ICMP error
	dst      netip.Addr // where the probe was going
	dstPort  uint16
	payload  []byte // the start of what the probe carried after its UDP header, or its ICMP header
}

// parseExtendedErr reads the IP_RECVERR control message: struct
// sock_extended_err (errno u32, origin, type, code, pad, info u32, data u32)
// followed by the offender's sockaddr, in the host's byte order.
func parseExtendedErr(b []byte) (queuedError, bool) {
	if len(b) < 16 {
		return queuedError{}, false
	}
	e := queuedError{origin: b[4], icmpType: b[5], icmpCode: b[6]}
	sa := b[16:]
	if len(sa) < 2 {
		return e, true
	}
	switch binary.NativeEndian.Uint16(sa) {
	case linuxAFInet:
		if len(sa) >= 8 {
			e.offender = netip.AddrFrom4([4]byte(sa[4:8]))
		}
	case linuxAFInet6:
		if len(sa) >= 24 {
			e.offender = netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
		}
	}
	return e, true
}

// matchQueued ties an error-queue entry to a probe: the kernel already
// matched the quoted header to our socket, and tells the probe's destination
// port (UDP), or hands back the quoted echo header (ICMP).
func (s *probeSpec) matchQueued(e queuedError, at time.Time) (reply, bool) {
	if (e.origin != eeOriginICMP && e.origin != eeOriginICMP6) || !e.offender.IsValid() || e.dst != s.dst {
		return reply{}, false
	}
	r := reply{from: e.offender, at: at}
	var ok bool
	switch s.proto {
	case "udp":
		r.idx, ok = s.index(int(e.dstPort) - int(s.port))
	case "icmp":
		r.idx, ok = s.matchEcho(e.payload)
	}
	if !ok {
		return reply{}, false
	}
	exceeded, unreachable := uint8(ipv4.ICMPTypeTimeExceeded), uint8(ipv4.ICMPTypeDestinationUnreachable)
	if s.dst.Is6() {
		exceeded, unreachable = uint8(ipv6.ICMPTypeTimeExceeded), uint8(ipv6.ICMPTypeDestinationUnreachable)
	}
	switch e.icmpType {
	case exceeded:
		return r, e.icmpCode == 0
	case unreachable:
		r.kind, r.flag = classifyUnreachable(s.dst.Is6(), int(e.icmpCode))
		return r, true
	}
	return reply{}, false
}

// addrOf is the IP of a socket address, without zone or IPv4 mapping.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// openProber opens raw sockets, and falls back to what the platform allows
// without privileges when that is refused (trace_linux.go, trace_other.go).
func openProber(s *probeSpec, out chan<- reply) (prober, error) {
	p, err := openRawProber(s, out)
	if err == nil {
		return p, nil
	}
	return openFallbackProber(s, out, err)
}

// socketProber sends probes on one socket and runs the readers that turn
// what comes back into replies.
type socketProber struct {
	conn   net.PacketConn
	setTTL func(int) error
	build  func(idx int) ([]byte, net.Addr, error)
	// settle clears a pending socket error by reading the errors behind
	// it; nil where the failed write itself clears it (see send).
	settle func()

	out     chan<- reply
	done    chan struct{}
	wg      sync.WaitGroup
	closers []io.Closer
}

func newSocketProber(out chan<- reply) *socketProber {
	return &socketProber{out: out, done: make(chan struct{})}
}

// send sends probe idx with the given TTL. Setting the TTL and writing are
// not atomic, which is fine: one goroutine sends.
func (p *socketProber) send(idx, ttl int) (time.Time, error) {
	b, to, err := p.build(idx)
	if err != nil {
		return time.Time{}, err
	}
	if err := p.setTTL(ttl); err != nil {
		return time.Time{}, fmt.Errorf("set ttl %d: %w", ttl, err)
	}
	if err := p.conn.SetWriteDeadline(time.Now().Add(readPoll)); err != nil {
		return time.Time{}, fmt.Errorf("set write deadline: %w", err)
	}
	// A socket that was told about an ICMP error (a hard one on a raw
	// socket, any with IP_RECVERR) fails its next write with that error, as
	// a pending socket error, and sends nothing. The failed write clears
	// it; with IP_RECVERR it comes back while errors are queued, so settle
	// reads them first. A real local failure fails every attempt.
	var sent time.Time
	for attempt := 1; ; attempt++ {
		sent = time.Now()
		_, err = p.conn.WriteTo(b, to)
		if err == nil || attempt == maxSendAttempts || !pendingSocketError(err) {
			break
		}
		if p.settle != nil {
			p.settle()
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("write probe: %w", err)
	}
	return sent, nil
}

// pendingSocketError tells the errors that an earlier ICMP error leaves on
// a socket for its next call.
func pendingSocketError(err error) bool {
	for _, e := range []error{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ECONNREFUSED, syscall.EPROTO, syscall.EMSGSIZE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// close stops the readers and waits for them.
func (p *socketProber) close() {
	close(p.done)
	for _, c := range p.closers {
		c.Close()
	}
	p.wg.Wait()
}

// offer passes a reply on without waiting, for readers that must not
// block. The channel has room for two answers to every probe, so it only
// fills up with duplicates, which the trace ignores anyway.
func (p *socketProber) offer(r reply) {
	select {
	case p.out <- r:
	default:
	}
}

// deliver passes a reply on unless the prober is closing.
func (p *socketProber) deliver(r reply) bool {
	select {
	case p.out <- r:
		return true
	case <-p.done:
		return false
	}
}

func (p *socketProber) stopped() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readPackets reads from c until the prober closes, passing on what parse
// ties to a probe.
func (p *socketProber) readPackets(c net.PacketConn, parse func([]byte, netip.Addr, time.Time) (reply, bool)) {
	buf := make([]byte, 4096)
	failures := 0
	for !p.stopped() {
		if err := c.SetReadDeadline(time.Now().Add(readPoll)); err != nil {
			p.deliver(reply{err: fmt.Errorf("set read deadline: %w", err)})
			return
		}
		n, from, err := c.ReadFrom(buf)
		at := time.Now()
		switch {
		case err == nil:
			failures = 0
			if r, ok := parse(buf[:n], addrOf(from), at); ok && !p.deliver(r) {
				return
			}
		case errors.Is(err, os.ErrDeadlineExceeded) || p.stopped():
		default:
			// A raw socket reports a hard ICMP error about its own packets
			// once, as a read error; a socket that keeps failing is broken.
			if failures++; failures > maxReadFailures {
				p.deliver(reply{err: fmt.Errorf("read replies: %w", err)})
				return
			}
		}
	}
}

// rawTCPAnswers says whether raw sockets see the destination's TCP
// answers: Linux passes every segment to them, BSDs and Windows do not.
const rawTCPAnswers = runtime.GOOS == "linux"

// openRawProber probes through raw sockets (root or CAP_NET_RAW): ICMP
// errors and echo replies arrive on a raw ICMP socket, and TCP answers on a
// raw TCP socket.
func openRawProber(s *probeSpec, out chan<- reply) (_ *socketProber, err error) {
	if s.proto == "tcp" && !rawTCPAnswers {
		return nil, errors.New("tcp probes need Linux: this system does not pass TCP answers to raw sockets")
	}
	p := newSocketProber(out)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	network := "ip4:icmp"
	if s.dst.Is6() {
		network = "ip6:ipv6-icmp"
	}
	ic, err := icmp.ListenPacket(network, s.src.String())
	if err != nil {
		return nil, fmt.Errorf("open raw ICMP socket: %w", err)
	}
	p.closers = append(p.closers, ic)
	acceptOnlyAnswers(ic)
	switch s.proto {
	case "icmp":
		p.useRawEcho(s, ic)
	case "udp":
		err = p.useUDP(s)
	case "tcp":
		err = p.useRawTCP(s)
	default:
		err = fmt.Errorf("unknown probe protocol %q", s.proto)
	}
	if err != nil {
		return nil, err
	}
	p.wg.Go(func() { p.readPackets(ic, s.parseICMP) })
	return p, nil
}

// acceptOnlyAnswers narrows a raw ICMPv6 socket to the messages a trace
// needs, sparing it neighbour discovery and the like. It is an optimisation
// only (parseICMP drops the rest anyway), so a system without ICMPv6 filters
// is no failure.
func acceptOnlyAnswers(ic *icmp.PacketConn) {
	p6 := ic.IPv6PacketConn()
	if p6 == nil {
		return
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	for _, t := range []ipv6.ICMPType{ipv6.ICMPTypeTimeExceeded, ipv6.ICMPTypeDestinationUnreachable, ipv6.ICMPTypeEchoReply} {
		f.Accept(t)
	}
	_ = p6.SetICMPFilter(&f)
}

// useRawEcho sends echo requests on the raw ICMP socket itself.
func (p *socketProber) useRawEcho(s *probeSpec, ic *icmp.PacketConn) {
	p.conn, p.setTTL = ic, icmpTTLSetter(ic)
	to := &net.IPAddr{IP: s.dst.AsSlice()}
	p.build = func(idx int) ([]byte, net.Addr, error) {
		b, err := s.echo(idx)
		return b, to, err
	}
}

// icmpTTLSetter sets the TTL (hop limit) of an ICMP socket.
func icmpTTLSetter(ic *icmp.PacketConn) func(int) error {
	if p6 := ic.IPv6PacketConn(); p6 != nil {
		return p6.SetHopLimit
	}
	return ic.IPv4PacketConn().SetTTL
}

// ttlSetter sets the TTL (hop limit) of a UDP or raw IP socket.
func ttlSetter(c net.PacketConn, v6 bool) func(int) error {
	if v6 {
		return ipv6.NewPacketConn(c).SetHopLimit
	}
	return ipv4.NewPacketConn(c).SetTTL
}

// useUDP sends UDP probes from an ordinary socket; its port marks them.
func (p *socketProber) useUDP(s *probeSpec) error {
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.src, 0)))
	if err != nil {
		return fmt.Errorf("open UDP socket: %w", err)
	}
	p.closers = append(p.closers, uc)
	s.srcPort = uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	p.conn, p.setTTL = uc, ttlSetter(uc, s.dst.Is6())
	p.build = func(idx int) ([]byte, net.Addr, error) {
		return probePayload, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.dst, s.port+uint16(idx))), nil
	}
	return nil
}

// useRawTCP sends SYNs on a raw TCP socket, which also sees the answers.
// A listener holds our source port, so that no connection of this host
// picks it while the trace runs; the kernel resets the SYN-ACKs it gets.
func (p *socketProber) useRawTCP(s *probeSpec) error {
	hold, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.src, 0)))
	if err != nil {
		return fmt.Errorf("reserve a TCP port: %w", err)
	}
	p.closers = append(p.closers, hold)
	s.srcPort = uint16(hold.Addr().(*net.TCPAddr).Port)
	network := "ip4:tcp"
	if s.dst.Is6() {
		network = "ip6:tcp"
	}
	tc, err := net.ListenPacket(network, s.src.String())
	if err != nil {
		return fmt.Errorf("open raw TCP socket: %w", err)
	}
	p.closers = append(p.closers, tc)
	p.conn, p.setTTL = tc, ttlSetter(tc, s.dst.Is6())
	to := &net.IPAddr{IP: s.dst.AsSlice()}
	p.build = func(idx int) ([]byte, net.Addr, error) { return s.syn(idx), to, nil }
	p.wg.Go(func() { p.readPackets(tc, s.parseTCPAnswer) })
	return nil
}

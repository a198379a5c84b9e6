package main

// latency.go measures latency under load, the way
// draft-ietf-ippm-responsiveness (the "responsiveness" draft) does: a
// second of idle probes first, then probes all through the load. Foreign
// probes are fresh connections that carry no load (they see the
// network's queues); self probes are WebSocket pings on the loaded
// streams themselves (they also see the sender's own socket queue). From
// them come the report's medians and percentiles, the responsiveness in
// round trips per minute (RPM), and a bufferbloat grade. ping.go has the
// probe connection both kinds of tools share.

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
	"strings"
	"sync"
	"time"
)

// Probe kinds, named as in the draft (§4.3.1), and the phases a probe
// can fall in.
const (
	probeForeign = "foreign"
	probeSelf    = "self"

	phaseIdle    = "idle"   // before the load starts
	phaseWarmup  = "warmup" // the load runs, in the omitted period (-O)
	phaseLoaded  = "loaded" // the measured period
	idleInOmit   = "omit"   // the idle second was the start of -O, senders quiet
	idleBeforeIt = "before" // the idle second ran before the test was requested
	idleNone     = "none"   // no idle probe got an answer
)

// Timing of the probes during a test.
const (
	// idlePhase is how long idle latency is measured before the load.
	idlePhase = time.Second
	// minOmitForIdle is the shortest -O that takes the idle phase
	// inside it: a second of idle, and a second at least for the load
	// to ramp up before the measured period.
	minOmitForIdle = 2 * time.Second
	// loadProbeTimeout is when a probe during a test counts as lost.
	// Self probes wait behind the sender's socket buffer, which on a
	// slow link holds seconds of data.
	loadProbeTimeout = 5 * time.Second
	// maxForeignInFlight bounds the foreign probes open at once, so a
	// path that stalls does not pile up connections.
	maxForeignInFlight = 16
	// maxLatencySamples bounds the samples one test keeps (about 100
	// bytes each, some 20 MB in all); probes past it are not kept.
	maxLatencySamples = 200_000
)

// errPingRefused marks a server that does not take probe connections:
// an older wperf, or one that refused this client.
var errPingRefused = errors.New("the server refused the probe connection")

// latencyRequest is the request's "latency" field: the client will probe,
// so the server answers pings on its sending streams, and its senders
// keep quiet for Hold seconds at the start (the idle phase within -O).
type latencyRequest struct {
	Hold float64 `json:"hold"`
}

// check bounds the hold by the omitted period it lies in.
func (l *latencyRequest) check(omit float64) error {
	if l != nil && !(l.Hold >= 0 && l.Hold <= omit && l.Hold <= idlePhase.Seconds()) {
		return fmt.Errorf("latency hold %g s out of range 0..min(omit, %g)", l.Hold, idlePhase.Seconds())
	}
	return nil
}

// ---- samples ----

// probeSample is one probe's outcome. Times are in milliseconds; At is
// when it was sent, in seconds from the test's start (the client's
// clock, omitted period included; idle probes taken before the test have
// negative times).
type probeSample struct {
	Kind      string  `json:"kind"`
	Direction string  `json:"direction,omitempty"` // a self probe's stream: "up" or "down"
	Phase     string  `json:"phase"`
	At        float64 `json:"at"`
	RTTMs     float64 `json:"rtt_ms,omitempty"`     // echo (foreign) or pong (self)
	ConnectMs float64 `json:"connect_ms,omitempty"` // foreign: the TCP handshake
	UpgradeMs float64 `json:"upgrade_ms,omitempty"` // foreign: the WebSocket upgrade
	Lost      bool    `json:"lost,omitempty"`
	sent      time.Time
}

// probeBook matches replies to probes that are out at once, by sequence
// number, never by order: a reply after its probe's timeout is late, and
// as its number is never used again it cannot pass for another probe's.
type probeBook struct {
	mu      sync.Mutex
	timeout time.Duration
	next    uint64
	pending map[uint64]probeSample
	// expired remembers lost probes' send times, so a late reply is
	// reported as late (ping); nil where nobody asks.
	expired map[uint64]time.Time
	outcome func(seq uint64, s probeSample, late bool)
}

func newProbeBook(timeout time.Duration, outcome func(seq uint64, s probeSample, late bool)) *probeBook {
	return &probeBook{timeout: timeout, pending: map[uint64]probeSample{}, outcome: outcome}
}

// add registers a probe about to be sent and returns its number, from 1.
func (b *probeBook) add(s probeSample) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	b.pending[b.next] = s
	return b.next
}

// reply settles probe seq, answered at now; unknown numbers are ignored.
func (b *probeBook) reply(seq uint64, now time.Time) {
	b.mu.Lock()
	s, ok := b.pending[seq]
	delete(b.pending, seq)
	sent, late := b.expired[seq]
	delete(b.expired, seq)
	b.mu.Unlock()
	switch {
	case ok:
		s.RTTMs = millis(now.Sub(s.sent))
		b.outcome(seq, s, false)
	case late:
		b.outcome(seq, probeSample{sent: sent, RTTMs: millis(now.Sub(sent)), Lost: true}, true)
	}
}

// expire counts the probes older than the timeout as lost.
func (b *probeBook) expire(now time.Time) {
	var lost []uint64
	b.mu.Lock()
	for seq, s := range b.pending {
		if now.Sub(s.sent) >= b.timeout {
			lost = append(lost, seq)
		}
	}
	slices.Sort(lost)
	out := make([]probeSample, len(lost))
	for i, seq := range lost {
		out[i] = b.pending[seq]
		delete(b.pending, seq)
		if b.expired != nil {
			b.expired[seq] = out[i].sent
		}
	}
	b.mu.Unlock()
	for i, s := range out {
		s.Lost = true
		b.outcome(lost[i], s, false)
	}
}

// outstanding is how many probes await a reply.
func (b *probeBook) outstanding() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// millis is a duration in milliseconds, as reports give them.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// ---- statistics ----

// latencyStats summarise round trips, in milliseconds. Percentiles are
// nearest-rank; the trimmed mean drops the top 5 %, as the draft's
// responsiveness does (§4.3.1).
type latencyStats struct {
	Count      int      `json:"count"` // answered probes
	Lost       int      `json:"lost"`
	MinMs      float64  `json:"min_ms"`
	MedianMs   float64  `json:"median_ms"`
	P90Ms      float64  `json:"p90_ms"`
	P99Ms      float64  `json:"p99_ms"`
	MaxMs      float64  `json:"max_ms"`
	TrimmedMs  float64  `json:"trimmed_mean_ms"`
	IncreaseMs *float64 `json:"increase_ms,omitempty"` // p90 over the idle median
}

// newStats summarises values (not sorted; kept as given); nil when there
// is nothing to say.
func newStats(values []float64, lost int) *latencyStats {
	if len(values) == 0 && lost == 0 {
		return nil
	}
	st := &latencyStats{Count: len(values), Lost: lost}
	if len(values) == 0 {
		return st
	}
	v := slices.Clone(values)
	slices.Sort(v)
	st.MinMs, st.MaxMs = v[0], v[len(v)-1]
	st.MedianMs, st.P90Ms, st.P99Ms = percentile(v, 50), percentile(v, 90), percentile(v, 99)
	st.TrimmedMs = math.Round(trimmedMean(v)*1e3) / 1e3
	return st
}

// percentile is the nearest-rank p-th percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// trimmedMean is the mean of sorted values without their top 5 %.
func trimmedMean(sorted []float64) float64 {
	keep := sorted[:len(sorted)-len(sorted)*5/100]
	var sum float64
	for _, x := range keep {
		sum += x
	}
	return sum / float64(len(keep))
}

// withIncrease sets the p90's increase over the idle median.
func (st *latencyStats) withIncrease(idle *latencyStats) *latencyStats {
	if st != nil && st.Count > 0 && idle != nil && idle.Count > 0 {
		inc := st.P90Ms - idle.MedianMs
		st.IncreaseMs = &inc
	}
	return st
}

// responsiveness is the draft's RPM (draft-ietf-ippm-responsiveness-03
// §4.3.1): 60000 / (1/6 × (TM(tcp_f) + TM(tls_f) + TM(http_f)) + 1/2 ×
// TM(http_s)), with TM the trimmed means. wperf has no TLS: the
// WebSocket upgrade, the foreign connection's second round trip, stands
// in for the TLS handshake, and its echo for the HTTP request. With only
// one kind of probe, that kind's mean alone counts. 0 when neither kind
// has a sample.
func responsiveness(connect, upgrade, echo, self *latencyStats) float64 {
	tm := func(s *latencyStats) (float64, bool) {
		if s == nil || s.Count == 0 {
			return 0, false
		}
		return s.TrimmedMs, true
	}
	c, okC := tm(connect)
	u, okU := tm(upgrade)
	e, okE := tm(echo)
	s, okS := tm(self)
	foreign, okF := (c+u+e)/3, okC && okU && okE
	var delay float64
	switch {
	case okF && okS:
		delay = foreign/2 + s/2
	case okF:
		delay = foreign
	case okS:
		delay = s
	default:
		return 0
	}
	return 60000 / max(delay, 0.001)
}

// bufferbloatGrade grades the increase of latency under load over idle,
// in milliseconds.
func bufferbloatGrade(increaseMs float64) string {
	for _, g := range []struct {
		below float64
		grade string
	}{{5, "A+"}, {30, "A"}, {60, "B"}, {200, "C"}, {400, "D"}} {
		if increaseMs < g.below {
			return g.grade
		}
	}
	return "F"
}

// ---- the report ----

// latencyReport is what a test's latency probes found: the client's
// measurement, which it also sends the server (without the samples) so
// the server's report and log carry it.
type latencyReport struct {
	Interval  float64                  `json:"interval"`   // seconds between probes of a kind
	IdlePhase string                   `json:"idle_phase"` // idleInOmit, idleBeforeIt or idleNone
	Idle      *latencyStats            `json:"idle,omitempty"`
	Foreign   *foreignStats            `json:"foreign,omitempty"`
	Self      map[string]*latencyStats `json:"self,omitempty"` // by stream direction, "up" or "down"
	// The headline: the loaded p90 (foreign probes', or self probes'
	// where there are no foreign ones), its increase over idle, the
	// responsiveness and the grade.
	LoadedP90Ms float64       `json:"loaded_p90_ms,omitempty"`
	IncreaseMs  *float64      `json:"increase_ms,omitempty"`
	RPM         float64       `json:"rpm,omitempty"`
	Grade       string        `json:"grade,omitempty"`
	Note        string        `json:"note,omitempty"` // what could not be measured, and why
	Samples     []probeSample `json:"samples,omitempty"`
}

// foreignStats are the loaded foreign probes, in their parts.
type foreignStats struct {
	Echo    *latencyStats `json:"echo"`
	Connect *latencyStats `json:"connect,omitempty"`
	Upgrade *latencyStats `json:"upgrade,omitempty"`
}

// latencyInterval is one reporting interval's probes, by the time they
// were sent.
type latencyInterval struct {
	Foreign *latencyStats            `json:"foreign,omitempty"`
	Self    map[string]*latencyStats `json:"self,omitempty"`
}

// sampleSet gathers round trips by kind and part.
type sampleSet struct {
	idle, echo, connect, upgrade []float64
	self                         map[string][]float64
	idleLost, foreignLost        int
	selfLost                     map[string]int
}

func gather(samples []probeSample, keep func(probeSample) bool) *sampleSet {
	set := &sampleSet{self: map[string][]float64{}, selfLost: map[string]int{}}
	for _, s := range samples {
		if !keep(s) {
			continue
		}
		set.add(s)
	}
	return set
}

func (set *sampleSet) add(s probeSample) {
	switch {
	case s.Phase == phaseIdle && s.Lost:
		set.idleLost++
	case s.Phase == phaseIdle:
		set.idle = append(set.idle, s.RTTMs)
	case s.Kind == probeForeign && s.Lost:
		set.foreignLost++
	case s.Kind == probeForeign:
		set.echo = append(set.echo, s.RTTMs)
		set.connect = append(set.connect, s.ConnectMs)
		set.upgrade = append(set.upgrade, s.UpgradeMs)
	case s.Lost:
		set.selfLost[s.Direction]++
	default:
		set.self[s.Direction] = append(set.self[s.Direction], s.RTTMs)
	}
}

func (set *sampleSet) selfStats(idle *latencyStats) map[string]*latencyStats {
	out := map[string]*latencyStats{}
	for _, dir := range []string{streamUp, streamDown} {
		if st := newStats(set.self[dir], set.selfLost[dir]); st != nil {
			out[dir] = st.withIncrease(idle)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// summarise fills the report's statistics from its samples: idle ones,
// and loaded ones (the warm-up in -O counts in neither).
func (r *latencyReport) summarise() {
	set := gather(r.Samples, func(s probeSample) bool { return s.Phase != phaseWarmup })
	r.Idle = newStats(set.idle, set.idleLost)
	if r.Idle == nil || r.Idle.Count == 0 {
		r.IdlePhase = idleNone
	}
	if echo := newStats(set.echo, set.foreignLost); echo != nil {
		r.Foreign = &foreignStats{Echo: echo.withIncrease(r.Idle), Connect: newStats(set.connect, 0), Upgrade: newStats(set.upgrade, 0)}
	}
	r.Self = set.selfStats(r.Idle)
	var allSelf []float64
	for _, dir := range []string{streamUp, streamDown} {
		allSelf = append(allSelf, set.self[dir]...)
	}
	self := newStats(allSelf, 0)
	headline := self
	var c, u, e *latencyStats
	if r.Foreign != nil && r.Foreign.Echo.Count > 0 {
		headline, c, u, e = r.Foreign.Echo, r.Foreign.Connect, r.Foreign.Upgrade, r.Foreign.Echo
	}
	if headline == nil {
		return
	}
	r.LoadedP90Ms = headline.P90Ms
	r.RPM = math.Round(responsiveness(c, u, e, self))
	if r.Idle != nil && r.Idle.Count > 0 {
		inc := headline.P90Ms - r.Idle.MedianMs
		r.IncreaseMs = &inc
		r.Grade = bufferbloatGrade(inc)
	}
}

// during is the probes sent in [from, to), seconds from the test's start.
func (r *latencyReport) during(from, to float64) *latencyInterval {
	set := gather(r.Samples, func(s probeSample) bool { return s.At >= from && s.At < to && s.Phase != phaseIdle })
	iv := &latencyInterval{Foreign: newStats(set.echo, set.foreignLost), Self: set.selfStats(nil)}
	if iv.Foreign == nil && iv.Self == nil {
		return nil
	}
	return iv
}

// summary is the report without its samples, as the server gets it.
func (r *latencyReport) summary() *latencyReport {
	if r == nil {
		return nil
	}
	s := *r
	s.Samples = nil
	return &s
}

// ---- the client's prober ----

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

// checkLatency keeps the latency options consistent.
func (c *config) checkLatency() error {
	for _, name := range []string{"ping-count", "ping-timeout"} {
		if c.set[name] {
			return fmt.Errorf("--%s needs --ping", name)
		}
	}
	if c.noLatency && c.set["latency-interval"] {
		return errors.New("--latency-interval and --no-latency exclude each other")
	}
	return nil
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

// ---- the server's part ----

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

// ---- reports ----

// latencyLines are the text report's latency block, after the bandwidth
// rows; none when the test measured no latency.
func (v *testView) latencyLines() []string {
	r := v.latency
	if r == nil {
		return nil
	}
	head := fmt.Sprintf("Latency under load (probes every %g s; idle %s):", r.Interval, idleWhere(r.IdlePhase))
	if v.isServer {
		head = "Latency under load, as the client measured it (idle " + idleWhere(r.IdlePhase) + "):"
	}
	lines := []string{head}
	if r.Idle != nil {
		lines = append(lines, statsLine("idle", r.Idle))
	}
	if f := r.Foreign; f != nil {
		lines = append(lines, statsLine("foreign", f.Echo))
		if f.Connect != nil && f.Upgrade != nil {
			lines = append(lines, fmt.Sprintf("  %-9s connect p90 %s ms, upgrade p90 %s ms", "", fmtMs(f.Connect.P90Ms), fmtMs(f.Upgrade.P90Ms)))
		}
	}
	for _, dir := range []string{streamUp, streamDown} {
		if st := r.Self[dir]; st != nil {
			lines = append(lines, statsLine("self "+dir, st))
		}
	}
	if r.Note != "" {
		lines = append(lines, "  note: "+cleanText(r.Note, 200))
	}
	return append(lines, r.headline())
}

func idleWhere(phase string) string {
	switch phase {
	case idleInOmit:
		return "in the first second of -O, senders quiet"
	case idleBeforeIt:
		return "in a second before the test"
	}
	return "not measured"
}

// statsLine is one kind of probe's row.
func statsLine(name string, st *latencyStats) string {
	if st.Count == 0 {
		return fmt.Sprintf("  %-9s no answer (%d lost)", name, st.Lost)
	}
	line := fmt.Sprintf("  %-9s median %s ms  p90 %s ms  p99 %s ms", name, fmtMs(st.MedianMs), fmtMs(st.P90Ms), fmtMs(st.P99Ms))
	if st.IncreaseMs != nil {
		line += fmt.Sprintf("  (%+.1f ms)", *st.IncreaseMs)
	}
	return line + fmt.Sprintf("  %d probes, %d lost", st.Count+st.Lost, st.Lost)
}

// headline is the one-line verdict, e.g.
// "Latency: idle 0.21 ms | loaded p90 184 ms (+184) | 326 RPM | grade C".
func (r *latencyReport) headline() string {
	parts := []string{"Latency:"}
	if r.Idle != nil && r.Idle.Count > 0 {
		parts = append(parts, "idle "+fmtMs(r.Idle.MedianMs)+" ms |")
	}
	if r.LoadedP90Ms == 0 {
		return strings.Join(append(parts, "no loaded probe answered"), " ")
	}
	loaded := "loaded p90 " + fmtMs(r.LoadedP90Ms) + " ms"
	if r.IncreaseMs != nil {
		loaded += fmt.Sprintf(" (%+.0f)", *r.IncreaseMs)
	}
	parts = append(parts, loaded, "|", fmt.Sprintf("%.0f RPM", r.RPM))
	if r.Grade != "" {
		parts = append(parts, "| grade "+r.Grade)
	}
	return strings.Join(parts, " ")
}

// fmtMs shows milliseconds with three significant digits or so.
func fmtMs(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// logLatency is what the server's log line adds, as key=value pairs:
// idle median, loaded p90, RPM and grade, as far as they are known.
func (v *testView) logLatency() string {
	r := v.latency
	if r == nil {
		return ""
	}
	var kv []string
	if r.Idle != nil && r.Idle.Count > 0 {
		kv = append(kv, "idle="+fmtMs(r.Idle.MedianMs)+"ms")
	}
	if r.LoadedP90Ms > 0 {
		kv = append(kv, "loaded_p90="+fmtMs(r.LoadedP90Ms)+"ms", fmt.Sprintf("rpm=%.0f", r.RPM))
	}
	if r.Grade != "" {
		kv = append(kv, "grade="+r.Grade)
	}
	if len(kv) == 0 {
		return ""
	}
	return " " + strings.Join(kv, " ")
}

// intervalLatency is interval k's probes for the -J document: the span
// of the first local stream's interval k, on the test's clock.
func (v *testView) intervalLatency(k int) *jsonIntervalWPerf {
	if v.latency == nil || len(v.local) == 0 || k >= len(v.local[0].Intervals) {
		return nil
	}
	iv := v.local[0].Intervals[k]
	from, to := iv.Start, iv.End
	if !iv.Omitted {
		from, to = from+v.req.Omit, to+v.req.Omit
	}
	if l := v.latency.during(from, to); l != nil {
		return &jsonIntervalWPerf{Latency: l}
	}
	return nil
}

// jsonIntervalWPerf is intervals[].wperf: what only wperf measures.
type jsonIntervalWPerf struct {
	Latency *latencyInterval `json:"latency,omitempty"`
}

// jsonEndWPerf is end.wperf.
type jsonEndWPerf struct {
	Latency *latencyReport `json:"latency,omitempty"`
}

func (v *testView) endWPerf() *jsonEndWPerf {
	if v.latency == nil {
		return nil
	}
	return &jsonEndWPerf{Latency: v.latency}
}

// ---- the probe connection's dialer ----

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
		if errors.As(err, &he) {
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

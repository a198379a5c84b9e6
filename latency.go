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
	"errors"
	"fmt"
	"math"
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

// ---- the server's part ----

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

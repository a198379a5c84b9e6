package main

// legacy_client.go is wperf -c against an old server: with --legacy, or
// on its own once a server answers without wperf.v1. It runs the
// bandwidth tests over old-protocol links (legacy.go), --ping and
// --reverse-traceroute, and reports what it can measure: an old server
// sends no counts back, so the rows only it could fill say "not
// reported" (null in JSON), never a copy of this end's. It also holds
// the original's options that wperf accepts so its scripts keep running.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errOldServer is a handshake whose server chose no subprotocol: an old
// wperf, which ignores the offer.
var errOldServer = errors.New("the server did not answer the " + subprotocolV1 + " subprotocol")

// ---- options ----

// simHelp is the --help text of every --sim-* option.
const simHelp = "accepted for the original wperf's scripts; simulates nothing"

// simOpt makes the apply function of one of the original's --sim-*
// options: its value is checked as the original checked it, then only
// remembered for the warning.
func simOpt(name string, check func(string) error) func(*config, string) error {
	return func(c *config, v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return fmt.Errorf("bad --%s %q: %w", name, v, err)
			}
		}
		if !slices.Contains(c.sim, "--"+name) {
			c.sim = append(c.sim, "--"+name)
		}
		return nil
	}
}

func simMillis(v string) error {
	if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 3_600_000 {
		return errors.New("want whole milliseconds, 0 to 3600000")
	}
	return nil
}

func simPercent(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err != nil || !(f >= 0 && f <= 100) {
		return errors.New("want a percentage from 0 to 100")
	}
	return nil
}

func simSize(v string) error {
	if n, err := parseSize(v); err != nil || n < 1 {
		return errors.New("want a size such as 1400 or 128K")
	}
	return nil
}

// checkLegacy applies the rules of --legacy, --ping and the original's
// options that do nothing here.
func (c *config) checkLegacy() error {
	if len(c.sim) > 0 {
		c.warnings = append(c.warnings, strings.Join(c.sim, ", ")+": accepted for old wperf scripts, but wperf measures the real path and simulates nothing")
	}
	if !c.ping {
		for _, name := range []string{"ping-count", "ping-timeout"} {
			if c.set[name] {
				return fmt.Errorf("--%s needs --ping", name)
			}
		}
	}
	if !c.legacy {
		return nil
	}
	if c.reverseTrace {
		var tr []string
		for _, name := range []string{"tr-proto", "tr-max-hops", "tr-timeout", "tr-queries", "no-geo"} {
			if c.set[name] {
				tr = append(tr, "--"+name)
			}
		}
		if len(tr) > 0 {
			c.warnings = append(c.warnings, strings.Join(tr, ", ")+": the old protocol cannot carry them; the old server traces its own way")
		}
	}
	return c.legacyFits()
}

// legacyFits says what an old server cannot do of what the options ask.
func (c *config) legacyFits() error {
	switch {
	case c.getServerOutput:
		return errors.New("--get-server-output: an old wperf server reports nothing")
	case c.udp && (c.reverse || c.bidir):
		return errors.New("-u with -R or --bidir: the old protocol's UDP test only uploads")
	case c.udp && c.udpTransport == "udp":
		return errors.New("--udp-transport udp: the old protocol carries datagrams over WebSocket only")
	case c.cport > 0 || c.flowLabel > 0:
		return errors.New("--cport and -L/--flowlabel: the old protocol's connections are dialled without them")
	case !c.udp && (c.set["bitrate"] || c.set["bandwidth"] || c.fqRate > 0):
		return errors.New("-b or --fq-rate on a TCP test: the old protocol's TCP test is never paced")
	case c.udp && c.omit > 0:
		return errors.New("-O with -u: an old server counts every datagram, so none can be left out")
	case !c.udp && c.length > legacyPeerMaxMessage-legacySeqLen:
		return fmt.Errorf("-l %d: old wperf servers take messages of at most 1 MiB, so -l goes up to %d", c.length, legacyPeerMaxMessage-legacySeqLen)
	}
	return nil
}

// ---- running ----

// runLegacy runs the client's mode over the old protocol. note is the
// auto-detection's line, or "" when --legacy asked for it.
func runLegacy(ctx context.Context, cfg *config, out *lineWriter, note string) error {
	switch {
	case cfg.ping:
		return runLegacyPing(ctx, cfg, out)
	case cfg.reverseTrace:
		return runLegacyTrace(ctx, cfg, out, note)
	}
	t := &legacyClient{cfg: cfg, out: out, note: note, idle: seconds2dur(cfg.idleTimeout)}
	return t.run(ctx)
}

// retryLegacy follows a handshake that found an old server: it says so
// in one line of the output and runs the test again over the old
// protocol, once.
func retryLegacy(ctx context.Context, cfg *config, out *lineWriter) error {
	u, err := targetURL(cfg)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("the server at %s looks like an old wperf (it did not answer %s)", u.Host, subprotocolV1)
	if err := cfg.legacyFits(); err != nil {
		return fmt.Errorf("%s, and %w", why, err)
	}
	note := why + ": retrying with --legacy"
	switch {
	case cfg.jsonStream:
		b, _ := json.Marshal(map[string]string{"event": "legacy", "data": note})
		out.raw(string(b) + "\n")
	case !cfg.json:
		out.println(note)
	}
	return runLegacy(ctx, cfg, out, note)
}

// dialLegacy opens one old-protocol connection: no subprotocol, the
// token (if any) as the first message.
func dialLegacy(ctx context.Context, cfg *config, u *url.URL, control sockControl, readBuffer int) (*wsConn, error) {
	opt := controlDialOptions(cfg, control)
	opt.subprotocols, opt.header = nil, nil
	opt.maxMessage, opt.readBuffer = legacyMaxMessage, readBuffer
	c, err := dialServer(ctx, cfg, u, opt)
	if err != nil {
		return nil, err
	}
	if cfg.token != "" {
		c.SetWriteDeadline(time.Now().Add(seconds2dur(cfg.connectTimeout)))
		if err := c.WriteMessage(opText, []byte(cfg.token)); err != nil {
			c.Abort()
			return nil, fmt.Errorf("send token: %w", err)
		}
	}
	return c, nil
}

// legacyClient is one bandwidth test against an old server.
type legacyClient struct {
	cfg   *config
	out   *lineWriter
	note  string
	idle  time.Duration
	rep   *reporter
	req   testRequest
	links []*legacyLink
}

// legacyTestRequest is the test as the report describes it; nothing of
// it goes on the wire but the mode. A data message is -l bytes of chunk
// behind the sequence number.
func legacyTestRequest(cfg *config) testRequest {
	req := requestFrom(cfg)
	req.Type, req.Version, req.Cookie, req.Client = "", 0, "", ""
	if req.udp() {
		req.UDPTransport = "ws"
	} else {
		req.Length += legacySeqLen
	}
	return req
}

func (t *legacyClient) run(ctx context.Context) error {
	u, err := targetURL(t.cfg)
	if err != nil {
		return err
	}
	t.req = legacyTestRequest(t.cfg)
	t.rep = newReporter(t.cfg, t.out)
	if t.note == "" {
		t.rep.connecting(u, &t.req)
	} else { // the first attempt said where it connects
		port, _ := strconv.Atoi(u.Port())
		t.rep.view = &testView{req: &t.req, peerHost: u.Hostname(), peerPort: port, url: u.String()}
	}
	conns, err := t.connect(ctx, u)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Abort()
			}
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			err = errInterrupted
		}
		return t.finish(err)
	}
	return t.measure(ctx, conns)
}

// legacyModeWord is the request every old server understands.
func legacyModeWord(req *testRequest) string {
	switch {
	case req.udp():
		return "UDP"
	case req.Direction == dirDownload:
		return "REVERSE"
	case req.Direction == dirBidir:
		return "BIDIR"
	}
	return "UPLOAD"
}

// connect opens every stream's connection at once and asks each for the
// test: the old protocol has one request per connection.
func (t *legacyClient) connect(ctx context.Context, u *url.URL) ([]*wsConn, error) {
	n := t.req.Parallel
	conns := make([]*wsConn, n)
	errs := make([]error, n)
	opts := sockOpts{window: t.cfg.window, mss: t.cfg.mss, congestion: t.cfg.congestion, noDelay: t.cfg.noDelay}
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialLegacy(ctx, t.cfg, u, opts.preConnect, streamReadBuffer(t.req.Length, t.req.streamCount()))
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
			if err := opts.applyPortable(c.NetConn()); err != nil {
				errs[i] = fmt.Errorf("socket options: %w", err)
				return
			}
			c.SetWriteDeadline(time.Now().Add(seconds2dur(t.cfg.connectTimeout)))
			errs[i] = c.WriteMessage(opText, []byte(legacyModeWord(&t.req)))
		}()
	}
	wg.Wait()
	return conns, errors.Join(errs...)
}

// measure runs the test over the connections and reports it.
func (t *legacyClient) measure(ctx context.Context, conns []*wsConn) error {
	run := newTestRun(&t.req, t.idle, t.req.hardStop(t.idle, 365*24*time.Hour))
	run.keepIntervals = t.cfg.json
	lr := newLegacyRun(run, true)
	if t.req.Direction != dirUpload {
		lr.rxTarget = t.req.byteTarget()
	}
	p := t.req.Parallel
	for i, c := range conns {
		var tx, rx *stream
		switch t.req.Direction {
		case dirUpload:
			tx = &stream{id: i + 1, sending: true}
		case dirDownload:
			rx = &stream{id: i + 1}
		default:
			tx, rx = &stream{id: i + 1, sending: true}, &stream{id: p + i + 1}
		}
		if t.req.udp() {
			tx.dgram = newDatagramStream(false)
		}
		l := newLegacyLink(lr, c, tx, rx)
		t.links = append(t.links, l)
		run.streams = append(run.streams, l.streams()...)
	}
	sortStreams(run.streams)
	v := t.rep.view
	if t.req.udp() {
		v.transport, v.transportReason = "websocket", "the old wperf protocol"
	}
	t.rep.started(run.connections())
	run.onIntervalClosed = func(final bool) { t.rep.intervalClosed(run.latestIntervals(), final) }
	runErr := run.run(ctx)
	v.local, v.localCPU, v.localCong = run.results(), run.cpu, run.congestion
	v.remote = t.udpResults(v.local)
	t.rep.end(v)
	switch {
	case runErr != nil:
		return t.finish(fmt.Errorf("test failed: %w", runErr))
	case ctx.Err() != nil:
		return t.finish(errInterrupted)
	}
	return t.finish(nil)
}

// udpResults are the old server's UDP reports as the receiver's side of
// each stream. It reports datagrams, jitter and loss; its bytes follow
// from the datagrams (all of one size), and, as it reports no time, the
// receiver's span is the sender's.
func (t *legacyClient) udpResults(local []streamResult) []streamResult {
	var out []streamResult
	for _, l := range t.links {
		rep, ok := l.udpReport()
		if !ok {
			continue
		}
		i := slices.IndexFunc(local, func(r streamResult) bool { return r.ID == l.tx.id })
		if i < 0 {
			continue
		}
		out = append(out, streamResult{ID: l.tx.id, Bytes: rep.TotalPackets * int64(t.req.Length),
			Seconds: local[i].Seconds, End: local[i].End,
			UDP: &udpCounts{Packets: rep.TotalPackets, Lost: rep.LostPackets, JitterMs: rep.JitterMs}})
	}
	return out
}

// udpReport is the link's report from the server, when one came and
// makes sense.
func (l *legacyLink) udpReport() (legacyUDPReport, bool) {
	var rep legacyUDPReport
	if l.udp == nil || !isClosed(l.udp.reportIn) || json.Unmarshal(l.udp.report, &rep) != nil {
		return rep, false
	}
	ok := rep.TotalPackets >= 0 && rep.LostPackets >= 0 && !math.IsNaN(rep.JitterMs) && rep.JitterMs >= 0
	return rep, ok
}

// ---- the report ----

// finish prints the test's end as reporter.finish does, with the old
// protocol's gaps shown as gaps.
func (t *legacyClient) finish(err error) error {
	rep := t.rep
	switch {
	case t.cfg.json:
		doc := t.document()
		doc.Title = t.cfg.title
		if err != nil {
			doc.Error = err.Error()
		}
		b, _ := json.MarshalIndent(doc, "", "\t")
		t.out.raw(string(b) + "\n")
	case t.cfg.jsonStream:
		if rep.ended {
			rep.event("end", t.endJSON())
		}
		if err != nil {
			rep.event("error", err.Error())
		}
	default:
		if rep.ended {
			for _, l := range t.summary() {
				t.out.println(l)
			}
			if t.cfg.verbose {
				c := rep.view.localCPU
				t.out.printf("CPU Utilization: local %.1f%% (%.1f%%u/%.1f%%s), remote not reported", c.Total, c.User, c.System)
			}
		}
		if err == nil {
			t.out.println("")
			t.out.println("wperf Done.")
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errReported, err)
	}
	return nil
}

// summary is the text block after the intervals. A UDP test's server
// reported its side, so it is iperf3's block; a TCP test's peer rows are
// not reported.
func (t *legacyClient) summary() []string {
	rows := textRows{v: t.rep.view, unit: t.rep.unit()}
	if t.req.udp() {
		return rows.summary()
	}
	v := rows.v
	pairs := v.pairs()
	lines := []string{separator, rows.header("         Retr")}
	for _, p := range pairs {
		lines = append(lines, rows.legacyEndRow(p, true), rows.legacyEndRow(p, false))
	}
	if v.req.Parallel > 1 {
		main, rev := v.splitPairs(pairs)
		lines = append(lines, rows.legacySumRows(main)...)
		lines = append(lines, rows.legacySumRows(rev)...)
	}
	return lines
}

// legacyEndRow is this end's own summary row, or the peer's as not
// reported.
func (t textRows) legacyEndRow(p endPair, isSender bool) string {
	if isSender == p.sending {
		return t.endRow(p, isSender)
	}
	own := p.receiver
	if p.sending {
		own = p.sender
	}
	return t.unreportedRow(idLabel(p.id), p.sending, own.Seconds, roleName(isSender))
}

func (t textRows) legacySumRows(ps []endPair) []string {
	_, sent, recv := t.v.endSums(ps)
	if sent == nil {
		return nil
	}
	if sending := ps[0].sending; sending {
		return []string{t.endRowValues("SUM", true, sent.Seconds, sent.Bytes, sumColumns(sent), "sender"),
			t.unreportedRow("SUM", true, sent.Seconds, "receiver")}
	}
	return []string{t.unreportedRow("SUM", false, recv.Seconds, "sender"),
		t.endRowValues("SUM", false, recv.Seconds, recv.Bytes, sumColumns(recv), "receiver")}
}

// unreportedRow stands where a count only the old server had would be.
func (t textRows) unreportedRow(id string, localSends bool, secs float64, role string) string {
	return fmt.Sprintf("%s %s  %-45s%s", t.lead(id, localSends), span(0, secs), "not reported by the old server", role)
}

func roleName(isSender bool) string {
	if isSender {
		return "sender"
	}
	return "receiver"
}

// legacyDoc is the -J document of a test against an old server: iperf3's
// sections, and what the old protocol changes under "legacy".
type legacyDoc struct {
	Start     jsonStart      `json:"start"`
	Intervals []jsonInterval `json:"intervals"`
	End       any            `json:"end"`
	Legacy    legacyInfo     `json:"legacy"`
	Title     string         `json:"title,omitempty"`
	Error     string         `json:"error,omitempty"`
}

type legacyInfo struct {
	Protocol     string            `json:"protocol"`
	AutoDetected bool              `json:"auto_detected"`
	Note         string            `json:"note,omitempty"`
	UDPReports   []json.RawMessage `json:"udp_reports,omitempty"` // the server's, as it sent them
}

func (t *legacyClient) document() legacyDoc {
	doc := legacyDoc{Start: emptyStart(), Intervals: []jsonInterval{}, End: &jsonEnd{},
		Legacy: legacyInfo{Protocol: legacyProtocolName, AutoDetected: t.note != "", Note: t.note}}
	for _, l := range t.links {
		if l.udp != nil && isClosed(l.udp.reportIn) && json.Valid(l.udp.report) {
			doc.Legacy.UDPReports = append(doc.Legacy.UDPReports, l.udp.report)
		}
	}
	if !t.rep.ended {
		return doc
	}
	full := t.rep.view.document()
	doc.Start, doc.Intervals, doc.End = full.Start, full.Intervals, t.endJSON()
	doc.Start.WPerf.Subprotocol, doc.Start.WPerf.ProtocolVersion = "", 0
	return doc
}

// endJSON is the end section: iperf3's for UDP, whose server reported;
// for TCP, iperf3's with the peer's halves null.
func (t *legacyClient) endJSON() any {
	if t.req.udp() {
		return t.rep.view.endJSON()
	}
	return legacyEndOf(t.rep.view)
}

// legacyEnd is iperf3's end section with null where only the old server
// could have counted. Its fields hide the embedded ones of the same name.
type legacyEnd struct {
	*jsonEnd
	Streams                 []legacyEndStream `json:"streams"`
	SumSent                 json.RawMessage   `json:"sum_sent,omitempty"`
	SumReceived             json.RawMessage   `json:"sum_received,omitempty"`
	SumSentBidirReverse     json.RawMessage   `json:"sum_sent_bidir_reverse,omitempty"`
	SumReceivedBidirReverse json.RawMessage   `json:"sum_received_bidir_reverse,omitempty"`
	CPU                     legacyCPU         `json:"cpu_utilization_percent"`
}

type legacyEndStream struct {
	Sender   *jsonEndSide `json:"sender"`
	Receiver *jsonEndSide `json:"receiver"`
}

type legacyCPU struct {
	HostTotal    float64  `json:"host_total"`
	HostUser     float64  `json:"host_user"`
	HostSystem   float64  `json:"host_system"`
	RemoteTotal  *float64 `json:"remote_total"`
	RemoteUser   *float64 `json:"remote_user"`
	RemoteSystem *float64 `json:"remote_system"`
}

func legacyEndOf(v *testView) *legacyEnd {
	e := v.endJSON()
	le := &legacyEnd{jsonEnd: e, Streams: []legacyEndStream{}}
	pairs := v.pairs()
	for i, p := range pairs {
		s := legacyEndStream{Sender: e.Streams[i].Sender, Receiver: e.Streams[i].Receiver}
		if p.sending {
			s.Receiver = nil
		} else {
			s.Sender = nil
		}
		le.Streams = append(le.Streams, s)
	}
	main, rev := v.splitPairs(pairs)
	mainSends := len(main) > 0 && main[0].sending
	le.SumSent, le.SumReceived = sumOrNull(e.SumSent, !mainSends), sumOrNull(e.SumReceived, mainSends)
	if len(rev) > 0 { // --bidir: this end receives in the reverse direction
		le.SumSentBidirReverse = sumOrNull(e.SumSentBidirReverse, true)
		le.SumReceivedBidirReverse = sumOrNull(e.SumReceivedBidirReverse, false)
	}
	c := v.localCPU
	le.CPU = legacyCPU{HostTotal: c.Total, HostUser: c.User, HostSystem: c.System}
	return le
}

// sumOrNull is a sum as JSON: null where the peer's count is missing,
// nothing where there is no sum.
func sumOrNull(s *jsonSum, unreported bool) json.RawMessage {
	switch {
	case unreported:
		return json.RawMessage("null")
	case s == nil:
		return nil
	}
	b, _ := json.Marshal(s)
	return b
}

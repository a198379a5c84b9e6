package main

// report.go turns measurements into what users read: iperf3's text
// layout, its -J document (same key paths, so existing parsers work), the
// --json-stream events, and the server's one-line-per-test log.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// lineWriter writes whole lines, each prefixed with -T's title. Lines go
// straight to the file (no buffering), so output is always flushed line
// by line; --forceflush is accepted for iperf3 compatibility.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	title  string
	// stamps is --timestamps' strftime format: the time goes first, then
	// the title, as in iperf3.
	stamps string
}

func (l *lineWriter) println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.title != "" {
		s = l.title + ":  " + s
	}
	if l.stamps != "" {
		s = timestamp(l.stamps, time.Now()) + s
	}
	io.WriteString(l.w, s+"\n")
}

func (l *lineWriter) printf(format string, args ...any) { l.println(fmt.Sprintf(format, args...)) }

// raw writes s as is: JSON documents are not prefixed.
func (l *lineWriter) raw(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	io.WriteString(l.w, s)
}

func (l *lineWriter) Close() error {
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}

// formatUnits renders a byte count (or bytes per second) the way iperf3
// does: unit 'A' picks KBytes..TBytes (1024-based), 'a' picks Kbits..Tbits
// (1000-based), and k m g t / K M G T force one of them. Three
// significant digits, right-aligned in four columns.
func formatUnits(v float64, unit byte) string {
	bits := unit >= 'a' && unit <= 'z'
	base, labels := 1024.0, [...]string{"Bytes", "KBytes", "MBytes", "GBytes", "TBytes"}
	if bits {
		v *= 8
		base, labels = 1000, [...]string{"bits", "Kbits", "Mbits", "Gbits", "Tbits"}
	}
	i := 0
	if unit == 'a' || unit == 'A' {
		for v >= base && i < len(labels)-1 {
			v /= base
			i++
		}
	} else {
		i = strings.IndexByte("kmgt", unit|0x20) + 1
		for range i {
			v /= base
		}
	}
	switch {
	case v < 9.995:
		return fmt.Sprintf("%4.2f %s", v, labels[i])
	case v < 99.95:
		return fmt.Sprintf("%4.1f %s", v, labels[i])
	}
	return fmt.Sprintf("%4.0f %s", v, labels[i])
}

func rate(bytes int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(bytes) / seconds
}

// ---- the data one report is made from ----

// connInfo is one stream's socket addresses.
type connInfo struct {
	id            int
	local, remote net.Addr
}

// testView is a finished (or failed) test as one side reports it: its own
// streams, and the peer's when they arrived.
type testView struct {
	req        *testRequest
	isServer   bool
	local      []streamResult
	remote     []streamResult
	localCPU   cpuPercent
	remoteCPU  cpuPercent
	localCong  string
	remoteCong string
	conns      []connInfo
	started    time.Time
	peerHost   string // server's host for a client, client's for a server
	peerPort   int
	url        string
	serverVer  string
	sockInfo   socketInfo
	serverText string
	serverJSON json.RawMessage
	// A UDP test's transport, "udp" or "websocket", and why it is not
	// real UDP when auto fell back (or the user chose WebSocket).
	transport       string
	transportReason string
	// latency is what the latency probes found (latency.go); nil when
	// none ran.
	latency *latencyReport
	// reach is how the connections got there: TLS, proxies (reach.go).
	reach *reachFacts
	// unit is a server's -f for the text it sends (--get-server-output);
	// 0 is adaptive.
	unit byte
}

// socketInfo are iperf3's start.* socket facts.
type socketInfo struct {
	mss, sndbuf, rcvbuf int
}

// upstream tells whether a stream carries client-to-server traffic, given
// whether this side sends on it.
func (v *testView) upstream(sending bool) bool { return sending != v.isServer }

// primary tells whether a stream belongs to the test's main direction
// (iperf3's sum) rather than to --bidir's reverse one.
func (v *testView) primary(sending bool) bool {
	if v.req.Direction == dirDownload {
		return true
	}
	return v.upstream(sending)
}

func (v *testView) bidir() bool { return v.req.Direction == dirBidir }

// protocolName is the protocol as iperf3 names it in reports.
func (v *testView) protocolName() string {
	if v.req.udp() {
		return "UDP"
	}
	return "TCP"
}

// transportName is how the test's data travelled: over the WebSocket
// connections, unless a UDP test got real UDP.
func (v *testView) transportName() string {
	if v.transport == "" {
		return "websocket"
	}
	return v.transport
}

// roleTag is --bidir's [TX-C]-style column.
func (v *testView) roleTag(sending bool) string {
	if !v.bidir() {
		return ""
	}
	side := "C"
	if v.isServer {
		side = "S"
	}
	if sending {
		return "[TX-" + side + "]"
	}
	return "[RX-" + side + "]"
}

// localTotals are this side's bytes over all streams and its longest
// stream's time, for a log line.
func (v *testView) localTotals() (bytes int64, secs float64) {
	for _, res := range v.local {
		bytes += res.Bytes
		secs = max(secs, res.Seconds)
	}
	return bytes, secs
}

func (v *testView) remoteFor(id int) (streamResult, bool) {
	for _, s := range v.remote {
		if s.ID == id {
			return s, true
		}
	}
	return streamResult{}, false
}

// ---- a UDP test's datagrams ----

// datagrams are a UDP stream's counts (or a sum of streams') as the
// reports state them.
type datagrams struct {
	sent       int64 // what the sender put on the wire
	dropped    int64 // what a WebSocket sender dropped instead
	total      int64 // loss's denominator: what the sender numbered
	lost       int64
	outOfOrder int64
	jitterMs   float64
}

func (d datagrams) lostPercent() float64 {
	if d.total == 0 {
		return 0
	}
	return 100 * float64(d.lost) / float64(d.total)
}

// datagrams settles a stream's counts from both ends. Once the sender's
// count is known it decides: whatever it numbered and never arrived is
// lost, its drops and a lost tail included, which sequence gaps alone
// miss. Until then the receiver's own view stands.
func (p endPair) datagrams() datagrams {
	var d datagrams
	s, r := p.sender.UDP, p.receiver.UDP
	if r != nil {
		d = datagrams{total: r.Packets + r.Lost, lost: r.Lost, outOfOrder: r.OutOfOrder, jitterMs: r.JitterMs}
	}
	if s != nil {
		d.sent, d.dropped, d.total = s.Packets, s.Dropped, s.Packets+s.Dropped
		if r != nil {
			d.lost = max(d.total-r.Packets, 0)
		}
	}
	return d
}

// datagrams are one side's counts over an interval; a receiver's total
// is what it got plus what it found missing, as iperf3's is.
func (e intervalEntry) datagrams() datagrams {
	var c udpCounts
	if e.iv.UDP != nil {
		c = *e.iv.UDP
	}
	if e.sending {
		return datagrams{sent: c.Packets, dropped: c.Dropped, total: c.Packets + c.Dropped}
	}
	return datagrams{total: c.Packets + c.Lost, lost: c.Lost, outOfOrder: c.OutOfOrder, jitterMs: c.JitterMs}
}

// sumDatagrams adds up streams' counts. Jitter is no count: iperf3 takes
// the streams' mean.
func sumDatagrams(ds []datagrams) datagrams {
	var sum datagrams
	for _, d := range ds {
		sum.sent += d.sent
		sum.dropped += d.dropped
		sum.total += d.total
		sum.lost += d.lost
		sum.outOfOrder += d.outOfOrder
		sum.jitterMs += d.jitterMs
	}
	if len(ds) > 0 {
		sum.jitterMs /= float64(len(ds))
	}
	return sum
}

// ---- the client's live reporter ----

// reporter prints a client's test as it runs, in the format -J,
// --json-stream or neither asks for.
type reporter struct {
	cfg           *config
	out           *lineWriter
	view          *testView
	serverVersion string
	headerDone    bool
	ended         bool
}

func newReporter(cfg *config, out *lineWriter) *reporter {
	return &reporter{cfg: cfg, out: out}
}

func (rep *reporter) text() bool { return !rep.cfg.json && !rep.cfg.jsonStream }

// event writes one --json-stream line.
func (rep *reporter) event(name string, data any) {
	b, _ := json.Marshal(map[string]any{"event": name, "data": data})
	rep.out.raw(string(b) + "\n")
}

// connecting is the first line, before any connection exists.
func (rep *reporter) connecting(u *url.URL, req *testRequest) {
	port, _ := strconv.Atoi(u.Port())
	rep.view = &testView{req: req, peerHost: u.Hostname(), peerPort: port, url: u.String()}
	if !rep.text() {
		return
	}
	if rep.cfg.verbose {
		rep.out.println(software)
		rep.out.println(systemInfo())
		rep.out.println("Time: " + time.Now().UTC().Format(iperfTimeLayout))
	}
	// iperf3's line as iperf3 ends it, so that scripts' patterns anchored
	// at its end match; the URL, wperf's own, follows on a line of its own.
	rep.out.printf("Connecting to host %s, port %d", u.Hostname(), port)
	rep.out.println("      URL: " + u.String())
}

// started prints the connect lines once every stream is up and the
// clock runs.
func (rep *reporter) started(conns []connInfo, sock socketInfo) {
	v := rep.view
	v.started = time.Now()
	v.serverVer = rep.serverVersion
	v.conns, v.sockInfo = conns, sock
	switch {
	case rep.cfg.jsonStream:
		rep.event("start", v.startJSON())
	case rep.text():
		// iperf3 announces reverse mode before the connected lines.
		if v.req.Direction == dirDownload {
			rep.out.printf("Reverse mode, remote host %s is sending", v.peerHost)
		}
		if rep.cfg.verbose {
			rep.out.println("      Cookie: " + v.req.Cookie)
			if !v.req.udp() {
				rep.out.println("      " + v.mssLine())
			}
		}
		for _, l := range v.connectLines() {
			rep.out.println(l)
		}
		for _, l := range v.reach.lines() {
			rep.out.println(l)
		}
		if l := v.transportLine(); l != "" {
			rep.out.println(l)
		}
		if rep.cfg.verbose {
			rep.out.printf("Starting Test: protocol: %s, %d streams, %d byte blocks, omitting %g seconds, %s, tos 0",
				v.protocolName(), v.req.Parallel, v.req.Length, v.req.Omit, testAmount(v.req))
		}
	}
}

// mssLine is -V's TCP MSS line, as iperf3 words it: -M's value, or the
// kernel's choice.
func (v *testView) mssLine() string {
	if v.req.MSS > 0 {
		return fmt.Sprintf("TCP MSS: %d", v.req.MSS)
	}
	return fmt.Sprintf("TCP MSS: %d (default)", v.sockInfo.mss)
}

func testAmount(req *testRequest) string {
	switch {
	case req.Blocks > 0:
		return fmt.Sprintf("%d blocks to send", req.Blocks)
	case req.Bytes > 0:
		return fmt.Sprintf("%d bytes to send", req.Bytes)
	}
	return fmt.Sprintf("%g second test", req.Time)
}

// intervalClosed prints the interval that just closed on every stream;
// latest holds each stream's new interval.
func (rep *reporter) intervalClosed(latest []streamResult, final bool) {
	var entries []intervalEntry
	local := make([]streamResult, 0, len(latest))
	for _, s := range latest {
		iv := s.Intervals[0]
		if final && iv.End <= iv.Start && iv.Bytes == 0 {
			continue
		}
		entries = append(entries, intervalEntry{id: s.ID, sending: s.Sender, iv: iv})
		local = append(local, s)
	}
	if len(entries) == 0 {
		return
	}
	switch {
	case rep.cfg.jsonStream:
		v := *rep.view
		v.local = local
		rep.event("interval", v.intervalJSON(0))
	case rep.text():
		t := textRows{v: rep.view, unit: rep.unit()}
		first := !rep.headerDone
		if first {
			rep.view.local = local
			rep.out.println(t.intervalHeader())
			rep.headerDone = true
		}
		for _, l := range t.intervalBlock(entries, first) {
			rep.out.println(l)
		}
	}
}

func (rep *reporter) unit() byte {
	if rep.cfg.format == 0 {
		return 'a'
	}
	return rep.cfg.format
}

// end records the final results; finish prints them.
func (rep *reporter) end(v *testView) {
	rep.view = v
	rep.ended = true
}

// finish prints the summary (or the error document) and says how the
// run ends: nil, err for main to print, or errReported when the error
// is already in the JSON output.
func (rep *reporter) finish(err error) error {
	switch {
	case rep.cfg.json:
		doc := jsonDoc{Start: emptyStart(), Intervals: []jsonInterval{}, End: &jsonEnd{}}
		if rep.ended {
			doc = rep.view.document()
		}
		doc.Title = rep.cfg.title
		doc.ExtraData = rep.cfg.extraData
		if err != nil {
			doc.Error = err.Error()
		}
		b, _ := json.MarshalIndent(doc, "", "\t")
		rep.out.raw(string(b) + "\n")
	case rep.cfg.jsonStream:
		if rep.ended {
			rep.event("end", rep.view.endJSON())
			if rep.view.serverJSON != nil {
				rep.event("server_output_json", rep.view.serverJSON)
			}
			if rep.view.serverText != "" {
				rep.event("server_output_text", rep.view.serverText)
			}
		}
		if err != nil {
			rep.event("error", err.Error())
		}
	default:
		if rep.ended {
			t := textRows{v: rep.view, unit: rep.unit(), verbose: rep.cfg.verbose}
			for _, l := range t.summaryRows() {
				rep.out.println(l)
			}
			if rep.cfg.verbose {
				rep.printVerboseEnd()
			}
			for _, l := range rep.view.latencyLines() {
				rep.out.println(l)
			}
			rep.printServerOutput()
		}
		if err == nil {
			rep.out.println("")
			rep.out.println("wperf Done.")
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errReported, err)
	}
	return nil
}

// printServerOutput prints --get-server-output's report in the form the
// server wrote it, under iperf3's heading for that form.
func (rep *reporter) printServerOutput() {
	v := rep.view
	var doc bytes.Buffer
	switch {
	case v.serverText != "":
		rep.out.println("")
		rep.out.println("Server output:")
		for _, l := range strings.Split(strings.TrimRight(v.serverText, "\n"), "\n") {
			rep.out.println(cleanText(l, 1000)) // from the network
		}
	case v.serverJSON != nil && json.Indent(&doc, v.serverJSON, "", "\t") == nil:
		// Valid JSON escapes every control character: it prints safely.
		rep.out.println("")
		rep.out.println("Server JSON output:")
		rep.out.raw(doc.String() + "\n")
	}
}

// printVerboseEnd prints -V's lines after the summary, in iperf3's
// words: the CPU use of each end by its role (--bidir's ends have both,
// so both lines), and the congestion control of the test's sender and
// receiver.
func (rep *reporter) printVerboseEnd() {
	v := rep.view
	l, m := v.localCPU, v.remoteCPU
	roles := [][2]string{{"sender", "receiver"}}
	switch v.req.Direction {
	case dirDownload:
		roles = [][2]string{{"receiver", "sender"}}
	case dirBidir:
		roles = append(roles, [2]string{"receiver", "sender"})
	}
	for _, r := range roles {
		rep.out.printf("CPU Utilization: local/%s %.1f%% (%.1f%%u/%.1f%%s), remote/%s %.1f%% (%.1f%%u/%.1f%%s)",
			r[0], l.Total, l.User, l.System, r[1], m.Total, m.User, m.System)
	}
	snd, rcv := v.localCong, cleanText(v.remoteCong, 16) // the peer's from the network
	if v.req.Direction == dirDownload {
		snd, rcv = rcv, snd
	}
	if snd != "" {
		rep.out.println("snd_tcp_congestion " + snd)
	}
	if rcv != "" {
		rep.out.println("rcv_tcp_congestion " + rcv)
	}
}

// openOutput is standard output, or --logfile.
func openOutput(cfg *config, stdout io.Writer) (*lineWriter, error) {
	if cfg.logfile == "" {
		return &lineWriter{w: stdout, title: cfg.title, stamps: cfg.timestamps}, nil
	}
	f, err := os.OpenFile(cfg.logfile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &lineWriter{w: f, closer: f, title: cfg.title, stamps: cfg.timestamps}, nil
}

// cleanText drops what a terminal would interpret (control characters,
// escape sequences), trims spaces and cuts s to max runes. A cut can end
// in a space, so the end is trimmed again after it: cleaning twice then
// changes nothing.
func cleanText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > max {
		s = strings.TrimRight(string(r[:max]), " ")
	}
	return s
}

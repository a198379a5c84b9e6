package main

// report.go turns measurements into what users read: iperf3's text
// layout, its -J document (same key paths, so existing parsers work), the
// --json-stream events, and the server's one-line-per-test log.

import (
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
}

func (l *lineWriter) println(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.title != "" {
		s = l.title + ":  " + s
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

func (v *testView) remoteFor(id int) (streamResult, bool) {
	for _, s := range v.remote {
		if s.ID == id {
			return s, true
		}
	}
	return streamResult{}, false
}

// ---- iperf3's JSON document ----

type jsonDoc struct {
	Start            jsonStart       `json:"start"`
	Intervals        []jsonInterval  `json:"intervals"`
	End              *jsonEnd        `json:"end"`
	ServerOutputJSON json.RawMessage `json:"server_output_json,omitempty"`
	ServerOutputText string          `json:"server_output_text,omitempty"`
	Title            string          `json:"title,omitempty"`
	Error            string          `json:"error,omitempty"`
}

type jsonStart struct {
	Connected  []jsonConnected `json:"connected"`
	Version    string          `json:"version"`
	SystemInfo string          `json:"system_info"`
	*jsonStartDetails
}

// jsonStartDetails is the part of start that exists once a test began.
type jsonStartDetails struct {
	Timestamp          jsonTimestamp  `json:"timestamp"`
	ConnectingTo       *jsonHostPort  `json:"connecting_to,omitempty"`
	AcceptedConnection *jsonHostPort  `json:"accepted_connection,omitempty"`
	Cookie             string         `json:"cookie"`
	TCPMSSDefault      int            `json:"tcp_mss_default"`
	TargetBitrate      int            `json:"target_bitrate"`
	SockBufsize        int            `json:"sock_bufsize"`
	SndbufActual       int            `json:"sndbuf_actual"`
	RcvbufActual       int            `json:"rcvbuf_actual"`
	TestStart          jsonTestStart  `json:"test_start"`
	TestParameters     *testRequest   `json:"test_parameters"` // the request as sent
	WPerf              jsonWPerfStart `json:"wperf"`
}

type jsonConnected struct {
	Socket     int    `json:"socket"`
	LocalHost  string `json:"local_host"`
	LocalPort  int    `json:"local_port"`
	RemoteHost string `json:"remote_host"`
	RemotePort int    `json:"remote_port"`
}

type jsonTimestamp struct {
	Time     string `json:"time"`
	Timesecs int64  `json:"timesecs"`
}

type jsonHostPort struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

type jsonTestStart struct {
	Protocol      string  `json:"protocol"`
	NumStreams    int     `json:"num_streams"`
	Blksize       int     `json:"blksize"`
	Omit          float64 `json:"omit"`
	Duration      float64 `json:"duration"`
	Bytes         int64   `json:"bytes"`
	Blocks        int64   `json:"blocks"`
	Reverse       int     `json:"reverse"`
	Bidir         int     `json:"bidir"`
	Tos           int     `json:"tos"`
	TargetBitrate int     `json:"target_bitrate"`
}

// jsonWPerfStart holds what only wperf knows, under its own key.
type jsonWPerfStart struct {
	Version         string `json:"version"`
	Transport       string `json:"transport"`
	URL             string `json:"url,omitempty"`
	Subprotocol     string `json:"subprotocol"`
	ProtocolVersion int    `json:"protocol_version"`
	Server          string `json:"server,omitempty"`
}

type jsonInterval struct {
	Streams         []jsonIntervalStream `json:"streams"`
	Sum             *jsonSum             `json:"sum,omitempty"`
	SumBidirReverse *jsonSum             `json:"sum_bidir_reverse,omitempty"`
}

// jsonSpan is the traffic over a span of time, the core of every interval
// and summary object.
type jsonSpan struct {
	Start         float64 `json:"start"`
	End           float64 `json:"end"`
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
}

func newSpan(start, end, seconds float64, bytes int64) jsonSpan {
	return jsonSpan{Start: start, End: end, Seconds: seconds, Bytes: bytes, BitsPerSecond: 8 * rate(bytes, seconds)}
}

type jsonIntervalStream struct {
	Socket int `json:"socket"`
	jsonSpan
	*tcpSnapshot
	Omitted bool `json:"omitted"`
	Sender  bool `json:"sender"`
}

type jsonSum struct {
	jsonSpan
	Retransmits *int64 `json:"retransmits,omitempty"`
	Omitted     *bool  `json:"omitted,omitempty"`
	Sender      bool   `json:"sender"`
}

type jsonEnd struct {
	Streams                 []jsonEndStream `json:"streams,omitempty"` // absent only in an error document's "end": {}
	SumSent                 *jsonSum        `json:"sum_sent,omitempty"`
	SumReceived             *jsonSum        `json:"sum_received,omitempty"`
	SumSentBidirReverse     *jsonSum        `json:"sum_sent_bidir_reverse,omitempty"`
	SumReceivedBidirReverse *jsonSum        `json:"sum_received_bidir_reverse,omitempty"`
	CPU                     *jsonCPU        `json:"cpu_utilization_percent,omitempty"`
	SenderCongestion        string          `json:"sender_tcp_congestion,omitempty"`
	ReceiverCongestion      string          `json:"receiver_tcp_congestion,omitempty"`
}

type jsonEndStream struct {
	Sender   jsonEndSide `json:"sender"`
	Receiver jsonEndSide `json:"receiver"`
}

type jsonEndSide struct {
	Socket int `json:"socket"`
	jsonSpan
	*tcpTotals
	Sender bool `json:"sender"`
}

type jsonCPU struct {
	HostTotal    float64 `json:"host_total"`
	HostUser     float64 `json:"host_user"`
	HostSystem   float64 `json:"host_system"`
	RemoteTotal  float64 `json:"remote_total"`
	RemoteUser   float64 `json:"remote_user"`
	RemoteSystem float64 `json:"remote_system"`
}

// emptyStart is start as iperf3 writes it when no test began.
func emptyStart() jsonStart {
	return jsonStart{Connected: []jsonConnected{}, Version: software, SystemInfo: systemInfo()}
}

// startJSON is the start section.
func (v *testView) startJSON() jsonStart {
	st := emptyStart()
	for _, c := range v.conns {
		lh, lp := hostPort(c.local)
		rh, rp := hostPort(c.remote)
		st.Connected = append(st.Connected, jsonConnected{Socket: c.id, LocalHost: lh, LocalPort: lp, RemoteHost: rh, RemotePort: rp})
	}
	req := v.req
	d := &jsonStartDetails{
		Timestamp:     jsonTimestamp{Time: v.started.UTC().Format(iperfTimeLayout), Timesecs: v.started.Unix()},
		Cookie:        req.Cookie,
		TCPMSSDefault: v.sockInfo.mss,
		SockBufsize:   req.Window,
		SndbufActual:  v.sockInfo.sndbuf,
		RcvbufActual:  v.sockInfo.rcvbuf,
		TestStart: jsonTestStart{
			Protocol:   "TCP",
			NumStreams: req.Parallel,
			Blksize:    req.Length,
			Omit:       req.Omit,
			Duration:   req.Time,
			Bytes:      req.Bytes,
			Blocks:     req.Blocks,
			Reverse:    b2i(req.Direction == dirDownload),
			Bidir:      b2i(req.Direction == dirBidir),
		},
		TestParameters: req,
		WPerf: jsonWPerfStart{
			Version:         version,
			Transport:       "websocket",
			URL:             v.url,
			Subprotocol:     subprotocolV1,
			ProtocolVersion: req.Version,
			Server:          v.serverVer,
		},
	}
	peer := &jsonHostPort{Host: v.peerHost, Port: v.peerPort}
	if v.isServer {
		d.AcceptedConnection = peer
	} else {
		d.ConnectingTo = peer
	}
	st.jsonStartDetails = d
	return st
}

// iperfTimeLayout is start.timestamp.time as iperf3 writes it (RFC 1123
// in GMT, as HTTP dates are; Go's RFC1123 would say UTC).
const iperfTimeLayout = "Mon, 02 Jan 2006 15:04:05 GMT"

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hostPort splits a socket address for the reports.
func hostPort(a net.Addr) (string, int) {
	if a == nil {
		return "", 0
	}
	return splitPeer(a.String())
}

// intervalJSON is interval k of every local stream, with the sums.
func (v *testView) intervalJSON(k int) jsonInterval {
	var out jsonInterval
	var main, rev []intervalEntry
	for _, s := range v.local {
		if k >= len(s.Intervals) {
			continue
		}
		e := intervalEntry{id: s.ID, sending: s.Sender, iv: s.Intervals[k]}
		out.Streams = append(out.Streams, e.json())
		if v.primary(s.Sender) {
			main = append(main, e)
		} else {
			rev = append(rev, e)
		}
	}
	out.Sum = sumIntervals(main)
	out.SumBidirReverse = sumIntervals(rev)
	return out
}

// intervalEntry is one stream's interval, with what a report needs to
// label it.
type intervalEntry struct {
	id      int
	sending bool
	iv      interval
}

func (e intervalEntry) json() jsonIntervalStream {
	return jsonIntervalStream{
		Socket:      e.id,
		jsonSpan:    newSpan(e.iv.Start, e.iv.End, e.iv.End-e.iv.Start, e.iv.Bytes),
		tcpSnapshot: e.iv.TCP,
		Omitted:     e.iv.Omitted,
		Sender:      e.sending,
	}
}

// sumIntervals adds up one direction's streams over one interval.
func sumIntervals(es []intervalEntry) *jsonSum {
	if len(es) == 0 {
		return nil
	}
	start, end, bytes := es[0].iv.Start, 0.0, int64(0)
	var retr int64
	hasRetr := false
	for _, e := range es {
		end = max(end, e.iv.End)
		bytes += e.iv.Bytes
		if e.iv.TCP != nil {
			retr += e.iv.TCP.Retransmits
			hasRetr = true
		}
	}
	omitted := es[0].iv.Omitted
	s := &jsonSum{jsonSpan: newSpan(start, end, end-start, bytes), Omitted: &omitted, Sender: es[0].sending}
	if hasRetr {
		s.Retransmits = &retr
	}
	return s
}

// endPair is one stream's sender and receiver summaries.
type endPair struct {
	id       int
	sending  bool // this side sends on it
	sender   streamResult
	receiver streamResult
	hasPeer  bool
}

// pairs matches each local stream with the peer's view of it.
func (v *testView) pairs() []endPair {
	var out []endPair
	for _, s := range v.local {
		p := endPair{id: s.ID, sending: s.Sender}
		r, ok := v.remoteFor(s.ID)
		p.hasPeer = ok
		if s.Sender {
			p.sender, p.receiver = s, r
		} else {
			p.sender, p.receiver = r, s
		}
		out = append(out, p)
	}
	return out
}

func endSide(id int, r streamResult, localSends bool, withTCP bool) jsonEndSide {
	side := jsonEndSide{Socket: id, jsonSpan: newSpan(0, r.End, r.Seconds, r.Bytes), Sender: localSends}
	if withTCP {
		side.tcpTotals = r.TCP
		if side.tcpTotals == nil {
			side.tcpTotals = &tcpTotals{}
		}
	}
	return side
}

// sumEnd adds up one direction's sender or receiver summaries.
func sumEnd(rs []streamResult, localSends, withRetr bool) *jsonSum {
	if len(rs) == 0 {
		return nil
	}
	var end float64
	var bytes, retr int64
	for _, r := range rs {
		end = max(end, r.End)
		bytes += r.Bytes
		if r.TCP != nil {
			retr += r.TCP.Retransmits
		}
	}
	s := &jsonSum{jsonSpan: newSpan(0, end, end, bytes), Sender: localSends}
	if withRetr {
		s.Retransmits = &retr
	}
	return s
}

// endJSON is the end section.
func (v *testView) endJSON() *jsonEnd {
	end := &jsonEnd{Streams: []jsonEndStream{}}
	var sent, recv, sentRev, recvRev []streamResult
	var mainSends, revSends bool
	for _, p := range v.pairs() {
		end.Streams = append(end.Streams, jsonEndStream{
			Sender:   endSide(p.id, p.sender, p.sending, true),
			Receiver: endSide(p.id, p.receiver, p.sending, false),
		})
		if v.primary(p.sending) {
			sent, recv, mainSends = append(sent, p.sender), append(recv, p.receiver), p.sending
		} else {
			sentRev, recvRev, revSends = append(sentRev, p.sender), append(recvRev, p.receiver), p.sending
		}
	}
	end.SumSent = sumEnd(sent, mainSends, true)
	end.SumReceived = sumEnd(recv, mainSends, false)
	end.SumSentBidirReverse = sumEnd(sentRev, revSends, true)
	end.SumReceivedBidirReverse = sumEnd(recvRev, revSends, false)
	end.CPU = &jsonCPU{
		HostTotal: v.localCPU.Total, HostUser: v.localCPU.User, HostSystem: v.localCPU.System,
		RemoteTotal: v.remoteCPU.Total, RemoteUser: v.remoteCPU.User, RemoteSystem: v.remoteCPU.System,
	}
	if mainSends {
		end.SenderCongestion, end.ReceiverCongestion = v.localCong, v.remoteCong
	} else {
		end.SenderCongestion, end.ReceiverCongestion = v.remoteCong, v.localCong
	}
	return end
}

// document is the whole -J document of a test.
func (v *testView) document() jsonDoc {
	doc := jsonDoc{Start: v.startJSON(), Intervals: []jsonInterval{}, End: v.endJSON()}
	for k := range v.intervalCount() {
		doc.Intervals = append(doc.Intervals, v.intervalJSON(k))
	}
	doc.ServerOutputJSON = v.serverJSON
	doc.ServerOutputText = v.serverText
	return doc
}

func (v *testView) intervalCount() int {
	n := 0
	for _, s := range v.local {
		n = max(n, len(s.Intervals))
	}
	return n
}

// ---- iperf3's text layout ----

const separator = "- - - - - - - - - - - - - - - - - - - - - - - - -"

// textRows holds the text renderer's choices for one test.
type textRows struct {
	v    *testView
	unit byte // -f
}

// intervalHeader is the column header above interval rows.
func (t textRows) intervalHeader() string {
	role := ""
	if t.v.bidir() {
		role = "[Role]"
	}
	h := "[ ID]" + role + " Interval           Transfer     Bitrate"
	if t.hasTCPColumns() {
		h += "         Retr  Cwnd"
	}
	return h
}

// hasTCPColumns: Retr and Cwnd appear where this side sends and knows them.
func (t textRows) hasTCPColumns() bool {
	for _, s := range t.v.local {
		if s.Sender {
			return tcpInfoAvailable
		}
	}
	return false
}

func (t textRows) lead(id string, sending bool) string {
	return "[" + id + "]" + t.v.roleTag(sending)
}

func idLabel(id int) string { return fmt.Sprintf("%3d", id) }

func span(start, end float64) string { return fmt.Sprintf("%6.2f-%-6.2f sec", start, end) }

// intervalRow is one stream's (or a sum's) line for one interval.
func (t textRows) intervalRow(id string, sending bool, iv interval, retr *int64, cwnd int64, showCwnd bool) string {
	secs := iv.End - iv.Start
	row := fmt.Sprintf("%s %s  %s  %s", t.lead(id, sending), span(iv.Start, iv.End),
		formatUnits(float64(iv.Bytes), 'A'), formatUnits(rate(iv.Bytes, secs), t.unit)+"/sec")
	switch {
	case retr != nil && showCwnd:
		row += fmt.Sprintf("  %3d   %s       ", *retr, formatUnits(float64(cwnd), 'A'))
	case retr != nil:
		row += fmt.Sprintf("  %3d", *retr)
	case t.hasTCPColumns():
		row += "                  "
	}
	if iv.Omitted {
		row += "  (omitted)"
	}
	return strings.TrimRight(row, " ")
}

// intervalBlock is the rows of one interval: each stream, then the sums
// when there are several streams. Blocks of several rows are set apart
// by a separator line before all but the first.
func (t textRows) intervalBlock(entries []intervalEntry, first bool) []string {
	var lines []string
	if t.v.req.Parallel > 1 && !first {
		lines = append(lines, separator)
	}
	var main, rev []intervalEntry
	for _, e := range entries {
		var retr *int64
		var cwnd int64
		if e.iv.TCP != nil {
			retr, cwnd = &e.iv.TCP.Retransmits, e.iv.TCP.SndCwnd
		}
		lines = append(lines, t.intervalRow(idLabel(e.id), e.sending, e.iv, retr, cwnd, true))
		if t.v.primary(e.sending) {
			main = append(main, e)
		} else {
			rev = append(rev, e)
		}
	}
	if t.v.req.Parallel == 1 {
		return lines
	}
	for _, dir := range [][]intervalEntry{main, rev} {
		if s := sumIntervals(dir); s != nil {
			iv := interval{Start: s.Start, End: s.End, Bytes: s.Bytes, Omitted: *s.Omitted}
			lines = append(lines, t.intervalRow("SUM", dir[0].sending, iv, s.Retransmits, 0, false))
		}
	}
	return lines
}

// summary is the block after the last interval: sender and receiver rows
// per stream, then the sums.
func (t textRows) summary() []string {
	v := t.v
	pairs := v.pairs()
	lines := []string{separator}
	role := ""
	if v.bidir() {
		role = "[Role]"
	}
	lines = append(lines, "[ ID]"+role+" Interval           Transfer     Bitrate         Retr")
	var sent, recv, sentRev, recvRev []streamResult
	var mainSends, revSends bool
	for _, p := range pairs {
		lines = append(lines, t.endRow(idLabel(p.id), p.sending, p.sender, true))
		if p.hasPeer || !p.sending {
			lines = append(lines, t.endRow(idLabel(p.id), p.sending, p.receiver, false))
		}
		if v.primary(p.sending) {
			sent, recv, mainSends = append(sent, p.sender), append(recv, p.receiver), p.sending
		} else {
			sentRev, recvRev, revSends = append(sentRev, p.sender), append(recvRev, p.receiver), p.sending
		}
	}
	if v.req.Parallel > 1 {
		lines = append(lines, t.sumRows(sent, recv, mainSends)...)
		lines = append(lines, t.sumRows(sentRev, recvRev, revSends)...)
	}
	return lines
}

func (t textRows) sumRows(sent, recv []streamResult, localSends bool) []string {
	if len(sent) == 0 {
		return nil
	}
	s, r := sumEnd(sent, localSends, true), sumEnd(recv, localSends, false)
	return []string{
		t.endRowValues("SUM", localSends, s.Seconds, s.Bytes, s.Retransmits, "sender"),
		t.endRowValues("SUM", localSends, r.Seconds, r.Bytes, nil, "receiver"),
	}
}

func (t textRows) endRow(id string, localSends bool, r streamResult, isSender bool) string {
	if isSender {
		var retr int64
		if r.TCP != nil {
			retr = r.TCP.Retransmits
		}
		return t.endRowValues(id, localSends, r.Seconds, r.Bytes, &retr, "sender")
	}
	return t.endRowValues(id, localSends, r.Seconds, r.Bytes, nil, "receiver")
}

func (t textRows) endRowValues(id string, localSends bool, secs float64, bytes int64, retr *int64, role string) string {
	row := fmt.Sprintf("%s %s  %s  %s", t.lead(id, localSends), span(0, secs),
		formatUnits(float64(bytes), 'A'), formatUnits(rate(bytes, secs), t.unit)+"/sec")
	if retr != nil {
		return row + fmt.Sprintf("  %3d             %s", *retr, role)
	}
	return row + "                  " + role
}

// connectLines are the "[  5] local ... connected to ..." lines.
func (v *testView) connectLines() []string {
	var lines []string
	for _, c := range v.conns {
		lh, lp := hostPort(c.local)
		rh, rp := hostPort(c.remote)
		lines = append(lines, fmt.Sprintf("[%3d] local %s port %d connected to %s port %d", c.id, lh, lp, rh, rp))
	}
	return lines
}

// text is the whole report as text, as the server's --get-server-output
// gives it.
func (v *testView) text() string {
	t := textRows{v: v, unit: 'a'}
	lines := []string{fmt.Sprintf("Accepted connection from %s, port %d", v.peerHost, v.peerPort)}
	lines = append(lines, v.connectLines()...)
	lines = append(lines, t.intervalHeader())
	for k := range v.intervalCount() {
		var entries []intervalEntry
		for _, s := range v.local {
			if k < len(s.Intervals) {
				entries = append(entries, intervalEntry{id: s.ID, sending: s.Sender, iv: s.Intervals[k]})
			}
		}
		lines = append(lines, t.intervalBlock(entries, k == 0)...)
	}
	lines = append(lines, t.summary()...)
	return strings.Join(lines, "\n") + "\n"
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

func (r *reporter) text() bool { return !r.cfg.json && !r.cfg.jsonStream }

// event writes one --json-stream line.
func (r *reporter) event(name string, data any) {
	b, _ := json.Marshal(map[string]any{"event": name, "data": data})
	r.out.raw(string(b) + "\n")
}

// connecting is the first line, before any connection exists.
func (r *reporter) connecting(u *url.URL, req *testRequest) {
	port, _ := strconv.Atoi(u.Port())
	r.view = &testView{req: req, peerHost: u.Hostname(), peerPort: port, url: u.String()}
	if r.text() {
		r.out.printf("Connecting to host %s, port %d (%s)", u.Hostname(), port, u.String())
	}
}

func (r *reporter) addConn(s *stream) {
	nc := s.conn.netConn()
	r.view.conns = append(r.view.conns, connInfo{id: s.id, local: nc.LocalAddr(), remote: nc.RemoteAddr()})
}

// started prints the connect lines once every stream is up and the
// clock runs.
func (r *reporter) started(run *testRun) {
	v := r.view
	v.started = time.Now()
	v.serverVer = r.serverVersion
	if len(run.streams) > 0 {
		v.sockInfo = socketFacts(run.streams[0].conn.netConn())
	}
	switch {
	case r.cfg.jsonStream:
		r.event("start", v.startJSON())
	case r.text():
		// iperf3 announces reverse mode before the connected lines.
		if v.req.Direction == dirDownload {
			r.out.printf("Reverse mode, remote host %s is sending", v.peerHost)
		}
		for _, l := range v.connectLines() {
			r.out.println(l)
		}
		if r.cfg.verbose {
			r.out.printf("Starting Test: protocol: TCP, %d streams, %d byte blocks, omitting %g seconds, %s, tos 0",
				v.req.Parallel, v.req.Length, v.req.Omit, testAmount(v.req))
		}
	}
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

// mark prints the interval that just closed on every stream.
func (r *reporter) mark(run *testRun, final bool) {
	var entries []intervalEntry
	local := make([]streamResult, 0, len(run.streams))
	for _, s := range run.streams {
		iv := s.intervals[len(s.intervals)-1]
		if final && iv.End <= iv.Start && iv.Bytes == 0 {
			continue
		}
		entries = append(entries, intervalEntry{id: s.id, sending: s.sending, iv: iv})
		local = append(local, streamResult{ID: s.id, Sender: s.sending, Intervals: []interval{iv}})
	}
	if len(entries) == 0 {
		return
	}
	switch {
	case r.cfg.jsonStream:
		v := *r.view
		v.local = local
		r.event("interval", v.intervalJSON(0))
	case r.text():
		t := textRows{v: r.view, unit: r.unit()}
		first := !r.headerDone
		if first {
			r.view.local = local
			r.out.println(t.intervalHeader())
			r.headerDone = true
		}
		for _, l := range t.intervalBlock(entries, first) {
			r.out.println(l)
		}
	}
}

func (r *reporter) unit() byte {
	if r.cfg.format == 0 {
		return 'a'
	}
	return r.cfg.format
}

// end records the final results; finish prints them.
func (r *reporter) end(v *testView) {
	r.view = v
	r.ended = true
}

// finish prints the summary (or the error document) and says how the
// run ends: nil, err for main to print, or errReported when the error
// is already in the JSON output.
func (r *reporter) finish(err error) error {
	switch {
	case r.cfg.json:
		doc := jsonDoc{Start: emptyStart(), Intervals: []jsonInterval{}, End: &jsonEnd{}}
		if r.ended {
			doc = r.view.document()
		}
		doc.Title = r.cfg.title
		if err != nil {
			doc.Error = err.Error()
		}
		b, _ := json.MarshalIndent(doc, "", "\t")
		r.out.raw(string(b) + "\n")
	case r.cfg.jsonStream:
		if r.ended {
			r.event("end", r.view.endJSON())
			if r.view.serverJSON != nil {
				r.event("server_output_json", r.view.serverJSON)
			}
		}
		if err != nil {
			r.event("error", err.Error())
		}
	default:
		if r.ended {
			t := textRows{v: r.view, unit: r.unit()}
			for _, l := range t.summary() {
				r.out.println(l)
			}
			if r.cfg.verbose {
				r.printVerboseEnd()
			}
			if r.view.serverText != "" {
				r.out.println("")
				r.out.println("Server output:")
				for _, l := range strings.Split(strings.TrimRight(r.view.serverText, "\n"), "\n") {
					r.out.println(cleanText(l, 1000)) // from the network
				}
			}
		}
		if err == nil {
			r.out.println("")
			r.out.println("wperf Done.")
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errReported, err)
	}
	return nil
}

func (r *reporter) printVerboseEnd() {
	v := r.view
	l, m := v.localCPU, v.remoteCPU
	r.out.printf("CPU Utilization: local %.1f%% (%.1f%%u/%.1f%%s), remote %.1f%% (%.1f%%u/%.1f%%s)",
		l.Total, l.User, l.System, m.Total, m.User, m.System)
	if v.localCong != "" {
		r.out.printf("local tcp congestion %s, remote tcp congestion %s", v.localCong, cleanText(v.remoteCong, 16))
	}
}

// openOutput is standard output, or --logfile.
func openOutput(cfg *config, stdout io.Writer) (*lineWriter, error) {
	if cfg.logfile == "" {
		return &lineWriter{w: stdout, title: cfg.title}, nil
	}
	f, err := os.OpenFile(cfg.logfile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &lineWriter{w: f, closer: f, title: cfg.title}, nil
}

// cleanText drops what a terminal would interpret (control characters,
// escape sequences) and cuts s to max runes.
func cleanText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max])
	}
	return s
}

package main

// report_json.go is iperf3's -J document, built from a testView: the same
// key paths as iperf3 3.12, so existing parsers and exporters work, plus
// wperf's own facts under start.wperf.

import (
	"encoding/json"
	"net"
)

type jsonDoc struct {
	Start            jsonStart       `json:"start"`
	Intervals        []jsonInterval  `json:"intervals"`
	End              *jsonEnd        `json:"end"`
	ExtraData        string          `json:"extra_data,omitempty"` // --extra-data, on both ends, where iperf3 puts it
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
	TCPMSS             int            `json:"tcp_mss,omitempty"`         // -M, as asked
	TCPMSSDefault      *int           `json:"tcp_mss_default,omitempty"` // the kernel's, without -M
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
	Transport       string `json:"transport"`                  // "websocket", or "udp" for a UDP test over real UDP
	TransportReason string `json:"transport_reason,omitempty"` // why a UDP test is not over real UDP
	URL             string `json:"url,omitempty"`
	Subprotocol     string `json:"subprotocol"`
	ProtocolVersion int    `json:"protocol_version"`
	Server          string `json:"server,omitempty"`
	*reachFacts            // tls and proxy (reach.go)
}

type jsonInterval struct {
	Streams         []jsonIntervalStream `json:"streams"`
	Sum             *jsonSum             `json:"sum,omitempty"`
	SumBidirReverse *jsonSum             `json:"sum_bidir_reverse,omitempty"`
	WPerf           *jsonIntervalWPerf   `json:"wperf,omitempty"`
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
	*jsonDatagrams
	Omitted bool `json:"omitted"`
	Sender  bool `json:"sender"`
}

type jsonSum struct {
	jsonSpan
	Retransmits *int64 `json:"retransmits,omitempty"`
	*jsonDatagrams
	Omitted *bool `json:"omitted,omitempty"`
	Sender  bool  `json:"sender"`
}

// jsonDatagrams are a UDP object's counts. A sender's interval has
// packets alone; everything else has all four, zeros included, as
// iperf3 writes them.
type jsonDatagrams struct {
	JitterMs    *float64 `json:"jitter_ms,omitempty"`
	LostPackets *int64   `json:"lost_packets,omitempty"`
	Packets     int64    `json:"packets"`
	LostPercent *float64 `json:"lost_percent,omitempty"`
}

type jsonEnd struct {
	Streams                 []jsonEndStream `json:"streams,omitempty"` // absent only in an error document's "end": {}
	Sum                     *jsonSum        `json:"sum,omitempty"`     // UDP
	SumSent                 *jsonSum        `json:"sum_sent,omitempty"`
	SumReceived             *jsonSum        `json:"sum_received,omitempty"`
	SumBidirReverse         *jsonSum        `json:"sum_bidir_reverse,omitempty"` // UDP
	SumSentBidirReverse     *jsonSum        `json:"sum_sent_bidir_reverse,omitempty"`
	SumReceivedBidirReverse *jsonSum        `json:"sum_received_bidir_reverse,omitempty"`
	CPU                     *jsonCPU        `json:"cpu_utilization_percent,omitempty"`
	SenderCongestion        string          `json:"sender_tcp_congestion,omitempty"`
	ReceiverCongestion      string          `json:"receiver_tcp_congestion,omitempty"`
	WPerf                   *jsonEndWPerf   `json:"wperf,omitempty"`
}

// jsonEndStream is one stream's summary: a TCP stream's sender and
// receiver halves, or a UDP stream's single object that merges both.
type jsonEndStream struct {
	Sender   *jsonEndSide `json:"sender,omitempty"`
	Receiver *jsonEndSide `json:"receiver,omitempty"`
	UDP      *jsonEndUDP  `json:"udp,omitempty"`
}

// jsonEndUDP is iperf3's end.streams[].udp: the sender's bytes and time,
// the receiver's jitter and loss.
type jsonEndUDP struct {
	Socket int `json:"socket"`
	jsonSpan
	*jsonDatagrams
	OutOfOrder int64 `json:"out_of_order"`
	// Dropped is wperf's own: datagrams a WebSocket sender dropped
	// because its connection had backed up (counted lost too).
	Dropped int64 `json:"dropped,omitempty"`
	Sender  bool  `json:"sender"`
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
		Timestamp:    jsonTimestamp{Time: v.started.UTC().Format(iperfTimeLayout), Timesecs: v.started.Unix()},
		Cookie:       req.Cookie,
		SockBufsize:  req.Window,
		SndbufActual: v.sockInfo.sndbuf,
		RcvbufActual: v.sockInfo.rcvbuf,
		TestStart: jsonTestStart{
			Protocol:   v.protocolName(),
			NumStreams: req.Parallel,
			Blksize:    req.Length,
			Omit:       req.Omit,
			Duration:   req.Time,
			Bytes:      req.Bytes,
			Blocks:     req.Blocks,
			Reverse:    b2i(req.Direction == dirDownload),
			Bidir:      b2i(req.Direction == dirBidir),
			Tos:        req.TOS,
		},
		TestParameters: req,
		WPerf: jsonWPerfStart{
			Version:         version,
			Transport:       v.transportName(),
			TransportReason: v.transportReason,
			URL:             v.url,
			Subprotocol:     subprotocolV1,
			ProtocolVersion: req.Version,
			Server:          v.serverVer,
			reachFacts:      v.reach,
		},
	}
	// iperf3 names the MSS tcp_mss when -M set it, tcp_mss_default when
	// the kernel chose.
	if req.MSS > 0 {
		d.TCPMSS = req.MSS
	} else {
		d.TCPMSSDefault = &v.sockInfo.mss
	}
	// -b on a TCP test is a target too, as iperf3 reports it; a TCP
	// test without -b asks for none (0).
	d.TargetBitrate = int(req.Rate)
	d.TestStart.TargetBitrate = d.TargetBitrate
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
	out.WPerf = v.intervalLatency(k)
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
		Socket:        e.id,
		jsonSpan:      newSpan(e.iv.Start, e.iv.End, e.iv.End-e.iv.Start, e.iv.Bytes),
		tcpSnapshot:   e.iv.TCP,
		jsonDatagrams: e.udpJSON(),
		Omitted:       e.iv.Omitted,
		Sender:        e.sending,
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
	s := &jsonSum{jsonSpan: newSpan(start, end, end-start, bytes), jsonDatagrams: sumIntervalDatagrams(es), Omitted: &omitted, Sender: es[0].sending}
	if hasRetr {
		s.Retransmits = &retr
	}
	return s
}

// udpJSON is a UDP stream's counts over one interval; nil for TCP.
func (e intervalEntry) udpJSON() *jsonDatagrams {
	if e.iv.UDP == nil {
		return nil
	}
	return e.datagrams().intervalJSON(e.sending)
}

// sumIntervalDatagrams adds up one direction's UDP counts over one
// interval; nil for TCP.
func sumIntervalDatagrams(es []intervalEntry) *jsonDatagrams {
	if es[0].iv.UDP == nil {
		return nil
	}
	ds := make([]datagrams, len(es))
	for i, e := range es {
		ds[i] = e.datagrams()
	}
	return sumDatagrams(ds).intervalJSON(es[0].sending)
}

// intervalJSON: a sender's interval counts what it sent, a receiver's
// what it saw.
func (d datagrams) intervalJSON(sending bool) *jsonDatagrams {
	if sending {
		return &jsonDatagrams{Packets: d.sent}
	}
	return d.receivedJSON()
}

// receivedJSON is the receiver's account: jitter and loss out of what
// the sender numbered.
func (d datagrams) receivedJSON() *jsonDatagrams {
	jitter, lost, percent := d.jitterMs, d.lost, d.lostPercent()
	return &jsonDatagrams{JitterMs: &jitter, LostPackets: &lost, Packets: d.total, LostPercent: &percent}
}

// sentJSON is iperf3's sender summary: what went out, and zeros where
// only a receiver could know.
func (d datagrams) sentJSON() *jsonDatagrams {
	var zero float64
	var none int64
	return &jsonDatagrams{JitterMs: &zero, LostPackets: &none, Packets: d.sent, LostPercent: &zero}
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
		res, ok := v.remoteFor(s.ID)
		p.hasPeer = ok
		if s.Sender {
			p.sender, p.receiver = s, res
		} else {
			p.sender, p.receiver = res, s
		}
		out = append(out, p)
	}
	return out
}

// senderKnown tells whether the sender's results are at hand: its own,
// or the peer's once they arrived.
func (p endPair) senderKnown() bool { return p.sending || p.hasPeer }

// splitPairs parts the streams into the test's main direction and
// --bidir's reverse one.
func (v *testView) splitPairs(pairs []endPair) (main, rev []endPair) {
	for _, p := range pairs {
		if v.primary(p.sending) {
			main = append(main, p)
		} else {
			rev = append(rev, p)
		}
	}
	return main, rev
}

// endStream is one stream's summary object.
func (v *testView) endStream(p endPair) jsonEndStream {
	if v.req.udp() {
		return jsonEndStream{UDP: p.udpJSON()}
	}
	s, r := endSide(p.id, p.sender, p.sending, true), endSide(p.id, p.receiver, p.sending, false)
	if p.senderKnown() {
		// As iperf3: the receiver's seconds are the sender's; its end
		// and bitrate stay its own.
		r.Seconds = p.sender.Seconds
	}
	return jsonEndStream{Sender: &s, Receiver: &r}
}

// udpJSON merges a UDP stream's two ends as iperf3 does: the sender's
// bytes and time (the receiver's while the sender's are missing), the
// receiver's jitter and loss.
func (p endPair) udpJSON() *jsonEndUDP {
	src := p.sender
	if !p.senderKnown() {
		src = p.receiver
	}
	d := p.datagrams()
	return &jsonEndUDP{
		Socket:        p.id,
		jsonSpan:      newSpan(0, src.End, src.Seconds, src.Bytes),
		jsonDatagrams: d.receivedJSON(),
		OutOfOrder:    d.outOfOrder,
		Dropped:       d.dropped,
		Sender:        p.sending,
	}
}

func endSide(id int, res streamResult, localSends bool, withTCP bool) jsonEndSide {
	side := jsonEndSide{Socket: id, jsonSpan: newSpan(0, res.End, res.Seconds, res.Bytes), Sender: localSends}
	if withTCP {
		side.tcpTotals = res.TCP
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
	for _, res := range rs {
		end = max(end, res.End)
		bytes += res.Bytes
		if res.TCP != nil {
			retr += res.TCP.Retransmits
		}
	}
	s := &jsonSum{jsonSpan: newSpan(0, end, end, bytes), Sender: localSends}
	if withRetr {
		s.Retransmits = &retr
	}
	return s
}

// endSums are one direction's sums: sum_sent and sum_received, and for
// UDP also iperf3's older "sum", which mixes the two: the receiver's time
// with the sender's bytes and bitrate (parsers read the sent rate there)
// and the receiver's loss.
func (v *testView) endSums(ps []endPair) (sum, sent, recv *jsonSum) {
	if len(ps) == 0 {
		return nil, nil, nil
	}
	localSends := ps[0].sending
	senders, receivers := make([]streamResult, len(ps)), make([]streamResult, len(ps))
	ds := make([]datagrams, len(ps))
	for i, p := range ps {
		senders[i], receivers[i], ds[i] = p.sender, p.receiver, p.datagrams()
	}
	udp := v.req.udp()
	sent, recv = sumEnd(senders, localSends, !udp), sumEnd(receivers, localSends, false)
	if !udp {
		return nil, sent, recv
	}
	d := sumDatagrams(ds)
	// iperf3 marks UDP's sums by what they count, not by who counted.
	sent.jsonDatagrams, sent.Sender = d.sentJSON(), true
	recv.jsonDatagrams, recv.Sender = d.receivedJSON(), false
	sum = &jsonSum{jsonSpan: recv.jsonSpan, jsonDatagrams: d.receivedJSON(), Sender: localSends}
	sum.Bytes, sum.BitsPerSecond = sent.Bytes, sent.BitsPerSecond
	return sum, sent, recv
}

// endJSON is the end section.
func (v *testView) endJSON() *jsonEnd {
	end := &jsonEnd{Streams: []jsonEndStream{}}
	pairs := v.pairs()
	for _, p := range pairs {
		end.Streams = append(end.Streams, v.endStream(p))
	}
	main, rev := v.splitPairs(pairs)
	end.Sum, end.SumSent, end.SumReceived = v.endSums(main)
	end.SumBidirReverse, end.SumSentBidirReverse, end.SumReceivedBidirReverse = v.endSums(rev)
	mainSends := len(main) > 0 && main[0].sending
	end.CPU = &jsonCPU{
		HostTotal: v.localCPU.Total, HostUser: v.localCPU.User, HostSystem: v.localCPU.System,
		RemoteTotal: v.remoteCPU.Total, RemoteUser: v.remoteCPU.User, RemoteSystem: v.remoteCPU.System,
	}
	if mainSends {
		end.SenderCongestion, end.ReceiverCongestion = v.localCong, v.remoteCong
	} else {
		end.SenderCongestion, end.ReceiverCongestion = v.remoteCong, v.localCong
	}
	end.WPerf = v.endWPerf()
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
	if v.req != nil {
		doc.ExtraData = v.req.ExtraData
	}
	return doc
}

func (v *testView) intervalCount() int {
	n := 0
	for _, s := range v.local {
		n = max(n, len(s.Intervals))
	}
	return n
}

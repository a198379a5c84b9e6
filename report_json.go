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

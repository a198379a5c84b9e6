package main

// proto.go defines the wperf.v1 wire protocol: the JSON messages that
// client and server exchange, and their validation. README's "Protocol"
// section describes the same thing for people writing their own clients.

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// subprotocolV1 is the Sec-WebSocket-Protocol name of this protocol. A
// change that old peers cannot follow gets a new name, so both ends can
// offer several and agree on one during the handshake.
const subprotocolV1 = "wperf.v1"

// protocolVersion is the version number every request carries; it is
// the number in subprotocolV1's name.
const protocolVersion = 1

// Message types. Every control message is one JSON text message with a
// "type" field.
const (
	msgTest      = "test"      // client → server, control: the whole test request
	msgAccept    = "accept"    // server → client, control: request accepted
	msgRefuse    = "refuse"    // server → client, control: request refused, why
	msgStream    = "stream"    // client → server, first message of each stream
	msgStart     = "start"     // server → client, control: all streams are in, go
	msgStop      = "stop"      // client → server, control: end the test early
	msgResults   = "results"   // both ways, control: one side's measurements
	msgError     = "error"     // both ways, control: the test failed, why
	msgTransport = "transport" // client → server, control: how a UDP test's datagrams travel
	msgSent      = "sent"      // both ways, control: this side's real-UDP senders are done
	msgPing      = "ping"      // client → server, first message of a probe connection (ping.go)
	msgTraceHop  = "hop"       // server → client: one reverse traceroute hop
	msgTraceEnd  = "trace_end"
	msgInterval  = "interval" // server → client, control: the server's counts of one interval, when asked (web.go)
)

// Test directions, from the client's point of view.
const (
	dirUpload   = "upload"   // client sends (iperf3's default)
	dirDownload = "download" // server sends (-R)
	dirBidir    = "bidir"    // both at once (--bidir)
)

// Stream directions, also from the client's point of view.
const (
	streamUp   = "up"
	streamDown = "down"
)

// testRequest is the one message that describes a whole test.
type testRequest struct {
	Type       string  `json:"type"`
	Version    int     `json:"version"`
	Cookie     string  `json:"cookie"`
	Direction  string  `json:"direction"`
	Protocol   string  `json:"protocol"`
	Time       float64 `json:"time"`   // seconds of measurement, after omit
	Bytes      int64   `json:"bytes"`  // per direction, instead of time
	Blocks     int64   `json:"blocks"` // per direction, instead of time or bytes
	Length     int     `json:"length"` // message payload size
	Parallel   int     `json:"parallel"`
	Omit       float64 `json:"omit"`
	Interval   float64 `json:"interval"`
	Window     int     `json:"window,omitempty"`
	NoDelay    bool    `json:"no_delay,omitempty"`
	Congestion string  `json:"congestion,omitempty"`
	MSS        int     `json:"mss,omitempty"`
	// Rate is the target per sending stream in bits/s (-b); 0 is
	// unpaced. A TCP test's senders keep to it too, since wperf 0.1.
	Rate float64 `json:"rate,omitempty"`
	// FQRate caps the kernel's pacing of each sending TCP stream, bits/s
	// (--fq-rate; Linux SO_MAX_PACING_RATE, bytes/s = FQRate/8).
	FQRate float64 `json:"fq_rate,omitempty"`
	// TOS is the IP TOS byte (IPv6 traffic class) of the streams (-S,
	// --dscp); 0 leaves the system's.
	TOS int `json:"tos,omitempty"`
	// ExtraData is --extra-data: both ends put it in their JSON output.
	ExtraData string `json:"extra_data,omitempty"`
	// UDPTransport is how a UDP test's datagrams may travel: "udp",
	// "ws", or "auto" (UDP when the path lets it through; also "").
	UDPTransport string `json:"udp_transport,omitempty"`
	ZeroCopy     bool   `json:"zerocopy,omitempty"` // senders hand the kernel pool pages, not copies (-Z)
	// ServerOutput asks for the server's own report: "text" or "json".
	ServerOutput string `json:"server_output,omitempty"`
	Client       string `json:"client,omitempty"` // software and version, for logs
	// Latency says the client probes latency during the test (latency.go).
	Latency *latencyRequest `json:"latency,omitempty"`
	// NotSentLowat caps the unsent bytes in each sending stream's socket
	// (Linux TCP_NOTSENT_LOWAT), so less of the test waits in the sender.
	NotSentLowat int `json:"notsent_lowat,omitempty"`
	// Progress asks the server to report each interval's counts on the
	// control connection as it closes: a browser page shows the upload
	// the server received, which only the server knows (web.go).
	Progress bool `json:"progress,omitempty"`
	// OmitMark offers to end -O's omitted period with a mark inside each
	// stream rather than on each end's clock (stream.go, markOmitEnd).
	OmitMark bool `json:"omit_mark,omitempty"`
}

// Bounds of a test request, shared by the client's option checks and the
// server's request checks.
const (
	maxLength   = 16 << 20 // the largest message a test may ask for
	maxParallel = 128      // streams per direction
	minInterval = 0.1      // seconds between interval reports, as iperf3 allows
	// maxNotSentLowat bounds --notsent-lowat: beyond it the cap caps nothing.
	maxNotSentLowat = 1 << 30
)

// Limits of the control channel.
const (
	// maxControlMessage is the largest control message either side
	// accepts, and so the smallest message limit of any connection.
	maxControlMessage = 1 << 20
	// maxFirstMessage is the server's limit before a connection's first
	// message says what it is: every first message is small, and a
	// stranger gets no more memory than this from us.
	maxFirstMessage = 64 << 10
	// maxReportMessage is the client's limit for control messages: the
	// server's results may carry its whole report of a long test
	// (--get-server-output).
	maxReportMessage = 64 << 20
	// streamJoinTimeout bounds how long a test waits for all its streams.
	streamJoinTimeout = 10 * time.Second
)

// check validates a request against the protocol's own bounds (the
// server's configured caps come on top).
func (req *testRequest) check() error {
	switch {
	case req.Version != protocolVersion:
		return fmt.Errorf("protocol version %d is not supported (this server speaks %d)", req.Version, protocolVersion)
	case len(req.Cookie) < 16 || len(req.Cookie) > 64:
		return errors.New("cookie must be 16 to 64 characters")
	case req.Direction != dirUpload && req.Direction != dirDownload && req.Direction != dirBidir:
		return fmt.Errorf("unknown direction %q", req.Direction)
	case req.Protocol != "tcp" && req.Protocol != "udp":
		return fmt.Errorf("protocol %q is not supported", req.Protocol)
	case req.Length < 1 || req.Length > maxLength:
		return fmt.Errorf("length %d out of range 1..%d", req.Length, maxLength)
	case req.udp() && (req.Length < minDatagram || req.Length > maxDatagram):
		return fmt.Errorf("a UDP datagram of %d bytes is out of range %d..%d", req.Length, minDatagram, maxDatagram)
	case req.udp() && req.UDPTransport != "" && req.UDPTransport != "auto" && req.UDPTransport != "udp" && req.UDPTransport != "ws":
		return fmt.Errorf("unknown udp_transport %q", req.UDPTransport)
	case !(req.Rate >= 0 && req.Rate <= maxRate):
		return fmt.Errorf("rate %g out of range 0..%g", req.Rate, maxRate)
	case !(req.FQRate >= 0 && req.FQRate <= maxRate):
		return fmt.Errorf("fq_rate %g out of range 0..%g", req.FQRate, maxRate)
	case req.TOS < 0 || req.TOS > 255:
		return fmt.Errorf("tos %d out of range 0..255", req.TOS)
	case len(req.ExtraData) > maxExtraData:
		return fmt.Errorf("extra_data longer than %d bytes", maxExtraData)
	case req.Parallel < 1 || req.Parallel > maxParallel:
		return fmt.Errorf("parallel %d out of range 1..%d", req.Parallel, maxParallel)
	case req.Bytes < 0 || req.Blocks < 0 || req.Omit < 0 || req.Interval < 0 || req.Window < 0 || req.MSS < 0:
		return errors.New("negative bytes, blocks, omit, interval, window or mss")
	case req.NotSentLowat < 0 || req.NotSentLowat > maxNotSentLowat:
		return fmt.Errorf("notsent_lowat %d out of range 0..%d", req.NotSentLowat, maxNotSentLowat)
	case req.Blocks > math.MaxInt64/int64(req.Length):
		return errors.New("blocks × length overflows")
	case req.Interval != 0 && req.Interval < minInterval:
		return fmt.Errorf("interval %g s is below %g s", req.Interval, minInterval)
	case req.Bytes == 0 && req.Blocks == 0 && !(req.Time > 0):
		return errors.New("a test needs a time, bytes or blocks")
	case req.Time > 1e9 || req.Omit > 1e9:
		return errors.New("time out of range")
	case req.ServerOutput != "" && req.ServerOutput != "text" && req.ServerOutput != "json":
		return fmt.Errorf("unknown server_output %q", req.ServerOutput)
	}
	return req.Latency.check(req.Omit)
}

// udp tells a UDP test from a TCP one.
func (req *testRequest) udp() bool { return req.Protocol == "udp" }

// byteTarget is how many bytes each direction sends, or 0 for a timed test.
func (req *testRequest) byteTarget() int64 {
	if req.Blocks > 0 {
		return req.Blocks * int64(req.Length)
	}
	return req.Bytes
}

// plannedSeconds is how long the test is meant to run, the omitted
// period included; a sized test's length depends on the path, so only its
// omitted period is planned.
func (req *testRequest) plannedSeconds() float64 {
	if req.byteTarget() > 0 {
		return req.Omit
	}
	return req.Omit + req.Time
}

// hardStop is when a run of this test ends whatever happens: one idle
// timeout past a timed test's plan, and never later than limit.
func (req *testRequest) hardStop(idle, limit time.Duration) time.Duration {
	if req.byteTarget() > 0 {
		return limit
	}
	return min(limit, seconds2dur(req.plannedSeconds())+idle)
}

// streamCount is how many stream connections the test uses: one per
// parallel stream and direction.
func (req *testRequest) streamCount() int {
	if req.Direction == dirBidir {
		return 2 * req.Parallel
	}
	return req.Parallel
}

// acceptMsg answers an accepted request.
type acceptMsg struct {
	Type    string `json:"type"`
	Version int    `json:"version"`
	Server  string `json:"server"` // software and version
	Cookie  string `json:"cookie"`
	// UDP offers real UDP to a UDP test whose transport allows it.
	UDP *udpOffer `json:"udp,omitempty"`
	// Latency: the server answers the latency probes the request announced.
	Latency bool `json:"latency,omitempty"`
	// Via is the forwarding header of the request (X-Forwarded-For: ...,
	// Via: ...) when a reverse proxy stands in front of the server.
	Via string `json:"via,omitempty"`
	// Client is the client's address as the server sees it, for a
	// page that asked for progress (a browser cannot know it otherwise).
	Client string `json:"client,omitempty"`
	// OmitMark: the server takes the request's omit_mark offer; both
	// ends' senders mark the omit's end and their receivers count from it.
	OmitMark bool `json:"omit_mark,omitempty"`
}

// udpOffer is where a UDP test's datagrams may go, and the session's
// secret that the client's hellos must carry (udp_net.go).
type udpOffer struct {
	Port   int    `json:"port"`
	Secret string `json:"secret"` // 32 hex digits
}

// sentMsg tells the peer that this side's real-UDP senders are done,
// which is how its receivers know to drain and stop.
func sentMsg() map[string]string { return map[string]string{"type": msgSent} }

// transportMsg is the client's choice for a UDP test, after its hellos:
// "udp" when every stream's hello was answered, else "websocket", with
// the reason, and the streams then join as WebSocket connections.
type transportMsg struct {
	Type      string `json:"type"`
	Transport string `json:"transport"`
	Reason    string `json:"reason,omitempty"`
}

// refuseMsg answers a refused request or reports a failed test; the
// server closes the control connection after it.
type refuseMsg struct {
	Type  string `json:"type"`
	Error string `json:"error"`
}

// streamHello is the first message on each stream connection: it ties
// the connection to its test. ID is the client's label for the stream.
type streamHello struct {
	Type      string `json:"type"`
	Cookie    string `json:"cookie"`
	ID        int    `json:"id"`
	Direction string `json:"direction"`
}

// startMsg tells the client that every stream is connected and the
// server's clock is running.
type startMsg struct {
	Type string `json:"type"`
}

// resultsMsg carries one side's measurements at the end of a test. The
// client sends its own first; the server answers with its own.
type resultsMsg struct {
	Type       string         `json:"type"`
	Streams    []streamResult `json:"streams"`
	CPU        cpuPercent     `json:"cpu"`
	Congestion string         `json:"congestion,omitempty"`
	// The server's report of the test, when the client asked for it.
	ServerText string          `json:"server_output_text,omitempty"`
	ServerJSON json.RawMessage `json:"server_output_json,omitempty"`
	// Latency is the client's latency summary, for the server's report.
	Latency *latencyReport `json:"latency,omitempty"`
}

// streamResult is one stream as one side measured it.
type streamResult struct {
	ID      int        `json:"id"`
	Sender  bool       `json:"sender"` // this side sent on it
	Bytes   int64      `json:"bytes"`  // after the omitted period
	Seconds float64    `json:"seconds"`
	End     float64    `json:"end"`
	TCP     *tcpTotals `json:"tcp,omitempty"` // sender side, where TCP_INFO exists
	UDP     *udpCounts `json:"udp,omitempty"` // UDP tests
	// Intervals stay with the side that measured them: the results sent
	// to the peer leave them out (the server's own report, when asked
	// for, carries its intervals).
	Intervals []interval `json:"intervals,omitempty"`
}

// interval is one stream's traffic over one reporting period.
type interval struct {
	Start   float64      `json:"start"`
	End     float64      `json:"end"`
	Bytes   int64        `json:"bytes"`
	Omitted bool         `json:"omitted,omitempty"`
	TCP     *tcpSnapshot `json:"tcp,omitempty"`
	UDP     *udpCounts   `json:"udp,omitempty"`
}

// udpCounts are a UDP stream's datagrams as one side saw them: what a
// sender sent (and, over WebSocket, dropped because the connection had
// backed up); what a receiver got, lost, got out of order or twice, and
// the jitter at the end of the span.
type udpCounts struct {
	Packets    int64   `json:"packets"`
	Lost       int64   `json:"lost,omitempty"`
	OutOfOrder int64   `json:"out_of_order,omitempty"`
	Duplicates int64   `json:"duplicates,omitempty"`
	Dropped    int64   `json:"dropped,omitempty"`
	JitterMs   float64 `json:"jitter_ms,omitempty"`
}

// tcpSnapshot is what TCP_INFO says at the end of an interval. Times are
// in microseconds, as iperf3 reports them.
type tcpSnapshot struct {
	Retransmits int64 `json:"retransmits"` // during the interval
	SndCwnd     int64 `json:"snd_cwnd"`    // bytes
	SndWnd      int64 `json:"snd_wnd"`
	RTT         int64 `json:"rtt"`
	RTTVar      int64 `json:"rttvar"`
	PMTU        int64 `json:"pmtu"`
}

// tcpTotals sums TCP_INFO over the measured period.
type tcpTotals struct {
	Retransmits int64 `json:"retransmits"`
	MaxSndCwnd  int64 `json:"max_snd_cwnd"`
	MaxSndWnd   int64 `json:"max_snd_wnd"`
	MaxRTT      int64 `json:"max_rtt"`
	MinRTT      int64 `json:"min_rtt"`
	MeanRTT     int64 `json:"mean_rtt"`
}

// cpuPercent is a process's CPU use over a test, as a share of wall time.
type cpuPercent struct {
	Total  float64 `json:"total"`
	User   float64 `json:"user"`
	System float64 `json:"system"`
}

// newCookie returns a random session cookie: 32 characters of base32.
func newCookie() string {
	var raw [20]byte
	rand.Read(raw[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(raw[:]))
}

// messageType reads only the "type" field of a control message.
func messageType(b []byte) (string, error) {
	var m struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("bad control message: %w", err)
	}
	if m.Type == "" {
		return "", errors.New("control message without a type")
	}
	return m.Type, nil
}

// errBadControl marks a control message that breaks the protocol: not a
// JSON text message with a type, or a message of the right type in the
// wrong shape. The server answers it at once with 1008.
var errBadControl = errors.New("bad control message")

// refusal turns a server's refuse or error message into an error.
func refusal(msg []byte) error {
	return fmt.Errorf("server refused the test: %s", peerReason(msg))
}

// peerReason is the "error" text of a refuse or error message, made safe
// to print: it comes from the network.
func peerReason(msg []byte) string {
	var ref refuseMsg
	json.Unmarshal(msg, &ref)
	return cleanText(ref.Error, maxControlPayload*4)
}

// refuse tells the client why and closes the control connection.
func refuse(c *wsConn, code statusCode, why string) {
	sendJSON(c, refuseMsg{Type: msgRefuse, Error: why})
	c.Close(code, shortReason(errors.New(why)))
}

// sendJSON writes one control message within closeWait. The deadline goes
// when the write is done: the connection may idle long after, and a pong
// written then must not meet a deadline long past. Several goroutines
// send on one control connection (progress, results, goodbye), so the
// bound is set and lifted under the connection's write lock.
func sendJSON(c *wsConn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteMessageWithin(opText, b, closeWait)
}

// controlType is the type of a control message as read, op and all: the
// protocol's messages are JSON text (RFC 6455 §5.6).
func controlType(op opcode, msg []byte) (string, error) {
	if op != opText {
		return "", fmt.Errorf("%w: a binary message; control messages are JSON text", errBadControl)
	}
	kind, err := messageType(msg)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errBadControl, err)
	}
	return kind, nil
}

// readControlMessage reads one control message within timeout and
// returns it with its type.
func readControlMessage(c *wsConn, timeout time.Duration) ([]byte, string, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	op, msg, err := c.ReadMessage(nil)
	if err != nil {
		return nil, "", err
	}
	kind, err := controlType(op, msg)
	return msg, kind, err
}

// controlWatch follows a test's control connection while the test runs,
// on either end: the peer may ask to stop early, report that the test
// failed, vanish, or send its results, which end the watch.
type controlWatch struct {
	results chan *resultsMsg // the peer's results, at most once
	failed  chan error       // why the test cannot end normally, at most once
}

// controlEvents are what a watch does when the peer speaks during a
// test. stop (the peer asks this end to stop sending) and sent (the
// peer's senders are done) may be nil; fail ends this end's run before a
// failure is reported.
type controlEvents struct {
	stop, sent, fail func()
}

// watchControl starts following c for at most wait. peer names the other
// end in errors ("the server").
func watchControl(c *wsConn, wait time.Duration, peer string, on controlEvents) *controlWatch {
	w := &controlWatch{results: make(chan *resultsMsg, 1), failed: make(chan error, 1)}
	c.SetReadDeadline(time.Now().Add(wait))
	go w.follow(c, peer, on)
	return w
}

func (w *controlWatch) follow(c *wsConn, peer string, on controlEvents) {
	for {
		op, msg, err := c.ReadMessage(nil)
		if err != nil {
			on.fail()
			w.failed <- fmt.Errorf("lost %s: %w", peer, err)
			return
		}
		kind, err := controlType(op, msg)
		if err != nil {
			on.fail()
			w.failed <- fmt.Errorf("from %s: %w", peer, err)
			return
		}
		switch kind {
		case msgStop:
			if on.stop != nil {
				on.stop()
			}
		case msgSent:
			if on.sent != nil {
				on.sent()
			}
		case msgResults:
			// Results mean the peer's senders are done, whether or not
			// it said so first.
			if on.sent != nil {
				on.sent()
			}
			var res resultsMsg
			if err := json.Unmarshal(msg, &res); err != nil {
				on.fail()
				w.failed <- fmt.Errorf("%w: results from %s: %w", errBadControl, peer, err)
				return
			}
			w.results <- &res
			return
		case msgRefuse, msgError:
			on.fail()
			w.failed <- fmt.Errorf("%s ended the test: %s", peer, peerReason(msg))
			return
		}
	}
}

// seconds2dur turns the seconds that options and requests carry into a
// time.Duration.
func seconds2dur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

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
	msgTest     = "test"    // client → server, control: the whole test request
	msgAccept   = "accept"  // server → client, control: request accepted
	msgRefuse   = "refuse"  // server → client, control: request refused, why
	msgStream   = "stream"  // client → server, first message of each stream
	msgStart    = "start"   // server → client, control: all streams are in, go
	msgStop     = "stop"    // client → server, control: end the test early
	msgResults  = "results" // both ways, control: one side's measurements
	msgError    = "error"   // both ways, control: the test failed, why
	msgTraceHop = "hop"     // server → client: one reverse traceroute hop
	msgTraceEnd = "trace_end"
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
	ZeroCopy   bool    `json:"zerocopy,omitempty"` // senders hand the kernel pool pages, not copies (-Z)
	// ServerOutput asks for the server's own report: "text" or "json".
	ServerOutput string `json:"server_output,omitempty"`
	Client       string `json:"client,omitempty"` // software and version, for logs
}

// Bounds of a test request, shared by the client's option checks and the
// server's request checks.
const (
	maxLength   = 16 << 20 // the largest message a test may ask for
	maxParallel = 128      // streams per direction
	minInterval = 0.1      // seconds between interval reports, as iperf3 allows
)

// Limits of the control channel.
const (
	// maxControlMessage is the largest control message either side
	// accepts, and so the smallest message limit of any connection.
	maxControlMessage = 1 << 20
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
	case req.Protocol != "tcp":
		return fmt.Errorf("protocol %q is not supported", req.Protocol)
	case req.Length < 1 || req.Length > maxLength:
		return fmt.Errorf("length %d out of range 1..%d", req.Length, maxLength)
	case req.Parallel < 1 || req.Parallel > maxParallel:
		return fmt.Errorf("parallel %d out of range 1..%d", req.Parallel, maxParallel)
	case req.Bytes < 0 || req.Blocks < 0 || req.Omit < 0 || req.Interval < 0 || req.Window < 0 || req.MSS < 0:
		return errors.New("negative bytes, blocks, omit, interval, window or mss")
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
	return nil
}

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
}

// streamResult is one stream as one side measured it.
type streamResult struct {
	ID      int        `json:"id"`
	Sender  bool       `json:"sender"` // this side sent on it
	Bytes   int64      `json:"bytes"`  // after the omitted period
	Seconds float64    `json:"seconds"`
	End     float64    `json:"end"`
	TCP     *tcpTotals `json:"tcp,omitempty"` // sender side, where TCP_INFO exists
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

func sendJSON(c *wsConn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(closeWait))
	return c.WriteMessage(opText, b)
}

// readControlMessage reads one control message within timeout and
// returns it with its type.
func readControlMessage(c *wsConn, timeout time.Duration) ([]byte, string, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, msg, err := c.ReadMessage(nil)
	if err != nil {
		return nil, "", err
	}
	kind, err := messageType(msg)
	return msg, kind, err
}

// controlWatch follows a test's control connection while the test runs,
// on either end: the peer may ask to stop early, report that the test
// failed, vanish, or send its results, which end the watch.
type controlWatch struct {
	results chan *resultsMsg // the peer's results, at most once
	failed  chan error       // why the test cannot end normally, at most once
}

// watchControl starts following c for at most wait. peer names the other
// end in errors ("the server"). onStop, if set, runs when the peer asks to
// stop early; onFail runs before a failure is reported, to end this end's
// run.
func watchControl(c *wsConn, wait time.Duration, peer string, onStop, onFail func()) *controlWatch {
	w := &controlWatch{results: make(chan *resultsMsg, 1), failed: make(chan error, 1)}
	c.SetReadDeadline(time.Now().Add(wait))
	go w.follow(c, peer, onStop, onFail)
	return w
}

func (w *controlWatch) follow(c *wsConn, peer string, onStop, onFail func()) {
	for {
		_, msg, err := c.ReadMessage(nil)
		if err != nil {
			onFail()
			w.failed <- fmt.Errorf("lost %s: %w", peer, err)
			return
		}
		kind, _ := messageType(msg)
		switch kind {
		case msgStop:
			if onStop != nil {
				onStop()
			}
		case msgResults:
			var res resultsMsg
			if err := json.Unmarshal(msg, &res); err != nil {
				w.failed <- fmt.Errorf("bad results from %s: %w", peer, err)
				return
			}
			w.results <- &res
			return
		case msgRefuse, msgError:
			onFail()
			w.failed <- fmt.Errorf("%s ended the test: %s", peer, peerReason(msg))
			return
		}
	}
}

// seconds2dur turns the seconds that options and requests carry into a
// time.Duration.
func seconds2dur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

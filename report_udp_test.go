package main

// report_udp_test.go renders hand-built UDP test views as text and as -J
// documents and compares them with golden files in testdata/report_udp
// (go test -run UDPReport -update-udp rewrites them). Each document must
// also hold every key path of iperf3 3.12's matching UDP output, and
// where a view mirrors that output's test, the same counts and flags.

import (
	"bytes"
	"encoding/json"
	"flag"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateUDPGolden = flag.Bool("update-udp", false, "rewrite the golden files in testdata/report_udp")

// udpRepFlow is one stream of a hand-built UDP test as both ends counted
// it, interval by interval.
type udpRepFlow struct {
	id       int
	upstream bool      // the client sends
	sent     []int64   // the sender's datagrams
	dropped  []int64   // the WebSocket sender's drops; nil for none
	got      []int64   // the receiver's datagrams
	lost     []int64   // the receiver's loss; negative where late ones came
	jitter   []float64 // the receiver's jitter at each interval's end, ms
	ooo, dup int64     // over the whole test
}

// udpRepTest is a UDP test to render, from the client's side or the
// server's.
type udpRepTest struct {
	dir          string
	parallel     int
	server       bool
	rate         float64
	udpTransport string // auto, udp or ws
	transport    string // what the engine chose
	reason       string
	omitted      *udpRepFlow // counts for one omitted interval before the rest
	noPeer       bool        // the peer's results never came
	verbose      bool
	flows        []udpRepFlow
}

const udpRepLength = 32768 // as in iperf3's reference runs

// The times of iperf3's reference run (udp.json): two intervals, the
// sender's end, the receiver's.
var (
	udpRepEdges     = []float64{0, 1.000068, 2.000103}
	udpRepSenderEnd = 2.000103
	udpRepRecvEnd   = 2.003806
)

func (c udpRepTest) request() *testRequest {
	req := &testRequest{
		Type: "request", Version: protocolVersion, Cookie: "at7453pihvhailg4xbmirfpblzzknihxt6oy",
		Direction: c.dir, Protocol: "udp", Time: 2, Length: udpRepLength, Parallel: c.parallel,
		Interval: 1, Rate: c.rate, UDPTransport: c.udpTransport, Client: software,
	}
	if c.omitted != nil {
		req.Omit = 1
	}
	return req
}

// view is the test as its side reports it once finished.
func (c udpRepTest) view() *testView {
	v := &testView{
		req: c.request(), isServer: c.server, peerHost: "127.0.0.1", peerPort: 5411,
		localCPU:  cpuPercent{Total: 3.24, User: 3.24},
		remoteCPU: cpuPercent{Total: 0.15, User: 0.15},
		started:   time.Unix(1795921467, 0), serverVer: software,
		sockInfo:  socketInfo{sndbuf: 212992, rcvbuf: 212992},
		transport: c.transport, transportReason: c.reason,
	}
	if !c.server {
		v.url = "ws://127.0.0.1:5411/"
	}
	for _, f := range c.flows {
		localSends := f.upstream != c.server
		s, r := f.sender(c.omitted), f.receiver(c.omitted)
		local, remote := r, s
		if localSends {
			local, remote = s, r
		}
		remote.Intervals = nil
		v.local = append(v.local, local)
		if !c.noPeer {
			v.remote = append(v.remote, remote)
		}
		v.conns = append(v.conns, c.conn(f.id))
	}
	return v
}

func (c udpRepTest) conn(id int) connInfo {
	mine := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53600 + id}
	theirs := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5411}
	if c.server {
		mine, theirs = theirs, mine
	}
	return connInfo{id: id, local: mine, remote: theirs}
}

// intervals are a flow's measured intervals, after the omitted one when
// there is one; at makes each interval's counts.
func (f udpRepFlow) intervals(omitted *udpRepFlow, at func(f udpRepFlow, k int) (int64, *udpCounts)) []interval {
	var ivs []interval
	if omitted != nil {
		bytes, counts := at(*omitted, 0)
		ivs = append(ivs, interval{Start: 0, End: 1, Bytes: bytes, Omitted: true, UDP: counts})
	}
	for k := range f.sent {
		bytes, counts := at(f, k)
		ivs = append(ivs, interval{Start: udpRepEdges[k], End: udpRepEdges[k+1], Bytes: bytes, UDP: counts})
	}
	return ivs
}

func (f udpRepFlow) sender(omitted *udpRepFlow) streamResult {
	total := &udpCounts{}
	for k := range f.sent {
		total.Packets += f.sent[k]
		total.Dropped += f.drop(k)
	}
	ivs := f.intervals(omitted, func(f udpRepFlow, k int) (int64, *udpCounts) {
		return f.sent[k] * udpRepLength, &udpCounts{Packets: f.sent[k], Dropped: f.drop(k)}
	})
	return streamResult{ID: f.id, Sender: true, Bytes: total.Packets * udpRepLength,
		Seconds: udpRepSenderEnd, End: udpRepSenderEnd, UDP: total, Intervals: ivs}
}

func (f udpRepFlow) drop(k int) int64 {
	if f.dropped == nil {
		return 0
	}
	return f.dropped[k]
}

func (f udpRepFlow) receiver(omitted *udpRepFlow) streamResult {
	total := &udpCounts{OutOfOrder: f.ooo, Duplicates: f.dup, JitterMs: f.jitter[len(f.jitter)-1]}
	for k := range f.got {
		total.Packets += f.got[k]
		total.Lost += f.lost[k]
	}
	ivs := f.intervals(omitted, func(f udpRepFlow, k int) (int64, *udpCounts) {
		c := &udpCounts{Packets: f.got[k], Lost: f.lost[k], JitterMs: f.jitter[k]}
		if k == len(f.got)-1 {
			c.OutOfOrder, c.Duplicates = f.ooo, f.dup
		}
		return f.got[k] * udpRepLength, c
	})
	return streamResult{ID: f.id, Bytes: total.Packets * udpRepLength,
		Seconds: udpRepRecvEnd, End: udpRepRecvEnd, UDP: total, Intervals: ivs}
}

// udpRepClean is a flow with no loss, as in iperf3's reference runs at
// 10 Mbit/s.
func udpRepClean(id int, upstream bool, jitter ...float64) udpRepFlow {
	return udpRepFlow{id: id, upstream: upstream, sent: []int64{39, 38}, got: []int64{39, 38}, lost: []int64{0, 0}, jitter: jitter}
}

// udpRepLate is a download with loss: datagram 20 of 80 comes late, in
// the second interval, so the first counts it lost and the second takes
// it back (lost -1) as out of order. One datagram comes twice. The last 3
// never come, which only the server's count of 80 reveals.
var udpRepLate = udpRepFlow{id: 5, sent: []int64{40, 40}, got: []int64{39, 38}, lost: []int64{1, -1},
	jitter: []float64{0.159, 1.234}, ooo: 1, dup: 1}

// udpRepCases are the golden tests. ref names the iperf3 output whose key
// paths each document must have, and mirrored says the view repeats that
// run, so its counts and flags must match too.
var udpRepCases = []struct {
	name     string
	test     udpRepTest
	ref      string
	mirrored bool
}{
	{"upload", udpRepTest{dir: dirUpload, parallel: 1, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{udpRepClean(5, true, 0.004, 0.0102)}}, "udp.json", true},
	{"upload-server", udpRepTest{dir: dirUpload, parallel: 1, server: true, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{udpRepClean(5, true, 0.004, 0.0102)}}, "", false},
	{"reverse", udpRepTest{dir: dirDownload, parallel: 1, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{udpRepClean(5, false, 0.159, 0.054)}}, "udp-reverse.json", true},
	{"reverse-server", udpRepTest{dir: dirDownload, parallel: 1, server: true, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{udpRepClean(5, false, 0.159, 0.054)}}, "", false},
	{"bidir", udpRepTest{dir: dirBidir, parallel: 1, rate: 10e6, udpTransport: "udp", transport: "udp",
		flows: []udpRepFlow{udpRepClean(5, true, 0.02, 0.0286), udpRepClean(7, false, 0.0996, 0.035)}}, "udp-bidir.json", true},
	{"parallel2", udpRepTest{dir: dirUpload, parallel: 2, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{udpRepClean(5, true, 0.01, 0.0156), udpRepClean(7, true, 0.02, 0.0205)}}, "udp-parallel2.json", true},
	{"bidir-parallel2", udpRepTest{dir: dirBidir, parallel: 2, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{
			udpRepClean(5, true, 0.02, 0.0286), udpRepClean(7, true, 0.01, 0.0154),
			{id: 9, sent: []int64{39, 38}, got: []int64{37, 38}, lost: []int64{2, 0}, jitter: []float64{0.0996, 0.035}},
			udpRepClean(11, false, 0.05, 0.045),
		}}, "udp-bidir.json", false},
	{"omitted", udpRepTest{dir: dirUpload, parallel: 1, rate: 10e6, udpTransport: "auto", transport: "udp", verbose: true,
		omitted: &udpRepFlow{sent: []int64{40}, got: []int64{40}, lost: []int64{0}, jitter: []float64{0.2}},
		flows:   []udpRepFlow{udpRepClean(5, true, 0.004, 0.0102)}}, "udp.json", false},
	{"reverse-loss", udpRepTest{dir: dirDownload, parallel: 1, rate: 10e6, udpTransport: "auto", transport: "udp",
		flows: []udpRepFlow{udpRepLate}}, "udp-reverse.json", false},
	{"reverse-no-server-results", udpRepTest{dir: dirDownload, parallel: 1, rate: 10e6, udpTransport: "auto", transport: "udp",
		noPeer: true, flows: []udpRepFlow{udpRepLate}}, "", false},
	{"websocket-drops", udpRepTest{dir: dirUpload, parallel: 1, rate: 100e6, udpTransport: "auto", transport: "websocket",
		reason: "no answer to UDP hellos within 2s",
		flows: []udpRepFlow{{id: 5, upstream: true, sent: []int64{370, 380}, dropped: []int64{12, 2}, got: []int64{370, 380},
			lost: []int64{12, 2}, jitter: []float64{0.9, 0.7}}}}, "udp.json", false},
	{"websocket-chosen-server", udpRepTest{dir: dirUpload, parallel: 1, server: true, rate: 0, udpTransport: "ws", transport: "websocket",
		reason: "--udp-transport ws", flows: []udpRepFlow{udpRepClean(5, true, 0.3, 0.25)}}, "", false},
}

// TestUDPReportGolden renders every case and compares it with its golden
// files.
func TestUDPReportGolden(t *testing.T) {
	for _, tc := range udpRepCases {
		t.Run(tc.name, func(t *testing.T) {
			udpRepGolden(t, tc.name+".txt", udpRepText(tc.test))
			udpRepGolden(t, tc.name+".json", udpRepJSON(t, tc.test.view()))
		})
	}
}

// TestUDPReportKeyPaths checks each document against iperf3's: every key
// path must be there, and a view that repeats iperf3's run must state
// the same counts and flags in the same places.
func TestUDPReportKeyPaths(t *testing.T) {
	for _, tc := range udpRepCases {
		if tc.ref == "" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			doc := e2eDecode(t, string(udpRepJSON(t, tc.test.view())))
			e2eHasReferenceKeys(t, doc, tc.ref, "")
			if tc.mirrored {
				udpRepSameFacts(t, doc, e2eReference(t, tc.ref))
			}
		})
	}
}

// udpRepFacts are the keys whose values say which side's numbers went
// where; times and rates come from the clock and are left out.
var udpRepFacts = map[string]bool{
	"socket": true, "bytes": true, "packets": true, "lost_packets": true, "out_of_order": true,
	"sender": true, "omitted": true, "protocol": true, "num_streams": true, "blksize": true,
	"reverse": true, "target_bitrate": true,
}

// udpRepSameFacts compares every fact of ref, by its exact path, with doc.
func udpRepSameFacts(t *testing.T, doc, ref any) {
	t.Helper()
	var walk func(r any, at string)
	walk = func(r any, at string) {
		switch x := r.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, at+"."+k)
			}
		case []any:
			for i, e := range x {
				walk(e, at+"."+strconv.Itoa(i))
			}
		default:
			if !udpRepFacts[at[strings.LastIndexByte(at, '.')+1:]] {
				return
			}
			got, ok := udpRepAt(doc, at[1:])
			if !ok || got != r && !udpRepSameNumber(got, r) {
				t.Errorf("%s: ours %v, iperf3's %v", at, got, r)
			}
		}
	}
	walk(ref, "")
}

// udpRepAt follows a dotted path whose numbers index arrays.
func udpRepAt(v any, path string) (any, bool) {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[k]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func udpRepSameNumber(a, b any) bool {
	x, ok1 := a.(json.Number)
	y, ok2 := b.(json.Number)
	if !ok1 || !ok2 {
		return false
	}
	f, _ := x.Float64()
	g, _ := y.Float64()
	return f == g
}

// TestUDPReportLogLine checks what the server's log line adds for UDP.
func TestUDPReportLogLine(t *testing.T) {
	cases := map[string]string{
		"upload-server":           " transport=udp lost=0/77 (0%) jitter=0.010 ms",
		"websocket-chosen-server": " transport=websocket lost=0/77 (0%) jitter=0.250 ms",
		"reverse-loss":            " transport=udp lost=3/80 (3.8%) jitter=1.234 ms",
	}
	for _, tc := range udpRepCases {
		want, ok := cases[tc.name]
		if !ok {
			continue
		}
		if got := tc.test.view().logUDP(); got != want {
			t.Errorf("%s: log adds %q, want %q", tc.name, got, want)
		}
	}
	tcp := udpRepCases[0].test.view()
	tcp.req.Protocol = "tcp"
	if got := tcp.logUDP(); got != "" {
		t.Errorf("a TCP test's log line gets %q", got)
	}
}

// udpRepText is the test's text: the client's live report, as the
// reporter prints it, or the server's report of it.
func udpRepText(c udpRepTest) []byte {
	v := c.view()
	if c.server {
		return []byte(v.text())
	}
	var out bytes.Buffer
	cfg := defaultConfig()
	cfg.verbose = c.verbose
	rep := newReporter(cfg, &lineWriter{w: &out})
	u, _ := url.Parse(v.url)
	rep.connecting(u, v.req)
	rep.view.transport, rep.view.transportReason = v.transport, v.transportReason
	rep.started(v.conns, v.sockInfo)
	for k := range v.intervalCount() {
		latest := make([]streamResult, len(v.local))
		for i, s := range v.local {
			latest[i] = streamResult{ID: s.ID, Sender: s.Sender, Intervals: s.Intervals[k : k+1]}
		}
		rep.intervalClosed(latest, k == v.intervalCount()-1)
	}
	rep.end(v)
	rep.finish(nil)
	text := strings.ReplaceAll(out.String(), systemInfo(), "(system info)")
	return []byte(verboseTimeRE.ReplaceAllString(text, "Time: (time)"))
}

// udpRepJSON is the test's -J document, with the host's description made
// constant.
func udpRepJSON(t *testing.T, v *testView) []byte {
	t.Helper()
	doc := v.document()
	doc.Start.SystemInfo = "Linux golden"
	b, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// udpRepGolden compares got with testdata/report_udp/name, or rewrites
// that file with -update-udp.
func udpRepGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "report_udp", name)
	if *updateUDPGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-udp to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", path, got)
	}
}

package main

// report_test.go renders fixed test views, built by hand with no sockets
// and no clocks, the way wperf prints them: the client's text report (the
// live reporter, from its first line to "wperf Done."), the server's text
// (--get-server-output's), and the -J document of either side. Each
// rendering is compared with its golden file in testdata/report; run
//
//	go test -run Golden -update
//
// to write them from the code, then read the diff. On top of the goldens,
// report_layout_test.go holds every rendering to iperf3's layout, its keys
// and its sums. formatUnits and cleanText are tested here too.

import (
	"bytes"
	"encoding/json"
	"flag"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/report from the code")

// ---- the views ----

// viewSpec describes one finished test: 3 s (after -O), reports every
// second, 128 KiB messages.
type viewSpec struct {
	dir          string // dirUpload, dirDownload or dirBidir
	parallel     int
	omit         bool   // -O 1: one omitted interval before the three measured ones
	noTCP        bool   // no TCP_INFO and no congestion algorithm, as where the system has none
	slow         bool   // a slow path: KBytes and Mbits rather than GBytes and Gbits
	serverOutput string // --get-server-output: "text" or "json"
}

const (
	reportCookie      = "fjzq3k7mxw2h5rdt6bnpya4ecsvl7uog"
	reportSenderEnd   = 3.000407 // when the senders stopped, after -O
	reportReceiverEnd = 3.000461 // when the receivers saw the last byte
	reportSkew        = 131072   // with -O: bytes in flight when the omitted period ended, counted by the sender only
)

var reportStarted = time.Date(2026, 11, 25, 17, 34, 39, 0, time.UTC)

// reportViews is the test of spec as the client and as the server report it.
func reportViews(spec viewSpec) (client, server *testView) {
	req := &testRequest{
		Type: msgTest, Version: protocolVersion, Cookie: reportCookie, Direction: spec.dir, Protocol: "tcp",
		Time: 3, Length: 128 << 10, Parallel: spec.parallel, Interval: 1,
		ServerOutput: spec.serverOutput, Client: "wperf (version)",
	}
	if spec.omit {
		req.Omit = 1
	}
	atClient, atServer := reportStreams(spec)
	clientCPU := cpuPercent{Total: 90.11, User: 0.19, System: 89.92}
	serverCPU := cpuPercent{Total: 45.58, User: 1.64, System: 43.94}
	clientCong, serverCong := "cubic", "bbr"
	if spec.noTCP {
		clientCong, serverCong = "", ""
	}
	sock := socketInfo{mss: 32768, sndbuf: 16384, rcvbuf: 131072}
	server = &testView{
		req: req, isServer: true, local: atServer, remote: withoutIntervals(atClient),
		localCPU: serverCPU, remoteCPU: clientCPU, localCong: serverCong, remoteCong: clientCong,
		conns: reportConns(atServer, 8765, 50970, true), started: reportStarted,
		peerHost: "127.0.0.1", peerPort: 50970, sockInfo: sock,
	}
	client = &testView{
		req: req, local: atClient, remote: withoutIntervals(atServer),
		localCPU: clientCPU, remoteCPU: serverCPU, localCong: clientCong, remoteCong: serverCong,
		conns: reportConns(atClient, 50970, 8765, false), started: reportStarted,
		peerHost: "127.0.0.1", peerPort: 8765, url: "ws://127.0.0.1:8765/", serverVer: "wperf (version)", sockInfo: sock,
	}
	switch spec.serverOutput {
	case "text":
		client.serverText = server.text()
	case "json":
		client.serverJSON, _ = json.Marshal(reportDocument(server))
	}
	return client, server
}

// reportStreams are the streams' results at the client and at the
// server: ids 1..P in the test's direction, P+1..2P the other way with
// --bidir.
func reportStreams(spec viewSpec) (atClient, atServer []streamResult) {
	n := spec.parallel
	if spec.dir == dirBidir {
		n *= 2
	}
	for id := 1; id <= n; id++ {
		snd, rcv := reportStream(spec, id)
		clientSends := spec.dir == dirUpload || (spec.dir == dirBidir && id <= spec.parallel)
		if clientSends {
			atClient, atServer = append(atClient, snd), append(atServer, rcv)
		} else {
			atClient, atServer = append(atClient, rcv), append(atServer, snd)
		}
	}
	return atClient, atServer
}

// reportStream is stream id at its sender and at its receiver, each with
// its own intervals; the sender's carry TCP_INFO.
func reportStream(spec viewSpec, id int) (snd, rcv streamResult) {
	base := int64(2_700_000_000)
	cwnd := int64(916762)
	if spec.slow {
		base, cwnd = 1_200_000, 14480*8
	}
	snd = streamResult{ID: id, Sender: true, Seconds: reportSenderEnd, End: reportSenderEnd}
	rcv = streamResult{ID: id, Seconds: reportReceiverEnd, End: reportReceiverEnd}
	sample := func(k int) *tcpSnapshot {
		if spec.noTCP {
			return nil
		}
		return &tcpSnapshot{Retransmits: int64((3*id + 5*k) % 7), SndCwnd: cwnd + int64(k)*65160, SndWnd: 3086336,
			RTT: int64(56 + 13*k + id), RTTVar: int64(2 + 3*k), PMTU: 65535}
	}
	if spec.omit {
		iv := interval{Start: 0, End: 1, Bytes: base/2 + int64(id)*4096, Omitted: true}
		rcv.Intervals = append(rcv.Intervals, iv)
		iv.TCP = sample(0)
		snd.Intervals = append(snd.Intervals, iv)
	}
	var tot tcpTotals
	var rtts int64
	ends := []float64{1, 2, reportSenderEnd}
	for k, end := range ends {
		bytes := base + int64(k)*base/40 - int64(id-1)*base/7
		s := interval{Start: float64(k), End: end, Bytes: bytes, TCP: sample(k + 1)}
		r := interval{Start: float64(k), End: end, Bytes: bytes}
		if k == len(ends)-1 {
			r.End = reportReceiverEnd
		}
		if spec.omit && k == 0 {
			r.Bytes -= reportSkew
		}
		snd.Intervals, rcv.Intervals = append(snd.Intervals, s), append(rcv.Intervals, r)
		snd.Bytes, rcv.Bytes = snd.Bytes+s.Bytes, rcv.Bytes+r.Bytes
		if t := s.TCP; t != nil {
			tot.Retransmits += t.Retransmits
			tot.MaxSndCwnd, tot.MaxSndWnd, tot.MaxRTT = max(tot.MaxSndCwnd, t.SndCwnd), max(tot.MaxSndWnd, t.SndWnd), max(tot.MaxRTT, t.RTT)
			if k == 0 || t.RTT < tot.MinRTT {
				tot.MinRTT = t.RTT
			}
			rtts += t.RTT
			tot.MeanRTT = rtts / int64(k+1)
		}
	}
	if !spec.noTCP {
		snd.TCP = &tot
	}
	return snd, rcv
}

// withoutIntervals is what one side sends the other: its results without
// their intervals.
func withoutIntervals(rs []streamResult) []streamResult {
	out := make([]streamResult, len(rs))
	for i, r := range rs {
		r.Intervals = nil
		out[i] = r
	}
	return out
}

// reportConns are the streams' connections on loopback: the client's
// stream k from port clientPort+k to the server's port.
func reportConns(rs []streamResult, localPort, remotePort int, isServer bool) []connInfo {
	lo := net.IPv4(127, 0, 0, 1)
	var conns []connInfo
	for _, r := range rs {
		l, rp := localPort, remotePort
		if isServer {
			rp += r.ID
		} else {
			l += r.ID
		}
		conns = append(conns, connInfo{id: r.ID, local: &net.TCPAddr{IP: lo, Port: l}, remote: &net.TCPAddr{IP: lo, Port: rp}})
	}
	return conns
}

// ---- rendering ----

// textOptions are the client options that change its text report.
type textOptions struct {
	format  byte // -f
	title   string
	verbose bool
}

// clientText is the client's text report of v, as its live reporter
// prints it: each interval as it closes, then the summary.
func clientText(t *testing.T, v *testView, opt textOptions) string {
	t.Helper()
	var out bytes.Buffer
	cfg := &config{format: opt.format, title: opt.title, verbose: opt.verbose}
	rep := newReporter(cfg, &lineWriter{w: &out, title: cfg.title})
	rep.serverVersion = v.serverVer
	u, err := url.Parse(v.url)
	if err != nil {
		t.Fatal(err)
	}
	rep.connecting(u, v.req)
	rep.started(v.conns, v.sockInfo)
	n := v.intervalCount()
	for k := range n {
		var latest []streamResult
		for _, s := range v.local {
			if k < len(s.Intervals) {
				latest = append(latest, streamResult{ID: s.ID, Sender: s.Sender, Intervals: s.Intervals[k : k+1]})
			}
		}
		rep.intervalClosed(latest, k == n-1)
	}
	rep.end(v)
	if err := rep.finish(nil); err != nil {
		t.Fatal(err)
	}
	// -V's lines that depend on the machine and the moment.
	text := strings.ReplaceAll(out.String(), systemInfo(), "(system info)")
	return verboseTimeRE.ReplaceAllString(text, "Time: (time)")
}

var verboseTimeRE = regexp.MustCompile(`Time: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT`)

// reportDocument is v's -J document with what depends on the machine and
// the release replaced: system_info and the versions.
func reportDocument(v *testView) jsonDoc {
	doc := v.document()
	doc.Start.SystemInfo = "(system info)"
	doc.Start.Version = "wperf (version)"
	if doc.Start.jsonStartDetails != nil {
		doc.Start.WPerf.Version = "(version)"
	}
	return doc
}

// golden compares got with testdata/report/name, or with -update writes it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "report", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run Golden -update writes it)", err)
	}
	if want := string(b); got != want {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range max(len(gotLines), len(wantLines)) {
			var g, w string
			if i < len(gotLines) {
				g = gotLines[i]
			}
			if i < len(wantLines) {
				w = wantLines[i]
			}
			if g != w {
				t.Errorf("%s differs from line %d:\n got  %q\n want %q\n(go test -run Golden -update rewrites it; then read the diff)\nwhole output:\n%s", path, i+1, g, w, got)
				return
			}
		}
	}
}

// ---- the cases ----

var reportCases = []struct {
	name   string
	spec   viewSpec
	server bool        // the server's report; the client's otherwise
	ref    string      // iperf3's output of the same kind, in testdata/iperf3
	text   textOptions // the client's options, for its text report
	only   string      // "text" or "json" when the other rendering adds nothing
}{
	{name: "upload", spec: viewSpec{dir: dirUpload, parallel: 1}, ref: "tcp.json"},
	{name: "reverse", spec: viewSpec{dir: dirDownload, parallel: 1}, ref: "tcp-reverse.json"},
	{name: "bidir", spec: viewSpec{dir: dirBidir, parallel: 1}, ref: "tcp-bidir.json"},
	{name: "parallel", spec: viewSpec{dir: dirUpload, parallel: 2}, ref: "tcp-p4.json"},
	{name: "reverse-parallel", spec: viewSpec{dir: dirDownload, parallel: 2}, ref: "tcp-reverse.json"},
	{name: "bidir-parallel", spec: viewSpec{dir: dirBidir, parallel: 2}, ref: "tcp-bidir.json"},
	{name: "omit", spec: viewSpec{dir: dirUpload, parallel: 2, omit: true}, ref: "tcp-p4.json"},
	{name: "no-tcp-info", spec: viewSpec{dir: dirUpload, parallel: 1, noTCP: true, slow: true}, ref: "tcp.json"},
	{name: "options", spec: viewSpec{dir: dirUpload, parallel: 2, slow: true}, text: textOptions{format: 'M', title: "lab 1", verbose: true}, only: "text"},
	{name: "server-output-text", spec: viewSpec{dir: dirUpload, parallel: 1, serverOutput: "text"}, ref: "tcp.json"},
	{name: "server-output-json", spec: viewSpec{dir: dirUpload, parallel: 1, serverOutput: "json"}, ref: "tcp-getserverjson.json", only: "json"},
	{name: "server-upload", spec: viewSpec{dir: dirUpload, parallel: 1}, server: true, ref: "server-side.json"},
	{name: "server-reverse", spec: viewSpec{dir: dirDownload, parallel: 1}, server: true, ref: "server-side.json"},
	{name: "server-bidir-parallel", spec: viewSpec{dir: dirBidir, parallel: 2}, server: true, ref: "server-side.json"},
	{name: "server-omit", spec: viewSpec{dir: dirUpload, parallel: 2, omit: true}, server: true, ref: "server-side.json"},
}

// TestReportGoldenText: each view's text report, as its golden file has
// it, and (the client's) in iperf3's layout.
func TestReportGoldenText(t *testing.T) {
	if !tcpInfoAvailable {
		t.Skip("the golden text has Linux's Retr and Cwnd columns")
	}
	for _, tc := range reportCases {
		if tc.only == "json" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			client, server := reportViews(tc.spec)
			if tc.server {
				golden(t, tc.name+".txt", server.text())
				return
			}
			out := clientText(t, client, tc.text)
			golden(t, tc.name+".txt", out)
			checkTextLayout(t, reportClientLines(t, out, tc.text.title), tc.spec.textShape())
		})
	}
}

// TestReportGoldenJSON: each view's -J document, as its golden file has
// it, with iperf3's keys, and sums that add up.
func TestReportGoldenJSON(t *testing.T) {
	for _, tc := range reportCases {
		if tc.only == "text" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			client, server := reportViews(tc.spec)
			v := client
			if tc.server {
				v = server
			}
			b, err := json.MarshalIndent(reportDocument(v), "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".json", string(b)+"\n")
			doc := e2eDecode(t, string(b))
			checkDocKeys(t, doc, tc.ref, tc.spec)
			checkDocSums(t, doc, tc.spec, tc.server)
			if tc.spec.serverOutput == "json" {
				sdoc, ok := doc["server_output_json"].(map[string]any)
				if !ok {
					t.Fatalf("server_output_json is %#v", doc["server_output_json"])
				}
				checkDocKeys(t, sdoc, "server-side.json", tc.spec)
				checkDocSums(t, sdoc, tc.spec, true)
			}
		})
	}
}

// TestReportUnnormalized: what reportDocument replaces is wperf's name and
// version, and the system's.
func TestReportUnnormalized(t *testing.T) {
	client, _ := reportViews(viewSpec{dir: dirUpload, parallel: 1})
	doc := client.document()
	if doc.Start.Version != software || doc.Start.WPerf.Version != version || doc.Start.SystemInfo != systemInfo() {
		t.Errorf("start.version %q, start.wperf.version %q, system_info %q; want %q, %q, %q",
			doc.Start.Version, doc.Start.WPerf.Version, doc.Start.SystemInfo, software, version, systemInfo())
	}
}

// ---- units and text from the network ----

// TestFormatUnits: iperf3's unit rules. Bytes count in 1024s, bits (the
// rate of bytes, times 8) in 1000s; the adaptive units stop at T; three
// significant digits, four columns.
func TestFormatUnits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    float64
		unit byte
		want string
	}{
		{0, 'A', "0.00 Bytes"},
		{1, 'A', "1.00 Bytes"},
		{9.994, 'A', "9.99 Bytes"},
		{9.995, 'A', "10.0 Bytes"},
		{99.94, 'A', "99.9 Bytes"},
		{99.95, 'A', " 100 Bytes"},
		{1023, 'A', "1023 Bytes"},
		{1024, 'A', "1.00 KBytes"},
		{1536, 'A', "1.50 KBytes"},
		{10.5 * 1024, 'A', "10.5 KBytes"},
		{1 << 20, 'A', "1.00 MBytes"},
		{8673034240, 'A', "8.08 GBytes"},
		{1 << 40, 'A', "1.00 TBytes"},
		{5 << 50, 'A', "5120 TBytes"},
		{0, 'a', "0.00 bits"},
		{124, 'a', " 992 bits"},
		{125, 'a', "1.00 Kbits"},
		{2890872000, 'a', "23.1 Gbits"},
		{125e12, 'a', "1000 Tbits"},
		{125000, 'k', "1000 Kbits"},
		{125000, 'm', "1.00 Mbits"},
		{125e6, 'g', "1.00 Gbits"},
		{125e3, 'g', "0.00 Gbits"},
		{125e9, 't', "1.00 Tbits"},
		{1 << 20, 'K', "1024 KBytes"},
		{1 << 20, 'M', "1.00 MBytes"},
		{1 << 30, 'G', "1.00 GBytes"},
		{1 << 40, 'T', "1.00 TBytes"},
		{1 << 50, 'T', "1024 TBytes"},
	}
	for _, tc := range cases {
		if got := formatUnits(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatUnits(%g, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
}

// TestReportCleanText: text from the network loses what a terminal would
// act on, and is cut to a number of runes.
func TestReportCleanText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"server shutting down", 100, "server shutting down"},
		{"  padded\t\r\n", 100, "padded"},
		{"a\x1b[31mred\x1b[0m", 100, "a[31mred[0m"}, // no ESC, no escape sequence
		{"bell\x07 and nul\x00", 100, "bell and nul"},
		{"c1 \u009b2J csi", 100, "c1 2J csi"},
		{"abc\u202edef", 100, "abcdef"}, // no bidi override
		{"two\nlines", 100, "twolines"},
		{"Zürich ✓", 100, "Zürich ✓"},
		{"héllo wörld", 5, "héllo"},
		{"  abc  ", 2, "ab"},
		{"\x1b\x1b", 10, ""},
	}
	for _, tc := range cases {
		if got := cleanText(tc.in, tc.max); got != tc.want {
			t.Errorf("cleanText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

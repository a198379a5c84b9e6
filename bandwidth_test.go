package main

// bandwidth_test.go runs whole bandwidth tests on loopback, the server
// in-process through serve and the client through run (e2e_test.go), and
// checks what only a real run can show: the bytes each stream moved, in
// the direction asked for, as much as asked for, counted alike by both
// ends, and added up by the intervals; the streams and their ids; and that
// -J, --json-stream and the text report come out of a real run whole. How
// a report is laid out, and how its sums add up, is report_test.go's
// concern, on fixed views.

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ---- what a finished -J document must say ----

// e2eShape is what a client asked for, as far as the checks care.
type e2eShape struct {
	dir      string // dirUpload, dirDownload or dirBidir
	parallel int
	target   int64 // bytes per direction for -n or -k; 0 for a timed test
	omitted  bool  // -O was given
}

// streams is how many stream connections the test has.
func (s e2eShape) streams() int {
	if s.dir == dirBidir {
		return 2 * s.parallel
	}
	return s.parallel
}

// e2eCheckDoc checks a client's -J document of a completed test for what
// the run did: no error, its streams, that every byte sent was received,
// in the direction and the amount asked for, and that the intervals add
// up to the totals. That the document's sums add up to its streams, and
// its keys, the golden report tests check (report_test.go).
func e2eCheckDoc(t *testing.T, doc map[string]any, want e2eShape) {
	t.Helper()
	if _, ok := doc["error"]; ok {
		t.Fatalf("completed test has an error: %v", doc["error"])
	}
	sockets := e2eCheckConnected(t, doc, want)
	counted := e2eCheckStreamBytes(t, doc, want, sockets)
	e2eCheckDirections(t, doc, want)
	e2eCheckIntervals(t, doc, want, counted)
}

// e2eCheckConnected: one connection per stream, each with its own
// socket id; it returns the ids.
func e2eCheckConnected(t *testing.T, doc map[string]any, want e2eShape) map[int64]bool {
	t.Helper()
	connected := e2eList(t, doc, "start.connected")
	sockets := map[int64]bool{}
	for _, c := range connected {
		sockets[e2eInt(t, c, "socket")] = true
	}
	if n := want.streams(); len(connected) != n || len(sockets) != n {
		t.Errorf("start.connected has %d entries with %d distinct sockets, want %d", len(connected), len(sockets), n)
	}
	return sockets
}

// e2eCheckStreamBytes: per stream, both ends' counts (paired by the
// stream's id), and that the receiver got exactly what the sender sent.
// With -O each end starts counting at the end of its own omitted period,
// so the bytes in flight at that moment land on different sides of it
// (iperf3 behaves the same); only a positive count is checked then. It
// returns the bytes this side counted, by socket id.
func e2eCheckStreamBytes(t *testing.T, doc map[string]any, want e2eShape, sockets map[int64]bool) map[int64]int64 {
	t.Helper()
	ends := e2eList(t, doc, "end.streams")
	if len(ends) != want.streams() {
		t.Fatalf("end.streams has %d entries, want %d", len(ends), want.streams())
	}
	counted := map[int64]int64{}
	for _, e := range ends {
		id := e2eInt(t, e, "sender.socket")
		if rid := e2eInt(t, e, "receiver.socket"); rid != id || !sockets[id] {
			t.Errorf("end stream sender socket %d, receiver socket %d, connected %v", id, rid, sockets)
		}
		sent, recv := e2eInt(t, e, "sender.bytes"), e2eInt(t, e, "receiver.bytes")
		// (With -n or -k the streams of a direction share one budget, so
		// on a fast link one stream may take all of a small one.)
		if want.target == 0 && (sent <= 0 || recv <= 0) {
			t.Errorf("stream %d: sent %d, received %d; both should be positive", id, sent, recv)
		}
		if !want.omitted && sent != recv {
			t.Errorf("stream %d: sender counted %d bytes, receiver %d", id, sent, recv)
		}
		if want.target > 0 && want.parallel == 1 && sent != want.target {
			t.Errorf("stream %d: sent %d bytes, want exactly %d", id, sent, want.target)
		}
		if e2eBool(t, e, "sender.sender") {
			counted[id] = sent
		} else {
			counted[id] = recv
		}
	}
	return counted
}

// e2eCheckDirections: per direction, who sends, and how much went: all
// of -n or -k, and as much received as sent.
func e2eCheckDirections(t *testing.T, doc map[string]any, want e2eShape) {
	t.Helper()
	type dirSums struct{ sent, received string }
	dirs := []dirSums{{"end.sum_sent", "end.sum_received"}}
	if want.dir == dirBidir {
		dirs = append(dirs, dirSums{"end.sum_sent_bidir_reverse", "end.sum_received_bidir_reverse"})
	}
	for i, d := range dirs {
		clientSends := want.dir != dirDownload && i == 0
		for _, p := range []string{d.sent, d.received} {
			if got := e2eBool(t, doc, p+".sender"); got != clientSends {
				t.Errorf("%s.sender = %v, want %v", p, got, clientSends)
			}
		}
		sent, recv := e2eInt(t, doc, d.sent+".bytes"), e2eInt(t, doc, d.received+".bytes")
		if sent <= 0 || recv <= 0 {
			t.Errorf("%s = %d, %s = %d: both should be positive", d.sent, sent, d.received, recv)
		}
		if !want.omitted && sent != recv {
			t.Errorf("%s = %d but %s = %d", d.sent, sent, d.received, recv)
		}
		if want.target > 0 && (sent != want.target || recv != want.target) {
			t.Errorf("%s = %d, %s = %d; want exactly %d each", d.sent, sent, d.received, recv, want.target)
		}
	}
	if want.dir != dirBidir {
		// No stream went the other way.
		for _, p := range []string{"end.sum_sent_bidir_reverse", "end.sum_received_bidir_reverse"} {
			if _, ok := e2eGet(doc, p); ok {
				t.Errorf("%s in a %s test", p, want.dir)
			}
		}
	}
}

// e2eCheckIntervals: there are intervals, each with some of the streams,
// which agree on whether it was omitted; and each stream's measured
// intervals add up to the total it counted.
func e2eCheckIntervals(t *testing.T, doc map[string]any, want e2eShape, counted map[int64]int64) {
	t.Helper()
	intervals := e2eList(t, doc, "intervals")
	if len(intervals) == 0 {
		t.Fatal("no intervals")
	}
	inIntervals := map[int64]int64{}
	for k, iv := range intervals {
		streams := e2eList(t, iv, "streams")
		if len(streams) == 0 || len(streams) > want.streams() {
			t.Errorf("interval %d has %d streams, want 1 to %d", k, len(streams), want.streams())
		}
		if len(streams) == 0 {
			continue
		}
		omitted := e2eBool(t, streams[0], "omitted")
		for _, s := range streams {
			if e2eBool(t, s, "omitted") != omitted {
				t.Errorf("interval %d: streams disagree on omitted", k)
			}
			if !omitted {
				inIntervals[e2eInt(t, s, "socket")] += e2eInt(t, s, "bytes")
			}
		}
	}
	for id, total := range counted {
		if inIntervals[id] != total {
			t.Errorf("stream %d: measured intervals add up to %d bytes, the summary says %d", id, inIntervals[id], total)
		}
	}
}

// ---- every mode, -J ----

// TestE2EModes runs each kind of test with -J and checks the document
// for what the run did, and for the keys of iperf3's output for the same
// mode that only a measurement fills in.
func TestE2EModes(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	cases := []struct {
		name  string
		args  []string
		ref   string
		shape e2eShape
		extra func(t *testing.T, doc map[string]any)
	}{
		{"upload", []string{"-t", "0.6"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, nil},
		{"reverse", []string{"-t", "0.6", "-R"}, "tcp-reverse.json", e2eShape{dir: dirDownload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			for _, e := range e2eList(t, doc, "end.streams") {
				if e2eBool(t, e, "sender.sender") || e2eBool(t, e, "receiver.sender") {
					t.Errorf("-R: the client sends on no stream, yet %v", e)
				}
			}
		}},
		{"bidir", []string{"-t", "0.6", "--bidir"}, "tcp-bidir.json", e2eShape{dir: dirBidir, parallel: 1}, func(t *testing.T, doc map[string]any) {
			for k, iv := range e2eList(t, doc, "intervals") {
				if _, ok := e2eGet(iv, "sum_bidir_reverse"); !ok {
					t.Errorf("interval %d lacks sum_bidir_reverse", k)
				}
			}
		}},
		{"parallel 4", []string{"-t", "0.6", "-P", "4"}, "tcp-p4.json", e2eShape{dir: dirUpload, parallel: 4}, nil},
		{"bytes", []string{"-n", "20M"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, target: 20 << 20}, nil},
		{"bytes, reverse, odd size", []string{"-n", "3000001", "-R", "-P", "2"}, "tcp-reverse.json", e2eShape{dir: dirDownload, parallel: 2, target: 3000001}, nil},
		{"bytes, bidir", []string{"-n", "8M", "--bidir", "-P", "2"}, "tcp-bidir.json", e2eShape{dir: dirBidir, parallel: 2, target: 8 << 20}, nil},
		{"blocks", []string{"-k", "300", "-l", "16K"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, target: 300 * 16 << 10}, func(t *testing.T, doc map[string]any) {
			if e2eInt(t, doc, "start.test_start.blocks") != 300 || e2eInt(t, doc, "start.test_start.blksize") != 16<<10 {
				t.Errorf("test_start: %v", doc["start"].(map[string]any)["test_start"])
			}
		}},
		{"intervals", []string{"-t", "1.2", "-i", "0.5"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			// Intervals close at 0.5 and 1.0 s on the clock, and the
			// third when the streams finish, just after 1.2 s. On a busy
			// machine they may finish after the clock's short grace at
			// 1.2 s: their last bytes then get a fourth interval of
			// their own, from 1.2 s. Never more.
			ivs := e2eList(t, doc, "intervals")
			if n := len(ivs); n != 3 && n != 4 {
				t.Fatalf("-t 1.2 -i 0.5: %d intervals, want 3 (or 4 on a busy machine)", n)
			}
			near := func(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }
			for k, iv := range ivs {
				start, end := e2eFloat(t, iv, "sum.start"), e2eFloat(t, iv, "sum.end")
				want := []float64{0, 0.5, 1.0, 1.2}[k]
				if !near(start, want) {
					t.Errorf("interval %d starts at %g, want %g", k, start, want)
				}
				switch {
				case k < 2 && !near(end-start, 0.5):
					t.Errorf("interval %d lasts %g s, want 0.5", k, end-start)
				case k == 2 && len(ivs) == 4 && !near(end, 1.2):
					t.Errorf("interval 2 ends at %g s, want 1.2 as a fourth follows", end)
				case k >= 2 && (end < 1.2-1e-6 || end > 3):
					t.Errorf("interval %d ends at %g s, want just after 1.2", k, end)
				}
			}
		}},
		{"omit", []string{"-O", "0.5", "-t", "1"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, omitted: true}, func(t *testing.T, doc map[string]any) {
			ivs := e2eList(t, doc, "intervals")
			var omitted, measured, omittedBytes, measuredBytes int64
			for k, iv := range ivs {
				if e2eBool(t, iv, "sum.omitted") {
					if measured > 0 {
						t.Errorf("interval %d is omitted but follows measured ones", k)
					}
					omitted++
					omittedBytes += e2eInt(t, iv, "sum.bytes")
					if end := e2eFloat(t, iv, "sum.end"); end > 0.5+1e-6 {
						t.Errorf("omitted interval %d ends at %g s, after the 0.5 s omitted", k, end)
					}
				} else {
					measured++
					measuredBytes += e2eInt(t, iv, "sum.bytes")
				}
			}
			if omitted == 0 || measured == 0 || omittedBytes == 0 {
				t.Fatalf("-O 0.5: %d omitted intervals (%d bytes), %d measured", omitted, omittedBytes, measured)
			}
			if sent := e2eInt(t, doc, "end.sum_sent.bytes"); sent != measuredBytes {
				t.Errorf("sum_sent.bytes = %d, the measured intervals hold %d (the omitted %d must not count)", sent, measuredBytes, omittedBytes)
			}
			// The summary covers the 1 s measured, not the 1.5 s run.
			if secs := e2eFloat(t, doc, "end.sum_sent.seconds"); secs < 1-1e-6 || secs >= 1.5 {
				t.Errorf("sum_sent.seconds = %g, want the measured 1 s (and a little)", secs)
			}
			if first := e2eFloat(t, ivs[omitted], "sum.start"); first != 0 {
				t.Errorf("the first measured interval starts at %g, want 0", first)
			}
		}},
		{"one interval with -i 0", []string{"-t", "0.6", "-i", "0"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			// iperf3 -i 0 reports the whole test as one interval.
			ivs := e2eList(t, doc, "intervals")
			if len(ivs) != 1 || e2eFloat(t, ivs[0], "sum.start") != 0 || e2eFloat(t, ivs[0], "sum.end") < 0.6 {
				t.Errorf("-i 0: want one interval from 0 to the end, got %v", ivs)
			}
		}},
		{"bytes after omit", []string{"-n", "50M", "-O", "0.3"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1, omitted: true}, func(t *testing.T, doc map[string]any) {
			// What was sent during the omitted period does not count
			// against -n, even a write that straddled its end.
			if sent := e2eInt(t, doc, "end.sum_sent.bytes"); sent != 50<<20 {
				t.Errorf("-n 50M -O 0.3: sent %d bytes after the omitted period, want exactly %d", sent, 50<<20)
			}
		}},
		{"server output", []string{"-t", "0.6", "--get-server-output"}, "tcp.json", e2eShape{dir: dirUpload, parallel: 1}, func(t *testing.T, doc map[string]any) {
			// The server runs without -J: its output is text, as iperf3's.
			text, ok := doc["server_output_text"].(string)
			if !ok || !strings.HasPrefix(text, "Accepted connection from ") {
				t.Fatalf("server_output_text is %#v", doc["server_output_text"])
			}
			if _, ok := doc["server_output_json"]; ok {
				t.Error("server_output_json from a server without -J")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := srv.mustRun(t, append(tc.args, "-J")...)
			doc := e2eDecode(t, r.stdout)
			e2eHasMeasuredKeys(t, doc, tc.ref)
			e2eCheckDoc(t, doc, tc.shape)
			if tc.extra != nil {
				tc.extra(t, doc)
			}
			if t.Failed() {
				t.Logf("document:\n%s", r.stdout)
			}
		})
	}
}

// TestJSONTimestamp: start.timestamp reads as iperf3 writes it.
func TestJSONTimestamp(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	before := time.Now().Add(-time.Second)
	doc := e2eDecode(t, srv.mustRun(t, "-n", "1M", "-J").stdout)
	ref := e2eReference(t, "tcp.json")
	refTime, _ := e2eGet(ref, "start.timestamp.time")
	layout := "Mon, 02 Jan 2006 15:04:05 GMT"
	if _, err := time.Parse(layout, refTime.(string)); err != nil {
		t.Fatalf("the layout does not read iperf3's own timestamp: %v", err)
	}
	s, _ := e2eGet(doc, "start.timestamp.time")
	str, _ := s.(string)
	ts, err := time.Parse(layout, str)
	if err != nil {
		t.Fatalf("start.timestamp.time %q is not in iperf3's layout: %v", str, err)
	}
	if secs := e2eInt(t, doc, "start.timestamp.timesecs"); secs != ts.Unix() || ts.Before(before.Truncate(time.Second)) || ts.After(time.Now()) {
		t.Errorf("timestamp %q / %d does not match the test's time", str, secs)
	}
}

// TestE2EIPv6Loopback: a test over ::1, with -6.
func TestE2EIPv6Loopback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	srv := startE2EServerOn(t, ln)
	doc := e2eDecode(t, srv.mustRun(t, "-6", "-n", "4M", "-J").stdout)
	e2eCheckDoc(t, doc, e2eShape{dir: dirUpload, parallel: 1, target: 4 << 20})
	for _, c := range e2eList(t, doc, "start.connected") {
		if h, _ := e2eGet(c, "remote_host"); h != "::1" {
			t.Errorf("connected to %v, want ::1", h)
		}
	}
	if !strings.Contains(srv.out.String(), "[::1]:") {
		t.Errorf("the server's log does not show the IPv6 peer:\n%s", srv.out.String())
	}
}

// ---- --json-stream ----

// TestJSONStream: one JSON object per line, each an event; a start, at
// least one interval, then the end (and the server's output, asked for).
func TestJSONStream(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	r := srv.mustRun(t, "-t", "0.6", "-i", "0.2", "--json-stream", "--get-server-output")
	var events []string
	for _, l := range e2eLines(r.stdout) {
		obj := e2eDecode(t, l)
		ev, _ := obj["event"].(string)
		switch ev {
		case "start", "interval", "end", "error", "server_output_text":
		default:
			t.Errorf("line with event %q: %s", ev, l)
		}
		if _, ok := obj["data"].(map[string]any); !ok && ev != "error" && ev != "server_output_text" {
			t.Errorf("event %q without an object as data: %s", ev, l)
		}
		events = append(events, ev)
	}
	n := len(events)
	// The server runs without -J, so its output comes as text.
	if n < 4 || events[0] != "start" || events[1] != "interval" || events[n-2] != "end" || events[n-1] != "server_output_text" {
		t.Errorf("events %v: want start, intervals, end, server_output_text", events)
	}
	for _, ev := range events[1 : n-2] {
		if ev != "interval" {
			t.Errorf("events %v: only intervals between start and end", events)
			break
		}
	}
	end := e2eDecode(t, e2eLines(r.stdout)[n-2])
	sent, recv := e2eInt(t, end, "data.sum_sent.bytes"), e2eInt(t, end, "data.sum_received.bytes")
	if sent <= 0 || sent != recv {
		t.Errorf("end event: sent %d, received %d", sent, recv)
	}
}

// ---- text output ----

// e2eTextShape is what a run's text report should show.
type e2eTextShape struct {
	port    string
	streams int  // connections
	bidir   bool // the first half of the streams send ([TX-C]), the rest receive ([RX-C])
}

// e2eCheckText checks a client's text report for what the run did: the
// server it reached, its streams, interval rows, a sender and a receiver
// row for every stream, and the end of a successful run; lines must
// already be without any -T prefix. The layout of those lines, iperf3's,
// report_test.go checks.
func e2eCheckText(t *testing.T, lines []string, want e2eTextShape) {
	t.Helper()
	if len(lines) < 8 {
		t.Fatalf("report too short:\n%s", strings.Join(lines, "\n"))
	}
	if want := "Connecting to host 127.0.0.1, port " + want.port; !strings.HasPrefix(lines[0], want) {
		t.Errorf("first line %q, want it to start %q", lines[0], want)
	}
	e2eCheckTextConnected(t, lines, want)
	e2eCheckTextRows(t, lines, want)
	if n := len(lines); lines[n-2] != "" || lines[n-1] != "wperf Done." {
		t.Errorf("report ends %q, want a blank line and \"wperf Done.\"", lines[n-2:])
	}
}

// e2eCheckTextConnected: a connected line for each stream, in order of
// their ids, to the server's port.
func e2eCheckTextConnected(t *testing.T, lines []string, want e2eTextShape) {
	t.Helper()
	var ids []string
	for _, l := range lines {
		if m := e2eConnectedRE.FindStringSubmatch(l); m != nil {
			ids = append(ids, m[1])
			if m[2] != want.port {
				t.Errorf("%q: connected to another port than the server's %s", l, want.port)
			}
		}
	}
	var wantIDs []string
	for id := 1; id <= want.streams; id++ {
		wantIDs = append(wantIDs, strconv.Itoa(id))
	}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("connected lines for streams %q, want %q", ids, wantIDs)
	}
}

// e2eCheckTextRows: some interval rows, and exactly one sender and one
// receiver row for each stream, tagged with its direction under --bidir.
func e2eCheckTextRows(t *testing.T, lines []string, want e2eTextShape) {
	t.Helper()
	counts := map[string]int{}
	intervalRows := 0
	for _, l := range lines {
		m := e2eRowRE.FindStringSubmatch(l)
		switch {
		case m == nil:
		case strings.HasSuffix(l, " sender") || strings.HasSuffix(l, " receiver"):
			counts[strings.TrimSpace(m[1])+m[2]+" "+l[strings.LastIndexByte(l, ' ')+1:]]++
		default:
			intervalRows++
		}
	}
	if intervalRows == 0 {
		t.Error("no interval rows")
	}
	for id := 1; id <= want.streams; id++ {
		for _, role := range []string{"sender", "receiver"} {
			tag := ""
			if want.bidir && id > want.streams/2 {
				tag = "[RX-C]"
			} else if want.bidir {
				tag = "[TX-C]"
			}
			if counts[strconv.Itoa(id)+tag+" "+role] != 1 {
				t.Errorf("summary: want one %s row for stream %d%s, have %v", role, id, tag, counts)
			}
		}
	}
}

// e2eRateUnits lists the units of the rate column, row by row.
func e2eRateUnits(lines []string) map[string]int {
	units := map[string]int{}
	for _, l := range lines {
		if m := e2eRowRE.FindStringSubmatch(l); m != nil {
			units[m[7]]++
		}
	}
	return units
}

// TestTextOutput runs each kind of test without -J, and with the options
// that change the report, and checks what the report says of the run.
func TestTextOutput(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	base := e2eTextShape{port: srv.port, streams: 1}
	cases := []struct {
		name  string
		args  []string
		shape func(e2eTextShape) e2eTextShape
		extra func(t *testing.T, lines []string)
	}{
		{"upload", []string{"-t", "0.6"}, nil, nil},
		{"parallel", []string{"-t", "0.6", "-P", "4", "-i", "0.25"}, func(s e2eTextShape) e2eTextShape {
			s.streams = 4
			return s
		}, nil},
		{"reverse", []string{"-t", "0.6", "-R"}, nil, nil},
		{"bidir", []string{"-t", "0.6", "--bidir"}, func(s e2eTextShape) e2eTextShape {
			s.streams, s.bidir = 2, true
			return s
		}, nil},
		{"bidir parallel", []string{"-t", "0.6", "--bidir", "-P", "2"}, func(s e2eTextShape) e2eTextShape {
			s.streams, s.bidir = 4, true
			return s
		}, nil},
		{"omit", []string{"-t", "0.6", "-O", "0.3", "-i", "0.2"}, nil, func(t *testing.T, lines []string) {
			n := 0
			for _, l := range lines {
				if strings.HasSuffix(l, "(omitted)") {
					n++
				}
			}
			if n == 0 {
				t.Error("no (omitted) rows with -O")
			}
		}},
		{"format m", []string{"-t", "0.6", "-f", "m"}, nil, func(t *testing.T, lines []string) {
			if units := e2eRateUnits(lines); len(units) != 1 || units["Mbits"] == 0 {
				t.Errorf("-f m: rate units %v, want Mbits only", units)
			}
		}},
		{"format M", []string{"-t", "0.6", "-f", "M"}, nil, func(t *testing.T, lines []string) {
			if units := e2eRateUnits(lines); len(units) != 1 || units["MBytes"] == 0 {
				t.Errorf("-f M: rate units %v, want MBytes only", units)
			}
		}},
		{"server output", []string{"-t", "0.6", "--get-server-output"}, nil, func(t *testing.T, lines []string) {
			k := slices.Index(lines, "Server output:")
			if k < 0 || k+1 >= len(lines) {
				t.Fatal("no \"Server output:\" section")
			}
			if !strings.HasPrefix(lines[k+1], "Accepted connection from 127.0.0.1, port ") {
				t.Errorf("server output starts %q", lines[k+1])
			}
			// As iperf3's server, it has its own side's rows only.
			var sender, receiver bool
			for _, l := range lines[k:] {
				sender = sender || strings.HasSuffix(l, " sender")
				receiver = receiver || strings.HasSuffix(l, " receiver")
			}
			if sender || !receiver {
				t.Errorf("the receiving server's output has sender rows %v, receiver rows %v: want receiver rows only", sender, receiver)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := srv.mustRun(t, tc.args...)
			shape := base
			if tc.shape != nil {
				shape = tc.shape(shape)
			}
			lines := e2eLines(r.stdout)
			if tc.name == "server output" {
				// The server's part follows the client's summary and
				// a blank line; its rows are not the client's.
				if k := slices.Index(lines, "Server output:"); k > 1 && lines[k-1] == "" {
					lines = append(lines[:k-1:k-1], lines[len(lines)-2:]...)
				}
			}
			e2eCheckText(t, lines, shape)
			if tc.extra != nil {
				tc.extra(t, e2eLines(r.stdout))
			}
			if t.Failed() {
				t.Logf("output:\n%s", r.stdout)
			}
		})
	}
}

// TestTextTitleAndLogfile: -T prefixes every line; --logfile takes the
// report instead of standard output.
func TestTextTitleAndLogfile(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	shape := e2eTextShape{port: srv.port, streams: 1}

	t.Run("title", func(t *testing.T) {
		t.Parallel()
		r := srv.mustRun(t, "-t", "0.5", "-T", "lab 1")
		var lines []string
		for _, l := range e2eLines(r.stdout) {
			rest, ok := strings.CutPrefix(l, "lab 1:  ")
			if !ok {
				t.Errorf("line %q lacks the -T prefix", l)
			}
			lines = append(lines, rest)
		}
		e2eCheckText(t, lines, shape)
	})
	t.Run("logfile", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "wperf.log")
		r := srv.mustRun(t, "-t", "0.5", "--logfile", path)
		if r.stdout != "" {
			t.Errorf("--logfile: stdout should be empty, got %q", r.stdout)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		e2eCheckText(t, e2eLines(string(b)), shape)
	})
}

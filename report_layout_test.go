package main

// report_layout_test.go holds the golden renderings of report_test.go to
// iperf3 3.12's own output (testdata/iperf3): the client's text report
// line by line in iperf3's layout, the keys of the -J document, and sums
// that add up to their streams. These checks ran on real runs before;
// they need no network, so they run on the fixed views, and the end-to-end
// tests keep to what a run did.

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ---- text ----

// reportTextShape is what a client's text report should show.
type reportTextShape struct {
	port     string
	streams  int  // connections
	sums     bool // -P > 1: [SUM] rows
	reverse  bool
	bidir    bool
	sendsTCP bool // the client sends, so Retr and Cwnd columns (Linux)
	noRetr   bool // no sender knows its retransmits: no Retr in the summary
}

func (spec viewSpec) textShape() reportTextShape {
	s := reportTextShape{
		port:     "8765",
		streams:  spec.parallel,
		sums:     spec.parallel > 1,
		reverse:  spec.dir == dirDownload,
		bidir:    spec.dir == dirBidir,
		sendsTCP: spec.dir != dirDownload && !spec.noTCP,
		noRetr:   spec.noTCP,
	}
	if s.bidir {
		s.streams *= 2
	}
	return s
}

// reportClientLines are the lines of a client's text report without the
// -T prefix, and without what iperf3's layout does not place: the
// server's output (which follows the summary), and -V's lines.
func reportClientLines(t *testing.T, out, title string) []string {
	t.Helper()
	lines := e2eLines(out)
	if title != "" {
		for i, l := range lines {
			rest, ok := strings.CutPrefix(l, title+":  ")
			if !ok {
				t.Errorf("line %q lacks the -T prefix", l)
			}
			lines[i] = rest
		}
	}
	if k := slices.Index(lines, "Server output:"); k > 1 && lines[k-1] == "" {
		lines = append(lines[:k-1:k-1], lines[len(lines)-2:]...)
	}
	// wperf's URL line, and -V's lines: iperf3's own layout check is
	// TestVerboseLinesAsIperf3's.
	verbose := []string{"Starting Test: ", "CPU Utilization: ", "snd_tcp_congestion ", "rcv_tcp_congestion ",
		"      URL: ", "      Cookie: ", "      TCP MSS: ", "Time: ", "Test Complete. Summary Results:", software, "(system info)"}
	return slices.DeleteFunc(lines, func(l string) bool {
		return slices.ContainsFunc(verbose, func(p string) bool { return strings.HasPrefix(l, p) })
	})
}

// iperf3TextRef is iperf3's text report, for its exact header lines.
func iperf3TextRef(t *testing.T) (header, separator, summaryHeader string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "iperf3", "tcp-text-output.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "[ ID]") && strings.HasSuffix(l, "Cwnd"):
			header = l
		case strings.HasPrefix(l, "[ ID]"):
			summaryHeader = l
		case strings.HasPrefix(l, "- - -"):
			separator = l
		}
	}
	if header == "" || separator == "" || summaryHeader == "" {
		t.Fatal("tcp-text-output.txt lacks the header lines")
	}
	return header, separator, summaryHeader
}

// checkTextLayout checks a client's text report line by line in iperf3's
// layout; lines as reportClientLines gives them.
func checkTextLayout(t *testing.T, lines []string, want reportTextShape) {
	t.Helper()
	header, separator, summaryHeader := iperf3TextRef(t)
	if !want.sendsTCP || !tcpInfoAvailable {
		header = strings.TrimSuffix(header, "         Retr  Cwnd")
	}
	if want.noRetr {
		summaryHeader = strings.TrimSuffix(summaryHeader, "         Retr")
	}
	if want.bidir {
		header = strings.Replace(header, "[ ID]", "[ ID][Role]", 1)
		summaryHeader = strings.Replace(summaryHeader, "[ ID]", "[ ID][Role]", 1)
	}
	if len(lines) < 8 {
		t.Fatalf("report too short:\n%s", strings.Join(lines, "\n"))
	}
	// Exactly iperf3's line, so that patterns anchored at its end match.
	if want := "Connecting to host 127.0.0.1, port " + want.port; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
	i := 1
	if want.reverse {
		// As iperf3 has it: before the connected lines.
		if lines[i] != "Reverse mode, remote host 127.0.0.1 is sending" {
			t.Errorf("line %d: %q, want the reverse mode notice", i, lines[i])
		}
		i++
	}
	for id := 1; id <= want.streams; id, i = id+1, i+1 {
		m := e2eConnectedRE.FindStringSubmatch(lines[i])
		if m == nil || m[1] != strconv.Itoa(id) || m[2] != want.port {
			t.Errorf("line %d: %q, want stream %d's connected line", i, lines[i], id)
		}
	}
	if lines[i] != header {
		t.Errorf("line %d: %q, want the header %q", i, lines[i], header)
	}
	if n := len(lines); lines[n-2] != "" || lines[n-1] != "wperf Done." {
		t.Errorf("report ends %q, want a blank line and \"wperf Done.\"", lines[n-2:])
	}
	// The summary: after the last separator, its header, then sender and
	// receiver rows until the blank line.
	last := -1
	for k, l := range lines {
		if l == separator {
			last = k
		}
	}
	if last < 0 || last+1 >= len(lines) || lines[last+1] != summaryHeader {
		t.Fatalf("no separator and summary header %q", summaryHeader)
	}
	checkTextSummary(t, lines[last+2:len(lines)-2], want)
	checkTextIntervals(t, lines[i+1:last], separator, want)
}

// checkTextSummary: sender and receiver rows from 0.00, one of each per
// stream, and per direction a [SUM] pair with -P > 1.
func checkTextSummary(t *testing.T, rows []string, want reportTextShape) {
	t.Helper()
	counts := map[string]int{}
	for _, l := range rows {
		m := e2eRowRE.FindStringSubmatch(l)
		if m == nil || !(strings.HasSuffix(l, " sender") || strings.HasSuffix(l, " receiver")) {
			t.Errorf("summary row %q is not a sender or receiver row", l)
			continue
		}
		role := l[strings.LastIndexByte(l, ' ')+1:]
		id := strings.TrimSpace(m[1])
		counts[id+m[2]+" "+role]++
		if m[3] != "0.00" {
			t.Errorf("summary row %q does not start at 0.00", l)
		}
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
	if want.sums {
		tags := []string{""}
		if want.bidir {
			tags = []string{"[TX-C]", "[RX-C]"}
		}
		for _, tag := range tags {
			if counts["SUM"+tag+" sender"] != 1 || counts["SUM"+tag+" receiver"] != 1 {
				t.Errorf("summary: want [SUM]%s sender and receiver rows, have %v", tag, counts)
			}
		}
	} else if counts["SUM sender"]+counts["SUM[TX-C] sender"] > 0 {
		t.Errorf("[SUM] rows with a single stream: %v", counts)
	}
}

// checkTextIntervals: interval rows (between the header and the summary)
// in iperf3's layout, tagged under --bidir, with [SUM] rows only with -P > 1.
func checkTextIntervals(t *testing.T, lines []string, separator string, want reportTextShape) {
	t.Helper()
	rows, sums := 0, 0
	for _, l := range lines {
		if l == separator {
			continue
		}
		m := e2eRowRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("interval row %q is not in iperf3's layout", l)
			continue
		}
		if want.bidir && m[2] == "" {
			t.Errorf("--bidir row %q has no [TX-C]/[RX-C] tag", l)
		}
		rows++
		if m[1] == "SUM" {
			sums++
		}
	}
	if rows == 0 || (want.sums != (sums > 0)) {
		t.Errorf("%d interval rows, %d of them [SUM]; want rows, and [SUM] rows only with -P > 1", rows, sums)
	}
}

// ---- -J ----

// checkDocKeys checks that doc has every key path of iperf3's output ref;
// a view without TCP_INFO may lack the keys that hold it.
func checkDocKeys(t *testing.T, doc map[string]any, ref string, spec viewSpec) {
	t.Helper()
	if spec.noTCP {
		e2eHasKeysOf(t, doc, ref, "", func(p string) bool { return !e2eMeasured(p) })
		return
	}
	e2eHasReferenceKeys(t, doc, ref, "")
}

// checkDocSums checks a -J document against its request and itself: the
// request's streams and direction, which side sends in each direction,
// the sums of the summary and of each interval against their streams, and
// no reverse sums without --bidir.
func checkDocSums(t *testing.T, doc map[string]any, spec viewSpec, isServer bool) {
	t.Helper()
	if got := e2eInt(t, doc, "start.test_start.num_streams"); got != int64(spec.parallel) {
		t.Errorf("test_start.num_streams = %d, want %d", got, spec.parallel)
	}
	if got := e2eInt(t, doc, "start.test_start.reverse"); got != int64(b2i(spec.dir == dirDownload)) {
		t.Errorf("test_start.reverse = %d for a %s test", got, spec.dir)
	}
	dirs := docDirections(spec, isServer)
	checkDocEndSums(t, doc, dirs)
	if spec.dir != dirBidir {
		for _, p := range []string{"end.sum_sent_bidir_reverse", "end.sum_received_bidir_reverse"} {
			if _, ok := e2eGet(doc, p); ok {
				t.Errorf("%s in a %s test", p, spec.dir)
			}
		}
	}
	checkDocIntervalSums(t, doc, dirs)
}

// docDirection is one direction's sums in a -J document, and whether the
// side that wrote it sends in that direction.
type docDirection struct {
	sent, received, interval string
	sends                    bool
}

// docDirections are the test's directions: its own, where the client
// sends unless -R, and --bidir's reverse one.
func docDirections(spec viewSpec, isServer bool) []docDirection {
	mainSends := (spec.dir != dirDownload) != isServer
	dirs := []docDirection{{"end.sum_sent", "end.sum_received", "sum", mainSends}}
	if spec.dir == dirBidir {
		dirs = append(dirs, docDirection{"end.sum_sent_bidir_reverse", "end.sum_received_bidir_reverse", "sum_bidir_reverse", !mainSends})
	}
	return dirs
}

// checkDocEndSums: per direction, who sends, and sums that add up the
// streams' sender and receiver counts.
func checkDocEndSums(t *testing.T, doc map[string]any, dirs []docDirection) {
	t.Helper()
	sentBy, recvBy := map[bool]int64{}, map[bool]int64{} // by "this side sends"
	for _, e := range e2eList(t, doc, "end.streams") {
		sends := e2eBool(t, e, "sender.sender")
		sentBy[sends] += e2eInt(t, e, "sender.bytes")
		recvBy[sends] += e2eInt(t, e, "receiver.bytes")
	}
	for _, d := range dirs {
		for _, p := range []string{d.sent, d.received} {
			if got := e2eBool(t, doc, p+".sender"); got != d.sends {
				t.Errorf("%s.sender = %v, want %v", p, got, d.sends)
			}
		}
		sent, recv := e2eInt(t, doc, d.sent+".bytes"), e2eInt(t, doc, d.received+".bytes")
		if sent != sentBy[d.sends] || recv != recvBy[d.sends] {
			t.Errorf("%s/%s = %d/%d, but their streams add up to %d/%d", d.sent, d.received, sent, recv, sentBy[d.sends], recvBy[d.sends])
		}
	}
}

// checkDocIntervalSums: each interval's sums add up its streams, per
// direction, and say omitted as the streams do.
func checkDocIntervalSums(t *testing.T, doc map[string]any, dirs []docDirection) {
	t.Helper()
	for k, iv := range e2eList(t, doc, "intervals") {
		streams := e2eList(t, iv, "streams")
		if len(streams) == 0 {
			t.Errorf("interval %d has no streams", k)
			continue
		}
		omitted := e2eBool(t, streams[0], "omitted")
		bySide := map[bool]int64{}
		for _, s := range streams {
			bySide[e2eBool(t, s, "sender")] += e2eInt(t, s, "bytes")
		}
		for _, d := range dirs {
			if got := e2eInt(t, iv, d.interval+".bytes"); got != bySide[d.sends] {
				t.Errorf("interval %d: %s.bytes = %d, its streams add up to %d", k, d.interval, got, bySide[d.sends])
			}
			if got := e2eBool(t, iv, d.interval+".omitted"); got != omitted {
				t.Errorf("interval %d: %s.omitted = %v, streams say %v", k, d.interval, got, omitted)
			}
		}
	}
}

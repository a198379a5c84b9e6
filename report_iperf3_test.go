package main

// report_iperf3_test.go runs the same invocations against iperf3 3.12
// and against wperf, both on loopback, and compares what scripts and
// exporters read: which JSON keys are there and how their values are
// written, and the shapes of text lines. Numbers are never compared,
// only the forms they take.

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// iperf3Run runs `iperf3 -s -1` with serverFlags on a free loopback port
// and an iperf3 client with clientArgs against it, and returns what the
// client printed. The client retries while the server is not yet up.
func iperf3Run(t *testing.T, serverFlags []string, clientArgs ...string) string {
	t.Helper()
	labNeeds(t, "iperf3") // skips without it, except in CI
	port := e2eClosedPort(t)
	srv := exec.Command("iperf3", append([]string{"-s", "-1", "-B", "127.0.0.1", "-p", port}, serverFlags...)...)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
	})
	args := append([]string{"-c", "127.0.0.1", "-p", port}, clientArgs...)
	for range 50 {
		var out, errOut bytes.Buffer
		cmd := exec.Command("iperf3", args...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		switch {
		case strings.Contains(out.String()+errOut.String(), "Connection refused"):
			// Not listening yet (iperf3 -J then exits 0, the error in
			// its document).
			time.Sleep(100 * time.Millisecond)
		case err != nil:
			t.Fatalf("iperf3 %q: %v\n%s%s", args, err, out.String(), errOut.String())
		default:
			return out.String()
		}
	}
	t.Fatalf("iperf3 -s on port %s never accepted", port)
	return ""
}

// wperfRun is iperf3Run's twin: a wperf server with serverFlags in this
// process, and a wperf client with clientArgs (without latency probes,
// which iperf3 has no counterpart of).
func wperfRun(t *testing.T, serverFlags []string, clientArgs ...string) string {
	t.Helper()
	srv := startE2EServer(t, serverFlags...)
	return srv.mustRun(t, append(clientArgs, "--no-latency")...).stdout
}

// rawNumber is the JSON text of the number at path, as written.
func rawNumber(t *testing.T, doc map[string]any, path string) string {
	t.Helper()
	v, _ := e2eGet(doc, path)
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%s: want a number, got %#v", path, v)
	}
	return n.String()
}

// TestIperf3StartMSSAndBuffers: with -M, start has tcp_mss (the value
// asked for) and no tcp_mss_default; without, the reverse; and the
// client's sndbuf_actual and rcvbuf_actual are what iperf3 reads on the
// same kernel, at setup, with and without -w.
func TestIperf3StartMSSAndBuffers(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		mss  int64 // 0: the kernel's
	}{
		{"default", nil, 0},
		{"set-mss", []string{"-M", "1400"}, 1400},
		{"window", []string{"-w", "256K"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-J", "-t", "1"}, tc.args...)
			docs := map[string]map[string]any{
				"iperf3": e2eDecode(t, iperf3Run(t, nil, args...)),
				"wperf":  e2eDecode(t, wperfRun(t, nil, args...)),
			}
			for name, doc := range docs {
				_, hasDefault := e2eGet(doc, "start.tcp_mss_default")
				_, hasMSS := e2eGet(doc, "start.tcp_mss")
				switch {
				case tc.mss > 0 && (hasDefault || !hasMSS || e2eInt(t, doc, "start.tcp_mss") != tc.mss):
					t.Errorf("%s -M %d: tcp_mss %v, tcp_mss_default there: %v; want tcp_mss alone, %d", name, tc.mss, hasMSS, hasDefault, tc.mss)
				case tc.mss == 0 && (!hasDefault || hasMSS):
					t.Errorf("%s: tcp_mss_default there: %v, tcp_mss: %v; want tcp_mss_default alone", name, hasDefault, hasMSS)
				}
			}
			for _, key := range []string{"start.sndbuf_actual", "start.rcvbuf_actual"} {
				if i, w := e2eInt(t, docs["iperf3"], key), e2eInt(t, docs["wperf"], key); i != w {
					t.Errorf("%s: iperf3 %d, wperf %d: want the same reading at setup", key, i, w)
				}
			}
		})
	}
}

// TestServerBuffersReadAtSetup: the server's start.sndbuf_actual is read
// before the data: a test long enough for the kernel to grow the buffer
// reports the same as a short one.
func TestServerBuffersReadAtSetup(t *testing.T) {
	srv := startE2EServer(t, "-J")
	read := func(secs string) int64 {
		doc := e2eDecode(t, srv.mustRun(t, "-J", "--get-server-output", "--no-latency", "-t", secs).stdout)
		return e2eInt(t, doc, "server_output_json.start.rcvbuf_actual")
	}
	short, long := read("0.1"), read("1")
	if short != long {
		t.Errorf("the server's rcvbuf_actual is %d after 0.1 s and %d after 1 s: want it read at setup", short, long)
	}
}

// TestJSONWholeNumbersAsIntegers: test_start's counts and times are
// written as integers when whole, as iperf3 writes them (typed parsers
// such as Go structs with int fields read them); a fraction appears
// only when one was asked for.
func TestJSONWholeNumbersAsIntegers(t *testing.T) {
	srv := startE2EServer(t)
	whole := e2eDecode(t, srv.mustRun(t, "-J", "--no-latency", "-t", "1", "-O", "1").stdout)
	ref := e2eReference(t, "tcp.json")
	for _, key := range []string{"duration", "omit", "blksize", "bytes", "blocks", "reverse", "num_streams", "tos"} {
		path := "start.test_start." + key
		if r, w := rawNumber(t, ref, path), rawNumber(t, whole, path); strings.ContainsAny(r+w, ".eE") {
			t.Errorf("%s: iperf3 writes %s, wperf %s: want integers", path, r, w)
		}
	}
	asked := e2eDecode(t, srv.mustRun(t, "-J", "--no-latency", "-t", "0.5", "-O", "0.25").stdout)
	for path, want := range map[string]string{"start.test_start.duration": "0.5", "start.test_start.omit": "0.25"} {
		if got := rawNumber(t, asked, path); got != want {
			t.Errorf("%s: %s, want %s as asked", path, got, want)
		}
	}
}

// TestIperf3ReceiverSecondsAreTheSenders: end.streams[].receiver.seconds
// is the sender's time, in iperf3's document and in wperf's; the
// receiver's own time stays in its end and its bitrate.
func TestIperf3ReceiverSecondsAreTheSenders(t *testing.T) {
	docs := map[string]map[string]any{
		"iperf3": e2eDecode(t, iperf3Run(t, nil, "-J", "-t", "1")),
		"wperf":  e2eDecode(t, wperfRun(t, nil, "-J", "-t", "1")),
	}
	for name, doc := range docs {
		for _, s := range e2eList(t, doc, "end.streams") {
			snd, rcv := e2eFloat(t, s, "sender.seconds"), e2eFloat(t, s, "receiver.seconds")
			if snd != rcv {
				t.Errorf("%s: receiver.seconds %g, sender.seconds %g: want the sender's", name, rcv, snd)
			}
			bps, bytes, end := e2eFloat(t, s, "receiver.bits_per_second"), e2eFloat(t, s, "receiver.bytes"), e2eFloat(t, s, "receiver.end")
			if d := bps - 8*bytes/end; d > 1 || d < -1 {
				t.Errorf("%s: receiver bitrate %g, want its bytes over its own end %g", name, bps, end)
			}
		}
	}
}

// TestIperf3ServerOutputFollowsServerMode: --get-server-output brings
// server_output_text from a server without -J and server_output_json
// from one with it, whatever the client's own mode, in iperf3 and in
// wperf; a text client shows JSON under iperf3's heading.
func TestIperf3ServerOutputFollowsServerMode(t *testing.T) {
	for _, tc := range []struct {
		name        string
		serverFlags []string
		key         string
		heading     string
	}{
		{"text server", nil, "server_output_text", "Server output:"},
		{"json server", []string{"-J"}, "server_output_json", "Server JSON output:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, run := range map[string]func(*testing.T, []string, ...string) string{"iperf3": iperf3Run, "wperf": wperfRun} {
				doc := e2eDecode(t, run(t, tc.serverFlags, "-J", "-t", "1", "--get-server-output"))
				var keys []string
				for _, k := range []string{"server_output_text", "server_output_json"} {
					if _, ok := doc[k]; ok {
						keys = append(keys, k)
					}
				}
				if !slices.Equal(keys, []string{tc.key}) {
					t.Errorf("%s -J client: server output keys %v, want %s alone", name, keys, tc.key)
				}
				text := run(t, tc.serverFlags, "-t", "1", "--get-server-output")
				if !slices.Contains(e2eLines(text), tc.heading) {
					t.Errorf("%s text client: no %q line:\n%s", name, tc.heading, text)
				}
			}
		})
	}
}

// TestServerOutputOwnRows: the server's text output, like iperf3's, has
// its own side's summary rows only: receiver rows for what it received,
// sender rows for what it sent.
func TestServerOutputOwnRows(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		wantRoles []string
	}{
		{"upload", nil, []string{"receiver"}},
		{"reverse", []string{"-R"}, []string{"sender"}},
		{"bidir", []string{"--bidir", "-P", "2"}, []string{"receiver", "sender"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-J", "-t", "1", "--get-server-output"}, tc.args...)
			headers := map[string]string{}
			for name, run := range map[string]func(*testing.T, []string, ...string) string{"iperf3": iperf3Run, "wperf": wperfRun} {
				text, _ := e2eDecode(t, run(t, nil, args...))["server_output_text"].(string)
				if got := summaryRoles(text); !slices.Equal(got, tc.wantRoles) {
					t.Errorf("%s: the server's summary rows are %v, want %v:\n%s", name, got, tc.wantRoles, text)
				}
				headers[name] = summaryHeader(text)
			}
			if headers["iperf3"] != headers["wperf"] {
				t.Errorf("the server's summary header is %q, iperf3's %q", headers["wperf"], headers["iperf3"])
			}
		})
	}
}

// summaryHeader is a report's last column header line: the summary's.
func summaryHeader(text string) string {
	header := ""
	for _, l := range e2eLines(text) {
		if strings.HasPrefix(l, "[ ID]") {
			header = strings.TrimRight(l, " ")
		}
	}
	return header
}

// summaryRoles are the roles of a report's summary rows, in order,
// without repeats in a row.
func summaryRoles(text string) []string {
	var roles []string
	for _, l := range e2eLines(strings.TrimSpace(text)) {
		l = strings.TrimRight(l, " ")
		for _, role := range []string{"sender", "receiver"} {
			if strings.HasSuffix(l, " "+role) && (len(roles) == 0 || roles[len(roles)-1] != role) {
				roles = append(roles, role)
			}
		}
	}
	return roles
}

// shapeOf is a text line with what varies between runs and tools made
// constant: numbers, the cookie, the date.
func shapeOf(l string) string {
	l = strings.TrimRight(l, " ")
	l = regexp.MustCompile(`Cookie: \w+`).ReplaceAllString(l, "Cookie: C")
	l = regexp.MustCompile(`Time: .*GMT`).ReplaceAllString(l, "Time: T")
	l = regexp.MustCompile(`\d+(\.\d+)?`).ReplaceAllString(l, "9")
	return regexp.MustCompile(`\b[KMG]?(Bytes|bits)\b`).ReplaceAllString(l, "U")
}

// TestIperf3VerboseLines: -V's lines that parsers look for, in iperf3's
// words and order: the Time, Cookie and TCP MSS header lines, the
// Starting Test line, Test Complete, CPU Utilization by role, and the
// congestion control lines.
func TestIperf3VerboseLines(t *testing.T) {
	prefixes := []string{"Time: ", "      Cookie: ", "      TCP MSS: ", "Starting Test: ", "Test Complete. Summary Results:",
		"CPU Utilization: ", "snd_tcp_congestion ", "rcv_tcp_congestion "}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"upload", nil},
		{"reverse", []string{"-R"}},
		{"bidir", []string{"--bidir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-V", "-t", "1", "-O", "1"}, tc.args...)
			// Each line once: iperf3 3.12 repeats its congestion lines
			// after --bidir's second direction.
			pick := func(text string) []string {
				var out []string
				for _, l := range e2eLines(text) {
					if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(l, p) }) && !slices.Contains(out, shapeOf(l)) {
						out = append(out, shapeOf(l))
					}
				}
				return out
			}
			iperf, ours := pick(iperf3Run(t, nil, args...)), pick(wperfRun(t, nil, args...))
			// wperf may say more (iperf3 3.12 has no CPU line with -R),
			// but every line of iperf3's, in its order.
			k := 0
			for _, l := range ours {
				if k < len(iperf) && l == iperf[k] {
					k++
				}
			}
			if k < len(iperf) {
				t.Errorf("iperf3's -V line %q is missing or out of order; iperf3's:\n  %s\nwperf's:\n  %s",
					iperf[k], strings.Join(iperf, "\n  "), strings.Join(ours, "\n  "))
			}
		})
	}
}

// rowKinds are the kinds of a text report's rows in order, without
// repeats in a row: "[ 9][TX-C]" is "TX-C", "[SUM][TX-C]" "SUM TX-C".
func rowKinds(lines []string) []string {
	re := regexp.MustCompile(`^\[(SUM|\s*\d+)\](\[[TR]X-[CS]\])?\s`)
	var kinds []string
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		kind := strings.Trim(m[2], "[]")
		if m[1] == "SUM" {
			kind = "SUM " + kind
		}
		if len(kinds) == 0 || kinds[len(kinds)-1] != kind {
			kinds = append(kinds, kind)
		}
	}
	return kinds
}

// TestIperf3BidirRowOrder: --bidir -P 2 prints the TX streams, their
// [SUM][TX-C], then the RX streams and [SUM][RX-C], in each interval and
// in the summary, as iperf3 does.
func TestIperf3BidirRowOrder(t *testing.T) {
	args := []string{"--bidir", "-P", "2", "-t", "1"}
	blocks := func(text string) (interval, summary []string) {
		lines := e2eLines(text)
		sep, last := slices.Index(lines, separator), 0
		for k, l := range lines {
			if l == separator {
				last = k
			}
		}
		return rowKinds(lines[:max(sep, 0)]), rowKinds(lines[last+1:])
	}
	want := []string{"TX-C", "SUM TX-C", "RX-C", "SUM RX-C"}
	for name, text := range map[string]string{"iperf3": iperf3Run(t, nil, args...), "wperf": wperfRun(t, nil, args...)} {
		iv, sum := blocks(text)
		// Connected lines have no role: the interval block starts at
		// its first tagged row.
		iv = iv[slices.Index(iv, "TX-C"):]
		if !slices.Equal(iv, want) || !slices.Equal(sum, want) {
			t.Errorf("%s: interval rows %v, summary rows %v; want %v for both:\n%s", name, iv, sum, want, text)
		}
	}
}

// TestIperf3OmittedColumn: -O's "(omitted)" stands where iperf3 puts it,
// counted from the end of the bitrate, on stream and sum rows, sending
// and receiving.
func TestIperf3OmittedColumn(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"upload -P 2", []string{"-P", "2"}},
		{"reverse", []string{"-R"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-t", "1", "-O", "1"}, tc.args...)
			columns := func(text string) []int {
				var cols []int
				for _, l := range e2eLines(text) {
					if at := strings.Index(l, "(omitted)"); at > 0 {
						cols = append(cols, at-strings.Index(l, "/sec"))
					}
				}
				return cols
			}
			iperf, ours := columns(iperf3Run(t, nil, args...)), columns(wperfRun(t, nil, args...))
			if len(iperf) == 0 || !slices.Equal(iperf, ours) {
				t.Errorf("(omitted) at %v characters past the bitrate, iperf3 at %v", ours, iperf)
			}
		})
	}
}

// TestIperf3ConnectingLine: a pattern anchored at both ends of iperf3's
// "Connecting to host" line matches wperf's; wperf's URL has a line of
// its own; and the run ends with wperf's closing line, where iperf3's
// says "iperf Done.".
func TestIperf3ConnectingLine(t *testing.T) {
	anchored := regexp.MustCompile(`^Connecting to host (\S+), port (\d+)$`)
	for name, text := range map[string]string{"iperf3": iperf3Run(t, nil, "-t", "1"), "wperf": wperfRun(t, nil, "-t", "1")} {
		lines := e2eLines(text)
		if !anchored.MatchString(lines[0]) {
			t.Errorf("%s: first line %q does not match %v", name, lines[0], anchored)
		}
		if done := map[string]string{"iperf3": "iperf Done.", "wperf": "wperf Done."}[name]; lines[len(lines)-1] != done {
			t.Errorf("%s: last line %q, want %q", name, lines[len(lines)-1], done)
		}
	}
	if lines := e2eLines(wperfRun(t, nil, "-t", "1")); !strings.HasPrefix(lines[1], "      URL: ws://127.0.0.1:") {
		t.Errorf("second line %q, want the URL", lines[1])
	}
}

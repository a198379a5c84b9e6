package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// iperf3Accepts runs iperf3's client with args against a closed port and
// tells whether it got past its option checks (it then fails to connect)
// or refused the command line.
func iperf3Accepts(t *testing.T, port string, args []string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "iperf3", append([]string{"-c", "127.0.0.1", "-p", port}, args...)...).CombinedOutput()
	switch s := string(out); {
	case strings.Contains(s, "unable to connect"):
		return true
	case strings.Contains(s, "parameter error"):
		return false
	default:
		t.Fatalf("iperf3 %q: neither a parameter error nor a connection failure:\n%s", args, s)
		return false
	}
}

// TestIperf3CommandLinesSideBySide runs the same client command lines
// through wperf and iperf3 3.12: each must be accepted by both (wperf then
// fails to connect, exit 1) or refused by both (wperf: exit 2, one line
// that names the option).
func TestIperf3CommandLinesSideBySide(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args    []string
		accept  bool
		mention string // in wperf's error line, when it refuses
	}{
		{[]string{"-t", "3", "-n", "10"}, false, "one test end"},
		{[]string{"-t", "3", "-k", "10"}, false, "one test end"},
		{[]string{"-n", "3", "-k", "10"}, false, "one test end"},
		{[]string{"-n", "10"}, true, ""},
		{[]string{"-k", "10"}, true, ""},
		{[]string{"--connect-timeout", "1000"}, true, ""},
		{[]string{"-b", "100M"}, true, ""},
		{[]string{"-b", "50M", "-P", "2", "-R"}, true, ""},
		{[]string{"--fq-rate", "100M"}, true, ""},
		{[]string{"-S", "52"}, true, ""},
		{[]string{"-S", "064"}, true, ""},
		{[]string{"-S", "0x34"}, true, ""},
		{[]string{"-S", "256"}, false, "--tos"},
		{[]string{"--dscp", "EF"}, true, ""},
		{[]string{"--dscp", "af41"}, true, ""},
		{[]string{"--dscp", "cs1"}, true, ""},
		{[]string{"--dscp", "63"}, true, ""},
		{[]string{"--dscp", "64"}, false, "--dscp"},
		{[]string{"--dscp", "foo"}, false, "--dscp"},
		{[]string{"--cport", "40000"}, true, ""},
		{[]string{"--cport", "70000"}, false, "--cport"},
		{[]string{"-A", "0"}, true, ""},
		{[]string{"-L", "5"}, true, ""},
		{[]string{"-L", "1048576"}, false, "--flowlabel"},
		{[]string{"--snd-timeout", "5000"}, true, ""},
		{[]string{"--snd-timeout", "-1"}, false, "--snd-timeout"},
		{[]string{"--rcv-timeout", "5000", "-R"}, true, ""},
		{[]string{"--rcv-timeout", "5000"}, false, "--rcv-timeout"},
		{[]string{"--rcv-timeout", "10", "-R"}, false, "--rcv-timeout"},
		{[]string{"--extra-data", "lab 1"}, true, ""},
		{[]string{"--timestamps"}, true, ""},
		{[]string{"--timestamps=%T "}, true, ""},
		{[]string{"-I", filepath.Join(t.TempDir(), "pid")}, true, ""},
	}
	_, haveIperf3 := exec.LookPath("iperf3")
	port := e2eClosedPort(t)
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if haveIperf3 == nil {
				if got := iperf3Accepts(t, port, tc.args); got != tc.accept {
					t.Fatalf("iperf3 accepts: %v, the table says %v", got, tc.accept)
				}
			}
			args := append([]string{"-c", "127.0.0.1", "-p", port, "--no-latency", "--connect-timeout", "2s"}, tc.args...)
			if tc.args[0] == "-A" {
				// Run in this process, -A would pin every later test to one CPU.
				if _, err := parseArgs(args); (err == nil) != tc.accept {
					t.Fatalf("wperf %q: parse error %v, want accepted %v", tc.args, err, tc.accept)
				}
				return
			}
			code, _, stderr := runArgs(t, args...)
			switch {
			case tc.accept && code != exitRuntime:
				t.Fatalf("wperf %q: want it to try and fail to connect (exit 1), got exit %d: %s", tc.args, code, stderr)
			case !tc.accept && (code != exitUsage || !strings.Contains(firstLine(stderr), tc.mention)):
				t.Fatalf("wperf %q: want exit 2 naming %q, got exit %d: %s", tc.args, tc.mention, code, stderr)
			}
		})
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// iperf3Options classifies every option of iperf3 3.12's --help: wperf
// supports it (the same letter and long name) or refuses it with a reason.
var iperf3Options = []struct {
	short    byte
	long     string
	supports bool
}{
	{'p', "port", true}, {'f', "format", true}, {'i', "interval", true}, {'I', "pidfile", true},
	{'F', "file", false}, {'A', "affinity", true}, {'B', "bind", true}, {0, "bind-dev", true},
	{'V', "verbose", true}, {'J', "json", true}, {0, "logfile", true}, {0, "forceflush", true},
	{0, "timestamps", true}, {0, "rcv-timeout", true}, {0, "snd-timeout", true}, {'d', "debug", false},
	{'v', "version", true}, {'h', "help", true}, {'s', "server", true}, {'D', "daemon", true},
	{'1', "one-off", true}, {0, "server-bitrate-limit", false}, {0, "idle-timeout", true},
	{0, "rsa-private-key-path", false}, {0, "authorized-users-path", false}, {0, "time-skew-threshold", false},
	{'c', "client", true}, {0, "sctp", false}, {'X', "xbind", false}, {0, "nstreams", false},
	{'u', "udp", true}, {0, "connect-timeout", true}, {'b', "bitrate", true}, {0, "pacing-timer", false},
	{0, "fq-rate", true}, {'t', "time", true}, {'n', "bytes", true}, {'k', "blockcount", true},
	{'l', "length", true}, {0, "cport", true}, {'P', "parallel", true}, {'R', "reverse", true},
	{0, "bidir", true}, {'w', "window", true}, {'C', "congestion", true}, {'M', "set-mss", true},
	{'N', "no-delay", true}, {'4', "version4", true}, {'6', "version6", true}, {'S', "tos", true},
	{0, "dscp", true}, {'L', "flowlabel", true}, {'Z', "zerocopy", true}, {'O', "omit", true},
	{'T', "title", true}, {0, "extra-data", true}, {0, "get-server-output", true},
	{0, "udp-counters-64bit", true}, {0, "repeating-payload", false}, {0, "dont-fragment", false},
	{0, "username", false}, {0, "rsa-public-key-path", false},
}

// TestIperf3OptionsClassified walks iperf3's options: a supported one is
// in wperf's table under iperf3's letter and name; a refused one exits 2
// with a line that names it and says why, never "unknown option". -D is
// in the table only to be refused with the way to run in the background.
func TestIperf3OptionsClassified(t *testing.T) {
	t.Parallel()
	for _, o := range iperf3Options {
		t.Run(o.long, func(t *testing.T) {
			row := findLong(o.long)
			if row == nil || row.short != o.short {
				t.Fatalf("--%s: want a row with letter %q, got %+v", o.long, o.short, row)
			}
			if refused := refusedOption(0, o.long) != nil; refused == o.supports {
				t.Fatalf("--%s: supported %v, but the refusal table says refused=%v", o.long, o.supports, refused)
			}
			if o.supports && o.long != "daemon" {
				return
			}
			for _, form := range refusalForms(o.short, o.long) {
				code, _, stderr := runArgs(t, append(form, "-c", noServer)...)
				line := firstLine(stderr)
				if code != exitUsage || !strings.Contains(line, "--"+o.long) || strings.Contains(line, "unknown") || !strings.Contains(line, ": ") {
					t.Errorf("wperf %q: want exit 2 and a line naming --%s with its reason, got %d: %s", form, o.long, code, line)
				}
			}
		})
	}
}

// refusalForms are the ways a script may write an option: long, with a
// value, and by its letter.
func refusalForms(short byte, long string) [][]string {
	forms := [][]string{{"--" + long}, {"--" + long + "=x"}}
	if short != 0 {
		forms = append(forms, []string{"-" + string(short)})
	}
	return forms
}

// TestIperf3HelpListsNoOtherOption reads the installed iperf3's --help:
// every long option it lists must be in iperf3Options, so an option
// added to iperf3 shows up here.
func TestIperf3HelpListsNoOtherOption(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 is not installed (.ci/run installs it)")
	}
	out, _ := exec.Command("iperf3", "--help").CombinedOutput()
	known := map[string]bool{}
	for _, o := range iperf3Options {
		known[o.long] = true
	}
	names := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1)
	if len(names) < 50 {
		t.Fatalf("found only %d options in iperf3 --help:\n%s", len(names), out)
	}
	for _, m := range names {
		if !known[m[1]] {
			t.Errorf("iperf3 --help lists --%s, which iperf3Options does not classify", m[1])
		}
	}
}

// TestConnectTimeoutUnits pins --connect-timeout to iperf3's unit,
// milliseconds, with explicit units accepted too.
func TestConnectTimeoutUnits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		value string
		secs  float64 // 0: refused
	}{
		{"1000", 1}, {"250", 0.25}, {"5s", 5}, {"500ms", 0.5}, {"1m", 60}, {"1.5s", 1.5},
		{"0", 0}, {"-5", 0}, {"abc", 0}, {"NaN", 0}, {"5x", 0}, {"2h", 0},
	}
	for _, tc := range cases {
		cfg, err := parseArgs([]string{"-c", noServer, "--connect-timeout", tc.value})
		switch {
		case tc.secs == 0 && err == nil:
			t.Errorf("--connect-timeout %s: accepted as %g s, want a refusal", tc.value, cfg.connectTimeout)
		case tc.secs != 0 && (err != nil || cfg.connectTimeout != tc.secs):
			t.Errorf("--connect-timeout %s: got %v, %v; want %g s", tc.value, cfgSeconds(cfg), err, tc.secs)
		}
	}
}

// TestRcvTimeoutSetsTheIdleWait: --rcv-timeout is milliseconds, the wait
// for received data on a client (with -R or --bidir) and a server.
func TestRcvTimeoutSetsTheIdleWait(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		secs float64 // 0: refused
	}{
		{[]string{"-c", noServer, "-R", "--rcv-timeout", "2500"}, 2.5},
		{[]string{"-c", noServer, "--bidir", "--rcv-timeout", "5s"}, 5},
		{[]string{"-s", "--rcv-timeout", "60000"}, 60},
		{[]string{"-c", noServer, "--rcv-timeout", "2500"}, 0},
		{[]string{"-c", noServer, "-R", "--rcv-timeout", "99"}, 0},
		{[]string{"-s", "--rcv-timeout", "5000", "--idle-timeout", "5"}, 0},
	}
	for _, tc := range cases {
		cfg, err := parseArgs(tc.args)
		switch {
		case tc.secs == 0 && err == nil:
			t.Errorf("%q: accepted, want a usage error", tc.args)
		case tc.secs != 0 && (err != nil || cfg.idleTimeout != tc.secs):
			t.Errorf("%q: got %v; want an idle wait of %g s", tc.args, err, tc.secs)
		}
	}
}

func cfgSeconds(c *config) float64 {
	if c == nil {
		return 0
	}
	return c.connectTimeout
}

// TestConnectTimeoutIsMilliseconds gives up on a peer that accepts TCP
// and never answers: --connect-timeout 300 must end the wait in well
// under the seconds the old unit would have taken.
func TestConnectTimeoutIsMilliseconds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the kernel completes handshakes; nobody answers
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	start := time.Now()
	code, _, stderr := runArgs(t, "-c", "127.0.0.1", "-p", port, "--no-latency", "--connect-timeout", "300")
	if took := time.Since(start); code != exitRuntime || took > 5*time.Second {
		t.Fatalf("want exit 1 well within 5 s (300 ms asked), got exit %d after %v: %s", code, took, stderr)
	}
}

// TestTOSAndDSCPValues pins the byte -S and --dscp give, and that the two
// may not disagree.
func TestTOSAndDSCPValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		tos  int // -1: refused
	}{
		{[]string{"-S", "52"}, 52}, {[]string{"-S", "064"}, 52}, {[]string{"-S", "0x34"}, 52},
		{[]string{"-S", "0"}, 0}, {[]string{"-S", "255"}, 255}, {[]string{"-S", "256"}, -1}, {[]string{"-S", "-1"}, -1},
		{[]string{"--dscp", "EF"}, 46 << 2}, {[]string{"--dscp", "ef"}, 46 << 2}, {[]string{"--dscp", "AF41"}, 34 << 2},
		{[]string{"--dscp", "af11"}, 10 << 2}, {[]string{"--dscp", "AF43"}, 38 << 2}, {[]string{"--dscp", "CS0"}, 0},
		{[]string{"--dscp", "cs7"}, 56 << 2}, {[]string{"--dscp", "VA"}, 44 << 2}, {[]string{"--dscp", "le"}, 1 << 2},
		{[]string{"--dscp", "0x2e"}, 46 << 2}, {[]string{"--dscp", "63"}, 63 << 2},
		{[]string{"--dscp", "64"}, -1}, {[]string{"--dscp", "AF44"}, -1}, {[]string{"--dscp", "CS8"}, -1},
		{[]string{"-S", "184", "--dscp", "EF"}, 184}, {[]string{"-S", "4", "--dscp", "EF"}, -1},
	}
	for _, tc := range cases {
		cfg, err := parseArgs(append([]string{"-c", noServer}, tc.args...))
		switch {
		case tc.tos < 0 && err == nil:
			t.Errorf("%q: accepted as TOS %d, want a refusal", tc.args, cfg.tos)
		case tc.tos >= 0 && (err != nil || cfg.tos != tc.tos):
			t.Errorf("%q: got %v; want TOS %d", tc.args, err, tc.tos)
		}
	}
}

// TestTokenSources pins where the shared secret comes from: --token, then
// --token-file (one trailing newline dropped), then WPERF_TOKEN.
func TestTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fromFile, crlf, empty, onlyNewline, twoLines := file("t", "from-file\n"), file("crlf", "crlf-token\r\n"), file("empty", ""), file("nl", "\n"), file("two", "a\nb\n")
	cases := []struct {
		name, env string
		args      []string
		want      string // "": refused
	}{
		{"flag wins over file and env", "from-env", []string{"--token", "from-flag", "--token-file", fromFile}, "from-flag"},
		{"file wins over env", "from-env", []string{"--token-file", fromFile}, "from-file"},
		{"env alone", "from-env", nil, "from-env"},
		{"CRLF trimmed", "", []string{"--token-file", crlf}, "crlf-token"},
		{"empty file", "from-env", []string{"--token-file", empty}, ""},
		{"only a newline", "", []string{"--token-file", onlyNewline}, ""},
		{"two lines", "", []string{"--token-file", twoLines}, ""},
		{"missing file", "", []string{"--token-file", filepath.Join(dir, "none")}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WPERF_TOKEN", tc.env)
			for _, mode := range [][]string{{"-s"}, {"-c", noServer}} {
				cfg, err := parseArgs(append(mode, tc.args...))
				switch {
				case tc.want == "" && err == nil:
					t.Errorf("%q: accepted with token %q, want a usage error", append(mode, tc.args...), cfg.token)
				case tc.want == "" && !strings.Contains(err.Error(), "--token-file"):
					t.Errorf("%q: the error does not name --token-file: %v", tc.args, err)
				case tc.want != "" && (err != nil || cfg.token != tc.want):
					t.Errorf("%q: got %v; want token %q", append(mode, tc.args...), err, tc.want)
				}
			}
		})
	}
	t.Run("no source", func(t *testing.T) {
		t.Setenv("WPERF_TOKEN", "")
		if cfg, err := parseArgs([]string{"-s"}); err != nil || cfg.token != "" {
			t.Fatalf("got %v, token %q; want no token", err, cfg.token)
		}
	})
}

// TestTokenFileAuthenticates runs a test whose server reads its token
// from the environment and whose client reads it from a file: the token
// never appears on either command line, and a wrong file is refused.
func TestTokenFileAuthenticates(t *testing.T) {
	t.Setenv("WPERF_TOKEN", "s3cret-from-env")
	srv := startE2EServer(t)
	t.Setenv("WPERF_TOKEN", "")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("s3cret-from-env\n"), 0o600)
	os.WriteFile(bad, []byte("wrong\n"), 0o600)
	srv.mustRun(t, "-t", "0.3", "--no-latency", "--token-file", good)
	r := e2eRun(srv.args("-t", "0.3", "--no-latency", "--token-file", bad)...)
	if r.code != exitRuntime || !strings.Contains(r.stderr, "authentication failed") {
		t.Fatalf("a wrong token file: want an authentication failure, got %v", r)
	}
}

// TestDaemonRefused: -D gets one line that explains why and what to do.
func TestDaemonRefused(t *testing.T) {
	t.Parallel()
	code, _, stderr := runArgs(t, "-s", "-D")
	if line := firstLine(stderr); code != exitUsage || !strings.Contains(line, "--daemon") || !strings.Contains(line, "systemd") || !strings.Contains(line, "Deploying") {
		t.Fatalf("want exit 2 and a line pointing at systemd and README's Deploying, got %d: %s", code, stderr)
	}
}

// TestTimestampFormats renders strftime formats against date(1) in the C
// locale, the strftime iperf3 calls, for one fixed moment.
func TestTimestampFormats(t *testing.T) {
	if _, err := exec.LookPath("date"); err != nil {
		t.Skip("no date(1)")
	}
	at := time.Date(2026, 3, 5, 7, 4, 9, 0, time.UTC)
	for _, f := range []string{defaultTimestampFormat, "%c", "%Y-%m-%d %H:%M:%S", "%F %T", "%a %A %b %B %h", "%D %R %r %x %X",
		"%e|%j|%I %p|%y|%u|%w|%s", "%z %Z", "%% literal %n%t", "no conversions"} {
		cmd := exec.Command("date", "-u", "-d", "@"+strconv.FormatInt(at.Unix(), 10), "+"+f)
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("date +%q: %v", f, err)
		}
		if got, want := timestamp(f, at), strings.TrimSuffix(string(out), "\n"); got != want {
			t.Errorf("timestamp(%q) = %q, date(1) says %q", f, got, want)
		}
	}
}

// TestTimestampsPrefixEveryLine: with --timestamps every text line starts
// with the time, before -T's title, as iperf3 prints them; JSON is not
// touched.
func TestTimestampsPrefixEveryLine(t *testing.T) {
	srv := startE2EServer(t)
	r := srv.mustRun(t, "-t", "0.5", "-i", "0.1", "--no-latency", "-T", "lab", "--timestamps=%Y|")
	year := strconv.Itoa(time.Now().Year()) + "|lab:  "
	for _, l := range e2eLines(r.stdout) {
		if !strings.HasPrefix(l, year) {
			t.Fatalf("line %q does not start with %q", l, year)
		}
	}
	doc := e2eDecode(t, srv.mustRun(t, "-t", "0.3", "--no-latency", "-J", "--timestamps").stdout)
	if _, ok := doc["start"]; !ok {
		t.Fatal("-J --timestamps: the document lost its start")
	}
	// A -J server's log is one JSON object per line, stamps or not.
	jsrv := startE2EServer(t, "-J", "--timestamps")
	jsrv.mustRun(t, "-t", "0.3", "--no-latency")
	jsrv.mustRun(t, "--ping", "--ping-count", "1")
	e2eWaitFor(t, 5*time.Second, "the server's records of the test and the ping", func() bool {
		return strings.Contains(jsrv.out.String(), `"end"`) && strings.Contains(jsrv.out.String(), `"event":"ping"`)
	})
	for _, l := range e2eLines(jsrv.out.String()) {
		if !json.Valid([]byte(l)) {
			t.Errorf("-J --timestamps server log line is not JSON: %q", l)
		}
	}
}

// TestExtraDataInJSON: --extra-data is the top-level extra_data of the
// client's document and of the server's, as iperf3 3.12 writes it (the
// installed iperf3 is asked too); -S is start.test_start.tos on both.
func TestExtraDataInJSON(t *testing.T) {
	srv := startE2EServer(t, "-J")
	r := srv.mustRun(t, "-t", "0.3", "--no-latency", "-J", "--get-server-output", "--extra-data", "rack 7", "-S", "0x20")
	doc := e2eDecode(t, r.stdout)
	if got := e2eInt(t, doc, "start.test_start.tos"); got != 0x20 {
		t.Errorf("client's start.test_start.tos %d, want 32", got)
	}
	if got := e2eInt(t, doc["server_output_json"], "start.test_start.tos"); got != 0x20 {
		t.Errorf("server's start.test_start.tos %d, want 32", got)
	}
	if doc["extra_data"] != "rack 7" {
		t.Errorf("client document: extra_data %v, want \"rack 7\"", doc["extra_data"])
	}
	if server, _ := doc["server_output_json"].(map[string]any); server == nil || server["extra_data"] != "rack 7" {
		t.Errorf("server_output_json: extra_data missing: %v", server)
	}
	e2eWaitFor(t, 5*time.Second, "the server's log document", func() bool { return strings.Contains(srv.out.String(), `"extra_data":"rack 7"`) })
	out := iperf3Run(t, nil, "-t", "1", "-J", "--extra-data", "rack 7")
	if ref := e2eDecode(t, out); ref["extra_data"] != "rack 7" {
		t.Errorf("iperf3's document has no top-level extra_data, so the key path is wrong: %v", ref["extra_data"])
	}
}

// TestCportBindsEachStream: --cport with -P gives the streams consecutive
// local ports, as the client's own report shows them.
func TestCportBindsEachStream(t *testing.T) {
	srv := startE2EServer(t)
	base := e2eClosedPort(t) // free now; the next one is checked below
	cport, _ := strconv.Atoi(base)
	if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cport+1)); err != nil {
		t.Skipf("port %d is taken", cport+1)
	} else {
		ln.Close()
	}
	doc := e2eDecode(t, srv.mustRun(t, "-t", "0.3", "--no-latency", "-J", "-P", "2", "--cport", base).stdout)
	var ports []int
	for _, c := range e2eList(t, doc, "start.connected") {
		ports = append(ports, int(e2eInt(t, c, "local_port")))
	}
	if len(ports) != 2 || ports[0] != cport || ports[1] != cport+1 {
		t.Fatalf("streams' local ports %v, want [%d %d]", ports, cport, cport+1)
	}
}

// TestServerIntervalAndFormat: a server's own -i sets the intervals of
// the report it sends (--get-server-output), and its -f the units of
// that report and of its log line.
func TestServerIntervalAndFormat(t *testing.T) {
	srv := startE2EServer(t, "-i", "0.2", "-f", "k")
	r := srv.mustRun(t, "-t", "1", "-i", "1", "--no-latency", "--get-server-output")
	_, text, found := strings.Cut(r.stdout, "Server output:")
	if !found {
		t.Fatalf("no server output:\n%s", r.stdout)
	}
	intervals := regexp.MustCompile(`(?m)^\[\s*1\]\s+\d+\.\d+-\d+\.\d+\s+sec\s.*Kbits/sec`).FindAllString(text, -1)
	if len(intervals) < 5 {
		t.Errorf("server output has %d interval lines in Kbits/sec, want 5 of 0.2 s and the total:\n%s", len(intervals), text)
	}
	e2eWaitFor(t, 5*time.Second, "the server's log line", func() bool { return strings.Contains(srv.out.String(), "Kbits/sec") })
}

// TestBindWithDevice: -B ADDR%DEV is -B ADDR and --bind-dev DEV, as in
// iperf3.
func TestBindWithDevice(t *testing.T) {
	t.Parallel()
	cfg, err := parseArgs([]string{"-c", noServer, "-B", "127.0.0.1%lo"})
	if err != nil || cfg.bind != "127.0.0.1" || cfg.bindDev != "lo" {
		t.Fatalf("-B 127.0.0.1%%lo: got %v, bind %q, dev %q", err, cfgBind(cfg), cfgDev(cfg))
	}
	for _, args := range [][]string{
		{"-c", noServer, "-B", "127.0.0.1%"},
		{"-c", noServer, "-B", "127.0.0.1%lo", "--bind-dev", "eth0"},
		{"-c", noServer, "--bind-dev", "a-name-too-long-for-linux"},
	} {
		if code, _, stderr := runArgs(t, args...); code != exitUsage || !strings.Contains(stderr, "-B") && !strings.Contains(stderr, "--bind") {
			t.Errorf("%q: want exit 2 naming the option, got %d: %s", args, code, stderr)
		}
	}
}

func cfgBind(c *config) string {
	if c == nil {
		return ""
	}
	return c.bind
}

func cfgDev(c *config) string {
	if c == nil {
		return ""
	}
	return c.bindDev
}

// TestAffinityValues: -A takes a CPU number, and iperf3's N,M with a
// warning that the server's CPU is not set.
func TestAffinityValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		value string
		cpu   int // -1: refused
		warns bool
	}{
		{"0", 0, false}, {"3", 3, false}, {"1,0", 1, true},
		{"-1", -1, false}, {"1024", -1, false}, {"x", -1, false}, {"1,", -1, false}, {"1,x", -1, false},
	}
	for _, tc := range cases {
		cfg, err := parseArgs([]string{"-c", noServer, "-A", tc.value})
		switch {
		case tc.cpu < 0 && err == nil:
			t.Errorf("-A %s: accepted, want a usage error", tc.value)
		case tc.cpu >= 0 && (err != nil || cfg.affinity != tc.cpu):
			t.Errorf("-A %s: got %v; want CPU %d", tc.value, err, tc.cpu)
		case tc.cpu >= 0 && (len(cfg.warnings) > 0) != tc.warns:
			t.Errorf("-A %s: warnings %q, want a warning: %v", tc.value, cfg.warnings, tc.warns)
		}
	}
}

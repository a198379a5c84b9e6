package main

// main_test.go covers the command line: getopt-style parsing, the checks
// that span several options, the usage error format and exit codes, and
// --help / --version. TestMain is here too.

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMain removes the wperf binary that the tests built (wperfBinary, in
// lab_helpers_test.go), once all tests ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if labBinary.dir != "" {
		os.RemoveAll(labBinary.dir)
	}
	os.Exit(code)
}

// runArgs calls run in-process and returns its exit code and output.
func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// noServer is a client target that fails at once without a DNS lookup,
// should a bad command line ever be accepted and run.
const noServer = "ws://127.0.0.1:1/"

// TestFlagErrors runs bad command lines: each must exit 2 with one line
// that names the offending option (or argument), then the --help hint,
// and print nothing on standard output.
func TestFlagErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		// The error line must mention one of these.
		mention []string
	}{
		{"unknown long option", []string{"-c", noServer, "--bogus"}, []string{"--bogus"}},
		{"unknown short option", []string{"-c", noServer, "-x"}, []string{"-x"}},
		{"unknown letter inside a group", []string{"-c", noServer, "-Rx"}, []string{"-x"}},
		{"missing value short", []string{"-c", noServer, "-t"}, []string{"-t"}},
		{"missing value long", []string{"-c", noServer, "--time"}, []string{"--time"}},
		{"switch with a value", []string{"-c", noServer, "--reverse=1"}, []string{"--reverse"}},
		{"parallel zero", []string{"-c", noServer, "-P", "0"}, []string{"-P", "--parallel"}},
		{"parallel too many", []string{"-c", noServer, "-P", "129"}, []string{"-P", "--parallel"}},
		{"parallel not a number", []string{"-c", noServer, "--parallel=four"}, []string{"-P", "--parallel"}},
		{"negative time", []string{"-c", noServer, "-t", "-1"}, []string{"-t", "--time"}},
		{"time not a number", []string{"-c", noServer, "-t", "abc"}, []string{"-t", "--time"}},
		{"time NaN", []string{"-c", noServer, "-t", "NaN"}, []string{"-t", "--time"}},
		{"length zero", []string{"-c", noServer, "-l", "0"}, []string{"-l", "--length"}},
		{"length over 16M", []string{"-c", noServer, "-l", "17M"}, []string{"-l", "--length"}},
		{"bytes zero", []string{"-c", noServer, "-n", "0"}, []string{"-n", "--bytes"}},
		{"bytes garbage", []string{"-c", noServer, "-n", "lots"}, []string{"-n", "--bytes"}},
		{"window too small", []string{"-c", noServer, "-w", "10"}, []string{"-w", "--window"}},
		{"port zero", []string{"-c", noServer, "-p", "0"}, []string{"-p", "--port"}},
		{"port too big", []string{"-s", "--port=70000"}, []string{"-p", "--port"}},
		{"reverse and bidir", []string{"-c", noServer, "-R", "--bidir"}, []string{"-R", "--bidir"}},
		{"bytes and blocks", []string{"-c", noServer, "-n", "1", "-k", "1"}, []string{"-n", "-k"}},
		{"json and json-stream", []string{"-c", noServer, "-J", "--json-stream"}, []string{"-J", "--json-stream"}},
		{"omit not a number", []string{"-c", noServer, "-O", "x"}, []string{"-O", "--omit"}},
		{"client without host", []string{"-c"}, []string{"-c"}},
		{"client with empty host", []string{"-c", ""}, []string{"-c"}},
		{"no mode at all", nil, []string{"-s", "-c"}},
		{"options but no mode", []string{"-t", "1"}, []string{"-s", "-c"}},
		{"server and client", []string{"-s", "-c", "x"}, []string{"-s", "-c"}},
		{"client option on a server", []string{"-s", "-R"}, []string{"-R", "--reverse"}},
		{"client option on a server, long", []string{"-s", "--bidir"}, []string{"--bidir"}},
		{"server option on a client", []string{"-c", noServer, "--max-clients", "2"}, []string{"--max-clients"}},
		{"bad format", []string{"-c", noServer, "-f", "x"}, []string{"-f", "--format"}},
		{"format too long", []string{"-c", noServer, "-f", "mm"}, []string{"-f", "--format"}},
		{"bad traceroute protocol", []string{"--traceroute", "h", "--tr-proto", "x"}, []string{"--tr-proto"}},
		{"four and six", []string{"-c", noServer, "-4", "-6"}, []string{"-4", "-6"}},
		{"interval too short", []string{"-c", noServer, "-i", "0.05"}, []string{"-i"}},
		{"positional argument", []string{"-c", noServer, "extra"}, []string{"extra"}},
		{"argument after --", []string{"-c", noServer, "--", "extra"}, []string{"extra"}},
		{"bind not an address", []string{"-c", noServer, "-B", "example.com"}, []string{"--bind"}},
		{"empty token", []string{"-s", "--token", ""}, []string{"--token"}},
		{"idle timeout not a number", []string{"-s", "--idle-timeout", "soon"}, []string{"--idle-timeout"}},
		{"max clients zero", []string{"-s", "--max-clients", "0"}, []string{"--max-clients"}},
		{"max duration too short", []string{"-s", "--max-duration", "0.5"}, []string{"--max-duration"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runArgs(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout should be empty, got %q", stdout)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("want an error line and a hint line, got %q", stderr)
			}
			if !strings.HasPrefix(lines[0], "wperf: ") {
				t.Errorf("error line %q does not start with \"wperf: \"", lines[0])
			}
			found := false
			for _, m := range tc.mention {
				found = found || strings.Contains(lines[0], m)
			}
			if !found {
				t.Errorf("error line %q mentions none of %q", lines[0], tc.mention)
			}
			if lines[1] != "Try 'wperf --help' for more information." {
				t.Errorf("hint line is %q", lines[1])
			}
		})
	}
}

// TestFlagHelpAndVersion: -h and -v print to standard output and exit 0,
// whatever else is on the line.
func TestFlagHelpAndVersion(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "Usage: wperf -s"},
		{[]string{"--help"}, "Usage: wperf -s"},
		{[]string{"-c", "h", "-P", "4", "-h"}, "Usage: wperf -s"},
		{[]string{"-h", "-v"}, "Usage: wperf -s"},
		{[]string{"-v"}, "wperf " + version + " (protocol " + subprotocolV1 + ")"},
		{[]string{"--version"}, "wperf " + version},
		{[]string{"-s", "-v"}, "wperf " + version},
	}
	for _, tc := range cases {
		code, stdout, stderr := runArgs(t, tc.args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", tc.args, code, stderr)
		}
		if !strings.Contains(stdout, tc.want) {
			t.Errorf("%q: stdout %q lacks %q", tc.args, stdout, tc.want)
		}
	}
}

// TestUsageListsEveryOption: --help is generated from the option table,
// so every option shows up, with its letter where it has one.
func TestUsageListsEveryOption(t *testing.T) {
	t.Parallel()
	_, help, _ := runArgs(t, "--help")
	for _, o := range options {
		name := "--" + o.long
		if o.short != 0 {
			name = "-" + string(o.short) + ", " + name
		}
		if !strings.Contains(help, name) {
			t.Errorf("--help lacks %q", name)
		}
	}
	for _, section := range []string{"Server:", "Client:", "Traceroute:"} {
		if !strings.Contains(help, "\n"+section+"\n") {
			t.Errorf("--help lacks the %q section", section)
		}
	}
}

// TestFlagParseForms: the getopt_long spellings iperf3 users type all
// reach the same settings.
func TestFlagParseForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args  []string
		check func(c *config) bool
	}{
		{[]string{"-c", "h", "-p5201"}, func(c *config) bool { return c.port == 5201 }},
		{[]string{"-c", "h", "--port=5201"}, func(c *config) bool { return c.port == 5201 }},
		{[]string{"-c", "h", "--port", "5201"}, func(c *config) bool { return c.port == 5201 }},
		{[]string{"-ch", "-R4"}, func(c *config) bool { return c.host == "h" && c.reverse && c.family == 4 }},
		{[]string{"-c", "h", "-RP4"}, func(c *config) bool { return c.reverse && c.parallel == 4 }},
		{[]string{"-c", "h", "-t", "0.5", "-O", "0.25"}, func(c *config) bool { return c.duration == 0.5 && c.omit == 0.25 }},
		{[]string{"-c", "h", "-n", "20M"}, func(c *config) bool { return c.bytes == 20<<20 }},
		{[]string{"-c", "h", "-n", "1.5K"}, func(c *config) bool { return c.bytes == 1536 }},
		{[]string{"-c", "h", "-k", "300", "-l", "16K"}, func(c *config) bool { return c.blocks == 300 && c.length == 16<<10 }},
		{[]string{"-c", "h", "-l", "16M"}, func(c *config) bool { return c.length == 16<<20 }},
		{[]string{"-c", "h", "-i", "0"}, func(c *config) bool { return c.interval == 0 }},
		{[]string{"-c", "h", "-f", "M", "-T", "lab"}, func(c *config) bool { return c.format == 'M' && c.title == "lab" }},
		{[]string{"-c", "h", "-O", "30", "-t", "1"}, func(c *config) bool { return c.omit == 30 && c.duration == 1 }}, // -t counts after -O
		{[]string{"-s", "-1", "--max-clients", "1", "--token", "x"}, func(c *config) bool { return c.oneOff && c.maxClients == 1 && c.token == "x" }},
		{[]string{"--traceroute", "h", "-n"}, func(c *config) bool { return c.mode == modeTrace && c.numeric && c.bytes == 0 }},
		{[]string{"-c", "h", "--"}, func(c *config) bool { return c.mode == modeClient }},
	}
	for _, tc := range cases {
		c, err := parseArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%q: parsed to %+v", tc.args, *c)
		}
	}
}

// TestReadmeQuickStart: README's first command block is the build (and a
// run), with no go test in it, and the test suite's command has a block of
// its own, so pasting the first never starts the long test run. The text
// is checked, not run.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), 2)
	if len(blocks) < 2 {
		t.Fatal("README.md has fewer than two sh blocks")
	}
	first, second := blocks[0][1], blocks[1][1]
	if !strings.Contains(first, "go build") || strings.Contains(first, "go test") {
		t.Errorf("README's first block %q: want the build and a test run, without go test", first)
	}
	if strings.TrimSpace(second) != "go test -race -count=1 -timeout 20m ./..." {
		t.Errorf("README's second block %q: want the test command alone", second)
	}
}

package main

// server_flags_test.go covers the server's caps on the command line and
// the optional option value (--trust-proxy[=HEADER]) that parseArgs
// takes as getopt_long's optional_argument does.

import (
	"strings"
	"testing"
)

// TestServerCapFlagsBadValues: each bad value exits 2 with one error line
// that names the option, then the --help hint.
func TestServerCapFlagsBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"-s", "--max-clients-per-ip", "0"}, "--max-clients-per-ip"},
		{[]string{"-s", "--max-clients-per-ip", "four"}, "--max-clients-per-ip"},
		{[]string{"-s", "--max-connections", "0"}, "--max-connections"},
		{[]string{"-s", "--max-connections-per-ip", "-1"}, "--max-connections-per-ip"},
		{[]string{"-s", "--max-reverse-traces", "0"}, "--max-reverse-traces"},
		{[]string{"-s", "--max-reverse-traces", "1001"}, "--max-reverse-traces"},
		{[]string{"-s", "--trust-proxy=forwarded"}, "--trust-proxy"},
		// An optional value never comes from the next argument.
		{[]string{"-s", "--trust-proxy", "x-real-ip"}, `"x-real-ip"`},
		{[]string{"-c", noServer, "--max-clients-per-ip", "2"}, "--max-clients-per-ip"},
	} {
		var out, errOut atkLog
		code := run(tc.args, &out, &errOut)
		lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
		if code != exitUsage || len(lines) != 2 || !strings.Contains(lines[0], tc.mention) || out.String() != "" {
			t.Errorf("wperf %q: exit %d, stderr %q: want 2 and one line naming %s", tc.args, code, errOut.String(), tc.mention)
		}
	}
}

// TestServerCapFlagsParse: defaults, values, and the forms of an optional
// value.
func TestServerCapFlagsParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args  []string
		check func(c *config) bool
	}{
		{[]string{"-s"}, func(c *config) bool {
			return c.maxClientsPerIP == 4 && c.maxConns == 256 && c.maxConnsPerIP == 16 && c.maxReverseTraces == 4 && c.trustProxy == ""
		}},
		{[]string{"-s", "--max-clients-per-ip", "2", "--max-connections=50", "--max-connections-per-ip", "5", "--max-reverse-traces", "1"}, func(c *config) bool {
			return c.maxClientsPerIP == 2 && c.maxConns == 50 && c.maxConnsPerIP == 5 && c.maxReverseTraces == 1
		}},
		{[]string{"-s", "--trust-proxy"}, func(c *config) bool { return c.trustProxy == proxyXFF }},
		{[]string{"-s", "--trust-proxy=x-forwarded-for"}, func(c *config) bool { return c.trustProxy == proxyXFF }},
		{[]string{"-s", "--trust-proxy=X-Real-IP"}, func(c *config) bool { return c.trustProxy == proxyRealIP }},
		{[]string{"-s", "--trust-proxy", "-1"}, func(c *config) bool { return c.trustProxy == proxyXFF && c.oneOff }},
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

// TestOptionalValueInHelp: --help shows an optional value attached, as
// iperf3 shows --timestamps[=FORMAT].
func TestOptionalValueInHelp(t *testing.T) {
	t.Parallel()
	var out, errOut atkLog
	run([]string{"--help"}, &out, &errOut)
	if !strings.Contains(out.String(), "--trust-proxy[=HEADER] ") {
		t.Errorf("--help lacks --trust-proxy[=HEADER]:\n%s", out.String())
	}
}

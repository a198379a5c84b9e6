package main

// reach_test.go covers the address forms of -c and the command line of
// TLS and proxies: every new option's bad values (exit 2, one line) and
// the rules between them.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw     string
		port    int
		portSet bool
		want    string // the URL, or "" for an error
		errHas  string
	}{
		{"example.net", 8765, false, "ws://example.net:8765/", ""},
		{"example.net", 9000, true, "ws://example.net:9000/", ""},
		{"127.0.0.1", 8765, false, "ws://127.0.0.1:8765/", ""},
		{"127.0.0.1:8765", 8765, false, "ws://127.0.0.1:8765/", ""},
		{"127.0.0.1:9000", 8765, false, "ws://127.0.0.1:9000/", ""},
		{"127.0.0.1:9000", 9000, true, "ws://127.0.0.1:9000/", ""},
		{"[::1]:8765", 8765, false, "ws://[::1]:8765/", ""},
		{"[::1]", 8765, false, "ws://[::1]:8765/", ""},
		{"::1", 8765, false, "ws://[::1]:8765/", ""},
		{"2001:db8::1", 5201, true, "ws://[2001:db8::1]:5201/", ""},
		{"host.example:443", 8765, false, "ws://host.example:443/", ""},
		{"ws://example.net/", 8765, false, "ws://example.net:80/", ""},
		{"ws://example.net", 8765, false, "ws://example.net:80/", ""},
		{"wss://example.net/wperf/", 8765, false, "wss://example.net:443/wperf/", ""},
		{"wss://example.net/wperf/", 8443, true, "wss://example.net:8443/wperf/", ""},
		{"WSS://example.net:8443/x?y=1", 8765, false, "wss://example.net:8443/x?y=1", ""},
		{"https://example.net", 8765, false, "wss://example.net:443/", ""},
		{"http://example.net:8080/p", 8765, false, "ws://example.net:8080/p", ""},
		{"ws://[2001:db8::1]:8765/", 8765, false, "ws://[2001:db8::1]:8765/", ""},
		{"wss://[::1]/", 8765, false, "wss://[::1]:443/", ""},

		{"ws://2001:db8::1:8765/", 8765, false, "", "brackets"},
		{"wss://::1/", 8765, false, "", "brackets"},
		{"2001:db8::1:99999", 8765, false, "", "IPv6"}, // not an address: a port is missing its brackets
		{"host:port", 8765, false, "", "port"},
		{"host:0", 8765, false, "", "port"},
		{"host:65536", 8765, false, "", "port"},
		{"127.0.0.1:9000", 8765, true, "", "disagree"},
		{"ws://h:9000/", 8765, true, "", "disagree"},
		{"ftp://example.net/", 8765, false, "", "ws:// or wss://"},
		{"ws:///nohost", 8765, false, "", "no host"},
		{"ws://user:pw@h/", 8765, false, "", "--token"},
		{"host/path", 8765, false, "", "URL"},
		{"[zz]:80", 8765, false, "", "IPv6"},
		{"", 8765, false, "", "want HOST"},
		{" host", 8765, false, "", "want HOST"},
	}
	for _, c := range cases {
		u, err := parseTarget(c.raw, c.port, c.portSet)
		switch {
		case c.want != "" && err != nil:
			t.Errorf("parseTarget(%q, %d, %v): %v", c.raw, c.port, c.portSet, err)
		case c.want != "" && u.String() != c.want:
			t.Errorf("parseTarget(%q, %d, %v) = %s, want %s", c.raw, c.port, c.portSet, u, c.want)
		case c.want == "" && err == nil:
			t.Errorf("parseTarget(%q, %d, %v) = %s, want an error", c.raw, c.port, c.portSet, u)
		case c.want == "" && (!errors.Is(err, errBadAddress) || !strings.Contains(err.Error(), c.errHas)):
			t.Errorf("parseTarget(%q, %d, %v): error %q, want errBadAddress saying %q", c.raw, c.port, c.portSet, err, c.errHas)
		}
	}
}

// reachFiles makes the files the TLS options name: a certificate and key
// pair, a CA file, and a file that is no PEM at all.
func reachFiles(t *testing.T) (cert, key, junk string) {
	t.Helper()
	dir := t.TempDir()
	c, err := makeSelfSigned("")
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := saveCertificate(c, dir, cert, key); err != nil {
		t.Fatal(err)
	}
	junk = filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cert, key, junk
}

// TestReachFlagErrors: bad values and combinations of the TLS and proxy
// options exit 2 with one line that names the option, as every option's
// do (TestFlagErrors has the format).
func TestReachFlagErrors(t *testing.T) {
	t.Parallel()
	cert, key, junk := reachFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	wss := "wss://127.0.0.1:1/"
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"cert missing", []string{"-s", "--cert", missing, "--key", key}, "--cert"},
		{"key missing", []string{"-s", "--cert", cert, "--key", missing}, "--key"},
		{"cert without key", []string{"-s", "--cert", cert}, "--key"},
		{"key without cert", []string{"-s", "--key", key}, "--cert"},
		{"cert not PEM", []string{"-s", "--cert", junk, "--key", key}, "--cert"},
		{"cert and tls", []string{"-s", "--cert", cert, "--key", key, "--tls"}, "--tls"},
		{"cert and tls-dir", []string{"-s", "--cert", cert, "--key", key, "--tls-dir", t.TempDir()}, "--tls"},
		{"tls-dir empty", []string{"-s", "--tls-dir", ""}, "--tls-dir"},
		{"tls-dir a file", []string{"-s", "--tls-dir", cert}, "--tls-dir"},
		{"also-plain alone", []string{"-s", "--tls-also-plain"}, "--tls-also-plain"},
		{"tls is a switch", []string{"-s", "--tls=yes"}, "--tls"},
		{"cert on a client", []string{"-c", wss, "--cert", cert}, "--cert"},
		{"ca on a server", []string{"-s", "--ca", cert}, "--ca"},
		{"ca missing", []string{"-c", wss, "--ca", missing}, "--ca"},
		{"ca not PEM", []string{"-c", wss, "--ca", junk}, "--ca"},
		{"ca for ws://", []string{"-c", noServer, "--ca", cert}, "--ca"},
		{"fingerprint without sha256:", []string{"-c", wss, "--fingerprint", strings.Repeat("ab", 32)}, "--fingerprint"},
		{"fingerprint short", []string{"-c", wss, "--fingerprint", "sha256:abcd"}, "--fingerprint"},
		{"fingerprint not hex", []string{"-c", wss, "--fingerprint", "sha256:" + strings.Repeat("zz", 32)}, "--fingerprint"},
		{"fingerprint for ws://", []string{"-c", noServer, "--fingerprint", "sha256:" + strings.Repeat("ab", 32)}, "--fingerprint"},
		{"insecure for ws://", []string{"-c", noServer, "--insecure"}, "--insecure"},
		{"insecure and fingerprint", []string{"-c", wss, "--insecure", "--fingerprint", "sha256:" + strings.Repeat("ab", 32)}, "--insecure"},
		{"insecure and ca", []string{"-c", wss, "--insecure", "--ca", cert}, "--insecure"},
		{"ca and fingerprint", []string{"-c", wss, "--ca", cert, "--fingerprint", "sha256:" + strings.Repeat("ab", 32)}, "--fingerprint"},
		{"insecure has no letter", []string{"-c", wss, "-k"}, "-k"},
		{"proxy https", []string{"-c", noServer, "--proxy", "https://proxy:3128"}, "--proxy"},
		{"proxy socks", []string{"-c", noServer, "--proxy", "socks5://proxy:1080"}, "--proxy"},
		{"proxy no host", []string{"-c", noServer, "--proxy", "http://:3128"}, "--proxy"},
		{"proxy bad port", []string{"-c", noServer, "--proxy", "proxy:99999"}, "--proxy"},
		{"proxy with a path", []string{"-c", noServer, "--proxy", "http://proxy:3128/x"}, "--proxy"},
		{"proxy on a server", []string{"-s", "--proxy", "http://proxy:3128"}, "--proxy"},
		{"v6 URL without brackets", []string{"-c", "ws://2001:db8::1:8765/"}, "brackets"},
		{"port twice", []string{"-c", "127.0.0.1:9000", "-p", "8765"}, "-p"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runArgs(t, tc.args...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if code != exitUsage || stdout != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], "wperf: ") {
				t.Fatalf("want exit 2, one error line and the hint; got exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			if !strings.Contains(lines[0], tc.mention) {
				t.Errorf("error line %q does not mention %q", lines[0], tc.mention)
			}
		})
	}
}

// TestReachFlagForms: good values parse to the settings they name.
func TestReachFlagForms(t *testing.T) {
	t.Parallel()
	cert, key, _ := reachFiles(t)
	pin := "sha256:" + strings.Repeat("AB:", 31) + "AB"
	cases := []struct {
		args  []string
		check func(c *config) bool
	}{
		{[]string{"-s", "--tls"}, func(c *config) bool { return c.reach.selfSigned }},
		{[]string{"-s", "--tls-dir", "/var/lib/wperf"}, func(c *config) bool { return c.reach.selfSigned && c.reach.tlsDir == "/var/lib/wperf" }},
		{[]string{"-s", "--cert", cert, "--key", key, "--tls-also-plain"}, func(c *config) bool { return c.reach.serverCert != nil && c.reach.alsoPlain }},
		{[]string{"-c", "wss://h/", "--fingerprint", pin}, func(c *config) bool {
			return len(c.reach.fingerprint) == 32 && c.reach.fingerprint[0] == 0xab && c.reach.clientTLS.VerifyConnection != nil
		}},
		{[]string{"-c", "wss://h/", "--ca", cert}, func(c *config) bool { return c.reach.clientTLS.RootCAs != nil }},
		{[]string{"-c", "wss://h/", "--insecure"}, func(c *config) bool { return c.reach.clientTLS.InsecureSkipVerify }},
		{[]string{"-c", "wss://h/"}, func(c *config) bool {
			return c.reach.clientTLS != nil && c.reach.clientTLS.ServerName == "h" && !c.reach.clientTLS.InsecureSkipVerify
		}},
		{[]string{"-c", "ws://h/"}, func(c *config) bool { return c.reach.clientTLS == nil }},
		{[]string{"-c", "h", "--proxy", "http://u:p%40ss@proxy.example:3128"}, func(c *config) bool {
			p, _ := c.reach.route.proxy.User.Password()
			return c.reach.route.proxy.Host == "proxy.example:3128" && p == "p@ss" && c.reach.route.source == "--proxy"
		}},
		{[]string{"-c", "h", "--proxy", "proxy.example"}, func(c *config) bool { return c.reach.route.proxy.Host == "proxy.example:80" }},
		{[]string{"-c", "127.0.0.1", "--proxy", "proxy.example:3128"}, func(c *config) bool { return c.reach.route == nil }},
		{[]string{"-c", "[::1]:8765", "--proxy", "proxy.example:3128"}, func(c *config) bool { return c.reach.route == nil }},
		{[]string{"-c", "localhost", "--proxy", "proxy.example:3128"}, func(c *config) bool { return c.reach.route == nil }},
	}
	for _, tc := range cases {
		c, err := parseArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%q: parsed to %+v", tc.args, c.reach)
		}
	}
}

// TestBindForms: -B takes -c's address forms (a server's with its port
// too), and an interface name is called one, with --bind-dev suggested.
func TestBindForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args    []string
		bind    string
		port    int
		errHas  string // "" when the line must parse
		errHas2 string
	}{
		{[]string{"-s", "-B", "127.0.0.1"}, "127.0.0.1", 8765, "", ""},
		{[]string{"-s", "-B", "::1"}, "::1", 8765, "", ""},
		{[]string{"-s", "-B", "[::1]"}, "::1", 8765, "", ""},
		{[]string{"-s", "-B", "127.0.0.1:9000"}, "127.0.0.1", 9000, "", ""},
		{[]string{"-s", "-B", "[::1]:9000"}, "::1", 9000, "", ""},
		{[]string{"-s", "-B", "127.0.0.1:9000", "-p", "9000"}, "127.0.0.1", 9000, "", ""},
		{[]string{"-s", "-B", "localhost"}, "localhost", 8765, "", ""},
		{[]string{"-c", noServer, "-B", "[::1]"}, "::1", 1, "", ""},
		{[]string{"-s", "-B", "127.0.0.1:9000", "-p", "9001"}, "", 0, "disagree", ""},
		{[]string{"-s", "-B", "lo"}, "", 0, "lo is a network interface, not an address", "--bind-dev lo"},
		{[]string{"-c", noServer, "-B", "lo"}, "", 0, "lo is a network interface, not an address", "127.0.0.1"},
		{[]string{"-c", noServer, "-B", "127.0.0.1:9000"}, "", 0, "--cport", ""},
		{[]string{"-s", "-B", "ws://127.0.0.1/"}, "", 0, "want an address", ""},
		{[]string{"-s", "-B", "2001:db8::1:99999"}, "", 0, "IPv6", ""},
	}
	for _, tc := range cases {
		c, err := parseArgs(tc.args)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.errHas == "" && (c.bind != tc.bind || tc.args[0] == "-s" && c.port != tc.port):
			t.Errorf("%q: bind %q port %d, want %q %d", tc.args, c.bind, c.port, tc.bind, tc.port)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), tc.errHas2)):
			t.Errorf("%q: error %v, want one with %q and %q", tc.args, err, tc.errHas, tc.errHas2)
		}
	}
}

// TestReadmeSystemdUnit checks README.md's systemd unit with
// systemd-analyze verify (with the test's binary in place of
// /usr/local/bin/wperf): it must pass without a single complaint.
func TestReadmeSystemdUnit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("systemd-analyze: %v (apt-get install -y systemd)", err)
		}
		t.Skipf("systemd-analyze: %v (apt-get install -y systemd)", err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```ini\n(\\[Unit\\].*?)```").FindSubmatch(readme)
	if m == nil || !strings.Contains(string(m[1]), "ExecStart=/usr/local/bin/wperf ") {
		t.Fatal("README.md has no systemd unit (an ini block with [Unit] and ExecStart=/usr/local/bin/wperf)")
	}
	unit := filepath.Join(t.TempDir(), "wperf.service")
	text := strings.ReplaceAll(string(m[1]), "/usr/local/bin/wperf", wperfBinary(t))
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The command line in it must be one wperf accepts.
	cmdLine := regexp.MustCompile(`(?m)^ExecStart=\S+ (.*)$`).FindStringSubmatch(text)
	if _, err := parseArgs(strings.Fields(cmdLine[1])); err != nil {
		t.Errorf("ExecStart's options: %v", err)
	}
}

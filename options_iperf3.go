package main

// options_iperf3.go is the part of the command line that exists for
// iperf3's users: the value syntaxes iperf3 taught them (milliseconds,
// TOS and DSCP, strftime timestamps, ADDR%DEV, CPU numbers) and the
// iperf3 options wperf refuses, each with the reason.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Bounds of the iperf3-style options.
const (
	// maxSndTimeout is --snd-timeout's ceiling: a day, in milliseconds.
	maxSndTimeout = 86_400_000
	// maxExtraData keeps --extra-data to what a log line and a request
	// carry comfortably.
	maxExtraData = 4096
	// maxIfaceName is IFNAMSIZ less its NUL (Linux include/uapi/linux/if.h).
	maxIfaceName = 15
	// defaultTimestampFormat is iperf3's: ctime's layout and a space.
	defaultTimestampFormat = "%c "
)

// errDaemon answers -D: Go starts threads before main, and a forked copy
// of such a process only keeps the thread that forked, so there is no
// safe daemon(3). A service manager or the shell does the same job.
var errDaemon = errors.New("-D/--daemon is not supported: a Go program cannot fork itself into the background; " +
	"run the server under systemd (README: Deploying) or as 'nohup wperf -s &'")

// millisOpt makes an apply function for a time given as iperf3 gives it,
// a whole number of milliseconds, or with an explicit unit (5s, 500ms,
// 1m); the field holds seconds, within [lo, hi].
func millisOpt(field func(*config) *float64, lo, hi float64) func(*config, string) error {
	return func(c *config, v string) error {
		secs, err := parseMillis(v)
		if err != nil || secs < lo || secs > hi {
			return fmt.Errorf("bad value %q: want milliseconds (or 5s, 500ms) from %g to %g s", v, lo, hi)
		}
		*field(c) = secs
		return nil
	}
}

// parseMillis reads a bare number as milliseconds and anything with a
// unit as time.ParseDuration does.
func parseMillis(v string) (float64, error) {
	if ms, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(ms) || math.IsInf(ms, 0) {
			return 0, errors.New("not a number")
		}
		return ms / 1000, nil
	}
	d, err := time.ParseDuration(v)
	return d.Seconds(), err
}

// setBind takes -B ADDR or iperf3's -B ADDR%DEV, where DEV means
// --bind-dev DEV. An IPv6 link-local address's zone names the same
// interface, so the split is the same.
func setBind(c *config, v string) error {
	addr, dev, found := strings.Cut(v, "%")
	if found {
		if err := setBindDev(c, dev); err != nil {
			return fmt.Errorf("bad --bind %q: %w", v, err)
		}
	}
	c.bind = addr
	return nil
}

// setBindDev checks an interface name the way the kernel will.
func setBindDev(c *config, v string) error {
	if v == "" || len(v) > maxIfaceName || strings.ContainsAny(v, "/ \t") {
		return fmt.Errorf("bad interface name %q: 1 to %d characters, no '/' or spaces", v, maxIfaceName)
	}
	if c.bindDev != "" && c.bindDev != v {
		return fmt.Errorf("interface %q and %q: bind to one", c.bindDev, v)
	}
	c.bindDev = v
	return nil
}

// setAffinity takes iperf3's -A N or -A N,M. M asks iperf3's server to
// move itself for one test; a wperf server serves many tests at once, so
// it keeps its own CPUs and the client says so.
func setAffinity(c *config, v string) error {
	n, m, pair := strings.Cut(v, ",")
	cpu, err := strconv.Atoi(n)
	if err != nil || cpu < 0 || cpu >= maxCPU {
		return fmt.Errorf("bad --affinity %q: want a CPU number from 0 to %d, optionally ,M", v, maxCPU-1)
	}
	if pair {
		if s, err := strconv.Atoi(m); err != nil || s < 0 || s >= maxCPU {
			return fmt.Errorf("bad --affinity %q: want a CPU number from 0 to %d after the comma", v, maxCPU-1)
		}
		c.warnings = append(c.warnings, "-A "+v+": the server's CPU is not set (a wperf server serves many tests at once; start it with -A instead)")
	}
	c.affinity = cpu
	return nil
}

// setTOS takes -S as iperf3 does: 0-255, in decimal, 0x hex or 0 octal.
func setTOS(c *config, v string) error {
	n, err := strconv.ParseUint(v, 0, 8)
	if err != nil {
		return fmt.Errorf("bad --tos %q: want 0 to 255 (52, 064 and 0x34 are the same)", v)
	}
	return c.setTOSByte(int(n), "--tos")
}

// setDSCP takes --dscp as a number 0-63 or a name (RFC 4594's classes:
// CSn, AFxy, EF; RFC 5865's VA; RFC 8622's LE), and makes it the upper
// six bits of the TOS byte (RFC 2474 section 3).
func setDSCP(c *config, v string) error {
	d, ok := dscpByName(v)
	if !ok {
		n, err := strconv.ParseUint(v, 0, 6)
		if err != nil {
			return fmt.Errorf("bad --dscp %q: want 0 to 63 or a name such as EF, AF41, CS1, LE", v)
		}
		d = int(n)
	}
	return c.setTOSByte(d<<2, "--dscp")
}

// setTOSByte keeps -S and --dscp from contradicting each other.
func (c *config) setTOSByte(tos int, from string) error {
	if c.tos >= 0 && c.tos != tos {
		return fmt.Errorf("%s gives TOS %#x, but another option already gave %#x", from, tos, c.tos)
	}
	c.tos = tos
	return nil
}

// dscpByName knows the code points by their names, in any case.
func dscpByName(v string) (int, bool) {
	s := strings.ToLower(v)
	switch {
	case s == "ef":
		return 46, true
	case s == "va":
		return 44, true
	case s == "le":
		return 1, true
	case len(s) == 3 && s[:2] == "cs" && s[2] >= '0' && s[2] <= '7':
		return int(s[2]-'0') << 3, true
	case len(s) == 4 && s[:2] == "af" && s[2] >= '1' && s[2] <= '4' && s[3] >= '1' && s[3] <= '3':
		return int(s[2]-'0')<<3 | int(s[3]-'0')<<1, true
	}
	return 0, false
}

// refusedOptions are iperf3's options that have no meaning in wperf.
// They fail with the reason rather than "unknown option", so that a
// script's author learns what to change.
var refusedOptions = []struct {
	short byte
	long  string
	why   string
}{
	{'F', "file", "wperf sends generated payload, not a file's content"},
	{'d', "debug", "wperf has no debug output; -V shows the test's details"},
	{0, "server-bitrate-limit", "a wperf server caps each test instead: --max-udp-rate, --max-duration, --max-parallel"},
	{0, "rsa-private-key-path", rsaWhy},
	{0, "rsa-public-key-path", rsaWhy},
	{0, "authorized-users-path", rsaWhy},
	{0, "time-skew-threshold", rsaWhy},
	{0, "username", rsaWhy},
	{0, "sctp", sctpWhy},
	{'X', "xbind", sctpWhy},
	{0, "nstreams", sctpWhy},
	{0, "pacing-timer", "wperf paces with the kernel (SO_MAX_PACING_RATE) or its own schedule; there is no timer to tune"},
	{0, "repeating-payload", "wperf's payload is random bytes from a shared pool, always"},
	{0, "dont-fragment", "wperf does not set the DF bit on UDP datagrams yet"},
}

const (
	rsaWhy  = "wperf authenticates with a shared token (--token-file, WPERF_TOKEN) over wss://, not iperf3's RSA user list"
	sctpWhy = "wperf's streams are WebSocket over TCP; there is no SCTP"
)

// refusedOption turns an iperf3 option wperf refuses into a table row
// whose only action is the refusal.
func refusedOption(short byte, long string) *option {
	for _, r := range refusedOptions {
		if (short != 0 && r.short == short) || (long != "" && r.long == long) {
			name := "--" + r.long
			if r.short != 0 {
				name = "-" + string(r.short) + "/" + name
			}
			err := fmt.Errorf("%s is iperf3's and not supported: %s", name, r.why)
			return &option{short: r.short, long: r.long, arg: "[=IGNORED]", modes: inAll, apply: func(*config, string) error { return err }}
		}
	}
	return nil
}

// timestamp renders t with a strftime(3) format in the C locale: the
// conversions iperf3's users put in --timestamps. An unknown conversion
// is written as it is, as glibc does.
func timestamp(format string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		if layout, ok := strftimeLayouts[format[i]]; ok {
			b.WriteString(t.Format(layout))
			continue
		}
		switch format[i] {
		case '%':
			b.WriteByte('%')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'u':
			b.WriteString(strconv.Itoa((int(t.Weekday())+6)%7 + 1))
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

// strftimeLayouts are the conversions Go's time layouts say directly.
var strftimeLayouts = map[byte]string{
	'a': "Mon", 'A': "Monday", 'b': "Jan", 'h': "Jan", 'B': "January",
	'c': "Mon Jan _2 15:04:05 2006", 'd': "02", 'D': "01/02/06", 'F': "2006-01-02",
	'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'r': "03:04:05 PM",
	'R': "15:04", 'S': "05", 'T': "15:04:05", 'x': "01/02/06", 'X': "15:04:05",
	'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

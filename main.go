// Command wperf measures network performance over WebSocket: bandwidth in
// both directions with parallel streams, and the route, so that it
// works where a web connection would (NAT, reverse proxies, port 80 only).
//
// The files of this package, one concern each:
//
//	main.go          options, their validation, mode dispatch, exit codes
//	proto.go         the wperf.v1 messages, their bounds (one name per
//	                 limit) and the control channel: send, refuse, read
//	                 one message, and the watch that follows a whole test
//	client.go        the client side of a bandwidth test: dial, request,
//	                 streams, start, results
//	server.go        the HTTP server, its sessions and caps, the server
//	                 side of a bandwidth test, and its log lines
//	stream.go        the engine both ends share: move bytes, count them,
//	                 close intervals
//	reverse_trace.go both ends of the reverse traceroute, and its limits
//	report.go        output: lines, units, the test view, the live reporter
//	report_text.go   iperf3's text layout
//	report_json.go   iperf3's -J document
//	ws.go            RFC 6455 connection: read, write, control frames, close
//	ws_frame.go      the frame codec: header, mask, UTF-8, close payload
//	ws_handshake.go  the opening handshakes, server and client
//	ws_batch.go      many frames in one writev, for bulk data
//	trace.go         traceroute: the mode, the engine, hops
//	trace_probe.go   probes and the matching of replies to them
//	trace_socket.go  the probe sockets and the privilege fallback
//	trace_linux.go   the unprivileged Linux prober (IP_RECVERR);
//	                 trace_other.go says it is missing elsewhere
//	geo.go           ASN and country from Team Cymru's DNS
//	sys.go           socket options every OS has; sys_linux.go and
//	                 sys_other.go: TCP_INFO, congestion, CPU accounting
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// version is the program's release; the wire protocol has its own
// version (protocolVersion, in proto.go), which changes only when old
// peers can no longer follow.
const (
	version  = "0.1.0"
	software = "wperf " + version // how wperf names itself to peers and in reports
)

// exit codes, as iperf3 users expect from scripts.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it parses args, runs the chosen mode and
// returns the exit code, so tests can drive it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "wperf: %v\n", err)
		fmt.Fprintln(stderr, "Try 'wperf --help' for more information.")
		return exitUsage
	}
	switch cfg.mode {
	case modeHelp:
		printHelp(stdout)
		return exitOK
	case modeVersion:
		fmt.Fprintf(stdout, "wperf %s (protocol %s)\n", version, subprotocolV1)
		return exitOK
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cfg.mode {
	case modeServer:
		err = runServer(ctx, cfg, stdout)
	case modeClient:
		err = runClient(ctx, cfg, stdout)
	case modeTrace:
		err = runTraceroute(ctx, cfg, stdout)
	}
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(stderr, "wperf: %v\n", err)
		}
		return exitRuntime
	}
	return exitOK
}

// errReported marks a failure that the mode already printed in its own
// format (the -J error document, say), so run only sets the exit code.
var errReported = errors.New("error already reported")

// mode is what one invocation does.
type mode int

const (
	modeNone mode = iota
	modeServer
	modeClient
	modeTrace
	modeHelp
	modeVersion
)

// config holds every option of every mode; parseArgs fills and checks it.
type config struct {
	mode mode
	set  map[string]bool // long names of the options given, for mode checks

	// shared
	port      int
	bind      string
	token     string
	json      bool
	logfile   string
	verbose   bool
	family    int // 0 any, 4 or 6
	dnsServer string
	noGeo     bool

	// server
	oneOff            bool
	idleTimeout       float64
	maxClients        int
	maxDuration       float64
	maxParallel       int
	noReverseTrace    bool
	trustProxy        bool
	reverseTraceLimit int

	// client
	host            string
	duration        float64
	bytes           int64
	blocks          int64
	interval        float64
	reverse         bool
	bidir           bool
	parallel        int
	length          int
	window          int
	noDelay         bool
	congestion      string
	mss             int
	omit            float64
	format          byte
	jsonStream      bool
	title           string
	getServerOutput bool
	connectTimeout  float64
	reverseTrace    bool

	// traceroute
	traceHost  string
	trProto    string
	trPort     int
	trMaxHops  int
	trTimeout  float64
	trQueries  int
	trParallel int
	numeric    bool
}

func defaultConfig() *config {
	return &config{
		set:               map[string]bool{},
		port:              8765,
		idleTimeout:       30,
		maxClients:        16,
		maxDuration:       3600,
		maxParallel:       maxParallel,
		reverseTraceLimit: 6,
		duration:          10,
		interval:          1,
		parallel:          1,
		length:            64 << 10,
		connectTimeout:    10,
		trProto:           "udp",
		trMaxHops:         30,
		trTimeout:         1,
		trQueries:         3,
	}
}

// modeSet says in which modes an option means something.
type modeSet uint8

const (
	inServer modeSet = 1 << iota
	inClient
	inTrace
	inAll = inServer | inClient | inTrace
)

// option is one row of the command line: iperf3's letter and long name where
// iperf3 has the option, wperf's own long name elsewhere.
type option struct {
	short byte
	long  string
	arg   string // name of the value in --help; "" for a switch
	modes modeSet
	help  string
	apply func(c *config, v string) error
}

// options is the whole command line, in --help order.
var options = []option{
	{'s', "server", "", inServer, "run as a server", func(c *config, _ string) error { return c.setMode(modeServer) }},
	{'c', "client", "HOST", inClient, "run as a client, testing against HOST (name, address or ws:// URL)", func(c *config, v string) error {
		c.host = v
		return c.setMode(modeClient)
	}},
	{0, "traceroute", "HOST", inTrace, "trace the route to HOST", func(c *config, v string) error {
		c.traceHost = v
		return c.setMode(modeTrace)
	}},
	{'p', "port", "N", inServer | inClient, "server port (default 8765)", intOpt(func(c *config) *int { return &c.port }, 1, 65535)},
	{'B', "bind", "ADDR", inServer | inClient, "bind to this local address", func(c *config, v string) error { c.bind = v; return nil }},
	{0, "token", "SECRET", inServer | inClient, "shared secret, sent as an Authorization: Bearer header", func(c *config, v string) error {
		if v == "" {
			return errors.New("--token must not be empty")
		}
		c.token = v
		return nil
	}},
	{'4', "version4", "", inAll, "use IPv4 only", func(c *config, _ string) error { return c.setFamily(4) }},
	{'6', "version6", "", inAll, "use IPv6 only", func(c *config, _ string) error { return c.setFamily(6) }},
	{'J', "json", "", inAll, "print results as one JSON document", switchOpt(func(c *config) *bool { return &c.json })},
	{0, "logfile", "FILE", inAll, "send output to FILE instead of standard output", func(c *config, v string) error { c.logfile = v; return nil }},
	{0, "forceflush", "", inAll, "accepted for iperf3 scripts: output is never buffered", func(*config, string) error { return nil }},
	{'V', "verbose", "", inAll, "more detailed output", switchOpt(func(c *config) *bool { return &c.verbose })},

	// server
	{'1', "one-off", "", inServer, "serve one test, then exit", switchOpt(func(c *config) *bool { return &c.oneOff })},
	{0, "idle-timeout", "SEC", inServer, "drop a client silent for this long (default 30)", secondsOpt(func(c *config) *float64 { return &c.idleTimeout }, 0.1, 86400)},
	{0, "max-clients", "N", inServer, "tests served at once (default 16)", intOpt(func(c *config) *int { return &c.maxClients }, 1, 100000)},
	{0, "max-duration", "SEC", inServer, "longest test accepted (default 3600)", secondsOpt(func(c *config) *float64 { return &c.maxDuration }, 1, 365*86400)},
	{0, "max-parallel", "N", inServer, "most streams in one test (default 128)", intOpt(func(c *config) *int { return &c.maxParallel }, 1, maxParallel)},
	{0, "no-reverse-traceroute", "", inServer, "refuse reverse traceroute requests", switchOpt(func(c *config) *bool { return &c.noReverseTrace })},
	{0, "reverse-traceroute-limit", "N", inServer, "reverse traceroutes per client address per minute (default 6)", intOpt(func(c *config) *int { return &c.reverseTraceLimit }, 1, 1000)},
	{0, "trust-proxy", "", inServer, "believe X-Forwarded-For / X-Real-IP (behind your own reverse proxy)", switchOpt(func(c *config) *bool { return &c.trustProxy })},

	// client: test shape
	{'t', "time", "SEC", inClient, "test length in seconds (default 10)", secondsOpt(func(c *config) *float64 { return &c.duration }, 0.1, 365*86400)},
	{'n', "bytes", "N[KMG]", inClient, "bytes to send per direction, instead of -t", sizeOpt(func(c *config) *int64 { return &c.bytes }, 1)},
	{'k', "blockcount", "N[KMG]", inClient, "messages to send per direction, instead of -t or -n", sizeOpt(func(c *config) *int64 { return &c.blocks }, 1)},
	{'i', "interval", "SEC", inClient, "seconds between reports (default 1; 0: one report for the whole test)", secondsOpt(func(c *config) *float64 { return &c.interval }, 0, 86400)},
	{'R', "reverse", "", inClient, "the server sends, the client receives", switchOpt(func(c *config) *bool { return &c.reverse })},
	{0, "bidir", "", inClient, "send and receive at the same time", switchOpt(func(c *config) *bool { return &c.bidir })},
	{'P', "parallel", "N", inClient, "parallel streams, 1-128 (default 1)", intOpt(func(c *config) *int { return &c.parallel }, 1, maxParallel)},
	{'O', "omit", "SEC", inClient, "leave the first SEC seconds out of the results", secondsOpt(func(c *config) *float64 { return &c.omit }, 0, 86400)},

	// client: socket and message
	{'l', "length", "N[KMG]", inClient, "message size (default 64K, up to 16M)", func(c *config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < 1 || n > maxLength {
			return fmt.Errorf("bad --length %q: want 1 to %dM", v, maxLength>>20)
		}
		c.length = int(n)
		return nil
	}},
	{'w', "window", "N[KMG]", inClient, "socket buffer size (SO_SNDBUF/SO_RCVBUF)", func(c *config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < 1024 || n > 1<<30 {
			return fmt.Errorf("bad --window %q: want 1K to 1G", v)
		}
		c.window = int(n)
		return nil
	}},
	{'N', "no-delay", "", inClient, "set TCP_NODELAY", switchOpt(func(c *config) *bool { return &c.noDelay })},
	{'C', "congestion", "ALGO", inClient, "TCP congestion control algorithm (Linux)", func(c *config, v string) error {
		if v == "" || len(v) > 15 {
			return fmt.Errorf("bad --congestion %q", v)
		}
		c.congestion = v
		return nil
	}},
	{'M', "set-mss", "N", inClient, "TCP maximum segment size", intOpt(func(c *config) *int { return &c.mss }, 88, 65535)},
	{'Z', "zerocopy", "", inClient, "senders, the server's too (-R, --bidir), splice payload instead of copying it (Linux)", func(*config, string) error { return nil }},
	{0, "no-zerocopy", "", inServer | inClient, "receive messages of 128K and more by reading, not with splice (Linux)", func(*config, string) error { noZeroCopy.Store(true); return nil }},

	// client: output
	{'f', "format", "[kmgtKMGT]", inClient, "units: bits (kmgt) or bytes (KMGT); adaptive by default", func(c *config, v string) error {
		if len(v) != 1 || strings.IndexByte("kmgtKMGT", v[0]) < 0 {
			return fmt.Errorf("bad --format %q: want one of k m g t K M G T", v)
		}
		c.format = v[0]
		return nil
	}},
	{0, "json-stream", "", inClient, "print one JSON object per line as the test runs", switchOpt(func(c *config) *bool { return &c.jsonStream })},
	{'T', "title", "STR", inClient, "prefix every output line with STR", func(c *config, v string) error { c.title = v; return nil }},
	{0, "get-server-output", "", inClient, "include the server's results", switchOpt(func(c *config) *bool { return &c.getServerOutput })},

	// client: connection
	{0, "connect-timeout", "SEC", inClient, "give up connecting after SEC seconds (default 10)", secondsOpt(func(c *config) *float64 { return &c.connectTimeout }, 0.001, 3600)},
	{0, "reverse-traceroute", "", inClient, "run no test: have the server trace the route back to this client (--tr-* options apply)", switchOpt(func(c *config) *bool { return &c.reverseTrace })},

	// traceroute
	{0, "tr-proto", "udp|icmp|tcp", inTrace | inClient, "probe type (default udp)", func(c *config, v string) error {
		switch v {
		case "udp", "icmp", "tcp":
			c.trProto = v
			return nil
		}
		return fmt.Errorf("bad --tr-proto %q: want udp, icmp or tcp", v)
	}},
	{0, "tr-port", "N", inTrace, "destination port: first UDP port (default 33434) or TCP port (default 443)", intOpt(func(c *config) *int { return &c.trPort }, 1, 65535)},
	{0, "tr-max-hops", "N", inTrace | inClient, "most hops to probe (default 30)", intOpt(func(c *config) *int { return &c.trMaxHops }, 1, 255)},
	{0, "tr-timeout", "SEC", inTrace | inClient, "wait per probe (default 1)", secondsOpt(func(c *config) *float64 { return &c.trTimeout }, 0.01, 60)},
	{0, "tr-queries", "N", inTrace | inClient, "probes per hop (default 3)", intOpt(func(c *config) *int { return &c.trQueries }, 1, 10)},
	{0, "tr-parallel", "N", inTrace, "hops probed at once (default: all of them; 1 probes one hop at a time)", intOpt(func(c *config) *int { return &c.trParallel }, 1, 255)},
	{'n', "numeric", "", inTrace, "do not look up hop names", switchOpt(func(c *config) *bool { return &c.numeric })},
	{0, "dns", "HOST[:PORT]", inServer | inTrace, "DNS server for hop names and ASN/country lookups", func(c *config, v string) error {
		if err := checkDNSServer(v); err != nil {
			return err
		}
		c.dnsServer = v
		return nil
	}},
	{0, "no-geo", "", inAll, "skip ASN/country lookups", switchOpt(func(c *config) *bool { return &c.noGeo })},

	{'v', "version", "", inAll, "print the version and exit", func(c *config, _ string) error { return c.setMode(modeVersion) }},
	{'h', "help", "", inAll, "print this help and exit", func(c *config, _ string) error { return c.setMode(modeHelp) }},
}

// parseArgs reads the command line the way getopt_long does (so iperf3
// habits work: -R4, -p5201, --port=5201, --port 5201) and then checks that
// the options fit together.
func parseArgs(args []string) (*config, error) {
	c := defaultConfig()
	tracing := false
	for _, a := range args {
		if a == "--traceroute" || strings.HasPrefix(a, "--traceroute=") {
			tracing = true
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return nil, fmt.Errorf("unexpected argument %q", args[i+1])
			}
			return c, c.check()
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o := findLong(name)
			if o == nil {
				return nil, fmt.Errorf("unknown option --%s", name)
			}
			if o.arg == "" && hasVal {
				return nil, fmt.Errorf("option --%s takes no value", name)
			}
			if o.arg != "" && !hasVal {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("option --%s needs a value (%s)", name, o.arg)
				}
				i++
				val = args[i]
			}
			if err := c.apply(o, val); err != nil {
				return nil, err
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				o := findShort(a[j], tracing)
				if o == nil {
					return nil, fmt.Errorf("unknown option -%c", a[j])
				}
				if o.arg == "" {
					if err := c.apply(o, ""); err != nil {
						return nil, err
					}
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("option -%c needs a value (%s)", a[j], o.arg)
					}
					i++
					val = args[i]
				}
				if err := c.apply(o, val); err != nil {
					return nil, err
				}
				break
			}
		default:
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
	}
	return c, c.check()
}

// findLong resolves a long name; long names are unique, so no mode is needed.
func findLong(name string) *option {
	for i := range options {
		if options[i].long == name {
			return &options[i]
		}
	}
	return nil
}

// findShort resolves a letter; -n is --bytes for a test and --numeric for a
// traceroute, as each tool's users expect.
func findShort(b byte, tracing bool) *option {
	for i := range options {
		o := &options[i]
		if o.short != b {
			continue
		}
		if b == 'n' && (o.modes == inTrace) != tracing {
			continue
		}
		return o
	}
	return nil
}

func (c *config) apply(o *option, v string) error {
	c.set[o.long] = true
	err := o.apply(c, v)
	if err != nil && !strings.Contains(err.Error(), "--"+o.long) {
		// The shared value parsers do not know which option they serve.
		name := "--" + o.long
		if o.short != 0 {
			name = "-" + string(o.short) + "/" + name
		}
		err = fmt.Errorf("%s: %w", name, err)
	}
	return err
}

func (c *config) setMode(m mode) error {
	switch {
	case m == modeHelp || m == modeVersion || c.mode == modeHelp || c.mode == modeVersion:
		if m == modeHelp || c.mode != modeHelp {
			c.mode = m
		}
		return nil
	case c.mode != modeNone && c.mode != m:
		return errors.New("choose one of -s, -c and --traceroute")
	}
	c.mode = m
	return nil
}

func (c *config) setFamily(f int) error {
	if c.family != 0 && c.family != f {
		return errors.New("-4 and -6 exclude each other")
	}
	c.family = f
	return nil
}

// check applies the rules that involve more than one option.
func (c *config) check() error {
	var in modeSet
	switch c.mode {
	case modeHelp, modeVersion:
		return nil
	case modeNone:
		return errors.New("choose a mode: -s (server), -c HOST (client) or --traceroute HOST")
	case modeServer:
		in = inServer
	case modeClient:
		in = inClient
	case modeTrace:
		in = inTrace
	}
	for i := range options {
		o := &options[i]
		if c.set[o.long] && o.modes&in == 0 {
			return fmt.Errorf("--%s does not apply to %s", o.long, modeName(c.mode))
		}
	}
	if c.mode == modeClient {
		return c.checkClient()
	}
	return nil
}

func (c *config) checkClient() error {
	if err := c.checkReverseTrace(); err != nil {
		return err
	}
	switch {
	case c.host == "":
		return errors.New("-c needs a host")
	case c.reverse && c.bidir:
		return errors.New("-R and --bidir exclude each other")
	case c.bytes > 0 && c.blocks > 0:
		return errors.New("-n and -k exclude each other")
	case c.json && c.jsonStream:
		return errors.New("-J and --json-stream exclude each other")
	case c.interval > 0 && c.interval < minInterval:
		return fmt.Errorf("-i must be 0 (off) or at least %g", minInterval)
	case c.bind != "" && net.ParseIP(c.bind) == nil:
		return fmt.Errorf("bad --bind %q: want an IP address", c.bind)
	case c.blocks > math.MaxInt64/int64(c.length):
		return errors.New("-k × -l is too large")
	}
	if _, err := targetURL(c); err != nil {
		return err
	}
	return nil
}

// checkReverseTrace keeps the reverse traceroute's options and a
// bandwidth test's apart: one client run does one or the other.
func (c *config) checkReverseTrace() error {
	for _, name := range []string{"tr-proto", "tr-max-hops", "tr-timeout", "tr-queries", "no-geo"} {
		if c.set[name] && !c.reverseTrace {
			return fmt.Errorf("--%s needs --traceroute or --reverse-traceroute", name)
		}
	}
	if !c.reverseTrace {
		return nil
	}
	// The server refuses more than this; say so before asking it.
	switch {
	case c.trMaxHops > maxReverseHops:
		return fmt.Errorf("--tr-max-hops %d: a reverse traceroute goes to at most %d hops", c.trMaxHops, maxReverseHops)
	case c.trQueries > maxReverseQueries:
		return fmt.Errorf("--tr-queries %d: a reverse traceroute sends at most %d probes per hop", c.trQueries, maxReverseQueries)
	case c.trTimeout < minReverseTimeout || c.trTimeout > maxReverseTimeout:
		return fmt.Errorf("--tr-timeout %g: a reverse traceroute waits %g to %g s per probe", c.trTimeout, minReverseTimeout, maxReverseTimeout)
	}
	for _, name := range []string{"time", "bytes", "blockcount", "reverse", "bidir", "parallel", "omit", "length",
		"window", "congestion", "set-mss", "no-delay", "json-stream", "get-server-output", "format", "interval"} {
		if c.set[name] {
			return fmt.Errorf("--reverse-traceroute runs no bandwidth test, so --%s does not apply", name)
		}
	}
	return nil
}

// checkDNSServer accepts HOST or HOST:PORT, as --dns takes them.
func checkDNSServer(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = strings.Trim(v, "[]"), "53"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" || strings.ContainsAny(host, " /") {
		return fmt.Errorf("bad --dns %q: want HOST or HOST:PORT", v)
	}
	return nil
}

func modeName(m mode) string {
	switch m {
	case modeServer:
		return "a server (-s)"
	case modeClient:
		return "a client (-c)"
	default:
		return "a traceroute (--traceroute)"
	}
}

// printHelp writes --help from the option table, so the two never differ.
func printHelp(w io.Writer) {
	fmt.Fprint(w, `Usage: wperf -s [options]
       wperf -c HOST [options]
       wperf --traceroute HOST [options]

Bandwidth and route tests over WebSocket.
`)
	sections := []struct {
		title string
		modes modeSet
	}{{"Modes and common options", inAll}, {"Server", inServer}, {"Client", inClient}, {"Traceroute", inTrace}}
	for _, s := range sections {
		fmt.Fprintf(w, "\n%s:\n", s.title)
		for _, o := range options {
			if helpSection(o) != s.modes {
				continue
			}
			name := "    "
			if o.short != 0 {
				name = "-" + string(o.short) + ", "
			}
			name += "--" + o.long
			if o.arg != "" {
				name += " " + o.arg
			}
			fmt.Fprintf(w, "  %-34s %s\n", name, o.help)
		}
	}
}

// helpSection is where --help lists an option: with the mode it belongs
// to, traceroute options (which reverse traceroute shares) under
// Traceroute, and the rest under the common options.
func helpSection(o option) modeSet {
	switch {
	case o.short == 's' || o.short == 'c' || o.long == "traceroute":
		return inAll
	case o.modes == inServer || o.modes == inClient:
		return o.modes
	case o.modes&inTrace != 0 && o.modes != inAll:
		return inTrace
	}
	return inAll
}

// switchOpt makes a switch's apply function.
func switchOpt(field func(*config) *bool) func(*config, string) error {
	return func(c *config, _ string) error { *field(c) = true; return nil }
}

// intOpt makes an apply function for an integer within [lo, hi].
func intOpt(field func(*config) *int, lo, hi int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("bad value %q: want a whole number from %d to %d", v, lo, hi)
		}
		*field(c) = n
		return nil
	}
}

// secondsOpt makes an apply function for a duration in secondsOpt, fractions allowed.
func secondsOpt(field func(*config) *float64, lo, hi float64) func(*config, string) error {
	return func(c *config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < lo || f > hi {
			return fmt.Errorf("bad value %q: want seconds from %g to %g", v, lo, hi)
		}
		*field(c) = f
		return nil
	}
}

// sizeOpt makes an apply function for a byte or block count.
func sizeOpt(field func(*config) *int64, lo int64) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < lo {
			return fmt.Errorf("bad value %q: want a count such as 100M", v)
		}
		*field(c) = n
		return nil
	}
}

// parseSize reads a count with an optional K, M or G suffix, 1024-based as
// in iperf3 (so 1M is 1048576).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * float64(mult)), nil
}

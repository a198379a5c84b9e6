// Command wperf measures network performance over WebSocket: bandwidth in
// both directions with parallel streams, and the route, so that it
// works where a web connection would (NAT, reverse proxies, port 80 only).
//
// The files of this package, one concern each:
//
//	main.go          the config, the checks across options, mode
//	                 dispatch, exit codes
//	options.go       the option table, the parser, --help;
//	                 options_iperf3.go: iperf3's value syntaxes and the
//	                 iperf3 options wperf refuses, with why
//	proto.go         the wperf.v1 messages, their bounds (one name per
//	                 limit) and the control channel: send, refuse, read
//	                 one message, and the watch that follows a whole test
//	client.go        the client side of a bandwidth test: dial, request,
//	                 streams, start, results
//	server.go        the HTTP server: routing, authentication, admission
//	                 and caps, the echo endpoint, its log lines
//	session.go       one test on the server: streams joining, the run,
//	                 the results and the report
//	guard.go         the server's defences: connections per address,
//	                 token guessing, rationed log lines, idle memory
//	stream.go        the engine both ends share: the payload pool, sending
//	                 (paced with -b), receiving (spliced on Linux)
//	stream_intervals.go  the engine's clock: intervals, counts, results
//	udp.go           a UDP test's pieces: -b, the datagram header, loss and
//	                 jitter accounting, pacing, the WebSocket drop rule
//	udp_stream.go    the engine's datagram streams, on either transport
//	udp_session.go   how a UDP test's datagrams travel: offer, hellos,
//	                 the client's choice, real-UDP streams
//	udp_net.go       real UDP: the session handshake, the server's shared
//	                 socket, the client's sockets, batch sends
//	udp_linux.go     recvmmsg/sendmmsg, UDP GSO and the TCP send queue on
//	                 Linux; udp_other.go: portable stand-ins
//	reverse_trace.go both ends of the reverse traceroute, and its limits
//	latency.go       latency under load: the statistics of the probes,
//	                 RPM, the bufferbloat grade, the report's block
//	latency_probe.go the probes: idle phase, self pings, foreign probes
//	ping.go          the probe connection (server side) and wperf --ping
//	report.go        output: lines, units, the test view, datagram counts,
//	                 the live reporter
//	report_text.go   iperf3's text layout
//	report_json.go   iperf3's -J document
//	ws.go            RFC 6455 connection: write, close; ws_read.go: frames
//	                 read, payload handed out or discarded, control frames
//	ws_frame.go      the frame codec: header, mask, UTF-8, close payload
//	ws_handshake.go  the opening handshakes, server and client
//	ws_batch.go      many frames in one writev, for bulk data
//	trace.go         traceroute: the mode, the engine, hops
//	trace_probe.go   probes and the matching of replies to them
//	trace_socket.go  the probe sockets and the privilege fallback
//	trace_linux.go   the unprivileged Linux prober (IP_RECVERR);
//	                 trace_other.go says it is missing elsewhere
//	web.go           the browser page (web/): serving it, its headers, the
//	                 Origin check, the token in the subprotocol list
//	geo.go           ASN and country from Team Cymru's DNS
//	legacy.go        the original Python wperf's protocol: its messages;
//	                 legacy_link.go runs one of its connections' data,
//	                 legacy_server.go serves its clients, legacy_client.go
//	                 tests its servers (--legacy, or found on its own),
//	                 legacy_probes.go has its ping and reverse traceroute
//	reach.go         how the ends reach each other: -c's address forms,
//	                 the one dial path (proxy tunnel, TLS, handshake)
//	tls.go           wss://: certificates, the sniffing listener, the
//	                 client's checks (tls_peek_*.go: the first byte)
//	proxy.go         CONNECT tunnels, reverse-proxy facts, keep-alive pings
//	zerocopy.go      the zero-copy switches; zerocopy_linux.go: splice
//	                 receive and splice send (-Z); zerocopy_other.go
//	sys.go           socket options every OS has; sys_linux.go and
//	                 sys_other.go: TCP_INFO, congestion, CPU accounting,
//	                 the marks of every socket (TOS, interface, user
//	                 timeout), the pacing cap, the flow label, affinity;
//	                 sys_getsockopt_linux*.go: getsockopt and connect per
//	                 architecture
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
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unicode"
)

// version is the program's release; the wire protocol has its own
// version (protocolVersion, in proto.go), which changes only when old
// peers can no longer follow. It is a variable so that build.sh can stamp
// release binaries with -ldflags "-X main.version=...".
var (
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
	for _, w := range cfg.warnings {
		fmt.Fprintf(stderr, "wperf: warning: %s\n", w)
	}
	switch cfg.mode {
	case modeHelp:
		printHelp(stdout)
		return exitOK
	case modeVersion:
		fmt.Fprintf(stdout, "wperf %s (protocol %s)\n", version, subprotocolV1)
		return exitOK
	}

	warnInsecure(cfg, stderr)
	if cfg.pidfile != "" {
		remove, err := writePIDFile(cfg.pidfile)
		if err != nil {
			fmt.Fprintf(stderr, "wperf: %v\n", err)
			return exitRuntime
		}
		defer remove()
	}
	switch err := pinAffinity(cfg.affinity); {
	case errors.Is(err, errNoAffinity):
		fmt.Fprintf(stderr, "wperf: warning: -A %d: %v\n", cfg.affinity, err)
	case err != nil:
		fmt.Fprintf(stderr, "wperf: -A %d: %v\n", cfg.affinity, err)
		return exitRuntime
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
	mode     mode
	set      map[string]bool // long names of the options given, for mode checks
	warnings []string        // one line each, printed to standard error before the run

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
	tokenFile string // --token-file; read by check
	pidfile   string
	affinity  int // -A: the CPU to run on; -1 any
	// timestamps is --timestamps' strftime format; "" prints none.
	timestamps string

	// server
	oneOff            bool
	idleTimeout       float64
	maxClients        int
	maxDuration       float64
	maxParallel       int
	noReverseTrace    bool
	trustProxy        string // "": off; else the header the proxy names clients in
	noUDP             bool
	maxUDPRate        float64 // bits/s per test
	reverseTraceLimit int
	maxClientsPerIP   int
	maxConns          int
	maxConnsPerIP     int
	maxReverseTraces  int
	noLegacy          bool
	noWeb             bool     // serve no browser page (web.go)
	allowOrigins      []string // origins besides the server's own whose pages may connect

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
	udp             bool
	rate            float64 // bits/s per stream; 0 unpaced
	udpTransport    string
	legacy          bool     // speak the original Python wperf's protocol
	sim             []string // the original's --sim-* options given; they do nothing
	noLatency       bool
	notSentLowat    int     // bytes; 0: the kernel's default
	fqRate          float64 // --fq-rate: the kernel's pacing cap, bits/s; 0 none
	tos             int     // -S or --dscp: the TOS byte; -1 the system's
	flowLabel       int     // -L: the IPv6 flow label; 0 none
	cport           int     // --cport: the first stream's local port; 0 any
	sndTimeout      int     // --snd-timeout: TCP_USER_TIMEOUT in ms; 0 the system's
	bindDev         string  // --bind-dev or -B ADDR%DEV
	extraData       string  // --extra-data, for both ends' JSON
	latencyInterval float64 // seconds between latency probes of a kind
	ping            bool    // --ping: round trips only, no bandwidth test
	pingCount       int
	pingTimeout     float64

	// traceroute
	traceHost  string
	trProto    string
	trPort     int
	trMaxHops  int
	trTimeout  float64
	trQueries  int
	trParallel int
	numeric    bool

	// reach: TLS (tls.go) and proxies (proxy.go)
	reach reachOptions
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
		maxClientsPerIP:   4,
		maxConns:          256,
		maxConnsPerIP:     16,
		maxReverseTraces:  4,
		duration:          10,
		interval:          1,
		parallel:          1,
		length:            64 << 10,
		rate:              1e6,
		udpTransport:      "auto",
		pingCount:         10,
		maxUDPRate:        1e9,
		connectTimeout:    10,
		latencyInterval:   0.1,
		pingTimeout:       2,
		trProto:           "udp",
		trMaxHops:         30,
		trTimeout:         1,
		trQueries:         3,
		affinity:          -1,
		tos:               -1,
	}
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
	if err := c.checkReach(); err != nil {
		return err
	}
	if err := c.checkIperf3Habits(); err != nil {
		return err
	}
	if c.mode == modeClient {
		return c.checkClient()
	}
	return nil
}

func (c *config) checkClient() error {
	if err := c.checkLegacy(); err != nil {
		return err
	}
	if err := c.checkReverseTrace(); err != nil {
		return err
	}
	if c.ping {
		return c.checkPing()
	}
	if err := c.checkLatency(); err != nil {
		return err
	}
	switch {
	case c.host == "":
		return errors.New("-c needs a host")
	case c.reverse && c.bidir:
		return errors.New("-R and --bidir exclude each other")
	case c.set["time"] && (c.bytes > 0 || c.blocks > 0), c.bytes > 0 && c.blocks > 0:
		return errors.New("give one test end: -t (a time), -n (bytes) or -k (messages), not two")
	case c.json && c.jsonStream:
		return errors.New("-J and --json-stream exclude each other")
	case c.interval > 0 && c.interval < minInterval:
		return fmt.Errorf("-i must be 0 (off) or at least %g", minInterval)
	case c.bind != "" && net.ParseIP(c.bind) == nil:
		return fmt.Errorf("bad --bind %q: want an IP address", c.bind)
	case c.blocks > math.MaxInt64/int64(c.length):
		return errors.New("-k × -l is too large")
	}
	if err := c.checkUDP(); err != nil {
		return err
	}
	if _, err := targetURL(c); err != nil {
		return err
	}
	return nil
}

// checkUDP keeps UDP's options to UDP tests and gives -l its UDP meaning.
func (c *config) checkUDP() error {
	if !c.udp {
		for _, name := range []string{"udp-transport", "udp-counters-64bit"} {
			if c.set[name] {
				return fmt.Errorf("--%s needs -u", name)
			}
		}
		if !c.set["bitrate"] && !c.set["bandwidth"] {
			c.rate = 0 // a TCP test is unpaced unless -b says otherwise, as in iperf3
		}
		return nil
	}
	if !c.set["length"] {
		c.length = defaultDatagram
	}
	if c.length < minDatagram || c.length > maxDatagram {
		return fmt.Errorf("-l %d: a UDP datagram's payload is %d to %d bytes", c.length, minDatagram, maxDatagram)
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
	// The server refuses more than this; say so before asking it (the
	// old protocol sends none of them).
	switch {
	case c.legacy:
	case c.trMaxHops > maxReverseHops:
		return fmt.Errorf("--tr-max-hops %d: a reverse traceroute goes to at most %d hops", c.trMaxHops, maxReverseHops)
	case c.trQueries > maxReverseQueries:
		return fmt.Errorf("--tr-queries %d: a reverse traceroute sends at most %d probes per hop", c.trQueries, maxReverseQueries)
	case c.trTimeout < minReverseTimeout || c.trTimeout > maxReverseTimeout:
		return fmt.Errorf("--tr-timeout %g: a reverse traceroute waits %g to %g s per probe", c.trTimeout, minReverseTimeout, maxReverseTimeout)
	}
	for _, name := range []string{"time", "bytes", "blockcount", "reverse", "bidir", "parallel", "omit", "length",
		"window", "congestion", "set-mss", "notsent-lowat", "no-delay", "json-stream", "get-server-output", "format", "interval"} {
		if c.set[name] {
			return fmt.Errorf("--reverse-traceroute runs no bandwidth test, so --%s does not apply", name)
		}
	}
	return nil
}

// checkIperf3Habits resolves the token's sources and checks the options
// iperf3's users bring along (options_iperf3.go) against each other and
// against what this OS can do.
func (c *config) checkIperf3Habits() error {
	if err := c.resolveToken(); err != nil {
		return err
	}
	linux := runtime.GOOS == "linux"
	switch {
	case c.set["rcv-timeout"] && c.set["idle-timeout"]:
		return errors.New("--rcv-timeout and --idle-timeout set the same timeout: give one")
	case c.mode == modeClient && c.set["rcv-timeout"] && !c.reverse && !c.bidir:
		return errors.New("--rcv-timeout on a client needs -R or --bidir: it bounds the wait for data this end receives")
	case !linux && (c.bindDev != "" || c.fqRate > 0 || c.flowLabel > 0 || c.sndTimeout > 0):
		return errors.New("--bind-dev, --fq-rate, -L/--flowlabel and --snd-timeout are only supported on Linux")
	case c.flowLabel > 0 && c.family == 4:
		return errors.New("-L/--flowlabel is IPv6's: it does not go with -4")
	case c.udp && c.fqRate > 0:
		return errors.New("--fq-rate paces TCP streams; with -u, -b sets the datagram rate")
	case c.udp && c.flowLabel > 0 && c.udpTransport != "ws":
		return errors.New("-L/--flowlabel labels TCP connections; with -u it needs --udp-transport ws")
	case c.cport > 0 && c.cport+c.streamCount()-1 > 65535:
		return fmt.Errorf("--cport %d: the test's %d streams need ports up to %d", c.cport, c.streamCount(), c.cport+c.streamCount()-1)
	case c.mode == modeServer && c.interval > 0 && c.interval < minInterval:
		return fmt.Errorf("-i must be 0 (off) or at least %g", minInterval)
	}
	return nil
}

// streamCount is how many stream connections a client's test opens.
func (c *config) streamCount() int {
	if c.bidir {
		return 2 * c.parallel
	}
	return c.parallel
}

// resolveToken takes the shared secret from --token, else --token-file,
// else WPERF_TOKEN. The two last keep it out of ps; the command line
// wins because it is the most explicit.
func (c *config) resolveToken() error {
	switch {
	case c.set["token"] || (c.mode != modeServer && c.mode != modeClient):
		return nil
	case c.tokenFile != "":
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		token := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		switch {
		case token == "":
			return fmt.Errorf("--token-file %s is empty", c.tokenFile)
		case strings.ContainsFunc(token, unicode.IsControl):
			return fmt.Errorf("--token-file %s: want the token on one line, without control characters", c.tokenFile)
		}
		c.token = token
	default:
		c.token = os.Getenv("WPERF_TOKEN")
	}
	return nil
}

// writePIDFile writes this process's ID to path (-I, as iperf3) and
// returns what removes it at exit.
func writePIDFile(path string) (remove func(), err error) {
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("--pidfile: %w", err)
	}
	return func() { os.Remove(path) }, nil
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

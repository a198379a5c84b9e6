package main

// options.go is the command line: every option in one table (iperf3's
// letters and names where iperf3 has the option), the getopt-style
// parser, --help made from the table, and the value parsers the rows use.
// main.go holds the config they fill and the checks across options.

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

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
	// arg names the value in --help: "" for a switch, "[=NAME]" for an
	// optional value, given only as --long=VALUE (or -xVALUE).
	arg   string
	modes modeSet
	help  string
	apply func(c *config, v string) error
}

// options is the whole command line, in --help order.
var options = []option{
	{'s', "server", "", inServer, "run as a server", func(c *config, _ string) error { return c.setMode(modeServer) }},
	{'c', "client", "HOST", inClient, "run as a client, testing against HOST: a name or address, HOST:PORT, [IPv6]:PORT, or a ws:// or wss:// URL", func(c *config, v string) error {
		c.host = v
		return c.setMode(modeClient)
	}},
	{0, "traceroute", "HOST", inTrace, "trace the route to HOST", func(c *config, v string) error {
		c.traceHost = v
		return c.setMode(modeTrace)
	}},
	{'p', "port", "N", inServer | inClient, "server port (default 8765)", intOpt(func(c *config) *int { return &c.port }, 1, 65535)},
	{'B', "bind", "ADDR[%DEV]", inServer | inClient, "bind to this local address; %DEV also binds to interface DEV, as --bind-dev", setBind},
	{0, "bind-dev", "DEV", inServer | inClient, "bind every socket of the test (a server: its TCP listener) to network interface DEV (SO_BINDTODEVICE, Linux)", setBindDev},
	{0, "token", "SECRET", inServer | inClient, "shared secret, sent as an Authorization: Bearer header (it shows in ps: prefer --token-file or WPERF_TOKEN)", func(c *config, v string) error {
		if v == "" {
			return errors.New("--token must not be empty")
		}
		c.token = v
		return nil
	}},
	{0, "token-file", "FILE", inServer | inClient, "read the shared secret from FILE, less a trailing newline: it stays out of ps (--token wins over it, it over WPERF_TOKEN in the environment)", func(c *config, v string) error { c.tokenFile = v; return nil }},
	{'I', "pidfile", "FILE", inServer | inClient, "write the process ID to FILE at start, remove it at exit", func(c *config, v string) error { c.pidfile = v; return nil }},
	{'A', "affinity", "N[,M]", inServer | inClient, "run on CPU N only (Linux); a client's M, iperf3's server CPU, is not applied", setAffinity},
	{0, "timestamps", "[=FORMAT]", inServer | inClient, "start every line with the time, in strftime FORMAT (default \"%c \", as iperf3)", func(c *config, v string) error {
		c.timestamps = cmp.Or(v, defaultTimestampFormat)
		return nil
	}},
	{0, "rcv-timeout", "MS", inServer | inClient, "end a test that receives nothing for MS milliseconds (also 5s, 500ms; default 30s)", millisOpt(func(c *config) *float64 { return &c.idleTimeout }, 0.1, 86400)},
	{'4', "version4", "", inAll, "use IPv4 only", func(c *config, _ string) error { return c.setFamily(4) }},
	{'6', "version6", "", inAll, "use IPv6 only", func(c *config, _ string) error { return c.setFamily(6) }},
	{'J', "json", "", inAll, "print results as one JSON document", switchOpt(func(c *config) *bool { return &c.json })},
	{0, "logfile", "FILE", inAll, "send output to FILE instead of standard output", func(c *config, v string) error { c.logfile = v; return nil }},
	{0, "forceflush", "", inAll, "accepted for iperf3 scripts: output is never buffered", func(*config, string) error { return nil }},
	{'V', "verbose", "", inAll, "more detailed output", switchOpt(func(c *config) *bool { return &c.verbose })},

	// server
	{'1', "one-off", "", inServer, "serve one test, then exit", switchOpt(func(c *config) *bool { return &c.oneOff })},
	{'D', "daemon", "", inServer, "refused: a Go program cannot fork itself; see README's Deploying (systemd, or nohup wperf -s &)", func(*config, string) error { return errDaemon }},
	{0, "idle-timeout", "SEC", inServer, "drop a client silent for this long (default 30)", secondsOpt(func(c *config) *float64 { return &c.idleTimeout }, 0.1, 86400)},
	{0, "max-clients", "N", inServer, "tests and reverse traceroutes served at once (default 16)", intOpt(func(c *config) *int { return &c.maxClients }, 1, 100000)},
	{0, "max-clients-per-ip", "N", inServer, "tests at once from one client address (default 4)", intOpt(func(c *config) *int { return &c.maxClientsPerIP }, 1, 100000)},
	{0, "max-connections", "N", inServer, "connections at once outside running tests: handshakes, /echo, traces (default 256)", intOpt(func(c *config) *int { return &c.maxConns }, 1, 1000000)},
	{0, "max-connections-per-ip", "N", inServer, "the same, from one client address (default 16)", intOpt(func(c *config) *int { return &c.maxConnsPerIP }, 1, 1000000)},
	{0, "max-duration", "SEC", inServer, "longest test accepted (default 3600)", secondsOpt(func(c *config) *float64 { return &c.maxDuration }, 1, 365*86400)},
	{0, "max-parallel", "N", inServer, "most streams in one test (default 128)", intOpt(func(c *config) *int { return &c.maxParallel }, 1, maxParallel)},
	{0, "no-udp", "", inServer, "open no UDP socket: UDP tests run over WebSocket", switchOpt(func(c *config) *bool { return &c.noUDP })},
	{0, "max-udp-rate", "RATE", inServer, "most UDP bits/s one test may ask for, all streams together (default 1G)", rateOpt(func(c *config) *float64 { return &c.maxUDPRate }, false)},
	{0, "no-reverse-traceroute", "", inServer, "refuse reverse traceroute requests", switchOpt(func(c *config) *bool { return &c.noReverseTrace })},
	{0, "reverse-traceroute-limit", "N", inServer, "reverse traceroutes per client address per minute (default 6)", intOpt(func(c *config) *int { return &c.reverseTraceLimit }, 1, 1000)},
	{0, "max-reverse-traces", "N", inServer, "reverse traceroutes at once, from all clients (default 4)", intOpt(func(c *config) *int { return &c.maxReverseTraces }, 1, 1000)},
	{0, "trust-proxy", "[=HEADER]", inServer, "behind your own reverse proxy: take the client's address from HEADER, x-forwarded-for (the default; its last entry) or x-real-ip", func(c *config, v string) error {
		switch h := strings.ToLower(v); h {
		case "", proxyXFF, proxyRealIP:
			c.trustProxy = cmp.Or(h, proxyXFF)
			return nil
		}
		return fmt.Errorf("bad --trust-proxy %q: want x-forwarded-for or x-real-ip", v)
	}},
	{0, "no-web", "", inServer, "serve no browser speed test page on GET /", switchOpt(func(c *config) *bool { return &c.noWeb })},
	{0, "allow-origin", "ORIGINS", inServer, "let browser pages from these origins connect too (comma-separated, like https://speed.example.com; * for any)", func(c *config, v string) error {
		o, err := parseOrigins(v)
		c.allowOrigins = append(c.allowOrigins, o...)
		return err
	}},
	{0, "no-legacy", "", inServer, "refuse clients of the original Python wperf (WebSockets without a wperf subprotocol)", switchOpt(func(c *config) *bool { return &c.noLegacy })},

	// server: TLS (tls.go)
	{0, "cert", "FILE", inServer, "serve wss:// with this PEM certificate (chain); needs --key", fileOpt("cert", func(c *config) *string { return &c.reach.certFile })},
	{0, "key", "FILE", inServer, "the PEM private key of --cert", fileOpt("key", func(c *config) *string { return &c.reach.keyFile })},
	{0, "tls", "", inServer, "serve wss:// with a self-signed ECDSA certificate made at start-up; prints its fingerprint", switchOpt(func(c *config) *bool { return &c.reach.selfSigned })},
	{0, "tls-dir", "DIR", inServer, "keep --tls's certificate and key in DIR, so its fingerprint survives restarts (implies --tls)", func(c *config, v string) error { return c.reach.setTLSDir(v) }},
	{0, "tls-also-plain", "", inServer, "with TLS, also answer plain ws:// on the same port", switchOpt(func(c *config) *bool { return &c.reach.alsoPlain })},

	// client: test shape
	{'t', "time", "SEC", inClient, "test length in seconds (default 10)", secondsOpt(func(c *config) *float64 { return &c.duration }, 0.1, 365*86400)},
	{'n', "bytes", "N[KMG]", inClient, "bytes to send per direction, instead of -t", sizeOpt(func(c *config) *int64 { return &c.bytes }, 1)},
	{'k', "blockcount", "N[KMG]", inClient, "messages to send per direction, instead of -t or -n", sizeOpt(func(c *config) *int64 { return &c.blocks }, 1)},
	{'i', "interval", "SEC", inServer | inClient, "seconds between reports (default 1; 0: one report for the whole test); with --ping between probes; a server's own, for --get-server-output", secondsOpt(func(c *config) *float64 { return &c.interval }, 0, 86400)},
	{'R', "reverse", "", inClient, "the server sends, the client receives", switchOpt(func(c *config) *bool { return &c.reverse })},
	{0, "bidir", "", inClient, "send and receive at the same time", switchOpt(func(c *config) *bool { return &c.bidir })},
	{'P', "parallel", "N", inClient, "parallel streams, 1-128 (default 1)", intOpt(func(c *config) *int { return &c.parallel }, 1, maxParallel)},
	{'u', "udp", "", inClient, "a UDP test: paced datagrams, with jitter and loss", switchOpt(func(c *config) *bool { return &c.udp })},
	{'b', "bitrate", "RATE", inClient, "target per stream, bits/s: K, M, G suffixes are ×1000; a bare number is Mbit/s (-b 10 = 10M); 0 unpaced (UDP default 1M; TCP default unpaced)", rateOpt(func(c *config) *float64 { return &c.rate }, true)},
	{0, "bandwidth", "RATE", inClient, "the same as --bitrate", rateOpt(func(c *config) *float64 { return &c.rate }, true)},
	{0, "udp-transport", "auto|udp|ws", inClient, "UDP over real UDP, over WebSocket, or UDP when the path allows (default auto)", func(c *config, v string) error {
		switch v {
		case "auto", "udp", "ws":
			c.udpTransport = v
			return nil
		}
		return fmt.Errorf("bad --udp-transport %q: want auto, udp or ws", v)
	}},
	{0, "udp-counters-64bit", "", inClient, "accepted for iperf3 scripts: UDP counters are always 64-bit", func(*config, string) error { return nil }},
	{'O', "omit", "SEC", inClient, "leave the first SEC seconds out of the results", secondsOpt(func(c *config) *float64 { return &c.omit }, 0, 86400)},
	{0, "latency-interval", "SEC", inClient, "seconds between latency probes of each kind during a test (default 0.1)", secondsOpt(func(c *config) *float64 { return &c.latencyInterval }, 0.01, 10)},
	{0, "no-latency", "", inClient, "probe no latency during a test", switchOpt(func(c *config) *bool { return &c.noLatency })},
	{0, "ping", "", inClient, "run no bandwidth test: time round trips to the server, as ping does (-i, -l, -t apply)", switchOpt(func(c *config) *bool { return &c.ping })},
	{0, "ping-count", "N", inClient, "probes --ping sends (default 10)", intOpt(func(c *config) *int { return &c.pingCount }, 1, maxPingCount)},
	{0, "ping-timeout", "SEC", inClient, "a --ping reply later than this counts as lost (default 2)", secondsOpt(func(c *config) *float64 { return &c.pingTimeout }, 0.001, 60)},

	// client: socket and message
	{'l', "length", "N[KMG]", inClient, "message size (default 64K, up to 16M); with -u the datagram payload, 16 to 65507 (default 1400); with --ping the probe size, 16 to 64K (default 64)", func(c *config, v string) error {
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
	{0, "notsent-lowat", "N[KMG]", inClient, "cap each sending socket's unsent bytes (TCP_NOTSENT_LOWAT, Linux; both ends): less queue in the sender", func(c *config, v string) error {
		n, err := parseSize(v)
		if err != nil || n < 1024 || n > maxNotSentLowat {
			return fmt.Errorf("bad --notsent-lowat %q: want 1K to 1G", v)
		}
		c.notSentLowat = int(n)
		return nil
	}},
	{0, "fq-rate", "RATE", inClient, "the kernel's pacing cap per sending socket, bits/s as -b (SO_MAX_PACING_RATE, Linux; both ends)", rateOpt(func(c *config) *float64 { return &c.fqRate }, false)},
	{'S', "tos", "N", inClient, "IP type of service (IPv6 traffic class) of every socket, 0-255; 0x and 0 prefixes for hex and octal", setTOS},
	{0, "dscp", "N|NAME", inClient, "the DSCP part of -S: 0-63 or a name such as EF, AF41, CS1", setDSCP},
	{'L', "flowlabel", "N", inClient, "IPv6 flow label of the test's streams, 1-1048575 (Linux)", intOpt(func(c *config) *int { return &c.flowLabel }, 1, 1<<20-1)},
	{0, "cport", "PORT", inClient, "bind the streams to local ports PORT, PORT+1, ... (one per stream)", intOpt(func(c *config) *int { return &c.cport }, 1, 65535)},
	{0, "snd-timeout", "MS", inClient, "fail a connection whose sent data stays unacknowledged for MS milliseconds (TCP_USER_TIMEOUT, Linux)", intOpt(func(c *config) *int { return &c.sndTimeout }, 0, maxSndTimeout)},
	{'Z', "zerocopy", "", inClient, "senders, the server's too (-R, --bidir), splice payload instead of copying it (Linux)", func(*config, string) error { return nil }},
	{0, "no-zerocopy", "", inServer | inClient, "receive messages of 128K and more by reading, not with splice (Linux)", func(*config, string) error { noZeroCopy.Store(true); return nil }},

	// client: output
	{'f', "format", "[kmgtKMGT]", inServer | inClient, "units: bits (kmgt) or bytes (KMGT); adaptive by default; a server's for its log lines", func(c *config, v string) error {
		if len(v) != 1 || strings.IndexByte("kmgtKMGT", v[0]) < 0 {
			return fmt.Errorf("bad --format %q: want one of k m g t K M G T", v)
		}
		c.format = v[0]
		return nil
	}},
	{0, "json-stream", "", inClient, "print one JSON object per line as the test runs", switchOpt(func(c *config) *bool { return &c.jsonStream })},
	{'T', "title", "STR", inClient, "prefix every output line with STR", func(c *config, v string) error { c.title = v; return nil }},
	{0, "get-server-output", "", inClient, "include the server's results", switchOpt(func(c *config) *bool { return &c.getServerOutput })},
	{0, "extra-data", "STR", inClient, "a string for both ends' JSON output (extra_data)", func(c *config, v string) error {
		if len(v) > maxExtraData {
			return fmt.Errorf("bad --extra-data: at most %d bytes", maxExtraData)
		}
		c.extraData = v
		return nil
	}},

	// client: connection
	{0, "connect-timeout", "MS", inClient, "give up connecting after MS milliseconds, as iperf3; also 5s, 500ms (default 10s)", millisOpt(func(c *config) *float64 { return &c.connectTimeout }, 0.001, 3600)},
	{0, "reverse-traceroute", "", inClient, "run no test: have the server trace the route back to this client (--tr-* options apply)", switchOpt(func(c *config) *bool { return &c.reverseTrace })},
	{0, "legacy", "", inClient, "speak the original Python wperf's protocol, to an old server (also tried on its own when a server does not answer wperf.v1); -v then means --verbose", switchOpt(func(c *config) *bool { return &c.legacy })},
	{0, "sim-latency", "MS", inClient, simHelp, simOpt("sim-latency", simMillis)},
	{0, "sim-jitter", "MS", inClient, simHelp, simOpt("sim-jitter", simMillis)},
	{0, "sim-loss", "PCT", inClient, simHelp, simOpt("sim-loss", simPercent)},
	{0, "sim-mtu", "N[KMG]", inClient, simHelp, simOpt("sim-mtu", simSize)},
	{0, "sim-sndbuf", "N[KMG]", inClient, simHelp, simOpt("sim-sndbuf", simSize)},
	{0, "sim-rcvbuf", "N[KMG]", inClient, simHelp, simOpt("sim-rcvbuf", simSize)},
	{0, "sim-tcp-nodelay", "", inClient, simHelp, simOpt("sim-tcp-nodelay", nil)},

	// client: TLS and proxies (tls.go, proxy.go)
	{0, "ca", "FILE", inClient, "also trust the CA certificates in this PEM file (wss://)", fileOpt("ca", func(c *config) *string { return &c.reach.caFile })},
	{0, "fingerprint", "sha256:HEX", inClient, "accept exactly the server certificate with this SHA-256 fingerprint, and no other check (wss://)", func(c *config, v string) error { return c.reach.setFingerprint(v) }},
	{0, "insecure", "", inClient, "do not check the server's certificate at all (wss://)", switchOpt(func(c *config) *bool { return &c.reach.insecure })},
	{0, "proxy", "URL", inClient, "reach the server through this HTTP proxy (http://[user:pass@]host:port) instead of HTTPS_PROXY/HTTP_PROXY", func(c *config, v string) error { return c.reach.setProxy(v) }},

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
	tracing, legacy := false, false
	for _, a := range args {
		if a == "--traceroute" || strings.HasPrefix(a, "--traceroute=") {
			tracing = true
		}
		legacy = legacy || a == "--legacy"
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
			if o.arg != "" && !hasVal && !o.optionalValue() {
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
				if a[j] == 'v' && legacy {
					o = findLong("verbose") // README: The original wperf, -v
				}
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
				if val == "" && !o.optionalValue() {
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

// optionalValue is true for an option whose value may be left out, as
// getopt_long's optional_argument: the value then has to be attached
// (--long=VALUE, -xVALUE), never the next argument.
func (o *option) optionalValue() bool { return strings.HasPrefix(o.arg, "[=") }

// findLong resolves a long name; long names are unique, so no mode is needed.
func findLong(name string) *option {
	for i := range options {
		if options[i].long == name {
			return &options[i]
		}
	}
	return refusedOption(0, name)
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
	return refusedOption(b, "")
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
			switch {
			case o.optionalValue():
				name += o.arg
			case o.arg != "":
				name += " " + o.arg
			}
			fmt.Fprintf(w, "  %-34s %s\n", name, o.help)
		}
	}
	fmt.Fprint(w, "\niperf3 options that wperf refuses (the error line says why):\n ")
	for _, r := range refusedOptions {
		if r.short != 0 {
			fmt.Fprintf(w, " -%c/", r.short)
		} else {
			fmt.Fprint(w, " ")
		}
		fmt.Fprintf(w, "--%s", r.long)
	}
	fmt.Fprintln(w)
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

// rateOpt makes an apply function for a rate in bits/s (parseRate's
// syntax); zeroOK admits 0, which means unpaced.
func rateOpt(field func(*config) *float64, zeroOK bool) func(*config, string) error {
	return func(c *config, v string) error {
		r, err := parseRate(v)
		if err == nil && r == 0 && !zeroOK {
			err = errors.New("want a rate above 0")
		}
		if err != nil {
			return fmt.Errorf("bad value %q: %w", v, err)
		}
		*field(c) = r
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

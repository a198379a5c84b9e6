package main

// udp_session_test.go runs UDP tests end to end on loopback: a wperf -s
// in this process (startE2EServer) and wperf clients in-process, over
// real UDP and over WebSocket; the UDP options' usage errors; and what a
// wperf -s's shared UDP socket answers to datagrams that never proved a
// session's secret: nothing. Results are read by iperf3's key paths for
// UDP (end.sum_sent, end.sum_received, end.sum, end.streams[].udp,
// intervals[].sum) and wperf's start.wperf.transport.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpE2ETransports are the two ways a UDP test's datagrams travel: the
// option that asks for one, and what start.wperf.transport then says.
var udpE2ETransports = []struct{ option, name string }{
	{"udp", "udp"},
	{"ws", "websocket"},
}

// udpE2ERun runs a UDP client with -J against srv; it has to succeed.
func udpE2ERun(t *testing.T, srv *e2eServer, extra ...string) map[string]any {
	t.Helper()
	r := srv.mustRun(t, append([]string{"-u", "-J"}, extra...)...)
	return e2eDecode(t, r.stdout)
}

// udpE2ETransport checks start.wperf.transport, and that a WebSocket run
// says why it is not over real UDP (start.wperf.transport_reason).
func udpE2ETransport(t *testing.T, doc map[string]any, want string) {
	t.Helper()
	got, _ := e2eGet(doc, "start.wperf.transport")
	if got != want {
		t.Errorf("start.wperf.transport = %#v, want %q", got, want)
	}
	reason, _ := e2eGet(doc, "start.wperf.transport_reason")
	switch s, _ := reason.(string); {
	case want == "websocket" && s == "":
		t.Errorf("a WebSocket run without start.wperf.transport_reason (got %#v)", reason)
	case want == "udp" && reason != nil:
		t.Errorf("a real-UDP run with start.wperf.transport_reason %#v", reason)
	}
}

// udpE2EDirection is one direction of a UDP test as the client's -J
// document has it: its end sums, and whether the client sends on the
// streams that carry it (end.streams[].udp.sender).
type udpE2EDirection struct {
	sent, received string // keys under end
	clientSends    bool
}

// udpE2EDirections are the directions a test has, by its options.
func udpE2EDirections(reverse, bidir bool) []udpE2EDirection {
	switch {
	case bidir:
		return []udpE2EDirection{{"sum_sent", "sum_received", true}, {"sum_sent_bidir_reverse", "sum_received_bidir_reverse", false}}
	case reverse:
		return []udpE2EDirection{{"sum_sent", "sum_received", false}}
	}
	return []udpE2EDirection{{"sum_sent", "sum_received", true}}
}

// udpE2EAgree checks that, in every direction, the sender's and the
// receiver's counts agree within loss: the receiver's total is what the
// sender sent (plus what a WebSocket sender dropped, which keeps its
// sequence numbers and shows as lost), the bytes are whole datagrams of
// length, lost_percent is lost over total, jitter is reported, the
// streams add up to the sums, and loss stays at or below maxLoss percent.
// It returns the loss of each direction, in percent.
func udpE2EAgree(t *testing.T, doc map[string]any, dirs []udpE2EDirection, parallel, length int, maxLoss float64) []float64 {
	t.Helper()
	streams := e2eList(t, doc, "end.streams")
	if len(streams) != parallel*len(dirs) {
		t.Errorf("end.streams has %d entries, want %d", len(streams), parallel*len(dirs))
	}
	var losses []float64
	for _, d := range dirs {
		sent, recv := "end."+d.sent, "end."+d.received
		sentPackets, sentBytes := e2eInt(t, doc, sent+".packets"), e2eInt(t, doc, sent+".bytes")
		total, lost := e2eInt(t, doc, recv+".packets"), e2eInt(t, doc, recv+".lost_packets")
		recvBytes, lostPct := e2eInt(t, doc, recv+".bytes"), e2eFloat(t, doc, recv+".lost_percent")
		var streamTotal, streamLost, dropped int64
		n := 0
		for i, s := range streams {
			at := fmt.Sprintf("end.streams[%d].udp", i)
			if e2eBool(t, s, "udp.sender") != d.clientSends {
				continue
			}
			n++
			streamTotal += e2eInt(t, s, "udp.packets")
			streamLost += e2eInt(t, s, "udp.lost_packets")
			if j := e2eFloat(t, s, "udp.jitter_ms"); !(j >= 0) {
				t.Errorf("%s.jitter_ms = %v", at, j)
			}
			if _, ok := e2eGet(s, "udp.dropped"); ok {
				dropped += e2eInt(t, s, "udp.dropped")
			}
		}
		what := fmt.Sprintf("%s/%s", d.sent, d.received)
		switch {
		case n != parallel:
			t.Errorf("%s: %d streams carry it, want %d", what, n, parallel)
		case sentPackets <= 0 || total-lost <= 0:
			t.Errorf("%s: %d datagrams sent, %d of %d arrived: want traffic", what, sentPackets, total-lost, total)
		case sentBytes != sentPackets*int64(length):
			t.Errorf("%s: the sender sent %d bytes in %d datagrams of %d", what, sentBytes, sentPackets, length)
		case total != sentPackets+dropped:
			t.Errorf("%s: the receiver counts %d datagrams, the sender sent %d and dropped %d", what, total, sentPackets, dropped)
		case lost < 0 || lost > total:
			t.Errorf("%s: %d of %d lost", what, lost, total)
		case recvBytes != (total-lost)*int64(length):
			t.Errorf("%s: the receiver got %d bytes, but %d of %d datagrams of %d arrived", what, recvBytes, total-lost, total, length)
		case math.Abs(lostPct-100*float64(lost)/float64(total)) > 1e-9:
			t.Errorf("%s: lost_percent %v for %d of %d", what, lostPct, lost, total)
		case streamTotal != total || streamLost != lost:
			t.Errorf("%s: the streams count %d datagrams and %d lost, the sums %d and %d", what, streamTotal, streamLost, total, lost)
		case lostPct > maxLoss:
			t.Errorf("%s: %d of %d datagrams (%.2f%%) lost, want at most %g%%", what, lost, total, lostPct, maxLoss)
		}
		if j := e2eFloat(t, doc, recv+".jitter_ms"); !(j >= 0) {
			t.Errorf("%s.jitter_ms = %v, want a number ≥ 0", recv, j)
		}
		losses = append(losses, lostPct)
	}
	if j := e2eFloat(t, doc, "end.sum.jitter_ms"); !(j >= 0) {
		t.Errorf("end.sum.jitter_ms = %v, want a number ≥ 0", j)
	}
	return losses
}

// TestUDPLoopbackRate: -u -b 100M -t 3 over either transport sends at
// 100 Mbit/s (iperf3's end.sum_sent.bits_per_second, ±1 %) and loses
// nothing on loopback, and the receiver's jitter is reported.
//
// Both ends here are the wperf binary as released (wperfBinary), not
// this test process: under -race the sender's pacing and the receiver's
// reading run several times slower (a receiver that falls behind stalls
// a WebSocket sender through TCP's flow control), which would measure
// the race detector rather than wperf. Not parallel: other tests' load
// would starve the sender, and so does a busy machine: a sender
// descheduled for longer than the pacer's catch-up bound
// (pacerMaxDebt) gives up slots, so a run off the mark is tried once
// more before the test fails.
func TestUDPLoopbackRate(t *testing.T) {
	bin := wperfBinary(t)
	srv := udpE2EServerBinary(t, bin)
	for _, tr := range udpE2ETransports {
		t.Run(tr.option, func(t *testing.T) {
			const target = 100e6
			var sent float64
			var lost int64
			for try := 1; ; try++ {
				doc := udpE2ERunBinary(t, bin, srv, "-b", "100M", "-t", "3", "--udp-transport", tr.option)
				udpE2ETransport(t, doc, tr.name)
				udpE2EAgree(t, doc, udpE2EDirections(false, false), 1, defaultDatagram, 100)
				sent = e2eFloat(t, doc, "end.sum_sent.bits_per_second")
				lost = e2eInt(t, doc, "end.sum.lost_packets")
				lostPct := e2eFloat(t, doc, "end.sum.lost_percent")
				var perInterval []int64
				for _, iv := range e2eList(t, doc, "intervals") {
					perInterval = append(perInterval, e2eInt(t, iv, "sum.packets"))
				}
				t.Logf("try %d: sent %.2f Mbit/s (datagrams a second: %d), received %.2f Mbit/s, %d lost (%.3g%%), jitter %.3f ms",
					try, sent/1e6, perInterval, e2eFloat(t, doc, "end.sum_received.bits_per_second")/1e6, lost, lostPct, e2eFloat(t, doc, "end.sum.jitter_ms"))
				if (math.Abs(sent/target-1) <= 0.01 && lost == 0 && lostPct == 0) || try == 2 || t.Failed() {
					break
				}
			}
			if math.Abs(sent/target-1) > 0.01 {
				t.Errorf("sent at %.2f Mbit/s, want 100 ± 1 %%", sent/1e6)
			}
			if lost != 0 {
				t.Errorf("%d datagrams lost on loopback", lost)
			}
		})
	}
}

// udpE2ERunBinary runs the wperf binary as a UDP client with -J against
// srv; it has to succeed.
func udpE2ERunBinary(t *testing.T, bin string, srv *e2eServer, extra ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(srv.args("-u", "-J"), extra...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("wperf %q: %v\n--- stderr:\n%s--- stdout:\n%s", extra, err, stderr.String(), out)
	}
	return e2eDecode(t, string(out))
}

// udpE2EServerBinary runs the wperf binary as a server on a free
// loopback port until the test ends, and returns it as an e2eServer for
// its args (its out stays empty: the process logs to the test's log on
// failure).
func udpE2EServerBinary(t *testing.T, bin string) *e2eServer {
	t.Helper()
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		var log strings.Builder
		cmd := exec.Command(bin, "-s", "-B", "127.0.0.1", "-p", port)
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			if t.Failed() {
				t.Logf("wperf -s:\n%s", log.String())
			}
		})
		for deadline := time.Now().Add(10 * time.Second); ; {
			if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
				c.Close()
				return &e2eServer{host: "127.0.0.1", port: port}
			}
			select {
			case <-exited: // the port was taken meanwhile: another one
			case <-time.After(20 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				t.Fatalf("wperf -s on port %s does not accept connections", port)
			}
			break
		}
		if try == 2 {
			t.Fatalf("wperf -s would not start:\n%s", log.String())
		}
	}
}

// TestUDPLoopbackDirections: -R, --bidir and -P 3 work over either
// transport: the run succeeds, goes over the transport asked for, and
// every direction's sender and receiver agree on what was sent, what
// arrived and what was lost.
func TestUDPLoopbackDirections(t *testing.T) {
	srv := startE2EServer(t)
	for _, tr := range udpE2ETransports {
		for _, c := range []struct {
			name            string
			args            []string
			parallel        int
			reverse, bidir  bool
			senderIntervals bool // the client's intervals are its senders'
		}{
			{"reverse", []string{"-R"}, 1, true, false, false},
			{"bidir", []string{"--bidir"}, 1, false, true, true},
			{"parallel 3", []string{"-P", "3"}, 3, false, false, true},
		} {
			t.Run(tr.option+" "+c.name, func(t *testing.T) {
				args := append([]string{"-b", "20M", "-t", "2", "--udp-transport", tr.option}, c.args...)
				doc := udpE2ERun(t, srv, args...)
				udpE2ETransport(t, doc, tr.name)
				// 20 Mbit/s on loopback loses nothing on an idle machine;
				// 1 % leaves room for a busy one without hiding a broken
				// direction.
				losses := udpE2EAgree(t, doc, udpE2EDirections(c.reverse, c.bidir), c.parallel, defaultDatagram, 1)
				t.Logf("loss per direction: %.3g%%", losses)
				ivs := e2eList(t, doc, "intervals")
				if len(ivs) < 2 {
					t.Fatalf("%d intervals for a 2 s test", len(ivs))
				}
				var packets int64
				for _, iv := range ivs {
					packets += e2eInt(t, iv, "sum.packets")
					e2eInt(t, iv, "sum.bytes")
					if c.bidir {
						e2eInt(t, iv, "sum_bidir_reverse.packets")
					}
				}
				// A sender's intervals cover everything it sent.
				if sent := e2eInt(t, doc, "end.sum_sent.packets"); c.senderIntervals && packets != sent {
					t.Errorf("intervals[].sum.packets add up to %d, end.sum_sent.packets is %d", packets, sent)
				}
			})
		}
	}
}

// TestUDPLoopbackUnpaced: -b 0 sends as fast as the transport takes it;
// the run completes and reports, loss and all.
func TestUDPLoopbackUnpaced(t *testing.T) {
	srv := startE2EServer(t)
	for _, tr := range udpE2ETransports {
		t.Run(tr.option, func(t *testing.T) {
			doc := udpE2ERun(t, srv, "-b", "0", "-t", "2", "--udp-transport", tr.option)
			udpE2ETransport(t, doc, tr.name)
			losses := udpE2EAgree(t, doc, udpE2EDirections(false, false), 1, defaultDatagram, 100)
			if b := e2eFloat(t, doc, "start.test_start.target_bitrate"); b != 0 {
				t.Errorf("start.test_start.target_bitrate = %v for -b 0", b)
			}
			t.Logf("sent %.0f Mbit/s unpaced, %.3g%% lost",
				e2eFloat(t, doc, "end.sum_sent.bits_per_second")/1e6, losses[0])
		})
	}
	t.Run("text warns", func(t *testing.T) {
		r := srv.mustRun(t, "-u", "-b", "0", "-t", "0.5")
		if !strings.Contains(r.stdout, "warning: -b 0") || !strings.Contains(r.stdout, "Lost/Total Datagrams") {
			t.Errorf("an unpaced text run lacks the warning or the UDP summary:\n%s", r.stdout)
		}
	})
}

// TestUDPFlagErrors: bad UDP options exit 2 with one line naming the
// option and the --help hint, as every usage error does
// (TestFlagErrors); their bounds are accepted.
func TestUDPFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		mention []string
	}{
		{"rate not a number", []string{"-u", "-b", "x"}, []string{"-b", "--bitrate"}},
		{"negative rate", []string{"-u", "-b", "-5"}, []string{"-b", "--bitrate"}},
		{"rate with an exponent", []string{"-u", "-b", "1e3"}, []string{"-b", "--bitrate"}},
		{"rate suffix only", []string{"-u", "-b", "M"}, []string{"-b", "--bitrate"}},
		{"rate over 100G", []string{"-u", "-b", "101G"}, []string{"-b", "--bitrate"}},
		{"datagram too short", []string{"-u", "-l", "15"}, []string{"-l"}},
		{"datagram too long", []string{"-u", "-l", "65508"}, []string{"-l"}},
		{"datagram too short, -l first", []string{"-l", "15", "-u"}, []string{"-l"}},
		{"unknown transport", []string{"-u", "--udp-transport", "tcp"}, []string{"--udp-transport"}},
		{"TCP rate not a number", []string{"-b", "x"}, []string{"-b", "--bitrate"}},
		{"TCP rate over 100G", []string{"--bandwidth=101G"}, []string{"--bandwidth"}},
		{"transport without -u", []string{"--udp-transport", "udp"}, []string{"--udp-transport"}},
		{"server rate cap not a number", []string{"-s", "--max-udp-rate", "x"}, []string{"--max-udp-rate"}},
		{"server rate cap zero", []string{"-s", "--max-udp-rate", "0"}, []string{"--max-udp-rate"}},
		{"-u on a server", []string{"-s", "-u"}, []string{"-u", "--udp"}},
		{"--no-udp on a client", []string{"-u", "--no-udp"}, []string{"--no-udp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] != "-s" {
				args = append([]string{"-c", noServer}, args...)
			}
			code, stdout, stderr := runArgs(t, args...)
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

	// The bounds themselves are fine, so the cases above fail for the
	// value, not for the option.
	for _, tc := range []struct {
		args  []string
		check func(c *config) bool
	}{
		{[]string{"-u", "-l", "16"}, func(c *config) bool { return c.length == 16 }},
		{[]string{"-u", "-l", "65507"}, func(c *config) bool { return c.length == 65507 }},
		{[]string{"-u"}, func(c *config) bool { return c.length == 1400 && c.rate == 1e6 && c.udpTransport == "auto" }},
		{[]string{"-u", "-b", "0"}, func(c *config) bool { return c.rate == 0 }},
		{[]string{"-u", "-b", "5"}, func(c *config) bool { return c.rate == 5e6 }},
		{[]string{"-u", "-b", "2.5k"}, func(c *config) bool { return c.rate == 2500 }},
		{[]string{"-u", "-b", "100G"}, func(c *config) bool { return c.rate == 100e9 }},
		{[]string{"-u", "--bitrate=20M", "--udp-transport=ws"}, func(c *config) bool { return c.rate == 20e6 && c.udpTransport == "ws" }},
	} {
		c, err := parseArgs(append([]string{"-c", noServer}, tc.args...))
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
		} else if !tc.check(c) {
			t.Errorf("%q: parsed to length %d, rate %g, transport %q", tc.args, c.length, c.rate, c.udpTransport)
		}
	}
}

// TestUDPServerWithoutUDP: a server started with --no-udp offers no real
// UDP. auto then runs over WebSocket and says why, in one text line and
// in start.wperf.transport_reason; --udp-transport udp fails at once with
// one error line (or the -J error document), rather than waiting for a
// start that cannot come.
func TestUDPServerWithoutUDP(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--no-udp")

	r := srv.mustRun(t, "-u", "-t", "0.5")
	var says []string
	for _, l := range e2eLines(r.stdout) {
		if strings.Contains(l, "WebSocket") {
			says = append(says, l)
		}
	}
	if len(says) != 1 || !strings.Contains(says[0], "fell back") || !strings.Contains(says[0], "offers no real UDP") {
		t.Errorf("want one line saying auto fell back and why, got %q in:\n%s", says, r.stdout)
	}
	doc := udpE2ERun(t, srv, "-t", "0.5")
	udpE2ETransport(t, doc, "websocket")
	if reason, _ := e2eGet(doc, "start.wperf.transport_reason"); reason != "the server offers no real UDP" {
		t.Errorf("start.wperf.transport_reason = %#v", reason)
	}
	udpE2EAgree(t, doc, udpE2EDirections(false, false), 1, defaultDatagram, 100)

	start := time.Now()
	r = e2eRun(srv.args("-u", "-t", "0.5", "--udp-transport", "udp")...)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("--udp-transport udp took %v to fail", took)
	}
	if r.code != exitRuntime || r.stderr != "wperf: --udp-transport udp: the server offers no real UDP\n" {
		t.Errorf("want exit 1 and one error line, got %v", r)
	}
	r = e2eRun(srv.args("-u", "-J", "-t", "0.5", "--udp-transport", "udp")...)
	if r.code != exitRuntime || r.stderr != "" {
		t.Errorf("-J: want exit 1 and a quiet stderr, got %v", r)
	}
	if msg, _ := e2eGet(e2eDecode(t, r.stdout), "error"); msg != "--udp-transport udp: the server offers no real UDP" {
		t.Errorf("-J: error %#v", msg)
	}
}

// ---- no reflection ----

// udpE2EOffer asks srv by hand, as a third-party client would, for an
// upload UDP test over real UDP, and returns the offer: the UDP port and
// the session's secret. The session stays registered until the test
// drops the control connection (its cleanup does) or the server gives up
// waiting for the transport message.
func udpE2EOffer(t *testing.T, srv *e2eServer) (*wsConn, *udpOffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, "ws://"+net.JoinHostPort(srv.host, srv.port)+"/", dialOptions{subprotocols: []string{subprotocolV1}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.Abort)
	req := testRequest{Type: msgTest, Version: protocolVersion, Cookie: newCookie(), Direction: dirUpload,
		Protocol: "udp", Time: 2, Length: defaultDatagram, Parallel: 1, Interval: 1, Rate: 1e6, UDPTransport: "udp"}
	if err := sendJSON(c, req); err != nil {
		t.Fatal(err)
	}
	msg, kind, err := readControlMessage(c, 5*time.Second)
	if err != nil || kind != msgAccept {
		t.Fatalf("want an accept, got %q %s (%v)", kind, msg, err)
	}
	var a acceptMsg
	if err := json.Unmarshal(msg, &a); err != nil || a.UDP == nil {
		t.Fatalf("an accept without a UDP offer: %s (%v)", msg, err)
	}
	if strconv.Itoa(a.UDP.Port) != srv.port {
		t.Errorf("the server offers UDP port %d, its TCP port is %s", a.UDP.Port, srv.port)
	}
	return c, a.UDP
}

// udpE2ESocket is a UDP socket aimed at the server's UDP port, closed
// when the test ends.
func udpE2ESocket(t *testing.T, srv *e2eServer) *net.UDPConn {
	t.Helper()
	c, err := net.Dial("udp", net.JoinHostPort(srv.host, srv.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

// udpE2EData is a data datagram's header alone: sequence seq, sent at 0.
func udpE2EData(seq uint64) []byte {
	b := make([]byte, datagramHeaderLen)
	putDatagramHeader(b, seq, 0)
	return b
}

// udpE2EAnswers reads what c receives within d: every datagram, whole.
func udpE2EAnswers(c *net.UDPConn, d time.Duration) [][]byte {
	var got [][]byte
	c.SetReadDeadline(time.Now().Add(d))
	for {
		buf := make([]byte, 70000)
		n, err := c.Read(buf)
		if err != nil {
			return got
		}
		got = append(got, buf[:n])
	}
}

// TestUDPNoReflection: a wperf -s's UDP port answers nobody who has not
// proved a live session's secret. Strangers' junk, data from unbound
// sources, and hellos with a wrong secret, an unknown stream, the wrong
// kind or the wrong size get no reply at all, while a session is live
// and after; a hello with the secret gets exactly one ack no larger than
// itself; and once the session ends, even the right secret gets nothing.
// (udp_net_test.go checks the listener's own counts of what it sent;
// lab_udp_test.go counts the server's bytes on the wire.)
func TestUDPNoReflection(t *testing.T) {
	srv := startE2EServer(t)
	const quiet = 300 * time.Millisecond

	// Before any session: nothing is registered, so nothing can be proved.
	early := udpE2ESocket(t, srv)
	var b [udpControlLen]byte
	early.Write(putControl(b[:], udpKindHello, 1, newUDPSecret()))
	early.Write(udpE2EData(1))
	if got := udpE2EAnswers(early, quiet); len(got) > 0 {
		t.Fatalf("with no session, the server answered a stranger: %x", got)
	}

	ctrl, offer := udpE2EOffer(t, srv)
	secret, err := parseUDPSecret(offer.Secret)
	if err != nil {
		t.Fatal(err)
	}
	wrong := secret
	wrong[15] ^= 0x80
	junk := [][]byte{
		putControl(make([]byte, udpControlLen), udpKindHello, 1, wrong),                    // the live stream, a wrong secret
		putControl(make([]byte, udpControlLen), udpKindHello, 1, newUDPSecret()),           // a random secret
		putControl(make([]byte, udpControlLen), udpKindHello, 2, secret),                   // a stream the session lacks
		putControl(make([]byte, udpControlLen), udpKindAck, 1, secret),                     // an ack, not a hello
		append(putControl(make([]byte, udpControlLen), udpKindHello, 1, secret), 0),        // a byte too long
		putControl(make([]byte, udpControlLen), udpKindHello, 1, secret)[:udpControlLen-1], // a byte too short
		append([]byte("wpud\x02"), make([]byte, udpControlLen-5)...),                       // another version
		udpE2EData(1),      // data from an unbound source
		make([]byte, 1400), // zeros
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		make([]byte, maxDatagram), // the largest datagram
		{},                        // an empty one
	}
	stranger := udpE2ESocket(t, srv)
	for _, p := range junk {
		if _, err := stranger.Write(p); err != nil {
			t.Fatalf("send %d bytes: %v", len(p), err)
		}
	}
	if got := udpE2EAnswers(stranger, quiet); len(got) > 0 {
		t.Fatalf("the server answered %d of a stranger's datagrams: %x", len(got), got)
	}

	// The control: the secret is answered, once per hello, with an ack
	// of the hello's size, to the hello's sender only.
	friend := udpE2ESocket(t, srv)
	hello := putControl(make([]byte, udpControlLen), udpKindHello, 1, secret)
	friend.Write(hello)
	acks := udpE2EAnswers(friend, time.Second)
	if len(acks) != 1 {
		t.Fatalf("a hello with the session's secret got %d answers, want one ack: %x", len(acks), acks)
	}
	kind, id, s, ok := readControl(acks[0])
	if !ok || kind != udpKindAck || id != 1 || s != secret || len(acks[0]) > len(hello) {
		t.Fatalf("the answer to a good hello is not its ack: %x", acks[0])
	}

	// With a bound stream, a stranger's data and hellos still get
	// nothing, and bring the friend nothing either.
	for _, p := range junk {
		stranger.Write(p)
	}
	if got := udpE2EAnswers(stranger, quiet); len(got) > 0 {
		t.Fatalf("with a bound stream, the server answered a stranger: %x", got)
	}
	if got := udpE2EAnswers(friend, 100*time.Millisecond); len(got) > 0 {
		t.Fatalf("a stranger's datagrams made the server send %d datagrams to the bound peer", len(got))
	}

	// The session ends with its control connection; its secret is dead.
	ctrl.Abort()
	e2eWaitFor(t, 5*time.Second, "the session to end", func() bool {
		friend.Write(hello)
		return len(udpE2EAnswers(friend, 200*time.Millisecond)) == 0
	})
	late := udpE2ESocket(t, srv)
	late.Write(hello)
	if got := udpE2EAnswers(late, quiet); len(got) > 0 {
		t.Fatalf("an ended session's secret was answered: %x", got)
	}
}

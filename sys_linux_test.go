package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sockInt reads an int socket option of a connection.
func sockInt(t *testing.T, nc net.Conn, level, name int) int {
	t.Helper()
	var b [4]byte
	if getsockopt(nc, level, name, b[:]) < 4 {
		t.Fatalf("getsockopt(%d, %d) failed", level, name)
	}
	return int(binary.NativeEndian.Uint32(b[:]))
}

// flowLabelOf reads the flow label the kernel sends a connected IPv6
// socket's packets with (IPV6_FLOWLABEL_MGR read back, ipv6(7)).
func flowLabelOf(nc net.Conn) int {
	var req [32]byte
	if getsockopt(nc, syscall.IPPROTO_IPV6, ipv6FlowLabelMgr, req[:]) < 20 {
		return 0
	}
	return int(binary.BigEndian.Uint32(req[16:20]) & 0xfffff)
}

// loopbackListener listens on the loopback address of a family, skipping
// the test when the family is missing.
func loopbackListener(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln
}

// TestClientDialMarksSockets dials through the client's dial options, the
// path of its control connection, streams, latency probes and reverse
// traceroutes, and reads the options back from the real sockets: -S (IP
// TOS, or the IPv6 traffic class), --bind-dev, --snd-timeout, --cport and
// -L on IPv6.
func TestClientDialMarksSockets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_BINDTODEVICE needs root (CI runs as root)")
	}
	cases := []struct {
		network, listen string
		tosLevel, tos   int
	}{
		{"tcp4", "127.0.0.1:0", syscall.IPPROTO_IP, syscall.IP_TOS},
		{"tcp6", "[::1]:0", syscall.IPPROTO_IPV6, syscall.IPV6_TCLASS},
	}
	for _, tc := range cases {
		t.Run(tc.network, func(t *testing.T) {
			ln := loopbackListener(t, tc.network, tc.listen)
			cfg, err := parseArgs([]string{"-c", noServer, "--dscp", "AF41", "--bind-dev", "lo", "--snd-timeout", "4321"})
			if err != nil {
				t.Fatal(err)
			}
			cport := closedLoopbackPortOf(t, tc.network)
			local := &net.TCPAddr{Port: cport}
			opt := dialOptionsFrom(cfg, sockOpts{flowLabel: 0xbeef, local: local}.preConnect, nil)
			if tc.network == "tcp4" {
				opt = dialOptionsFrom(cfg, nil, local)
			}
			nc, err := opt.dial(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if got := sockInt(t, nc, tc.tosLevel, tc.tos); got != 34<<2 {
				t.Errorf("TOS/traffic class: got %#x, want %#x (AF41)", got, 34<<2)
			}
			var dev [16]byte
			if n := getsockopt(nc, syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, dev[:]); strings.TrimRight(string(dev[:n]), "\x00") != "lo" {
				t.Errorf("SO_BINDTODEVICE: got %q, want lo", dev[:n])
			}
			if got := sockInt(t, nc, syscall.IPPROTO_TCP, tcpUserTimeout); got != 4321 {
				t.Errorf("TCP_USER_TIMEOUT: got %d, want 4321", got)
			}
			if got := nc.LocalAddr().(*net.TCPAddr).Port; got != cport {
				t.Errorf("local port: got %d, want --cport's %d", got, cport)
			}
			if got := flowLabelOf(nc); tc.network == "tcp6" && got != 0xbeef {
				t.Errorf("IPv6 flow label: got %#x, want 0xbeef", got)
			}
		})
	}
}

// closedLoopbackPortOf is a free loopback port of the family.
func closedLoopbackPortOf(t *testing.T, network string) int {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestFlowLabelNeedsIPv6: -L on an IPv4 connection, or on real-UDP
// datagrams, is an error, never a silent no-op; so is --fq-rate with -u.
func TestFlowLabelNeedsIPv6(t *testing.T) {
	ln := loopbackListener(t, "tcp4", "127.0.0.1:0")
	opt := dialOptionsFrom(&config{tos: -1}, sockOpts{flowLabel: 5}.preConnect, nil)
	if nc, err := opt.dial(context.Background(), "tcp", ln.Addr().String()); err == nil {
		nc.Close()
		t.Fatal("dialled IPv4 with a flow label; want errFlowLabelV4")
	}
	for _, args := range [][]string{{"-4", "-L", "5"}, {"-6", "-u", "-L", "5"}, {"-6", "-u", "--udp-transport", "udp", "-L", "5"}} {
		if code, _, stderr := runArgs(t, append([]string{"-c", noServer}, args...)...); code != exitUsage || !strings.Contains(stderr, "--flowlabel") {
			t.Errorf("%q: want exit 2 naming --flowlabel, got %d: %s", args, code, stderr)
		}
	}
	if code, _, stderr := runArgs(t, "-c", noServer, "-u", "--fq-rate", "10M"); code != exitUsage || !strings.Contains(stderr, "--fq-rate") {
		t.Errorf("-u --fq-rate: want exit 2 naming --fq-rate, got %d: %s", code, stderr)
	}
}

// TestServerStreamOptions applies the options a server puts on its end
// of a stream, and reads them back: the requested TOS, and on a sending
// stream of a -b or --fq-rate test the kernel's pacing cap in bytes/s.
func TestServerStreamOptions(t *testing.T) {
	cases := []struct {
		name         string
		rate, fqRate float64
		want         uint32 // SO_MAX_PACING_RATE, bytes/s
	}{
		{"-b 100M", 100e6, 0, 100e6 / 8 * 17 / 16},
		{"--fq-rate 80M", 0, 80e6, 10e6},
		{"both: --fq-rate is the cap", 100e6, 40e6, 5e6},
		{"above 34 Gbit/s: the 32-bit ceiling", 0, 50e9, kernelPacingCeiling},
		{"below 8 bit/s: 1 byte/s, never 0 (no pacing)", 0, 4, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := udpTCPPair(t)
			o := sockOpts{marks: socketMarks{tos: 0xb8}, pacingRate: kernelPacingFor(tc.rate, tc.fqRate)}
			if err := o.applyAccepted(a); err != nil {
				t.Fatal(err)
			}
			if got := sockInt(t, a, syscall.IPPROTO_IP, syscall.IP_TOS); got != 0xb8 {
				t.Errorf("IP_TOS: got %#x, want 0xb8", got)
			}
			if got := uint32(sockInt(t, a, syscall.SOL_SOCKET, soMaxPacingRate)); got != tc.want {
				t.Errorf("SO_MAX_PACING_RATE: got %d, want %d", got, tc.want)
			}
			if got := uint32(sockInt(t, b, syscall.SOL_SOCKET, soMaxPacingRate)); got != math.MaxUint32 {
				t.Errorf("the untouched end's SO_MAX_PACING_RATE: got %d, want none (~0)", got)
			}
		})
	}
}

// ssTOS lists the established TCP sockets to or from port with the TOS
// ss(8) reads from the kernel: "local tos" per line.
func ssTOS(t *testing.T, port string) []string {
	t.Helper()
	out, err := exec.Command("ss", "-Htn", "--tos", "state", "established", "( sport = :"+port+" or dport = :"+port+" )").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	re := regexp.MustCompile(`(\S+:\d+)\s+(\S+:\d+).*?tos:(0x[0-9a-f]+)`)
	var socks []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		socks = append(socks, m[1]+" "+m[2]+" "+m[3])
	}
	return socks
}

// TestTOSOnEveryClientSocket runs a test with -S and looks at the kernel's
// sockets while it runs: every socket of the client (control, streams,
// latency probes when ss catches them) carries the TOS, and so do the
// server's ends of the streams, which the request asks it to mark.
func TestTOSOnEveryClientSocket(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss(8) is not installed (iproute2)")
	}
	srv := startE2EServer(t)
	run := e2eStart(srv.args("-t", "2", "-S", "0xb8", "-b", "20M", "-P", "2")...)
	client, serverMarked := map[string]string{}, 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, s := range ssTOS(t, srv.port) {
			f := strings.Fields(s)
			if strings.HasSuffix(f[1], ":"+srv.port) {
				client[f[0]] = f[2]
			} else if f[2] == "0xb8" {
				serverMarked++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := run.wait(t, 20*time.Second); r.code != exitOK {
		t.Fatalf("client: %v", r)
	}
	if len(client) < 3 {
		t.Fatalf("saw %d client sockets, want the control connection and two streams at least: %v", len(client), client)
	}
	for addr, tos := range client {
		if tos != "0xb8" {
			t.Errorf("client socket %s has TOS %s, want 0xb8", addr, tos)
		}
	}
	if serverMarked == 0 {
		t.Error("no server socket carried the requested TOS")
	}
}

// TestTCPBitrate runs -b on TCP tests over loopback, which would run at
// many Gbit/s unpaced: each stream's received rate must be within 10 % of
// -b, upload and download (the server's senders keep to the request's
// rate), one stream and several.
func TestTCPBitrate(t *testing.T) {
	srv := startE2EServer(t)
	cases := []struct {
		args    []string
		perRate float64
		streams int
	}{
		{[]string{"-b", "100M"}, 100e6, 1},
		{[]string{"-b", "40M", "-R"}, 40e6, 1},
		{[]string{"-b", "30M", "-P", "2"}, 30e6, 2},
		{[]string{"--bitrate", "25M", "-P", "2", "--bidir"}, 25e6, 4},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := srv.mustRun(t, append([]string{"-t", "2", "-J", "--no-latency"}, tc.args...)...)
			doc := e2eDecode(t, r.stdout)
			streams := e2eList(t, doc, "end.streams")
			if len(streams) != tc.streams {
				t.Fatalf("%d streams in end.streams, want %d", len(streams), tc.streams)
			}
			if got := e2eFloat(t, doc, "start.target_bitrate"); got != tc.perRate {
				t.Errorf("start.target_bitrate %g, want -b's %g, as iperf3 reports it", got, tc.perRate)
			}
			for i, s := range streams {
				got := e2eFloat(t, s, "receiver.bits_per_second")
				if ratio := got / tc.perRate; ratio < 0.9 || ratio > 1.1 {
					t.Errorf("stream %d: %.1f Mbit/s received, want %.0f ±10 %%", i+1, got/1e6, tc.perRate/1e6)
				}
			}
		})
	}
}

// TestAffinityAndPIDFile runs the wperf binary as a server with -A and
// -I: the pid file holds its pid while it runs, every one of its threads
// may run on the chosen CPU only, and the file is gone once SIGTERM
// ends it.
func TestAffinityAndPIDFile(t *testing.T) {
	cpu := runtime.NumCPU() - 1
	pidfile := filepath.Join(t.TempDir(), "wperf.pid")
	cmd := exec.Command(wperfBinary(t), "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(closedLoopbackPortOf(t, "tcp4")),
		"-A", strconv.Itoa(cpu), "-I", pidfile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid []byte
	e2eWaitFor(t, 10*time.Second, "the pid file", func() bool {
		pid, _ = os.ReadFile(pidfile)
		return len(pid) > 0
	})
	if got := strings.TrimSpace(string(pid)); got != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("pid file holds %q, want %d", got, cmd.Process.Pid)
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if len(tasks) == 0 {
		t.Fatal("no threads found in /proc")
	}
	for _, task := range tasks {
		status, _ := os.ReadFile(task)
		m := regexp.MustCompile(`Cpus_allowed_list:\s*(\S+)`).FindSubmatch(status)
		if m == nil || string(m[1]) != strconv.Itoa(cpu) {
			t.Errorf("%s: Cpus_allowed_list %q, want %d", task, m, cpu)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("server after SIGTERM: %v", err)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Fatalf("pid file still there after exit: %v", err)
	}
}

// TestServerBindDev: a server's --bind-dev binds its TCP listener and its
// UDP socket to the interface, as ss(8) reads them back from the kernel
// (ADDR%DEV:PORT).
func TestServerBindDev(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_BINDTODEVICE needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss(8) is not installed (iproute2)")
	}
	port := e2eClosedPort(t)
	cfg, err := parseArgs([]string{"-s", "-B", "127.0.0.1%lo", "-p", port})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServer(ctx, cfg, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	for _, proto := range []string{"-Htln", "-Huln"} {
		var out []byte
		e2eWaitFor(t, 5*time.Second, "the socket", func() bool {
			out, _ = exec.Command("ss", proto, "( sport = :"+port+" )").Output()
			return len(out) > 0
		})
		if !strings.Contains(string(out), "127.0.0.1%lo:"+port) {
			t.Errorf("ss %s shows %q; want the socket bound to lo (127.0.0.1%%lo:%s)", proto, out, port)
		}
	}
}

// TestUDPStreamSocketMarks: a real-UDP stream's socket gets -S and
// --cport like a TCP stream's (the dialer udp_session.go uses).
func TestUDPStreamSocketMarks(t *testing.T) {
	port := closedLoopbackPortOf(t, "tcp4")
	cfg, err := parseArgs([]string{"-c", noServer, "-S", "0x28", "--cport", strconv.Itoa(port)})
	if err != nil {
		t.Fatal(err)
	}
	ct := &clientTest{cfg: cfg}
	nc, err := ct.udpDialer(2).Dial("udp4", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := sockInt(t, nc, syscall.IPPROTO_IP, syscall.IP_TOS); got != 0x28 {
		t.Errorf("IP_TOS: got %#x, want 0x28", got)
	}
	if got := nc.LocalAddr().(*net.UDPAddr).Port; got != port+1 {
		t.Errorf("stream 2's local port: got %d, want %d", got, port+1)
	}
}

// TestTCPBitratePerStreamLikeIperf3 runs the same -b -P invocation
// through iperf3 3.12 and wperf on loopback: in both, every stream keeps
// to -b (so the sum is P times it).
func TestTCPBitratePerStreamLikeIperf3(t *testing.T) {
	args := []string{"-t", "2", "-J", "-P", "2", "-b", "20M"}
	ref := iperf3Run(t, nil, args...)
	srv := startE2EServer(t)
	mine := srv.mustRun(t, append(args, "--no-latency")...).stdout
	for name, out := range map[string]string{"iperf3": ref, "wperf": mine} {
		streams := e2eList(t, e2eDecode(t, out), "end.streams")
		if len(streams) != 2 {
			t.Fatalf("%s: %d streams, want 2", name, len(streams))
		}
		for i, s := range streams {
			if got := e2eFloat(t, s, "receiver.bits_per_second"); got < 18e6 || got > 22e6 {
				t.Errorf("%s stream %d: %.1f Mbit/s, want 20 ±10 %%", name, i+1, got/1e6)
			}
		}
	}
}

package main

// The lab: network namespaces joined by veth pairs, built and torn down by
// the tests that need real routers, DNS, shaping or NAT (Linux and root
// only; its tests skip elsewhere). Every command that touches a network
// runs through `ip netns exec` inside a namespace the lab made; only
// creating and deleting the namespaces themselves happens outside.
// Addresses come only from 198.18.0.0/15 and 2001:db8::/32, and no
// namespace gets a default route, so no packet can leave the lab.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// labCmdTimeout bounds every command a lab runs, so a hung one fails its
// test instead of the whole run.
const labCmdTimeout = 2 * time.Minute

// TestMain removes the wperf binary that lab tests built, once all tests ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if labBinary.dir != "" {
		os.RemoveAll(labBinary.dir)
	}
	os.Exit(code)
}

var (
	// labRun makes namespace names unique across concurrent `go test` runs.
	labRun = fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	labSeq atomic.Int32
)

// lab is a set of network namespaces owned by one test. Subtests use
// l.sub(t), which shares the namespaces but reports to the subtest.
type lab struct {
	t testing.TB
	*labState
}

type labState struct {
	tag string // prefix of this lab's namespace names
	dir string // logs of started processes, pid files

	etc []string // /etc/netns/NS directories made by resolvConf

	mu    sync.Mutex
	ns    map[string]bool
	order []string
	links int
	procs []labProc
}

type labProc struct {
	cmd *exec.Cmd
	log string
}

// newLab makes an empty lab whose namespaces and processes go away when the
// test ends, pass or fail. It skips the test when not root or without `ip`.
func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root to make network namespaces (CI runs them as root)")
	}
	labNeeds(t, "ip")
	l := &lab{t: t, labState: &labState{
		tag: fmt.Sprintf("wp%s-%d-", labRun, labSeq.Add(1)),
		dir: t.TempDir(),
		ns:  map[string]bool{},
	}}
	t.Cleanup(l.cleanup) // after TempDir's, so it runs before it
	return l
}

// labNeeds skips the test when a tool is missing, except in CI, where a
// missing tool is a broken setup and fails the test.
func labNeeds(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("lab test needs %s: %v", tool, err)
			}
			t.Skipf("lab test needs %s (apt-get install -y iproute2 traceroute dnsmasq nftables): %v", tool, err)
		}
	}
}

// sub is the same lab reporting to another test, for subtests.
func (l *lab) sub(t testing.TB) *lab { return &lab{t: t, labState: l.labState} }

// addNS makes a namespace with lo up and IPv6 duplicate address detection
// off (addresses would stay tentative for a while otherwise), and returns
// its real name: short, and unique to this lab and this run.
func (l *lab) addNS(name string) string {
	l.t.Helper()
	ns := l.tag + name
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		l.t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	l.mu.Lock()
	l.ns[ns] = true
	l.order = append(l.order, ns)
	l.mu.Unlock()
	l.run(ns, "ip", "link", "set", "lo", "up")
	l.run(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return ns
}

// link joins two of the lab's namespaces with a veth pair, gives each end
// its addresses (CIDR form, IPv4 and/or IPv6) and brings both up. The pair
// is made from inside nsA, with its peer created straight in nsB, so it
// never exists in the host's namespace.
//
// Each end also knows the other's addresses with a permanent neighbour
// entry: on a fresh veth pair the first ARP or neighbour-discovery answer
// can get lost (seen with Linux 6.18), which delays the first packets by a
// one-second retransmit and makes early measurements flaky.
func (l *lab) link(nsA, nsB string, addrsA, addrsB []string) (ifA, ifB string) {
	l.t.Helper()
	l.mu.Lock()
	l.links++
	n := l.links
	l.mu.Unlock()
	ifA, ifB = fmt.Sprintf("veth%da", n), fmt.Sprintf("veth%db", n)
	// locally administered MACs; they need to be unique on this link only
	macA, macB := fmt.Sprintf("02:77:70:%02x:%02x:0a", n>>8&0xff, n&0xff), fmt.Sprintf("02:77:70:%02x:%02x:0b", n>>8&0xff, n&0xff)
	if !l.owns(nsB) {
		l.t.Fatalf("lab: %s is not one of this lab's namespaces", nsB)
	}
	l.run(nsA, "ip", "link", "add", ifA, "address", macA, "type", "veth", "peer", "name", ifB, "address", macB, "netns", nsB)
	l.upWith(nsA, ifA, addrsA)
	l.upWith(nsB, ifB, addrsB)
	l.neighbours(nsB, ifB, addrsA, macA)
	l.neighbours(nsA, ifA, addrsB, macB)
	return ifA, ifB
}

// neighbours tells ns that the peer addresses are at mac, behind ifname.
func (l *lab) neighbours(ns, ifname string, addrs []string, mac string) {
	l.t.Helper()
	for _, a := range addrs {
		ip, _, _ := strings.Cut(a, "/")
		l.run(ns, "ip", "neigh", "replace", ip, "lladdr", mac, "nud", "permanent", "dev", ifname)
	}
}

func (l *lab) upWith(ns, ifname string, addrs []string) {
	l.t.Helper()
	l.run(ns, "sysctl", "-qw", "net.ipv6.conf."+ifname+".accept_dad=0")
	for _, a := range addrs {
		args := []string{"ip", "addr", "add", a, "dev", ifname}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		l.run(ns, args...)
	}
	l.run(ns, "ip", "link", "set", ifname, "up")
}

func (l *lab) owns(ns string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ns[ns]
}

// run runs a command inside one of the lab's namespaces and returns its
// output (stdout and stderr); a failure ends the test with that output.
func (l *lab) run(ns string, args ...string) string {
	l.t.Helper()
	out, err := l.try(ns, args...)
	if err != nil {
		l.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return out
}

// try is run for commands whose failure the test looks at itself.
func (l *lab) try(ns string, args ...string) (string, error) {
	if !l.owns(ns) {
		return "", fmt.Errorf("lab: %q is not one of this lab's namespaces", ns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), labCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// start runs a command in the background inside a namespace; it is killed
// when the lab goes away, and its output is logged if the test failed.
func (l *lab) start(ns string, args ...string) *exec.Cmd {
	l.t.Helper()
	if !l.owns(ns) {
		l.t.Fatalf("lab: %q is not one of this lab's namespaces", ns)
	}
	l.mu.Lock()
	log := filepath.Join(l.dir, fmt.Sprintf("proc%d.log", len(l.procs)))
	l.mu.Unlock()
	f, err := os.Create(log)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("in %s: start %s: %v", ns, strings.Join(args, " "), err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, labProc{cmd: cmd, log: log})
	l.mu.Unlock()
	return cmd
}

// resolvConf makes programs in ns use nameserver (port 53) for names: `ip
// netns exec` puts /etc/netns/NS/resolv.conf in place of /etc/resolv.conf.
func (l *lab) resolvConf(ns, nameserver string) {
	l.t.Helper()
	if !l.owns(ns) {
		l.t.Fatalf("lab: %q is not one of this lab's namespaces", ns)
	}
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	l.etc = append(l.etc, dir)
	l.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+nameserver+"\n"), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// cleanup kills what the lab started and deletes its namespaces (which
// takes their veth pairs along) and their /etc/netns files.
func (l *lab) cleanup() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, dir := range l.etc {
		if err := os.RemoveAll(dir); err != nil {
			l.t.Errorf("remove %s: %v", dir, err)
		}
	}
	for _, p := range l.procs {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if l.t.Failed() {
			out, _ := os.ReadFile(p.log)
			l.t.Logf("output of %s:\n%s", strings.Join(p.cmd.Args, " "), out)
		}
	}
	for i := len(l.order) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", l.order[i]).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v\n%s", l.order[i], err, out)
		}
	}
}

var labBinary struct {
	once      sync.Once
	dir, path string
	err       error
}

// wperfBinary builds wperf once per test process (CGO_ENABLED=0, as
// released) into a directory that anyone may read, so the binary can also
// run as an unprivileged user.
func wperfBinary(t testing.TB) string {
	t.Helper()
	labBinary.once.Do(func() {
		labBinary.dir, labBinary.err = os.MkdirTemp("", "wperf-lab-")
		if labBinary.err != nil {
			return
		}
		if labBinary.err = os.Chmod(labBinary.dir, 0o755); labBinary.err != nil {
			return
		}
		labBinary.path = filepath.Join(labBinary.dir, "wperf")
		cmd := exec.Command(goTool(), "build", "-o", labBinary.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			labBinary.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if labBinary.err != nil {
		t.Fatal(labBinary.err)
	}
	return labBinary.path
}

// goTool finds the go command: on PATH, or the toolchain that built the test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// labNode is one namespace of the traceroute lab with what its DNS says
// about the address it answers traceroutes from.
type labNode struct {
	name     string
	ns       string
	v4, v6   string // the address facing the client
	asns     string // the origin field of its Cymru record
	asn      uint32
	cc       string
	asName   string
	hostname string
}

// traceLab is client — r1 — r2 — r3 — server, on links 198.18.N.0/24 and
// 2001:db8:N::/64 (N = 1..4, left end .1, right end .2), with static routes
// only, and dnsmasq in the server namespace answering Cymru-style TXT and
// PTR queries for the routers and the server.
type traceLab struct {
	*lab
	nodes []labNode // client, r1, r2, r3, server
	dns   string
}

// sub is the same lab reporting to a subtest.
func (tl *traceLab) sub(t testing.TB) *traceLab {
	return &traceLab{lab: tl.lab.sub(t), nodes: tl.nodes, dns: tl.dns}
}

func (tl *traceLab) client() string      { return tl.nodes[0].ns }
func (tl *traceLab) hops() []labNode     { return tl.nodes[1:] }
func (tl *traceLab) server() labNode     { return tl.nodes[len(tl.nodes)-1] }
func (tl *traceLab) router(n int) string { return tl.nodes[n].ns }

func newTraceLab(t *testing.T) *traceLab {
	l := newLab(t)
	labNeeds(t, "dnsmasq", "ss")
	tl := &traceLab{lab: l, nodes: []labNode{
		{name: "client"},
		{name: "r1", asns: "64501", asn: 64501, cc: "US", asName: "LAB-R1 - Lab router one"},
		{name: "r2", asns: "64502 64512", asn: 64502, cc: "DE", asName: "LAB-R2"},
		{name: "r3", asns: "64503", asn: 64503, cc: "JP", asName: "LAB-R3 - Lab router three"},
		{name: "server", asns: "64504", asn: 64504, cc: "BR", asName: "LAB-SRV - Lab server"},
	}}
	for i := range tl.nodes {
		n := &tl.nodes[i]
		n.ns = l.addNS(n.name)
		if i > 0 {
			n.v4, n.v6 = fmt.Sprintf("198.18.%d.2", i), fmt.Sprintf("2001:db8:%d::2", i)
			n.hostname = n.name + ".lab.test"
		}
		l.run(n.ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
			"net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000")
		if i > 0 && i < len(tl.nodes)-1 {
			l.run(n.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
		}
	}
	for i := 1; i < len(tl.nodes); i++ {
		l.link(tl.nodes[i-1].ns, tl.nodes[i].ns,
			[]string{fmt.Sprintf("198.18.%d.1/24", i), fmt.Sprintf("2001:db8:%d::1/64", i)},
			[]string{fmt.Sprintf("198.18.%d.2/24", i), fmt.Sprintf("2001:db8:%d::2/64", i)})
	}
	tl.addRoutes()
	tl.startDNS()
	return tl
}

// addRoutes gives every node a route to each link it is not on: toward
// the client through its left neighbour, toward the server through its
// right one.
func (tl *traceLab) addRoutes() {
	links := len(tl.nodes) - 1
	for k, n := range tl.nodes {
		for s := 1; s <= links; s++ {
			if s == k || s == k+1 {
				continue
			}
			v4, v6 := fmt.Sprintf("198.18.%d.2", k+1), fmt.Sprintf("2001:db8:%d::2", k+1)
			if s < k {
				v4, v6 = fmt.Sprintf("198.18.%d.1", k), fmt.Sprintf("2001:db8:%d::1", k)
			}
			tl.run(n.ns, "ip", "route", "add", fmt.Sprintf("198.18.%d.0/24", s), "via", v4)
			tl.run(n.ns, "ip", "-6", "route", "add", fmt.Sprintf("2001:db8:%d::/64", s), "via", v6)
		}
	}
}

// startDNS runs dnsmasq on the server's address with the Cymru origin and
// AS records and the names (A, AAAA, PTR) of every hop, waits until it
// listens, and makes it the client's system resolver too.
func (tl *traceLab) startDNS() {
	srv := tl.server()
	tl.dns = srv.v4 + ":53"
	args := []string{"dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address=" + srv.v4, "--port=53", "--user=root", "--pid-file=" + filepath.Join(tl.dir, "dnsmasq.pid"),
		"--log-facility=-", "--log-queries"}
	for _, n := range tl.hops() {
		for i, a := range []string{n.v4, n.v6} {
			prefix := strings.TrimSuffix(a, "2") + "0/24"
			if i == 1 {
				prefix = strings.TrimSuffix(a, "2") + "/64"
			}
			name := strings.TrimSuffix(cymruOriginName(mustAddr(tl.t, a)), ".")
			args = append(args, fmt.Sprintf("--txt-record=%s,%s | %s | %s | arin | 2020-01-01", name, n.asns, prefix, n.cc))
		}
		args = append(args,
			fmt.Sprintf("--txt-record=AS%d.asn.cymru.com,%d | %s | arin | 2020-01-01 | %s", n.asn, n.asn, n.cc, n.asName),
			fmt.Sprintf("--host-record=%s,%s,%s", n.hostname, n.v4, n.v6))
	}
	cmd := tl.start(srv.ns, args...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if out, _ := tl.try(srv.ns, "ss", "-Hlun", "sport", "=", ":53"); strings.TrimSpace(out) != "" {
			tl.resolvConf(tl.client(), srv.v4)
			return
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			tl.t.Fatal("dnsmasq did not start listening on " + tl.dns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// traceJSON runs wperf -J in the client namespace (with a command prefix
// such as setpriv) and decodes its document; a non-zero exit comes back
// as err next to the document.
func (tl *traceLab) traceJSON(prefix []string, args ...string) (traceReport, error) {
	tl.t.Helper()
	cmd := append(append(append([]string{}, prefix...), wperfBinary(tl.t), "-J", "--dns", tl.dns), args...)
	out, err := tl.try(tl.client(), cmd...)
	var r traceReport
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		tl.t.Fatalf("wperf %s: not a JSON document (%v, exit %v):\n%s", strings.Join(args, " "), jerr, err, out)
	}
	return r, err
}

// wantAddrs is the hop list a trace from the client must show.
func (tl *traceLab) wantAddrs(v6 bool) []string {
	var a []string
	for _, n := range tl.hops() {
		if v6 {
			a = append(a, n.v6)
		} else {
			a = append(a, n.v4)
		}
	}
	return a
}

func (tl *traceLab) target(v6 bool) string {
	if v6 {
		return tl.server().v6
	}
	return tl.server().v4
}

// unprivileged runs wperf as nobody with no capabilities.
var unprivileged = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}

func TestLabTraceroute(t *testing.T) {
	tl := newTraceLab(t)
	families := []struct {
		name string
		v6   bool
	}{{"IPv4", false}, {"IPv6", true}}

	t.Run("hops with names and geo", func(t *testing.T) {
		tl := tl.sub(t)
		for _, proto := range []string{"udp", "icmp", "tcp"} {
			for _, f := range families {
				r, err := tl.traceJSON(nil, "--traceroute", tl.target(f.v6), "--tr-proto", proto, "--tr-timeout", "2")
				if err != nil {
					t.Fatalf("%s %s: %v (%s)", proto, f.name, err, r.Error)
				}
				tl.checkHops(t, proto+" "+f.name, r, f.v6)
			}
		}
	})

	t.Run("same hops as Debian traceroute", func(t *testing.T) {
		labNeeds(t, "traceroute")
		tl := tl.sub(t)
		for _, c := range []struct {
			name  string
			v6    bool
			proto string
			flags []string
		}{
			{"udp IPv4", false, "udp", nil},
			{"udp IPv6", true, "udp", []string{"-6"}},
			{"icmp IPv4", false, "icmp", []string{"-I"}},
			{"icmp IPv6", true, "icmp", []string{"-6", "-I"}},
			{"tcp IPv4", false, "tcp", []string{"-T", "-p", "443"}},
		} {
			args := append([]string{"traceroute", "-n", "-q", "1", "-w", "2", "-m", "10"}, c.flags...)
			theirs := debianHops(tl.run(tl.client(), append(args, tl.target(c.v6))...))
			r, err := tl.traceJSON(nil, "--traceroute", tl.target(c.v6), "--tr-proto", c.proto, "-n", "--no-geo", "--tr-timeout", "2")
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if ours := hopAddrs(r.Hops); !reflect.DeepEqual(ours, theirs) {
				t.Errorf("%s: wperf hops %q, traceroute -n hops %q", c.name, ours, theirs)
			}
		}
	})

	t.Run("text output", func(t *testing.T) {
		l := tl.sub(t)
		out := l.run(tl.client(), wperfBinary(t), "--traceroute", tl.target(false), "--dns", tl.dns)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{
			"traceroute to 198.18.4.2 (198.18.4.2), 30 hops max, udp probes",
			" 1  [US, AS64501 LAB-R1]  r1.lab.test (198.18.1.2)  ",
			" 2  [DE, AS64502 LAB-R2]  r2.lab.test (198.18.2.2)  ",
			" 3  [JP, AS64503 LAB-R3]  r3.lab.test (198.18.3.2)  ",
			" 4  [BR, AS64504 LAB-SRV]  server.lab.test (198.18.4.2)  ",
		}
		if len(lines) != len(want) {
			t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) || (i > 0 && strings.Count(lines[i], " ms") != 3) {
				t.Errorf("line %d = %q, want it to start %q and hold 3 RTTs", i, lines[i], w)
			}
		}
		numeric := l.run(tl.client(), wperfBinary(t), "--traceroute", tl.target(false), "-n", "--no-geo")
		if !strings.Contains(numeric, "\n 2  198.18.2.2  ") {
			t.Errorf("-n --no-geo output:\n%s", numeric)
		}
	})

	t.Run("target by name", func(t *testing.T) {
		tl := tl.sub(t)
		for _, f := range families {
			family := "-4"
			if f.v6 {
				family = "-6"
			}
			// the host's name server, here the lab's; --dns given as HOST alone means port 53
			r, err := tl.traceJSON(nil, "--traceroute", "server.lab.test", family, "--dns", tl.server().v4)
			if err != nil || r.Address != tl.target(f.v6) {
				t.Fatalf("%s: %v, address %q, want %s (%s)", family, err, r.Address, tl.target(f.v6), r.Error)
			}
			tl.checkHops(t, "by name "+f.name, r, f.v6)
		}
	})

	t.Run("unprivileged fallback", func(t *testing.T) {
		labNeeds(t, "setpriv")
		tl := tl.sub(t)
		for _, f := range families {
			for _, parallel := range []string{"0", "1"} { // 1: sends after errors arrived, see socketProber.send
				args := []string{"--traceroute", tl.target(f.v6), "--tr-timeout", "2"}
				if parallel != "0" {
					args = append(args, "--tr-parallel", parallel)
				}
				r, err := tl.traceJSON(unprivileged, args...)
				if err != nil {
					t.Fatalf("udp %s as nobody: %v (%s)", f.name, err, r.Error)
				}
				tl.checkHops(t, "udp as nobody "+f.name, r, f.v6)
			}
		}
		r, err := tl.traceJSON(unprivileged, "--traceroute", tl.target(false), "--tr-proto", "icmp")
		if err == nil || !strings.Contains(r.Error, "ping_group_range") {
			t.Errorf("icmp as nobody outside ping_group_range: err %v, document error %q", err, r.Error)
		}
		tl.run(tl.client(), "sysctl", "-qw", "net.ipv4.ping_group_range=65534 65534")
		for _, f := range families {
			r, err := tl.traceJSON(unprivileged, "--traceroute", tl.target(f.v6), "--tr-proto", "icmp", "--tr-timeout", "2")
			if err != nil {
				t.Fatalf("icmp %s as nobody in ping_group_range: %v (%s)", f.name, err, r.Error)
			}
			tl.checkHops(t, "icmp as nobody "+f.name, r, f.v6)
		}
		r, err = tl.traceJSON(unprivileged, "--traceroute", tl.target(false), "--tr-proto", "tcp")
		if err == nil || !strings.Contains(r.Error, "CAP_NET_RAW") || !strings.Contains(r.Error, "setcap") {
			t.Errorf("tcp as nobody: err %v, document error %q", err, r.Error)
		}
		out, err := tl.try(tl.client(), append(unprivileged, wperfBinary(t), "--traceroute", tl.target(false), "--tr-proto", "tcp")...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitRuntime || !strings.Contains(out, "wperf: traceroute to 198.18.4.2: tcp probes need raw sockets") {
			t.Errorf("tcp as nobody, text: %v\n%s", err, out)
		}
	})

	t.Run("unreachable ends the trace", func(t *testing.T) {
		labNeeds(t, "nft")
		tl := tl.sub(t)
		// 198.18.99.0/24 and 2001:db8:99::/64 lead through r3, whose firewall
		// refuses them: TTL 3 still expires at r3, TTL 4 gets "prohibited"
		for k := 0; k < 4; k++ {
			tl.run(tl.nodes[k].ns, "ip", "route", "add", "198.18.99.0/24", "via", fmt.Sprintf("198.18.%d.2", k+1))
			tl.run(tl.nodes[k].ns, "ip", "-6", "route", "add", "2001:db8:99::/64", "via", fmt.Sprintf("2001:db8:%d::2", k+1))
		}
		r3 := tl.router(3)
		tl.run(r3, "nft", "add", "table", "inet", "wperfreject")
		tl.run(r3, "nft", "add", "chain", "inet", "wperfreject", "refuse", "{", "type", "filter", "hook", "forward", "priority", "0", ";", "}")
		tl.run(r3, "nft", "add", "rule", "inet", "wperfreject", "refuse", "ip", "daddr", "198.18.99.0/24", "reject", "with", "icmp", "admin-prohibited")
		tl.run(r3, "nft", "add", "rule", "inet", "wperfreject", "refuse", "ip6", "daddr", "2001:db8:99::/64", "reject", "with", "icmpv6", "admin-prohibited")
		for _, proto := range []string{"udp", "icmp", "tcp"} {
			for _, f := range families {
				target := "198.18.99.1"
				if f.v6 {
					target = "2001:db8:99::1"
				}
				r, err := tl.traceJSON(nil, "--traceroute", target, "--tr-proto", proto, "-n", "--no-geo", "--tr-timeout", "2")
				if err != nil {
					t.Fatalf("%s %s: %v", proto, f.name, err)
				}
				want := append(tl.wantAddrs(f.v6)[:3], tl.wantAddrs(f.v6)[2])
				if got := hopAddrs(r.Hops); !reflect.DeepEqual(got, want) || r.Hops[3].Unreachable != "!X" || r.Hops[2].Unreachable != "" {
					t.Errorf("%s %s: hops %+v, want %q, the last one !X", proto, f.name, r.Hops, want)
				}
			}
		}
	})

	// last: it leaves r2 dropping its time-exceeded messages
	t.Run("silent hop", func(t *testing.T) {
		labNeeds(t, "nft")
		tl := tl.sub(t)
		tl.silence(tl.router(2))
		const timeout = time.Second
		for _, f := range families {
			for _, parallel := range []string{"0", "1"} {
				args := []string{"--traceroute", tl.target(f.v6), "--tr-timeout", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)}
				if parallel != "0" {
					args = append(args, "--tr-parallel", parallel)
				}
				start := time.Now()
				r, err := tl.traceJSON(nil, args...)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
				want := tl.wantAddrs(f.v6)
				want[1] = ""
				if got := hopAddrs(r.Hops); !reflect.DeepEqual(got, want) {
					t.Errorf("%s parallel %s: hops %q, want %q", f.name, parallel, got, want)
				}
				if len(r.Hops) == 4 && !reflect.DeepEqual(r.Hops[1].RTTms, []*float64{nil, nil, nil}) {
					t.Errorf("%s: silent hop has RTTs %v", f.name, r.Hops[1].RTTms)
				}
				// one timeout for the silent hop, whether probed alone or with the rest
				if took > 3*timeout {
					t.Errorf("%s parallel %s: took %v, want about one timeout (%v)", f.name, parallel, took, timeout)
				}
				t.Logf("%s parallel %s with a silent hop: %v", f.name, parallel, took)
			}
		}
	})
}

// silence makes the router in ns drop the time-exceeded messages it
// would send (IPv4 and IPv6), so it shows as a silent hop.
func (tl *traceLab) silence(ns string) {
	tl.t.Helper()
	tl.run(ns, "nft", "add", "table", "inet", "wperfsilent")
	tl.run(ns, "nft", "add", "chain", "inet", "wperfsilent", "out", "{", "type", "filter", "hook", "output", "priority", "0", ";", "}")
	tl.run(ns, "nft", "add", "rule", "inet", "wperfsilent", "out", "icmp", "type", "time-exceeded", "drop")
	tl.run(ns, "nft", "add", "rule", "inet", "wperfsilent", "out", "icmpv6", "type", "time-exceeded", "drop")
}

// checkHops asserts the lab's four hops, each with its DNS name, ASN,
// country and prefix.
func (tl *traceLab) checkHops(t *testing.T, what string, r traceReport, v6 bool) {
	t.Helper()
	if got, want := hopAddrs(r.Hops), tl.wantAddrs(v6); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: hops %q, want %q", what, got, want)
		return
	}
	for i, n := range tl.hops() {
		h := r.Hops[i]
		prefix := fmt.Sprintf("198.18.%d.0/24", i+1)
		if v6 {
			prefix = fmt.Sprintf("2001:db8:%d::/64", i+1)
		}
		if h.Name != n.hostname || h.ASN != n.asn || h.Country != n.cc || h.ASName != n.asName || h.Prefix != prefix {
			t.Errorf("%s: hop %d = %+v, want %s AS%d %s %q %s", what, i+1, h, n.hostname, n.asn, n.cc, n.asName, prefix)
		}
		for _, rtt := range h.RTTms {
			if rtt == nil {
				t.Errorf("%s: hop %d lost a probe: %v", what, i+1, h.RTTms)
			}
		}
	}
}

// debianHops reads the hop addresses of `traceroute -n -q 1` output; "" for
// a hop that did not answer.
func debianHops(out string) []string {
	var hops []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if _, err := strconv.Atoi(f[0]); err != nil {
			continue
		}
		if f[1] == "*" {
			f[1] = ""
		}
		hops = append(hops, f[1])
	}
	return hops
}

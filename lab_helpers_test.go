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
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// labCmdTimeout bounds every command a lab runs, so a hung one fails its
// test instead of the whole run.
const labCmdTimeout = 2 * time.Minute

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

package main

// lab_test.go traces the route through the traceroute lab, which
// lab_helpers_test.go builds (client, three routers and a server in
// network namespaces, with DNS): over UDP, ICMP and TCP, IPv4 and IPv6,
// privileged and not, to a target by name, to an unreachable network and
// past a silent hop, and side by side with the system's traceroute.

import (
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

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

package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLabReverseTraceroute runs a wperf server in the traceroute lab's
// server namespace and asks it, from the client namespace, for the route
// back: server → r3 → r2 → r1 → client. Routers answer from the interface
// facing the server, so the hops are the left ends of the links.
func TestLabReverseTraceroute(t *testing.T) {
	tl := newTraceLab(t)
	bin := wperfBinary(t)
	srv := tl.server()
	tl.start(srv.ns, bin, "-s", "--dns", tl.dns)
	tl.start(srv.ns, bin, "-s", "-p", "8766", "--no-reverse-traceroute")
	waitListening(t, tl.lab, srv.ns, ":8765", ":8766")

	wantV4 := []string{"198.18.4.1", "198.18.3.1", "198.18.2.1", "198.18.1.1"}
	wantV6 := []string{"2001:db8:4::1", "2001:db8:3::1", "2001:db8:2::1", "2001:db8:1::1"}

	t.Run("the reverse path, unprivileged client", func(t *testing.T) {
		tl := tl.sub(t)
		for _, c := range []struct {
			proto, server string
			want          []string
		}{
			{"udp", srv.v4, wantV4},
			{"icmp", srv.v4, wantV4},
			{"tcp", srv.v4, wantV4},
			{"udp", "[" + srv.v6 + "]", wantV6},
			{"icmp", "[" + srv.v6 + "]", wantV6},
		} {
			args := append(append([]string{}, unprivileged...), bin, "-c", c.server, "--reverse-traceroute", "-J", "--tr-proto", c.proto, "--tr-timeout", "2")
			out, err := tl.try(tl.client(), args...)
			var r reverseTraceReport
			if jerr := json.Unmarshal([]byte(out), &r); jerr != nil || err != nil {
				t.Fatalf("%s via %s: exit %v, JSON %v:\n%s", c.proto, c.server, err, jerr, out)
			}
			if got := hopAddrs(r.Hops); !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s via %s: hops %q, want the reverse path %q", c.proto, c.server, got, c.want)
			}
			if r.Target != c.want[len(c.want)-1] || !r.Reverse || r.Protocol != c.proto {
				t.Errorf("%s via %s: target %q reverse %v protocol %q", c.proto, c.server, r.Target, r.Reverse, r.Protocol)
			}
		}
	})

	t.Run("a disabled server refuses", func(t *testing.T) {
		tl := tl.sub(t)
		out, err := tl.try(tl.client(), bin, "-c", srv.v4, "-p", "8766", "--reverse-traceroute")
		if err == nil || !strings.Contains(out, "disabled") {
			t.Fatalf("want a refusal that says it is disabled, got exit %v:\n%s", err, out)
		}
	})

	// last: it leaves r2 dropping its time-exceeded messages
	t.Run("hops arrive as soon as they are known", func(t *testing.T) {
		labNeeds(t, "nft")
		tl := tl.sub(t)
		tl.silence(tl.router(2))
		cmd := exec.Command("ip", "netns", "exec", tl.client(), bin, "-c", srv.v4, "--reverse-traceroute", "--tr-timeout", "2", "--no-geo")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		var at []time.Duration
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			at = append(at, time.Since(start))
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit %v:\n%s", err, strings.Join(lines, "\n"))
		}
		if len(lines) != 5 || !strings.HasPrefix(lines[1], " 1  ") || !strings.HasPrefix(lines[2], " 2  *") || strings.Contains(lines[2], " ms") {
			t.Fatalf("want a header, hop 1 and a silent hop 2 of 4 hops, got:\n%s", strings.Join(lines, "\n"))
		}
		// Hop 1 is known at once; the silent hop 2 holds the rest back for
		// its 2 s timeout. Streaming shows hop 1 long before the end.
		if gap := at[len(at)-1] - at[1]; gap < time.Second {
			t.Errorf("hop 1 came %v before the last hop; the hops were not streamed (%v)", gap, at)
		}
	})
}

// waitListening waits until ns has TCP listeners on every port given.
func waitListening(t *testing.T, l *lab, ns string, ports ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range ports {
		for {
			out, _ := l.try(ns, "ss", "-Hltn", "sport", "=", p)
			if strings.TrimSpace(out) != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nothing listens on %s in %s", p, ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

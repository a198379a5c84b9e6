package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The bufferbloat lab: client — router — server, with the router's
// egress toward each end shaped by tbf at 20 Mbit/s: the bottleneck is a
// router's queue, as on a real path. (Shaped at the sender itself, the
// queue would be kept short by TCP Small Queues, which no remote router
// does.) tbf's queue is the only delay (this kernel has no netem,
// fq_codel or cake), so its size sets how far latency can rise under
// load: a limit of L bytes at rate R holds at most L/R seconds, and tbf's
// "latency" parameter sizes L as R × latency + burst. A deep queue
// (200 ms) lets a single TCP flow fill it; a shallow one (5 ms) cannot
// hold more than a few milliseconds. The flows use cubic, the loss-based
// default of most systems, which fills whatever queue it meets (this
// machine defaults to BBR, which mostly would not).
const (
	bloatRate    = 20e6 // bits/s
	bloatBurst   = 4000 // bytes: "burst 32kbit"
	bloatSeconds = "5"
)

// bloatQueueBound is how long the tbf queue sized by latency can hold
// packets at bloatRate: (rate × latency + burst) ÷ rate.
func bloatQueueBound(latency time.Duration) time.Duration {
	limit := bloatRate/8*latency.Seconds() + bloatBurst
	return time.Duration(limit * 8 / bloatRate * float64(time.Second))
}

func TestLabLatencyUnderLoad(t *testing.T) {
	l := newLab(t)
	labNeeds(t, "tc")
	bin := wperfBinary(t)
	for _, tc := range []struct {
		name    string
		latency time.Duration
		check   func(t *testing.T, lat labLatency)
	}{
		{"deep", 200 * time.Millisecond, func(t *testing.T, lat labLatency) {
			if lat.Foreign.Echo.P90Ms < 100 {
				t.Errorf("loaded foreign p90 %.1f ms: a 200 ms queue should show at least 100", lat.Foreign.Echo.P90Ms)
			}
			if !strings.Contains("C D F", lat.Grade) || lat.Grade == "" {
				t.Errorf("grade %q: a deep queue should grade C or worse", lat.Grade)
			}
		}},
		{"shallow", 5 * time.Millisecond, func(t *testing.T, lat labLatency) {
			if lat.Foreign.Echo.P90Ms >= 30 {
				t.Errorf("loaded foreign p90 %.1f ms: a 5 ms queue should keep it under 30", lat.Foreign.Echo.P90Ms)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := l.sub(t)
			cli, srv := bloatLab(l, tc.name[:1], tc.latency)
			l.start(srv, bin, "-s", "-B", "198.18.31.2")
			t.Logf("queue bound: (%.0f B/s × %v + %d B) ÷ rate = %v", bloatRate/8, tc.latency, bloatBurst, bloatQueueBound(tc.latency))
			for _, dir := range []struct {
				name  string
				extra []string
			}{{"upload", nil}, {"reverse", []string{"-R"}}} {
				lat := labLatencyOf(t, l, cli, append([]string{bin, "-c", "198.18.31.2", "-t", bloatSeconds, "-C", "cubic", "-J"}, dir.extra...))
				self := lat.Self["up"]
				if self == nil {
					self = lat.Self["down"]
				}
				t.Logf("%s %s: idle %.2f ms, foreign median %.1f p90 %.1f p99 %.1f ms, self p90 %s, %.0f RPM, grade %s",
					tc.name, dir.name, lat.Idle.MedianMs, lat.Foreign.Echo.MedianMs, lat.Foreign.Echo.P90Ms, lat.Foreign.Echo.P99Ms,
					selfP90(self), lat.RPM, lat.Grade)
				if lat.Idle.MedianMs >= 2 {
					t.Errorf("%s: idle median %.2f ms, want under 2 on an idle veth", dir.name, lat.Idle.MedianMs)
				}
				if bound := bloatQueueBound(tc.latency); lat.Foreign.Echo.MedianMs > 1.5*float64(bound.Milliseconds())+20 {
					t.Errorf("%s: foreign median %.1f ms is well past what the queue can hold (%v)", dir.name, lat.Foreign.Echo.MedianMs, bound)
				}
				tc.check(t, lat)
			}
		})
	}
}

// bloatLab builds client — router — server on 198.18.30.0/24 and
// 198.18.31.0/24, the router's egress both ways shaped with a tbf queue
// of the given latency, and returns the client's and server's namespaces.
func bloatLab(l *lab, tag string, latency time.Duration) (cli, srv string) {
	cli, rtr, srv := l.addNS("lc"+tag), l.addNS("lr"+tag), l.addNS("ls"+tag)
	_, toCli := l.link(cli, rtr, []string{"198.18.30.1/24"}, []string{"198.18.30.2/24"})
	toSrv, _ := l.link(rtr, srv, []string{"198.18.31.1/24"}, []string{"198.18.31.2/24"})
	l.run(rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.run(cli, "ip", "route", "add", "198.18.31.0/24", "via", "198.18.30.2")
	l.run(srv, "ip", "route", "add", "198.18.30.0/24", "via", "198.18.31.1")
	for _, dev := range []string{toCli, toSrv} {
		l.run(rtr, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "20mbit", "burst", "32kbit", "latency", latency.String())
	}
	return cli, srv
}

func selfP90(s *latencyStats) string {
	if s == nil {
		return "none"
	}
	return fmtMs(s.P90Ms) + " ms"
}

// labLatency is end.wperf.latency of a client's -J document.
type labLatency struct {
	Idle    latencyStats             `json:"idle"`
	Foreign foreignStats             `json:"foreign"`
	Self    map[string]*latencyStats `json:"self"`
	RPM     float64                  `json:"rpm"`
	Grade   string                   `json:"grade"`
}

// labLatencyOf runs a wperf client with -J in ns, retrying while the
// server is still starting, and returns its latency report.
func labLatencyOf(t *testing.T, l *lab, ns string, args []string) labLatency {
	t.Helper()
	var out string
	var err error
	for try := 0; try < 10; try++ {
		if out, err = l.try(ns, args...); !strings.Contains(out, "refused") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	var doc struct {
		End struct {
			WPerf struct {
				Latency *labLatency `json:"latency"`
			} `json:"wperf"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil || doc.Error != "" || err != nil || doc.End.WPerf.Latency == nil {
		t.Fatalf("%s: exit %v, JSON %v, error %q, latency %v:\n%s", strings.Join(args, " "), err, jerr, doc.Error, doc.End.WPerf.Latency, out)
	}
	return *doc.End.WPerf.Latency
}

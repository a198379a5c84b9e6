package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// The accuracy lab: two namespaces joined by a veth pair whose egress is
// shaped to 50 Mbit/s by tbf in both directions. tbf charges whole
// Ethernet frames, so with a 1500-byte MTU and TCP timestamps the link
// carries at most 50 × 1448/1514 Mbit/s of TCP payload: the ground truth.
const (
	labRate    = 50e6
	labGoodput = labRate * 1448 / 1514
	labSeconds = "5"
	labTol     = 0.02
)

func TestLabBandwidthAccuracy(t *testing.T) {
	l := newLab(t)
	labNeeds(t, "tc", "iperf3")
	bin := wperfBinary(t)
	cli, srv := l.addNS("bwc"), l.addNS("bws")
	ifC, ifS := l.link(cli, srv, []string{"198.18.10.1/24"}, []string{"198.18.10.2/24"})
	for _, end := range [][2]string{{cli, ifC}, {srv, ifS}} {
		l.run(end[0], "tc", "qdisc", "add", "dev", end[1], "root", "tbf", "rate", "50mbit", "burst", "32kb", "latency", "100ms")
	}
	l.start(srv, bin, "-s", "-B", "198.18.10.2", "-p", "8765")
	l.start(srv, "iperf3", "-s", "-B", "198.18.10.2", "-p", "5201")

	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"upload", nil},
		{"reverse", []string{"-R"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := l.sub(t)
			iperf := labRateOf(t, l, cli, append([]string{"iperf3", "-c", "198.18.10.2", "-p", "5201", "-t", labSeconds, "-J"}, tc.extra...))
			wperf := labRateOf(t, l, cli, append([]string{bin, "-c", "198.18.10.2", "-p", "8765", "-t", labSeconds, "-J"}, tc.extra...))
			t.Logf("%s: goodput %.2f Mbit/s, iperf3 %.2f, wperf %.2f (%.2f%% of goodput, %.2f%% of iperf3)",
				tc.name, labGoodput/1e6, iperf/1e6, wperf/1e6, 100*wperf/labGoodput, 100*wperf/iperf)
			if math.Abs(wperf/labGoodput-1) > labTol {
				t.Errorf("wperf measured %.2f Mbit/s; the link's goodput is %.2f (±%.0f%%)", wperf/1e6, labGoodput/1e6, 100*labTol)
			}
			if math.Abs(wperf/iperf-1) > labTol {
				t.Errorf("wperf measured %.2f Mbit/s, iperf3 %.2f on the same link (want ±%.0f%%)", wperf/1e6, iperf/1e6, 100*labTol)
			}
		})
	}
}

// labRateOf runs a client (iperf3 or wperf, both with -J) in ns and
// returns its receiver's rate in bits/s, retrying while the server in the
// other namespace is still starting.
func labRateOf(t *testing.T, l *lab, ns string, args []string) float64 {
	t.Helper()
	var out string
	var err error
	for try := 0; try < 10; try++ {
		// iperf3 -J may exit 0 even when it could not connect.
		if out, err = l.try(ns, args...); !strings.Contains(out, "refused") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var doc struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Error != "" {
		t.Fatalf("%s: bad JSON (%v) or error %q:\n%s", args[0], err, doc.Error, out)
	}
	return doc.End.SumReceived.BitsPerSecond
}

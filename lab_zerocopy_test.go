package main

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLabZeroCopyAccuracy: the accuracy lab's 50 Mbit/s link with 1 MiB
// messages, which the receiver splices away (the server on upload, the
// client with -R), and with -Z also sent from the pool file. The rate
// must stay within labTol of the goodput, and a receiver's per-second
// counts smooth: its low-water mark follows the link, so bytes are not
// counted in lumps of a message (170 ms of this link).
func TestLabZeroCopyAccuracy(t *testing.T) {
	l := newLab(t)
	labNeeds(t, "tc")
	bin := wperfBinary(t)
	cli, srv := l.addNS("zcc"), l.addNS("zcs")
	ifC, ifS := l.link(cli, srv, []string{"198.18.12.1/24"}, []string{"198.18.12.2/24"})
	for _, end := range [][2]string{{cli, ifC}, {srv, ifS}} {
		l.run(end[0], "tc", "qdisc", "add", "dev", end[1], "root", "tbf", "rate", "50mbit", "burst", "32kb", "latency", "100ms")
	}
	l.start(srv, bin, "-s", "-B", "198.18.12.2", "-p", "8765")
	for _, extra := range [][]string{{"-l", "1M"}, {"-R", "-l", "1M"}, {"-Z", "-l", "1M"}, {"-Z", "-R", "-l", "1M"}} {
		t.Run(strings.Join(extra, " "), func(t *testing.T) {
			l := l.sub(t)
			args := append([]string{bin, "-c", "198.18.12.2", "-p", "8765", "-t", labSeconds, "-J"}, extra...)
			rate, perSecond := labZeroCopyRun(t, l, cli, args)
			t.Logf("goodput %.2f Mbit/s, wperf %.2f; per second %.0f", labGoodput/1e6, rate/1e6, perSecond)
			if math.Abs(rate/labGoodput-1) > labTol {
				t.Errorf("wperf measured %.2f Mbit/s; the link's goodput is %.2f (±%.0f%%)", rate/1e6, labGoodput/1e6, 100*labTol)
			}
			if !slices.Contains(extra, "-R") {
				return // a sender counts whole messages as it hands them over
			}
			// Where the client receives: the first second holds slow
			// start, the last two the end of the test; the others carry
			// the link's rate.
			// (Counted a message at a time, they would be 41.9 or
			// 50.3 Mbit/s.)
			for i, r := range perSecond[1 : len(perSecond)-2] {
				if math.Abs(r/labGoodput-1) > 0.08 {
					t.Errorf("second %d: %.2f Mbit/s, want the goodput ±8%%", i+2, r/1e6)
				}
			}
		})
	}
}

// labZeroCopyRun runs a wperf client in ns and returns its receiver's
// rate and per-interval rates, in bits/s.
func labZeroCopyRun(t *testing.T, l *lab, ns string, args []string) (float64, []float64) {
	t.Helper()
	var out string
	var err error
	for try := 0; try < 10; try++ { // while the server is still starting
		if out, err = l.try(ns, args...); !strings.Contains(out, "refused") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var doc struct {
		Intervals []struct {
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum"`
		} `json:"intervals"`
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("bad JSON (%v):\n%s", err, out)
	}
	var per []float64
	for _, iv := range doc.Intervals {
		per = append(per, iv.Sum.BitsPerSecond)
	}
	if len(per) < 2 {
		t.Fatalf("%d intervals in:\n%s", len(per), out)
	}
	return doc.End.SumReceived.BitsPerSecond, per
}

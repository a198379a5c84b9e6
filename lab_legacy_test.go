package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestLabLegacyReverseTraceroute: old-protocol clients in the traceroute
// lab's client namespace ask wperf -s, in the server namespace, for the
// route back: server → r3 → r2 → r1 → client. Three clients ask: the
// test's own client of the old rules (this test binary, run again in the
// namespace), wperf --legacy, and testdata/legacy/client.py.
func TestLabLegacyReverseTraceroute(t *testing.T) {
	tl := newTraceLab(t)
	bin := wperfBinary(t)
	srv := tl.server()
	tl.start(srv.ns, bin, "-s", "--dns", tl.dns)
	waitListening(t, tl.lab, srv.ns, ":8765")
	want := []string{"198.18.4.1", "198.18.3.1", "198.18.2.1", "198.18.1.1"}
	addr := srv.v4 + ":8765"

	t.Run("the old rules, by hand", func(t *testing.T) {
		out, err := tl.try(tl.client(), "env", legacyTraceHelperEnv+"="+addr, os.Args[0], "-test.run=^TestLegacyTraceHelper$", "-test.count=1")
		hops := legacyHelperHops(t, out, err)
		var got []string
		for _, h := range hops {
			got = append(got, h.IP)
			if h.RTT < 0 || h.Name == "" || h.Name == "*" {
				t.Errorf("hop %+v: want a round trip and a name", h)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("hops %q, want the reverse path %q", got, want)
		}
	})

	t.Run("wperf --legacy", func(t *testing.T) {
		out, err := tl.try(tl.client(), bin, "-c", srv.v4, "--legacy", "--reverse-traceroute", "-J")
		var r reverseTraceReport
		if jerr := json.Unmarshal([]byte(out), &r); jerr != nil || err != nil {
			t.Fatalf("exit %v, JSON %v:\n%s", err, jerr, out)
		}
		if got := hopAddrs(r.Hops); !reflect.DeepEqual(got, want) {
			t.Errorf("hops %q, want the reverse path %q", got, want)
		}
	})

	t.Run("client.py", func(t *testing.T) {
		py := pythonPeer(t)
		out, err := tl.try(tl.client(), py, "testdata/legacy/client.py", "--url", "ws://"+addr+"/", "--mode", "trace")
		var res struct {
			Streams []struct {
				Hops   []legacyHop `json:"hops"`
				Errors []string    `json:"errors"`
			} `json:"streams"`
		}
		if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || err != nil || len(res.Streams) != 1 {
			t.Fatalf("exit %v, JSON %v:\n%s", err, jerr, out)
		}
		var got []string
		for _, h := range res.Streams[0].Hops {
			got = append(got, h.IP)
		}
		if !reflect.DeepEqual(got, want) || len(res.Streams[0].Errors) > 0 {
			t.Errorf("hops %q (errors %q), want the reverse path %q", got, res.Streams[0].Errors, want)
		}
	})
}

// legacyTraceHelperEnv makes TestLegacyTraceHelper run: its value is the
// server's address.
const legacyTraceHelperEnv = "WPERF_LEGACY_TRACE_HELPER"

// TestLegacyTraceHelper is the old-rules client's reverse traceroute,
// for the lab to run in a namespace: it prints the hops on one line.
func TestLegacyTraceHelper(t *testing.T) {
	addr := os.Getenv(legacyTraceHelperEnv)
	if addr == "" {
		t.Skip("run by TestLabLegacyReverseTraceroute")
	}
	hops, errs := oldTrace(t, addr)
	if len(errs) > 0 {
		t.Fatalf("the server reported %q", errs)
	}
	b, _ := json.Marshal(hops)
	fmt.Printf("\nLEGACY-HOPS %s\n", b)
}

// legacyHelperHops finds the helper's line in its output.
func legacyHelperHops(t *testing.T, out string, err error) []legacyHop {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "LEGACY-HOPS "); ok && err == nil {
			var hops []legacyHop
			if jerr := json.Unmarshal([]byte(rest), &hops); jerr != nil {
				t.Fatalf("helper's hops: %v", jerr)
			}
			return hops
		}
	}
	t.Fatalf("the helper failed (%v):\n%s", err, out)
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// noDNS sends the servers' hop-name lookups to a closed loopback port, so
// the tests ask no DNS server outside this machine.
const noDNS = "127.0.0.1:1"

func TestTraceLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newTraceLimiter(2)

	if err := l.begin(a, now); err != nil {
		t.Fatalf("first trace refused: %v", err)
	}
	if err := l.begin(a, now); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("a second trace to the same address at once: %v, want 'already running'", err)
	}
	if err := l.begin(b, now); err != nil {
		t.Fatalf("another address is independent: %v", err)
	}
	l.end(a)
	if err := l.begin(a, now.Add(time.Second)); err != nil {
		t.Fatalf("second trace within the limit refused: %v", err)
	}
	l.end(a)
	if err := l.begin(a, now.Add(2*time.Second)); err == nil || !strings.Contains(err.Error(), "at most 2 a minute") {
		t.Fatalf("third trace in a minute: %v, want the rate limit", err)
	}
	if err := l.begin(a, now.Add(61*time.Second)); err != nil {
		t.Fatalf("a minute later the limit should have room again: %v", err)
	}
}

func TestTraceRequestBounds(t *testing.T) {
	tests := []struct {
		name string
		req  traceRequest
		ok   bool
	}{
		{"defaults", traceRequest{Version: 1}, true},
		{"icmp, 64 hops, 5 queries, 3 s", traceRequest{Version: 1, Proto: "icmp", MaxHops: 64, Queries: 5, Timeout: 3}, true},
		{"unknown version", traceRequest{Version: 2}, false},
		{"unknown probe", traceRequest{Version: 1, Proto: "sctp"}, false},
		{"too many hops", traceRequest{Version: 1, MaxHops: 65}, false},
		{"too many queries", traceRequest{Version: 1, Queries: 6}, false},
		{"timeout too long", traceRequest{Version: 1, Timeout: 3.5}, false},
		{"timeout too short", traceRequest{Version: 1, Timeout: 0.01}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.check()
			if (err == nil) != tc.ok {
				t.Fatalf("check() = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (tc.req.Proto == "" || tc.req.MaxHops == 0 || tc.req.Queries == 0 || tc.req.Timeout == 0) {
				t.Fatalf("defaults not filled: %+v", tc.req)
			}
		})
	}
}

// reverseTraceTarget asks the server at srv for a reverse trace by hand,
// sending body as the request and extra headers, and returns the target
// it announces (or its refusal).
func reverseTraceTarget(t *testing.T, srv *e2eServer, body string, header http.Header) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, "ws://"+srv.host+":"+srv.port+"/", dialOptions{subprotocols: []string{subprotocolV1}, header: header})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	if err := c.WriteMessage(opText, []byte(body)); err != nil {
		t.Fatal(err)
	}
	var target, refusal string
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := c.ReadMessage(nil)
		if err != nil {
			t.Fatalf("reading the trace: %v", err)
		}
		var m struct {
			Type   string `json:"type"`
			Target string `json:"target"`
			Error  string `json:"error"`
		}
		json.Unmarshal(msg, &m)
		switch m.Type {
		case msgTraceStart:
			target = m.Target
		case msgRefuse:
			return "", m.Error
		case msgTraceEnd:
			c.Close(statusNormal, "")
			return target, refusal
		}
	}
}

func TestReverseTraceTargetsThePeer(t *testing.T) {
	const req = `{"type":"trace","version":1,"proto":"udp","max_hops":2,"timeout":0.2,"target":"198.18.7.7","address":"198.18.7.7"}`
	// The client writes the first entry; the proxy appends the address it
	// saw, so only the last one can be believed.
	forwarded := http.Header{"X-Forwarded-For": {"198.18.7.7, 127.0.0.2"}}

	plain := startE2EServer(t, "--no-geo", "--dns", noDNS, "--reverse-traceroute-limit", "100")
	if target, refusal := reverseTraceTarget(t, plain, req, nil); target != "127.0.0.1" {
		t.Errorf("the server traced %q (refusal %q); it must trace the peer, 127.0.0.1, never an address the client names", target, refusal)
	}
	if target, _ := reverseTraceTarget(t, plain, req, forwarded); target != "127.0.0.1" {
		t.Errorf("without --trust-proxy the server followed X-Forwarded-For to %q", target)
	}

	proxied := startE2EServer(t, "--no-geo", "--dns", noDNS, "--trust-proxy")
	if target, refusal := reverseTraceTarget(t, proxied, req, forwarded); target != "127.0.0.2" {
		t.Errorf("with --trust-proxy the target is %q (refusal %q), want the last X-Forwarded-For address 127.0.0.2", target, refusal)
	}
	if target, _ := reverseTraceTarget(t, proxied, req, http.Header{"X-Real-Ip": {"127.0.0.3"}}); target != "" {
		t.Errorf("bare --trust-proxy believes X-Forwarded-For alone, yet X-Real-IP led it to %q", target)
	}
}

func TestReverseTraceLoopback(t *testing.T) {
	srv := startE2EServer(t, "--no-geo", "--dns", noDNS, "--reverse-traceroute-limit", "1")
	r := e2eRun(srv.args("--reverse-traceroute", "-J", "--tr-timeout", "0.5", "--no-geo")...)
	if r.code != exitOK {
		t.Fatalf("reverse traceroute over loopback: %v", r)
	}
	var doc reverseTraceReport
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("-J output is not one JSON document: %v\n%s", err, r.stdout)
	}
	if doc.Target != "127.0.0.1" || !doc.Reverse || len(doc.Hops) != 1 || doc.Hops[0].Address != "127.0.0.1" {
		t.Errorf("want one hop, 127.0.0.1 itself; got %+v", doc)
	}

	again := e2eRun(srv.args("--reverse-traceroute")...)
	if again.code != exitRuntime || !strings.Contains(again.stderr, "a minute") {
		t.Errorf("a second trace past --reverse-traceroute-limit 1: want exit 1 naming the limit, got %v", again)
	}
}

func TestReverseTraceFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "x", "--tr-proto", "icmp"},
		{"-c", "x", "--reverse-traceroute", "-R"},
		{"-c", "x", "--reverse-traceroute", "-t", "5"},
		{"-c", "x", "--reverse-traceroute", "--tr-proto", "gre"},
		{"-s", "--reverse-traceroute-limit", "0"},
	} {
		if r := e2eRun(args...); r.code != exitUsage {
			t.Errorf("wperf %q: exit %d, want %d (usage)\n%s", args, r.code, exitUsage, r.stderr)
		}
	}
}

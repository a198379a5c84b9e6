package main

// Tests of the trace itself: the engine driven by a scripted prober, hop
// formatting and the -J document, options and targets, and real traces to
// loopback and through the command line.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedProber answers probes the way a fixed path would, so the trace
// engine can be tested without sockets.
type scriptedProber struct {
	out    chan<- reply
	answer func(ttl int) (netip.Addr, replyKind, string) // an invalid address stays silent
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	sentAt map[int]time.Time // first probe of each TTL
}

func (f *scriptedProber) send(idx, ttl int) (time.Time, error) {
	now := time.Now()
	f.mu.Lock()
	if _, ok := f.sentAt[ttl]; !ok {
		f.sentAt[ttl] = now
	}
	f.mu.Unlock()
	if from, kind, flag := f.answer(ttl); from.IsValid() {
		f.wg.Go(func() {
			select {
			case f.out <- reply{idx: idx, from: from, at: time.Now(), kind: kind, flag: flag}:
			case <-f.done:
			}
		})
	}
	return now, nil
}

func (f *scriptedProber) close() {
	close(f.done)
	f.wg.Wait()
}

func (f *scriptedProber) sent() map[int]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.sentAt)
}

// pathWithSilentHop2 is r1, a hop that never answers, r3 and the destination.
func pathWithSilentHop2(ttl int) (netip.Addr, replyKind, string) {
	switch {
	case ttl == 1:
		return netip.MustParseAddr("198.18.1.2"), replyHop, ""
	case ttl == 2:
		return netip.Addr{}, replyHop, ""
	case ttl == 3:
		return netip.MustParseAddr("198.18.3.2"), replyHop, ""
	}
	return labDst4, replyReached, ""
}

func runScripted(t *testing.T, ctx context.Context, opt traceOptions, answer func(int) (netip.Addr, replyKind, string)) ([]traceHop, *scriptedProber, error) {
	t.Helper()
	opt = opt.withDefaults()
	replies := make(chan reply, opt.MaxHops*opt.Queries)
	p := &scriptedProber{out: replies, answer: answer, done: make(chan struct{}), sentAt: map[int]time.Time{}}
	defer p.close()
	var hops []traceHop
	err := runTrace(ctx, p, opt, replies, func(h traceHop) { hops = append(hops, h) })
	return hops, p, err
}

func hopAddrs(hops []traceHop) []string {
	var a []string
	for _, h := range hops {
		a = append(a, h.Address)
	}
	return a
}

func TestTraceHopsInOrderAndStopAtDestination(t *testing.T) {
	const timeout = 100 * time.Millisecond
	for _, parallel := range []int{0, 1, 2} {
		opt := traceOptions{MaxHops: 10, Timeout: timeout, Parallel: parallel}
		hops, p, err := runScripted(t, context.Background(), opt, pathWithSilentHop2)
		if err != nil {
			t.Fatalf("parallel %d: %v", parallel, err)
		}
		want := []string{"198.18.1.2", "", "198.18.3.2", "198.18.4.2"}
		if got := hopAddrs(hops); !reflect.DeepEqual(got, want) {
			t.Fatalf("parallel %d: hops %q, want %q", parallel, got, want)
		}
		for i, h := range hops {
			if h.TTL != i+1 || len(h.RTTms) != 3 {
				t.Errorf("parallel %d: hop %d = %+v", parallel, i, h)
			}
			for _, rtt := range h.RTTms {
				if (rtt == nil) != (i == 1) {
					t.Errorf("parallel %d: hop %d rtts %v", parallel, i+1, h.RTTms)
				}
			}
		}
		sent := p.sent()
		switch parallel {
		case 0: // all TTLs go out at once, before any answer
			if len(sent) != 10 {
				t.Errorf("all at once: sent TTLs %v, want 1-10", sent)
			}
		case 1: // one hop at a time: TTL 3 waits for TTL 2 to time out, nothing goes past the destination
			if len(sent) != 4 || sent[3].Sub(sent[2]) < timeout {
				t.Errorf("one at a time: sent %v", sent)
			}
		}
	}
}

func TestTraceSilentTailTakesAboutOneTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	silent := func(ttl int) (netip.Addr, replyKind, string) {
		if ttl == 1 {
			return labHop4, replyHop, ""
		}
		return netip.Addr{}, replyHop, ""
	}
	start := time.Now()
	hops, _, err := runScripted(t, context.Background(), traceOptions{MaxHops: 30, Timeout: timeout}, silent)
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 30 || hops[29].Address != "" {
		t.Fatalf("got %d hops, want 30 with a silent tail", len(hops))
	}
	// 30 timeouts one after the other would be 6 s; a generous bound that
	// still tells the two apart on a loaded machine.
	if d := time.Since(start); d > 10*timeout {
		t.Errorf("silent tail took %v, want about one timeout (%v)", d, timeout)
	}
}

func TestTraceUnreachableEndsTrace(t *testing.T) {
	path := func(ttl int) (netip.Addr, replyKind, string) {
		if ttl == 1 {
			return labHop4, replyHop, ""
		}
		return netip.MustParseAddr("198.18.2.2"), replyUnreachable, "!H"
	}
	hops, _, err := runScripted(t, context.Background(), traceOptions{MaxHops: 10, Timeout: time.Second}, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 2 || hops[1].Unreachable != "!H" || !strings.HasSuffix(formatHop(hops[1]), " !H") {
		t.Errorf("hops %+v, want 2 ending in !H", hops)
	}
}

func TestTraceCancelStopsAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	silent := func(int) (netip.Addr, replyKind, string) { return netip.Addr{}, replyHop, "" }
	start := time.Now()
	_, _, err := runScripted(t, ctx, traceOptions{Timeout: time.Minute}, silent)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled trace took %v", d)
	}
}

func TestTraceStateIgnoresStrayReplies(t *testing.T) {
	s := newTraceState(traceOptions{MaxHops: 5, Queries: 3, Timeout: time.Second, Parallel: 5})
	p := &scriptedProber{answer: func(int) (netip.Addr, replyKind, string) { return netip.Addr{}, 0, "" }, done: make(chan struct{}), sentAt: map[int]time.Time{}}
	defer p.close()
	if err := s.launch(p); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	stray := []reply{
		{idx: -1, from: labHop4, at: now},
		{idx: 15, from: labHop4, at: now},
		{idx: 2, at: now}, // no address
	}
	for _, r := range stray {
		if s.record(r) {
			t.Errorf("recorded stray %+v", r)
		}
	}
	if !s.record(reply{idx: 4, from: labHop4, at: now}) || s.record(reply{idx: 4, from: labHop4, at: now}) {
		t.Error("first answer must count, its duplicate must not")
	}
	if !s.record(reply{idx: 7, from: labDst4, at: now, kind: replyReached}) || s.limit != 3 {
		t.Errorf("destination at TTL 3: limit %d", s.limit)
	}
	if s.record(reply{idx: 9, from: labDst4, at: now, kind: replyReached}) {
		t.Error("an answer past the destination must not count")
	}
}

func TestTraceLookupsFillHopsOrGiveUp(t *testing.T) {
	fast := newGeoCache(nil)
	fast.txt = fakeCymru(nil)
	slow := newGeoCache(nil)
	slow.txt = func(ctx context.Context, _ string) ([]string, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for _, tt := range []struct {
		name    string
		geo     *geoCache
		wantASN uint32
	}{{"answered", fast, 64501}, {"too slow", slow, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			opt := traceOptions{MaxHops: 5, Timeout: 100 * time.Millisecond, Geo: tt.geo, LookupWait: 100 * time.Millisecond}
			path := func(ttl int) (netip.Addr, replyKind, string) {
				if ttl == 1 {
					return netip.MustParseAddr("198.18.1.2"), replyHop, ""
				}
				return labDst4, replyReached, ""
			}
			start := time.Now()
			hops, _, err := runScripted(t, context.Background(), opt, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(hops) != 2 || hops[0].ASN != tt.wantASN {
				t.Errorf("hops %+v, want hop 1 with ASN %d", hops, tt.wantASN)
			}
			if tt.wantASN != 0 && (hops[0].Country != "US" || hops[0].Prefix != "198.18.1.0/24" || hops[0].ASName == "") {
				t.Errorf("hop 1 = %+v", hops[0])
			}
			if d := time.Since(start); d > lookupTimeout {
				t.Errorf("trace took %v: a slow lookup held it up", d)
			}
		})
	}
}

func ms(v float64) *float64 { return &v }

func TestTraceFormatHop(t *testing.T) {
	tests := []struct {
		name string
		hop  traceHop
		want string
	}{
		{"everything", traceHop{TTL: 3, Address: "96.120.88.193", Name: "some.router.com", ASN: 7922,
			ASName: "COMCAST-7922 - Comcast Cable Communications, LLC, US", Country: "US",
			RTTms: []*float64{ms(9.876), ms(9.901), ms(10.2)}},
			" 3  [US, AS7922 COMCAST]  some.router.com (96.120.88.193)  9.876 ms  9.901 ms  10.2 ms"},
		{"no geo, no name", traceHop{TTL: 12, Address: "2001:db8::1", RTTms: []*float64{ms(0.0504), nil, ms(12)}},
			"12  2001:db8::1  0.05 ms  *  12 ms"},
		{"silent", traceHop{TTL: 5, RTTms: []*float64{nil, nil, nil}}, " 5  *  *  *"},
		{"country only", traceHop{TTL: 1, Address: "198.18.1.2", Country: "DE", RTTms: []*float64{ms(1)}}, " 1  [DE]  198.18.1.2  1 ms"},
		{"AS without name", traceHop{TTL: 1, Address: "198.18.1.2", ASN: 64500, RTTms: []*float64{ms(1)}}, " 1  [AS64500]  198.18.1.2  1 ms"},
		{"unreachable", traceHop{TTL: 7, Address: "198.18.7.1", RTTms: []*float64{ms(1.5)}, Unreachable: "!H"}, " 7  198.18.7.1  1.5 ms !H"},
		{"hostile strings", traceHop{TTL: 2, Address: "198.18.2.2", Name: "evil\x1b[2J.example", ASN: 1,
			ASName: "X\x07Y - bell", Country: "u\x1b", RTTms: []*float64{ms(2)}},
			" 2  [AS1 XY]  evil[2J.example (198.18.2.2)  2 ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatHop(tt.hop); got != tt.want {
				t.Errorf("formatHop = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

func TestTraceJSONShape(t *testing.T) {
	r := traceReport{Target: "lab", Address: "198.18.4.2", Protocol: "udp", Hops: []traceHop{
		{TTL: 1, Address: "198.18.1.2", Name: "r1.lab", ASN: 64501, ASName: "LAB-ONE", Country: "US", Prefix: "198.18.1.0/24", RTTms: []*float64{ms(1.25), nil}},
	}}
	for _, traceErr := range []error{nil, errors.New("boom")} {
		var buf bytes.Buffer
		err := writeTraceJSON(&buf, r, traceErr)
		if (traceErr == nil) != (err == nil) || (traceErr != nil && !errors.Is(err, errReported)) {
			t.Fatalf("writeTraceJSON(%v) = %v", traceErr, err)
		}
		var doc map[string]any
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
			t.Fatalf("not one JSON document: %v\n%s", err, buf.Bytes())
		}
		for _, k := range []string{"target", "address", "protocol", "hops"} {
			if _, ok := doc[k]; !ok {
				t.Errorf("document lacks %q: %s", k, buf.Bytes())
			}
		}
		if msg, _ := doc["error"].(string); (traceErr != nil) != strings.Contains(msg, "boom") {
			t.Errorf("error key = %q for %v", msg, traceErr)
		}
		hop := doc["hops"].([]any)[0].(map[string]any)
		for _, k := range []string{"ttl", "address", "name", "asn", "as_name", "country", "prefix", "rtt_ms"} {
			if _, ok := hop[k]; !ok {
				t.Errorf("hop lacks %q", k)
			}
		}
		if rtts := hop["rtt_ms"].([]any); len(rtts) != 2 || rtts[0] != 1.25 || rtts[1] != nil {
			t.Errorf("rtt_ms = %v, want [1.25 null]", rtts)
		}
	}
}

func TestTraceOptionsFromCommandLine(t *testing.T) {
	cfg, err := parseArgs([]string{"--traceroute", "h", "--tr-proto", "tcp", "--tr-timeout", "0.25", "--tr-queries", "2",
		"--tr-max-hops", "9", "--tr-parallel", "1", "-n", "--no-geo", "--dns", "198.18.0.53:5353"})
	if err != nil {
		t.Fatal(err)
	}
	opt := traceOptionsFrom(cfg)
	want := traceOptions{Proto: "tcp", Port: 443, MaxHops: 9, Timeout: 250 * time.Millisecond, Queries: 2, Parallel: 1, LookupWait: lookupWait}
	opt.Resolver = nil
	if !reflect.DeepEqual(opt, want) {
		t.Errorf("options %+v\nwant    %+v", opt, want)
	}
	if opt := traceOptionsFrom(defaultConfig()); opt.Port != defaultUDPPort || opt.Parallel != 30 || opt.Geo == nil || !opt.Names {
		t.Errorf("defaults: %+v", opt)
	}
}

// TestTraceResolveTarget covers literals; names are resolved in the lab,
// where DNS stays inside the namespaces.
func TestTraceResolveTarget(t *testing.T) {
	tests := []struct {
		host   string
		family int
		want   string
		ok     bool
	}{
		{"198.18.4.2", 0, "198.18.4.2", true},
		{"198.18.4.2", 4, "198.18.4.2", true},
		{"198.18.4.2", 6, "", false},
		{"[2001:db8::1]", 0, "2001:db8::1", true},
		{"2001:db8::1", 4, "", false},
		{"::ffff:198.18.4.2", 4, "198.18.4.2", true},
	}
	for _, tt := range tests {
		got, err := resolveTarget(context.Background(), tt.host, tt.family)
		if (err == nil) != tt.ok || (tt.ok && got.String() != tt.want) {
			t.Errorf("resolveTarget(%q, %d) = %v, %v; want %q", tt.host, tt.family, got, err, tt.want)
		}
	}
}

// TestTraceLoopback runs real probes to this machine's own loopback
// addresses: raw sockets as root, the IP_RECVERR fallback otherwise.
func TestTraceLoopback(t *testing.T) {
	for _, target := range []string{"127.0.0.1", "::1"} {
		for _, proto := range []string{"udp", "icmp", "tcp"} {
			t.Run(proto+" "+target, func(t *testing.T) {
				dst := netip.MustParseAddr(target)
				if _, err := sourceAddr(dst); err != nil {
					t.Skipf("no route to %s here: %v", dst, err)
				}
				var hops []traceHop
				err := traceRoute(context.Background(), dst, traceOptions{Proto: proto, MaxHops: 5, Timeout: 2 * time.Second},
					func(h traceHop) { hops = append(hops, h) })
				// without root only Linux has a way, and only for udp and icmp
				if err != nil && os.Geteuid() != 0 && (runtime.GOOS != "linux" || proto != "udp") {
					t.Skipf("%s probes need privileges here: %v", proto, err)
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(hops) != 1 || hops[0].Address != target || hops[0].RTTms[0] == nil {
					t.Errorf("hops %+v, want one hop, %s", hops, target)
				}
			})
		}
	}
}

func TestTraceCommandLine(t *testing.T) {
	if _, err := sourceAddr(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Skipf("no loopback here: %v", err)
	}
	if os.Geteuid() != 0 && runtime.GOOS != "linux" {
		t.Skip("tracing needs privileges here")
	}
	t.Run("logfile", func(t *testing.T) {
		log := t.TempDir() + "/trace.log"
		var stdout, stderr bytes.Buffer
		code := run([]string{"--traceroute", "127.0.0.1", "-n", "--no-geo", "--tr-max-hops", "3", "--logfile", log}, &stdout, &stderr)
		got, err := os.ReadFile(log)
		if code != exitOK || err != nil || stdout.Len() != 0 {
			t.Fatalf("exit %d, stdout %q, stderr %q, log %v", code, stdout.String(), stderr.String(), err)
		}
		want := "traceroute to 127.0.0.1 (127.0.0.1), 3 hops max, udp probes\n 1  127.0.0.1  "
		if !strings.HasPrefix(string(got), want) || strings.Count(string(got), "\n") != 2 {
			t.Errorf("log:\n%s\nwant it to start\n%s", got, want)
		}
	})
	t.Run("JSON error document", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run([]string{"--traceroute", "127.0.0.1", "-6", "-J"}, &stdout, &stderr)
		var doc traceReport
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil || code != exitRuntime || stderr.Len() != 0 {
			t.Fatalf("exit %d, stderr %q, document %v:\n%s", code, stderr.String(), err, stdout.String())
		}
		if doc.Target != "127.0.0.1" || doc.Protocol != "udp" || doc.Hops == nil || !strings.Contains(doc.Error, "not an IPv6 address") {
			t.Errorf("document %+v", doc)
		}
	})
}

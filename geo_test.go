package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// labCymru is what Team Cymru's DNS would say about the lab's ranges.
var labCymru = map[string][]string{
	"2.1.18.198.origin.asn.cymru.com.": {"64501 | 198.18.1.0/24 | US | arin | 2020-01-01"},
	"2.2.18.198.origin.asn.cymru.com.": {
		"64502 64512 | 198.18.2.0/24 | DE | ripencc | 2020-01-01",
		"64500 | 198.18.0.0/15 | US | arin | 2020-01-01",
	},
	"AS64501.asn.cymru.com.": {"64501 | US | arin | 2020-01-01 | LAB-ONE - Lab router one, US"},
	"AS64502.asn.cymru.com.": {"64502 | DE | ripencc | 2020-01-01 | LAB-TWO"},
}

// fakeCymru answers from labCymru and counts the queries.
func fakeCymru(queries *atomic.Int32) func(context.Context, string) ([]string, error) {
	return func(_ context.Context, name string) ([]string, error) {
		if queries != nil {
			queries.Add(1)
		}
		if r, ok := labCymru[name]; ok {
			return r, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
}

func TestParseCymruOrigin(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		records []string
		want    []cymruOrigin
	}{
		{"one", []string{"7922 | 96.120.0.0/16 | US | arin | 2008-01-15"},
			[]cymruOrigin{{ASNs: []uint32{7922}, Prefix: p("96.120.0.0/16"), Country: "US"}}},
		{"several ASNs", []string{"701 1239 3561 | 198.18.0.0/15 | US | arin | "},
			[]cymruOrigin{{ASNs: []uint32{701, 1239, 3561}, Prefix: p("198.18.0.0/15"), Country: "US"}}},
		{"several records", []string{"15169 | 8.8.8.0/24 | US | arin | 2023-12-28", "3356 | 8.0.0.0/12 | US | arin | 1992-12-01"},
			[]cymruOrigin{{ASNs: []uint32{15169}, Prefix: p("8.8.8.0/24"), Country: "US"}, {ASNs: []uint32{3356}, Prefix: p("8.0.0.0/12"), Country: "US"}}},
		{"IPv6", []string{"6939 | 2001:470::/32 | US | arin | 2002-06-04"},
			[]cymruOrigin{{ASNs: []uint32{6939}, Prefix: p("2001:470::/32"), Country: "US"}}},
		{"no spaces, prefix not masked", []string{"64500|198.18.1.7/24|JP"},
			[]cymruOrigin{{ASNs: []uint32{64500}, Prefix: p("198.18.1.0/24"), Country: "JP"}}},
		{"empty or odd country", []string{"1 | 198.18.0.0/24 |  | arin", "2 | 198.18.1.0/24 | usa | arin", "3 | 198.18.2.0/24 | u\x1b | arin"},
			[]cymruOrigin{{ASNs: []uint32{1}, Prefix: p("198.18.0.0/24")}, {ASNs: []uint32{2}, Prefix: p("198.18.1.0/24")}, {ASNs: []uint32{3}, Prefix: p("198.18.2.0/24")}}},
		{"32-bit ASN", []string{"4294967295 | 198.18.0.0/24 | US"},
			[]cymruOrigin{{ASNs: []uint32{4294967295}, Prefix: p("198.18.0.0/24"), Country: "US"}}},
		{"bad records dropped, good kept", []string{
			"", "garbage", "NA | 198.18.0.0/24 | US | arin", "4294967296 | 198.18.0.0/24 | US", "1 x | 198.18.0.0/24 | US",
			"| 198.18.0.0/24 | US", "1 | 198.18.0.0 | US", "1 | not/a/prefix | US", "1 | 198.18.0.0/24",
			"64501 | 198.18.1.0/24 | US | arin | 2020-01-01"},
			[]cymruOrigin{{ASNs: []uint32{64501}, Prefix: p("198.18.1.0/24"), Country: "US"}}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCymruOrigin(tt.records); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseCymruASName(t *testing.T) {
	tests := []struct {
		record string
		asn    uint32
		name   string
		ok     bool
	}{
		{"7922 | US | arin | 1997-02-14 | COMCAST-7922 - Comcast Cable Communications, LLC, US", 7922, "COMCAST-7922 - Comcast Cable Communications, LLC, US", true},
		{"3320 | DE | ripencc | | DTAG Deutsche Telekom AG, DE", 3320, "DTAG Deutsche Telekom AG, DE", true},
		{"64500|ZZ|other||NAME | WITH | BARS", 64500, "NAME | WITH | BARS", true},
		{"64500 | US | arin | 2020 | \x1b]0;pwned\x07 EVIL", 64500, "]0;pwned EVIL", true},
		{"64500 | US | arin | 2020 | " + strings.Repeat("x", 300), 64500, strings.Repeat("x", asNameMax), true},
		{"64500 | US | arin | 2020", 0, "", false},
		{"AS64500 | US | arin | 2020 | NAME", 0, "", false},
		{"", 0, "", false},
	}
	for _, tt := range tests {
		asn, name, ok := parseCymruASName(tt.record)
		if asn != tt.asn || name != tt.name || ok != tt.ok {
			t.Errorf("parseCymruASName(%q) = %d, %q, %v; want %d, %q, %v", tt.record, asn, name, ok, tt.asn, tt.name, tt.ok)
		}
	}
}

func FuzzParseCymru(f *testing.F) {
	for _, r := range []string{
		"7922 | 96.120.0.0/16 | US | arin | 2008-01-15",
		"701 1239 | 2001:db8::/32 | US | arin |",
		"7922 | US | arin | 1997-02-14 | COMCAST-7922 - Comcast Cable Communications, LLC, US",
		"|||||",
		"1 | ::/0 | \xff\xfe | x",
	} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, record string) {
		for _, o := range parseCymruOrigin([]string{record, record}) {
			if len(o.ASNs) == 0 || !o.Prefix.IsValid() || o.Prefix != o.Prefix.Masked() || (o.Country != "" && countryCode(o.Country) != o.Country) {
				t.Fatalf("bad origin %+v from %q", o, record)
			}
		}
		if _, name, ok := parseCymruASName(record); ok {
			if name != cleanText(name, asNameMax) {
				t.Fatalf("name %q not clean", name)
			}
			_ = shortASName(name, 1)
		}
	})
}

func TestGeoSkip(t *testing.T) {
	tests := []struct {
		addr string
		skip bool
	}{
		{"198.18.1.2", false}, // benchmarking range: the lab's, looked up
		{"198.19.255.1", false},
		{"2001:db8:1::2", false}, // documentation range: the lab's, looked up
		{"8.8.8.8", false},
		{"100.63.255.255", false},
		{"100.128.0.0", false},
		{"2a00:1450::1", false},
		{"::ffff:198.18.1.2", false},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"100.64.0.1", true}, // CGNAT
		{"100.127.255.255", true},
		{"127.0.0.1", true},
		{"169.254.1.1", true},
		{"224.0.0.1", true},
		{"239.1.2.3", true},
		{"0.0.0.0", true},
		{"::", true},
		{"::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fe80::1", true},
		{"ff02::1", true},
		{"ff0e::1", true},
		{"::ffff:10.0.0.1", true},
	}
	for _, tt := range tests {
		if got := geoSkip(netip.MustParseAddr(tt.addr)); got != tt.skip {
			t.Errorf("geoSkip(%s) = %v, want %v", tt.addr, got, tt.skip)
		}
	}
	if !geoSkip(netip.Addr{}) {
		t.Error("the zero Addr must be skipped")
	}
}

func TestGeoOriginName(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"96.120.88.193", "193.88.120.96.origin.asn.cymru.com."},
		{"198.18.1.2", "2.1.18.198.origin.asn.cymru.com."},
		{"2001:db8:1::2", "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.origin6.asn.cymru.com."},
	}
	for _, tt := range tests {
		if got := cymruOriginName(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("cymruOriginName(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestGeoShortASName(t *testing.T) {
	tests := []struct {
		name string
		asn  uint32
		want string
	}{
		{"COMCAST-7922 - Comcast Cable Communications, LLC, US", 7922, "COMCAST"},
		{"GOOGLE - Google LLC, US", 15169, "GOOGLE"},
		{"LEVEL3, US", 3356, "LEVEL3"},
		{"DTAG Deutsche Telekom AG, DE", 3320, "DTAG"},
		{"CLOUD-12-3", 3, "CLOUD-12"},
		{"", 1, ""},
	}
	for _, tt := range tests {
		if got := shortASName(tt.name, tt.asn); got != tt.want {
			t.Errorf("shortASName(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestGeoCacheAsksOncePerPrefix(t *testing.T) {
	var queries atomic.Int32
	g := newGeoCache(nil)
	g.txt = fakeCymru(&queries)
	ctx := context.Background()

	info, ok := g.lookup(ctx, netip.MustParseAddr("198.18.1.2"))
	want := geoInfo{ASN: 64501, Prefix: netip.MustParsePrefix("198.18.1.0/24"), Country: "US", ASName: "LAB-ONE - Lab router one, US"}
	if !ok || info != want || queries.Load() != 2 {
		t.Fatalf("first lookup = %+v, %v after %d queries; want %+v after 2", info, ok, queries.Load(), want)
	}
	// another address in the same prefix: answered from the cache
	if info, ok := g.lookup(ctx, netip.MustParseAddr("198.18.1.200")); !ok || info != want || queries.Load() != 2 {
		t.Errorf("same prefix = %+v, %v after %d queries; want no new query", info, ok, queries.Load())
	}
	// skipped addresses cost nothing and give nothing
	if _, ok := g.lookup(ctx, netip.MustParseAddr("10.0.0.1")); ok || queries.Load() != 2 {
		t.Errorf("private address looked up (%d queries)", queries.Load())
	}
	// several ASNs: the first one is the hop's; the more specific of two records wins
	info, ok = g.lookup(ctx, netip.MustParseAddr("198.18.2.2"))
	if !ok || info.ASN != 64502 || info.Prefix.Bits() != 24 || info.Country != "DE" || info.ASName != "LAB-TWO" {
		t.Errorf("multi-origin lookup = %+v, %v", info, ok)
	}
	n := queries.Load()
	// the covering /15 came with that answer, so a third address under it is cached too
	if info, ok := g.lookup(ctx, netip.MustParseAddr("198.18.3.2")); !ok || info.ASN != 64500 || queries.Load() != n+1 {
		t.Errorf("covering prefix = %+v, %v after %d queries; want only the AS name asked", info, ok, queries.Load()-n)
	}
	// no answer: nothing cached, nothing made up
	if _, ok := g.lookup(ctx, netip.MustParseAddr("203.0.113.9")); ok {
		t.Error("made up an answer for an unknown address")
	}
}

func TestGeoCacheRejectsAnswersForOtherAddresses(t *testing.T) {
	var queries atomic.Int32
	g := newGeoCache(nil)
	g.txt = func(_ context.Context, name string) ([]string, error) {
		queries.Add(1)
		return []string{"1 | 203.0.113.0/24 | US", "2 | 0.0.0.0/0 | US"}, nil
	}
	ctx := context.Background()
	info, ok := g.lookup(ctx, netip.MustParseAddr("198.18.1.2"))
	if !ok || info.ASN != 2 {
		t.Fatalf("lookup = %+v, %v; want the only record that holds the address", info, ok)
	}
	n := queries.Load()
	g.lookup(ctx, netip.MustParseAddr("198.18.9.9"))
	if queries.Load() == n {
		t.Error("a /0 answer was cached for every address")
	}
}

func TestGeoCacheExpires(t *testing.T) {
	var queries atomic.Int32
	g := newGeoCache(nil)
	g.txt = fakeCymru(&queries)
	g.ttl = time.Nanosecond
	a := netip.MustParseAddr("198.18.1.2")
	g.lookup(context.Background(), a)
	time.Sleep(time.Millisecond)
	g.lookup(context.Background(), a)
	if queries.Load() != 4 {
		t.Errorf("%d queries, want 4: expired entries must be asked again", queries.Load())
	}
}

func TestGeoCacheConcurrent(t *testing.T) {
	g := newGeoCache(nil)
	g.txt = fakeCymru(nil)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			a := netip.AddrFrom4([4]byte{198, 18, byte(1 + i%2), 2})
			if _, ok := g.lookup(context.Background(), a); !ok {
				t.Errorf("lookup %s failed", a)
			}
		})
	}
	wg.Wait()
}

// fakeDNS serves TXT and PTR records over UDP on loopback, so the resolver
// that --dns builds is tested end to end without leaving the machine.
func fakeDNS(t *testing.T, txt, ptr map[string][]string) string {
	t.Helper()
	txt, ptr = lowerKeys(txt), lowerKeys(ptr) // DNS names match without case
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := dnsAnswer(buf[:n], txt, ptr); err == nil {
				pc.WriteTo(resp, from)
			}
		}
	})
	return pc.LocalAddr().String()
}

func lowerKeys(m map[string][]string) map[string][]string {
	l := make(map[string][]string, len(m))
	for k, v := range m {
		l[strings.ToLower(k)] = v
	}
	return l
}

func dnsAnswer(req []byte, txt, ptr map[string][]string) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(q.Name.String())
	hdr := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	var answers []string
	switch q.Type {
	case dnsmessage.TypeTXT:
		answers = txt[name]
	case dnsmessage.TypePTR:
		answers = ptr[name]
	}
	if _, known := txt[name]; !known && ptr[name] == nil {
		hdr.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, hdr)
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: 60}
	for _, a := range answers {
		if q.Type == dnsmessage.TypeTXT {
			err = b.TXTResource(rh, dnsmessage.TXTResource{TXT: []string{a}})
		} else {
			err = b.PTRResource(rh, dnsmessage.PTRResource{PTR: dnsmessage.MustNewName(a)})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func TestGeoOverDNS(t *testing.T) {
	ptr := map[string][]string{"2.0.18.198.in-addr.arpa.": {"r1.lab.test."}}
	server := fakeDNS(t, labCymru, ptr)
	r := lookupResolver(server)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	info, ok := newGeoCache(r).lookup(ctx, netip.MustParseAddr("198.18.1.2"))
	if !ok || info.ASN != 64501 || info.Country != "US" || info.ASName != "LAB-ONE - Lab router one, US" {
		t.Errorf("lookup over DNS = %+v, %v", info, ok)
	}
	names, err := r.LookupAddr(ctx, "198.18.0.2")
	if err != nil || len(names) != 1 || names[0] != "r1.lab.test." {
		t.Errorf("PTR over DNS = %v, %v", names, err)
	}
	var dnsErr *net.DNSError
	if _, err := r.LookupTXT(ctx, "AS1.asn.cymru.com."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("unknown name: %v, want not found", err)
	}
}

func TestGeoResolverAddress(t *testing.T) {
	// a server given without a port is asked on port 53; check by where the dial goes
	for _, tt := range []struct{ server, want string }{
		{"127.0.0.1:5353", "127.0.0.1:5353"},
		{"127.0.0.1", "127.0.0.1:53"},
		{"[::1]:5353", "[::1]:5353"},
		{"::1", "[::1]:53"},
	} {
		r := lookupResolver(tt.server)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the dial fails at once, but its error names the address
		_, err := r.Dial(ctx, "udp", "ignored:53")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("lookupResolver(%q) dials %v, want %s", tt.server, err, tt.want)
		}
	}
	if r := lookupResolver(""); r.Dial != nil || !r.PreferGo {
		t.Error("without --dns: the pure-Go resolver with the system's servers")
	}
}

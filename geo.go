package main

// ASN and country of a hop, from Team Cymru's IP-to-ASN service over DNS.
//
// Two TXT queries give what a hop line shows:
//
//	<reversed address>.origin.asn.cymru.com   "ASN [ASN...] | prefix | CC | registry | allocated"
//	AS<n>.asn.cymru.com                        "ASN | CC | registry | allocated | AS name"
//
// The country is the one the registry has on file for the prefix, which
// says who holds the addresses, not where the router stands.

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// geoCacheTTL bounds how stale a cached answer may get in a long-lived
	// process (a server doing reverse traces); a CLI trace never reaches it.
	geoCacheTTL = 6 * time.Hour
	// geoCacheMax bounds the memory a long-lived process spends on answers.
	geoCacheMax = 4096
	// asNameMax cuts AS names that a hostile DNS answer made absurdly long.
	asNameMax = 200
)

// cgnat is the shared address space of RFC 6598: carrier NAT inside one
// provider, so no registry record says anything useful about it.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// geoSkip says which addresses are not worth a query because no public
// registry describes them: RFC 1918 and ULA (fc00::/7, which is exactly what
// netip's IsPrivate covers), CGNAT, loopback, link-local, multicast and the
// unspecified address. Documentation and benchmark ranges such as
// 198.18.0.0/15 and 2001:db8::/32 are looked up like any other, so a lab's
// own DNS can answer for them.
func geoSkip(a netip.Addr) bool {
	a = a.Unmap()
	return !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsMulticast() || cgnat.Contains(a)
}

// geoInfo is what a hop line shows about the network that holds an address.
type geoInfo struct {
	ASN     uint32
	Prefix  netip.Prefix
	Country string
	ASName  string
}

// cymruOrigin is one record of an origin answer. A prefix announced by more
// than one AS lists them all.
type cymruOrigin struct {
	ASNs    []uint32
	Prefix  netip.Prefix
	Country string
}

// parseCymruOrigin reads every origin record and drops those that do not
// parse; records come from the network, so nothing in them is trusted.
func parseCymruOrigin(records []string) []cymruOrigin {
	var out []cymruOrigin
	for _, r := range records {
		if o, ok := parseCymruOriginRecord(r); ok {
			out = append(out, o)
		}
	}
	return out
}

func parseCymruOriginRecord(r string) (cymruOrigin, bool) {
	f := strings.Split(r, "|")
	if len(f) < 3 {
		return cymruOrigin{}, false
	}
	asns, ok := parseASNList(f[0])
	if !ok {
		return cymruOrigin{}, false
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(f[1]))
	if err != nil {
		return cymruOrigin{}, false
	}
	return cymruOrigin{ASNs: asns, Prefix: p.Masked(), Country: countryCode(f[2])}, true
}

// parseASNList reads the space-separated ASNs of an origin record; one word
// that is not a 32-bit number spoils the record.
func parseASNList(s string) ([]uint32, bool) {
	words := strings.Fields(s)
	if len(words) == 0 {
		return nil, false
	}
	asns := make([]uint32, 0, len(words))
	for _, w := range words {
		n, err := strconv.ParseUint(w, 10, 32)
		if err != nil {
			return nil, false
		}
		asns = append(asns, uint32(n))
	}
	return asns, true
}

// parseCymruASName reads one AS record: the ASN it describes and its name.
func parseCymruASName(r string) (uint32, string, bool) {
	f := strings.SplitN(r, "|", 5)
	if len(f) < 5 {
		return 0, "", false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(f[0]), 10, 32)
	if err != nil {
		return 0, "", false
	}
	return uint32(n), cleanText(f[4], asNameMax), true
}

// countryCode keeps a field only if it looks like an ISO 3166 code, so that
// nothing else from a DNS answer lands in a hop line.
func countryCode(s string) string {
	s = strings.TrimSpace(s)
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return ""
	}
	return s
}

// shortASName is the handle at the front of a registry's AS name, for the
// hop line ("COMCAST-7922 - Comcast Cable..." is shown as COMCAST); JSON
// keeps the full name.
func shortASName(name string, asn uint32) string {
	if i := strings.IndexAny(name, " ,"); i >= 0 {
		name = name[:i]
	}
	return strings.TrimSuffix(name, "-"+strconv.FormatUint(uint64(asn), 10))
}

// cymruOriginName is the TXT name of the origin query for a: the reversed
// octets under origin.asn.cymru.com, or the reversed nibbles of all 128 bits
// under origin6.asn.cymru.com. The trailing dot keeps search domains out.
func cymruOriginName(a netip.Addr) string {
	var b strings.Builder
	if a.Is4() {
		o := a.As4()
		for i := len(o) - 1; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(o[i])))
			b.WriteByte('.')
		}
		b.WriteString("origin.asn.cymru.com.")
		return b.String()
	}
	const hex = "0123456789abcdef"
	o := a.As16()
	for i := len(o) - 1; i >= 0; i-- {
		b.WriteByte(hex[o[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[o[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("origin6.asn.cymru.com.")
	return b.String()
}

// bestOrigin picks the most specific record that holds a, the one routing
// would follow. Records that do not hold a are wrong or hostile and ignored.
func bestOrigin(all []cymruOrigin, a netip.Addr) (cymruOrigin, bool) {
	var best cymruOrigin
	found := false
	for _, o := range all {
		if o.Prefix.Contains(a) && (!found || o.Prefix.Bits() > best.Prefix.Bits()) {
			best, found = o, true
		}
	}
	return best, found
}

// geoCache answers lookups from earlier answers when it can: an address
// inside a prefix already seen costs no query, and each AS name is asked for
// once. A more specific prefix that was never seen can hide inside a cached
// one; the cache then gives the covering prefix's origin, the price of
// asking once per prefix instead of once per hop.
type geoCache struct {
	// txt runs one TXT query; tests replace it.
	txt func(ctx context.Context, name string) ([]string, error)
	ttl time.Duration

	mu       sync.Mutex
	prefixes map[netip.Prefix]geoEntry
	names    map[uint32]asNameEntry
}

type geoEntry struct {
	origin cymruOrigin
	at     time.Time
}

type asNameEntry struct {
	name string
	at   time.Time
}

// newGeoCache makes a cache that asks r (see lookupResolver).
func newGeoCache(r *net.Resolver) *geoCache {
	return &geoCache{
		txt:      r.LookupTXT,
		ttl:      geoCacheTTL,
		prefixes: map[netip.Prefix]geoEntry{},
		names:    map[uint32]asNameEntry{},
	}
}

// lookup finds the origin AS, prefix, country and AS name of a. It reports
// false for skipped addresses and when DNS has no usable answer; ctx bounds
// the time it may take.
func (g *geoCache) lookup(ctx context.Context, a netip.Addr) (geoInfo, bool) {
	a = a.Unmap().WithZone("")
	if geoSkip(a) {
		return geoInfo{}, false
	}
	o, ok := g.cachedOrigin(a)
	if !ok {
		records, err := g.txt(ctx, cymruOriginName(a))
		if err != nil {
			return geoInfo{}, false
		}
		all := parseCymruOrigin(records)
		if o, ok = bestOrigin(all, a); !ok {
			return geoInfo{}, false
		}
		g.storeOrigins(all, a)
	}
	info := geoInfo{ASN: o.ASNs[0], Prefix: o.Prefix, Country: o.Country}
	info.ASName = g.asName(ctx, info.ASN)
	return info, true
}

// cachedOrigin returns the most specific fresh cached prefix holding a.
func (g *geoCache) cachedOrigin(a netip.Addr) (cymruOrigin, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best cymruOrigin
	found := false
	for p, e := range g.prefixes {
		if !p.Contains(a) || time.Since(e.at) > g.ttl {
			continue
		}
		if !found || p.Bits() > best.Prefix.Bits() {
			best, found = e.origin, true
		}
	}
	return best, found
}

// storeOrigins keeps every record that holds a, so that a later address
// under a more specific one is answered right. Very short prefixes are not
// kept: a bogus 0.0.0.0/0 answer must not speak for every later address.
func (g *geoCache) storeOrigins(all []cymruOrigin, a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.prefixes) >= geoCacheMax {
		clear(g.prefixes)
	}
	now := time.Now()
	for _, o := range all {
		if o.Prefix.Contains(a) && o.Prefix.Bits() >= minCachedBits(a) {
			g.prefixes[o.Prefix] = geoEntry{origin: o, at: now}
		}
	}
}

// minCachedBits is the shortest prefix the cache accepts: routes wider
// than an IPv4 /8 or an IPv6 /16 are not announced on the Internet.
func minCachedBits(a netip.Addr) int {
	if a.Is4() {
		return 8
	}
	return 16
}

// asName returns the registry's name for asn, or "" when DNS has none.
func (g *geoCache) asName(ctx context.Context, asn uint32) string {
	g.mu.Lock()
	e, ok := g.names[asn]
	g.mu.Unlock()
	if ok && time.Since(e.at) <= g.ttl {
		return e.name
	}
	records, err := g.txt(ctx, "AS"+strconv.FormatUint(uint64(asn), 10)+".asn.cymru.com.")
	if err != nil {
		return ""
	}
	for _, r := range records {
		if n, name, ok := parseCymruASName(r); ok && n == asn {
			g.mu.Lock()
			if len(g.names) >= geoCacheMax {
				clear(g.names)
			}
			g.names[asn] = asNameEntry{name: name, at: time.Now()}
			g.mu.Unlock()
			return name
		}
	}
	return ""
}

// lookupResolver is the resolver for PTR names and Cymru queries: always the
// pure-Go one (the same answers with or without cgo, and no libc lookups in
// a static binary), sent to server (HOST:PORT, or HOST for port 53) when
// --dns names one.
func lookupResolver(server string) *net.Resolver {
	r := &net.Resolver{PreferGo: true}
	if server == "" {
		return r
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}
	return r
}

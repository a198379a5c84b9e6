package main

import (
	"bytes"
	"context"
	"encoding/binary"
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

var (
	labDst4 = netip.MustParseAddr("198.18.4.2")
	labDst6 = netip.MustParseAddr("2001:db8:4::2")
	labHop4 = netip.MustParseAddr("198.18.2.2")
	labHop6 = netip.MustParseAddr("2001:db8:2::2")
	labSrc4 = netip.MustParseAddr("198.18.1.1")
	labSrc6 = netip.MustParseAddr("2001:db8:1::1")
)

// testSpec is a probe spec as an open prober leaves it.
func testSpec(proto string, dst netip.Addr) *probeSpec {
	src := labSrc4
	if dst.Is6() {
		src = labSrc6
	}
	port := uint16(defaultUDPPort)
	if proto == "tcp" {
		port = defaultTCPPort
	}
	return &probeSpec{proto: proto, dst: dst, src: src, port: port, srcPort: 40000, icmpID: 0x1234, seqBase: 0xfffffff0, count: 90}
}

// ipv4Packet builds an IPv4 header (20 bytes, or more with options) in front of payload.
func ipv4Packet(proto uint8, dst netip.Addr, fragOffset uint16, optionWords int, payload []byte) []byte {
	ihl := 5 + optionWords
	b := make([]byte, ihl*4, ihl*4+len(payload))
	b[0] = 4<<4 | byte(ihl)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)+len(payload)))
	binary.BigEndian.PutUint16(b[6:], fragOffset)
	b[8], b[9] = 1, proto
	copy(b[12:16], labSrc4.AsSlice())
	copy(b[16:20], dst.AsSlice())
	return append(b, payload...)
}

func ipv6Packet(next uint8, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 1
	copy(b[8:24], labSrc6.AsSlice())
	copy(b[24:40], dst.AsSlice())
	return append(b, payload...)
}

// icmpMessage builds an ICMP message with a 4-byte unused field before the
// quoted datagram, as errors have; x/net parses it as a router sends it.
func icmpMessage(typ, code byte, rest ...[]byte) []byte {
	b := []byte{typ, code, 0, 0, 0, 0, 0, 0}
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

func udpHeader(sport, dport uint16) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

func tcpHeader(sport, dport uint16, seq uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	return b
}

func echoHeader(typ byte, id, seq uint16) []byte {
	b := []byte{typ, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	return b
}

func TestTraceMatchICMP(t *testing.T) {
	udp4, tcp4, icmp4 := testSpec("udp", labDst4), testSpec("tcp", labDst4), testSpec("icmp", labDst4)
	udp6, icmp6 := testSpec("udp", labDst6), testSpec("icmp", labDst6)
	other := netip.MustParseAddr("198.18.9.9")
	quotedUDP4 := func(sport, dport uint16) []byte {
		return ipv4Packet(ipProtoUDP, labDst4, 0, 0, udpHeader(sport, dport))
	}
	tests := []struct {
		name string
		spec *probeSpec
		msg  []byte
		want bool
		idx  int
		kind replyKind
		flag string
	}{
		{name: "udp time exceeded", spec: udp4, msg: icmpMessage(11, 0, quotedUDP4(40000, 33434+5)), want: true, idx: 5, kind: replyHop},
		{name: "udp time exceeded with IP options", spec: udp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoUDP, labDst4, 0, 2, udpHeader(40000, 33434+7))), want: true, idx: 7},
		{name: "udp port unreachable is the destination", spec: udp4, msg: icmpMessage(3, 3, quotedUDP4(40000, 33434+11)), want: true, idx: 11, kind: replyReached},
		{name: "udp host unreachable", spec: udp4, msg: icmpMessage(3, 1, quotedUDP4(40000, 33434)), want: true, kind: replyUnreachable, flag: "!H"},
		{name: "udp admin prohibited", spec: udp4, msg: icmpMessage(3, 13, quotedUDP4(40000, 33434)), want: true, kind: replyUnreachable, flag: "!X"},
		{name: "udp odd unreachable code", spec: udp4, msg: icmpMessage(3, 7, quotedUDP4(40000, 33434)), want: true, kind: replyUnreachable, flag: "!7"},
		{name: "udp other source port", spec: udp4, msg: icmpMessage(11, 0, quotedUDP4(40001, 33434))},
		{name: "udp port below the range", spec: udp4, msg: icmpMessage(11, 0, quotedUDP4(40000, 33433))},
		{name: "udp port past the range", spec: udp4, msg: icmpMessage(11, 0, quotedUDP4(40000, 33434+90))},
		{name: "udp other destination", spec: udp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoUDP, other, 0, 0, udpHeader(40000, 33434)))},
		{name: "udp quote of a tcp packet", spec: udp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoTCP, labDst4, 0, 0, udpHeader(40000, 33434)))},
		{name: "reassembly timeout is no hop", spec: udp4, msg: icmpMessage(11, 1, quotedUDP4(40000, 33434))},
		{name: "later fragment has no ports", spec: udp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoUDP, labDst4, 3, 0, udpHeader(40000, 33434)))},
		{name: "quote cut inside the ports", spec: udp4, msg: icmpMessage(11, 0, quotedUDP4(40000, 33434)[:24])},
		{name: "quote cut inside the IP header", spec: udp4, msg: icmpMessage(11, 0, quotedUDP4(40000, 33434)[:12])},
		{name: "header length below 20", spec: udp4, msg: icmpMessage(11, 0, append([]byte{0x44}, quotedUDP4(40000, 33434)[1:]...))},
		{name: "header length past the quote", spec: udp4, msg: icmpMessage(11, 0, append([]byte{0x4f}, quotedUDP4(40000, 33434)[1:]...))},
		{name: "quote is no IP", spec: udp4, msg: icmpMessage(11, 0, append([]byte{0x55}, quotedUDP4(40000, 33434)[1:]...))},
		{name: "empty quote", spec: udp4, msg: icmpMessage(11, 0)},
		{name: "short message", spec: udp4, msg: []byte{11, 0}},
		{name: "no message", spec: udp4},
		{name: "echo reply to a udp trace", spec: udp4, msg: echoHeader(0, 0x1234, 3)},

		{name: "tcp time exceeded", spec: tcp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoTCP, labDst4, 0, 0, tcpHeader(40000, 443, 0x4))), want: true, idx: 20},
		{name: "tcp sequence wraps", spec: tcp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoTCP, labDst4, 0, 0, tcpHeader(40000, 443, 0x10))), want: true, idx: 0x20},
		{name: "tcp sequence before ours", spec: tcp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoTCP, labDst4, 0, 0, tcpHeader(40000, 443, 0xffffffef)))},
		{name: "tcp other port", spec: tcp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoTCP, labDst4, 0, 0, tcpHeader(40000, 80, 0xfffffff0)))},
		{name: "tcp prohibited by the destination", spec: tcp4, msg: icmpMessage(3, 10, ipv4Packet(ipProtoTCP, labDst4, 0, 0, tcpHeader(40000, 443, 0xfffffff0))), want: true, kind: replyUnreachable, flag: "!X"},

		{name: "icmp time exceeded", spec: icmp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoICMP, labDst4, 0, 0, echoHeader(8, 0x1234, 42))), want: true, idx: 42},
		{name: "icmp other identifier", spec: icmp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoICMP, labDst4, 0, 0, echoHeader(8, 0x1235, 42)))},
		{name: "icmp quote of a reply", spec: icmp4, msg: icmpMessage(11, 0, ipv4Packet(ipProtoICMP, labDst4, 0, 0, echoHeader(0, 0x1234, 42)))},
		{name: "icmp echo reply", spec: icmp4, msg: echoHeader(0, 0x1234, 89), want: true, idx: 89, kind: replyReached},
		{name: "icmp echo reply past the range", spec: icmp4, msg: echoHeader(0, 0x1234, 90)},
		{name: "icmp echo reply of someone else", spec: icmp4, msg: echoHeader(0, 0x4321, 3)},
		{name: "icmp echo request to us", spec: icmp4, msg: echoHeader(8, 0x1234, 3)},

		{name: "udp6 time exceeded", spec: udp6, msg: icmpMessage(3, 0, ipv6Packet(ipProtoUDP, labDst6, udpHeader(40000, 33434+2))), want: true, idx: 2},
		{name: "udp6 port unreachable", spec: udp6, msg: icmpMessage(1, 4, ipv6Packet(ipProtoUDP, labDst6, udpHeader(40000, 33434+3))), want: true, idx: 3, kind: replyReached},
		{name: "udp6 admin prohibited", spec: udp6, msg: icmpMessage(1, 1, ipv6Packet(ipProtoUDP, labDst6, udpHeader(40000, 33434))), want: true, kind: replyUnreachable, flag: "!X"},
		{name: "udp6 address unreachable", spec: udp6, msg: icmpMessage(1, 3, ipv6Packet(ipProtoUDP, labDst6, udpHeader(40000, 33434))), want: true, kind: replyUnreachable, flag: "!H"},
		{name: "udp6 quote of IPv4", spec: udp6, msg: icmpMessage(3, 0, quotedUDP4(40000, 33434))},
		{name: "udp6 short quote", spec: udp6, msg: icmpMessage(3, 0, ipv6Packet(ipProtoUDP, labDst6, udpHeader(40000, 33434))[:44])},
		{name: "udp6 behind an extension header", spec: udp6, msg: icmpMessage(3, 0, ipv6Packet(44, labDst6, udpHeader(40000, 33434)))},
		{name: "icmp6 echo reply", spec: icmp6, msg: echoHeader(129, 0x1234, 7), want: true, idx: 7, kind: replyReached},
		{name: "icmp6 time exceeded", spec: icmp6, msg: icmpMessage(3, 0, ipv6Packet(ipProtoICMPv6, labDst6, echoHeader(128, 0x1234, 8))), want: true, idx: 8},
		{name: "icmp6 quote with the IPv4 echo type", spec: icmp6, msg: icmpMessage(3, 0, ipv6Packet(ipProtoICMPv6, labDst6, echoHeader(8, 0x1234, 8)))},
	}
	at := time.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := tt.spec.parseICMP(tt.msg, labHop4, at)
			if ok != tt.want {
				t.Fatalf("matched = %v, want %v (reply %+v)", ok, tt.want, r)
			}
			if !ok {
				return
			}
			if r.idx != tt.idx || r.kind != tt.kind || r.flag != tt.flag || r.from != labHop4 || !r.at.Equal(at) {
				t.Errorf("reply = %+v, want idx %d kind %d flag %q from %s", r, tt.idx, tt.kind, tt.flag, labHop4)
			}
		})
	}
}

func TestTraceMatchTCPAnswer(t *testing.T) {
	s := testSpec("tcp", labDst4)
	segment := func(sport, dport uint16, ack uint32, flags byte) []byte {
		b := tcpHeader(sport, dport, 777)
		binary.BigEndian.PutUint32(b[8:], ack)
		b[13] = flags
		return b
	}
	tests := []struct {
		name string
		from netip.Addr
		seg  []byte
		want bool
		idx  int
	}{
		{"syn-ack", labDst4, segment(443, 40000, 0xfffffff0+5+1, tcpFlagSYN|tcpFlagACK), true, 5},
		{"reset", labDst4, segment(443, 40000, 0xfffffff0+1, tcpFlagRST|tcpFlagACK), true, 0},
		{"ack wraps", labDst4, segment(443, 40000, 0x11, tcpFlagRST|tcpFlagACK), true, 0x20},
		{"reset without ack", labDst4, segment(443, 40000, 0xfffffff0+1, tcpFlagRST), false, 0},
		{"plain ack", labDst4, segment(443, 40000, 0xfffffff0+1, tcpFlagACK), false, 0},
		{"ack of no probe", labDst4, segment(443, 40000, 0x4b, tcpFlagSYN|tcpFlagACK), false, 0},
		{"from elsewhere", labHop4, segment(443, 40000, 0xfffffff0+1, tcpFlagSYN|tcpFlagACK), false, 0},
		{"other source port", labDst4, segment(80, 40000, 0xfffffff0+1, tcpFlagSYN|tcpFlagACK), false, 0},
		{"to another of our ports", labDst4, segment(443, 40001, 0xfffffff0+1, tcpFlagSYN|tcpFlagACK), false, 0},
		{"short segment", labDst4, segment(443, 40000, 0xfffffff0+1, tcpFlagSYN|tcpFlagACK)[:19], false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := s.parseTCPAnswer(tt.seg, tt.from, time.Now())
			if ok != tt.want || (ok && (r.idx != tt.idx || r.kind != replyReached)) {
				t.Errorf("got %+v, %v; want idx %d, %v", r, ok, tt.idx, tt.want)
			}
		})
	}
}

// extendedErr builds the IP_RECVERR control message data the way Linux lays it out.
func extendedErr(origin, typ, code byte, offender netip.Addr) []byte {
	b := make([]byte, 16)
	b[4], b[5], b[6] = origin, typ, code
	switch {
	case offender.Is4():
		sa := make([]byte, 16)
		binary.NativeEndian.PutUint16(sa, linuxAFInet)
		copy(sa[4:], offender.AsSlice())
		b = append(b, sa...)
	case offender.Is6():
		sa := make([]byte, 28)
		binary.NativeEndian.PutUint16(sa, linuxAFInet6)
		copy(sa[8:], offender.AsSlice())
		b = append(b, sa...)
	default:
		b = append(b, make([]byte, 16)...) // AF_UNSPEC: no offender known
	}
	return b
}

func TestTraceMatchQueuedError(t *testing.T) {
	udp4, icmp4, udp6 := testSpec("udp", labDst4), testSpec("icmp", labDst4), testSpec("udp", labDst6)
	tests := []struct {
		name    string
		spec    *probeSpec
		cmsg    []byte
		dst     netip.Addr
		port    uint16
		payload []byte
		want    bool
		idx     int
		kind    replyKind
		from    netip.Addr
	}{
		{name: "udp time exceeded", spec: udp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4), dst: labDst4, port: 33434 + 4, want: true, idx: 4, from: labHop4},
		{name: "udp port unreachable", spec: udp4, cmsg: extendedErr(eeOriginICMP, 3, 3, labDst4), dst: labDst4, port: 33434 + 9, want: true, idx: 9, kind: replyReached, from: labDst4},
		{name: "udp net unreachable", spec: udp4, cmsg: extendedErr(eeOriginICMP, 3, 0, labHop4), dst: labDst4, port: 33434, want: true, kind: replyUnreachable, from: labHop4},
		{name: "udp port of no probe", spec: udp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4), dst: labDst4, port: 33434 + 90},
		{name: "udp to another destination", spec: udp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4), dst: labHop4, port: 33434},
		{name: "local error", spec: udp4, cmsg: extendedErr(1, 0, 0, netip.Addr{}), dst: labDst4, port: 33434},
		{name: "no offender", spec: udp4, cmsg: extendedErr(eeOriginICMP, 11, 0, netip.Addr{}), dst: labDst4, port: 33434},
		{name: "parameter problem", spec: udp4, cmsg: extendedErr(eeOriginICMP, 12, 0, labHop4), dst: labDst4, port: 33434},
		{name: "short control message", spec: udp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4)[:15], dst: labDst4, port: 33434},
		{name: "offender cut short", spec: udp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4)[:22], dst: labDst4, port: 33434},
		{name: "icmp time exceeded", spec: icmp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4), dst: labDst4, payload: echoHeader(8, 0x1234, 17), want: true, idx: 17, from: labHop4},
		{name: "icmp quote cut short", spec: icmp4, cmsg: extendedErr(eeOriginICMP, 11, 0, labHop4), dst: labDst4, payload: echoHeader(8, 0x1234, 17)[:7]},
		{name: "udp6 time exceeded", spec: udp6, cmsg: extendedErr(eeOriginICMP6, 3, 0, labHop6), dst: labDst6, port: 33434 + 1, want: true, idx: 1, from: labHop6},
		{name: "udp6 port unreachable", spec: udp6, cmsg: extendedErr(eeOriginICMP6, 1, 4, labDst6), dst: labDst6, port: 33434, want: true, kind: replyReached, from: labDst6},
		{name: "udp6 packet too big", spec: udp6, cmsg: extendedErr(eeOriginICMP6, 2, 0, labHop6), dst: labDst6, port: 33434},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := parseExtendedErr(tt.cmsg)
			var r reply
			if ok {
				e.dst, e.dstPort, e.payload = tt.dst, tt.port, tt.payload
				r, ok = tt.spec.matchQueued(e, time.Now())
			}
			if ok != tt.want {
				t.Fatalf("matched = %v, want %v (%+v)", ok, tt.want, r)
			}
			if ok && (r.idx != tt.idx || r.kind != tt.kind || r.from != tt.from) {
				t.Errorf("reply = %+v, want idx %d kind %d from %s", r, tt.idx, tt.kind, tt.from)
			}
		})
	}
}

func TestTraceSYNChecksum(t *testing.T) {
	for _, dst := range []netip.Addr{labDst4, labDst6} {
		s := testSpec("tcp", dst)
		seg := s.syn(3)
		if got := transportChecksum(s.src, s.dst, ipProtoTCP, seg); got != 0 {
			t.Errorf("%s: checksum over the finished segment = %#04x, want 0", dst, got)
		}
		if seq := binary.BigEndian.Uint32(seg[4:]); seq != s.seqBase+3 || seg[13] != tcpFlagSYN {
			t.Errorf("%s: seq %#x flags %#x, want %#x SYN", dst, seq, seg[13], s.seqBase+3)
		}
	}
	// An odd last byte counts as the high half of a word.
	odd := transportChecksum(netip.IPv4Unspecified(), netip.IPv4Unspecified(), 0, []byte{0x00, 0x01, 0xf2})
	if odd != ^uint16(0x0001+0xf200+3) {
		t.Errorf("odd-length sum = %#04x", odd)
	}
}

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

func TestTraceUDPPortRoom(t *testing.T) {
	opt := traceOptions{Port: 65500, MaxHops: 30, Queries: 3}.withDefaults()
	if _, err := newProbeSpec(netip.MustParseAddr("127.0.0.1"), opt); err == nil || !strings.Contains(err.Error(), "--tr-port") {
		t.Errorf("err = %v, want a hint at --tr-port", err)
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

func FuzzTraceReply(f *testing.F) {
	f.Add(icmpMessage(11, 0, ipv4Packet(ipProtoUDP, labDst4, 0, 0, udpHeader(40000, 33434))), false)
	f.Add(icmpMessage(3, 0, ipv6Packet(ipProtoUDP, labDst6, udpHeader(40000, 33434))), true)
	f.Add(extendedErr(eeOriginICMP, 11, 0, labHop4), false)
	f.Add(tcpHeader(443, 40000, 1), false)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		dst := labDst4
		if v6 {
			dst = labDst6
		}
		for _, proto := range []string{"udp", "tcp", "icmp"} {
			s := testSpec(proto, dst)
			for _, r := range []func() (reply, bool){
				func() (reply, bool) { return s.parseICMP(b, labHop4, time.Now()) },
				func() (reply, bool) { return s.parseTCPAnswer(b, dst, time.Now()) },
				func() (reply, bool) {
					e, ok := parseExtendedErr(b)
					if !ok {
						return reply{}, false
					}
					e.dst, e.payload = dst, b
					return s.matchQueued(e, time.Now())
				},
			} {
				if got, ok := r(); ok && (got.idx < 0 || got.idx >= s.count) {
					t.Fatalf("%s: probe index %d out of range", proto, got.idx)
				}
			}
		}
	})
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

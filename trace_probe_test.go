package main

// Tests of probe building and reply matching: hand-made packets, as routers
// and the kernel's error queue hand them back, tied to their probes or not.

import (
	"encoding/binary"
	"net/netip"
	"strings"
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

func TestTraceUDPPortRoom(t *testing.T) {
	opt := traceOptions{Port: 65500, MaxHops: 30, Queries: 3}.withDefaults()
	if _, err := newProbeSpec(netip.MustParseAddr("127.0.0.1"), opt); err == nil || !strings.Contains(err.Error(), "--tr-port") {
		t.Errorf("err = %v, want a hint at --tr-port", err)
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

package main

// Traceroute probes: how each probe marks itself (payload, echo request,
// SYN), and how an answer read from the network, often an ICMP error
// quoting the probe's headers, is tied back to exactly one probe.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// probePayload fills UDP and ICMP probes, so that a capture says what they are.
var probePayload = []byte("wperf traceroute probe..........")

// replyKind says what an answer means for the trace.
type replyKind uint8

const (
	replyHop         replyKind = iota // time exceeded: a router on the way
	replyReached                      // the destination answered
	replyUnreachable                  // a router or the destination refused
)

// reply is one answer tied to its probe, or a reader's failure (err).
type reply struct {
	idx  int // the probe: (ttl-1)*queries + query
	from netip.Addr
	at   time.Time
	kind replyKind
	flag string // traceroute's mark for replyUnreachable
	err  error
}

// IP protocol numbers and ICMP types that probes and answers use.
const (
	ipProtoICMP   = 1
	ipProtoTCP    = 6
	ipProtoUDP    = 17
	ipProtoICMPv6 = 58

	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10
)

// probeSpec is how the probes of one trace mark themselves, so that each
// answer can be tied to exactly one probe, idx = (ttl-1)*queries + query:
// UDP by destination port port+idx (and our source port), ICMP by echo
// identifier and sequence idx, TCP by ports and sequence number seqBase+idx.
type probeSpec struct {
	proto   string
	dst     netip.Addr
	src     netip.Addr // our address toward dst, for TCP's checksum
	port    uint16     // first UDP destination port, or the TCP one
	srcPort uint16     // our UDP or TCP port; 0 while unknown
	icmpID  uint16
	seqBase uint32
	count   int // probes in the whole trace
}

func newProbeSpec(dst netip.Addr, opt traceOptions) (*probeSpec, error) {
	count := opt.MaxHops * opt.Queries
	if opt.Proto == "udp" && opt.Port+count-1 > 65535 {
		return nil, fmt.Errorf("udp ports %d and up leave no room for %d probes: choose a lower --tr-port", opt.Port, count)
	}
	src, err := sourceAddr(dst)
	if err != nil {
		return nil, err
	}
	return &probeSpec{
		proto:   opt.Proto,
		dst:     dst,
		src:     src,
		port:    uint16(opt.Port),
		icmpID:  uint16(rand.Uint32()),
		seqBase: rand.Uint32(),
		count:   count,
	}, nil
}

// sourceAddr asks the routing table which of our addresses faces dst; a
// connected UDP socket learns it without sending anything.
func sourceAddr(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, defaultUDPPort)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", dst, err)
	}
	defer c.Close()
	return addrOf(c.LocalAddr()), nil
}

func (s *probeSpec) icmpProto() int {
	if s.dst.Is6() {
		return ipProtoICMPv6
	}
	return ipProtoICMP
}

func (s *probeSpec) echoRequestType() icmp.Type {
	if s.dst.Is6() {
		return ipv6.ICMPTypeEchoRequest
	}
	return ipv4.ICMPTypeEcho
}

func (s *probeSpec) echoReplyType() icmp.Type {
	if s.dst.Is6() {
		return ipv6.ICMPTypeEchoReply
	}
	return ipv4.ICMPTypeEchoReply
}

// echoTypeByte is the echo request type as it appears in a quoted header.
func (s *probeSpec) echoTypeByte() byte {
	if s.dst.Is6() {
		return byte(ipv6.ICMPTypeEchoRequest)
	}
	return byte(ipv4.ICMPTypeEcho)
}

// echo builds the ICMP echo request of probe idx.
func (s *probeSpec) echo(idx int) ([]byte, error) {
	m := icmp.Message{Type: s.echoRequestType(), Body: &icmp.Echo{ID: int(s.icmpID), Seq: idx, Data: probePayload}}
	b, err := m.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("build echo request: %w", err)
	}
	return b, nil
}

// syn builds the TCP SYN of probe idx: 20 bytes of header plus an MSS
// option, as some middleboxes drop SYNs that carry none.
func (s *probeSpec) syn(idx int) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint16(b[0:], s.srcPort)
	binary.BigEndian.PutUint16(b[2:], s.port)
	binary.BigEndian.PutUint32(b[4:], s.seqBase+uint32(idx))
	b[12] = 6 << 4 // header length: 6 words
	b[13] = tcpFlagSYN
	binary.BigEndian.PutUint16(b[14:], 65535)
	b[20], b[21] = 2, 4 // MSS option
	binary.BigEndian.PutUint16(b[22:], 1220)
	binary.BigEndian.PutUint16(b[16:], transportChecksum(s.src, s.dst, ipProtoTCP, b))
	return b
}

// transportChecksum is the Internet checksum of a TCP or UDP segment with
// its pseudo-header. The IPv4 and IPv6 pseudo-headers add up the same way:
// both addresses, the protocol and the segment length.
func transportChecksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	sum := uint32(proto) + uint32(len(seg))
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	add(seg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// parseICMP ties an ICMP message read from the network to a probe. The
// message is hostile input: x/net parses the outer header, and the quoted
// datagram is bounds-checked by matchQuoted.
func (s *probeSpec) parseICMP(b []byte, from netip.Addr, at time.Time) (reply, bool) {
	m, err := icmp.ParseMessage(s.icmpProto(), b)
	if err != nil {
		return reply{}, false
	}
	r := reply{from: from, at: at}
	var ok bool
	switch body := m.Body.(type) {
	case *icmp.TimeExceeded:
		// code 1 is a fragment reassembly timeout, not a hop
		r.idx, ok = s.matchQuoted(body.Data)
		ok = ok && m.Code == 0
	case *icmp.DstUnreach:
		r.idx, ok = s.matchQuoted(body.Data)
		r.kind, r.flag = classifyUnreachable(s.dst.Is6(), m.Code)
	case *icmp.Echo:
		r.idx, r.kind = body.Seq, replyReached
		ok = s.proto == "icmp" && m.Type == s.echoReplyType() && body.ID == int(s.icmpID) &&
			body.Seq >= 0 && body.Seq < s.count
	}
	return r, ok && from.IsValid()
}

// parseTCPAnswer ties a TCP segment read from a raw socket to a probe: the
// destination's SYN-ACK (port open) or RST (closed) acknowledges seq+1.
func (s *probeSpec) parseTCPAnswer(b []byte, from netip.Addr, at time.Time) (reply, bool) {
	if s.proto != "tcp" || from != s.dst || len(b) < 20 {
		return reply{}, false
	}
	flags := b[13]
	if binary.BigEndian.Uint16(b[0:]) != s.port || binary.BigEndian.Uint16(b[2:]) != s.srcPort ||
		flags&tcpFlagACK == 0 || flags&(tcpFlagSYN|tcpFlagRST) == 0 {
		return reply{}, false
	}
	d := binary.BigEndian.Uint32(b[8:]) - 1 - s.seqBase
	if d >= uint32(s.count) {
		return reply{}, false
	}
	return reply{idx: int(d), from: from, at: at, kind: replyReached}, true
}

// matchQuoted finds the probe whose header an ICMP error quotes: q starts
// with the original IP header, followed by at least 8 bytes of transport
// header (RFC 792), enough for ports and the TCP sequence number.
func (s *probeSpec) matchQuoted(q []byte) (int, bool) {
	proto, dst, l4, ok := splitQuotedIP(q)
	if !ok || dst != s.dst {
		return 0, false
	}
	return s.matchTransport(proto, l4)
}

// splitQuotedIP reads the protocol and destination of a quoted IPv4 or
// IPv6 header and returns what follows it.
func splitQuotedIP(q []byte) (proto uint8, dst netip.Addr, l4 []byte, ok bool) {
	if len(q) == 0 {
		return 0, netip.Addr{}, nil, false
	}
	switch q[0] >> 4 {
	case 4:
		ihl := int(q[0]&0x0f) * 4
		// a later fragment carries no transport header to match
		if ihl < 20 || len(q) < ihl || binary.BigEndian.Uint16(q[6:])&0x1fff != 0 {
			return 0, netip.Addr{}, nil, false
		}
		return q[9], netip.AddrFrom4([4]byte(q[16:20])), q[ihl:], true
	case 6:
		if len(q) < 40 {
			return 0, netip.Addr{}, nil, false
		}
		return q[6], netip.AddrFrom16([16]byte(q[24:40])), q[40:], true
	}
	return 0, netip.Addr{}, nil, false
}

// matchTransport checks the first 8 bytes of a quoted transport header
// against our probes and returns the probe's index.
func (s *probeSpec) matchTransport(proto uint8, l4 []byte) (int, bool) {
	if len(l4) < 8 {
		return 0, false
	}
	sport, dport := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	switch s.proto {
	case "udp":
		if proto != ipProtoUDP || (s.srcPort != 0 && sport != s.srcPort) {
			return 0, false
		}
		return s.index(int(dport) - int(s.port))
	case "tcp":
		if proto != ipProtoTCP || sport != s.srcPort || dport != s.port {
			return 0, false
		}
		d := binary.BigEndian.Uint32(l4[4:]) - s.seqBase
		if d >= uint32(s.count) {
			return 0, false
		}
		return int(d), true
	case "icmp":
		if int(proto) != s.icmpProto() {
			return 0, false
		}
		return s.matchEcho(l4)
	}
	return 0, false
}

// matchEcho reads a quoted echo request header: type, code, checksum,
// identifier, sequence.
func (s *probeSpec) matchEcho(h []byte) (int, bool) {
	if len(h) < 8 || h[0] != s.echoTypeByte() || binary.BigEndian.Uint16(h[4:]) != s.icmpID {
		return 0, false
	}
	return s.index(int(binary.BigEndian.Uint16(h[6:])))
}

func (s *probeSpec) index(i int) (int, bool) {
	return i, i >= 0 && i < s.count
}

// traceroute's marks for ICMP and ICMPv6 destination-unreachable codes:
// network, host, protocol, fragmentation needed, source route failed,
// administratively prohibited, host precedence violation, precedence cutoff.
var (
	unreachableMarks4 = map[int]string{0: "!N", 1: "!H", 2: "!P", 4: "!F", 5: "!S", 9: "!X", 10: "!X", 13: "!X", 14: "!V", 15: "!C"}
	unreachableMarks6 = map[int]string{0: "!N", 1: "!X", 3: "!H", 5: "!X", 6: "!X"}
)

// classifyUnreachable maps a destination-unreachable code to what it means
// for the trace: "port unreachable" is the destination's answer to a UDP
// probe; anything else ends the trace with traceroute's mark.
func classifyUnreachable(v6 bool, code int) (replyKind, string) {
	port, marks := 3, unreachableMarks4
	if v6 {
		port, marks = 4, unreachableMarks6
	}
	if code == port {
		return replyReached, ""
	}
	if m, ok := marks[code]; ok {
		return replyUnreachable, m
	}
	return replyUnreachable, "!" + strconv.Itoa(code)
}

// Values of Linux's struct sock_extended_err and sockaddr, which the
// IP_RECVERR fallback reads (trace_linux.go). They are parsed here, apart
// from the system calls, so the parsing is tested on any OS.
const (
	eeOriginICMP  = 2
	eeOriginICMP6 = 3
	linuxAFInet   = 2
	linuxAFInet6  = 10
)

// queuedError is one entry of a socket's error queue: an ICMP error that
// the kernel already tied to the socket whose packet caused it.
type queuedError struct {
	origin   uint8
	icmpType uint8
	icmpCode uint8
	offender netip.Addr // who sent the ICMP error
	dst      netip.Addr // where the probe was going
	dstPort  uint16
	payload  []byte // the start of what the probe carried after its UDP header, or its ICMP header
}

// parseExtendedErr reads the IP_RECVERR control message: struct
// sock_extended_err (errno u32, origin, type, code, pad, info u32, data u32)
// followed by the offender's sockaddr, in the host's byte order.
func parseExtendedErr(b []byte) (queuedError, bool) {
	if len(b) < 16 {
		return queuedError{}, false
	}
	e := queuedError{origin: b[4], icmpType: b[5], icmpCode: b[6]}
	sa := b[16:]
	if len(sa) < 2 {
		return e, true
	}
	switch binary.NativeEndian.Uint16(sa) {
	case linuxAFInet:
		if len(sa) >= 8 {
			e.offender = netip.AddrFrom4([4]byte(sa[4:8]))
		}
	case linuxAFInet6:
		if len(sa) >= 24 {
			e.offender = netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
		}
	}
	return e, true
}

// matchQueued ties an error-queue entry to a probe: the kernel already
// matched the quoted header to our socket, and tells the probe's destination
// port (UDP), or hands back the quoted echo header (ICMP).
func (s *probeSpec) matchQueued(e queuedError, at time.Time) (reply, bool) {
	if (e.origin != eeOriginICMP && e.origin != eeOriginICMP6) || !e.offender.IsValid() || e.dst != s.dst {
		return reply{}, false
	}
	r := reply{from: e.offender, at: at}
	var ok bool
	switch s.proto {
	case "udp":
		r.idx, ok = s.index(int(e.dstPort) - int(s.port))
	case "icmp":
		r.idx, ok = s.matchEcho(e.payload)
	}
	if !ok {
		return reply{}, false
	}
	exceeded, unreachable := uint8(ipv4.ICMPTypeTimeExceeded), uint8(ipv4.ICMPTypeDestinationUnreachable)
	if s.dst.Is6() {
		exceeded, unreachable = uint8(ipv6.ICMPTypeTimeExceeded), uint8(ipv6.ICMPTypeDestinationUnreachable)
	}
	switch e.icmpType {
	case exceeded:
		return r, e.icmpCode == 0
	case unreachable:
		r.kind, r.flag = classifyUnreachable(s.dst.Is6(), int(e.icmpCode))
		return r, true
	}
	return reply{}, false
}

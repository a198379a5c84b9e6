package main

// Traceroute sockets: the prober that sends probes on raw ICMP and TCP
// sockets or an ordinary UDP one and reads the answers, with the fallback
// to what a platform allows without privileges.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	// readPoll is the read deadline of the reply readers, which see the end
	// of a trace at the latest this long after it (closing their sockets
	// usually wakes them at once), and the write deadline of a probe.
	readPoll = time.Second
	// maxSendAttempts bounds the writes of one probe that fail on errors
	// left by earlier answers (see socketProber.send).
	maxSendAttempts = 8
	// maxReadFailures ends a trace whose socket keeps failing, instead of
	// spinning; single failures are normal (see readPackets).
	maxReadFailures = 100
)

// addrOf is the IP of a socket address, without zone or IPv4 mapping.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// openProber opens raw sockets, and falls back to what the platform allows
// without privileges when that is refused (trace_linux.go, trace_other.go).
func openProber(s *probeSpec, out chan<- reply) (prober, error) {
	p, err := openRawProber(s, out)
	if err == nil {
		return p, nil
	}
	return openFallbackProber(s, out, err)
}

// socketProber sends probes on one socket and runs the readers that turn
// what comes back into replies.
type socketProber struct {
	conn   net.PacketConn
	setTTL func(int) error
	build  func(idx int) ([]byte, net.Addr, error)
	// settle clears a pending socket error by reading the errors behind
	// it; nil where the failed write itself clears it (see send).
	settle func()

	out     chan<- reply
	done    chan struct{}
	wg      sync.WaitGroup
	closers []io.Closer
}

func newSocketProber(out chan<- reply) *socketProber {
	return &socketProber{out: out, done: make(chan struct{})}
}

// send sends probe idx with the given TTL. Setting the TTL and writing are
// not atomic, which is fine: one goroutine sends.
func (p *socketProber) send(idx, ttl int) (time.Time, error) {
	b, to, err := p.build(idx)
	if err != nil {
		return time.Time{}, err
	}
	if err := p.setTTL(ttl); err != nil {
		return time.Time{}, fmt.Errorf("set ttl %d: %w", ttl, err)
	}
	if err := p.conn.SetWriteDeadline(time.Now().Add(readPoll)); err != nil {
		return time.Time{}, fmt.Errorf("set write deadline: %w", err)
	}
	// A socket that was told about an ICMP error (a hard one on a raw
	// socket, any with IP_RECVERR) fails its next write with that error, as
	// a pending socket error, and sends nothing. The failed write clears
	// it; with IP_RECVERR it comes back while errors are queued, so settle
	// reads them first. A real local failure fails every attempt.
	var sent time.Time
	for attempt := 1; ; attempt++ {
		sent = time.Now()
		_, err = p.conn.WriteTo(b, to)
		if err == nil || attempt == maxSendAttempts || !pendingSocketError(err) {
			break
		}
		if p.settle != nil {
			p.settle()
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("write probe: %w", err)
	}
	return sent, nil
}

// pendingSocketError tells the errors that an earlier ICMP error leaves on
// a socket for its next call.
func pendingSocketError(err error) bool {
	for _, e := range []error{syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ECONNREFUSED, syscall.EPROTO, syscall.EMSGSIZE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// close stops the readers and waits for them.
func (p *socketProber) close() {
	close(p.done)
	for _, c := range p.closers {
		c.Close()
	}
	p.wg.Wait()
}

// offer passes a reply on without waiting, for readers that must not
// block. The channel has room for two answers to every probe, so it only
// fills up with duplicates, which the trace ignores anyway.
func (p *socketProber) offer(r reply) {
	select {
	case p.out <- r:
	default:
	}
}

// deliver passes a reply on unless the prober is closing.
func (p *socketProber) deliver(r reply) bool {
	select {
	case p.out <- r:
		return true
	case <-p.done:
		return false
	}
}

func (p *socketProber) stopped() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// readPackets reads from c until the prober closes, passing on what parse
// ties to a probe.
func (p *socketProber) readPackets(c net.PacketConn, parse func([]byte, netip.Addr, time.Time) (reply, bool)) {
	buf := make([]byte, 4096)
	failures := 0
	for !p.stopped() {
		if err := c.SetReadDeadline(time.Now().Add(readPoll)); err != nil {
			p.deliver(reply{err: fmt.Errorf("set read deadline: %w", err)})
			return
		}
		n, from, err := c.ReadFrom(buf)
		at := time.Now()
		switch {
		case err == nil:
			failures = 0
			if r, ok := parse(buf[:n], addrOf(from), at); ok && !p.deliver(r) {
				return
			}
		case errors.Is(err, os.ErrDeadlineExceeded) || p.stopped():
		default:
			// A raw socket reports a hard ICMP error about its own packets
			// once, as a read error; a socket that keeps failing is broken.
			if failures++; failures > maxReadFailures {
				p.deliver(reply{err: fmt.Errorf("read replies: %w", err)})
				return
			}
		}
	}
}

// rawTCPAnswers says whether raw sockets see the destination's TCP
// answers: Linux passes every segment to them, BSDs and Windows do not.
const rawTCPAnswers = runtime.GOOS == "linux"

// openRawProber probes through raw sockets (root or CAP_NET_RAW): ICMP
// errors and echo replies arrive on a raw ICMP socket, and TCP answers on a
// raw TCP socket.
func openRawProber(s *probeSpec, out chan<- reply) (_ *socketProber, err error) {
	if s.proto == "tcp" && !rawTCPAnswers {
		return nil, errors.New("tcp probes need Linux: this system does not pass TCP answers to raw sockets")
	}
	p := newSocketProber(out)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	network := "ip4:icmp"
	if s.dst.Is6() {
		network = "ip6:ipv6-icmp"
	}
	ic, err := icmp.ListenPacket(network, s.src.String())
	if err != nil {
		return nil, fmt.Errorf("open raw ICMP socket: %w", err)
	}
	p.closers = append(p.closers, ic)
	acceptOnlyAnswers(ic)
	switch s.proto {
	case "icmp":
		p.useRawEcho(s, ic)
	case "udp":
		err = p.useUDP(s)
	case "tcp":
		err = p.useRawTCP(s)
	default:
		err = fmt.Errorf("unknown probe protocol %q", s.proto)
	}
	if err != nil {
		return nil, err
	}
	p.wg.Go(func() { p.readPackets(ic, s.parseICMP) })
	return p, nil
}

// acceptOnlyAnswers narrows a raw ICMPv6 socket to the messages a trace
// needs, sparing it neighbour discovery and the like. It is an optimisation
// only (parseICMP drops the rest anyway), so a system without ICMPv6 filters
// is no failure.
func acceptOnlyAnswers(ic *icmp.PacketConn) {
	p6 := ic.IPv6PacketConn()
	if p6 == nil {
		return
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	for _, t := range []ipv6.ICMPType{ipv6.ICMPTypeTimeExceeded, ipv6.ICMPTypeDestinationUnreachable, ipv6.ICMPTypeEchoReply} {
		f.Accept(t)
	}
	_ = p6.SetICMPFilter(&f)
}

// useRawEcho sends echo requests on the raw ICMP socket itself.
func (p *socketProber) useRawEcho(s *probeSpec, ic *icmp.PacketConn) {
	p.conn, p.setTTL = ic, icmpTTLSetter(ic)
	to := &net.IPAddr{IP: s.dst.AsSlice()}
	p.build = func(idx int) ([]byte, net.Addr, error) {
		b, err := s.echo(idx)
		return b, to, err
	}
}

// icmpTTLSetter sets the TTL (hop limit) of an ICMP socket.
func icmpTTLSetter(ic *icmp.PacketConn) func(int) error {
	if p6 := ic.IPv6PacketConn(); p6 != nil {
		return p6.SetHopLimit
	}
	return ic.IPv4PacketConn().SetTTL
}

// ttlSetter sets the TTL (hop limit) of a UDP or raw IP socket.
func ttlSetter(c net.PacketConn, v6 bool) func(int) error {
	if v6 {
		return ipv6.NewPacketConn(c).SetHopLimit
	}
	return ipv4.NewPacketConn(c).SetTTL
}

// useUDP sends UDP probes from an ordinary socket; its port marks them.
func (p *socketProber) useUDP(s *probeSpec) error {
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.src, 0)))
	if err != nil {
		return fmt.Errorf("open UDP socket: %w", err)
	}
	p.closers = append(p.closers, uc)
	s.srcPort = uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	p.conn, p.setTTL = uc, ttlSetter(uc, s.dst.Is6())
	p.build = func(idx int) ([]byte, net.Addr, error) {
		return probePayload, net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.dst, s.port+uint16(idx))), nil
	}
	return nil
}

// useRawTCP sends SYNs on a raw TCP socket, which also sees the answers.
// A listener holds our source port, so that no connection of this host
// picks it while the trace runs; the kernel resets the SYN-ACKs it gets.
func (p *socketProber) useRawTCP(s *probeSpec) error {
	hold, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.src, 0)))
	if err != nil {
		return fmt.Errorf("reserve a TCP port: %w", err)
	}
	p.closers = append(p.closers, hold)
	s.srcPort = uint16(hold.Addr().(*net.TCPAddr).Port)
	network := "ip4:tcp"
	if s.dst.Is6() {
		network = "ip6:tcp"
	}
	tc, err := net.ListenPacket(network, s.src.String())
	if err != nil {
		return fmt.Errorf("open raw TCP socket: %w", err)
	}
	p.closers = append(p.closers, tc)
	p.conn, p.setTTL = tc, ttlSetter(tc, s.dst.Is6())
	to := &net.IPAddr{IP: s.dst.AsSlice()}
	p.build = func(idx int) ([]byte, net.Addr, error) { return s.syn(idx), to, nil }
	p.wg.Go(func() { p.readPackets(tc, s.parseTCPAnswer) })
	return nil
}

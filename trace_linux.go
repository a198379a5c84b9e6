//go:build linux

package main

// Probing without privileges, Linux only: ordinary datagram sockets with
// IP_RECVERR (IPV6_RECVERR). The kernel matches each ICMP error to the
// socket whose packet it quotes and queues it there; recvmsg with
// MSG_ERRQUEUE hands back the ICMP type and code, the router's address
// (SO_EE_OFFENDER) and the probe's destination. UDP probes need nothing
// more; ICMP probes use an ICMP datagram ("ping") socket, which the kernel
// allows to the groups in net.ipv4.ping_group_range.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
)

// queuePollGap paces reading when the poller cannot wait on a socket.
const queuePollGap = 5 * time.Millisecond

// setcapHint is the command that lets this binary open raw sockets.
func setcapHint() string {
	exe, err := os.Executable()
	if err != nil {
		exe = "wperf"
	}
	return "sudo setcap cap_net_raw+ep " + exe
}

func errTCPNeedsRaw() error {
	return fmt.Errorf("tcp probes need raw sockets: run wperf as root (sudo) or grant it CAP_NET_RAW (%s); "+
		"udp and icmp probes work without", setcapHint())
}

func errPingDenied() error {
	return fmt.Errorf("icmp probes without raw sockets need an ICMP datagram socket, which "+
		"net.ipv4.ping_group_range does not allow for this user's groups: widen it "+
		"(sudo sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"), run wperf as root, "+
		"grant it CAP_NET_RAW (%s), or use --tr-proto udp", setcapHint())
}

// openFallbackProber is used when raw sockets are refused: UDP and ICMP
// probes go on datagram sockets with IP_RECVERR, TCP probes cannot.
func openFallbackProber(s *probeSpec, out chan<- reply, rawErr error) (prober, error) {
	if !errors.Is(rawErr, os.ErrPermission) {
		return nil, rawErr
	}
	switch s.proto {
	case "udp":
		return openQueueProber(s, out, false)
	case "icmp":
		return openQueueProber(s, out, true)
	}
	return nil, errTCPNeedsRaw()
}

// openQueueProber opens a UDP socket, or an ICMP datagram socket when echo
// is set, with IP_RECVERR, and starts its reader.
func openQueueProber(s *probeSpec, out chan<- reply, echo bool) (_ prober, err error) {
	p := newSocketProber(out)
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	var under net.PacketConn // the socket under x/net's wrapper
	if echo {
		under, err = p.usePingSocket(s)
	} else {
		err = p.useUDP(s)
		under = p.conn
	}
	if err != nil {
		return nil, err
	}
	sc, ok := under.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T gives no access to its socket", under)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("reach the socket: %w", err)
	}
	if err := setRecvErr(rc, s.dst.Is6()); err != nil {
		return nil, err
	}
	q := &queueReader{p: p, spec: s, conn: under, raw: rc, echo: echo}
	p.settle = q.settle
	p.wg.Go(q.loop)
	return p, nil
}

// usePingSocket opens an ICMP datagram socket. The kernel sets the echo
// identifier to the socket's own number, so that becomes ours.
func (p *socketProber) usePingSocket(s *probeSpec) (net.PacketConn, error) {
	network := "udp4"
	if s.dst.Is6() {
		network = "udp6"
	}
	ic, err := icmp.ListenPacket(network, s.src.String())
	if errors.Is(err, os.ErrPermission) {
		return nil, errPingDenied()
	}
	if err != nil {
		return nil, fmt.Errorf("open ICMP datagram socket: %w", err)
	}
	p.closers = append(p.closers, ic)
	s.icmpID = uint16(addrPort(ic.LocalAddr()).Port())
	p.conn, p.setTTL = ic, icmpTTLSetter(ic)
	to := &net.UDPAddr{IP: s.dst.AsSlice()}
	p.build = func(idx int) ([]byte, net.Addr, error) {
		b, err := s.echo(idx)
		return b, to, err
	}
	if p6 := ic.IPv6PacketConn(); p6 != nil {
		return p6.PacketConn, nil
	}
	return ic.IPv4PacketConn().PacketConn, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	return netip.AddrPort{}
}

// setRecvErr turns on IP_RECVERR (IPV6_RECVERR), which makes the kernel
// queue every ICMP error on the socket, not only the fatal ones.
func setRecvErr(rc syscall.RawConn, v6 bool) error {
	level, opt := syscall.SOL_IP, syscall.IP_RECVERR
	if v6 {
		level, opt = syscall.SOL_IPV6, syscall.IPV6_RECVERR
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), level, opt, 1) }); err != nil {
		return fmt.Errorf("reach the socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set IP_RECVERR: %w", serr)
	}
	return nil
}

// queueReader reads a socket's error queue and, for a ping socket, its echo
// replies, through the runtime's poller so a read deadline applies. The
// sender reads the queue too (settle); mu keeps the two apart.
type queueReader struct {
	p    *socketProber
	spec *probeSpec
	conn net.PacketConn
	raw  syscall.RawConn
	echo bool

	mu  sync.Mutex
	buf [4096]byte
	oob [512]byte
	err error // why reading stopped for good
}

// settle empties the error queue. Linux sets the socket's pending error
// again after each entry it dequeues while more are queued, and clears it
// with the last one, so a write right after this goes out.
func (q *queueReader) settle() {
	q.mu.Lock()
	defer q.mu.Unlock()
	_ = q.raw.Control(func(fd uintptr) { q.drainQueue(int(fd), syscall.MSG_ERRQUEUE) })
}

func (q *queueReader) loop() {
	for !q.p.stopped() {
		if err := q.conn.SetReadDeadline(time.Now().Add(readPoll)); err != nil {
			q.p.deliver(reply{err: fmt.Errorf("set read deadline: %w", err)})
			return
		}
		// drain returns false to make Read wait until the socket has more
		err := q.raw.Read(func(fd uintptr) bool { return !q.drain(int(fd)) })
		switch {
		case q.p.stopped():
			return
		case q.failed() != nil:
			q.p.deliver(reply{err: q.failed()})
			return
		case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
		default:
			// The runtime gives up waiting on a socket whose only event was
			// an error (it marks it not pollable); read without waiting.
			_ = q.raw.Control(func(fd uintptr) { q.drain(int(fd)) })
			time.Sleep(queuePollGap)
		}
	}
}

// readResult is what one read of the socket gave.
type readResult uint8

const (
	readEmpty readResult = iota // nothing is queued
	readMore                    // one message read; there may be more
	readRetry                   // the read failed once, as a pending socket error does
	readStop                    // the socket failed (q.err)
)

func (q *queueReader) failed() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// drain reads all that is queued. It reports true when reading must stop.
func (q *queueReader) drain(fd int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.drainQueue(fd, syscall.MSG_ERRQUEUE) {
		return true
	}
	return q.echo && q.drainQueue(fd, 0)
}

// drainQueue reads the error queue (flags MSG_ERRQUEUE) or the normal one
// (0) until it is empty. A pending socket error fails a normal read once; a
// few in a row happen when errors keep arriving, more mean trouble.
func (q *queueReader) drainQueue(fd, flags int) bool {
	for retries := 0; retries < 8; {
		switch q.readOne(fd, flags) {
		case readEmpty:
			return false
		case readRetry:
			retries++
		case readStop:
			return true
		}
	}
	return false
}

// readOne reads one message and passes on the reply it holds, if any.
func (q *queueReader) readOne(fd, flags int) readResult {
	n, oobn, _, from, err := syscall.Recvmsg(fd, q.buf[:], q.oob[:], flags|syscall.MSG_DONTWAIT)
	at := time.Now()
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		return readEmpty
	case err == syscall.EINTR || (err != nil && flags == 0):
		return readRetry
	case err != nil:
		q.err = fmt.Errorf("read error queue: %w", err)
		return readStop
	}
	var r reply
	var ok bool
	if flags&syscall.MSG_ERRQUEUE != 0 {
		r, ok = q.queued(q.oob[:oobn], from, q.buf[:n], at)
	} else {
		src, _ := sockaddrAddr(from)
		r, ok = q.spec.parseICMP(q.buf[:n], src, at)
	}
	if ok {
		// never wait here: the sender may be reading too (settle)
		q.p.offer(r)
	}
	return readMore
}

// queued turns one error-queue message into a reply.
func (q *queueReader) queued(oob []byte, from syscall.Sockaddr, payload []byte, at time.Time) (reply, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return reply{}, false
	}
	for _, m := range msgs {
		if !(m.Header.Level == syscall.SOL_IP && m.Header.Type == syscall.IP_RECVERR) &&
			!(m.Header.Level == syscall.SOL_IPV6 && m.Header.Type == syscall.IPV6_RECVERR) {
			continue
		}
		e, ok := parseExtendedErr(m.Data)
		if !ok {
			continue
		}
		e.dst, e.dstPort = sockaddrAddr(from)
		e.payload = payload
		return q.spec.matchQueued(e, at)
	}
	return reply{}, false
}

// sockaddrAddr is the address and port of a socket address.
func sockaddrAddr(sa syscall.Sockaddr) (netip.Addr, uint16) {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), uint16(sa.Port)
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)
	}
	return netip.Addr{}, 0
}

package main

// udp_linux.go is the Linux side of UDP batch I/O and of the WebSocket
// drop rule: recvmmsg through the syscall package (x/net's ReadBatch
// builds a *net.UDPAddr per datagram, two allocations each), sendmmsg
// through x/net's WriteBatch (allocation-free), UDP GSO, and the TCP
// send queue's unsent bytes.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
)

// Kernel constants the syscall package lacks on some architectures.
const (
	solUDP      = 17     // SOL_UDP
	udpSegment  = 103    // UDP_SEGMENT: GSO segment size, Linux 4.18+
	siocOUTQNSD = 0x894B // bytes in a TCP socket's queue not yet sent
	maxGSOSegs  = 64     // UDP_MAX_SEGMENTS
)

// udpUseGSO turns UDP segmentation offload on for senders that can use
// it; tests flip it to compare. See BenchmarkUDPLoopback for why it is on.
var udpUseGSO = true

// ---- receiving ----

// mmsghdr is struct mmsghdr: Go's alignment rules pad it as C does on
// every Linux architecture (64 bytes on 64-bit, 32 on 32-bit).
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// udpReadBatch receives up to len(hs) datagrams per system call into
// buffers made once, and remembers each one's source address.
type udpReadBatch struct {
	rc     syscall.RawConn
	bufs   [][]byte
	hs     []mmsghdr
	iovs   []syscall.Iovec
	names  []syscall.RawSockaddrInet6
	n      int
	errno  syscall.Errno
	recvFn func(fd uintptr) bool // bound once: a fresh closure per read would allocate
}

func newUDPReadBatch(conn *net.UDPConn, count, size int) (*udpReadBatch, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &udpReadBatch{
		rc:    rc,
		bufs:  make([][]byte, count),
		hs:    make([]mmsghdr, count),
		iovs:  make([]syscall.Iovec, count),
		names: make([]syscall.RawSockaddrInet6, count),
	}
	for i := range r.hs {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		h := &r.hs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.Iovlen = 1
	}
	r.recvFn = r.recv
	return r, nil
}

// read waits for datagrams and returns how many arrived.
func (r *udpReadBatch) read() (int, error) {
	for i := range r.hs {
		r.hs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
	}
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.recvFn); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, r.errno
	}
	return r.n, nil
}

// recv runs one recvmmsg; false asks the runtime to wait for the socket
// to become readable. MSG_TRUNC makes each length the datagram's real
// size, so a datagram longer than its buffer still counts whole.
func (r *udpReadBatch) recv(fd uintptr) bool {
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])),
			uintptr(len(r.hs)), syscall.MSG_TRUNC, 0, 0)
		switch errno {
		case 0:
			r.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.errno = errno
		return true
	}
}

// datagram returns the i-th datagram of the last read (cut to its
// buffer), its full length, and its source.
func (r *udpReadBatch) datagram(i int) (data []byte, size int, from netip.AddrPort) {
	size = int(r.hs[i].n)
	data = r.bufs[i][:min(size, len(r.bufs[i]))]
	return data, size, sockaddrPort(&r.names[i], r.hs[i].hdr.Namelen)
}

// sockaddrPort reads a kernel sockaddr without allocating; a link-local
// scope becomes a numeric zone, which the net package understands.
func sockaddrPort(sa *syscall.RawSockaddrInet6, namelen uint32) netip.AddrPort {
	b := (*[syscall.SizeofSockaddrInet6]byte)(unsafe.Pointer(sa))
	port := binary.BigEndian.Uint16(b[2:4])
	switch {
	case sa.Family == syscall.AF_INET && namelen >= syscall.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case sa.Family == syscall.AF_INET6 && namelen >= syscall.SizeofSockaddrInet6:
		a := netip.AddrFrom16([16]byte(b[8:24]))
		if sa.Scope_id != 0 && a.IsLinkLocalUnicast() {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// ---- sending ----

// udpWriteBatch sends runs of equal-size datagrams laid back to back in
// one buffer: with GSO, up to 64 of them leave as one message that the
// kernel (or the NIC) cuts at the segment size; otherwise one message
// each. Either way one sendmmsg carries the whole run.
type udpWriteBatch struct {
	pc      *ipv4.PacketConn // its WriteBatch is sendmmsg for IPv6 sockets too
	msgs    []ipv4.Message
	bufs    [][1][]byte // msgs' Buffers, so setting them allocates nothing
	gso     bool
	gsoSize int    // segment size gsoCtl was built for
	gsoCtl  []byte // the UDP_SEGMENT control message
}

func newUDPWriteBatch(conn *net.UDPConn, maxDatagrams int) *udpWriteBatch {
	w := &udpWriteBatch{
		pc:   ipv4.NewPacketConn(conn),
		msgs: make([]ipv4.Message, maxDatagrams),
		bufs: make([][1][]byte, maxDatagrams),
		gso:  udpUseGSO,
	}
	for i := range w.msgs {
		w.msgs[i].Buffers = w.bufs[i][:]
	}
	return w
}

// write sends count datagrams of size bytes from buf to dst (nil on a
// connected socket) and returns how many left.
func (w *udpWriteBatch) write(buf []byte, size, count int, dst *net.UDPAddr) (int, error) {
	perMsg := 1
	if w.gso && count > 1 {
		perMsg = min(maxGSOSegs, maxDatagram/size, count)
	}
	sent, err := w.writeRuns(buf, size, count, perMsg, dst)
	if err != nil && perMsg > 1 && sent == 0 && gsoRefused(err) {
		// This kernel, route or device cannot segment: stop trying.
		w.gso = false
		return w.writeRuns(buf, size, count, 1, dst)
	}
	return sent, err
}

// writeRuns sends the datagrams perMsg to a message.
func (w *udpWriteBatch) writeRuns(buf []byte, size, count, perMsg int, dst *net.UDPAddr) (int, error) {
	var oob []byte
	if perMsg > 1 {
		oob = w.segmentControl(size)
	}
	m := 0
	for off := 0; off < count; off += perMsg {
		k := min(perMsg, count-off)
		msg := &w.msgs[m]
		msg.Buffers[0] = buf[off*size : (off+k)*size]
		msg.OOB = nil
		if k > 1 {
			msg.OOB = oob
		}
		msg.Addr = nil
		if dst != nil {
			msg.Addr = dst
		}
		m++
	}
	sent := 0
	for done := 0; done < m; {
		n, err := w.pc.WriteBatch(w.msgs[done:m], 0)
		for _, msg := range w.msgs[done : done+n] {
			sent += len(msg.Buffers[0]) / size
		}
		done += n
		if errors.Is(err, syscall.ENOBUFS) {
			return sent, nil // the device queue is full: the sender was too fast, nothing was lost
		}
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// segmentControl is the UDP_SEGMENT control message for size.
func (w *udpWriteBatch) segmentControl(size int) []byte {
	if w.gsoSize != size || w.gsoCtl == nil {
		b := make([]byte, syscall.CmsgSpace(2))
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = solUDP, udpSegment
		h.SetLen(syscall.CmsgLen(2))
		binary.NativeEndian.PutUint16(b[syscall.CmsgLen(0):], uint16(size))
		w.gsoSize, w.gsoCtl = size, b
	}
	return w.gsoCtl
}

// gsoRefused tells the errors of a kernel or path without UDP GSO: an
// old kernel or a segment above the route's MTU (EINVAL), a device
// without checksum offload (EIO), no such option (ENOPROTOOPT).
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EMSGSIZE)
}

// ---- TCP send queue ----

// sendQueueProbe reads how many bytes wait unsent in a TCP socket.
type sendQueueProbe struct {
	rc     syscall.RawConn
	unsent int32
	errno  syscall.Errno
	ioctl  func(fd uintptr) // bound once, so probing allocates nothing
}

func newSendQueueProbe(nc net.Conn) (*sendQueueProbe, bool) {
	// An interface, not *net.TCPConn: the server wraps its connections.
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	p := &sendQueueProbe{rc: rc}
	p.ioctl = func(fd uintptr) {
		_, _, p.errno = syscall.Syscall(syscall.SYS_IOCTL, fd, siocOUTQNSD, uintptr(unsafe.Pointer(&p.unsent)))
	}
	_, ok = p.queued()
	return p, ok
}

// queued is the socket's unsent byte count, if the kernel tells.
func (p *sendQueueProbe) queued() (int, bool) {
	if p == nil {
		return 0, false
	}
	if err := p.rc.Control(p.ioctl); err != nil || p.errno != 0 {
		return 0, false
	}
	return int(p.unsent), true
}

// sendQueueRoom reports how many bytes wait unsent in nc's TCP send
// queue (SIOCOUTQNSD); ok is false where the kernel cannot say.
func sendQueueRoom(nc net.Conn) (unsent int, ok bool) {
	p, ok := newSendQueueProbe(nc)
	if !ok {
		return 0, false
	}
	return p.queued()
}

package main

// sys_linux.go holds the socket options and kernel counters that only
// Linux offers through the standard syscall package: TCP_INFO, the
// congestion algorithm, MSS, the process's CPU time, and iperf3's
// socket marks, pacing cap, IPv6 flow label and CPU affinity.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// TCP_CONGESTION and TCP_NOTSENT_LOWAT are missing from syscall on some
// architectures.
const (
	tcpCongestion   = 13
	tcpNotSentLowat = 25
	tcpUserTimeout  = 18
	soMaxPacingRate = 47
)

// preConnect applies the options that only work before the handshake:
// buffer sizes (they fix the window scale), the MSS and the congestion
// algorithm. It runs as a net.Dialer's Control function.
func (o sockOpts) preConnect(network, address string, rc syscall.RawConn) error {
	var opErr error
	err := rc.Control(func(fd uintptr) {
		opErr = o.setFD(int(fd), true)
		if opErr == nil && o.flowLabel > 0 {
			opErr = connectWithFlowLabel(int(fd), network, address, o.flowLabel, o.local)
		}
	})
	if err != nil {
		return err
	}
	return opErr
}

func (o sockOpts) setFD(fd int, beforeConnect bool) error {
	if err := o.marks.setFD(fd, beforeConnect); err != nil {
		return err
	}
	if o.pacingRate > 0 {
		bps := int(uint32(min(o.pacingRate, kernelPacingCeiling)))
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soMaxPacingRate, bps); err != nil {
			return fmt.Errorf("set SO_MAX_PACING_RATE: %w", err)
		}
	}
	if o.window > 0 {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, o.window); err != nil {
			return fmt.Errorf("set send buffer: %w", err)
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.window); err != nil {
			return fmt.Errorf("set receive buffer: %w", err)
		}
	}
	if o.mss > 0 && beforeConnect {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, o.mss); err != nil {
			return fmt.Errorf("set MSS %d: %w", o.mss, err)
		}
	}
	if o.congestion != "" {
		if err := syscall.SetsockoptString(fd, syscall.IPPROTO_TCP, tcpCongestion, o.congestion); err != nil {
			return fmt.Errorf("congestion control %q is not available here: %w", o.congestion, err)
		}
	}
	if o.notSentLowat > 0 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpNotSentLowat, o.notSentLowat); err != nil {
			return fmt.Errorf("set TCP_NOTSENT_LOWAT: %w", err)
		}
	}
	return nil
}

// control sets the marks on a socket before it connects, as a net.Dialer's
// Control function.
func (m socketMarks) control(_, _ string, rc syscall.RawConn) error {
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = m.setFD(int(fd), true) }); err != nil {
		return err
	}
	return opErr
}

// afterDial has nothing left to do on Linux: control set every mark.
func (socketMarks) afterDial(net.Conn) error { return nil }

// setFD sets the marks. The TOS byte goes in IP_TOS, or for an IPv6
// socket in its traffic class (RFC 8200 section 7), and in IP_TOS too
// for the IPv4 peers a dual-stack socket may reach.
func (m socketMarks) setFD(fd int, beforeConnect bool) error {
	if m.bindDev != "" && beforeConnect {
		if err := syscall.BindToDevice(fd, m.bindDev); err != nil {
			return fmt.Errorf("bind to interface %s: %w", m.bindDev, err)
		}
	}
	if m.reuseAddr && beforeConnect {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("set SO_REUSEADDR: %w", err)
		}
	}
	if m.tos > 0 {
		if err := setTOSByte(fd, m.tos); err != nil {
			return err
		}
	}
	if m.userTimeout > 0 {
		if typ, _ := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE); typ == syscall.SOCK_STREAM {
			if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpUserTimeout, m.userTimeout); err != nil {
				return fmt.Errorf("set TCP_USER_TIMEOUT: %w", err)
			}
		}
	}
	return nil
}

func setTOSByte(fd, tos int) error {
	domain, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("read the socket's family: %w", err)
	}
	v4err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_TOS, tos)
	if domain != syscall.AF_INET6 {
		if v4err != nil {
			return fmt.Errorf("set IP_TOS: %w", v4err)
		}
		return nil
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_TCLASS, tos); err != nil {
		return fmt.Errorf("set IPV6_TCLASS: %w", err)
	}
	return nil
}

// pinAffinity runs every thread of the process on cpu (-A); -1 leaves
// them be. sched_setaffinity(2) moves one thread, so each of /proc's
// tasks is moved; threads started later inherit the mask of the
// thread that starts them.
func pinAffinity(cpu int) error {
	if cpu < 0 {
		return nil
	}
	var mask [maxCPU / 64]uint64
	mask[cpu/64] = 1 << (cpu % 64)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
		if errno != 0 && errno != syscall.ESRCH {
			return fmt.Errorf("sched_setaffinity: %w", errno)
		}
	}
	return nil
}

// applyAccepted applies the client's requested options to a socket the
// server accepted.
func (o sockOpts) applyAccepted(nc net.Conn) error {
	if err := o.applyPortable(nc); err != nil {
		return err
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = o.setFD(int(fd), false) }); err != nil {
		return err
	}
	return opErr
}

// getsockopt reads a socket option into b and returns how many bytes the
// kernel filled.
func getsockopt(nc net.Conn, level, name int, b []byte) int {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := uint32(len(b))
	var errno syscall.Errno
	rc.Control(func(fd uintptr) {
		errno = rawGetsockopt(fd, uintptr(level), uintptr(name), unsafe.Pointer(&b[0]), &n)
	})
	if errno != 0 {
		return 0
	}
	return int(n)
}

// Offsets into the kernel's struct tcp_info (include/uapi/linux/tcp.h),
// which only ever grows at its end.
const (
	tiSndMSS       = 16
	tiPMTU         = 60
	tiRTT          = 68
	tiRTTVar       = 72
	tiSndCwnd      = 80
	tiTotalRetrans = 100
	tiSndWnd       = 228
)

// readTCPInfo samples TCP_INFO. Fields the running kernel does not have
// stay zero.
func readTCPInfo(nc net.Conn) (tcpRaw, bool) {
	var b [256]byte
	n := getsockopt(nc, syscall.IPPROTO_TCP, syscall.TCP_INFO, b[:])
	if n < tiTotalRetrans+4 {
		return tcpRaw{}, false
	}
	u32 := func(off int) int64 {
		if off+4 > n {
			return 0
		}
		return int64(binary.NativeEndian.Uint32(b[off:]))
	}
	return tcpRaw{
		totalRetrans: u32(tiTotalRetrans),
		sndCwnd:      u32(tiSndCwnd) * u32(tiSndMSS),
		sndWnd:       u32(tiSndWnd),
		rtt:          u32(tiRTT),
		rttVar:       u32(tiRTTVar),
		pmtu:         u32(tiPMTU),
	}, true
}

// congestionOf names the socket's congestion control algorithm.
func congestionOf(nc net.Conn) string {
	var b [16]byte
	n := getsockopt(nc, syscall.IPPROTO_TCP, tcpCongestion, b[:])
	for i := 0; i < n; i++ {
		if b[i] == 0 {
			n = i
		}
	}
	return string(b[:n])
}

// processCPU is the CPU time this process has used so far.
func processCPU() (user, system time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// tcpInfoAvailable says whether senders can report Retr and Cwnd.
const tcpInfoAvailable = true

// socketFacts reads iperf3's start.* socket numbers from a stream socket.
func socketFacts(nc net.Conn) socketInfo {
	var b [4]byte
	get := func(level, name int) int {
		if getsockopt(nc, level, name, b[:]) < 4 {
			return 0
		}
		return int(binary.NativeEndian.Uint32(b[:]))
	}
	return socketInfo{
		mss:    get(syscall.IPPROTO_TCP, syscall.TCP_MAXSEG),
		sndbuf: get(syscall.SOL_SOCKET, syscall.SO_SNDBUF),
		rcvbuf: get(syscall.SOL_SOCKET, syscall.SO_RCVBUF),
	}
}

// systemInfo is uname's answer, as iperf3 reports it.
func systemInfo() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "Linux"
	}
	return strings.Join([]string{cString(u.Sysname[:]), cString(u.Nodename[:]), cString(u.Release[:]),
		cString(u.Version[:]), cString(u.Machine[:])}, " ")
}

// cString reads a NUL-terminated field; its element type is int8 or uint8
// depending on the architecture.
func cString[T int8 | uint8](f []T) string {
	b := make([]byte, 0, len(f))
	for _, c := range f {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// bufferSizes reads SO_SNDBUF and SO_RCVBUF where iperf3 reads them:
// after the socket options, before connect, while they still say what
// the options and the system's defaults give.
func bufferSizes(rc syscall.RawConn) (snd, rcv int) {
	rc.Control(func(fd uintptr) {
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	})
	return snd, rcv
}

// The flow label manager's ABI (include/uapi/linux/in6.h).
const (
	ipv6FlowLabelMgr = 32
	ipv6FlowInfoSend = 33
	ipv6FLAGet       = 0
	ipv6FLFCreate    = 1
	ipv6FLSAny       = 255
)

// errFlowLabelV4 is -L on a connection that turned out to be IPv4.
var errFlowLabelV4 = errors.New("-L/--flowlabel needs an IPv6 connection (try -6)")

// connectWithFlowLabel starts the connection itself, so that its
// destination carries the label: Linux takes a TCP socket's flow label
// from connect's sin6_flowinfo once the label is leased to the socket
// (IPV6_FLOWLABEL_MGR) and IPV6_FLOWINFO_SEND is on (RFC 6437 labels;
// ipv6(7)). Go's connect, which follows, finds the connection under way
// and waits for it as for its own.
func connectWithFlowLabel(fd int, network, address string, label int, local *net.TCPAddr) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || network == "tcp4" || ap.Addr().Unmap().Is4() {
		return errFlowLabelV4
	}
	if local != nil {
		sa := &syscall.SockaddrInet6{Port: local.Port}
		copy(sa.Addr[:], local.IP.To16())
		if err := syscall.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind %v: %w", local, err)
		}
	}
	var req [32]byte // struct in6_flowlabel_req
	dst := ap.Addr().As16()
	copy(req[0:16], dst[:])
	binary.BigEndian.PutUint32(req[16:20], uint32(label))
	req[20] = ipv6FLAGet
	req[21] = ipv6FLSAny
	binary.NativeEndian.PutUint16(req[22:24], ipv6FLFCreate)
	if err := syscall.SetsockoptString(fd, syscall.IPPROTO_IPV6, ipv6FlowLabelMgr, string(req[:])); err != nil {
		return fmt.Errorf("lease IPv6 flow label %d: %w", label, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, ipv6FlowInfoSend, 1); err != nil {
		return fmt.Errorf("set IPV6_FLOWINFO_SEND: %w", err)
	}
	sa := syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Scope_id: zoneIndex(ap.Addr().Zone())}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	binary.BigEndian.PutUint32((*[4]byte)(unsafe.Pointer(&sa.Flowinfo))[:], uint32(label))
	sa.Addr = dst
	switch errno := rawConnect(uintptr(fd), unsafe.Pointer(&sa), unsafe.Sizeof(sa)); errno {
	case 0, syscall.EINPROGRESS, syscall.EINTR:
		return nil
	default:
		return errno
	}
}

// zoneIndex is the interface index of an IPv6 zone, 0 for none.
func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	n, _ := strconv.Atoi(zone)
	return uint32(n)
}

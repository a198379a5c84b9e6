package main

// sys.go holds the socket options every OS supports; sys_linux.go and
// sys_other.go add what only some have (TCP_INFO, congestion control,
// CPU accounting).

import (
	"errors"
	"net"
)

// sockOpts are the TCP options a client asks for on every stream; the
// server applies the same ones to its end, as iperf3 does.
type sockOpts struct {
	window     int
	mss        int
	congestion string
	noDelay    bool
	// notSentLowat caps a sending socket's unsent bytes (Linux
	// TCP_NOTSENT_LOWAT); 0 leaves the kernel's default.
	notSentLowat int
	// pacingRate is the kernel's pacing cap for a sending socket
	// (SO_MAX_PACING_RATE), in bytes/s; 0 sets none.
	pacingRate float64
	marks      socketMarks
	// flowLabel is the IPv6 flow label a stream connects with (-L,
	// Linux); 0 none. Such a stream connects in preConnect, which then
	// binds it to local first, if set.
	flowLabel int
	local     *net.TCPAddr
}

// socketMarks are the options a client puts on every socket of a test,
// its control connection and probes included, as iperf3 does: the TOS
// byte, the interface and the user timeout. The server marks its ends
// of the streams with the TOS it is asked for.
type socketMarks struct {
	tos         int    // 0: the system's (which is 0)
	bindDev     string // SO_BINDTODEVICE, Linux
	userTimeout int    // TCP_USER_TIMEOUT in ms, Linux; 0: the system's
	reuseAddr   bool   // --cport: a port may be bound again while in TIME_WAIT
}

// errNoAffinity says -A does nothing on this OS: one warning, no failure.
var errNoAffinity = errors.New("CPU affinity is only set on Linux; it has no effect here")

// maxCPU is the number of CPUs -A can name: the kernel's default
// cpu_set_t holds 1024 (CPU_SETSIZE).
const maxCPU = 1024

// kernelPacingCeiling is the most SO_MAX_PACING_RATE takes as the 32-bit
// value every kernel accepts, in bytes/s (~34 Gbit/s); ~0U means none.
const kernelPacingCeiling = 1<<32 - 2

// kernelPacingFor is the cap a -b sender gives the kernel: a little above
// the rate, so that the kernel spreads each batch's packets while the
// sender's own schedule keeps the payload to -b exactly (the kernel counts
// headers too). --fq-rate, iperf3's explicit form, is taken as it is.
// A cap of 0 would stall the stream, so the least is 1 byte/s.
func kernelPacingFor(rate, fqRate float64) float64 {
	if fqRate > 0 {
		return max(1, fqRate/8)
	}
	return max(1, rate/8*17/16)
}

// applyPortable sets what every OS supports after the connection exists.
// Go turns Nagle's algorithm off by default; wperf leaves it on for
// streams unless -N asks otherwise, like iperf3.
func (o sockOpts) applyPortable(nc net.Conn) error {
	tc, ok := nc.(tcpSocket)
	if !ok {
		return nil
	}
	if err := tc.SetNoDelay(o.noDelay); err != nil {
		return err
	}
	if o.window > 0 {
		if err := tc.SetReadBuffer(o.window); err != nil {
			return err
		}
		return tc.SetWriteBuffer(o.window)
	}
	return nil
}

// tcpSocket is a TCP connection: a *net.TCPConn, or a type that embeds
// one (the server counts its connections that way, guard.go). Such a type
// also keeps net.Buffers' single writev.
type tcpSocket interface {
	net.Conn
	SetNoDelay(bool) error
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
}

// tcpRaw is one TCP_INFO sample; times in microseconds.
type tcpRaw struct {
	totalRetrans int64
	sndCwnd      int64
	sndWnd       int64
	rtt          int64
	rttVar       int64
	pmtu         int64
}

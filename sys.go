package main

// sys.go holds the socket options every OS supports; sys_linux.go and
// sys_other.go add what only some have (TCP_INFO, congestion control,
// CPU accounting).

import "net"

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

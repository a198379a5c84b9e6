//go:build !linux

package main

// sys_other.go stands in for sys_linux.go where the kernel counters are
// not reachable through the standard library: TCP_INFO, CPU time and the
// congestion algorithm are reported as absent.

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func (o sockOpts) preConnect(_, _ string, _ syscall.RawConn) error {
	switch {
	case o.mss > 0:
		return errors.New("-M/--set-mss is only supported on Linux")
	case o.congestion != "":
		return errors.New("-C/--congestion is only supported on Linux")
	case o.notSentLowat > 0:
		return errors.New("--notsent-lowat is only supported on Linux")
	}
	return nil
}

func (o sockOpts) applyAccepted(nc net.Conn) error { return o.applyPortable(nc) }

// control sets nothing before the connection: the Linux-only marks are
// refused at the command line (config.checkIperf3Habits), and the TOS
// byte is set once connected (afterDial).
func (m socketMarks) control(string, string, syscall.RawConn) error { return nil }

// afterDial sets the TOS byte, or an IPv6 socket's traffic class, the
// portable way.
func (m socketMarks) afterDial(nc net.Conn) error {
	if m.tos == 0 {
		return nil
	}
	if ta, ok := nc.LocalAddr().(*net.TCPAddr); ok && ta.IP.To4() == nil {
		return ipv6.NewConn(nc).SetTrafficClass(m.tos)
	}
	return ipv4.NewConn(nc).SetTOS(m.tos)
}

func pinAffinity(cpu int) error {
	if cpu < 0 {
		return nil
	}
	return errNoAffinity
}

func readTCPInfo(net.Conn) (tcpRaw, bool) { return tcpRaw{}, false }

func congestionOf(net.Conn) string { return "" }

func processCPU() (user, system time.Duration) { return 0, 0 }

const tcpInfoAvailable = false

func socketFacts(net.Conn) socketInfo { return socketInfo{} }

func systemInfo() string { return runtime.GOOS + " " + runtime.GOARCH }

func bufferSizes(syscall.RawConn) (snd, rcv int) { return 0, 0 }

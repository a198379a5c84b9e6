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

func readTCPInfo(net.Conn) (tcpRaw, bool) { return tcpRaw{}, false }

func congestionOf(net.Conn) string { return "" }

func processCPU() (user, system time.Duration) { return 0, 0 }

const tcpInfoAvailable = false

func socketFacts(net.Conn) socketInfo { return socketInfo{} }

func systemInfo() string { return runtime.GOOS + " " + runtime.GOARCH }

func bufferSizes(syscall.RawConn) (snd, rcv int) { return 0, 0 }

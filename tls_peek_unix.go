//go:build unix

package main

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// peekByte returns a new connection's first byte without consuming it
// (recv with MSG_PEEK), so that the connection handed on is still the
// *net.TCPConn, with writev, for plain clients. The caller's read
// deadline applies.
func peekByte(nc net.Conn) (byte, net.Conn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return peekByteCopy(nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, nc, err
	}
	var b [1]byte
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return !errors.Is(rerr, syscall.EAGAIN)
	})
	switch {
	case err != nil:
		return 0, nc, err
	case rerr != nil:
		return 0, nc, rerr
	case n == 0:
		return 0, nc, io.EOF
	}
	return b[0], nc, nil
}

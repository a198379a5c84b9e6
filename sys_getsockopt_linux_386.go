package main

import (
	"syscall"
	"unsafe"
)

// socketcall(2)'s number for getsockopt: 32-bit x86 reaches the socket
// calls through this multiplexer, so syscall has no SYS_GETSOCKOPT there.
const socketcallGetsockopt = 15

// rawGetsockopt is getsockopt(2) into any buffer, which the syscall
// package only offers for a few option types.
func rawGetsockopt(fd, level, name uintptr, p unsafe.Pointer, n *uint32) syscall.Errno {
	args := [5]uintptr{fd, level, name, uintptr(p), uintptr(unsafe.Pointer(n))}
	_, _, errno := syscall.Syscall(syscall.SYS_SOCKETCALL, socketcallGetsockopt, uintptr(unsafe.Pointer(&args)), 0)
	return errno
}

// socketcallConnect is socketcall(2)'s number for connect.
const socketcallConnect = 3

// rawConnect is connect(2) with a sockaddr the syscall package cannot
// build (an IPv6 one with its flow information).
func rawConnect(fd uintptr, sa unsafe.Pointer, n uintptr) syscall.Errno {
	args := [3]uintptr{fd, uintptr(sa), n}
	_, _, errno := syscall.Syscall(syscall.SYS_SOCKETCALL, socketcallConnect, uintptr(unsafe.Pointer(&args)), 0)
	return errno
}

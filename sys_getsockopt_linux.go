//go:build linux && !386

package main

import (
	"syscall"
	"unsafe"
)

// rawGetsockopt is getsockopt(2) into any buffer, which the syscall
// package only offers for a few option types.
func rawGetsockopt(fd, level, name uintptr, p unsafe.Pointer, n *uint32) syscall.Errno {
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, level, name, uintptr(p), uintptr(unsafe.Pointer(n)), 0)
	return errno
}

// rawConnect is connect(2) with a sockaddr the syscall package cannot
// build (an IPv6 one with its flow information).
func rawConnect(fd uintptr, sa unsafe.Pointer, n uintptr) syscall.Errno {
	_, _, errno := syscall.Syscall(syscall.SYS_CONNECT, fd, uintptr(sa), n)
	return errno
}

package main

// sysGetsockopt is getsockopt(2)'s system call number. Go's syscall
// package has none for linux/386, where C libraries long went through
// socketcall(2); Linux has had the direct call since 4.3 (2015). On an
// older kernel it fails with ENOSYS, and the reports go without TCP_INFO.
const sysGetsockopt = 365

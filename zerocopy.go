package main

// zerocopy.go holds what the zero-copy paths share on every OS: the
// switches that turn them on and off, and their limits. The paths
// themselves are in zerocopy_linux.go; zerocopy_other.go stands in for
// them elsewhere.

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// noZeroCopy is --no-zerocopy: this process's receivers read and discard
// payload instead of splicing it away. It is process-wide because the
// option is; tests flip it to force the read path.
var noZeroCopy atomic.Bool

// errNoSplice says that splice does not work on a socket; the caller
// reads instead. No byte has left the socket when it is returned.
var errNoSplice = errors.New("splice is not supported here")

// spliceMinFrame is the smallest message a receiving stream splices.
// Spliced, each frame costs three system calls (its header, into the
// pipe, out of it); read, many frames come in one call and are copied.
// On loopback, splicing cost a quarter more CPU per byte than reading at
// 64 KiB, as much or less at 128 KiB, and a quarter to a third less from
// 256 KiB up.
const spliceMinFrame = 128 << 10

// warnZeroCopy says, once per process and on the end that sends, that
// -Z could not be honoured and why; its senders copy instead.
func warnZeroCopy(err error) {
	zeroCopyWarning.Do(func() { fmt.Fprintf(os.Stderr, "wperf: -Z/--zerocopy has no effect: %v\n", err) })
}

var zeroCopyWarning sync.Once

//go:build !linux

package main

// zerocopy_other.go stands in for zerocopy_linux.go where splice(2) is
// not used: receivers read and discard payload, and senders copy it
// whatever -Z asks.

import (
	"errors"
	"net"
	"runtime"
)

// spliceDrain has no instances here: wsConn only ever holds nil.
type spliceDrain struct{}

func newSpliceDrain(net.Conn, int) *spliceDrain { return nil }

func (*spliceDrain) discard(int64) (int, error) { return 0, errNoSplice }

func (*spliceDrain) close() {}

func newZeroCopyBatch(*wsConn, int, int, int) (bulkBatch, *poolReader, func(), error) {
	return nil, nil, nil, errors.New("zero-copy sending is only implemented on Linux, not " + runtime.GOOS)
}

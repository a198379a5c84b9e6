//go:build !linux

package main

// udp_other.go stands in for udp_linux.go elsewhere: one datagram per
// system call (x/net's batch calls also do one at a time here, and
// allocate doing it), no GSO, and no view of a TCP send queue, so
// datagrams over WebSocket use wsDatagramQueue.

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

var udpUseGSO = false

// udpReadBatch reads one datagram per call into a buffer made once.
type udpReadBatch struct {
	conn *net.UDPConn
	buf  []byte
	n    int
	from netip.AddrPort
}

// newUDPReadBatch's buffer holds any datagram whatever size the caller
// expects: one buffer costs little, and Windows fails a read that would
// truncate.
func newUDPReadBatch(conn *net.UDPConn, _, _ int) (*udpReadBatch, error) {
	return &udpReadBatch{conn: conn, buf: make([]byte, 64<<10)}, nil
}

func (r *udpReadBatch) read() (int, error) {
	n, from, err := r.conn.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return 0, err
	}
	r.n, r.from = n, from
	return 1, nil
}

func (r *udpReadBatch) datagram(int) (data []byte, size int, from netip.AddrPort) {
	return r.buf[:min(r.n, len(r.buf))], r.n, r.from
}

// udpWriteBatch sends datagrams one system call each.
type udpWriteBatch struct {
	conn *net.UDPConn
	gso  bool
}

func newUDPWriteBatch(conn *net.UDPConn, _ int) *udpWriteBatch {
	return &udpWriteBatch{conn: conn}
}

func (w *udpWriteBatch) write(buf []byte, size, count int, dst *net.UDPAddr) (int, error) {
	var to netip.AddrPort
	if dst != nil {
		to = dst.AddrPort()
	}
	for i := 0; i < count; i++ {
		p := buf[i*size : (i+1)*size]
		var err error
		if dst == nil {
			_, err = w.conn.Write(p)
		} else {
			_, err = w.conn.WriteToUDPAddrPort(p, to)
		}
		if errors.Is(err, syscall.ENOBUFS) {
			return i, nil // BSDs say so when the interface queue is full: a short write
		}
		if err != nil {
			return i, err
		}
	}
	return count, nil
}

type sendQueueProbe struct{}

func newSendQueueProbe(net.Conn) (*sendQueueProbe, bool) { return nil, false }

func (p *sendQueueProbe) queued() (int, bool) { return 0, false }

func sendQueueRoom(net.Conn) (unsent int, ok bool) { return 0, false }

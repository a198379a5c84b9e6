package main

// zerocopy_linux.go keeps bulk payload out of user space on Linux, with
// splice(2), which hands pages along instead of copying them. A
// receiving stream's payload goes from the socket into a pipe and from
// the pipe to /dev/null; with -Z a sender's goes from a file holding the
// pool into a pipe and from the pipe to the socket. zerocopy_other.go
// says it is missing elsewhere.

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// splice(2) flags, which the syscall package does not name.
const (
	spliceMove     = 0x1
	spliceNonblock = 0x2
)

// spliceDrain throws away payload inside the kernel. It serves one
// connection, whose reader owns it: wsConn.discardSome calls discard
// with its read lock held.
type spliceDrain struct {
	rc   syscall.RawConn
	pipe [2]int // read end, write end
	size int    // the pipe's capacity in bytes

	// One splice's request and outcome, kept here so that the callback
	// the poller runs is made once, not once per call.
	want    int
	got     int
	err     error
	onReady func(fd uintptr) bool

	// The receive low-water mark while waiting for payload: mark is what
	// the next wait asks for, lowat whether it is raised, since when.
	mark   int
	lowat  bool
	waited time.Time
}

// A wait for payload asks for what arrives in about lowatWait, learnt
// from the last wait and at least lowatMin bytes, so that on slow links
// the count still moves on smoothly between interval reports.
const (
	lowatMin  = 16 << 10
	lowatWait = 5 * time.Millisecond
)

// newSpliceDrain makes a drain for nc with a pipe of about size bytes,
// or returns nil when nc is not a socket splice can read or the pipe or
// /dev/null cannot be had.
func newSpliceDrain(nc net.Conn, size int) *spliceDrain {
	null := devNull()
	sc, ok := nc.(syscall.Conn)
	if null < 0 || !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	d := &spliceDrain{rc: rc}
	if syscall.Pipe2(d.pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC) != nil {
		return nil
	}
	d.size = pipeResize(d.pipe[1], size)
	d.onReady = d.spliceIn
	d.mark = lowatMin
	return d
}

// pipeResize asks for a pipe of size bytes and returns what it got: a
// user over the system's pipe quota keeps the default (64 KiB).
func pipeResize(fd, size int) int {
	got, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETPIPE_SZ, uintptr(size))
	if errno == 0 {
		return int(got)
	}
	got, _, errno = syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETPIPE_SZ, 0)
	if errno != 0 {
		return 4096 // a pipe holds at least one page
	}
	return int(got)
}

// The process's /dev/null, opened once: the sink every drain empties
// its pipe into. -1 when it cannot be opened.
var devNull = sync.OnceValue(func() int {
	fd, err := syscall.Open(os.DevNull, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
})

// discard takes up to limit bytes off the socket, waiting (within the
// connection's read deadline) until there are some. It returns how many
// it took, or io.EOF when the peer has shut down, or errNoSplice.
//
// The pipe is emptied at once rather than when full: that measured no
// slower, and the pages go back to the sender's allocator while still
// in cache. So the pipe is always empty when splice is asked to fill it,
// and EAGAIN can only mean an empty socket.
func (d *spliceDrain) discard(limit int64) (int, error) {
	d.want, d.got, d.err = int(min(limit, int64(d.size))), 0, nil
	if err := d.rc.Read(d.onReady); err != nil {
		if d.lowat {
			d.rc.Control(func(fd uintptr) { d.setLowat(fd, 1) })
		}
		return 0, err
	}
	switch {
	case d.err == syscall.EINVAL || d.err == syscall.ENOSYS || d.err == syscall.EOPNOTSUPP:
		return 0, errNoSplice
	case d.err != nil:
		return 0, os.NewSyscallError("splice", d.err)
	case d.got == 0:
		return 0, io.EOF
	}
	return d.got, d.empty(d.got)
}

// spliceIn is the poller's callback: one splice from the socket into the
// pipe. It returns false to wait until the socket is readable.
//
// Before waiting it raises the socket's receive low-water mark, within
// what the peer owes (the frame header promised it), so that the wait
// ends when that much is there, or the peer is gone, rather than at
// every segment: at 1 MiB messages on loopback that cut CPU per byte by
// a third. The kernel still wakes the reader early when its receive
// window is nearly closed. The mark drops back to 1 once the wait is
// over, before a header is read.
func (d *spliceDrain) spliceIn(fd uintptr) bool {
	for {
		n, err := syscall.Splice(int(fd), nil, d.pipe[1], nil, d.want, spliceMove|spliceNonblock)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !d.lowat {
				d.setLowat(fd, min(d.want, d.mark))
				d.waited = time.Now()
			}
			return false
		}
		if d.lowat {
			d.setLowat(fd, 1)
			d.learn(time.Since(d.waited))
		}
		d.got, d.err = int(n), err
		return true
	}
}

// setLowat sets SO_RCVLOWAT. Should it fail, waits only end earlier.
func (d *spliceDrain) setLowat(fd uintptr, n int) {
	syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
	d.lowat = n > 1
}

// learn doubles or halves the mark after a wait that took much less or
// much more than lowatWait.
func (d *spliceDrain) learn(took time.Duration) {
	switch {
	case took < lowatWait/2:
		d.mark = min(2*d.mark, d.size)
	case took > 2*lowatWait:
		d.mark = max(d.mark/2, lowatMin)
	}
}

// empty sends the n bytes the pipe holds to /dev/null.
func (d *spliceDrain) empty(n int) error {
	for n > 0 {
		m, err := syscall.Splice(d.pipe[0], nil, devNull(), nil, n, spliceMove|spliceNonblock)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return os.NewSyscallError("splice", err)
		case m <= 0:
			return io.ErrNoProgress
		}
		n -= int(m)
	}
	return nil
}

// close frees the pipe.
func (d *spliceDrain) close() {
	syscall.Close(d.pipe[0])
	syscall.Close(d.pipe[1])
}

// ---- sending (-Z) ----

// zeroCopyPool is the payload pool in kernel-owned pages: an unlinked
// file in tmpfs holding a copy of the heap pool src, so that a slice of
// src names the same bytes in the file. splice(2) hands the file's
// pages to the socket by reference, so the file is never written once
// made. One is shared by every -Z sender of the process, and closed when
// it is replaced and its last sender is done; pages still queued in
// sockets stay valid after that.
type zeroCopyPool struct {
	fd    int
	src   []byte
	users int
}

var zeroCopyPools struct {
	sync.Mutex
	cur *zeroCopyPool
}

// acquireZeroCopyPool returns a pool with room for messages of length
// bytes; the caller releases it when done.
func acquireZeroCopyPool(length int) (*zeroCopyPool, error) {
	zeroCopyPools.Lock()
	defer zeroCopyPools.Unlock()
	if p := zeroCopyPools.cur; p != nil && len(p.src) >= poolSize(length) {
		p.users++
		return p, nil
	}
	p, err := newZeroCopyPool(poolFor(length))
	if err != nil {
		return nil, err
	}
	if old := zeroCopyPools.cur; old != nil && old.users == 0 {
		syscall.Close(old.fd)
	}
	p.users = 1
	zeroCopyPools.cur = p
	return p, nil
}

func (p *zeroCopyPool) release() {
	zeroCopyPools.Lock()
	defer zeroCopyPools.Unlock()
	p.users--
	if p.users == 0 && zeroCopyPools.cur != p {
		syscall.Close(p.fd)
	}
}

// newZeroCopyPool copies src to an unlinked file in /dev/shm, or in the
// temporary directory where there is none.
func newZeroCopyPool(src []byte) (*zeroCopyPool, error) {
	f, err := os.CreateTemp("/dev/shm", "wperf-pool-")
	if err != nil {
		f, err = os.CreateTemp("", "wperf-pool-")
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	os.Remove(f.Name())
	if _, err := f.Write(src); err != nil {
		return nil, err
	}
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	return &zeroCopyPool{fd: fd, src: src}, nil
}

// offset is where filler, a slice of src, lies in the file.
func (p *zeroCopyPool) offset(filler []byte) int64 {
	return int64(uintptr(unsafe.Pointer(unsafe.SliceData(filler))) - uintptr(unsafe.Pointer(unsafe.SliceData(p.src))))
}

// zeroCopyBatch is frameBatch's counterpart for -Z. It lays the batch's
// frames out in a pipe, writing each header into it and splicing each
// payload into it from the pool file, and splices the pipe to the socket
// whenever it fills and at the end. Payload pages are never copied, and
// TCP takes the frames in a few large sends, headers and payloads
// sharing segments.
//
// Measured on loopback in CPU per byte, this cost 10 % less than writing
// each header with MSG_MORE and then sendfile(2) for its payload, at
// 64 KiB messages, and 40 % less at 1 MiB. TCP_CORK around sendfile did
// no better than MSG_MORE, and the pool vmspliced from memory cost more
// than sendfile in three cases of four. Copying from the cache-sized
// pool is cheaper still at 64 KiB, which is why -Z is not the default.
type zeroCopyBatch struct {
	c      *wsConn
	rc     syscall.RawConn
	pool   *zeroCopyPool
	frames []zeroCopyFrame
	pipe   [2]int // read end, write end
	hdr    [maxHeaderLen]byte

	// What the pipe holds, for the poller's callback, which is made once
	// so that a flush allocates nothing.
	held    int
	more    bool // the batch goes on after what the pipe holds
	err     error
	onReady func(fd uintptr) bool
}

type zeroCopyFrame struct {
	op  opcode
	off int64
	n   int
}

// SPLICE_F_MORE: more data follows, so TCP need not push what it has.
const spliceMore = 0x4

// newZeroCopyBatch makes a batch of up to frames frames of at most
// length bytes for c with a pipe of about pipeSize bytes, the pool reader
// its sender must take filler from, and the function that frees them.
func newZeroCopyBatch(c *wsConn, frames, length, pipeSize int) (bulkBatch, *poolReader, func(), error) {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return nil, nil, nil, errors.New("the connection is not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, nil, err
	}
	b := &zeroCopyBatch{c: c, rc: rc, frames: make([]zeroCopyFrame, 0, frames)}
	if err := syscall.Pipe2(b.pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return nil, nil, nil, os.NewSyscallError("pipe2", err)
	}
	pipeResize(b.pipe[1], pipeSize)
	if b.pool, err = acquireZeroCopyPool(length); err != nil {
		b.closePipe()
		return nil, nil, nil, err
	}
	b.onReady = b.spliceOut
	// Payload that starts on a page boundary takes the fewest pages:
	// page-aligned 64 KiB messages cost an eighth less CPU per byte.
	src := b.pool.src[:poolSize(length)]
	release := func() {
		b.closePipe()
		b.pool.release()
	}
	return b, &poolReader{pool: src, off: rand.IntN(len(src) - length), page: os.Getpagesize()}, release, nil
}

func (b *zeroCopyBatch) closePipe() {
	syscall.Close(b.pipe[0])
	syscall.Close(b.pipe[1])
}

// Add queues one frame. Its filler must come from the batch's pool
// reader; a masked prefix is not supported (a bandwidth stream has none).
func (b *zeroCopyBatch) Add(op opcode, _, filler []byte) {
	b.frames = append(b.frames, zeroCopyFrame{op: op, off: b.pool.offset(filler), n: len(filler)})
}

// Flush sends the queued frames, holding the connection's write lock so
// that no other frame (a pong, a close) lands inside one.
func (b *zeroCopyBatch) Flush() error {
	c := b.c
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	defer func() { b.frames = b.frames[:0] }()
	if c.closeSent {
		return errConnClosed
	}
	for _, f := range b.frames {
		if err := b.queue(f); err != nil {
			return err
		}
	}
	return b.send(false)
}

// queue puts one frame into the pipe: its header, with a fresh masking
// key from a client (RFC 6455 §5.3), then its payload, unmasked: the
// pool's random bytes stand for the masked form, as in frameBatch. When
// the pipe is full, what it holds goes to the socket first.
func (b *zeroCopyBatch) queue(f zeroCopyFrame) error {
	var key uint32
	if b.c.isClient {
		key = b.c.nextKey()
	}
	h := b.hdr[:putFrameHeader(b.hdr[:], true, f.op, f.n, b.c.isClient, key)]
	for len(h) > 0 || f.n > 0 {
		var n int
		var err error
		if len(h) > 0 {
			n, err = syscall.Write(b.pipe[1], h)
		} else {
			m, e := syscall.Splice(b.pool.fd, &f.off, b.pipe[1], nil, f.n, spliceMove|spliceNonblock)
			n, err = int(m), e // m is an int64 or, on some 32-bit targets, an int
		}
		switch {
		case err == syscall.EAGAIN: // the pipe is full
			err = b.send(true)
		case err == syscall.EINTR:
			err = nil
		case err != nil:
		case n == 0:
			err = io.ErrShortWrite // the file ended early: it cannot, but must not spin
		case len(h) > 0:
			h, b.held = h[n:], b.held+n
		default:
			f.n, b.held = f.n-n, b.held+n
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// send splices what the pipe holds to the socket, within the write
// deadline; more says that the batch goes on after it.
func (b *zeroCopyBatch) send(more bool) error {
	b.more, b.err = more, nil
	if err := b.rc.Write(b.onReady); err != nil {
		return err
	}
	return b.err
}

// spliceOut is the poller's callback: it empties the pipe into the
// socket, or returns false to wait until the socket has room.
func (b *zeroCopyBatch) spliceOut(fd uintptr) bool {
	flags := spliceMove | spliceNonblock
	if b.more {
		flags |= spliceMore
	}
	for b.held > 0 {
		n, err := syscall.Splice(b.pipe[0], nil, int(fd), nil, b.held, flags)
		switch err {
		case nil:
			b.held -= int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			b.err = err
			return true
		}
	}
	return true
}

package main

// ws.go is wperf's WebSocket engine (RFC 6455): the connection, which
// reads and writes frames and messages, answers control frames and runs
// the close handshake. It knows nothing about tests. The bulk-data paths
// are built so that a 64 KiB frame costs no allocation, at most one system
// call to send, and no byte-by-byte work when its payload is thrown away.
// The frame codec is in ws_frame.go, the opening handshakes in
// ws_handshake.go, batched writes in ws_batch.go.
//
// Methods that the rest of wperf calls are capitalised, as if these files
// were a package of their own; helpers inside them are not.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// closeError is how a connection ended: the status and reason of the close
// frame the peer sent, or of the one we sent when we failed the connection.
type closeError struct {
	Code   statusCode
	Reason string
	Local  bool // we failed the connection; the peer broke a rule
}

func (e *closeError) Error() string {
	who := "peer"
	if e.Local {
		who = "we"
	}
	if e.Reason == "" {
		return fmt.Sprintf("websocket closed (%s sent %d)", who, e.Code)
	}
	return fmt.Sprintf("websocket closed (%s sent %d: %s)", who, e.Code, e.Reason)
}

// closeStatus extracts the close code from an error chain, or 0.
func closeStatus(err error) statusCode {
	var ce *closeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// Sentinel errors. Each protocol failure wraps one of them, which decides
// the status code we close with.
var (
	errProtocol      = errors.New("websocket protocol error")       // 1002
	errInvalidUTF8   = errors.New("websocket text is not UTF-8")    // 1007
	errMessageTooBig = errors.New("websocket message too big")      // 1009
	errConnClosed    = errors.New("websocket connection is closed") // use after close
)

// statusFor maps a local failure to the status we tell the peer.
func statusFor(err error) statusCode {
	switch {
	case errors.Is(err, errInvalidUTF8):
		return statusInvalidPayload
	case errors.Is(err, errMessageTooBig):
		return statusMessageTooBig
	case errors.Is(err, errProtocol):
		return statusProtocolError
	}
	return statusInternalError
}

// Sizes of buffers and limits.
const (
	defaultMaxMessage = 16 << 20
	closeWait         = 5 * time.Second // how long we wait for the peer's close
	failLinger        = time.Second     // how long a failed connection lingers so the peer reads our close
	keyBatch          = 256             // masking keys drawn from crypto/rand at once
)

const (
	// controlReplyWait is the least time the reader gives a pong it
	// writes: enough for any peer that reads, and short enough that one
	// which pings and never reads cannot hold the reader past its own
	// read deadline.
	controlReplyWait = 2 * time.Second
	// minGrow is the first step of a message buffer that grows as the
	// payload arrives.
	minGrow = 4 << 10
)

// wsConn is one WebSocket connection. One goroutine may read while others
// write: reads are serialised by readMu, frame writes by writeMu, so a pong
// never lands inside a data frame.
type wsConn struct {
	nc          net.Conn
	isClient    bool // we mask what we send and reject masked frames
	subprotocol string
	maxMessage  int64

	readMu sync.Mutex
	rbuf   []byte // bytes read from the socket; rbuf[rpos:rend] are unconsumed
	rpos   int
	rend   int
	cur    frameHeader // the data frame being read
	left   int64       // its payload bytes not yet consumed
	curKey uint32      // its masking key, rotated to the next payload byte
	msgOp  opcode      // text or binary, while a message is in progress
	inMsg  bool        // a fragmented message awaits its continuation
	msgLen int64
	text   utf8Validator
	ctrl   [maxControlPayload]byte
	rerr   error // sticky: once reading failed, it keeps failing
	// drain, when set, takes binary payload that is being discarded
	// straight off the socket (zerocopy_linux.go), and fill then reads
	// little more than the next header so that payload stays there.
	drain *spliceDrain

	writeMu   sync.Mutex
	wbuf      []byte      // header + payload of one frame, reused
	wvec      net.Buffers // header and payload for writev
	wvecBack  [2][]byte   // wvec's storage, so building it allocates nothing
	keys      [keyBatch]uint32
	keyNext   int
	closeSent bool
	// wdl is the write deadline the caller set (SetWriteDeadline); a pong
	// the reader sends sets its own and then puts wdl back. wdlMu orders
	// the two.
	wdlMu sync.Mutex
	wdl   time.Time

	closeOnce   sync.Once
	readEnded   chan struct{} // closed when the peer's close arrives or reading fails
	peerClose   atomic.Pointer[closeError]
	tcpClosed   atomic.Bool
	writeVector bool // nc takes net.Buffers in one writev
	// onPong sees each pong's payload on the reading goroutine; set
	// before reading starts (OnPong).
	onPong func(payload []byte)

	// forwardedBy is the forwarding header (X-Forwarded-For, Via...) of
	// the upgrade request a server accepted: a proxy's sign (proxy.go).
	forwardedBy string
}

// connOptions are what both ends choose for a connection.
type connOptions struct {
	maxMessage int64 // 0 means defaultMaxMessage
	readBuffer int   // bytes; 0 means 4 KiB, bulk-data streams ask for more
}

func newConn(nc net.Conn, isClient bool, opt connOptions, buffered []byte) *wsConn {
	size := opt.readBuffer
	if size <= 0 {
		size = 4 << 10
	}
	// fill needs room for a whole header or control payload at once.
	size = max(size, len(buffered), maxHeaderLen+maxControlPayload)
	c := &wsConn{
		nc:         nc,
		isClient:   isClient,
		maxMessage: opt.maxMessage,
		rbuf:       make([]byte, size),
		keyNext:    keyBatch,
		readEnded:  make(chan struct{}),
	}
	if c.maxMessage <= 0 {
		c.maxMessage = defaultMaxMessage
	}
	c.rend = copy(c.rbuf, buffered)
	_, c.writeVector = nc.(tcpSocket)
	return c
}

// SetLimits changes the message limit and grows the read buffer once a
// connection's role is known (a test stream with large messages, say).
// Bytes already buffered are kept.
func (c *wsConn) SetLimits(maxMessage int64, readBuffer int) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if maxMessage > 0 {
		c.maxMessage = maxMessage
	}
	if readBuffer > len(c.rbuf) {
		grown := make([]byte, readBuffer)
		c.rend = copy(grown, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
		c.rbuf = grown
	}
}

// SetDrain makes d (nil: none) the way discarded binary payload leaves
// the socket. Its owner sets it on a bulk-data stream whose payload is
// never looked at, and unsets it before closing d.
func (c *wsConn) SetDrain(d *spliceDrain) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.drain = d
}

// NetConn is the underlying connection, for socket options and addresses:
// the TCP socket, also beneath TLS and a proxy tunnel's wrappers.
func (c *wsConn) NetConn() net.Conn {
	nc := c.nc
	for {
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok || u.NetConn() == nc {
			return nc
		}
		nc = u.NetConn()
	}
}

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline bounds the caller's writes; the zero time removes the
// bound. Pongs the reader sends keep to it when it is later than their
// own (controlReplyWait).
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wdlMu.Lock()
	defer c.wdlMu.Unlock()
	c.wdl = t
	return c.nc.SetWriteDeadline(t)
}

// ---- reading ----

// fill makes sure at least n bytes are buffered, reading as much as the
// buffer holds in each system call.
func (c *wsConn) fill(n int) error {
	for c.rend-c.rpos < n {
		if c.rpos > 0 && len(c.rbuf)-c.rpos < n {
			c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
			c.rpos = 0
		}
		m, err := c.nc.Read(c.rbuf[c.rend:c.readLimit(n)])
		c.rend += m
		if err != nil {
			if c.rend-c.rpos >= n {
				return nil
			}
			if err == io.EOF && (c.rend > c.rpos || c.left > 0) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readLimit is where fill's next read into rbuf stops: at the end of the
// buffer, or with a drain just past the n bytes fill needs and never
// short of a whole header, so that the payload behind a header stays in
// the socket for the drain.
func (c *wsConn) readLimit(n int) int {
	if c.drain == nil {
		return len(c.rbuf)
	}
	return min(len(c.rbuf), c.rpos+max(n, maxHeaderLen))
}

// NextFrame skips what is left of the current frame and reads headers
// until a data frame starts, answering pings and handling a close on the
// way. It returns the message's type (text or binary, also for
// continuation frames), the frame's payload length and whether it ends
// the message.
func (c *wsConn) NextFrame() (op opcode, length int64, fin bool, err error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return c.nextFrame()
}

func (c *wsConn) nextFrame() (opcode, int64, bool, error) {
	if c.rerr != nil {
		return 0, 0, false, c.rerr
	}
	for c.left > 0 {
		if _, err := c.discardSome(); err != nil {
			return 0, 0, false, err
		}
	}
	for {
		h, err := c.readHeader()
		if err != nil {
			return 0, 0, false, c.readFailed(err)
		}
		if h.op.isControl() {
			if err := c.handleControl(h); err != nil {
				return 0, 0, false, c.readFailed(err)
			}
			continue
		}
		if err := c.startData(h); err != nil {
			return 0, 0, false, c.readFailed(err)
		}
		return c.msgOp, h.length, h.fin, nil
	}
}

func (c *wsConn) readHeader() (frameHeader, error) {
	if err := c.fill(2); err != nil {
		return frameHeader{}, err
	}
	for {
		h, n, err := parseFrameHeader(c.rbuf[c.rpos:c.rend])
		if err != nil {
			return h, err
		}
		if n > 0 {
			if h.masked == c.isClient {
				if c.isClient {
					return h, fmt.Errorf("%w: server sent a masked frame", errProtocol)
				}
				return h, fmt.Errorf("%w: client sent an unmasked frame", errProtocol)
			}
			c.rpos += n
			return h, nil
		}
		if err := c.fill(c.rend - c.rpos + 1); err != nil {
			return h, err
		}
	}
}

// startData checks a data frame against the message in progress (§5.4)
// and the size limit, and makes it the current frame.
func (c *wsConn) startData(h frameHeader) error {
	switch {
	case h.op == opContinuation && !c.inMsg:
		return fmt.Errorf("%w: continuation frame without a message to continue", errProtocol)
	case h.op != opContinuation && c.inMsg:
		return fmt.Errorf("%w: new message while a fragmented one is unfinished", errProtocol)
	}
	if h.op != opContinuation {
		c.msgOp, c.msgLen, c.text = h.op, 0, utf8Validator{}
	}
	// Compared before adding: a 63-bit frame length would overflow msgLen.
	if h.length > c.maxMessage-c.msgLen {
		return fmt.Errorf("%w: over %d bytes", errMessageTooBig, c.maxMessage)
	}
	c.msgLen += h.length
	c.inMsg = !h.fin
	c.cur, c.left, c.curKey = h, h.length, h.key
	return c.endOfFrameCheck()
}

// endOfFrameCheck runs when a frame's payload is all consumed: a text
// message must end on a whole code point.
func (c *wsConn) endOfFrameCheck() error {
	if c.left == 0 && c.cur.fin && c.msgOp == opText && !c.text.complete() {
		return fmt.Errorf("%w: message ends inside a code point", errInvalidUTF8)
	}
	return nil
}

// consumed accounts for payload bytes p of the current frame that the
// caller now holds: it unmasks them in place and validates text.
func (c *wsConn) consumed(p []byte) error {
	c.left -= int64(len(p))
	if c.cur.masked {
		c.curKey = mask(c.curKey, p)
	}
	if c.msgOp == opText && !c.text.feed(p) {
		return fmt.Errorf("%w: invalid byte sequence", errInvalidUTF8)
	}
	return c.endOfFrameCheck()
}

// ReadPayload reads up to len(p) bytes of the current frame's payload,
// unmasked. It returns io.EOF once the frame is done. It returns as soon as
// some bytes are there, so text is validated as it arrives.
func (c *wsConn) ReadPayload(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return c.readPayload(p)
}

func (c *wsConn) readPayload(p []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	var n int
	if c.rend > c.rpos {
		n = copy(p, c.rbuf[c.rpos:c.rend])
		c.rpos += n
	} else {
		// Nothing buffered: read straight into p, sparing a copy for
		// large messages.
		var err error
		n, err = c.nc.Read(p)
		if n == 0 && err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, c.readFailed(err)
		}
	}
	if err := c.consumed(p[:n]); err != nil {
		return 0, c.readFailed(err)
	}
	return n, nil
}

// Discard throws away payload of the current frame: what is buffered, or
// else what one read brings. It returns how many bytes it dropped, and
// io.EOF once the frame is done. Binary payload is neither unmasked nor
// copied; only text is unmasked, to be validated.
func (c *wsConn) Discard() (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.left == 0 {
		return 0, io.EOF
	}
	return c.discardSome()
}

func (c *wsConn) discardSome() (int, error) {
	if c.rend == c.rpos {
		c.rpos, c.rend = 0, 0
		if c.drain != nil && c.msgOp != opText {
			return c.drainSome()
		}
		if err := c.fill(1); err != nil {
			return 0, c.readFailed(err)
		}
	}
	n := c.rend - c.rpos
	if int64(n) > c.left {
		n = int(c.left)
	}
	chunk := c.rbuf[c.rpos : c.rpos+n]
	c.rpos += n
	if c.msgOp == opText {
		if err := c.consumed(chunk); err != nil {
			return 0, c.readFailed(err)
		}
		return n, nil
	}
	c.left -= int64(n)
	return n, nil
}

// drainSome lets the drain take what it can of the current frame's
// payload, which is binary (text must be validated, so it is read). A
// masked payload goes unmasked: nobody looks at it. Where splice turns
// out not to work, the connection reads from then on.
func (c *wsConn) drainSome() (int, error) {
	n, err := c.drain.discard(c.left)
	switch {
	case err == errNoSplice:
		c.drain = nil
		return c.discardSome()
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return 0, c.readFailed(err)
	}
	c.left -= int64(n)
	return n, nil
}

// ReadMessage reads a whole message, reassembling fragments, into buf and
// returns its type and bytes. buf grows as payload arrives, never on the
// word of a frame header: a header costs its sender 14 bytes and may
// announce up to the size limit, so memory follows what was received.
func (c *wsConn) ReadMessage(buf []byte) (opcode, []byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	buf = buf[:0]
	var op opcode
	for {
		mop, _, fin, err := c.nextFrame()
		if err != nil {
			return 0, buf, err
		}
		op = mop
		for c.left > 0 {
			if len(buf) == cap(buf) {
				buf = c.grow(buf, fin)
			}
			n, err := c.readPayload(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				return 0, buf, err
			}
		}
		if fin {
			return op, buf, nil
		}
	}
}

// grow makes room in a full buffer for more of the current frame: it
// doubles (from minGrow), so a message costs O(n) in copies and at most
// twice what arrived, and it stays within the message limit and, in the
// final frame, within what that frame announced.
func (c *wsConn) grow(buf []byte, final bool) []byte {
	step := int64(max(cap(buf), minGrow))
	if final {
		step = min(step, c.left)
	}
	step = min(step, c.maxMessage-int64(len(buf)))
	grown := make([]byte, len(buf), len(buf)+int(step))
	copy(grown, buf)
	return grown
}

// handleControl reads a control frame's payload and acts on it (§5.5):
// a ping gets a pong with the same payload, a pong goes to the OnPong hook
// (if any), a close is answered and ends reading.
func (c *wsConn) handleControl(h frameHeader) error {
	n := int(h.length)
	if err := c.fill(n); err != nil {
		return err
	}
	p := c.ctrl[:n]
	copy(p, c.rbuf[c.rpos:c.rpos+n])
	c.rpos += n
	if h.masked {
		mask(h.key, p)
	}
	switch h.op {
	case opPing:
		// Once our close is out, no pong may follow it (§5.5.1).
		if err := c.pong(p); err != nil && !errors.Is(err, errConnClosed) {
			return err
		}
		return nil
	case opPong:
		if c.onPong != nil {
			c.onPong(p)
		}
		return nil
	}
	code, reason, err := parseClosePayload(p)
	if err != nil {
		return err
	}
	ce := &closeError{Code: code, Reason: reason}
	c.peerClose.Store(ce)
	// Echo the peer's code (§5.5.1), unless we started the close. The
	// deadline comes first so a writer stuck on a dead peer lets go.
	c.nc.SetWriteDeadline(time.Now().Add(closeWait))
	c.writeMu.Lock()
	if !c.closeSent {
		c.closeSent = true
		if code == statusNoStatus {
			c.writeLocked(opClose, true, nil)
		} else {
			c.writeLocked(opClose, true, p[:2])
		}
	}
	c.writeMu.Unlock()
	c.endReading()
	c.rerr = ce
	// The server closes TCP first (§7.1.1); a client gives it a moment.
	if c.isClient {
		c.nc.SetReadDeadline(time.Now().Add(failLinger))
		io.Copy(io.Discard, c.nc)
	}
	c.closeTCP()
	return ce
}

// pong answers a ping (§5.5.2, §5.5.3) from the reader, under a deadline
// of its own: the caller's write deadline if that is later, else
// controlReplyWait. Without one, a peer that floods pings and never reads
// would block the reader in this write for good, out of reach of its read
// deadline. The caller's deadline is back in force afterwards.
func (c *wsConn) pong(p []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return errConnClosed
	}
	c.wdlMu.Lock()
	defer c.wdlMu.Unlock()
	c.nc.SetWriteDeadline(later(c.wdl, time.Now().Add(controlReplyWait)))
	defer c.nc.SetWriteDeadline(c.wdl)
	return c.writeLocked(opPong, true, p)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// AnswerControl is the reader of a connection that only sends: it answers
// pings (a peer may send them at any time, §5.5.2), takes the peer's
// close, and drops any data, until the connection ends.
func (c *wsConn) AnswerControl() {
	for {
		if _, _, _, err := c.NextFrame(); err != nil {
			return
		}
	}
}

// readFailed makes err sticky and, for a protocol failure, fails the
// connection: it sends the matching close code, lets the peer read it, and
// drops TCP (§7.1.7).
func (c *wsConn) readFailed(err error) error {
	if c.rerr != nil {
		return c.rerr
	}
	defer c.endReading()
	var ce *closeError
	if errors.As(err, &ce) {
		c.rerr = err
		return err
	}
	code := statusFor(err)
	if code == statusInternalError {
		// An I/O error: the peer is gone or the deadline passed.
		c.rerr = err
		c.closeTCP()
		return err
	}
	c.rerr = &closeError{Code: code, Reason: shortReason(err), Local: true}
	c.nc.SetWriteDeadline(time.Now().Add(failLinger))
	c.writeMu.Lock()
	if !c.closeSent {
		c.closeSent = true
		var p [maxControlPayload]byte
		binary.BigEndian.PutUint16(p[:], uint16(code))
		n := 2 + copy(p[2:], shortReason(err))
		c.writeLocked(opClose, true, p[:n])
	}
	c.writeMu.Unlock()
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(failLinger))
	io.Copy(io.Discard, c.nc)
	c.closeTCP()
	return fmt.Errorf("%w (%w)", c.rerr, err)
}

// shortReason fits an error's text into a close frame's reason.
func shortReason(err error) string {
	s := err.Error()
	if len(s) > maxControlPayload-2 {
		s = s[:maxControlPayload-2]
		for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 {
			s = s[:len(s)-1]
		}
		if len(s) > 0 && s[len(s)-1] >= 0xc0 {
			s = s[:len(s)-1]
		}
	}
	return s
}

// endReading wakes a Close waiting for the reader: nothing more will be read.
func (c *wsConn) endReading() { c.closeOnce.Do(func() { close(c.readEnded) }) }

func (c *wsConn) closeTCP() {
	if c.tcpClosed.CompareAndSwap(false, true) {
		c.nc.Close()
	}
}

// ---- writing ----

// nextKey returns a fresh masking key (§5.3), drawn from crypto/rand in
// batches so a frame costs an array read, not a system call.
func (c *wsConn) nextKey() uint32 {
	if c.keyNext == len(c.keys) {
		var raw [len(c.keys) * 4]byte
		rand.Read(raw[:])
		for i := range c.keys {
			c.keys[i] = binary.LittleEndian.Uint32(raw[i*4:])
		}
		c.keyNext = 0
	}
	k := c.keys[c.keyNext]
	c.keyNext++
	return k
}

// WriteMessage sends p as one frame.
func (c *wsConn) WriteMessage(op opcode, p []byte) error {
	return c.writeFrame(op, true, p)
}

// WriteFrame sends one frame, so callers can fragment a message.
func (c *wsConn) WriteFrame(op opcode, fin bool, p []byte) error {
	return c.writeFrame(op, fin, p)
}

// OnPong hands f the payload of every pong that arrives, on the goroutine
// that reads, while it holds the read lock: f must be quick. Set it before
// reading starts. Latency probes time their pings with it.
func (c *wsConn) OnPong(f func(payload []byte)) { c.onPong = f }

// Ping sends a ping with payload p (at most 125 bytes).
func (c *wsConn) Ping(p []byte) error {
	if len(p) > maxControlPayload {
		return fmt.Errorf("ping payload of %d bytes: %w", len(p), errProtocol)
	}
	return c.writeFrame(opPing, true, p)
}

func (c *wsConn) writeFrame(op opcode, fin bool, p []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return errConnClosed
	}
	return c.writeLocked(op, fin, p)
}

// wbufSize bounds the reusable write buffer: frames up to this payload go
// out in one Write from it; larger ones in pieces of this size.
const wbufSize = 64<<10 + maxHeaderLen

// writeLocked sends one frame with one Write (or writev) where it can: the
// header goes in front of the payload in a reusable buffer. A server's
// large payload rides beside its header in a writev instead of being
// copied; a client's must be copied anyway, to be masked.
func (c *wsConn) writeLocked(op opcode, fin bool, p []byte) error {
	if c.wbuf == nil {
		c.wbuf = make([]byte, min(wbufSize, maxHeaderLen+max(len(p), 512)))
	}
	var key uint32
	if c.isClient {
		key = c.nextKey()
	}
	n := putFrameHeader(c.wbuf, fin, op, len(p), c.isClient, key)
	if !c.isClient && c.writeVector && len(p) > len(c.wbuf)-n {
		c.wvecBack = [2][]byte{c.wbuf[:n], p}
		c.wvec = c.wvecBack[:]
		_, err := c.wvec.WriteTo(c.nc) // consumes c.wvec, not c.wvecBack
		c.wvecBack = [2][]byte{}
		return err
	}
	for {
		if len(p) > len(c.wbuf)-n && cap(c.wbuf) < wbufSize {
			c.wbuf = append(c.wbuf[:cap(c.wbuf)], make([]byte, wbufSize-cap(c.wbuf))...)
		}
		m := copy(c.wbuf[n:], p)
		if c.isClient {
			key = mask(key, c.wbuf[n:n+m])
		}
		if _, err := c.nc.Write(c.wbuf[:n+m]); err != nil {
			return err
		}
		p = p[m:]
		if len(p) == 0 {
			return nil
		}
		n = 0
	}
}

// ---- closing ----

// Close runs the close handshake (§7.1.2): it sends a close frame with
// code and reason, waits up to closeWait for the peer's, then drops TCP.
// If another goroutine is reading, that reader sees the peer's close;
// otherwise Close reads (and discards) until it arrives.
func (c *wsConn) Close(code statusCode, reason string) error {
	if c.tcpClosed.Load() {
		return nil
	}
	c.writeMu.Lock()
	sent := c.closeSent
	var err error
	if !sent {
		c.closeSent = true
		var p [maxControlPayload]byte
		binary.BigEndian.PutUint16(p[:], uint16(code))
		n := 2 + copy(p[2:], reason)
		for n > 2 && n-2 < len(reason) && reason[n-2]&0xc0 == 0x80 {
			n-- // cut before the code point that did not fit whole
		}
		c.nc.SetWriteDeadline(time.Now().Add(closeWait))
		err = c.writeLocked(opClose, true, p[:n])
	}
	c.writeMu.Unlock()
	if err != nil {
		c.closeTCP()
		return err
	}
	if c.readMu.TryLock() {
		c.nc.SetReadDeadline(time.Now().Add(closeWait))
		for c.rerr == nil {
			if _, _, _, err := c.nextFrame(); err != nil {
				break
			}
		}
		c.readMu.Unlock()
	} else {
		select {
		case <-c.readEnded:
		case <-time.After(closeWait):
		}
	}
	c.closeTCP()
	return nil
}

// Abort drops the connection without a handshake (a peer that is gone).
func (c *wsConn) Abort() { c.closeTCP() }

package main

// ws.go is wperf's WebSocket engine (RFC 6455): the connection, which
// reads and writes frames and messages, answers control frames and runs
// the close handshake. It knows nothing about tests. The bulk-data paths
// are built so that a 64 KiB frame costs no allocation, at most one system
// call to send, and no byte-by-byte work when its payload is thrown away.
// Reading is in ws_read.go, the frame codec in ws_frame.go, the opening
// handshakes in ws_handshake.go, batched writes in ws_batch.go.
//
// Methods that the rest of wperf calls are capitalised, as if these files
// were a package of their own; helpers inside them are not.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
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

// WriteMessageWithin sends one message that must leave within d, then
// lifts the bound. Writers sharing a connection take turns here, so one
// lifting its bound never frees another's write from its own: a peer that
// stops reading fails every such write in time.
func (c *wsConn) WriteMessageWithin(op opcode, p []byte, d time.Duration) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return errConnClosed
	}
	c.SetWriteDeadline(time.Now().Add(d))
	defer c.SetWriteDeadline(time.Time{})
	return c.writeLocked(op, true, p)
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

package main

// ws.go is wperf's WebSocket engine (RFC 6455). It knows frames, messages
// and the close handshake, and nothing about tests. The bulk-data paths are
// built so that a 64 KiB frame costs no allocation, at most one system call
// to send, and no byte-by-byte work when its payload is thrown away.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// opcode is a frame's type (RFC 6455 §5.2).
type opcode byte

const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xA
)

func (op opcode) isControl() bool { return op&0x8 != 0 }

// statusCode is a close frame's status (RFC 6455 §7.4).
type statusCode uint16

const (
	statusNormal          statusCode = 1000
	statusGoingAway       statusCode = 1001
	statusProtocolError   statusCode = 1002
	statusNoStatus        statusCode = 1005 // never on the wire: an empty close payload
	statusInvalidPayload  statusCode = 1007
	statusPolicyViolation statusCode = 1008
	statusMessageTooBig   statusCode = 1009
	statusInternalError   statusCode = 1011
	statusTryAgainLater   statusCode = 1013
)

// validOnWire reports whether a peer may send code in a close frame: the
// codes RFC 6455 §7.4.1 and the IANA registry define for use, plus the
// ranges for libraries (3000-3999) and applications (4000-4999).
func (code statusCode) validOnWire() bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

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
	errProtocol       = errors.New("websocket protocol error")       // 1002
	errInvalidUTF8    = errors.New("websocket text is not UTF-8")    // 1007
	errMessageTooBig  = errors.New("websocket message too big")      // 1009
	errBadHandshake   = errors.New("websocket handshake failed")     // HTTP-level
	errConnClosed     = errors.New("websocket connection is closed") // use after close
	errUnsupportedURL = errors.New("unsupported URL scheme")
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
	maxHeaderLen      = 14 // 2 + 8 (64-bit length) + 4 (mask key)
	maxControlPayload = 125
	defaultMaxMessage = 16 << 20
	closeWait         = 5 * time.Second // how long we wait for the peer's close
	failLinger        = time.Second     // how long a failed connection lingers so the peer reads our close
	keyBatch          = 256             // masking keys drawn from crypto/rand at once
)

// frameHeader is the decoded start of a frame (RFC 6455 §5.2).
type frameHeader struct {
	fin    bool
	op     opcode
	masked bool
	key    uint32 // the masking key's 4 bytes, in wire order, little-endian
	length int64
}

// parseFrameHeader decodes the frame header at the start of b. It returns
// n == 0 and no error when b is too short to hold the whole header yet.
// Rules that need no connection state are checked here: RSV bits (we
// negotiate no extension, §5.2), reserved opcodes, the 64-bit length's top
// bit (§5.2), and control frames being short and unfragmented (§5.5).
func parseFrameHeader(b []byte) (h frameHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, 0, fmt.Errorf("%w: reserved bits set (0x%02x)", errProtocol, b[0]&0x70)
	}
	h.op = opcode(b[0] & 0x0f)
	switch h.op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, 0, fmt.Errorf("%w: reserved opcode %d", errProtocol, h.op)
	}
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return h, 0, fmt.Errorf("%w: 64-bit length has its top bit set", errProtocol)
		}
		h.length = int64(u)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.op.isControl() && (!h.fin || h.length > maxControlPayload) {
		return h, 0, fmt.Errorf("%w: control frame fragmented or over 125 bytes", errProtocol)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, 0, nil
		}
		h.key = binary.LittleEndian.Uint32(b[n:])
		n += 4
	}
	return h, n, nil
}

// putFrameHeader writes a header into b (at least maxHeaderLen long) and
// returns its length. A non-zero key means the frame is masked; clients
// always use one (crypto/rand may give 0, which masks as a no-op but is
// still sent as a key, so masked says which it is).
func putFrameHeader(b []byte, fin bool, op opcode, length int, masked bool, key uint32) int {
	b[0] = byte(op)
	if fin {
		b[0] |= 0x80
	}
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	n := 2
	switch {
	case length <= 125:
		b[1] = maskBit | byte(length)
	case length <= 0xffff:
		b[1] = maskBit | 126
		binary.BigEndian.PutUint16(b[2:], uint16(length))
		n = 4
	default:
		b[1] = maskBit | 127
		binary.BigEndian.PutUint64(b[2:], uint64(length))
		n = 10
	}
	if masked {
		binary.LittleEndian.PutUint32(b[n:], key)
		n += 4
	}
	return n
}

// mask XORs b in place with the masking key (RFC 6455 §5.3) and returns the
// key rotated past len(b) bytes, so a payload can be masked in pieces.
//
// The bulk runs on aligned machine words, sixteen per loop turn: aligned
// because MIPS and older ARM fault on unaligned word access, and the key
// word is loaded from memory the same way as the data so the result holds
// on either byte order.
func mask(key uint32, b []byte) uint32 {
	for len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))&7 != 0 {
		b[0] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
		b = b[1:]
	}
	if len(b) >= 8 {
		var pattern [8]byte
		binary.LittleEndian.PutUint32(pattern[0:], key)
		binary.LittleEndian.PutUint32(pattern[4:], key)
		k := *(*uint64)(unsafe.Pointer(&pattern))
		for len(b) >= 128 {
			w := (*[16]uint64)(unsafe.Pointer(&b[0]))
			w[0] ^= k
			w[1] ^= k
			w[2] ^= k
			w[3] ^= k
			w[4] ^= k
			w[5] ^= k
			w[6] ^= k
			w[7] ^= k
			w[8] ^= k
			w[9] ^= k
			w[10] ^= k
			w[11] ^= k
			w[12] ^= k
			w[13] ^= k
			w[14] ^= k
			w[15] ^= k
			b = b[128:]
		}
		for len(b) >= 8 {
			*(*uint64)(unsafe.Pointer(&b[0])) ^= k
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	return key
}

// utf8Validator checks text as it arrives, so an invalid sequence fails at
// its first bad byte even in the middle of a fragment (RFC 6455 §8.1).
// It tracks how many continuation bytes the current sequence still needs
// and the range the next one must fall in, which rules out overlong forms,
// surrogates (U+D800-DFFF) and code points above U+10FFFF (RFC 3629 §4).
type utf8Validator struct {
	need   uint8
	lo, hi byte
}

// feed checks b and reports whether it is still valid so far.
func (v *utf8Validator) feed(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if v.need == 0 {
			for len(b)-i >= 8 && binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 == 0 {
				i += 8
			}
			if i == len(b) {
				break
			}
			c := b[i]
			switch {
			case c < 0x80:
			case c >= 0xc2 && c <= 0xdf:
				v.need, v.lo, v.hi = 1, 0x80, 0xbf
			case c == 0xe0:
				v.need, v.lo, v.hi = 2, 0xa0, 0xbf
			case c == 0xed:
				v.need, v.lo, v.hi = 2, 0x80, 0x9f
			case c >= 0xe1 && c <= 0xef:
				v.need, v.lo, v.hi = 2, 0x80, 0xbf
			case c == 0xf0:
				v.need, v.lo, v.hi = 3, 0x90, 0xbf
			case c >= 0xf1 && c <= 0xf3:
				v.need, v.lo, v.hi = 3, 0x80, 0xbf
			case c == 0xf4:
				v.need, v.lo, v.hi = 3, 0x80, 0x8f
			default:
				return false
			}
			continue
		}
		if c := b[i]; c < v.lo || c > v.hi {
			return false
		}
		v.need--
		v.lo, v.hi = 0x80, 0xbf
	}
	return true
}

// complete reports whether the text ended on a whole code point.
func (v *utf8Validator) complete() bool { return v.need == 0 }

// parseClosePayload decodes a close frame's body (RFC 6455 §5.5.1): empty,
// or a valid status code followed by a UTF-8 reason.
func parseClosePayload(p []byte) (statusCode, string, error) {
	switch {
	case len(p) == 0:
		return statusNoStatus, "", nil
	case len(p) == 1:
		return 0, "", fmt.Errorf("%w: 1-byte close payload", errProtocol)
	}
	code := statusCode(binary.BigEndian.Uint16(p))
	if !code.validOnWire() {
		return 0, "", fmt.Errorf("%w: close code %d", errProtocol, code)
	}
	var v utf8Validator
	if !v.feed(p[2:]) || !v.complete() {
		return 0, "", fmt.Errorf("%w: close reason is not UTF-8", errProtocol)
	}
	return code, string(p[2:]), nil
}

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

	writeMu   sync.Mutex
	wbuf      []byte      // header + payload of one frame, reused
	wvec      net.Buffers // header and payload for writev
	wvecBack  [2][]byte   // wvec's storage, so building it allocates nothing
	keys      [keyBatch]uint32
	keyNext   int
	closeSent bool

	closeOnce   sync.Once
	readEnded   chan struct{} // closed when the peer's close arrives or reading fails
	peerClose   atomic.Pointer[closeError]
	tcpClosed   atomic.Bool
	writeVector bool // nc takes net.Buffers in one writev
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
	_, c.writeVector = nc.(*net.TCPConn)
	return c
}

// setLimits changes the message limit and grows the read buffer once a
// connection's role is known (a test stream with large messages, say).
// Bytes already buffered are kept.
func (c *wsConn) setLimits(maxMessage int64, readBuffer int) {
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

// netConn is the underlying connection, for socket options and addresses.
func (c *wsConn) netConn() net.Conn { return c.nc }

func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// ---- reading ----

// fill makes sure at least n bytes are buffered, reading as much as the
// buffer holds in each system call.
func (c *wsConn) fill(n int) error {
	for c.rend-c.rpos < n {
		if c.rpos > 0 && len(c.rbuf)-c.rpos < n {
			c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
			c.rpos = 0
		}
		m, err := c.nc.Read(c.rbuf[c.rend:])
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

// ReadMessage reads a whole message, reassembling fragments, into buf
// (grown when needed, up to the size limit) and returns its type and
// bytes.
func (c *wsConn) ReadMessage(buf []byte) (opcode, []byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	buf = buf[:0]
	var op opcode
	for {
		mop, length, fin, err := c.nextFrame()
		if err != nil {
			return 0, buf, err
		}
		op = mop
		need := len(buf) + int(length)
		if cap(buf) < need {
			// Grow geometrically (within the limit): many small
			// fragments must not cost a copy of the message each.
			grown := make([]byte, len(buf), min(max(need, 2*cap(buf)), int(c.maxMessage)))
			copy(grown, buf)
			buf = grown
		}
		for c.left > 0 {
			n, err := c.readPayload(buf[len(buf):need])
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

// handleControl reads a control frame's payload and acts on it (§5.5):
// a ping gets a pong with the same payload, a pong is ignored, a close is
// answered and ends reading.
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
		if err := c.writeFrame(opPong, true, p); err != nil && !errors.Is(err, errConnClosed) {
			return err
		}
		return nil
	case opPong:
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

// frameBatch lays many frames back to back for one writev, the bulk-data
// path: headers (and any masked prefix, such as a sequence number) go in
// the batch's own scratch, payloads are referenced where they lie. Filler
// payload is sent exactly as given: from a client, the random bytes stand
// for the masked form, so no byte of it is XORed. Use it only for content
// whose value does not matter.
type frameBatch struct {
	c       *wsConn
	scratch []byte
	used    int
	vec     net.Buffers // backing array of iovecs, reused
	out     net.Buffers // the slice of vec handed to writev, consumed by it
	flat    []byte      // for connections without writev: the batch in one piece
}

// newBatch makes a batch for up to frames frames, each with a masked
// prefix of at most prefixMax bytes.
func (c *wsConn) newBatch(frames, prefixMax int) *frameBatch {
	return &frameBatch{
		c:       c,
		scratch: make([]byte, frames*(maxHeaderLen+prefixMax)),
		vec:     make(net.Buffers, 0, 2*frames),
	}
}

// add appends one frame: prefix (masked when we are a client) then filler.
func (b *frameBatch) add(op opcode, prefix, filler []byte) {
	c := b.c
	var key uint32
	if c.isClient {
		// The key store is shared with frames written under writeMu,
		// such as the pongs a concurrent reader sends.
		c.writeMu.Lock()
		key = c.nextKey()
		c.writeMu.Unlock()
	}
	h := b.scratch[b.used:]
	n := putFrameHeader(h, true, op, len(prefix)+len(filler), c.isClient, key)
	m := copy(h[n:], prefix)
	if c.isClient {
		mask(key, h[n:n+m])
	}
	b.vec = append(b.vec, h[:n+m:n+m])
	b.used += n + m
	if len(filler) > 0 {
		b.vec = append(b.vec, filler)
	}
}

// flush sends the batch in one system call (writev, or one Write of a
// flattened copy where the connection has no writev) and empties it.
func (b *frameBatch) flush() error {
	c := b.c
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	defer b.reset()
	if c.closeSent {
		return errConnClosed
	}
	if c.writeVector {
		b.out = b.vec
		_, err := b.out.WriteTo(c.nc)
		return err
	}
	b.flat = b.flat[:0]
	for _, v := range b.vec {
		b.flat = append(b.flat, v...)
	}
	_, err := c.nc.Write(b.flat)
	return err
}

func (b *frameBatch) reset() {
	clear(b.vec)
	b.vec = b.vec[:0]
	b.used = 0
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

// ---- handshakes (RFC 6455 §4) ----

// acceptGUID is the fixed string of §1.3 that proves the server read the key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// headerTokens splits every value of a comma-separated header into
// trimmed tokens.
func headerTokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func hasToken(h http.Header, name, token string) bool {
	for _, t := range headerTokens(h, name) {
		if strings.EqualFold(t, token) {
			return true
		}
	}
	return false
}

// isUpgrade tells a WebSocket opening handshake from a plain request.
func isUpgrade(r *http.Request) bool {
	return hasToken(r.Header, "Upgrade", "websocket") && hasToken(r.Header, "Connection", "upgrade")
}

// upgradeOptions are the server's choices for one upgrade.
type upgradeOptions struct {
	connOptions
	subprotocols []string // ours, most preferred first
}

// upgrade answers a client's opening handshake (§4.2) and takes the
// connection over from net/http. A bad request gets a plain 400 (426 for a
// version we do not speak) and no upgrade.
func upgrade(w http.ResponseWriter, r *http.Request, opt upgradeOptions) (*wsConn, error) {
	fail := func(status int, why string) (*wsConn, error) {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, why, status)
		return nil, fmt.Errorf("%w: %s", errBadHandshake, why)
	}
	switch {
	case r.Method != http.MethodGet:
		return fail(http.StatusBadRequest, "websocket handshake must use GET")
	case !hasToken(r.Header, "Upgrade", "websocket"):
		return fail(http.StatusBadRequest, "missing Upgrade: websocket")
	case !hasToken(r.Header, "Connection", "upgrade"):
		return fail(http.StatusBadRequest, "missing Connection: upgrade")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return fail(http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (want 13)")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return fail(http.StatusBadRequest, "bad Sec-WebSocket-Key")
	}
	chosen := chooseSubprotocol(headerTokens(r.Header, "Sec-WebSocket-Protocol"), opt.subprotocols)
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fail(http.StatusInternalServerError, "connection cannot be taken over")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack: %w", err)
	}
	nc.SetDeadline(time.Time{}) // net/http's timeouts end with HTTP
	var resp bytes.Buffer
	resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	resp.WriteString(acceptKey(key))
	if chosen != "" {
		resp.WriteString("\r\nSec-WebSocket-Protocol: ")
		resp.WriteString(chosen)
	}
	resp.WriteString("\r\n\r\n")
	nc.SetWriteDeadline(time.Now().Add(closeWait))
	if _, err := nc.Write(resp.Bytes()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	nc.SetWriteDeadline(time.Time{})
	// A client may send its first frame right behind the request; net/http
	// may already have read it.
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	c := newConn(nc, false, opt.connOptions, buffered)
	c.subprotocol = chosen
	return c, nil
}

// chooseSubprotocol picks our most preferred protocol that the client
// offered, or "" when we share none.
func chooseSubprotocol(offered, ours []string) string {
	for _, p := range ours {
		for _, o := range offered {
			if o == p {
				return p
			}
		}
	}
	return ""
}

// dialOptions are the client's choices for one connection.
type dialOptions struct {
	connOptions
	header       http.Header // extra request headers, such as Authorization
	subprotocols []string
	// dial opens the transport; nil means a plain TCP dial. TLS and
	// proxies plug in here.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// handshakeError is a server's refusal to upgrade: its HTTP status and
// the start of its body, which usually says why.
type handshakeError struct {
	Status  int
	Message string
}

func (e *handshakeError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func (e *handshakeError) Unwrap() error { return errBadHandshake }

// wsURL parses a ws:// (or http://) URL, adding the default port.
func wsURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "ws", "http":
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "80")
		}
	default:
		return nil, fmt.Errorf("%w %q (want ws://)", errUnsupportedURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// dialWS opens a WebSocket to rawURL (§4.1). The context bounds the TCP
// connect and the handshake together.
func dialWS(ctx context.Context, rawURL string, opt dialOptions) (*wsConn, error) {
	u, err := wsURL(rawURL)
	if err != nil {
		return nil, err
	}
	dial := opt.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	c, err := clientHandshake(ctx, nc, u, opt)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func clientHandshake(ctx context.Context, nc net.Conn, u *url.URL, opt dialOptions) (*wsConn, error) {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var raw [16]byte
	rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	host := u.Host
	if (u.Scheme == "ws" || u.Scheme == "http") && u.Port() == "80" {
		host = strings.TrimSuffix(host, ":80")
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", u.RequestURI(), host)
	fmt.Fprintf(&req, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key)
	if len(opt.subprotocols) > 0 {
		fmt.Fprintf(&req, "Sec-WebSocket-Protocol: %s\r\n", strings.Join(opt.subprotocols, ", "))
	}
	for name, vals := range opt.header {
		for _, v := range vals {
			if strings.ContainsAny(name+v, "\r\n") {
				return nil, fmt.Errorf("header %q has a line break", name)
			}
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := nc.Write(req.Bytes()); err != nil {
		return nil, handshakeIOError(ctx, err)
	}

	br := bufio.NewReaderSize(nc, 4<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, handshakeIOError(ctx, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, &handshakeError{Status: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	switch {
	case !hasToken(resp.Header, "Upgrade", "websocket"), !hasToken(resp.Header, "Connection", "upgrade"):
		return nil, fmt.Errorf("%w: 101 without Upgrade: websocket", errBadHandshake)
	case resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return nil, fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errBadHandshake)
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		// We offer none, so the server may not pick any (§4.1).
		return nil, fmt.Errorf("%w: server chose extensions we did not offer", errBadHandshake)
	}
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	if proto != "" && chooseSubprotocol([]string{proto}, opt.subprotocols) == "" {
		return nil, fmt.Errorf("%w: server chose subprotocol %q, which we did not offer", errBadHandshake, proto)
	}
	nc.SetDeadline(time.Time{})
	buffered, _ := br.Peek(br.Buffered())
	c := newConn(nc, true, opt.connOptions, buffered)
	c.subprotocol = proto
	return c, nil
}

// handshakeIOError prefers the context's reason (timeout, cancel) over the
// I/O error it caused.
func handshakeIOError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("websocket handshake: %w", ctx.Err())
	}
	return fmt.Errorf("websocket handshake: %w", err)
}

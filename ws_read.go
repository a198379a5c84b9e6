package main

// ws_read.go is the reading half of the WebSocket engine (RFC 6455 §5–6):
// frames are parsed from the connection's own buffer, data is handed out
// in place or thrown away without being unmasked (a discarded payload is
// never copied), and control frames are answered as they arrive (§5.5).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

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

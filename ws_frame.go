package main

// ws_frame.go is the WebSocket frame codec (RFC 6455 §5): opcodes and
// close status codes, frame headers, masking, UTF-8 validation and close
// payloads. It works on byte slices alone, with no connection and no I/O,
// which is what ws_fuzz_test.go fuzzes; ws.go builds the connection on it.

import (
	"encoding/binary"
	"fmt"
	"math/bits"
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

// Frame sizes: the longest header (§5.2), and the largest control frame
// payload (§5.5).
const (
	maxHeaderLen      = 14 // 2 + 8 (64-bit length) + 4 (mask key)
	maxControlPayload = 125
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

package main

// Tests of the WebSocket engine in ws.go: a conformance table in the
// spirit of the Autobahn testsuite, driven by a hand-written client that
// speaks raw bytes over TCP, plus handshake, close and deadline tests and
// unit tests of the pieces. Everything talks to loopback only.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Bits of a frame's first byte, spelled out here rather than taken from
// ws.go so the test client is an independent reading of RFC 6455.
const (
	bitFIN  = 0x80
	bitRSV1 = 0x40
	bitRSV2 = 0x20
	bitRSV3 = 0x10
)

// wtDeadline bounds every raw exchange, so a server that stops answering
// fails the test instead of hanging it.
const wtDeadline = 20 * time.Second

// ---- building frames by hand ----

// wtHeader encodes a frame header with the given first byte and declared
// payload length, masked with key when masked is set. It always uses the
// shortest length form.
func wtHeader(first byte, length uint64, masked bool, key [4]byte) []byte {
	b := []byte{first}
	var mb byte
	if masked {
		mb = 0x80
	}
	switch {
	case length <= 125:
		b = append(b, mb|byte(length))
	case length <= 0xffff:
		b = append(b, mb|126, byte(length>>8), byte(length))
	default:
		b = append(b, mb|127)
		b = binary.BigEndian.AppendUint64(b, length)
	}
	if masked {
		b = append(b, key[:]...)
	}
	return b
}

// wtMaskBytes XORs p with key one byte at a time, starting at key byte
// off%4: the plain reading of RFC 6455 §5.3.
func wtMaskBytes(key [4]byte, off int, p []byte) {
	for i := range p {
		p[i] ^= key[(off+i)%4]
	}
}

// wtFrame is a whole frame as a client sends it: masked, with a random key.
func wtFrame(first byte, payload []byte) []byte {
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	return wtMaskedFrame(first, payload, key)
}

func wtMaskedFrame(first byte, payload []byte, key [4]byte) []byte {
	h := wtHeader(first, uint64(len(payload)), true, key)
	b := make([]byte, len(h)+len(payload))
	copy(b, h)
	copy(b[len(h):], payload)
	wtMaskBytes(key, 0, b[len(h):])
	return b
}

// wtUnmaskedFrame is a frame as a server sends it.
func wtUnmaskedFrame(first byte, payload []byte) []byte {
	return append(wtHeader(first, uint64(len(payload)), false, [4]byte{}), payload...)
}

// wtPartialFrame is the header of a frame that declares length bytes of
// payload, followed by only the given first bytes of it, masked. It shows
// that the server judges a frame before the rest of it arrives.
func wtPartialFrame(first byte, length uint64, start []byte) []byte {
	key := [4]byte{0x1f, 0x2e, 0x3d, 0x4c}
	b := wtHeader(first, length, true, key)
	p := bytes.Clone(start)
	wtMaskBytes(key, 0, p)
	return append(b, p...)
}

func wtClosePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func wtConcat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// wtASCII is n random printable ASCII bytes.
func wtASCII(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(' ' + r.IntN(95))
	}
	return b
}

// wtText is exactly n bytes of valid UTF-8 with code points of every
// length, so fragment boundaries fall inside them.
func wtText(r *rand.Rand, n int) []byte {
	runes := []rune{'a', 'Z', '~', 'é', 'ß', 'Ω', '€', '中', '\uffee', '😀', '\U0010fffd'}
	b := make([]byte, 0, n)
	for len(b) < n {
		ch := runes[r.IntN(len(runes))]
		if len(b)+utf8.RuneLen(ch) > n {
			ch = 'x'
		}
		b = utf8.AppendRune(b, ch)
	}
	return b
}

func wtBinary(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// wtFragments splits a message into frames of at most size bytes.
func wtFragments(op byte, msg []byte, size int) [][]byte {
	var out [][]byte
	for first := true; first || len(msg) > 0; first = false {
		n := min(size, len(msg))
		b := byte(0)
		if first {
			b = op
		}
		if n == len(msg) {
			b |= bitFIN
		}
		out = append(out, wtFrame(b, msg[:n]))
		msg = msg[n:]
	}
	return out
}

// ---- a raw client ----

// wtRaw is a client that does the opening handshake by hand and then
// writes whatever bytes a test chooses.
type wtRaw struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// wtRequest is an opening handshake request with the given key and extra
// header lines (each ending in \r\n).
func wtRequest(host, path, key, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// wtRFCKey is the example key of RFC 6455 §1.3, and wtRFCAccept its answer.
const (
	wtRFCKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	wtRFCAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// wtDialRaw connects to a test server, upgrades, and checks the answer.
// Bytes in first are sent in the same write as the request.
func wtDialRaw(t testing.TB, srv *httptest.Server, first []byte) *wtRaw {
	t.Helper()
	addr := srv.Listener.Addr().String()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(wtDeadline))
	req := append([]byte(wtRequest(addr, "/", wtRFCKey, "")), first...)
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading the handshake answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %s", resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wtRFCAccept {
		t.Fatalf("Sec-WebSocket-Accept = %q, want %q", got, wtRFCAccept)
	}
	return &wtRaw{t: t, nc: nc, br: br}
}

// write sends b, in pieces of chop bytes when chop > 0.
func (rc *wtRaw) write(b []byte, chop int) {
	rc.t.Helper()
	if chop <= 0 {
		chop = len(b)
	}
	for len(b) > 0 {
		n := min(chop, len(b))
		if _, err := rc.nc.Write(b[:n]); err != nil {
			rc.t.Fatalf("write: %v", err)
		}
		b = b[n:]
	}
}

// readServerFrame reads one frame from the server, which must not mask it.
func (rc *wtRaw) readServerFrame() (first byte, payload []byte, err error) {
	return rc.readFrame(false)
}

// readClientFrame reads a frame from a client, unmasking it; for raw servers.
func (rc *wtRaw) readClientFrame() (first byte, payload []byte, err error) {
	return rc.readFrame(true)
}

// readFrame is the test's own frame reader, independent of ws.go's, so
// the engine is never checked against itself. masked says which side
// sent the frame: a client must mask, a server must not.
func (rc *wtRaw) readFrame(masked bool) (first byte, payload []byte, err error) {
	var h [10]byte
	if _, err := io.ReadFull(rc.br, h[:2]); err != nil {
		return 0, nil, err
	}
	switch {
	case masked && h[1]&0x80 == 0:
		return 0, nil, errors.New("client sent an unmasked frame")
	case !masked && h[1]&0x80 != 0:
		return 0, nil, errors.New("server sent a masked frame")
	}
	length := uint64(h[1] & 0x7f)
	switch length {
	case 126:
		if _, err := io.ReadFull(rc.br, h[2:4]); err != nil {
			return 0, nil, err
		}
		length = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		if _, err := io.ReadFull(rc.br, h[2:10]); err != nil {
			return 0, nil, err
		}
		length = binary.BigEndian.Uint64(h[2:])
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(rc.br, key[:]); err != nil {
			return 0, nil, err
		}
	}
	if length > 64<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", length)
	}
	payload = make([]byte, length)
	if _, err := io.ReadFull(rc.br, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		wtMaskBytes(key, 0, payload)
	}
	return h[0], payload, nil
}

// wtEvent is what the server sent: a control frame, or a whole data
// message (fragments joined).
type wtEvent struct {
	op      opcode
	payload []byte
}

func (e wtEvent) String() string {
	if len(e.payload) > 32 {
		return fmt.Sprintf("op %d, %d bytes", e.op, len(e.payload))
	}
	return fmt.Sprintf("op %d %q", e.op, e.payload)
}

func (rc *wtRaw) nextEvent() (wtEvent, error) {
	var msg wtEvent
	inMsg := false
	for {
		first, p, err := rc.readServerFrame()
		if err != nil {
			return wtEvent{}, err
		}
		if first&0x70 != 0 {
			return wtEvent{}, fmt.Errorf("server set RSV bits: 0x%02x", first)
		}
		op := opcode(first & 0x0f)
		if op.isControl() {
			if inMsg {
				return wtEvent{}, fmt.Errorf("server interleaved control op %d inside a message; test expects none", op)
			}
			return wtEvent{op: op, payload: p}, nil
		}
		if op == opContinuation != inMsg {
			return wtEvent{}, fmt.Errorf("server broke fragmentation rules (op %d)", op)
		}
		if !inMsg {
			msg.op = op
		}
		inMsg = true
		msg.payload = append(msg.payload, p...)
		if first&bitFIN != 0 {
			return msg, nil
		}
	}
}

// expectClose reads the server's close frame, checks its code, and then
// checks that the server drops TCP without being asked to. want ==
// statusNoStatus accepts an empty close frame or 1000.
func (rc *wtRaw) expectClose(want statusCode) {
	rc.t.Helper()
	ev, err := rc.nextEvent()
	if err != nil {
		rc.t.Fatalf("want a close frame with %d, got error %v", want, err)
	}
	if ev.op != opClose {
		rc.t.Fatalf("want a close frame with %d, got %v", want, ev)
	}
	var got statusCode
	switch {
	case len(ev.payload) == 0:
		got = statusNoStatus
	case len(ev.payload) == 1:
		rc.t.Fatalf("server sent a 1-byte close payload")
	default:
		got = statusCode(binary.BigEndian.Uint16(ev.payload))
		if !utf8.Valid(ev.payload[2:]) {
			rc.t.Fatalf("close reason %q is not UTF-8", ev.payload[2:])
		}
	}
	if got != want && !(want == statusNoStatus && got == statusNormal) {
		rc.t.Fatalf("close code = %d (%q), want %d", got, ev.payload[min(2, len(ev.payload)):], want)
	}
	rc.expectEOF()
}

// expectEOF checks that the server closes TCP cleanly and sends nothing
// more.
func (rc *wtRaw) expectEOF() {
	rc.t.Helper()
	b, err := rc.br.ReadByte()
	if err == nil {
		rc.t.Fatalf("server sent byte 0x%02x after its close frame", b)
	}
	if err != io.EOF {
		rc.t.Fatalf("want the server to close TCP, got %v", err)
	}
}

// ---- conformance ----

// wtCase is one conformance case: bytes to send, what must come back,
// and how the connection ends.
type wtCase struct {
	name  string
	limit int64    // the echo server's message limit; 0 means 1 MiB
	send  [][]byte // written in order, each in one write (or chopped)
	chop  int      // > 0: write in pieces of this many bytes
	want  []wtEvent
	// close is the code of the close frame the server must send next,
	// after which it must drop TCP. 0 means the server must not close: the
	// test then closes with 1000 and expects only that echoed back, which
	// also proves nothing unexpected came before.
	close statusCode
}

func wtMsg(op opcode, p []byte) wtEvent { return wtEvent{op: op, payload: p} }

func conformanceCases() []wtCase {
	r := rand.New(rand.NewPCG(1, 2))
	var cases []wtCase
	add := func(c ...wtCase) { cases = append(cases, c...) }

	// 1. Framing: every length encoding and its edges.
	for _, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		for _, chop := range []int{0, 997} {
			text := wtASCII(r, n)
			bin := wtBinary(r, n)
			suffix := ""
			if chop > 0 {
				suffix = " in 997-byte chops"
			}
			add(wtCase{name: fmt.Sprintf("framing/text %d bytes%s", n, suffix), chop: chop,
				send: [][]byte{wtFrame(bitFIN|byte(opText), text)}, want: []wtEvent{wtMsg(opText, text)}})
			add(wtCase{name: fmt.Sprintf("framing/binary %d bytes%s", n, suffix), chop: chop,
				send: [][]byte{wtFrame(bitFIN|byte(opBinary), bin)}, want: []wtEvent{wtMsg(opBinary, bin)}})
		}
	}
	add(wtCase{name: "framing/two messages in one write",
		send: [][]byte{wtConcat(wtFrame(0x81, []byte("one")), wtFrame(0x82, []byte("two")))},
		want: []wtEvent{wtMsg(opText, []byte("one")), wtMsg(opBinary, []byte("two"))}})
	add(wtCase{name: "framing/unmasked client frame", close: statusProtocolError,
		send: [][]byte{wtUnmaskedFrame(0x81, []byte("hello"))}})
	add(wtCase{name: "framing/64-bit length with top bit set", close: statusProtocolError,
		send: [][]byte{{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}}})

	// 2. Ping and pong.
	ping125 := wtBinary(r, 125)
	add(wtCase{name: "ping/empty answered", send: [][]byte{wtFrame(0x89, nil)},
		want: []wtEvent{wtMsg(opPong, []byte{})}})
	add(wtCase{name: "ping/125 bytes answered", send: [][]byte{wtFrame(0x89, ping125)},
		want: []wtEvent{wtMsg(opPong, ping125)}})
	add(wtCase{name: "ping/125 bytes byte by byte", send: [][]byte{wtFrame(0x89, ping125)}, chop: 1,
		want: []wtEvent{wtMsg(opPong, ping125)}})
	add(wtCase{name: "ping/126 bytes", send: [][]byte{wtFrame(0x89, wtBinary(r, 126))}, close: statusProtocolError})
	add(wtCase{name: "ping/unsolicited pong ignored",
		send: [][]byte{wtFrame(0x8a, []byte("unasked")), wtFrame(0x81, []byte("after the pong"))},
		want: []wtEvent{wtMsg(opText, []byte("after the pong"))}})
	add(wtCase{name: "ping/ten pings in one write",
		send: [][]byte{bytes.Repeat(wtFrame(0x89, []byte("p")), 10)},
		want: wtRepeat(wtMsg(opPong, []byte("p")), 10)})

	// 3. Reserved bits.
	for _, bit := range []struct {
		name string
		b    byte
	}{{"RSV1", bitRSV1}, {"RSV2", bitRSV2}, {"RSV3", bitRSV3}} {
		add(wtCase{name: "reserved bits/" + bit.name + " on text", close: statusProtocolError,
			send: [][]byte{wtFrame(bitFIN|bit.b|byte(opText), []byte("x"))}})
		add(wtCase{name: "reserved bits/" + bit.name + " on ping", close: statusProtocolError,
			send: [][]byte{wtFrame(bitFIN|bit.b|byte(opPing), []byte("x"))}})
	}
	add(wtCase{name: "reserved bits/RSV1 after a good message", close: statusProtocolError,
		send: [][]byte{wtFrame(0x81, []byte("ok")), wtFrame(bitFIN|bitRSV1|byte(opText), []byte("x"))},
		want: []wtEvent{wtMsg(opText, []byte("ok"))}})

	// 4. Reserved opcodes.
	for _, op := range []byte{3, 4, 5, 6, 7, 11, 12, 13, 14, 15} {
		add(wtCase{name: fmt.Sprintf("opcodes/reserved %d", op), close: statusProtocolError,
			send: [][]byte{wtFrame(bitFIN|op, nil)}})
	}

	// 5. Fragmentation.
	add(wtCase{name: "fragments/binary in three, one empty",
		send: [][]byte{wtFrame(0x02, []byte("ab")), wtFrame(0x00, nil), wtFrame(0x80, []byte("cd"))},
		want: []wtEvent{wtMsg(opBinary, []byte("abcd"))}})
	add(wtCase{name: "fragments/ping without FIN", close: statusProtocolError,
		send: [][]byte{wtFrame(byte(opPing), []byte("x"))}})
	add(wtCase{name: "fragments/close without FIN", close: statusProtocolError,
		send: [][]byte{wtFrame(byte(opClose), wtClosePayload(1000, ""))}})
	add(wtCase{name: "fragments/ping between fragments answered first",
		send: [][]byte{wtFrame(0x01, []byte("Hello, ")), wtFrame(0x89, []byte("mid")), wtFrame(0x80, []byte("world"))},
		want: []wtEvent{wtMsg(opPong, []byte("mid")), wtMsg(opText, []byte("Hello, world"))}})
	add(wtCase{name: "fragments/pong between fragments ignored",
		send: [][]byte{wtFrame(0x02, []byte{1}), wtFrame(0x8a, nil), wtFrame(0x80, []byte{2})},
		want: []wtEvent{wtMsg(opBinary, []byte{1, 2})}})
	add(wtCase{name: "fragments/continuation with no start", close: statusProtocolError,
		send: [][]byte{wtFrame(0x80, []byte("x"))}})
	add(wtCase{name: "fragments/unfinished continuation with no start", close: statusProtocolError,
		send: [][]byte{wtFrame(0x00, []byte("x"))}})
	add(wtCase{name: "fragments/continuation after a finished message", close: statusProtocolError,
		send: [][]byte{wtFrame(0x81, []byte("done")), wtFrame(0x80, []byte("more"))},
		want: []wtEvent{wtMsg(opText, []byte("done"))}})
	add(wtCase{name: "fragments/new text while one is unfinished", close: statusProtocolError,
		send: [][]byte{wtFrame(0x01, []byte("a")), wtFrame(0x81, []byte("b"))}})
	add(wtCase{name: "fragments/new binary while text is unfinished", close: statusProtocolError,
		send: [][]byte{wtFrame(0x01, []byte("a")), wtFrame(0x02, []byte("b"))}})

	// 6. UTF-8.
	mixed := []byte("κόσμε € 中 😀 \U0010fffd ok")
	add(wtCase{name: "utf8/multi-byte text in one frame",
		send: [][]byte{wtFrame(0x81, mixed)}, want: []wtEvent{wtMsg(opText, mixed)}})
	add(wtCase{name: "utf8/one-byte fragments split inside code points",
		send: wtFragments(byte(opText), mixed, 1), want: []wtEvent{wtMsg(opText, mixed)}})
	add(wtCase{name: "utf8/fragments split inside code points written byte by byte", chop: 1,
		send: wtFragments(byte(opText), mixed, 3), want: []wtEvent{wtMsg(opText, mixed)}})
	var atBoundaries [][]byte
	for i, s := range strings.SplitAfter(string(mixed), " ") {
		b := byte(opContinuation)
		if i == 0 {
			b = byte(opText)
		}
		atBoundaries = append(atBoundaries, wtFrame(b, []byte(s)))
	}
	atBoundaries = append(atBoundaries, wtFrame(0x80, nil))
	add(wtCase{name: "utf8/fragments split at code points",
		send: atBoundaries, want: []wtEvent{wtMsg(opText, mixed)}})
	for _, bad := range []struct{ name, s string }{
		{"byte ff", "ab\xffcd"},
		{"lone continuation byte", "\x80"},
		{"surrogate ED A0 80", "a\xed\xa0\x80z"},
		{"surrogate ED BF BF", "\xed\xbf\xbf"},
		{"overlong C0 AF", "\xc0\xaf"},
		{"overlong C1 BF", "\xc1\xbf"},
		{"overlong E0 80 AF", "\xe0\x80\xaf"},
		{"overlong F0 80 80 AF", "\xf0\x80\x80\xaf"},
		{"above U+10FFFF F4 90 80 80", "\xf4\x90\x80\x80"},
		{"F5 lead byte", "\xf5\x80\x80\x80"},
		{"truncated at the end", "abc\xe2\x82"},
		{"lead byte then ASCII", "\xceA"},
	} {
		add(wtCase{name: "utf8/invalid " + bad.name, close: statusInvalidPayload,
			send: [][]byte{wtFrame(0x81, []byte(bad.s))}})
		add(wtCase{name: "utf8/invalid " + bad.name + " split in 1-byte fragments", close: statusInvalidPayload,
			send: wtFragments(byte(opText), []byte(bad.s), 1)})
	}
	add(wtCase{name: "utf8/message ends inside a code point at an empty final fragment", close: statusInvalidPayload,
		send: [][]byte{wtFrame(0x01, []byte("a\xce")), wtFrame(0x80, nil)}})
	add(wtCase{name: "utf8/binary is not checked",
		send: [][]byte{wtFrame(0x82, []byte("\xff\xed\xa0\x80"))}, want: []wtEvent{wtMsg(opBinary, []byte("\xff\xed\xa0\x80"))}})
	// Failing fast: the frame declares 1 MiB, but only its first 997 bytes
	// are ever sent. A server that waited for the whole frame would time
	// the test out instead of answering 1007.
	early := wtASCII(r, 997)
	early[100] = 0xff
	add(wtCase{name: "utf8/fails fast in the first chop of a large frame", limit: 16 << 20, close: statusInvalidPayload,
		send: [][]byte{wtPartialFrame(0x81, 1<<20, early)}})
	add(wtCase{name: "utf8/fails fast in a large continuation frame", limit: 16 << 20, close: statusInvalidPayload,
		send: [][]byte{wtFrame(0x01, []byte("fine so far ")), wtPartialFrame(0x80, 1<<20, early)}})

	// 7. Close.
	add(wtCase{name: "close/empty payload", close: statusNoStatus, send: [][]byte{wtFrame(0x88, nil)}})
	add(wtCase{name: "close/2-byte payload", close: statusNormal, send: [][]byte{wtFrame(0x88, wtClosePayload(1000, ""))}})
	add(wtCase{name: "close/123-byte payload", close: statusNormal,
		send: [][]byte{wtFrame(0x88, wtClosePayload(1000, strings.Repeat("r", 121)))}})
	add(wtCase{name: "close/125-byte payload with UTF-8 reason", close: statusGoingAway,
		send: [][]byte{wtFrame(0x88, wtClosePayload(1001, strings.Repeat("é", 61)+"!"))}})
	add(wtCase{name: "close/1-byte payload", close: statusProtocolError, send: [][]byte{wtFrame(0x88, []byte{0x03})}})
	add(wtCase{name: "close/126-byte payload", close: statusProtocolError,
		send: [][]byte{wtFrame(0x88, wtClosePayload(1000, strings.Repeat("r", 124)))}})
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add(wtCase{name: fmt.Sprintf("close/invalid code %d", code), close: statusProtocolError,
			send: [][]byte{wtFrame(0x88, wtClosePayload(code, ""))}})
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(wtCase{name: fmt.Sprintf("close/valid code %d echoed", code), close: statusCode(code),
			send: [][]byte{wtFrame(0x88, wtClosePayload(code, "bye"))}})
	}
	add(wtCase{name: "close/reason not UTF-8", close: statusProtocolError,
		send: [][]byte{wtFrame(0x88, wtClosePayload(1000, "bad \xce\xba\xe1\xbd"))}})
	add(wtCase{name: "close/ping after close gets no pong", close: statusNormal,
		send: [][]byte{wtConcat(wtFrame(0x88, wtClosePayload(1000, "")), wtFrame(0x89, []byte("late")))}})
	add(wtCase{name: "close/text after close not echoed", close: statusNormal,
		send: [][]byte{wtConcat(wtFrame(0x88, wtClosePayload(1000, "")), wtFrame(0x81, []byte("late")))}})
	add(wtCase{name: "close/in the middle of a fragmented message", close: statusNormal,
		send: [][]byte{wtFrame(0x01, []byte("part")), wtFrame(0x88, wtClosePayload(1000, ""))}})

	// 9. Limits.
	big := wtBinary(r, 16<<20)
	add(wtCase{name: "limits/16 MiB message at a 16 MiB limit", limit: 16 << 20,
		send: [][]byte{wtFrame(0x82, big)}, want: []wtEvent{wtMsg(opBinary, big)}})
	add(wtCase{name: "limits/single frame over the limit fails at its header", limit: 16 << 20, close: statusMessageTooBig,
		send: [][]byte{wtPartialFrame(0x82, 16<<20+1, nil)}})
	add(wtCase{name: "limits/text frame over the limit fails at its header", limit: 1 << 20, close: statusMessageTooBig,
		send: [][]byte{wtPartialFrame(0x81, 1<<20+1, []byte("abc"))}})
	add(wtCase{name: "limits/fragments exactly at the limit", limit: 1 << 20,
		send: wtFragments(byte(opBinary), big[:1<<20], 100<<10), want: []wtEvent{wtMsg(opBinary, big[:1<<20])}})
	add(wtCase{name: "limits/fragments over the limit fail at the passing header", limit: 1 << 20, close: statusMessageTooBig,
		send: [][]byte{wtFrame(0x02, big[:768<<10]), wtPartialFrame(0x80, 512<<10, nil)}})
	add(wtCase{name: "limits/running total that overflows int64", limit: 1 << 20, close: statusMessageTooBig,
		send: [][]byte{wtFrame(0x02, big[:100]), wtPartialFrame(0x80, math.MaxInt64, nil)}})

	// 10. Many fragments.
	msg64 := wtBinary(r, 64<<10)
	add(wtCase{name: "fragments/64 KiB binary in 1300-byte fragments",
		send: wtFragments(byte(opBinary), msg64, 1300), want: []wtEvent{wtMsg(opBinary, msg64)}})
	text64 := wtText(r, 64<<10)
	add(wtCase{name: "fragments/64 KiB text in 1300-byte fragments",
		send: wtFragments(byte(opText), text64, 1300), want: []wtEvent{wtMsg(opText, text64)}})
	return cases
}

func wtRepeat(e wtEvent, n int) []wtEvent {
	out := make([]wtEvent, n)
	for i := range out {
		out[i] = e
	}
	return out
}

// TestConformance runs the Autobahn-style table against echoHandler.
func TestConformance(t *testing.T) {
	servers := map[int64]*httptest.Server{}
	for _, limit := range []int64{1 << 20, 16 << 20} {
		srv := httptest.NewServer(echoHandler(limit, wtDeadline))
		t.Cleanup(srv.Close)
		servers[limit] = srv
	}
	for _, tc := range conformanceCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			limit := tc.limit
			if limit == 0 {
				limit = 1 << 20
			}
			srv := servers[limit]
			if srv == nil {
				t.Fatalf("no server with limit %d", limit)
			}
			rc := wtDialRaw(t, srv, nil)
			for _, b := range tc.send {
				rc.write(b, tc.chop)
			}
			for i, want := range tc.want {
				got, err := rc.nextEvent()
				if err != nil {
					t.Fatalf("event %d: want %v, got error %v", i, want, err)
				}
				if got.op != want.op || !bytes.Equal(got.payload, want.payload) {
					t.Fatalf("event %d: got %v, want %v", i, got, want)
				}
			}
			code := tc.close
			if code == 0 {
				rc.write(wtFrame(0x88, wtClosePayload(1000, "done")), 0)
				code = statusNormal
			}
			rc.expectClose(code)
		})
	}
}

// TestHandshakePipelinedFrame sends the first frame in the same write as
// the upgrade request: the server must not lose it.
func TestHandshakePipelinedFrame(t *testing.T) {
	srv := httptest.NewServer(echoHandler(1<<20, wtDeadline))
	defer srv.Close()
	frames := wtConcat(wtFrame(0x81, []byte("early bird")), wtFrame(0x89, []byte("p")))
	rc := wtDialRaw(t, srv, frames)
	for _, want := range []wtEvent{wtMsg(opText, []byte("early bird")), wtMsg(opPong, []byte("p"))} {
		got, err := rc.nextEvent()
		if err != nil || got.op != want.op || !bytes.Equal(got.payload, want.payload) {
			t.Fatalf("got %v (%v), want %v", got, err, want)
		}
	}
	rc.write(wtFrame(0x88, wtClosePayload(1000, "")), 0)
	rc.expectClose(statusNormal)
}

// ---- server handshake ----

// wtRawRequest sends a hand-written request and returns the answer.
func wtRawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(wtDeadline))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp
}

// wtProtoHandler upgrades offering our subprotocols, reports the one
// chosen, and echoes.
func wtProtoHandler(ours []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrade(w, r, upgradeOptions{subprotocols: ours})
		if err != nil {
			return
		}
		serveEcho(c, wtDeadline)
	})
}

func TestHandshakeServer(t *testing.T) {
	srv := httptest.NewServer(wtProtoHandler([]string{"wperf.v2", "wperf.v1"}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	// base is a valid request; each case rewrites some of its lines.
	base := []string{
		"GET /echo HTTP/1.1",
		"Host: " + addr,
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + wtRFCKey,
		"Sec-WebSocket-Version: 13",
	}
	cases := []struct {
		name    string
		edit    map[int]string // line index → replacement ("" drops it)
		extra   []string       // lines added at the end
		status  int
		accept  string            // want Sec-WebSocket-Accept when 101
		headers map[string]string // more response headers that must match ("" = absent)
	}{
		{name: "valid request, RFC example key", status: 101, accept: wtRFCAccept,
			headers: map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Protocol": ""}},
		{name: "POST", edit: map[int]string{0: "POST /echo HTTP/1.1"}, extra: []string{"Content-Length: 0"}, status: 400},
		{name: "PUT", edit: map[int]string{0: "PUT /echo HTTP/1.1"}, extra: []string{"Content-Length: 0"}, status: 400},
		{name: "no Upgrade", edit: map[int]string{2: ""}, status: 400},
		{name: "Upgrade: h2c", edit: map[int]string{2: "Upgrade: h2c"}, status: 400},
		{name: "no Connection", edit: map[int]string{3: ""}, status: 400},
		{name: "Connection: keep-alive only", edit: map[int]string{3: "Connection: keep-alive"}, status: 400},
		{name: "Connection as a token list", edit: map[int]string{3: "Connection: keep-alive, Upgrade"}, status: 101, accept: wtRFCAccept},
		{name: "header values in other cases", edit: map[int]string{2: "Upgrade: WebSocket", 3: "connection: KEEP-ALIVE,upgrade"}, status: 101, accept: wtRFCAccept},
		{name: "version 12", edit: map[int]string{5: "Sec-WebSocket-Version: 12"}, status: 426,
			headers: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "no version", edit: map[int]string{5: ""}, status: 426,
			headers: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "no key", edit: map[int]string{4: ""}, status: 400},
		{name: "key of 15 bytes", edit: map[int]string{4: "Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(make([]byte, 15))}, status: 400},
		{name: "key of 17 bytes", edit: map[int]string{4: "Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(make([]byte, 17))}, status: 400},
		{name: "key not base64", edit: map[int]string{4: "Sec-WebSocket-Key: !!!!not-base64-at-all!!!"}, status: 400},
		{name: "another valid key", edit: map[int]string{4: "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="}, status: 101,
			accept: "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
		{name: "subprotocol: our preference wins", extra: []string{"Sec-WebSocket-Protocol: chat, wperf.v1, wperf.v2"}, status: 101,
			accept: wtRFCAccept, headers: map[string]string{"Sec-WebSocket-Protocol": "wperf.v2"}},
		{name: "subprotocol: offered over two lines", extra: []string{"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: wperf.v1"}, status: 101,
			accept: wtRFCAccept, headers: map[string]string{"Sec-WebSocket-Protocol": "wperf.v1"}},
		{name: "subprotocol: none in common", extra: []string{"Sec-WebSocket-Protocol: chat, superchat"}, status: 101,
			accept: wtRFCAccept, headers: map[string]string{"Sec-WebSocket-Protocol": ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var lines []string
			for i, l := range base {
				if e, ok := tc.edit[i]; ok {
					l = e
				}
				if l != "" {
					lines = append(lines, l)
				}
			}
			lines = append(lines, tc.extra...)
			resp := wtRawRequest(t, addr, strings.Join(lines, "\r\n")+"\r\n\r\n")
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 101 {
				if got := resp.Header.Get("Sec-WebSocket-Accept"); got != tc.accept {
					t.Errorf("Sec-WebSocket-Accept = %q, want %q", got, tc.accept)
				}
				if !hasToken(resp.Header, "Connection", "upgrade") {
					t.Errorf("Connection = %q, want Upgrade", resp.Header.Get("Connection"))
				}
			} else {
				for _, h := range []string{"Upgrade", "Sec-WebSocket-Accept"} {
					if v := resp.Header.Get(h); v != "" {
						t.Errorf("refusal carries %s: %q", h, v)
					}
				}
			}
			for h, want := range tc.headers {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
		})
	}
}

func TestAcceptKeyRFCExample(t *testing.T) {
	if got := acceptKey(wtRFCKey); got != wtRFCAccept {
		t.Fatalf("acceptKey(%q) = %q, want %q", wtRFCKey, got, wtRFCAccept)
	}
}

// ---- client handshake ----

// wtRawServer accepts connections on a loopback listener and hands each,
// with its parsed request, to serve. It returns the ws:// URL.
func wtRawServer(t *testing.T, serve func(nc net.Conn, br *bufio.Reader, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(wtDeadline))
				br := bufio.NewReader(nc)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				serve(nc, br, req)
			})
		}
	})
	return "ws://" + ln.Addr().String() + "/"
}

// wtAnswer101 writes a correct 101 answer plus any extra header lines.
func wtAnswer101(nc net.Conn, req *http.Request, extra string) error {
	_, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n"+extra+"\r\n")
	return err
}

func wtCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), wtDeadline)
	t.Cleanup(cancel)
	return ctx
}

// wtEchoOnce checks that a dialled connection works both ways.
func wtEchoOnce(t *testing.T, c *wsConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	if err := c.WriteMessage(opText, []byte("ping?")); err != nil {
		t.Fatal(err)
	}
	op, msg, err := c.ReadMessage(nil)
	if err != nil || op != opText || string(msg) != "ping?" {
		t.Fatalf("echo: op %d %q %v", op, msg, err)
	}
}

func TestDialWSURLForms(t *testing.T) {
	type seen struct{ host, uri string }
	got := make(chan seen, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.RequestURI}
		echoHandler(1<<20, wtDeadline).ServeHTTP(w, r)
	})
	srv4 := httptest.NewServer(handler)
	defer srv4.Close()
	addr4 := srv4.Listener.Addr().String()
	_, port4, _ := net.SplitHostPort(addr4)

	var addr6 string
	if ln6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		srv6 := httptest.NewUnstartedServer(handler)
		srv6.Listener.Close()
		srv6.Listener = ln6
		srv6.Start()
		defer srv6.Close()
		addr6 = ln6.Addr().String()
	}

	cases := []struct {
		name     string
		url      string
		dialAddr string // want this address dialled (the hook redirects it to srv4)
		host     string // want this Host header
		uri      string // want this request URI
		needV6   bool
	}{
		{name: "host:port", url: "ws://" + addr4, dialAddr: addr4, host: addr4, uri: "/"},
		{name: "host:port with path and query", url: "ws://" + addr4 + "/echo/x?a=1&b=2", dialAddr: addr4, host: addr4, uri: "/echo/x?a=1&b=2"},
		{name: "http scheme", url: "http://" + addr4 + "/p", dialAddr: addr4, host: addr4, uri: "/p"},
		{name: "name without port gets 80", url: "ws://localhost/echo", dialAddr: "localhost:80", host: "localhost", uri: "/echo"},
		{name: "explicit port 80 left out of Host", url: "ws://localhost:80/", dialAddr: "localhost:80", host: "localhost", uri: "/"},
		{name: "IPv6 literal without port", url: "ws://[::1]/six", dialAddr: "[::1]:80", host: "[::1]", uri: "/six"},
		{name: "localhost with port", url: "ws://localhost:" + port4 + "/", dialAddr: "localhost:" + port4, host: "localhost:" + port4, uri: "/"},
		{name: "IPv6 literal with port", url: "ws://" + addr6 + "/v6", host: addr6, uri: "/v6", needV6: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needV6 && addr6 == "" {
				t.Skip("no IPv6 loopback here")
			}
			var opt dialOptions
			var dialled string
			if tc.dialAddr != "" {
				// Every address goes to the loopback test server; the hook
				// only records what dialWS asked for.
				opt.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					dialled = addr
					var d net.Dialer
					return d.DialContext(ctx, "tcp", addr4)
				}
			}
			c, err := dialWS(wtCtx(t), tc.url, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(statusNormal, "")
			if tc.dialAddr != "" && dialled != tc.dialAddr {
				t.Errorf("dialled %q, want %q", dialled, tc.dialAddr)
			}
			s := <-got
			if s.host != tc.host || s.uri != tc.uri {
				t.Errorf("server saw Host %q URI %q, want %q %q", s.host, s.uri, tc.host, tc.uri)
			}
			wtEchoOnce(t, c)
		})
	}
}

func TestDialWSRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"wss://127.0.0.1:1/", "ftp://127.0.0.1/", "ws:///nohost", "::::"} {
		if c, err := dialWS(wtCtx(t), u, dialOptions{}); err == nil {
			c.Abort()
			t.Errorf("dialWS(%q) succeeded", u)
		}
	}
	if _, err := dialWS(wtCtx(t), "wss://127.0.0.1:1/", dialOptions{}); !errors.Is(err, errUnsupportedURL) {
		t.Errorf("wss: got %v, want errUnsupportedURL", err)
	}
}

func TestDialWSSendsHeadersAndSubprotocols(t *testing.T) {
	type seen struct{ auth, custom, protos string }
	got := make(chan seen, 1)
	inner := wtProtoHandler([]string{"wperf.v1"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("Authorization"), strings.Join(r.Header.Values("X-Wperf-Test"), "|"),
			strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), "|")}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	opt := dialOptions{
		header:       http.Header{"Authorization": {"Bearer s3cret"}, "X-Wperf-Test": {"one", "two"}},
		subprotocols: []string{"wperf.v9", "wperf.v1"},
	}
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(statusNormal, "")
	s := <-got
	if s.auth != "Bearer s3cret" || s.custom != "one|two" {
		t.Errorf("server saw Authorization %q, X-Wperf-Test %q", s.auth, s.custom)
	}
	if s.protos != "wperf.v9, wperf.v1" {
		t.Errorf("server saw Sec-WebSocket-Protocol %q", s.protos)
	}
	if c.subprotocol != "wperf.v1" {
		t.Errorf("negotiated subprotocol %q, want wperf.v1", c.subprotocol)
	}
	wtEchoOnce(t, c)
}

func TestDialWSRejectsHeaderWithLineBreak(t *testing.T) {
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		t.Error("a request with an injected header line reached the server")
	})
	_, err := dialWS(wtCtx(t), url, dialOptions{header: http.Header{"X-A": {"b\r\nX-Injected: 1"}}})
	if err == nil {
		t.Fatal("dialWS sent a header value with a line break")
	}
}

func TestDialWSRejectsBadServerAnswers(t *testing.T) {
	cases := []struct {
		name   string
		answer func(nc net.Conn, req *http.Request)
		status int // want a *handshakeError with this status; 0: any errBadHandshake
		msg    string
		notWS  bool // not HTTP at all: any error will do
	}{
		{name: "wrong accept", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Accept: "+wtRFCAccept+"\r\n\r\n")
		}},
		{name: "no accept", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		}},
		{name: "101 without Upgrade", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n")
		}},
		{name: "subprotocol not offered", answer: func(nc net.Conn, req *http.Request) {
			wtAnswer101(nc, req, "Sec-WebSocket-Protocol: wperf.v7\r\n")
		}},
		{name: "extension not offered", answer: func(nc net.Conn, req *http.Request) {
			wtAnswer101(nc, req, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
		}},
		{name: "403 with a reason", status: 403, msg: "no entry for you", answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 403 Forbidden\r\nContent-Length: 17\r\n\r\nno entry for you\n")
		}},
		{name: "200 OK", status: 200, answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
		}},
		{name: "not HTTP", notWS: true, answer: func(nc net.Conn, req *http.Request) {
			io.WriteString(nc, "SSH-2.0-OpenSSH_9.6\r\n")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
				tc.answer(nc, req)
			})
			c, err := dialWS(wtCtx(t), url, dialOptions{subprotocols: []string{"wperf.v1"}})
			if err == nil {
				c.Abort()
				t.Fatal("dialWS accepted the answer")
			}
			if tc.notWS {
				return
			}
			if !errors.Is(err, errBadHandshake) {
				t.Errorf("error %v does not wrap errBadHandshake", err)
			}
			if tc.status != 0 {
				var he *handshakeError
				if !errors.As(err, &he) || he.Status != tc.status {
					t.Fatalf("error %v, want a handshakeError with status %d", err, tc.status)
				}
				if !strings.Contains(he.Message, tc.msg) {
					t.Errorf("message %q does not contain %q", he.Message, tc.msg)
				}
			}
		})
	}
}

// TestDialWSHandshakeTimeout uses a server that accepts TCP but never
// answers the handshake: the context's deadline must end the dial.
func TestDialWSHandshakeTimeout(t *testing.T) {
	release := make(chan struct{})
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		<-release
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := dialWS(ctx, url, dialOptions{})
	if err == nil {
		c.Abort()
		t.Fatal("handshake with a silent server succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("dialWS took %v with a 300ms deadline", d)
	}
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("error %v is not a timeout", err)
	}
}

func TestDialWSHandshakeCancel(t *testing.T) {
	release := make(chan struct{})
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		<-release
	})
	defer close(release)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	c, err := dialWS(ctx, url, dialOptions{})
	if err == nil {
		c.Abort()
		t.Fatal("handshake with a silent server succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not say the dial was cancelled", err)
	}
}

// TestDialWSKeepsBytesAfterHandshake has the server send its first frame
// in the same write as the 101 answer.
func TestDialWSKeepsBytesAfterHandshake(t *testing.T) {
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+acceptKey(req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n"+
			string(wtUnmaskedFrame(0x81, []byte("hello right away"))))
		io.Copy(io.Discard, br)
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	op, msg, err := c.ReadMessage(nil)
	if err != nil || op != opText || string(msg) != "hello right away" {
		t.Fatalf("got op %d %q %v", op, msg, err)
	}
}

// TestClientRejectsMaskedServerFrame: a server must not mask (§5.1); our
// client fails the connection with 1002 and tells the server so.
func TestClientRejectsMaskedServerFrame(t *testing.T) {
	serverSaw := make(chan []byte, 1)
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		nc.Write(wtMaskedFrame(0x81, []byte("masked!"), [4]byte{1, 2, 3, 4}))
		rc := &wtRaw{t: t, nc: nc, br: br}
		first, p, err := rc.readClientFrame()
		if err != nil || opcode(first&0x0f) != opClose {
			serverSaw <- nil
			return
		}
		serverSaw <- p
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	_, _, err = c.ReadMessage(nil)
	if got := closeStatus(err); got != statusProtocolError {
		t.Fatalf("ReadMessage error %v, close status %d, want 1002", err, got)
	}
	var ce *closeError
	if !errors.As(err, &ce) || !ce.Local {
		t.Errorf("error %v should say we closed", err)
	}
	p := <-serverSaw
	if len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
		t.Errorf("server got close payload %q, want code 1002", p)
	}
}

// ---- close handshake and deadlines ----

// TestCloseWaitsForPeerClose: Close sends our code and reason, and does
// not return until the peer's close frame has come (or closeWait passes).
func TestCloseWaitsForPeerClose(t *testing.T) {
	gotClose := make(chan []byte, 1)
	reply := make(chan struct{})
	clientGone := make(chan error, 1)
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		rc := &wtRaw{t: t, nc: nc, br: br}
		_, p, err := rc.readClientFrame()
		if err != nil {
			gotClose <- nil
			return
		}
		gotClose <- p
		<-reply
		nc.Write(wtUnmaskedFrame(0x88, p[:2]))
		// Like a server, drop our half first; the client must then drop
		// TCP too, without sending more.
		nc.(*net.TCPConn).CloseWrite()
		_, err = br.ReadByte()
		clientGone <- err
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close(4321, "test over") }()

	p := <-gotClose
	if len(p) < 2 || binary.BigEndian.Uint16(p) != 4321 || string(p[2:]) != "test over" {
		t.Fatalf("server got close payload %q, want 4321 \"test over\"", p)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the peer answered", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(reply)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(closeWait - time.Second):
		t.Fatal("Close did not return promptly after the peer's close")
	}
	if err := <-clientGone; err != io.EOF {
		t.Errorf("after the handshake the server read %v, want EOF", err)
	}
}

// TestCloseSilentPeerIsBounded: a peer that never answers our close does
// not hold Close beyond closeWait.
func TestCloseSilentPeerIsBounded(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		<-release
	})
	defer close(release)
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		c.Close(statusNormal, "")
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeWait + 10*time.Second):
		t.Fatal("Close hangs on a silent peer")
	}
	t.Logf("Close took %v (closeWait %v)", time.Since(start), closeWait)
	if err := c.WriteMessage(opText, []byte("x")); !errors.Is(err, errConnClosed) {
		t.Errorf("write after Close: %v, want errConnClosed", err)
	}
}

// TestCloseWithConcurrentReader: while another goroutine reads, Close
// leaves reading to it; the reader sees the peer's echoed close.
func TestCloseWithConcurrentReader(t *testing.T) {
	srv := httptest.NewServer(echoHandler(1<<20, wtDeadline))
	defer srv.Close()
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	readErr := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		for {
			if _, _, err := c.ReadMessage(nil); err != nil {
				readErr <- err
				return
			}
		}
	}()
	<-started
	c.WriteMessage(opText, []byte("one"))
	time.Sleep(50 * time.Millisecond) // let the reader block in a read
	if err := c.Close(statusGoingAway, "leaving"); err != nil {
		t.Fatal(err)
	}
	err = <-readErr
	var ce *closeError
	if !errors.As(err, &ce) || ce.Local || ce.Code != statusGoingAway {
		t.Fatalf("reader got %v, want the peer's close with 1001", err)
	}
}

// TestCloseTrimsLongReasonToUTF8: a reason longer than a close frame can
// carry is cut, but never inside a code point.
func TestCloseTrimsLongReasonToUTF8(t *testing.T) {
	gotClose := make(chan []byte, 1)
	url := wtRawServer(t, func(nc net.Conn, br *bufio.Reader, req *http.Request) {
		wtAnswer101(nc, req, "")
		rc := &wtRaw{t: t, nc: nc, br: br}
		_, p, err := rc.readClientFrame()
		if err != nil {
			gotClose <- nil
			return
		}
		gotClose <- p
		nc.Write(wtUnmaskedFrame(0x88, p[:2]))
	})
	c, err := dialWS(wtCtx(t), url, dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reason := strings.Repeat("é", 100) // 200 bytes; 123 would split a code point
	if err := c.Close(statusNormal, reason); err != nil {
		t.Fatal(err)
	}
	p := <-gotClose
	if len(p) < 2 || len(p) > maxControlPayload {
		t.Fatalf("close payload of %d bytes", len(p))
	}
	if _, _, err := parseClosePayload(p); err != nil {
		t.Fatalf("the close we sent is invalid: %v (reason %q)", err, p[2:])
	}
	if !strings.HasPrefix(reason, string(p[2:])) || len(p) < maxControlPayload-3 {
		t.Errorf("reason cut to %d bytes: %q", len(p)-2, p[2:])
	}
}

func TestWSReadDeadlineHonoured(t *testing.T) {
	srv := httptest.NewServer(echoHandler(1<<20, wtDeadline))
	defer srv.Close()
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, _, err = c.ReadMessage(nil)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadMessage with nothing to read: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the 100ms deadline fired after %v", d)
	}
	// The failure is sticky.
	if _, _, _, err2 := c.NextFrame(); err2 == nil {
		t.Error("NextFrame after a failed read succeeded")
	}
}

// TestWSConcurrentReadWriteWithPings runs a writer and a reader on each end
// at once while the server pings the client: the client's reader answers
// with pongs between the writer's frames, and every message must arrive
// whole on both sides. The batch variant exercises frameBatch, whose
// masking keys come from the same store as the pongs'. Run with -race.
func TestWSConcurrentReadWriteWithPings(t *testing.T) {
	for _, batch := range []bool{false, true} {
		name := "WriteMessage"
		if batch {
			name = "frameBatch"
		}
		t.Run(name, func(t *testing.T) {
			const n = 1000
			serverErr := make(chan error, 2)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := upgrade(w, r, upgradeOptions{})
				if err != nil {
					serverErr <- err
					return
				}
				defer c.Abort()
				c.SetReadDeadline(time.Now().Add(wtDeadline))
				var wg sync.WaitGroup
				wg.Go(func() { // pings and messages for the client
					for i := range n {
						if err := c.Ping([]byte(fmt.Sprint(i))); err != nil {
							serverErr <- err
							return
						}
						if err := c.WriteMessage(opBinary, binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
							serverErr <- err
							return
						}
					}
				})
				var buf []byte
				for i := range n {
					op, msg, err := c.ReadMessage(buf)
					if err != nil {
						serverErr <- fmt.Errorf("server read %d: %w", i, err)
						return
					}
					if op != opBinary || len(msg) < 8 || binary.BigEndian.Uint64(msg) != uint64(i) {
						serverErr <- fmt.Errorf("server message %d: op %d, % x", i, op, msg[:min(8, len(msg))])
						return
					}
					buf = msg
				}
				wg.Wait()
				// Stay until the client closes, so its pongs have somewhere to go.
				_, _, err = c.ReadMessage(buf)
				if ce := (*closeError)(nil); !errors.As(err, &ce) || ce.Local {
					serverErr <- fmt.Errorf("server, waiting for the client's close: %w", err)
					return
				}
				serverErr <- nil
			}))
			defer srv.Close()
			c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http"), dialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Abort()
			c.SetReadDeadline(time.Now().Add(wtDeadline))
			var wg sync.WaitGroup
			wg.Go(func() {
				filler := make([]byte, 1000)
				var fb *frameBatch
				if batch {
					fb = c.newBatch(4, 8)
				}
				for i := range n {
					seq := binary.BigEndian.AppendUint64(nil, uint64(i))
					if !batch {
						if err := c.WriteMessage(opBinary, append(seq, filler...)); err != nil {
							t.Errorf("client write %d: %v", i, err)
							return
						}
						continue
					}
					fb.add(opBinary, seq, filler)
					if (i+1)%4 == 0 || i == n-1 {
						if err := fb.flush(); err != nil {
							t.Errorf("client batch flush at %d: %v", i, err)
							return
						}
					}
				}
			})
			var buf []byte
			for i := range n {
				op, msg, err := c.ReadMessage(buf)
				if err != nil {
					t.Fatalf("client read %d: %v", i, err)
				}
				if op != opBinary || len(msg) != 8 || binary.BigEndian.Uint64(msg) != uint64(i) {
					t.Fatalf("client message %d: op %d % x", i, op, msg)
				}
				buf = msg
			}
			wg.Wait()
			if err := c.Close(statusNormal, ""); err != nil {
				t.Fatal(err)
			}
			if err := <-serverErr; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// ---- unit tests ----

// TestPutFrameHeaderRFCExamples checks the byte layouts of RFC 6455 §5.7.
func TestPutFrameHeaderRFCExamples(t *testing.T) {
	cases := []struct {
		name   string
		fin    bool
		op     opcode
		length int
		masked bool
		key    [4]byte
		want   []byte
	}{
		{"unmasked Hello", true, opText, 5, false, [4]byte{}, []byte{0x81, 0x05}},
		{"masked Hello", true, opText, 5, true, [4]byte{0x37, 0xfa, 0x21, 0x3d}, []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}},
		{"first fragment", false, opText, 3, false, [4]byte{}, []byte{0x01, 0x03}},
		{"last fragment", true, opContinuation, 2, false, [4]byte{}, []byte{0x80, 0x02}},
		{"256-byte binary", true, opBinary, 256, false, [4]byte{}, []byte{0x82, 0x7e, 0x01, 0x00}},
		{"64 KiB binary", true, opBinary, 65536, false, [4]byte{}, []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}},
		{"empty ping", true, opPing, 0, false, [4]byte{}, []byte{0x89, 0x00}},
		{"125 edge", true, opBinary, 125, false, [4]byte{}, []byte{0x82, 0x7d}},
		{"65535 edge", true, opBinary, 65535, true, [4]byte{9, 8, 7, 6}, []byte{0x82, 0xfe, 0xff, 0xff, 9, 8, 7, 6}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b [maxHeaderLen]byte
			n := putFrameHeader(b[:], tc.fin, tc.op, tc.length, tc.masked, binary.LittleEndian.Uint32(tc.key[:]))
			if !bytes.Equal(b[:n], tc.want) {
				t.Fatalf("header % x, want % x", b[:n], tc.want)
			}
			h, m, err := parseFrameHeader(tc.want)
			if err != nil || m != len(tc.want) {
				t.Fatalf("parse: n=%d err=%v", m, err)
			}
			if h.fin != tc.fin || h.op != tc.op || h.length != int64(tc.length) || h.masked != tc.masked ||
				(tc.masked && h.key != binary.LittleEndian.Uint32(tc.key[:])) {
				t.Fatalf("parsed %+v", h)
			}
		})
	}
}

func TestMaskRFCExample(t *testing.T) {
	// §5.7: "Hello" masked with 37 fa 21 3d.
	p := []byte("Hello")
	key := binary.LittleEndian.Uint32([]byte{0x37, 0xfa, 0x21, 0x3d})
	mask(key, p)
	if want := []byte{0x7f, 0x9f, 0x4d, 0x51, 0x58}; !bytes.Equal(p, want) {
		t.Fatalf("masked % x, want % x", p, want)
	}
}

func TestMaskMatchesBytewiseAtEveryAlignment(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1100)
	for off := range 9 {
		for _, n := range []int{0, 1, 3, 7, 8, 9, 15, 127, 128, 129, 255, 1024, 1091 - off} {
			data := wtBinary(r, n)
			key := r.Uint32()
			var kb [4]byte
			binary.LittleEndian.PutUint32(kb[:], key)
			want := bytes.Clone(data)
			wtMaskBytes(kb, 0, want)
			got := buf[off : off+n]
			copy(got, data)
			next := mask(key, got)
			if !bytes.Equal(got, want) {
				t.Fatalf("offset %d length %d: mask differs from the bytewise reference", off, n)
			}
			var nk [4]byte
			binary.LittleEndian.PutUint32(nk[:], next)
			for i := range 4 {
				if nk[i] != kb[(n+i)%4] {
					t.Fatalf("offset %d length %d: returned key % x, want key rotated by %d", off, n, nk, n%4)
				}
			}
		}
	}
}

func TestUTF8ValidatorCases(t *testing.T) {
	cases := []struct {
		in    string
		valid bool
	}{
		{"", true}, {"plain ASCII that is long enough for the fast path", true},
		{"κόσμε", true}, {"\u0080", true}, {"\u07ff", true}, {"\u0800", true}, {"\ud7ff", true},
		{"\ue000", true}, {"\uffff", true}, {"\U00010000", true}, {"\U0010ffff", true},
		{"\xed\xa0\x80", false}, {"\xed\xbf\xbf", false}, {"\xc0\xaf", false}, {"\xc1\xbf", false},
		{"\xe0\x80\xaf", false}, {"\xe0\x9f\xbf", false}, {"\xf0\x80\x80\xaf", false}, {"\xf0\x8f\xbf\xbf", false},
		{"\xf4\x90\x80\x80", false}, {"\xf5\x80\x80\x80", false}, {"\xff", false}, {"\xfe", false},
		{"\x80", false}, {"\xbf", false}, {"\xe2\x82", false}, {"\xe2\x82\x28", false}, {"12345678\xe2\x82\xac", true},
		{"1234567\xe2\x82\xac", true}, {"12345678\xe2", false},
	}
	for _, tc := range cases {
		if utf8.ValidString(tc.in) != tc.valid {
			t.Fatalf("bad case %q", tc.in)
		}
		for split := 0; split <= len(tc.in); split++ {
			var v utf8Validator
			got := v.feed([]byte(tc.in[:split])) && v.feed([]byte(tc.in[split:])) && v.complete()
			if got != tc.valid {
				t.Errorf("%q split at %d: valid=%v, want %v", tc.in, split, got, tc.valid)
			}
		}
	}
}

func TestParseClosePayloadCases(t *testing.T) {
	cases := []struct {
		name   string
		p      []byte
		code   statusCode
		reason string
		ok     bool
	}{
		{"empty", nil, statusNoStatus, "", true},
		{"one byte", []byte{3}, 0, "", false},
		{"1000", wtClosePayload(1000, ""), 1000, "", true},
		{"4999 with reason", wtClosePayload(4999, "ciao ✓"), 4999, "ciao ✓", true},
		{"1014", wtClosePayload(1014, ""), 1014, "", true},
		{"1005 on the wire", wtClosePayload(1005, ""), 0, "", false},
		{"1015", wtClosePayload(1015, ""), 0, "", false},
		{"5000", wtClosePayload(5000, ""), 0, "", false},
		{"bad reason", wtClosePayload(1000, "\xff"), 0, "", false},
		{"reason cut inside a code point", wtClosePayload(1000, "\xe2\x82"), 0, "", false},
	}
	for _, tc := range cases {
		code, reason, err := parseClosePayload(tc.p)
		if (err == nil) != tc.ok || code != tc.code || reason != tc.reason {
			t.Errorf("%s: got %d %q %v", tc.name, code, reason, err)
		}
		if err != nil && !errors.Is(err, errProtocol) {
			t.Errorf("%s: error %v does not wrap errProtocol", tc.name, err)
		}
	}
}

func TestWSStatusForMapsSentinels(t *testing.T) {
	cases := []struct {
		err  error
		want statusCode
	}{
		{fmt.Errorf("x: %w", errProtocol), statusProtocolError},
		{fmt.Errorf("x: %w", errInvalidUTF8), statusInvalidPayload},
		{fmt.Errorf("x: %w", errMessageTooBig), statusMessageTooBig},
		{io.ErrUnexpectedEOF, statusInternalError},
	}
	for _, tc := range cases {
		if got := statusFor(tc.err); got != tc.want {
			t.Errorf("statusFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestShortReasonFitsAndStaysUTF8(t *testing.T) {
	for _, s := range []string{"short", strings.Repeat("x", 200), strings.Repeat("é", 100), strings.Repeat("😀", 40)} {
		got := shortReason(errors.New(s))
		if len(got) > maxControlPayload-2 || !utf8.ValidString(got) || !strings.HasPrefix(s, got) {
			t.Errorf("shortReason(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
	}
}

// wtScriptConn is a net.Conn that reads from a fixed script and swallows
// writes; for exercising a wsConn without a socket.
type wtScriptConn struct {
	r *bytes.Reader
	net.Conn
}

func (c *wtScriptConn) Read(p []byte) (int, error)        { return c.r.Read(p) }
func (c *wtScriptConn) Write(p []byte) (int, error)       { return len(p), nil }
func (c *wtScriptConn) Close() error                      { return nil }
func (c *wtScriptConn) SetDeadline(time.Time) error       { return nil }
func (c *wtScriptConn) SetReadDeadline(time.Time) error   { return nil }
func (c *wtScriptConn) SetWriteDeadline(time.Time) error  { return nil }
func (c *wtScriptConn) LocalAddr() net.Addr               { return &net.TCPAddr{} }
func (c *wtScriptConn) RemoteAddr() net.Addr              { return &net.TCPAddr{} }
func (c *wtScriptConn) CloseWrite() error                 { return nil }
func (c *wtScriptConn) reset(script []byte) *wtScriptConn { c.r = bytes.NewReader(script); return c }
func wtServerConn(script []byte, opt connOptions) *wsConn {
	return newConn((&wtScriptConn{}).reset(script), false, opt, nil)
}
func wtClientConn(script []byte, opt connOptions) *wsConn {
	return newConn((&wtScriptConn{}).reset(script), true, opt, nil)
}

// TestWSReadMessageManySmallFragments: reassembling a message from many
// small fragments must grow the buffer geometrically. Growing it by one
// fragment at a time costs an allocation and a copy of everything so far
// per fragment, quadratic work a peer could ask for on purpose.
func TestWSReadMessageManySmallFragments(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	msg := wtBinary(r, 256<<10)
	script := wtConcat(wtFragments(byte(opBinary), msg, 64)...)
	var got []byte
	allocs := testing.AllocsPerRun(2, func() {
		c := wtServerConn(script, connOptions{})
		_, m, err := c.ReadMessage(nil)
		if err != nil {
			t.Fatal(err)
		}
		got = m
	})
	if !bytes.Equal(got, msg) {
		t.Fatal("message reassembled wrong")
	}
	// 4096 fragments; a geometric buffer needs a few dozen allocations.
	if allocs > 200 {
		t.Errorf("%v allocations to read one message of 4096 fragments", allocs)
	}
}

// TestWSReadPayloadAndDiscard walks frames with the streaming calls.
func TestWSReadPayloadAndDiscard(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a, b := wtBinary(r, 70000), wtText(r, 5000)
	script := wtConcat(
		wtFrame(0x02, a[:30000]), wtFrame(0x89, []byte("hi")), wtFrame(0x80, a[30000:]),
		wtFrame(0x81, b),
		wtFrame(0x82, []byte("last")),
	)
	c := wtServerConn(script, connOptions{readBuffer: 1000})

	op, n, fin, err := c.NextFrame()
	if err != nil || op != opBinary || n != 30000 || fin {
		t.Fatalf("frame 1: %d %d %v %v", op, n, fin, err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		m, err := c.ReadPayload(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	op, n, fin, err = c.NextFrame() // the ping in between is answered on the way
	if err != nil || op != opBinary || n != 40000 || !fin {
		t.Fatalf("frame 2: %d %d %v %v", op, n, fin, err)
	}
	for {
		m, err := c.ReadPayload(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, a) {
		t.Fatal("fragmented binary payload differs")
	}
	op, n, fin, err = c.NextFrame()
	if err != nil || op != opText || n != int64(len(b)) || !fin {
		t.Fatalf("frame 3: %d %d %v %v", op, n, fin, err)
	}
	total := 0
	for {
		m, err := c.Discard()
		total += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != len(b) {
		t.Fatalf("Discard dropped %d bytes, want %d", total, len(b))
	}
	// NextFrame also skips an unread frame by itself.
	if _, _, _, err := c.NextFrame(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.NextFrame(); err == nil {
		t.Fatal("NextFrame past the end of the script succeeded")
	}
}

// TestWSTinyReadBufferStillReads: a read buffer smaller than a header or a
// control frame is raised to fit them, rather than leaving fill waiting
// for room that never comes.
func TestWSTinyReadBufferStillReads(t *testing.T) {
	ping := bytes.Repeat([]byte{'p'}, maxControlPayload)
	script := wtConcat(wtFrame(0x89, ping), wtFrame(0x82, make([]byte, 70000)), wtFrame(0x81, []byte("end")))
	done := make(chan error, 1)
	go func() {
		c := wtServerConn(script, connOptions{readBuffer: 1})
		if _, msg, err := c.ReadMessage(nil); err != nil || len(msg) != 70000 {
			done <- fmt.Errorf("first message: %d bytes, %v", len(msg), err)
			return
		}
		_, msg, err := c.ReadMessage(nil)
		if err == nil && string(msg) != "end" {
			err = fmt.Errorf("second message %q", msg)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wtDeadline):
		t.Fatal("reading with a 1-byte read buffer hangs")
	}
}

// TestWSDiscardStillValidatesText: throwing text away must not skip the
// UTF-8 check.
func TestWSDiscardStillValidatesText(t *testing.T) {
	c := wtServerConn(wtFrame(0x81, []byte("fine, fine, fine \xff")), connOptions{})
	if _, _, _, err := c.NextFrame(); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = c.Discard()
	}
	if closeStatus(err) != statusInvalidPayload {
		t.Fatalf("Discard of bad text: %v, want 1007", err)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	c := wtClientConn(nil, connOptions{})
	c.Close(statusNormal, "")
	for name, err := range map[string]error{
		"WriteMessage": c.WriteMessage(opText, []byte("x")),
		"Ping":         c.Ping(nil),
		"batch":        func() error { b := c.newBatch(1, 0); b.add(opBinary, nil, []byte("x")); return b.flush() }(),
	} {
		if !errors.Is(err, errConnClosed) {
			t.Errorf("%s after Close: %v, want errConnClosed", name, err)
		}
	}
	if err := c.Ping(make([]byte, 126)); err == nil {
		t.Error("Ping with 126 bytes accepted")
	}
}

// TestClientMasksEveryFrame: frames from our client carry a mask and
// unmask to what was written, for every write path.
func TestClientMasksEveryFrame(t *testing.T) {
	var sink bytes.Buffer
	c := newConn(&wtSinkConn{w: &sink}, true, connOptions{}, nil)
	r := rand.New(rand.NewPCG(9, 10))
	big := wtBinary(r, 200<<10) // more than one write buffer
	c.WriteMessage(opBinary, []byte("small"))
	c.WriteMessage(opBinary, big)
	c.WriteFrame(opText, false, []byte("frag"))
	c.WriteFrame(opContinuation, true, []byte("ment"))
	c.Ping([]byte("p"))
	rc := &wtRaw{t: t, br: bufio.NewReader(&sink)}
	want := []struct {
		first byte
		p     []byte
	}{{0x82, []byte("small")}, {0x82, big}, {0x01, []byte("frag")}, {0x80, []byte("ment")}, {0x89, []byte("p")}}
	for i, w := range want {
		first, p, err := rc.readClientFrame()
		if err != nil || first != w.first || !bytes.Equal(p, w.p) {
			t.Fatalf("frame %d: first 0x%02x, %d bytes, %v", i, first, len(p), err)
		}
	}
}

// wtSinkConn collects writes.
type wtSinkConn struct {
	wtScriptConn
	w io.Writer
}

func (c *wtSinkConn) Write(p []byte) (int, error) { return c.w.Write(p) }

package main

// Conformance tests of the WebSocket engine: a table in the spirit of the
// Autobahn testsuite, driven by a hand-written client that speaks raw
// bytes over TCP. The frame builders and the raw client here serve the
// other ws tests too. Everything talks to loopback only.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Bits of a frame's first byte, spelled out here rather than taken from
// ws_frame.go so the test client is an independent reading of RFC 6455.
const (
	bitFIN  = 0x80
	bitRSV1 = 0x40
	bitRSV2 = 0x20
	bitRSV3 = 0x10
)

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

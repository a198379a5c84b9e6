package main

// Unit tests of the frame codec in ws_frame.go, against the examples of
// RFC 6455 and bytewise references. ws_fuzz_test.go fuzzes the same
// functions.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

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

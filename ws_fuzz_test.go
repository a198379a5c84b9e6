package main

// Fuzz targets for the engine's pure functions. Without -fuzz they run
// their seeds as ordinary tests; with it, for example
//
//	go test -run XXX -fuzz FuzzParseFrameHeader -fuzztime 30s .
//
// they search for inputs that break the properties below.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParseFrameHeader: parsing never panics or reads past its input; an
// accepted header re-encodes to one that parses the same, byte for byte
// when the input used the shortest length form; and no prefix of a valid
// header is taken for a whole one.
func FuzzParseFrameHeader(f *testing.F) {
	for _, seed := range [][]byte{
		{}, {0x81}, {0x81, 0x05}, {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d},
		{0x82, 0x7e, 0x01, 0x00}, {0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4},
		{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}, {0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9},
		{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, // top bit of the 64-bit length
		{0x89, 0x7d}, {0x89, 0x7e, 0, 0x7e}, {0x09, 0x00}, {0x88, 0x80, 0, 0, 0, 0},
		{0xc1, 0x00}, {0xa1, 0x00}, {0x91, 0x00}, {0x83, 0x00}, {0x8b, 0x00}, {0x0f, 0x00},
		{0x80, 0x7e, 0x00, 0x05}, // a non-shortest length form
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := parseFrameHeader(b)
		if n < 0 || n > len(b) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		if err != nil {
			if n != 0 || !errors.Is(err, errProtocol) {
				t.Fatalf("error %v with n = %d", err, n)
			}
			return
		}
		if n == 0 {
			return // needs more bytes
		}
		if h.length < 0 || (h.op.isControl() && (h.length > maxControlPayload || !h.fin)) {
			t.Fatalf("accepted %+v", h)
		}
		if b[0]&0x70 != 0 {
			t.Fatalf("accepted RSV bits in 0x%02x", b[0])
		}
		for k := range n {
			if _, m, err := parseFrameHeader(b[:k]); m != 0 || err != nil {
				t.Fatalf("prefix of %d bytes of a %d-byte header: n = %d, err = %v", k, n, m, err)
			}
		}
		var out [maxHeaderLen]byte
		m := putFrameHeader(out[:], h.fin, h.op, int(h.length), h.masked, h.key)
		h2, n2, err := parseFrameHeader(out[:m])
		if err != nil || n2 != m || h2 != h {
			t.Fatalf("re-encoded % x parses as %+v, %d, %v; want %+v", out[:m], h2, n2, err, h)
		}
		shortest := 2
		switch {
		case h.length > 0xffff:
			shortest = 10
		case h.length > 125:
			shortest = 4
		}
		if h.masked {
			shortest += 4
		}
		if n == shortest && !bytes.Equal(out[:m], b[:n]) {
			t.Fatalf("re-encoded % x, input % x", out[:m], b[:n])
		}
	})
}

// FuzzParseClosePayload: parsing never panics, and accepts exactly the
// payloads RFC 6455 §5.5.1 and §7.4 allow.
func FuzzParseClosePayload(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {3}, {0x03, 0xe8}, {0x03, 0xe8, 'o', 'k'}, {0x03, 0xed}, {0x03, 0xf7},
		{0x0b, 0xb8}, {0x13, 0x87}, {0x13, 0x88}, {0x03, 0xe8, 0xff}, {0x03, 0xe8, 0xce, 0xba},
		{0x00, 0x00}, {0xff, 0xff, 'x'},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		code, reason, err := parseClosePayload(p)
		valid := len(p) == 0
		if len(p) >= 2 {
			c := binary.BigEndian.Uint16(p)
			known := (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
			valid = known && utf8.Valid(p[2:])
		}
		if (err == nil) != valid {
			t.Fatalf("% x: err = %v, want valid = %v", p, err, valid)
		}
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("% x: error %v does not wrap errProtocol", p, err)
			}
			return
		}
		if len(p) == 0 {
			if code != statusNoStatus || reason != "" {
				t.Fatalf("empty payload gave %d %q", code, reason)
			}
			return
		}
		if uint16(code) != binary.BigEndian.Uint16(p) || reason != string(p[2:]) {
			t.Fatalf("% x gave %d %q", p, code, reason)
		}
	})
}

// FuzzUTF8Validator: the streaming validator agrees with utf8.Valid however
// the input is cut into two feeds, and when fed a byte at a time.
func FuzzUTF8Validator(f *testing.F) {
	for _, seed := range []string{
		"", "hello", "κόσμε", "\xed\xa0\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",
		"\xf4\x90\x80\x80", "\xf4\x8f\xbf\xbf", "12345678\xe2\x82\xac", "1234567\xe2\x82", "\xff",
		"abcdefghijklmnopq\xc3\xa9rstuvwxyz0123456789",
	} {
		f.Add([]byte(seed), uint(len(seed)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint) {
		want := utf8.Valid(b)
		k := int(cut % uint(len(b)+1))
		var v utf8Validator
		if got := v.feed(b[:k]) && v.feed(b[k:]) && v.complete(); got != want {
			t.Fatalf("% x cut at %d: valid = %v, want %v", b, k, got, want)
		}
		var w utf8Validator
		ok := true
		for i := range b {
			if !w.feed(b[i : i+1]) {
				ok = false
				break
			}
		}
		if got := ok && w.complete(); got != want {
			t.Fatalf("% x a byte at a time: valid = %v, want %v", b, got, want)
		}
	})
}

// FuzzMask: mask agrees with a byte-at-a-time reference for any key,
// alignment and length, also when a payload is masked in two pieces
// carried on by the key mask returns.
func FuzzMask(f *testing.F) {
	f.Add(uint32(0x3d21fa37), []byte("Hello"), uint8(0), uint(2))
	f.Add(uint32(0), make([]byte, 300), uint8(3), uint(129))
	f.Add(uint32(0xffffffff), bytes.Repeat([]byte{0xaa}, 1024), uint8(7), uint(1000))
	f.Add(uint32(0x01020304), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(5), uint(8))
	f.Fuzz(func(t *testing.T, key uint32, data []byte, align uint8, cut uint) {
		var kb [4]byte
		binary.LittleEndian.PutUint32(kb[:], key)
		want := bytes.Clone(data)
		for i := range want {
			want[i] ^= kb[i%4]
		}
		off := int(align % 16)
		buf := make([]byte, off+len(data)+16)
		got := buf[off : off+len(data)]

		copy(got, data)
		next := mask(key, got)
		if !bytes.Equal(got, want) {
			t.Fatalf("key %08x offset %d: mask differs from the reference", key, off)
		}
		var nk [4]byte
		binary.LittleEndian.PutUint32(nk[:], next)
		for i := range 4 {
			if nk[i] != kb[(len(data)+i)%4] {
				t.Fatalf("key %08x, %d bytes: returned key % x", key, len(data), nk)
			}
		}
		for i, c := range buf {
			if c != 0 && (i < off || i >= off+len(data)) {
				t.Fatalf("mask wrote byte %d, outside its slice [%d:%d]", i, off, off+len(data))
			}
		}

		k := int(cut % uint(len(data)+1))
		copy(got, data)
		mask(mask(key, got[:k]), got[k:])
		if !bytes.Equal(got, want) {
			t.Fatalf("key %08x offset %d, masked in two at %d: differs from the reference", key, off, k)
		}
	})
}

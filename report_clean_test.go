package main

// report_clean_test.go pins cleanText, which makes text from the network
// safe to print: FuzzCleanText's properties, and the input that showed it
// was not idempotent (testdata/fuzz/FuzzCleanText).

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzCleanText: the result is printable UTF-8 of at most max runes with
// no space at either end, and cleaning it again changes nothing.
func FuzzCleanText(f *testing.F) {
	for _, seed := range []struct {
		s   string
		max int
	}{
		{"plain", 10}, {"  padded  ", 4}, {"\x1b[31mred\x1b[0m", 20}, {"tab\there", 3},
		{"ab cd", 3}, {"\xff\xfe broken", 5}, {"日本 語", 3}, {"", 0},
	} {
		f.Add(seed.s, seed.max)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1000 {
			return
		}
		got := cleanText(s, max)
		if again := cleanText(got, max); again != got {
			t.Fatalf("cleanText(%q, %d) = %q, and again %q", s, max, got, again)
		}
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > max {
			t.Fatalf("cleanText(%q, %d) = %q: not UTF-8 or over %d runes", s, max, got, max)
		}
		if strings.TrimSpace(got) != got {
			t.Fatalf("cleanText(%q, %d) = %q: spaces at an end", s, max, got)
		}
		for _, r := range got {
			if !unicode.IsPrint(r) {
				t.Fatalf("cleanText(%q, %d) = %q: keeps %U", s, max, got, r)
			}
		}
	})
}

func TestCleanTextCases(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want string
	}{
		{"ab cd", 3, "ab"}, // the cut ends in a space: trimmed after the cut
		{"  x  ", 10, "x"},
		{"\x1b]0;title\x07name", 20, "]0;titlename"},
		{"ünïcödé", 4, "ünïc"},
	} {
		if got := cleanText(tc.s, tc.max); got != tc.want {
			t.Errorf("cleanText(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestZeroCopyOptions: -Z belongs to the client and travels in the
// request; --no-zerocopy belongs to either end and stays there.
func TestZeroCopyOptions(t *testing.T) {
	zcSetSplice(t, true) // --no-zerocopy flips the process's switch
	tests := []struct {
		args    []string
		wantErr string // "" for a valid command line
	}{
		{[]string{"-c", "h", "-Z"}, ""},
		{[]string{"-c", "h", "--zerocopy", "-R", "-l", "1M"}, ""},
		{[]string{"-c", "h", "-RZ"}, ""},
		{[]string{"-c", "h", "--no-zerocopy"}, ""},
		{[]string{"-s", "--no-zerocopy"}, ""},
		{[]string{"-s", "-Z"}, "--zerocopy does not apply to a server"},
		{[]string{"--traceroute", "h", "-Z"}, "--zerocopy does not apply to a traceroute"},
		{[]string{"--traceroute", "h", "--no-zerocopy"}, "--no-zerocopy does not apply to a traceroute"},
		{[]string{"-c", "h", "--zerocopy=yes"}, "option --zerocopy takes no value"},
		{[]string{"-c", "h", "--no-zerocopy=1"}, "option --no-zerocopy takes no value"},
	}
	for _, tc := range tests {
		_, err := parseArgs(tc.args)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.wantErr)
		}
	}
}

// TestNoZeroCopyTurnsSpliceOff: --no-zerocopy is this process's
// receivers' switch.
func TestNoZeroCopyTurnsSpliceOff(t *testing.T) {
	zcSetSplice(t, true)
	if _, err := parseArgs([]string{"-s", "--no-zerocopy"}); err != nil {
		t.Fatal(err)
	}
	if !noZeroCopy.Load() {
		t.Fatal("--no-zerocopy left splice on")
	}
}

// TestZeroCopyRequest: the request carries "zerocopy": true with -Z and
// leaves the field out otherwise, so older servers see what they know.
func TestZeroCopyRequest(t *testing.T) {
	for _, z := range []bool{true, false} {
		args := []string{"-c", "h"}
		if z {
			args = append(args, "-Z")
		}
		cfg, err := parseArgs(args)
		if err != nil {
			t.Fatal(err)
		}
		req := requestFrom(cfg)
		b, _ := json.Marshal(req)
		if req.ZeroCopy != z || bytes.Contains(b, []byte(`"zerocopy"`)) != z {
			t.Errorf("%q: request %s, want zerocopy %v", args, b, z)
		}
		var back testRequest
		if err := json.Unmarshal(b, &back); err != nil || back.ZeroCopy != z {
			t.Errorf("%q: the server reads zerocopy %v (%v)", args, back.ZeroCopy, err)
		}
	}
}

// TestZeroCopyHelp: both options are in --help.
func TestZeroCopyHelp(t *testing.T) {
	var out bytes.Buffer
	printHelp(&out)
	for _, want := range []string{"-Z, --zerocopy", "    --no-zerocopy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

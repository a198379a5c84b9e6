package main

// qemu_test.go runs router binaries under qemu-user: linux/arm (v7),
// arm64, mipsle and big-endian mips, built as build.sh builds them, as
// clients of a native server on loopback (mipsle also as the server of a
// native client). Big-endian mips checks the byte order of frame headers
// and datagrams both ways (--bidir, and a UDP run). It skips without
// qemu-user, except in CI (CI=1), where that is a broken setup. CI builds
// the binaries first with build.sh and names their directory in
// WPERF_CROSS_DIR; elsewhere the test builds them.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// qemuTarget is one cross binary: its name from build.sh, how Go builds
// it, and the qemu-user program that runs it.
type qemuTarget struct {
	name string // build.sh's wperf-linux-NAME
	env  []string
	qemu string
}

var qemuTargets = map[string]qemuTarget{
	"armv7":  {"armv7", []string{"GOARCH=arm", "GOARM=7"}, "qemu-arm"},
	"arm64":  {"arm64", []string{"GOARCH=arm64"}, "qemu-aarch64"},
	"mipsle": {"mipsle", []string{"GOARCH=mipsle", "GOMIPS=softfloat"}, "qemu-mipsel"},
	"mips":   {"mips", []string{"GOARCH=mips", "GOMIPS=softfloat"}, "qemu-mips"},
}

// crossBinaries are the binaries of one test run, built on first use.
type crossBinaries struct {
	dir   string // where they are built
	paths map[string]string
}

// get returns the binary for target q: build.sh's in WPERF_CROSS_DIR, or
// one built here with build.sh's flags.
func (cb *crossBinaries) get(t *testing.T, q qemuTarget) string {
	t.Helper()
	if dir := os.Getenv("WPERF_CROSS_DIR"); dir != "" {
		p := filepath.Join(dir, "wperf-linux-"+q.name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("WPERF_CROSS_DIR: %v", err)
		}
		return p
	}
	if p, ok := cb.paths[q.name]; ok {
		return p
	}
	p := filepath.Join(cb.dir, "wperf-linux-"+q.name)
	cmd := exec.Command(goTool(), "build", "-trimpath", "-tags", "nethttpomithttp2", "-ldflags", "-s -w", "-o", p, ".")
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), q.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", q.name, err, out)
	}
	cb.paths[q.name] = p
	return p
}

// qemuDoc is what the qemu runs check in a client's -J document.
type qemuDoc struct {
	End struct {
		SumReceived struct {
			Bytes int64 `json:"bytes"`
		} `json:"sum_received"`
		SumReceivedBidirReverse *struct {
			Bytes int64 `json:"bytes"`
		} `json:"sum_received_bidir_reverse"`
		Streams []struct {
			UDP *struct {
				Packets     int64   `json:"packets"`
				LostPercent float64 `json:"lost_percent"`
				OutOfOrder  int64   `json:"out_of_order"`
			} `json:"udp"`
		} `json:"streams"`
	} `json:"end"`
	Error string `json:"error"`
}

func TestQemuCrossBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no qemu runs")
	}
	for _, q := range qemuTargets {
		if _, err := exec.LookPath(q.qemu); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s: %v (apt-get install -y qemu-user)", q.qemu, err)
			}
			t.Skipf("%s: %v (apt-get install -y qemu-user)", q.qemu, err)
		}
	}
	native := wperfBinary(t)
	server := startQemuPeer(t, []string{native})
	cross := &crossBinaries{dir: t.TempDir(), paths: map[string]string{}}

	cases := []struct {
		target string
		args   []string
	}{
		{"armv7", nil}, {"armv7", []string{"-R"}},
		{"arm64", nil}, {"arm64", []string{"-R"}},
		{"mipsle", nil}, {"mipsle", []string{"-R"}},
		{"mips", []string{"--bidir"}},
		{"mips", []string{"-u", "--bidir", "-b", "4M", "-t", "1"}},
	}
	for _, c := range cases {
		q := qemuTargets[c.target]
		t.Run(fmt.Sprintf("%s client %s", c.target, strings.Join(c.args, " ")), func(t *testing.T) {
			bin := cross.get(t, q)
			qemuRun(t, append([]string{q.qemu, bin, "-c", "127.0.0.1", "-p", server}, c.args...))
		})
	}
	t.Run("mipsle server", func(t *testing.T) {
		q := qemuTargets["mipsle"]
		port := startQemuPeer(t, []string{q.qemu, cross.get(t, q)})
		for _, args := range [][]string{nil, {"-R"}} {
			qemuRun(t, append([]string{native, "-c", "127.0.0.1", "-p", port}, args...))
		}
	})
}

// startQemuPeer runs `cmd -s -p PORT` on loopback until the test ends and
// returns the port once it accepts connections.
func startQemuPeer(t *testing.T, cmd []string) string {
	t.Helper()
	port := e2eClosedPort(t)
	out := &e2eBuffer{}
	p := exec.Command(cmd[0], append(cmd[1:], "-s", "-B", "127.0.0.1", "-p", port, "--no-geo")...)
	p.Stdout, p.Stderr = out, out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Process.Kill()
		p.Wait()
		if t.Failed() {
			t.Logf("server %s said:\n%s", strings.Join(cmd, " "), out)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port)); err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not listening on %s after 30 s:\n%s", strings.Join(cmd, " "), port, out)
		}
	}
}

// qemuRun runs a client (2 s unless its arguments say otherwise) with -J
// and checks that data moved each way it should, and that a UDP run's
// sequence numbers and timestamps made sense at the other end.
func qemuRun(t *testing.T, cmd []string) {
	t.Helper()
	if !slices.Contains(cmd, "-t") {
		cmd = append(cmd, "-t", "2")
	}
	cmd = append(cmd, "-J", "--connect-timeout", "20s")
	out, err := exec.Command(cmd[0], cmd[1:]...).Output()
	var doc qemuDoc
	if jerr := json.Unmarshal(out, &doc); err != nil || jerr != nil || doc.Error != "" {
		t.Fatalf("%s: exit %v, JSON %v, error %q\n%s", strings.Join(cmd, " "), err, jerr, doc.Error, out)
	}
	if doc.End.SumReceived.Bytes == 0 {
		t.Errorf("%s: nothing received", strings.Join(cmd, " "))
	}
	if slices.Contains(cmd, "--bidir") && (doc.End.SumReceivedBidirReverse == nil || doc.End.SumReceivedBidirReverse.Bytes == 0) {
		t.Errorf("%s: nothing received the other way", strings.Join(cmd, " "))
	}
	note := formatUnits(float64(doc.End.SumReceived.Bytes), 'A') + " received"
	for i, s := range doc.End.Streams {
		u := s.UDP
		if u == nil {
			continue
		}
		if u.Packets == 0 || u.LostPercent > 20 || u.OutOfOrder != 0 {
			t.Errorf("%s: UDP stream %d: %d packets, %.1f%% lost, %d out of order: the datagrams were misread",
				strings.Join(cmd, " "), i+1, u.Packets, u.LostPercent, u.OutOfOrder)
		}
		note += fmt.Sprintf("; UDP stream %d: %d datagrams, %.1f%% lost, %d out of order", i+1, u.Packets, u.LostPercent, u.OutOfOrder)
	}
	t.Log(note)
}

package main

// tls_test.go runs wss:// end to end on loopback (every test shape, every
// way of checking the server, plain clients on a TLS port) and checks the
// pieces: the certificate kept in --tls-dir, the sniffing listener, the
// corked record writes and the bounded close.

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startE2ETLSServer is startE2EServer behind listenTLS, as runServer
// does it; it returns the server and the fingerprint it printed.
func startE2ETLSServer(t *testing.T, flags ...string) (*e2eServer, string) {
	t.Helper()
	cfg, err := parseArgs(append([]string{"-s"}, flags...))
	if err != nil {
		t.Fatalf("server options %q: %v", flags, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &e2eServer{
		host:     "127.0.0.1",
		port:     strconv.Itoa(ln.Addr().(*net.TCPAddr).Port),
		out:      &e2eBuffer{},
		cancel:   cancel,
		finished: make(chan struct{}),
	}
	out := &lineWriter{w: s.out}
	tln, err := listenTLS(cfg, ln, out)
	if err != nil {
		ln.Close()
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(s.finished)
		s.err = serve(ctx, cfg, tln, out)
	}()
	t.Cleanup(func() {
		cancel()
		if !s.wait(20 * time.Second) {
			t.Errorf("serve still running 20 s after its context ended")
		}
	})
	fp := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(s.out.String())
	if fp == "" {
		t.Fatalf("the server printed no fingerprint:\n%s", s.out.String())
	}
	return s, fp
}

func (s *e2eServer) wss() string { return "wss://" + net.JoinHostPort(s.host, s.port) + "/" }

// TestTLSEndToEnd runs every test shape over wss:// with a pinned
// certificate, and checks what the reports say about TLS.
func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	srv, fp := startE2ETLSServer(t, "--tls", "-J") // -J: server_output_json
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"upload", nil},
		{"reverse", []string{"-R"}},
		{"bidir -P 2", []string{"--bidir", "-P", "2"}},
		{"UDP over WebSocket", []string{"-u", "--udp-transport", "ws"}},
		{"UDP over real UDP", []string{"-u", "--udp-transport", "udp"}}, // TLS protects the control connection only
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e2eRun(append([]string{"-c", srv.wss(), "--fingerprint", fp, "-t", "0.5", "-J", "--get-server-output"}, tc.args...)...)
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("want exit 0 and a quiet stderr, got %v", r)
			}
			doc := e2eDecode(t, r.stdout)
			for path, want := range map[string]string{
				"start.wperf.url":                            srv.wss(),
				"start.wperf.tls.version":                    "TLS 1.3",
				"start.wperf.tls.peer_fingerprint":           fp,
				"start.wperf.tls.verified":                   "--fingerprint",
				"server_output_json.start.wperf.tls.version": "TLS 1.3",
			} {
				if got, _ := e2eGet(doc, path); got != want {
					t.Errorf("%s = %v, want %q", path, got, want)
				}
			}
			if c, _ := e2eGet(doc, "start.wperf.tls.cipher"); !strings.HasPrefix(c.(string), "TLS_") {
				t.Errorf("start.wperf.tls.cipher = %v", c)
			}
		})
	}
	t.Run("text", func(t *testing.T) {
		t.Parallel()
		r := srv.mustRunURL(t, srv.wss(), "--fingerprint", fp, "-t", "0.3")
		if !strings.Contains(r.stdout, "TLS 1.3, TLS_") || !strings.Contains(r.stdout, "server certificate "+fp+", checked by --fingerprint") {
			t.Errorf("no TLS line in:\n%s", r.stdout)
		}
	})
}

// mustRunURL runs a client against a URL (not host and port) that has to
// succeed.
func (s *e2eServer) mustRunURL(t *testing.T, url string, extra ...string) e2eResult {
	t.Helper()
	r := e2eRun(append([]string{"-c", url}, extra...)...)
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("wperf -c %s %q: want exit 0 and a quiet stderr, got %v", url, extra, r)
	}
	return r
}

// TestTLSVerification: each way of checking the server's certificate
// accepts it or fails with exit 1 and the reason.
func TestTLSVerification(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, fp := startE2ETLSServer(t, "--tls-dir", dir)
	ca := filepath.Join(dir, "cert.pem")
	wrong := "sha256:" + strings.Repeat("0", 64)
	byName := "wss://localhost:" + srv.port + "/"
	cases := []struct {
		name   string
		url    string
		args   []string
		ok     bool
		stderr string // what stderr must say
	}{
		{"system roots", srv.wss(), nil, false, "certificate signed by unknown authority"},
		{"--ca, by address", srv.wss(), []string{"--ca", ca}, true, ""},
		{"--ca, by name", byName, []string{"--ca", ca}, true, ""},
		{"--fingerprint", srv.wss(), []string{"--fingerprint", fp}, true, ""},
		{"--fingerprint, upper case with colons", srv.wss(), []string{"--fingerprint", "sha256:" + colonHex(fp)}, true, ""},
		{"--fingerprint, wrong", srv.wss(), []string{"--fingerprint", wrong}, false, "does not match --fingerprint: it is " + fp},
		{"--insecure", srv.wss(), []string{"--insecure"}, true, "wperf: warning: --insecure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e2eRun(append([]string{"-c", tc.url, "-t", "0.3"}, tc.args...)...)
			if (r.code == exitOK) != tc.ok || (!tc.ok && r.code != exitRuntime) {
				t.Fatalf("want success %v (else exit 1), got %v", tc.ok, r)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tc.stderr)
			}
			if tc.ok && strings.Count(r.stderr, "\n") > 1 {
				t.Errorf("more than one line on stderr: %q", r.stderr)
			}
		})
	}
	t.Run("-J keeps the reason", func(t *testing.T) {
		t.Parallel()
		r := e2eRun("-c", srv.wss(), "-t", "0.3", "-J", "--fingerprint", wrong)
		doc := e2eDecode(t, r.stdout)
		if msg, _ := doc["error"].(string); r.code != exitRuntime || !strings.Contains(msg, "does not match --fingerprint") {
			t.Errorf("exit %d, error %q", r.code, msg)
		}
	})
}

// colonHex writes a fingerprint's hex the way openssl prints it: upper
// case, a colon between bytes.
func colonHex(fp string) string {
	raw, _ := hex.DecodeString(strings.TrimPrefix(fp, "sha256:"))
	parts := make([]string, len(raw))
	for i, b := range raw {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{b}))
	}
	return strings.Join(parts, ":")
}

// TestTLSPlainClients: a TLS-only server tells a plain client to use
// wss:// (HTTP 400); with --tls-also-plain both kinds get served.
func TestTLSPlainClients(t *testing.T) {
	t.Parallel()
	only, _ := startE2ETLSServer(t, "--tls")
	r := e2eRun(only.args("-t", "0.3")...)
	if r.code != exitRuntime || !strings.Contains(r.stderr, "400 Bad Request") || !strings.Contains(r.stderr, "wss://") {
		t.Errorf("plain client on a TLS-only port: want exit 1 with the 400 and a hint at wss://, got %v", r)
	}
	nc, err := net.Dial("tcp", net.JoinHostPort(only.host, only.port))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	answer, _ := io.ReadAll(nc)
	if !strings.HasPrefix(string(answer), "HTTP/1.1 400 Bad Request\r\n") || !strings.HasSuffix(string(answer), plainRefusal) {
		t.Errorf("plain HTTP on a TLS-only port got %q", answer)
	}

	both, fp := startE2ETLSServer(t, "--tls", "--tls-also-plain")
	both.mustRun(t, "-t", "0.3")
	both.mustRunURL(t, both.wss(), "--fingerprint", fp, "-t", "0.3")
}

// TestSniffListener: plain connections come out of Accept as the
// *net.TCPConn they were (so writev stays), TLS ones as *tlsConn; a
// client that sends nothing holds up nobody.
func TestSniffListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := makeSelfSigned("")
	if err != nil {
		t.Fatal(err)
	}
	sl := newSniffListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}}, true)
	defer sl.Close()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, first := range []string{"G", "\x16"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, first)
		done := make(chan net.Conn, 1)
		go func() {
			nc, _ := sl.Accept()
			done <- nc
		}()
		select {
		case nc := <-done:
			_, plain := nc.(*net.TCPConn)
			_, secure := nc.(*tlsConn)
			if plain != (first == "G") || secure != (first == "\x16") {
				t.Errorf("first byte %q: accepted a %T", first, nc)
			}
			nc.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("first byte %q: not accepted while a silent client waits", first)
		}
	}
	sl.Close()
	if _, err := sl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestTLSDirKeepsCertificate: the certificate made in --tls-dir is used
// again on the next start (same fingerprint), its key is private, and a
// damaged one is an error rather than replaced.
func TestTLSDirKeepsCertificate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	o := &reachOptions{selfSigned: true, tlsDir: dir}
	first, how, err := serverCertificate(o, "")
	if err != nil || !strings.Contains(how, "new") {
		t.Fatalf("first start: %v (%s)", err, how)
	}
	again, how, err := serverCertificate(o, "")
	if err != nil || strings.Contains(how, "new") {
		t.Fatalf("second start: %v (%s)", err, how)
	}
	if fingerprint(first.Certificate[0]) != fingerprint(again.Certificate[0]) {
		t.Error("the fingerprint changed from one start to the next")
	}
	if fi, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, mode %v; want 0600", err, fi.Mode())
	}
	if leaf := first.Leaf; leaf.PublicKeyAlgorithm.String() != "ECDSA" || !leaf.IsCA || leaf.NotAfter.Before(time.Now().AddDate(9, 0, 0)) {
		t.Errorf("certificate: %v, CA %v, until %v; want a long-lived ECDSA CA", leaf.PublicKeyAlgorithm, leaf.IsCA, leaf.NotAfter)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := serverCertificate(o, ""); !errors.Is(err, errTLSDir) {
		t.Errorf("damaged certificate: %v, want errTLSDir", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cert.pem")); string(b) != "damaged" {
		t.Error("the damaged certificate was overwritten")
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	fp := fingerprint([]byte("abc"))
	want := "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // FIPS 180-2's example
	if fp != want {
		t.Errorf("fingerprint(abc) = %s, want %s", fp, want)
	}
}

// TestWriteFlat: a batch without writev goes out whole, in order, in
// pieces of at most flatChunk bytes.
func TestWriteFlat(t *testing.T) {
	t.Parallel()
	for _, sizes := range [][]int{{}, {1}, {10, 65536, 10, 65536}, {flatChunk}, {flatChunk + 1}, {3, flatChunk * 2, 7}, {1 << 20}} {
		var vec net.Buffers
		var want []byte
		for i, n := range sizes {
			b := make([]byte, n)
			for j := range b {
				b[j] = byte(i*7 + j)
			}
			vec = append(vec, b)
			want = append(want, b...)
		}
		var w pieceWriter
		var flat []byte
		if err := writeFlat(&w, vec, &flat); err != nil {
			t.Fatal(err)
		}
		if string(w.got) != string(want) {
			t.Errorf("sizes %v: wrote %d bytes, not the %d given in order", sizes, len(w.got), len(want))
		}
		if w.largest > flatChunk || cap(flat) > flatChunk {
			t.Errorf("sizes %v: a write of %d bytes, a buffer of %d; want at most %d", sizes, w.largest, cap(flat), flatChunk)
		}
	}
}

type pieceWriter struct {
	got     []byte
	largest int
}

func (w *pieceWriter) Write(p []byte) (int, error) {
	w.got = append(w.got, p...)
	w.largest = max(w.largest, len(p))
	return len(p), nil
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestTLSCork: the records of one large write reach the socket in one
// system call, where crypto/tls alone makes one per 16 KiB record.
func TestTLSCork(t *testing.T) {
	t.Parallel()
	client, server, raw := tlsPipe(t)
	go io.Copy(io.Discard, server)
	p := make([]byte, flatChunk)
	before := raw.writes
	if _, err := client.Write(p); err != nil {
		t.Fatal(err)
	}
	if n := raw.writes - before; n != 1 {
		t.Errorf("a %d-byte write took %d socket writes, want 1", len(p), n)
	}
	if _, err := client.Write([]byte("small")); err != nil || raw.writes-before != 2 {
		t.Errorf("a small write: %v, %d socket writes in all", err, raw.writes-before)
	}
}

// TestTLSCloseBounded: closing a TLS connection whose peer reads nothing
// more takes about closeNotifyWait, not crypto/tls's five seconds.
func TestTLSCloseBounded(t *testing.T) {
	t.Parallel()
	client, _, _ := tlsPipe(t)
	client.SetWriteDeadline(time.Now().Add(time.Second))
	for { // fill the socket buffers: the peer never reads
		if _, err := client.Conn.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	start := time.Now()
	client.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v", took)
	}
}

// tlsPipe is a handshaken TLS connection over loopback: its client end
// (a tlsConn over a countingConn), server end, and the counter.
func tlsPipe(t *testing.T) (*tlsConn, *tls.Conn, *countingConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert, err := makeSelfSigned("")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *tls.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		sc := tls.Server(nc, &tls.Config{Certificates: []tls.Certificate{*cert}})
		sc.SetDeadline(time.Now().Add(10 * time.Second))
		sc.Handshake()
		sc.SetDeadline(time.Time{})
		accepted <- sc
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw := &countingConn{Conn: nc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tlsClient(ctx, raw, "localhost", &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	if server == nil {
		t.Fatal("TLS accept failed")
	}
	t.Cleanup(func() {
		raw.Close()
		server.Close()
	})
	return c.(*tlsConn), server, raw
}

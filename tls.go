package main

// tls.go is wss:// (TLS 1.2 and 1.3, RFC 8446, under RFC 6455 §4.1's
// "secure" flag): the server's certificate (--cert/--key, or a
// self-signed one made by --tls and kept by --tls-dir), its listener,
// which tells TLS from plain HTTP by the first byte, and the client's
// checks of the server (system roots, --ca, --fingerprint, --insecure).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Sentinel errors of TLS set-up and verification.
var (
	errFingerprint = errors.New("the server's certificate does not match --fingerprint")
	errTLSDir      = errors.New("--tls-dir")
)

// tlsRecordHandshake is the first byte of every TLS connection: the
// content type of the ClientHello's record (RFC 8446 §5.1). An HTTP
// request starts with a letter instead.
const tlsRecordHandshake = 0x16

// Waits of the TLS layer.
const (
	// closeNotifyWait bounds the close_notify alert a closing
	// connection sends (RFC 8446 §6.1); a peer that reads nothing more
	// must not hold a close for crypto/tls's own five seconds.
	closeNotifyWait = 250 * time.Millisecond
	// sniffWait bounds how long a new connection may take to send its
	// first byte.
	sniffWait = 10 * time.Second
)

// fingerprint names a certificate the way --fingerprint takes it and the
// server prints it: "sha256:" and the hex of the SHA-256 of its DER.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// setFingerprint reads --fingerprint: "sha256:" and 64 hex digits, in
// either case, with or without the colons that openssl puts between bytes.
func (o *reachOptions) setFingerprint(v string) error {
	h, ok := strings.CutPrefix(strings.ToLower(v), "sha256:")
	h = strings.ReplaceAll(h, ":", "")
	raw, err := hex.DecodeString(h)
	if !ok || err != nil || len(raw) != sha256.Size {
		return fmt.Errorf("bad --fingerprint %q: want sha256: and 64 hex digits, as the server prints it", v)
	}
	o.fingerprint = raw
	return nil
}

func (o *reachOptions) setTLSDir(v string) error {
	if v == "" {
		return errors.New("bad --tls-dir \"\": want a directory")
	}
	if fi, err := os.Stat(v); err == nil && !fi.IsDir() {
		return fmt.Errorf("bad --tls-dir %q: not a directory", v)
	}
	o.tlsDir = v
	return nil
}

// ---- the client ----

// buildClientTLS is the client's TLS configuration for a wss:// server
// named serverName. By default the server's certificate must chain to the
// system's roots and name the server; --ca adds roots; --fingerprint
// replaces every check with one comparison; --insecure drops them all.
func (o *reachOptions) buildClientTLS(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// Bulk data from the first byte: full records at once.
		DynamicRecordSizingDisabled: true,
		// Every connection of a test goes to the same server: the
		// streams resume the control connection's session.
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
	}
	switch {
	case o.insecure:
		cfg.InsecureSkipVerify = true
	case o.fingerprint != nil:
		want := o.fingerprint
		cfg.InsecureSkipVerify = true // the pin below is the whole check
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errFingerprint
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if string(got[:]) != string(want) {
				return fmt.Errorf("%w: it is %s", errFingerprint, fingerprint(cs.PeerCertificates[0].Raw))
			}
			return nil
		}
	case o.caFile != "":
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pemBytes, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("bad --ca: %v", err)
		}
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("bad --ca %q: no PEM certificate in it", o.caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// tlsClient runs the client's TLS handshake on nc within ctx. A nil cfg
// checks the server against the system's roots.
func tlsClient(ctx context.Context, nc net.Conn, serverName string, cfg *tls.Config) (net.Conn, error) {
	if cfg == nil {
		cfg = &tls.Config{ServerName: serverName, NextProtos: []string{"http/1.1"}, DynamicRecordSizingDisabled: true}
	}
	c := newTLSConn(nc, func(raw net.Conn) *tls.Conn { return tls.Client(raw, cfg) })
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, tlsHandshakeError(ctx, err)
	}
	return c, nil
}

// tlsHandshakeError adds what the user can do about a failed handshake.
func tlsHandshakeError(ctx context.Context, err error) error {
	var verr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("TLS handshake: %w", ctx.Err())
	case errors.As(err, &verr):
		return fmt.Errorf("TLS: %w (--ca FILE trusts a private CA; --fingerprint pins the server's certificate)", err)
	case errors.As(err, &rerr):
		return fmt.Errorf("TLS: %w (does the server speak plain ws://?)", err)
	}
	return fmt.Errorf("TLS: %w", err)
}

// tlsConn is a TLS connection tuned for bulk data. crypto/tls writes
// each record (16 KiB at most) with a system call of its own; a tlsConn
// gathers the records of a large Write beneath the TLS layer and sends
// them in few calls. Its Close does not wait long for the close_notify
// alert: when the peer has stopped reading, the socket is closed anyway
// after closeNotifyWait.
type tlsConn struct {
	*tls.Conn
	raw  net.Conn // the TCP socket
	cork *corkConn
	wmu  sync.Mutex // one corked Write at a time
}

// newTLSConn puts a corkConn between raw and the TLS layer that wrap makes.
func newTLSConn(raw net.Conn, wrap func(net.Conn) *tls.Conn) *tlsConn {
	cork := &corkConn{Conn: raw}
	return &tlsConn{Conn: wrap(cork), raw: raw, cork: cork}
}

// tlsMaxRecord is the most plaintext one TLS record carries (RFC 8446
// §5.1): a Write up to this size is one record and one system call anyway.
const tlsMaxRecord = 16 << 10

func (c *tlsConn) Write(p []byte) (int, error) {
	if len(p) <= tlsMaxRecord {
		return c.Conn.Write(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.cork.setCorked(true)
	n, err := c.Conn.Write(p)
	if ferr := c.cork.setCorked(false); err == nil && ferr != nil {
		err = ferr
	}
	return n, err
}

// NetConn is the TCP socket, for socket options and TCP_INFO.
func (c *tlsConn) NetConn() net.Conn { return c.raw }

func (c *tlsConn) Close() error {
	t := time.AfterFunc(closeNotifyWait, func() { c.raw.Close() })
	defer t.Stop()
	return c.Conn.Close()
}

// corkMax is the most a corkConn holds back: room for the records of a
// Write of flatChunk bytes (a record adds at most 29 bytes: TLS 1.2's
// header, explicit nonce and tag), so they leave in one system call.
const corkMax = flatChunk + flatChunk/tlsMaxRecord*64

// corkConn is the socket as crypto/tls sees it. While corked it collects
// the records crypto/tls writes, and sends them when full or uncorked.
// crypto/tls writes under its own lock; mu also covers the uncorking,
// which happens outside it. A write error sticks, as it does in crypto/tls.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte // made on the first corked write: only bulk senders need it
	err    error

	// Reading: crypto/tls asks for about a record at a time. Once a
	// connection has proved to be a bulk receiver, it reads from the
	// socket in large pieces into rbuf and hands them out from there.
	// crypto/tls reads under its own lock, so one reader at a time.
	rbuf       []byte
	rpos, rend int
	readTotal  int64
}

// Bulk reads: a connection that received bulkAfter bytes reads the socket
// readChunk bytes at a time, some eight records.
const (
	bulkAfter = 1 << 20
	readChunk = 128 << 10
)

func (c *corkConn) Read(p []byte) (int, error) {
	if c.rpos < c.rend {
		n := copy(p, c.rbuf[c.rpos:c.rend])
		c.rpos += n
		return n, nil
	}
	if c.rbuf == nil && (c.readTotal < bulkAfter || len(p) >= readChunk) {
		n, err := c.Conn.Read(p)
		c.readTotal += int64(n)
		return n, err
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, readChunk)
	}
	n, err := c.Conn.Read(c.rbuf)
	c.rpos, c.rend = 0, n
	m := copy(p, c.rbuf[:n])
	c.rpos = m
	return m, err
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked {
		return c.Conn.Write(p)
	}
	if len(c.buf)+len(p) > corkMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > corkMax {
			return c.Conn.Write(p)
		}
	}
	if c.buf == nil {
		c.buf = make([]byte, 0, corkMax)
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// setCorked corks or uncorks; uncorking sends what was held back.
func (c *corkConn) setCorked(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = on
	if on {
		return nil
	}
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 || c.err != nil {
		return c.err
	}
	_, c.err = c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return c.err
}

// flatChunk bounds the copy that a connection without writev (TLS) makes
// of a batch of frames: the batch goes out in pieces of this size. In
// BenchmarkEngineWSS, 64 KiB cost more CPU per byte and 256 KiB no less.
const flatChunk = 128 << 10

// writeFlat writes the buffers of vec to w in pieces of up to flatChunk
// bytes, copied into *flat, which is reused from call to call.
func writeFlat(w io.Writer, vec net.Buffers, flat *[]byte) error {
	if cap(*flat) < flatChunk {
		total := 0
		for _, v := range vec {
			total += len(v)
		}
		if cap(*flat) < min(total, flatChunk) {
			*flat = make([]byte, 0, min(total, flatChunk))
		}
	}
	buf := (*flat)[:0]
	for _, v := range vec {
		for len(v) > 0 {
			if len(buf) == cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
			n := copy(buf[len(buf):cap(buf)], v)
			buf, v = buf[:len(buf)+n], v[n:]
		}
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	*flat = buf[:0]
	return nil
}

// ---- the server ----

// tlsFacts describe one TLS connection for the reports.
type tlsFacts struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
	// PeerFingerprint is the server certificate's (the client reports it).
	PeerFingerprint string `json:"peer_fingerprint,omitempty"`
	// Verified says how the client checked that certificate: "system
	// roots", "--ca", "--fingerprint" or "none (--insecure)".
	Verified string `json:"verified,omitempty"`
	Resumed  bool   `json:"resumed,omitempty"`
}

func (f *tlsFacts) line() string {
	s := f.Version + ", " + f.Cipher
	if f.PeerFingerprint != "" {
		s += ", server certificate " + f.PeerFingerprint
	}
	if f.Verified != "" {
		s += ", checked by " + f.Verified
	}
	return s
}

// connTLSFacts reads c's TLS state; nil when c is plain. The client
// passes its options (o), which say how it checked the server.
func connTLSFacts(c *wsConn, o *reachOptions) *tlsFacts {
	tc, ok := c.nc.(*tlsConn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	f := &tlsFacts{Version: tls.VersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite), Resumed: cs.DidResume}
	if o == nil {
		return f
	}
	if len(cs.PeerCertificates) > 0 {
		f.PeerFingerprint = fingerprint(cs.PeerCertificates[0].Raw)
	}
	switch {
	case o.insecure:
		f.Verified = "none (--insecure)"
	case o.fingerprint != nil:
		f.Verified = "--fingerprint"
	case o.caFile != "":
		f.Verified = "--ca and system roots"
	default:
		f.Verified = "system roots"
	}
	return f
}

// serverCertificate is the certificate the server presents: --cert's, or
// a self-signed one, made now or kept in --tls-dir. It says which.
func serverCertificate(o *reachOptions, bind string) (*tls.Certificate, string, error) {
	if o.serverCert != nil {
		return o.serverCert, o.certFile, nil
	}
	if o.tlsDir == "" {
		cert, err := makeSelfSigned(bind)
		return cert, "self-signed, made at start-up", err
	}
	certPath, keyPath := filepath.Join(o.tlsDir, "cert.pem"), filepath.Join(o.tlsDir, "key.pem")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return &cert, "self-signed, kept in " + o.tlsDir, nil
	}
	if _, statErr := os.Stat(certPath); statErr == nil {
		return nil, "", fmt.Errorf("%w: %v", errTLSDir, err) // there, but unusable: never overwrite it
	}
	made, err := makeSelfSigned(bind)
	if err == nil {
		err = saveCertificate(made, o.tlsDir, certPath, keyPath)
	}
	return made, "self-signed, new, kept in " + o.tlsDir, err
}

// makeSelfSigned makes an ECDSA P-256 certificate that is its own CA, for
// this host's names and loopback (and the --bind address), valid for ten
// years. Clients pin it with --fingerprint, or trust it with --ca.
func makeSelfSigned(bind string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "wperf"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// saveCertificate writes a certificate and its key as PEM: the key
// readable by its owner only, and in place only once complete.
func saveCertificate(cert *tls.Certificate, dir, certPath, keyPath string) error {
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return errors.New("not an ECDSA key")
	}
	// SEC 1's form, as openssl ecparam writes it: marshalling PKCS #8
	// would link in every key type's encoder.
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", errTLSDir, err)
	}
	for _, f := range []struct {
		path, kind string
		der        []byte
		mode       os.FileMode
	}{{keyPath, "EC PRIVATE KEY", keyDER, 0o600}, {certPath, "CERTIFICATE", cert.Certificate[0], 0o644}} {
		tmp := f.path + ".new"
		data := pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der})
		if err := os.WriteFile(tmp, data, f.mode); err != nil {
			return fmt.Errorf("%w: %v", errTLSDir, err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return fmt.Errorf("%w: %v", errTLSDir, err)
		}
	}
	return nil
}

// listenTLS wraps the server's listener when TLS is on, and says which
// certificate it serves and its fingerprint. Without TLS it returns ln.
func listenTLS(cfg *config, ln net.Listener, out *lineWriter) (net.Listener, error) {
	o := &cfg.reach
	if o.certFile == "" && !o.selfSigned {
		return ln, nil
	}
	cert, source, err := serverCertificate(o, cfg.bind)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	fp := fingerprint(cert.Certificate[0])
	if cfg.json {
		b, _ := json.Marshal(map[string]any{"event": "tls", "fingerprint": fp, "certificate": source, "also_plain": o.alsoPlain})
		out.raw(string(b) + "\n")
	} else {
		mode := "wss:// only"
		if o.alsoPlain {
			mode = "wss:// and ws://"
		}
		out.printf("TLS certificate %s (%s); %s", fp, source, mode)
	}
	tcfg := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
		// Bulk data from the first byte: full records at once.
		DynamicRecordSizingDisabled: true,
	}
	return newSniffListener(ln, tcfg, o.alsoPlain), nil
}

// sniffListener hands net/http TLS connections (as *tlsConn) and, with
// --tls-also-plain, plain ones, told apart by their first byte. Plain
// connections stay *net.TCPConn, so they keep writev. Without
// --tls-also-plain, a plain request gets a 400 that says to use wss://.
// Each new connection is sniffed in a goroutine of its own, so a client
// that sends nothing holds up nobody.
type sniffListener struct {
	net.Listener
	tls       *tls.Config
	alsoPlain bool
	conns     chan net.Conn
	errs      chan error
	done      chan struct{}
	closeOnce sync.Once
}

func newSniffListener(ln net.Listener, cfg *tls.Config, alsoPlain bool) *sniffListener {
	l := &sniffListener{Listener: ln, tls: cfg, alsoPlain: alsoPlain,
		conns: make(chan net.Conn), errs: make(chan error), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *sniffListener) acceptLoop() {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of file descriptors, say
			continue
		}
		go l.sniff(nc)
	}
}

// sniff peeks at a new connection's first byte and passes it on, or
// answers a plain request that TLS is needed.
func (l *sniffListener) sniff(nc net.Conn) {
	nc.SetReadDeadline(time.Now().Add(sniffWait))
	first, nc, err := peekByte(nc)
	nc.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		nc.Close()
		return
	case first == tlsRecordHandshake:
		nc = newTLSConn(nc, func(raw net.Conn) *tls.Conn { return tls.Server(raw, l.tls) })
	case !l.alsoPlain:
		refusePlain(nc)
		return
	}
	select {
	case l.conns <- nc:
	case <-l.done:
		nc.Close()
	}
}

// plainRefusal is the answer to plain HTTP on a TLS-only port.
const plainRefusal = "this wperf server speaks TLS only: connect with wss:// (or start it with --tls-also-plain)\n"

// refusePlain answers a plain HTTP request with 400 and closes. It reads
// what the client sent first (briefly), so that closing does not reset
// the connection before the client has read the answer.
func refusePlain(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(nc, "HTTP/1.1 400 Bad Request\r\n%s: %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		wperfHeader, software, len(plainRefusal), plainRefusal)
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	var buf [4096]byte
	for n := 0; n < 64<<10; {
		m, err := nc.Read(buf[:])
		if n += m; err != nil {
			return
		}
	}
}

func (l *sniffListener) Accept() (net.Conn, error) {
	select {
	case nc := <-l.conns:
		return nc, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *sniffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// peekByteCopy reads a connection's first byte and returns a connection
// that gives it back first: peekByte where the system cannot peek.
func peekByteCopy(nc net.Conn) (byte, net.Conn, error) {
	var b [1]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil {
		return 0, nc, err
	}
	return b[0], &replayConn{Conn: nc, first: b[:]}, nil
}

// replayConn is a connection with bytes already read from it put back in
// front. NetConn is the connection beneath, for socket options.
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *replayConn) NetConn() net.Conn { return c.Conn }

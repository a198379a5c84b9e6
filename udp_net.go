package main

// udp_net.go carries test datagrams over real UDP sockets: the session
// handshake, the server's one shared socket, the client's per-stream
// sockets, and the batch sender both ends use.
//
// Session handshake (UDP transport of wperf.v1):
//
//  1. The control connection negotiates as usual. When the server grants
//     real UDP it puts its UDP port (the TCP port's number) and a fresh
//     random 16-byte session secret in its accept.
//  2. The client opens one connected UDP socket per stream and sends
//     HELLO datagrams from it: magic "wpud", version 1, kind 1, the
//     stream id and the secret (28 bytes). It retries with backoff for
//     about 2 s, until a HELLO-ACK (the same layout, kind 2, never larger
//     than the hello) comes back; no ack means UDP is blocked, and "auto"
//     falls back to WebSocket.
//  3. A valid hello binds its source address to that stream; later valid
//     hellos from a new address move the binding (NAT rebinding). The
//     hello also opens the client's NAT mapping, so for download and
//     bidir streams the client repeats it about every second while data
//     flows towards it; each is answered with an ack of the same size.
//  4. Data datagrams (seq, send time, padding: udp.go) flow on bound
//     addresses only. Their first byte is zero (seq < 2^56), a control
//     datagram's never is, so receivers tell them apart by one byte and
//     `-l 16` still works.
//
// The server drops, counts and never answers anything else: datagrams
// from unbound sources, malformed hellos, and hellos with an unknown
// secret or stream. It sends only to addresses that proved the secret,
// only while their session is registered, and (the caller paces) only
// at the session's rate for its time. Acks are no larger than hellos,
// so the server cannot be used to amplify traffic. The secret is as
// private as the control connection: over wss:// only the client knows
// it; over plain ws:// an on-path observer could bind a stream to an
// address of its choosing (a check that the new address can receive,
// before rebinding, would close that).

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Control datagram layout.
const (
	udpMagic      = "wpud" // first byte 'w' is non-zero: never a data datagram
	udpVersion    = 1
	udpKindHello  = 1
	udpKindAck    = 2
	udpSecretLen  = 16
	udpControlLen = 28 // magic 4, version 1, kind 1, reserved 2, stream id 4, secret 16
)

// Handshake timing.
const (
	udpHelloBudget     = 2 * time.Second // for the first ack, hellos included
	udpHelloFirstWait  = 100 * time.Millisecond
	udpKeepalivePeriod = time.Second
)

// Batch sizes and socket buffers. A server reader's buffers hold any
// datagram; recvmmsg gains little past a few dozen per call.
const (
	udpSendBatch    = 128 // datagrams per send call at most
	udpReadDepth    = 32
	udpSocketBuffer = 4 << 20 // the kernel caps it at net.core.*mem_max
)

var (
	errUDPSecret     = errors.New("udp secret must be 32 hex digits")
	errUDPNoAck      = errors.New("no UDP handshake answer: UDP is blocked on the path")
	errUDPRegistered = errors.New("udp session secret or stream already registered")
	errUDPUnbound    = errors.New("udp stream has no proven peer address")
	errUDPSessionEnd = errors.New("udp session is no longer registered")
)

// udpSecret is a session's shared secret; on the wire (JSON) it is hex.
type udpSecret [udpSecretLen]byte

func newUDPSecret() udpSecret {
	var s udpSecret
	rand.Read(s[:])
	return s
}

func (s udpSecret) String() string { return hex.EncodeToString(s[:]) }

func parseUDPSecret(text string) (udpSecret, error) {
	var s udpSecret
	if len(text) != 2*udpSecretLen {
		return s, errUDPSecret
	}
	if _, err := hex.Decode(s[:], []byte(text)); err != nil {
		return s, errUDPSecret
	}
	return s, nil
}

// putControl writes a hello or ack into b and returns it.
func putControl(b []byte, kind byte, id uint32, secret udpSecret) []byte {
	b = b[:udpControlLen]
	copy(b, udpMagic)
	b[4], b[5], b[6], b[7] = udpVersion, kind, 0, 0
	binary.BigEndian.PutUint32(b[8:12], id)
	copy(b[12:], secret[:])
	return b
}

// readControl parses a control datagram; ok is false for anything that
// is not exactly one of this version.
func readControl(b []byte) (kind byte, id uint32, secret udpSecret, ok bool) {
	if len(b) != udpControlLen || string(b[:4]) != udpMagic || b[4] != udpVersion {
		return 0, 0, secret, false
	}
	copy(secret[:], b[12:])
	return b[5], binary.BigEndian.Uint32(b[8:12]), secret, true
}

// ---- server ----

// udpListener is the server's one UDP socket. Its reader goroutine
// demultiplexes datagrams by source address to the streams that hellos
// bound, feeding receiving streams' counters.
type udpListener struct {
	conn   *net.UDPConn
	reader *udpReadBatch
	epoch  time.Time // arrival times count from here

	mu       sync.Mutex // guards the maps and every peer's addr, for the reader's batch
	sessions map[udpSecret]*udpSession
	byAddr   map[netip.AddrPort]*udpPeer
	touched  []*udpPeer // receivers updated in the current batch

	unbound   atomic.Int64 // data from unbound sources, or not for a receiving stream
	badHellos atomic.Int64 // malformed, or unknown secret or stream
	sentBytes atomic.Int64 // every byte this socket sent: acks and data
	done      chan struct{}
}

// udpPeer is one stream's server end.
type udpPeer struct {
	id      uint32
	recv    *udpCounter // set when the server receives on this stream
	session *udpSession

	addr      netip.AddrPort              // bound source; guarded by the listener's mu
	dst       atomic.Pointer[net.UDPAddr] // addr, for senders
	bound     chan struct{}
	boundOnce sync.Once
	batchMark bool // in the listener's touched list; reader only
}

// newUDPPeer makes a stream's server end; recv is its counter if the
// server receives on it, nil if it only sends.
func newUDPPeer(id uint32, recv *udpCounter) *udpPeer {
	return &udpPeer{id: id, recv: recv, bound: make(chan struct{})}
}

// udpSession is a registered test: its secret and streams.
type udpSession struct {
	l      *udpListener
	secret udpSecret
	peers  map[uint32]*udpPeer
	live   atomic.Bool
}

// listenUDPWith opens the shared socket, e.g. on ":5201" (both IPv4 and
// IPv6 where the system allows), with a control function for the socket
// (the server's --bind-dev), and starts its reader.
func listenUDPWith(addr string, control sockControl) (*udpListener, error) {
	pc, err := (&net.ListenConfig{Control: control}).ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	conn := pc.(*net.UDPConn)
	conn.SetReadBuffer(udpSocketBuffer)
	conn.SetWriteBuffer(udpSocketBuffer)
	reader, err := newUDPReadBatch(conn, udpReadDepth, 64<<10)
	if err != nil {
		conn.Close()
		return nil, err
	}
	l := &udpListener{
		conn:     conn,
		reader:   reader,
		epoch:    time.Now(),
		sessions: make(map[udpSecret]*udpSession),
		byAddr:   make(map[netip.AddrPort]*udpPeer),
		done:     make(chan struct{}),
	}
	go l.serve()
	return l, nil
}

// port is the socket's port, for the accept message.
func (l *udpListener) port() int { return l.conn.LocalAddr().(*net.UDPAddr).Port }

// close stops the reader and closes the socket.
func (l *udpListener) close() error {
	err := l.conn.Close()
	<-l.done
	return err
}

// register admits a test's streams under secret until unregister.
func (l *udpListener) register(secret udpSecret, peers ...*udpPeer) (*udpSession, error) {
	s := &udpSession{l: l, secret: secret, peers: make(map[uint32]*udpPeer, len(peers))}
	for _, p := range peers {
		if _, dup := s.peers[p.id]; dup || p.session != nil {
			return nil, errUDPRegistered
		}
		s.peers[p.id] = p
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.sessions[secret]; dup {
		return nil, errUDPRegistered
	}
	for _, p := range peers {
		p.session = s
	}
	l.sessions[secret] = s
	s.live.Store(true)
	return s, nil
}

// unregister forgets the session: its addresses are unbound, its
// senders stop with errUDPSessionEnd and its datagrams count as unbound.
func (s *udpSession) unregister() {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !s.live.Swap(false) {
		return
	}
	delete(l.sessions, s.secret)
	for _, p := range s.peers {
		if p.addr.IsValid() && l.byAddr[p.addr] == p {
			delete(l.byAddr, p.addr)
		}
		p.addr = netip.AddrPort{}
		p.dst.Store(nil)
	}
}

// waitBound waits for the stream's first valid hello.
func (p *udpPeer) waitBound(ctx context.Context) error {
	select {
	case <-p.bound:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve is the reader goroutine.
func (l *udpListener) serve() {
	defer close(l.done)
	for {
		n, err := l.reader.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // a transient error; never spin on a lasting one
			continue
		}
		l.dispatch(n, int64(time.Since(l.epoch)))
	}
}

// dispatch handles one batch under the lock, then publishes the counters
// it touched, so snapshots see whole batches.
func (l *udpListener) dispatch(n int, arrivalNs int64) {
	l.mu.Lock()
	var last *udpPeer
	var lastFrom netip.AddrPort
	for i := 0; i < n; i++ {
		data, size, from := l.reader.datagram(i)
		if len(data) > 0 && data[0] != 0 {
			l.hello(data, from)
			last = nil // a hello may have moved bindings
			continue
		}
		p := last
		if p == nil || from != lastFrom {
			p, lastFrom = l.byAddr[from], from
			last = p
		}
		seq, sentNs, ok := readDatagramHeader(data)
		if p == nil || p.recv == nil || !ok {
			l.unbound.Add(1)
			continue
		}
		p.recv.observe(seq, sentNs, arrivalNs, size)
		if !p.batchMark {
			p.batchMark = true
			l.touched = append(l.touched, p)
		}
	}
	l.mu.Unlock()
	for i, p := range l.touched {
		p.recv.publish()
		p.batchMark = false
		l.touched[i] = nil
	}
	l.touched = l.touched[:0]
}

// hello binds a stream to the sender of a valid hello and acknowledges
// it; anything else is counted and left unanswered. Called under mu.
func (l *udpListener) hello(data []byte, from netip.AddrPort) {
	kind, id, secret, ok := readControl(data)
	var p *udpPeer
	if s := l.sessions[secret]; ok && kind == udpKindHello && s != nil {
		p = s.peers[id]
	}
	if p == nil {
		l.badHellos.Add(1)
		return
	}
	if p.addr != from {
		if old := l.byAddr[from]; old != nil && old != p { // the address moved to this stream
			old.addr = netip.AddrPort{}
			old.dst.Store(nil)
		}
		if p.addr.IsValid() && l.byAddr[p.addr] == p {
			delete(l.byAddr, p.addr)
		}
		l.byAddr[from] = p
		p.addr = from
		p.dst.Store(net.UDPAddrFromAddrPort(from))
	}
	p.boundOnce.Do(func() { close(p.bound) })
	var ack [udpControlLen]byte
	if n, err := l.conn.WriteToUDPAddrPort(putControl(ack[:], udpKindAck, id, secret), from); err == nil {
		l.sentBytes.Add(int64(n))
	}
}

// udpListenerCounts are the listener's drop and send totals.
type udpListenerCounts struct {
	Unbound   int64 // datagrams from sources no hello bound, never answered
	BadHellos int64 // control datagrams with a wrong secret, stream or form
	SentBytes int64 // UDP payload bytes this socket sent
}

func (l *udpListener) counts() udpListenerCounts {
	return udpListenerCounts{Unbound: l.unbound.Load(), BadHellos: l.badHellos.Load(), SentBytes: l.sentBytes.Load()}
}

// newSender makes the server's sender on a registered stream. It sends
// through the shared socket to the stream's proven address, and fails
// once the session is unregistered.
func (p *udpPeer) newSender(size int, epoch time.Time) *udpSender {
	s := newUDPSender(p.session.l.conn, size, epoch)
	s.target = func() (*net.UDPAddr, error) {
		if !p.session.live.Load() {
			return nil, errUDPSessionEnd
		}
		if dst := p.dst.Load(); dst != nil {
			return dst, nil
		}
		return nil, errUDPUnbound
	}
	s.sentBytes = &p.session.l.sentBytes
	return s
}

// ---- sending, both ends ----

// udpSender numbers, stamps and sends one stream's datagrams in batches.
// Its buffer holds a batch back to back with random padding written
// once; each send rewrites only the 16-byte headers. One goroutine sends;
// any may read the counts.
type udpSender struct {
	w         *udpWriteBatch
	size      int
	buf       []byte
	seq       uint64 // the last sequence number used
	epoch     time.Time
	target    func() (*net.UDPAddr, error) // nil: the socket is connected
	sentBytes *atomic.Int64                // also counted here, if set

	packets atomic.Int64 // datagrams handed to the kernel
	bytes   atomic.Int64
}

func newUDPSender(conn *net.UDPConn, size int, epoch time.Time) *udpSender {
	s := &udpSender{
		w:     newUDPWriteBatch(conn, udpSendBatch),
		size:  size,
		buf:   make([]byte, udpSendBatch*size),
		epoch: epoch,
	}
	fillDatagramPadding(s.buf)
	return s
}

// batch is the most datagrams one send takes.
func (s *udpSender) batch() int { return udpSendBatch }

// send sends the next n datagrams (at most batch; more are cut) and
// returns how many the kernel took. Datagrams it did not take are not
// numbered, so they do not show as loss: the sender was slow, the
// network did not lose them.
func (s *udpSender) send(n int) (int, error) {
	n = min(n, udpSendBatch)
	var dst *net.UDPAddr
	if s.target != nil {
		var err error
		if dst, err = s.target(); err != nil {
			return 0, err
		}
	}
	sentNs := int64(time.Since(s.epoch))
	for i := 0; i < n; i++ {
		putDatagramHeader(s.buf[i*s.size:], s.seq+uint64(i)+1, sentNs)
	}
	m, err := s.w.write(s.buf, s.size, n, dst)
	s.seq += uint64(m)
	s.packets.Add(int64(m))
	s.bytes.Add(int64(m * s.size))
	if s.sentBytes != nil {
		s.sentBytes.Add(int64(m * s.size))
	}
	return m, err
}

// sendPaced runs a sending stream until ctx ends or the pacer's schedule
// does: each wake-up sends every datagram the pacer has due, in batches,
// then sleeps until the next is due. send is a udpSender's send or a
// WebSocket equivalent.
func sendPaced(ctx context.Context, p *pacer, batch int, send func(n int) (int, error)) error {
	for ctx.Err() == nil && !p.finished(time.Now()) {
		n := p.take(time.Now(), batch)
		if n == 0 {
			if err := p.wait(ctx); err != nil {
				break
			}
			continue
		}
		if _, err := send(n); err != nil {
			return err
		}
	}
	return nil
}

// ---- client ----

// udpClientConn is one stream's client end: a connected socket whose
// hello the server acknowledged.
type udpClientConn struct {
	conn   *net.UDPConn
	id     uint32
	secret udpSecret
}

// dialUDPStreamVia opens a stream's socket to server ("host:port") with
// the client's dialer, its socket marks (-S, --bind-dev) and local address
// (-B, --cport), and runs the hello handshake.
func dialUDPStreamVia(ctx context.Context, d *net.Dialer, server string, secret udpSecret, id uint32) (*udpClientConn, error) {
	nc, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	c := &udpClientConn{conn: nc.(*net.UDPConn), id: id, secret: secret}
	c.conn.SetReadBuffer(udpSocketBuffer)
	c.conn.SetWriteBuffer(udpSocketBuffer)
	if err := c.handshake(ctx); err != nil {
		c.conn.Close()
		return nil, err
	}
	return c, nil
}

// handshake sends hellos with a growing wait between them until one is
// acknowledged or about udpHelloBudget has passed.
func (c *udpClientConn) handshake(ctx context.Context) error {
	deadline := time.Now().Add(udpHelloBudget)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	defer c.conn.SetReadDeadline(time.Time{})
	var hello, in [udpControlLen + 1]byte
	putControl(hello[:], udpKindHello, c.id, c.secret)
	for wait := udpHelloFirstWait; time.Now().Before(deadline); wait = wait * 3 / 2 {
		if _, err := c.conn.Write(hello[:udpControlLen]); err != nil && !udpRefused(err) {
			return err
		}
		c.conn.SetReadDeadline(earlierOf(time.Now().Add(wait), deadline))
		if c.awaitAck(in[:]) {
			return nil
		}
		if err := ctx.Err(); errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errUDPNoAck // also when ctx's deadline came first: the answer is the same
}

// awaitAck reads until this stream's ack or the read deadline; data and
// stray datagrams are skipped.
func (c *udpClientConn) awaitAck(buf []byte) bool {
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			return false
		}
		kind, id, secret, ok := readControl(buf[:n])
		if ok && kind == udpKindAck && id == c.id && secret == c.secret {
			return true
		}
	}
}

// keepalive re-sends the hello every period until ctx ends, keeping the
// NAT mapping (and the server's binding) alive while data flows to us.
func (c *udpClientConn) keepalive(ctx context.Context, period time.Duration) {
	var hello [udpControlLen]byte
	putControl(hello[:], udpKindHello, c.id, c.secret)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.conn.Write(hello[:])
		}
	}
}

// newSender makes the client's sender on this stream.
func (c *udpClientConn) newSender(size int, epoch time.Time) *udpSender {
	return newUDPSender(c.conn, size, epoch)
}

// receive counts the stream's data datagrams into counter until ctx
// ends (nil) or the socket fails. Arrival times count from epoch.
func (c *udpClientConn) receive(ctx context.Context, counter *udpCounter, size int, epoch time.Time) error {
	r, err := newUDPReadBatch(c.conn, udpReadDepth, max(size, udpControlLen))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		n, err := r.read()
		switch {
		case ctx.Err() != nil:
			return nil
		case udpRefused(err):
			continue // an ICMP error from before the server bound us
		case err != nil:
			return err
		}
		arrivalNs := int64(time.Since(epoch))
		for i := 0; i < n; i++ {
			data, size, _ := r.datagram(i)
			if seq, sentNs, ok := readDatagramHeader(data); ok {
				counter.observe(seq, sentNs, arrivalNs, size)
			}
		}
		counter.publish()
	}
}

func (c *udpClientConn) close() error { return c.conn.Close() }

// udpRefused tells an ICMP port-unreachable reported on a connected
// socket, which a later datagram may well get past.
func udpRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func earlierOf(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

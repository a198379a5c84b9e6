package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// udp_session.go settles how a UDP test's datagrams travel, on both
// ends: the server offers real UDP with a session secret, the client's
// hellos prove the path (udp_net.go), the client names the transport on
// the control connection, and real-UDP streams or WebSocket streams
// follow. It runs between the accept and the start.

// udpStreams settles how a UDP test's datagrams travel and tells the
// server: real UDP when every stream's hello is answered, else WebSocket
// (nil streams: the caller opens them), unless --udp-transport udp
// forbids the fallback.
func (t *clientTest) udpStreams(ctx context.Context) ([]*stream, error) {
	conns, why := t.dialUDP(ctx)
	switch {
	case conns != nil:
		t.transport = "udp"
	case t.req.UDPTransport == "udp":
		return nil, fmt.Errorf("--udp-transport udp: %s", why)
	default:
		t.transport, t.transportReason = "websocket", why
	}
	if err := sendJSON(t.ctrl, transportMsg{Type: msgTransport, Transport: t.transport, Reason: why}); err != nil {
		return nil, fmt.Errorf("send transport: %w", err)
	}
	if conns == nil {
		return nil, nil
	}
	streams := make([]*stream, len(conns))
	for i, c := range conns {
		streams[i] = &stream{id: i + 1, sending: t.sendsOn(i), dgram: newDatagramStream(!t.sendsOn(i))}
		streams[i].dgram.client = c
	}
	return streams, nil
}

// dialUDP runs every stream's hello handshake with the address the
// control connection reached, at the offered port. It returns the
// connected sockets, or why real UDP cannot be used.
func (t *clientTest) dialUDP(ctx context.Context) ([]*udpClientConn, string) {
	switch {
	case t.req.UDPTransport == "ws":
		return nil, "--udp-transport ws"
	case t.offer == nil:
		return nil, "the server offers no real UDP"
	}
	secret, err := parseUDPSecret(t.offer.Secret)
	if err != nil || t.offer.Port < 1 || t.offer.Port > 65535 {
		return nil, "the server's UDP offer is malformed"
	}
	host, _, _ := net.SplitHostPort(t.ctrl.NetConn().RemoteAddr().String())
	addr := net.JoinHostPort(host, strconv.Itoa(t.offer.Port))
	conns := make([]*udpClientConn, t.req.streamCount())
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = dialUDPStreamVia(ctx, t.udpDialer(i+1), addr, secret, uint32(i+1))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
		if errors.Is(err, errUDPNoAck) {
			return nil, fmt.Sprintf("no answer to UDP hellos within %v", udpHelloBudget)
		}
		return nil, "UDP: " + err.Error()
	}
	return conns, ""
}

// udpPlan is the server's side of a UDP test's transport: its offer, and
// the real-UDP streams once the client has chosen them.
type udpPlan struct {
	offer   *udpOffer
	session *udpSession
	peers   []*udpPeer // by stream id - 1
	// transport is "udp" or "websocket", with the client's reason for
	// falling back.
	transport, reason string
}

// planUDP registers a UDP test's streams with the shared UDP socket and
// makes the offer, when the server has the socket and the request allows
// real UDP; otherwise the plan offers nothing and the test runs over
// WebSocket.
func (s *server) planUDP(req *testRequest) *udpPlan {
	plan := &udpPlan{}
	if !req.udp() || s.udp == nil || req.UDPTransport == "ws" {
		return plan
	}
	secret := newUDPSecret()
	for i := range req.streamCount() {
		var counter *udpCounter
		if !serverSendsOn(req, i) {
			counter = &udpCounter{}
		}
		plan.peers = append(plan.peers, newUDPPeer(uint32(i+1), counter))
	}
	sess, err := s.udp.register(secret, plan.peers...)
	if err != nil {
		return &udpPlan{}
	}
	plan.session = sess
	plan.offer = &udpOffer{Port: s.udp.port(), Secret: secret.String()}
	return plan
}

// serverSendsOn tells whether the server sends on the stream at index i,
// numbered as the client numbers them (upload streams first).
func serverSendsOn(req *testRequest, i int) bool {
	return req.Direction == dirDownload || (req.Direction == dirBidir && i >= req.Parallel)
}

// end forgets the session: the shared socket sends and accepts nothing
// more for it.
func (p *udpPlan) end() {
	if p.session != nil {
		p.session.unregister()
	}
}

// awaitTransport reads the client's choice of transport. Real UDP is
// taken only when it was offered and every stream's hello arrived.
func (p *udpPlan) awaitTransport(c *wsConn) error {
	msg, kind, err := readControlMessage(c, udpHelloBudget+streamJoinTimeout)
	if err != nil {
		return fmt.Errorf("waiting for the UDP transport: %w", err)
	}
	var m transportMsg
	if kind != msgTransport || json.Unmarshal(msg, &m) != nil {
		return fmt.Errorf("expected a transport message, got %q", kind)
	}
	p.transport, p.reason = m.Transport, cleanText(m.Reason, 200)
	switch {
	case m.Transport == "websocket":
		p.end()
		return nil
	case m.Transport != "udp":
		return fmt.Errorf("unknown transport %q", m.Transport)
	case p.offer == nil:
		return errors.New("real UDP was not offered")
	}
	for _, peer := range p.peers {
		if !isClosed(peer.bound) {
			return fmt.Errorf("UDP stream %d sent no hello", peer.id)
		}
	}
	return nil
}

// streams are the test's real-UDP streams, from the server's side.
func (p *udpPlan) streams(req *testRequest, local net.Addr) []*stream {
	var out []*stream
	for i, peer := range p.peers {
		sending := serverSendsOn(req, i)
		d := newDatagramStream(!sending)
		d.peer, d.counter = peer, peer.recv
		d.local, d.remote = local, peer.dst.Load()
		out = append(out, &stream{id: i + 1, sending: sending, dgram: d})
	}
	return out
}

// udpDialer is the dialer of a real-UDP stream (numbered from 1): the
// test's socket marks, -B, and with --cport the stream's own port, as
// iperf3 binds its UDP streams too.
func (t *clientTest) udpDialer(stream int) *net.Dialer {
	marks := t.cfg.socketMarks()
	d := &net.Dialer{Control: marks.control}
	port := 0
	if t.cfg.cport > 0 {
		port = t.cfg.cport + stream - 1
	}
	if t.cfg.bind != "" || port > 0 {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(t.cfg.bind), Port: port}
	}
	return d
}
